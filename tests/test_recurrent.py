"""Recurrent layers and cells against PyTorch's FlopCounterMode on the meta device, forward and backward.

On meta, ATen runs RNN/LSTM/GRU as a Python-visible loop of addmm/mm per step, layer and
direction, and a real ``.backward()`` inside the mode counts what autograd spends, BPTT included.
(On CPU the same counter reports 0 for ``nn.LSTM``: the fused kernel hides the matmuls.)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from oracles import work

T, B, IN, H = 7, 3, 10, 20
LENGTHS = [7, 5, 2]                 # batch sizes per step: 3, 3, 2, 2, 2, 1, 1 (14 real steps)
# the oracle grid runs shorter sequences: every per-step rule shows from the third step on
GRID_T, GRID_LENGTHS = 4, [4, 3, 1]


# -- oracle ------------------------------------------------------------------------------------------
def _outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in _outputs(item)]


def _to_meta(value: object) -> object:
    if isinstance(value, PackedSequence):
        return PackedSequence(_to_meta(value.data), value.batch_sizes,
                              *[None if t is None else t.to("meta") for t in (value.sorted_indices,
                                                                               value.unsorted_indices)])
    if isinstance(value, torch.Tensor):
        return value.detach().to("meta").requires_grad_(value.requires_grad)
    if isinstance(value, tuple):
        return tuple(_to_meta(v) for v in value)
    return value


def oracle(module: nn.Module, *inputs: object) -> tuple[int, int]:
    """(forward FLOPs, backward FLOPs) of FlopCounterMode on meta; backward from every output."""
    module = copy.deepcopy(module).to("meta")
    inputs = tuple(_to_meta(x) for x in inputs)
    with FlopCounterMode(display=False) as mode:
        out = module(*inputs)
        forward = mode.get_total_flops()
        needed = [t.sum() for t in _outputs(out) if t.requires_grad]
        if needed:
            torch.stack(needed).sum().backward()
    return forward, mode.get_total_flops() - forward


# -- the variants ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    make: Callable[[], nn.Module]
    form: str = "seq"               # seq | unbatched | packed | packed-unsorted | cell | cell-unbatched


VARIANTS = {
    "rnn-tanh-2layers": Variant(lambda: nn.RNN(IN, H, num_layers=2)),
    "rnn-relu-bidirectional": Variant(lambda: nn.RNN(IN, H, nonlinearity="relu", bidirectional=True)),
    "rnn-no-bias": Variant(lambda: nn.RNN(IN, H, bias=False)),
    "lstm": Variant(lambda: nn.LSTM(IN, H)),
    "lstm-2layers-bidirectional": Variant(lambda: nn.LSTM(IN, H, num_layers=2, bidirectional=True)),
    "lstm-batch-first-no-bias": Variant(lambda: nn.LSTM(IN, H, batch_first=True, bias=False)),
    "lstm-proj": Variant(lambda: nn.LSTM(IN, H, proj_size=5)),
    "lstm-proj-2layers-bidirectional": Variant(
        lambda: nn.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=5)),
    "lstm-unbatched": Variant(lambda: nn.LSTM(IN, H, num_layers=2), "unbatched"),
    "lstm-packed": Variant(lambda: nn.LSTM(IN, H), "packed"),
    "lstm-packed-unsorted-bidirectional": Variant(
        lambda: nn.LSTM(IN, H, num_layers=2, bidirectional=True), "packed-unsorted"),
    "gru": Variant(lambda: nn.GRU(IN, H)),
    "gru-2layers-bidirectional-batch-first": Variant(
        lambda: nn.GRU(IN, H, num_layers=2, bidirectional=True, batch_first=True)),
    "gru-packed-bidirectional": Variant(lambda: nn.GRU(IN, H, bidirectional=True), "packed"),
    "rnn-cell": Variant(lambda: nn.RNNCell(IN, H), "cell"),
    "rnn-cell-relu-unbatched": Variant(lambda: nn.RNNCell(IN, H, nonlinearity="relu"), "cell-unbatched"),
    "lstm-cell": Variant(lambda: nn.LSTMCell(IN, H), "cell"),
    "lstm-cell-no-bias": Variant(lambda: nn.LSTMCell(IN, H, bias=False), "cell"),
    "gru-cell": Variant(lambda: nn.GRUCell(IN, H), "cell"),
    "gru-cell-unbatched": Variant(lambda: nn.GRUCell(IN, H), "cell-unbatched"),
}


@dataclass(frozen=True)
class Grads:
    """Which tensors need gradients: parameters (all, none, biases, W_hr), input, h0/c0 (None: no hx)."""

    params: str
    x: bool
    state: Optional[tuple[bool, bool]] = None


GRADS = {
    "trainable": Grads("all", False),
    "trainable-x-h0": Grads("all", True, (True, True)),
    "trainable-zero-state": Grads("all", False, (False, False)),
    "frozen-x": Grads("none", True),
    "frozen-h0": Grads("none", False, (True, False)),
    "frozen-c0": Grads("none", False, (False, True)),
    "frozen-nothing": Grads("none", False, (False, False)),
    "biases-only": Grads("bias", False),
    "projection-only": Grads("hr", False),
}


def _freeze(module: nn.Module, params: str) -> nn.Module:
    for name, p in module.named_parameters():
        p.requires_grad_(params == "all" or name.startswith(params if params != "hr" else "weight_hr"))
    return module


def _states(module: nn.Module, grads: Grads, batch: Optional[int]) -> object:
    """h0 (and c0 for an LSTM) of the module's shapes, or None."""
    if grads.state is None:
        return None
    cell = isinstance(module, nn.RNNCellBase)
    layers = 1 if cell else module.num_layers * (2 if module.bidirectional else 1)
    hidden = module.hidden_size if cell else (module.proj_size or module.hidden_size)
    lead = (layers,) if not cell else ()
    lead += (batch,) if batch is not None else ()
    h0 = torch.zeros(lead + (hidden,), requires_grad=grads.state[0])
    if not isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return h0
    return h0, torch.zeros(lead + (module.hidden_size,), requires_grad=grads.state[1])


