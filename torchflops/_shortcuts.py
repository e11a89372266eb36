"""Shape-only answers for fused recurrent kernels, so a meta pass does not unroll them.

On the meta device ATen runs ``lstm``/``gru``/``rnn_*`` step by step through Python meta kernels:
counting a 4-layer bidirectional LSTM over 512 steps took 15 s. Their formula needs only shapes, and
their output shapes follow from the arguments, so while every tensor argument is a meta tensor the
function mode returns empty meta outputs of the right shapes instead of running the kernel.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["SHORTCUT_MODULES", "shortcut"]

# Modules whose forward calls a fused recurrent kernel: the function mode stays on inside them.
SHORTCUT_MODULES = (nn.RNNBase,)

_VF = torch._C._VariableFunctions


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _like(shape: tuple[int, ...], dtype: torch.dtype, requires_grad: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta", requires_grad=requires_grad)


def _recurrent(args: tuple, packed: bool, with_cell: bool) -> Optional[tuple[torch.Tensor, ...]]:
    """``(output, h_n[, c_n])`` of ``_VF.lstm``/``gru``/``rnn_*`` (padded or packed form).

    Padded: ``(input, hx, weights, bias, layers, dropout, train, bidirectional, batch_first)``;
    packed: ``(data, batch_sizes, hx, weights, bias, layers, dropout, train, bidirectional)``.
    The output's last dimension is directions x the size of ``h`` (``proj_size`` when projecting).
    """
    x = args[0]
    hx = args[2] if packed else args[1]
    weights = args[3] if packed else args[2]
    bidirectional = args[8] if packed else args[7]
    states = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
    grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in _tensors((x, states, weights)))
    out = x.shape[:-1] + ((2 if bidirectional else 1) * states[0].shape[-1],)
    outputs = (_like(out, x.dtype, grad),) + tuple(_like(tuple(s.shape), s.dtype, grad) for s in states)
    return outputs if with_cell == (len(states) == 2) else None


_RECURRENT = {
    # the padded and packed overloads share one builtin; the second argument tells them apart
    _VF.lstm: True, _VF.gru: False, _VF.rnn_tanh: False, _VF.rnn_relu: False,
}


def shortcut(func: Callable, args: tuple, kwargs: dict) -> Optional[Any]:
    """The outputs of ``func(*args)`` as empty meta tensors, or None to run it for real."""
    with_cell = _RECURRENT.get(func)
    if with_cell is None or kwargs or len(args) != 9:
        return None
    # packed: the second argument is the batch sizes, an integer tensor that stays on the host
    packed = isinstance(args[1], torch.Tensor) and not args[1].is_floating_point()
    if not all(t.is_meta for t in _tensors(args[2:] if packed else args)) or not args[0].is_meta:
        return None
    return _recurrent(args, packed, with_cell)
