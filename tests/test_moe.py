"""Mixture-of-experts blocks: counted from shapes, equal to real passes, forward and backward.

Without transformers: a block of one's own described with ``tf.MoE``, stacked experts, grouped
matrix products, bad descriptions. The transformers families are in ``test_moe_transformers.py``.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf


class Expert(nn.Module):
    def __init__(self, hidden=16, inner=24):
        super().__init__()
        self.up = nn.Linear(hidden, inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


class Block(nn.Module):
    """A sparse block as people write them: the routing picks experts by value (``where``)."""

    def __init__(self, hidden=16, experts=4, top_k=2, inner=24):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(hidden, experts, bias=False)
        self.experts = nn.ModuleList(Expert(hidden, inner) for _ in range(experts))
        self.shared = Expert(hidden, inner)

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        weights, chosen = torch.topk(self.router(flat).softmax(-1), self.top_k, dim=-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)
            if token.numel():
                out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return (out + self.shared(flat)).reshape(x.shape)


class Net(nn.Module):
    def __init__(self, block=None):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.block = block if block is not None else Block()
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.block(self.inp(x)))


SPEC = tf.MoE(top_k="top_k", router="router", shared=("shared",))


def _oracle(model, x):
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        forward = counter.get_total_flops()
        out.sum().backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops() - forward


def test_a_block_of_ones_own_counts_shape_only_as_a_real_pass():
    torch.manual_seed(0)
    model, x = Net(), torch.randn(2, 5, 8)
    meta = tf.count(model, input_size=(2, 5, 8), formulas={Block: SPEC})
    cpu = tf.count(model, x, device="cpu", formulas={Block: SPEC})
    forward, backward = _oracle(model, x)
    # 10 tokens: inp 10x8x16, router 10x16x4, shared 10x(16x24 + 24x16), 10 x 2 routed pairs
    # through one expert's 16x24 + 24x16, out 10x16x3
    macs = 10 * 8 * 16 + 10 * 16 * 4 + 10 * 768 + 20 * 768 + 10 * 16 * 3
    assert meta.total.macs == cpu.total.macs == macs == 25_440
    assert (meta.total.flops, meta.total.backward_flops) == (cpu.total.flops, cpu.total.backward_flops) \
        == (forward, backward)
    assert meta.unsupported == cpu.unsupported == {}
    # parameters one token uses: all but 2 of the 4 experts (768 each)
    assert meta.active_params == cpu.active_params == meta.total.params - 2 * 768


def test_the_stand_in_records_router_shared_and_routed_experts_under_their_names():
    prof = tf.count(Net(), input_size=(1, 6, 8), formulas={Block: SPEC})
    by_name = {r.name: r for r in prof.records}
    assert by_name["block.router"].input_shapes == ((1, 6, 16),)   # called on the block's input
    assert by_name["block.experts.0.up"].input_shapes == ((12, 16),)     # 6 tokens x top_k 2
    assert prof.module("block.shared").macs == 6 * 768
    assert prof.module("block.experts").macs == 12 * 768


def test_the_forward_is_put_back_after_a_shape_only_pass_also_when_it_raises():
    model = Net()
    before = dict(vars(model.block))
    tf.count(model, input_size=(1, 4, 8), formulas={Block: SPEC})
    with pytest.raises(RuntimeError):
        tf.count(model, input_size=(1, 4, 9), formulas={Block: SPEC})   # 9 features: a real shape error
    assert vars(model.block) == before and "forward" not in vars(model.block)


def test_without_a_description_the_routing_stops_shape_only_with_a_clear_error():
    with pytest.raises(tf.ShapeOnlyError, match="block"):
        tf.count(Net(), input_size=(1, 4, 8))


@pytest.mark.parametrize("spec, message", [
    (tf.MoE(top_k="top_k", experts="router"), "not a list of expert modules"),
    (tf.MoE(top_k="k"), "no integer attribute 'k'"),
    (tf.MoE(top_k=5), "top_k=5 experts but has 4"),
    (tf.MoE(top_k=2, router="gate"), "no submodule 'gate'"),
])
def test_a_description_that_does_not_fit_is_refused_before_anything_runs(spec, message):
    model = Net()
    params = {n: p for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=message):
        tf.count(model, input_size=(1, 4, 8), formulas={Block: spec})
    assert {n: p for n, p in model.named_parameters()} == params and "forward" not in vars(model.block)


def test_experts_of_different_sizes_are_refused_not_counted_densely():
    block = Block()
    block.experts[3] = Expert(16, 32)
    with pytest.raises(ValueError, match="differ in size"):
        tf.count(Net(block), input_size=(1, 4, 8), formulas={Block: SPEC})


def test_moe_rejects_a_top_k_that_is_not_a_count():
    with pytest.raises(TypeError):
        tf.MoE(top_k=True)
    with pytest.raises(ValueError):
        tf.MoE(top_k=0)


class Stacked(nn.Module):
    """Every expert's weights in one 3-D tensor each, as transformers 5 holds them."""

    def __init__(self, hidden=16, inner=24, experts=4):
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(experts, inner, hidden) / 4)
        self.b_in = nn.Parameter(torch.zeros(experts, inner))
        self.w_out = nn.Parameter(torch.randn(experts, hidden, inner) / 4)

    def forward(self, x, chosen, weights):
        out = torch.zeros_like(x)
        for e in range(self.w_in.shape[0]):
            token, slot = torch.where(chosen == e)
            if token.numel():
                h = torch.relu(F.linear(x[token], self.w_in[e], self.b_in[e]))
                out.index_add_(0, token, F.linear(h, self.w_out[e]) * weights[token, slot, None])
        return out


class StackedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = nn.Linear(16, 4, bias=False)
        self.experts = Stacked()

    def forward(self, x):
        flat = x.reshape(-1, 16)
        weights, chosen = self.router(flat).softmax(-1).topk(2, dim=-1)
        return self.experts(flat, chosen, weights).reshape(x.shape)


def test_stacked_experts_count_shape_only_as_a_real_pass():
    torch.manual_seed(0)
    model, x = Net(StackedBlock()), torch.randn(2, 5, 8)
    spec = {Stacked: tf.MoE(top_k=2, experts=None)}
    meta = tf.count(model, input_size=(2, 5, 8), formulas=spec)
    cpu = tf.count(model, x, device="cpu", formulas=spec)
    # 20 (token, expert) pairs through 24x16 and 16x24; router 10x16x4; inp and out as above
    assert meta.module("block.experts").macs == 20 * 2 * 384 == 15_360
    assert meta.module("block.experts").adds == 20 * (24 * 15 + 24 + 16 * 23)   # + one bias per inner element
    assert (meta.total.flops, meta.total.backward_flops) == (cpu.total.flops, cpu.total.backward_flops) \
        == _oracle(model, x)
    # one token uses 2 of the 4 experts' slices (384 + 24 + 384 each)
    assert meta.active_params == cpu.active_params == meta.total.params - 2 * 792


class Grouped(nn.Module):
    def __init__(self, shape_b, grouped=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(*shape_b))
        self.grouped = grouped

    def forward(self, a, offs=None):
        if self.grouped:
            return F.grouped_mm(a, self.weight, offs=offs)
        # the same products one group at a time, which FlopCounterMode counts
        if a.dim() == 2 and self.weight.dim() == 3:
            starts = [0] + offs.tolist()[:-1]
            return torch.cat([a[s:e] @ self.weight[g] for g, (s, e) in enumerate(zip(starts, offs.tolist()))])
        if a.dim() == 3 and self.weight.dim() == 3:
            return torch.bmm(a, self.weight)
        starts = [0] + offs.tolist()[:-1]
        return torch.stack([a[:, s:e] @ self.weight[s:e] for s, e in zip(starts, offs.tolist())])


@pytest.mark.parametrize("shape_a, shape_b, offs", [
    ((12, 8), (3, 8, 16), [4, 8, 12]),      # tokens sorted by expert x stacked weights
    ((3, 4, 8), (3, 8, 16), None),          # one batch per group
    ((4, 12), (12, 16), [4, 8, 12]),        # both 2-D: the groups split the shared dimension
])
def test_grouped_mm_counts_the_products_of_each_group(shape_a, shape_b, offs):
    torch.manual_seed(0)
    a = torch.randn(*shape_a, requires_grad=True)
    offsets = None if offs is None else torch.tensor(offs, dtype=torch.int32)
    grouped, loop = Grouped(shape_b), Grouped(shape_b, grouped=False)
    loop.weight = grouped.weight
    prof = tf.count(grouped, a, offsets, device="cpu")
    assert prof.unsupported == {}
    with FlopCounterMode(display=False) as counter:
        out = loop(a, offsets)
        forward = counter.get_total_flops()
        out.sum().backward()
    assert (prof.total.flops, prof.total.backward_flops) == (forward, counter.get_total_flops() - forward)
    assert prof.total.grad_input_flops == prof.total.grad_weight_flops == prof.total.flops