def _inputs(module: nn.Module, form: str, grads: Grads) -> tuple:
    x_needs = grads.x
    if form == "cell":
        x, batch = torch.randn(B, IN), B
    elif form == "cell-unbatched":
        x, batch = torch.randn(IN), None
    elif form == "unbatched":
        x, batch = torch.randn(GRID_T, IN), None
    elif form.startswith("packed"):
        lengths = GRID_LENGTHS if form == "packed" else GRID_LENGTHS[::-1]
        padded = torch.randn(GRID_T, B, IN, requires_grad=x_needs)
        # pack_padded_sequence is differentiable: the packed data needs a gradient iff padded does
        x = pack_padded_sequence(padded, lengths, enforce_sorted=form == "packed")
        x_needs, batch = False, B
    elif getattr(module, "batch_first", False):
        x, batch = torch.randn(B, GRID_T, IN), B
    else:
        x, batch = torch.randn(GRID_T, B, IN), B
    if x_needs:
        x.requires_grad_()
    state = _states(module, grads, batch)
    return (x,) if state is None else (x, state)


def _case(variant: str, grads: str) -> tuple[nn.Module, tuple]:
    torch.manual_seed(0)
    v, g = VARIANTS[variant], GRADS[grads]
    module = _freeze(v.make(), g.params)
    return module, _inputs(module, v.form, g)


CASES = [
    pytest.param(v, g, id=f"{v}-{g}")
    for v in VARIANTS for g in GRADS
    # without W_hr, "projection-only" is "frozen-nothing" again
    if not (g == "projection-only" and "proj" not in v)
]


@pytest.mark.parametrize(("variant", "grads"), CASES)
def test_count_matches_meta_oracle(variant: str, grads: str) -> None:
    module, inputs = _case(variant, grads)
    expected = oracle(module, *inputs)
    total = tf.count(module, *inputs).total
    assert (total.flops, total.backward_flops) == expected
    assert total.muls == total.macs


@pytest.mark.parametrize(("variant", "grads"), [
    pytest.param(v, g, id=f"{v}-{g}") for v in VARIANTS
    for g in ("trainable", "trainable-x-h0", "frozen-c0")
])
def test_profile_of_a_real_cpu_forward_matches_meta_oracle(variant: str, grads: str) -> None:
    module, inputs = _case(variant, grads)
    expected = oracle(module, *inputs)
    with tf.profile(module) as prof:
        module(*inputs)
    assert (prof.total.flops, prof.total.backward_flops) == expected


