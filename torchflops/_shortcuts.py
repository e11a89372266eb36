"""Shape-only answers for calls whose cost is not counted and whose result is shaped like an input.

On the meta device PyTorch runs some kernels as Python meta functions: a ``batch_norm`` costs about
0.5 ms (more than 80 % of a bare shape-only GoogLeNet pass), and ``lstm``/``gru``/``rnn_*`` are
unrolled step by step (15 s for a 4-layer bidirectional LSTM over 512 steps). Their formulas need
only shapes, and their output shapes follow from the arguments, so while every tensor argument is
a meta tensor the function mode returns meta outputs of the right shapes instead of running them.
Anything unusual (a shape that does not fit, a batch of one in training) runs the real kernel,
so its error is the real one.
"""
from __future__ import annotations

import sys
from math import prod
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SHORTCUT_MODULES", "shortcut", "iter_tensors"]

# Modules whose forward makes such a call: the function mode stays on inside them.
SHORTCUT_MODULES = (nn.RNNBase, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)

_VF = torch._C._VariableFunctions


def iter_tensors(value: Any):
    """Every tensor in ``value``, looking into tuples, lists and dict values."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from iter_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_tensors(item)


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if index < len(args) else kwargs.get(name)


def _grad(*values: Any) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in iter_tensors(values))


# -- recurrent kernels ---------------------------------------------------------------------------
def _like(shape: tuple[int, ...], dtype: torch.dtype, requires_grad: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta", requires_grad=requires_grad)


def _recurrent(with_cell: bool, args: tuple, kwargs: dict) -> Optional[tuple[torch.Tensor, ...]]:
    """``(output, h_n[, c_n])`` of ``_VF.lstm``/``gru``/``rnn_*`` (padded or packed form).

    Padded: ``(input, hx, weights, bias, layers, dropout, train, bidirectional, batch_first)``;
    packed: ``(data, batch_sizes, hx, weights, bias, layers, dropout, train, bidirectional)``.
    The output's last dimension is directions x the size of ``h`` (``proj_size`` when projecting).
    The results are leaves: nothing is done to them in place by the modules that call these.
    """
    if kwargs or len(args) != 9:
        return None
    # packed: the second argument is the batch sizes, an integer tensor that stays on the host
    packed = isinstance(args[1], torch.Tensor) and not args[1].is_floating_point()
    x, hx, weights = args[0], args[2 if packed else 1], args[3 if packed else 2]
    bidirectional = args[8 if packed else 7]
    states = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
    if not all(t.is_meta for t in iter_tensors((x, states, weights))) or with_cell != (len(states) == 2):
        return None
    grad = _grad(x, states, weights)
    out = x.shape[:-1] + ((2 if bidirectional else 1) * states[0].shape[-1],)
    return (_like(out, x.dtype, grad),) + tuple(_like(tuple(s.shape), s.dtype, grad) for s in states)


# -- normalisation -----------------------------------------------------------------------------
def _shaped_like(x: torch.Tensor, params: tuple[Optional[torch.Tensor], ...], broadcast: Callable) -> torch.Tensor:
    """A meta tensor shaped like ``x`` that needs a gradient when ``x`` or a parameter does.

    Not a leaf (``clone`` records a graph node), so an in-place activation after it is legal, and
    both ``clone`` and ``expand`` are cheap on meta, unlike the arithmetic they stand in for.
    """
    if x.requires_grad or not torch.is_grad_enabled():
        return x.clone()
    trained = next((p for p in params if p is not None and p.requires_grad), None)
    if trained is None:
        return x.clone()
    return broadcast(trained).expand(x.shape).to(x.dtype).clone()


def _channels(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda p: p.reshape((1, -1) + (1,) * (x.dim() - 2))


def _all_meta(*values: Any) -> bool:
    return all(t.is_meta for t in iter_tensors(values))


def _channel_norm(args: tuple, kwargs: dict, training_index: int, training_name: str) -> Optional[torch.Tensor]:
    """``batch_norm``/``instance_norm``: per-channel statistics and affine parameters."""
    x = _arg(args, kwargs, 0, "input")
    stats = (_arg(args, kwargs, 1, "running_mean"), _arg(args, kwargs, 2, "running_var"))
    params = (_arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias"))
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not _all_meta(x, stats, params):
        return None
    channels = x.shape[1]
    if any(t is not None and t.numel() != channels for t in stats + params):
        return None
    if _arg(args, kwargs, training_index, training_name) and x.numel() // channels <= 1:
        return None   # the real call raises: one value per channel in training
    return _shaped_like(x, params, _channels(x))


def _batch_norm(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    return _channel_norm(args, kwargs, 5, "training")


def _instance_norm(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    x = _arg(args, kwargs, 0, "input")
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        return None
    return _channel_norm(args, kwargs, 5, "use_input_stats")


def _trailing_norm(args: tuple, kwargs: dict, params: tuple[Optional[torch.Tensor], ...]) -> Optional[torch.Tensor]:
    """``layer_norm``/``rms_norm``: statistics over the trailing ``normalized_shape`` dimensions."""
    x, shape = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "normalized_shape")
    if not isinstance(x, torch.Tensor) or not _all_meta(x, params):
        return None
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or tuple(x.shape[-len(shape):]) != shape or any(
            p is not None and tuple(p.shape) != shape for p in params):
        return None
    return _shaped_like(x, params, lambda p: p)


def _layer_norm(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    params = (_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias"))
    return _trailing_norm(args, kwargs, params)


def _rms_norm(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    return _trailing_norm(args, kwargs, (_arg(args, kwargs, 2, "weight"),))


def _group_norm(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    x, groups = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "num_groups")
    params = (_arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias"))
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not isinstance(groups, int) or not _all_meta(x, params):
        return None
    channels = x.shape[1]
    if groups <= 0 or channels % groups or prod(x.shape) == 0 or any(
            p is not None and p.numel() != channels for p in params):
        return None
    return _shaped_like(x, params, _channels(x))


# -- value checks that change no cost ---------------------------------------------------------
# transformers reads tensor values in places that decide nothing torchflops counts: 4.x's padding
# check only warns when a sequence ends in the pad token, and the SDPA mask builders drop an
# all-ones padding mask in favour of ``is_causal`` or no mask (the same products either way). On
# tensors without data they are answered as for inputs without padding.
_VALUE_CHECKS = {"warn_if_padding_and_no_attention_mask": False, "_ignore_causal_mask_sdpa": True,
                 "_prepare_4d_attention_mask_for_sdpa": True}


def _without_data(value: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor
    return all(t.is_meta or isinstance(t, FakeTensor) for t in iter_tensors(value))


def _value_check(args: tuple, kwargs: dict) -> Optional[bool]:
    if not _without_data((args, kwargs)):
        return None
    frame = sys._getframe(3)    # past this function, ``shortcut`` and the function mode
    for _ in range(3):          # and torch's own ``Tensor.__contains__``
        if frame is None:
            return None
        answer = _VALUE_CHECKS.get(frame.f_code.co_name)
        if answer is not None and frame.f_globals.get("__name__", "").startswith("transformers."):
            return answer
        frame = frame.f_back
    return None


_SHORTCUTS: dict[Callable, Callable[[tuple, dict], Any]] = {
    torch.Tensor.__bool__: _value_check,
    torch.Tensor.__contains__: _value_check,
    # the padded and packed overloads share one builtin; the arguments tell them apart
    _VF.lstm: lambda args, kwargs: _recurrent(True, args, kwargs),
    _VF.gru: lambda args, kwargs: _recurrent(False, args, kwargs),
    _VF.rnn_tanh: lambda args, kwargs: _recurrent(False, args, kwargs),
    _VF.rnn_relu: lambda args, kwargs: _recurrent(False, args, kwargs),
    F.batch_norm: _batch_norm,
    F.instance_norm: _instance_norm,
    F.layer_norm: _layer_norm,
    F.group_norm: _group_norm,
    F.rms_norm: _rms_norm,
}


def shortcut(func: Callable, args: tuple, kwargs: dict) -> Optional[Any]:
    """The result of ``func(*args, **kwargs)`` built from shapes alone, or None to run it."""
    answer = _SHORTCUTS.get(func)
    return None if answer is None else answer(args, kwargs)
