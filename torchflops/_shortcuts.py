"""Shape-only answers for recurrent kernels, whose results follow from their arguments' shapes.

On the meta device PyTorch unrolls ``lstm``/``gru``/``rnn_*`` step by step (15 s for a 4-layer
bidirectional LSTM over 512 steps). Their formulas need only shapes, so while every tensor
argument is a meta tensor the function mode returns meta outputs of the right shapes instead of
running them; anything that does not fit runs the real kernel, so its error is the real one.
Normalisation kernels, also slow on meta, are answered below autograd (``_dispatch``).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["SHORTCUT_MODULES", "shortcut", "iter_tensors"]

# Modules whose forward makes such a call: the function mode stays on inside them.
SHORTCUT_MODULES = (nn.RNNBase,)

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
}


def shortcut(func: Callable, args: tuple, kwargs: dict) -> Optional[Any]:
    """The result of ``func(*args, **kwargs)`` built from shapes alone, or None to run it."""
    answer = _SHORTCUTS.get(func)
    return None if answer is None else answer(args, kwargs)