class _Head(nn.Module):
    """A recurrent layer and a Linear reading its output: the Linear's input gradient depends on
    whether the recurrent output needs one."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        directions = 2 if rnn.bidirectional else 1
        self.rnn, self.head = rnn, nn.Linear((rnn.proj_size or rnn.hidden_size) * directions, 3)

    def forward(self, *inputs: object) -> torch.Tensor:
        out, _ = self.rnn(*inputs)
        return self.head(out.data if isinstance(out, PackedSequence) else out)


@pytest.mark.parametrize(("variant", "grads"), [
    pytest.param(v, g, id=f"{v}-{g}") for v, spec in VARIANTS.items() if not spec.form.startswith("cell")
    for g in ("trainable", "frozen-nothing", "frozen-h0", "frozen-x")
])
def test_shape_only_outputs_equal_the_real_kernels(variant: str, grads: str) -> None:
    # On meta the fused kernels are answered from shapes (torchflops._shortcuts) instead of being
    # unrolled step by step; the real CPU kernel must agree on every shape and on what follows.
    module, inputs = _case(variant, grads)
    model = _Head(module)
    shape_only, real = tf.count(model, *inputs), tf.count(model, *inputs, device="cpu")
    assert [r.output_shapes for r in shape_only.records] == [r.output_shapes for r in real.records]
    assert shape_only.module_shapes("rnn") == real.module_shapes("rnn")
    assert work(shape_only.total) == work(real.total)
    assert [r.input_needs_grad for r in shape_only.records] == [r.input_needs_grad for r in real.records]


def test_no_grad_keeps_the_backward_that_would_be_spent() -> None:
    module, inputs = _case("lstm-2layers-bidirectional", "trainable-x-h0")
    expected = oracle(module, *inputs)
    with torch.no_grad(), tf.profile(module) as prof:
        module(*inputs)
    assert (prof.total.flops, prof.total.backward_flops) == expected


# -- the reference figures, derived by hand ----------------------------------------------------
def test_reference_figures() -> None:
    x = torch.randn(T, B, IN)
    # per row (T x B = 21 rows), per layer and direction: 4 gates x 20 x (inputs + 20);
    # layer 0 reads 10 inputs, layer 1 both directions' 2 x 20:
    # 21 x 2 x 80 x (30 + 60) = 302,400 MACs = 604,800 FLOPs
    assert tf.count(nn.LSTM(IN, H, num_layers=2, bidirectional=True), x).total.flops == 604_800
    # 3 gates x (10 + 20) x 20 x 21 = 37,800 MACs = 75,600 FLOPs
    assert tf.count(nn.GRU(IN, H), x).total.flops == 75_600
    # 21 x (80 x 10 + 80 x 5 + 5 x 20) = 21 x 1,300 = 27,300 MACs = 54,600 FLOPs
    assert tf.count(nn.LSTM(IN, H, proj_size=5), x).total.flops == 54_600
    # lengths 7/5/2: 3+3+2+2+2+1+1 = 14 real steps, x 80 x 30 = 33,600 MACs = 67,200 FLOPs
    packed = pack_padded_sequence(x, LENGTHS)
    assert tf.count(nn.LSTM(IN, H), packed).total.flops == 67_200
    for module, inputs in ((nn.LSTM(IN, H, num_layers=2, bidirectional=True), (x,)),
                           (nn.GRU(IN, H), (x,)), (nn.LSTM(IN, H, proj_size=5), (x,)),
                           (nn.LSTM(IN, H), (packed,))):
        assert oracle(module, *inputs)[0] == tf.count(module, *inputs).total.flops


def test_gru_every_field_by_hand() -> None:
    c = tf.count(nn.GRU(IN, H), torch.randn(T, B, IN)).total
    assert c.macs == c.muls == 37_800           # 3 x 20 gate outputs x (10 + 20) products x 21 rows
    # per gate output: 29 adds summing 30 products (9 in W_ih x, 19 in W_hh h, 1 joining) + 2 biases
    assert c.adds == 21 * 60 * 31 == 39_060
    assert c.grad_weight_flops == 2 * 37_800    # W_ih and W_hh trainable, every step
    # x needs no gradient; h_{t-1} does on steps 2..7 (h0 is zeros nobody differentiates):
    # 2 x 60 x 20 x (21 - 3 rows) = 43,200
    assert c.grad_input_flops == 43_200
    assert c.params == 60 * 10 + 60 * 20 + 2 * 60 == 1_920


def test_adds_without_bias_and_with_projection_by_hand() -> None:
    x = torch.randn(T, B, IN)
    # 20 gate outputs x 21 rows, each 30 products - 1 adds and no bias
    assert tf.count(nn.RNN(IN, H, bias=False), x).total.adds == 21 * 20 * 29 == 12_180
    # gates: 80 x (10 + 5 - 1 + 2); projection: 5 outputs x (20 - 1), no bias; x 21 rows
    assert tf.count(nn.LSTM(IN, H, proj_size=5), x).total.adds == 21 * (80 * 16 + 5 * 19) == 28_875


def test_packed_backward_skips_only_the_first_steps_rows() -> None:
    module = nn.LSTM(IN, H, bidirectional=True)
    packed = pack_padded_sequence(torch.randn(T, B, IN), LENGTHS)
    c = tf.count(module, packed).total
    # per direction: 14 rows x 80 x 30 MACs; weight gradients 2 x that, both directions
    assert c.grad_weight_flops == 2 * 2 * 14 * 80 * 30
    # h_{t-1} gradient on every row but the first step's: forward direction starts with batch 3,
    # the reverse one at t=7 with batch 1: 2 x 80 x 20 x ((14 - 3) + (14 - 1))
    assert c.grad_input_flops == 2 * 80 * 20 * (11 + 13) == 76_800


# -- cells called in a loop -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: nn.RNNCell(IN, H), lambda: nn.LSTMCell(IN, H), lambda: nn.GRUCell(IN, H)],
                         ids=["rnn", "lstm", "gru"])
def test_cell_in_a_loop_is_one_record_per_step(make: Callable[[], nn.Module]) -> None:
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = make()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            state = None
            outputs = []
            for step in x:
                state = self.cell(step, state)
                outputs.append(state[0] if isinstance(state, tuple) else state)
            return torch.stack(outputs)

    model = Loop()
    x = torch.randn(T, B, IN)
    prof = tf.count(model, x)
    assert [r.name for r in prof.records] == ["cell"] * T
    assert (prof.total.flops, prof.total.backward_flops) == oracle(model, x)
    # the first call has no state, so no h gradient; every later call reads the previous output
    first, second = prof.records[0].counts, prof.records[1].counts
    gates = model.cell.weight_hh.shape[0]
    assert second.grad_input_flops - first.grad_input_flops == 2 * B * gates * H


# -- reports --------------------------------------------------------------------------------------------
class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, IN)
        self.encoder = nn.LSTM(IN, H, num_layers=2, bidirectional=True)
        self.head = nn.Linear(2 * H, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(self.embed(tokens))
        return self.head(out)


def test_report_rows_and_branches_of_a_bidirectional_stack() -> None:
    model = Tagger()
    prof = tf.count(model, torch.zeros(T, B, dtype=torch.long))
    record = next(r for r in prof.records if r.name == "encoder")
    assert record.type == "LSTM"
    assert record.input_shapes == ((T, B, IN),)
    # output, then h_n and c_n: (layers x directions, batch, hidden)
    assert record.output_shapes == ((T, B, 2 * H), (4, B, H), (4, B, H))
    assert record.counts.params == sum(p.numel() for p in model.encoder.parameters())
    assert record.counts.macs == 302_400      # the 2-layer bidirectional LSTM of test_reference_figures
    table = prof.table()
    assert "LSTM" in table and "7x3x10" in table and "7x3x40, 4x3x20, 4x3x20" in table
    lines = prof.branches("").splitlines()
    row = next(line for line in lines if line.startswith("encoder"))
    head = 21 * 5 * 40                        # the linear head: 21 rows x 5 outputs x 40 inputs
    assert "302,400" in row and f"{100 * 302_400 / (302_400 + head):.1f}%" in row


def test_count_leaves_the_flat_weights_alone() -> None:
    module = nn.LSTM(IN, H, num_layers=2, bidirectional=True)
    before = list(module._flat_weights)
    tf.count(module, torch.randn(T, B, IN))
    assert all(a is b for a, b in zip(module._flat_weights, before)) and len(module._flat_weights) == len(before)
    assert all(not p.is_meta for p in module._flat_weights)
    module(torch.randn(T, B, IN))             # still runs on its own weights


def test_model_built_on_meta_counts_like_a_real_one() -> None:
    with torch.device("meta"):
        module = nn.GRU(IN, H, num_layers=2, bidirectional=True)
    real = nn.GRU(IN, H, num_layers=2, bidirectional=True)
    assert tf.count(module, input_size=(T, B, IN)).total == tf.count(real, input_size=(T, B, IN)).total
