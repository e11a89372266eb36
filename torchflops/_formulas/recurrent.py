"""Recurrent layers (RNN, LSTM, GRU) and their cells, forward and backpropagation through time.

Every step of every layer and direction runs the gate matmuls ``W_ih x_t`` and ``W_hh h_{t-1}``
(also on the first step, where a missing initial state is zeros that are multiplied all the same)
and, for an LSTM with ``proj_size``, the projection ``W_hr h_t``. Gate nonlinearities and the
elementwise products of the cell are not matmul work and are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, Optional

from torch import nn

from .._call import Call, PackedInfo, TensorInfo
from .._counts import Counts
from .._registry import register
from ._dense import trainable


@dataclass(frozen=True)
class _Steps:
    """The batch rows one direction of one layer processes."""

    rows: int       # summed over steps: T x B, or sum(batch_sizes) for a packed sequence
    first: int      # rows of the first step processed (a reverse direction starts at the end)


@dataclass(frozen=True)
class _Weights:
    """One direction of one layer (or a cell): matrix shapes, biases, which ones get gradients."""

    gates: int          # rows of W_ih and W_hh: number of gates x hidden_size
    inputs: int         # columns of W_ih
    state: int          # columns of W_hh: hidden_size, or proj_size
    proj: int           # rows of W_hr (proj_size), 0 without a projection
    hidden: int         # columns of W_hr (hidden_size), 0 without a projection
    biases: int         # b_ih and b_hh, or none
    ih: bool
    hh: bool
    hr: bool
    gate_params: bool   # any of W_ih, W_hh, b_ih, b_hh trainable


def _weights(module: nn.Module, suffix: str) -> _Weights:
    w_ih, w_hh = getattr(module, f"weight_ih{suffix}"), getattr(module, f"weight_hh{suffix}")
    w_hr = getattr(module, f"weight_hr{suffix}", None)
    b_ih, b_hh = getattr(module, f"bias_ih{suffix}", None), getattr(module, f"bias_hh{suffix}", None)
    proj, hidden = tuple(w_hr.shape) if w_hr is not None else (0, 0)
    return _Weights(
        gates=w_ih.shape[0], inputs=w_ih.shape[1], state=w_hh.shape[1], proj=proj, hidden=hidden,
        biases=(b_ih is not None) + (b_hh is not None),
        ih=trainable(w_ih), hh=trainable(w_hh), hr=trainable(w_hr),
        gate_params=any(trainable(p) for p in (w_ih, w_hh, b_ih, b_hh)),
    )


def _direction(w: _Weights, steps: _Steps, x: bool, h0: bool, c0: bool) -> tuple[Counts, bool]:
    """Counts of one direction of one layer, and whether its outputs need a gradient.

    ``x``, ``h0``, ``c0``: whether the layer input and the initial states need gradients.
    """
    rows, later = steps.rows, steps.rows - steps.first
    x_macs, h_macs, proj_macs = w.gates * w.inputs, w.gates * w.state, w.proj * w.hidden
    macs = rows * (x_macs + h_macs + proj_macs)
    # A gate element sums inputs + state products: (inputs - 1) adds inside W_ih x, (state - 1)
    # inside W_hh h and one joining the two, then one per bias. The projection has no bias.
    adds = rows * (w.gates * (w.inputs + w.state - 1 + w.biases) + w.proj * max(w.hidden - 1, 0))

    # The first step's gates need a gradient through x, h0 or the gate parameters; its cell state
    # also through c0. Every later step reads an earlier output, and the need, once there, stays.
    first_gates = x or h0 or w.gate_params
    first_cell = first_gates or c0
    out = first_cell or w.hr
    grad_input = 2 * (
        (rows * x_macs if x else 0)
        # the gradient of h_{t-1}: of h0 on the first step, of an earlier output afterwards
        + h_macs * ((steps.first if h0 else 0) + (later if out else 0))
        # the projection reads o * tanh(c), which needs a gradient once the cell state does
        + proj_macs * ((steps.first if first_cell else 0) + (later if out else 0))
    )
    grad_weight = 2 * rows * ((x_macs if w.ih else 0) + (h_macs if w.hh else 0) + (proj_macs if w.hr else 0))
    counts = Counts(macs=macs, muls=macs, adds=adds, grad_input_flops=grad_input, grad_weight_flops=grad_weight)
    return counts, out


def _initial(hx: Any) -> tuple[Optional[TensorInfo], Optional[TensorInfo]]:
    """``h0`` and (LSTM) ``c0`` from the ``hx`` argument, each None when not given."""
    if isinstance(hx, (tuple, list)):
        return hx[0], hx[1]
    return hx, None


def _needs(state: Optional[TensorInfo]) -> bool:
    return state is not None and state.needs_grad


def _sequence(x: Any, batch_first: bool) -> tuple[bool, _Steps, _Steps]:
    """Whether the input needs a gradient, and the steps of the forward and reverse directions."""
    if isinstance(x, PackedInfo):
        sizes = x.batch_sizes
        return x.data.needs_grad, _Steps(sum(sizes), sizes[0]), _Steps(sum(sizes), sizes[-1])
    if len(x.shape) == 2:               # unbatched: (T, features)
        length, batch = x.shape[0], 1
    else:
        length, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    steps = _Steps(length * batch, batch)
    return x.needs_grad, steps, steps


@register(nn.RNN, nn.LSTM, nn.GRU)
def recurrent(module: nn.RNNBase, call: Call) -> Counts:
    """Per step, layer and direction: gates x (inputs + state) MACs, plus proj x hidden with ``proj_size``.

    Backward follows the recurrence: the gradient of ``h_{t-1}`` is spent on every step but the
    first, where it is spent only when the given initial state needs one.
    """
    x_needs, *directions = _sequence(call.arg(0, "input"), module.batch_first)
    h0, c0 = _initial(call.arg(1, "hx"))
    total = Counts()
    for layer in range(module.num_layers):
        out_needs = False
        for direction in range(2 if module.bidirectional else 1):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            counts, needs = _direction(_weights(module, suffix), directions[direction], x_needs,
                                       _needs(h0), _needs(c0))
            total += counts
            out_needs = out_needs or needs
        # the next layer reads both directions' outputs, concatenated
        x_needs = out_needs
    return total


@register(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def recurrent_cell(module: nn.RNNCellBase, call: Call) -> Counts:
    """One step: gates x (inputs + hidden) MACs per batch row; a loop of N calls is N records."""
    x = call.arg(0, "input")
    h0, c0 = _initial(call.arg(1, "hx"))
    rows = prod(x.shape[:-1])
    counts, _ = _direction(_weights(module, ""), _Steps(rows, rows), x.needs_grad, _needs(h0), _needs(c0))
    return counts
