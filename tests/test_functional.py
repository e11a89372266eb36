"""Functional calls and attention: counted once, attributed to the calling module, equal to the oracle.

The oracle is PyTorch's FlopCounterMode on the meta device, forward and (with a real
``.backward()``) backward. On meta and CPU it sees attention as the math path's ``bmm``s.
"""
from __future__ import annotations

from math import prod

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from oracles import work


# -- oracle ------------------------------------------------------------------------------------
def oracle(build, *shapes, grads=(), backward=False, kwargs=None):
    """FlopCounterMode on meta: forward FLOPs, and backward FLOPs when ``backward``."""
    with torch.device("meta"):
        model = build()
    inputs = [torch.empty(s, device="meta", requires_grad=i in grads) for i, s in enumerate(shapes)]
    with FlopCounterMode(display=False) as counter:
        out = model(*inputs, **(kwargs or {}))
    forward = counter.get_total_flops()
    if not backward:
        return forward
    with FlopCounterMode(display=False) as counter:
        out = model(*inputs, **(kwargs or {}))
        out = out[0] if isinstance(out, tuple) else out
        if out.requires_grad:
            out.sum().backward()
    return forward, counter.get_total_flops() - forward


def counted(build, *shapes, grads=(), kwargs=None):
    inputs = [torch.empty(s, requires_grad=i in grads) for i, s in enumerate(shapes)]
    return tf.count(build(), *inputs, kwargs=kwargs)


def assert_equals_oracle(build, *shapes, grads=(), kwargs=None):
    total = counted(build, *shapes, grads=grads, kwargs=kwargs).total
    forward, backward = oracle(build, *shapes, grads=grads, backward=True, kwargs=kwargs)
    assert (total.flops, total.backward_flops) == (forward, backward)


# -- a hand-written attention block ----------------------------------------------------------------
class HandAttention(nn.Module):
    """Every way of writing attention's two products: @, matmul, bmm, einsum, SDPA."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).softmax(-1)
        out = torch.matmul(weights, v)
        out = out + torch.bmm(weights.flatten(0, 1), v.flatten(0, 1)).view_as(out)
        out = out + torch.einsum("bhls,bhsd->bhld", weights, v)
        out = out + F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("grads", [(), (0,)], ids=["data", "input-needs-grad"])
def test_hand_written_attention_equals_oracle(grads):
    assert_equals_oracle(HandAttention, (2, 5, 16), grads=grads)


def test_hand_written_attention_exact_and_attributed():
    prof = tf.count(HandAttention(), input_size=(2, 5, 16))
    kinds = [(r.name, r.type) for r in prof.records]
    assert kinds == [("qkv", "Linear"), ("", "matmul"), ("", "matmul"), ("", "bmm"), ("", "einsum"),
                     ("", "scaled_dot_product_attention"), ("proj", "Linear")]
    # one product of attention: batch 2 x heads 4 x 5 queries x 5 keys x head_dim 4 = 800 MACs
    # @ / matmul / bmm / einsum: one product each; SDPA: both
    assert [r.counts.macs for r in prof.records[1:6]] == [800, 800, 800, 800, 1600]
    # qkv: 10 rows x 48 x 16 = 7680; proj: 10 x 16 x 16 = 2560
    assert prof.total.macs == 7680 + 6 * 800 + 2560


def test_functional_records_carry_the_enclosing_module():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(HandAttention())

        def forward(self, x):
            return self.block(x) @ torch.ones(16, 3)

    prof = tf.count(Outer(), input_size=(2, 5, 16))
    names = {(r.name, r.type) for r in prof.records}
    assert ("block.0", "scaled_dot_product_attention") in names
    assert ("", "matmul") in names
    assert prof.module("block.0").macs == tf.count(HandAttention(), input_size=(2, 5, 16)).total.macs


# -- nn.MultiheadAttention -------------------------------------------------------------------------
MHA_CASES = {
    "self": (dict(embed_dim=16, num_heads=4), [(5, 2, 16)] * 3, {}),
    "kdim-vdim": (dict(embed_dim=16, num_heads=4, kdim=12, vdim=10), [(5, 2, 16), (7, 2, 12), (7, 2, 10)], {}),
    "batch-first": (dict(embed_dim=16, num_heads=2, batch_first=True), [(2, 5, 16), (2, 7, 16), (2, 7, 16)], {}),
    "no-bias": (dict(embed_dim=16, num_heads=4, bias=False), [(5, 2, 16)] * 3, {}),
    "bias-kv-zero-attn": (dict(embed_dim=16, num_heads=4, add_bias_kv=True, add_zero_attn=True),
                          [(5, 2, 16), (7, 2, 16), (7, 2, 16)], {}),
    "unbatched": (dict(embed_dim=16, num_heads=4), [(5, 16), (7, 16), (7, 16)], {}),
    "no-weights": (dict(embed_dim=16, num_heads=4, kdim=12, vdim=10), [(5, 2, 16), (7, 2, 12), (7, 2, 10)],
                   {"need_weights": False}),
}


@pytest.mark.parametrize("case", MHA_CASES)
@pytest.mark.parametrize("grads", [(), (0,), (0, 1, 2)], ids=["data", "query", "all"])
def test_multihead_attention_equals_oracle(case, grads):
    options, shapes, kwargs = MHA_CASES[case]
    assert_equals_oracle(lambda: nn.MultiheadAttention(**options), *shapes, grads=grads, kwargs=kwargs)


def test_multihead_attention_exact_and_claims_out_proj():
    prof = tf.count(nn.MultiheadAttention(16, 4, kdim=12, vdim=10),
                    torch.empty(5, 2, 16), torch.empty(7, 2, 12), torch.empty(7, 2, 10))
    # q: 10 rows x 16 x 16 = 2560; k: 14 x 12 x 16 = 2688; v: 14 x 10 x 16 = 2240;
    # attention: 2 x 4 heads x 5 x 7 x (4 + 4) = 2240; out_proj: 10 x 16 x 16 = 2560
    assert prof.total.macs == 2560 + 2688 + 2240 + 2240 + 2560
    assert [(r.name, r.type) for r in prof.records] == [("", "MultiheadAttention")]
    # biases: 3 in-projections and out_proj add one per output element
    products = 2560 + 2688 + 2240 + 2240 + 2560
    outputs = 10 * 16 + 14 * 16 + 14 * 16 + 2 * 4 * 5 * 7 + 2 * 4 * 5 * 4 + 10 * 16
    biased = 10 * 16 + 14 * 16 + 14 * 16 + 10 * 16
    assert (prof.total.muls, prof.total.adds) == (products, products - outputs + biased)
    assert prof.total.params == sum(p.numel() for p in nn.MultiheadAttention(16, 4, kdim=12, vdim=10).parameters())


def test_multihead_attention_frozen_weights_spend_no_weight_gradient():
    mha = nn.MultiheadAttention(16, 4).requires_grad_(False)
    prof = tf.count(mha, *[torch.empty(5, 2, 16)] * 3)
    assert prof.total.backward_flops == 0
    x = torch.empty(5, 2, 16, requires_grad=True)
    prof = tf.count(mha, x, x, x)
    assert prof.total.grad_weight_flops == 0
    # the projections (3 x 10 rows x 16 x 16 = 7680 MACs) and out_proj (2560) need their input's
    # gradient only; each attention product (2 x 4 heads x 5 x 5 x 4 = 800 MACs) both operands'
    assert prof.total.grad_input_flops == 2 * (7680 + 2560) + 2 * 2 * (800 + 800)


def test_multihead_attention_fast_path_on_cpu_counts_like_meta():
    # In eval under no_grad, with batch_first self-attention, MHA would take its fused CPU kernel,
    # for which FlopCounterMode counts nothing; under torchflops it runs the regular path.
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    expected = oracle(lambda: nn.MultiheadAttention(16, 4, batch_first=True).eval(), (2, 5, 16), (2, 5, 16),
                      (2, 5, 16))
    with torch.no_grad():
        reference = mha(x, x, x)[0]
        with tf.profile(mha) as prof:
            out = mha(x, x, x)[0]
        assert work(tf.count(mha, x, x, x, device="cpu").total) == work(prof.total)
    torch.testing.assert_close(out, reference)
    assert prof.total.flops == expected
    assert work(prof.total) == work(tf.count(mha, x, x, x).total)


@pytest.mark.parametrize("layer", ["encoder", "decoder"])
def test_transformer_layers_in_eval_no_grad_count_like_meta(layer):
    def build():
        if layer == "encoder":
            return nn.TransformerEncoderLayer(16, 4, 32, batch_first=True).eval()
        return nn.TransformerDecoderLayer(16, 4, 32, batch_first=True).eval()

    shapes = [(2, 5, 16)] if layer == "encoder" else [(2, 5, 16), (2, 7, 16)]
    model = build()
    inputs = [torch.randn(s) for s in shapes]
    with torch.no_grad():
        with tf.profile(model) as prof:
            model(*inputs)
    assert prof.total.flops == oracle(build, *shapes)
    # the fused encoder kernel would skip them: the submodules were called and counted
    assert {"self_attn", "linear1", "linear2"} <= {r.name for r in prof.records}
    assert prof.total.backward_flops == tf.count(build(), *inputs).total.backward_flops


# -- shared modules, claimed calls, mixed models --------------------------------------------------
def test_shared_module_counts_twice_parameters_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, x):
            x = self.attn(x, x, x, need_weights=False)[0]
            return self.attn(x, x, x, need_weights=False)[0]

    once = tf.count(nn.MultiheadAttention(16, 4, batch_first=True), *[torch.empty(2, 5, 16)] * 3)
    prof = tf.count(Twice(), input_size=(2, 5, 16))
    assert prof.total.macs == 2 * once.total.macs
    assert prof.total.params == once.total.params
    assert len(prof.records) == 2
    assert prof.total.flops == oracle(Twice, (2, 5, 16))


def test_linear_module_is_not_counted_again_through_f_linear():
    prof = tf.count(nn.Linear(8, 4), input_size=(3, 8))
    assert [r.type for r in prof.records] == ["Linear"]
    assert prof.total.macs == 3 * 8 * 4


class Mixed(nn.Module):
    """Modules and functional calls side by side, with parameter operands in functional products."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.kernel = nn.Parameter(torch.randn(8, 8, 3, 3))
        self.up = nn.Parameter(torch.randn(8, 4, 2, 2))
        self.weight = nn.Parameter(torch.randn(16, 10))
        self.bias = nn.Parameter(torch.randn(10))
        self.head = nn.Linear(10, 5)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = F.conv2d(x, self.kernel, padding=1, stride=2)
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = F.conv_transpose2d(x, self.up, stride=2)          # 8 -> 4 channels
        x = x.flatten(2).mean(-1)                              # (b, 4)
        x = x.repeat(1, 4)                                     # (b, 16)
        x = torch.addmm(self.bias, x, self.weight)
        x = F.linear(x, self.head.weight, self.head.bias) + self.head(x)
        return x


@pytest.mark.parametrize("grads", [(), (0,)], ids=["data", "input-needs-grad"])
def test_mixed_modules_and_functional_calls_equal_oracle(grads):
    assert_equals_oracle(Mixed, (2, 3, 12, 12), grads=grads)


def test_parameter_operands_are_weights():
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(16, 10))
            self.bias = nn.Parameter(torch.randn(10))

        def forward(self, x):
            return torch.addmm(self.bias, x, self.weight).sum() + (self.weight.t() @ x.t() @ torch.ones(2, 3)).sum()

    prof = tf.count(Weights(), input_size=(2, 16))
    # (2 x 16) @ (16 x 10) = 320 MACs, twice (the second with a view of the parameter first): the
    # data operand needs no gradient, the parameter does; (10 x 2) @ (2 x 3) = 60 MACs, whose first
    # operand is an activation needing a gradient
    assert [(r.type, r.counts.macs, r.counts.grad_input_flops, r.counts.grad_weight_flops)
            for r in prof.records] == [("addmm", 320, 0, 640), ("matmul", 320, 0, 640), ("matmul", 60, 120, 0)]
    assert tf.count(Weights().requires_grad_(False), input_size=(2, 16)).total.backward_flops == 0
    assert tf.count(Mixed().requires_grad_(False), input_size=(2, 3, 12, 12)).total.backward_flops == 0

    class Activations(nn.Module):
        def forward(self, q, k):
            return q @ k

    q, k = torch.empty(3, 4, requires_grad=True), torch.empty(4, 5, requires_grad=True)
    counts = tf.count(Activations(), q, k).total
    # 3 x 4 x 5 = 60 MACs; both operands are activations: two input gradients of 120 FLOPs
    assert (counts.grad_input_flops, counts.grad_weight_flops) == (240, 0)


# -- functional formulas equal the module formulas, field by field ------------------------------------
class Functional(nn.Module):
    """Calls ``fn(x, self.m.weight, self.m.bias, **options)`` instead of ``self.m(x)``."""

    def __init__(self, module, fn, **options):
        super().__init__()
        self.m, self.fn, self.options = module, fn, options

    def forward(self, x):
        return self.fn(x, self.m.weight, self.m.bias, **self.options)


LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), F.linear, {}, (3, 2, 6)),
    "linear-no-bias": (lambda: nn.Linear(6, 4, bias=False), F.linear, {}, (3, 6)),
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), F.conv1d,
               dict(stride=2, padding=1, groups=2), (2, 4, 9)),
    "conv2d": (lambda: nn.Conv2d(3, 4, (3, 2), padding=(1, 0), dilation=2), F.conv2d,
               dict(padding=(1, 0), dilation=2), (2, 3, 9, 8)),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, stride=(1, 2, 2)), F.conv3d, dict(stride=(1, 2, 2)), (1, 2, 5, 6, 6)),
    "conv-transpose1d": (lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, groups=2),
                         F.conv_transpose1d, dict(stride=2, padding=1, groups=2), (2, 4, 7)),
    "conv-transpose2d": (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, dilation=2),
                         F.conv_transpose2d, dict(stride=2, padding=1, output_padding=1, dilation=2),
                         (2, 3, 5, 4)),
    "conv-transpose3d": (lambda: nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=3, bias=False),
                         F.conv_transpose3d, dict(stride=3), (1, 2, 3, 4, 4)),
}


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_functional_layer_equals_module_layer(layer, frozen):
    build, fn, options, shape = LAYERS[layer]
    module = build().requires_grad_(not frozen)
    x = torch.empty(shape, requires_grad=True)
    by_module = tf.count(module, x)
    by_function = tf.count(Functional(module, fn, **options), x)
    assert by_function.total == by_module.total
    assert [r.type for r in by_function.records] == [fn.__name__]
    assert by_function.total.flops == oracle(lambda: Functional(build(), fn, **options), shape)


# -- products -----------------------------------------------------------------------------------
class Call(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


PRODUCTS = {
    "mm": (torch.mm, [(3, 4), (4, 5)]),
    "Tensor.mm": (lambda a, b: a.mm(b), [(3, 4), (4, 5)]),
    "bmm": (torch.bmm, [(2, 3, 4), (2, 4, 5)]),
    "Tensor.bmm": (lambda a, b: a.bmm(b), [(2, 3, 4), (2, 4, 5)]),
    "matmul-broadcast": (torch.matmul, [(2, 1, 3, 4), (5, 4, 6)]),
    "matmul-fold": (torch.matmul, [(2, 3, 4), (4, 5)]),
    "at": (lambda a, b: a @ b, [(3, 4), (2, 4, 5)]),
    "Tensor.matmul": (lambda a, b: a.matmul(b), [(3, 4), (4, 5)]),
    "addmm": (torch.addmm, [(5,), (3, 4), (4, 5)]),
    "Tensor.addmm": (lambda c, a, b: c.addmm(a, b), [(3, 5), (3, 4), (4, 5)]),
    "baddbmm": (torch.baddbmm, [(2, 3, 5), (2, 3, 4), (2, 4, 5)]),
    "einsum": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 5)]),
    "einsum-list": (lambda a, b: torch.einsum("bij,bjk->bik", [a, b]), [(2, 3, 4), (2, 4, 5)]),
    "einsum-implicit": (lambda a, b: torch.einsum("bij,bjk", a, b), [(2, 3, 4), (2, 4, 5)]),
    "einsum-presummed": (lambda a, b: torch.einsum("bij,bjk->k", a, b), [(2, 3, 4), (2, 4, 5)]),
    "einsum-ellipsis": (lambda a, b: torch.einsum("...ij,...jk->...ik", a, b), [(2, 3, 3, 4), (3, 4, 5)]),
    "einsum-three": (lambda a, b, c: torch.einsum("bij,bjk,kl->bil", a, b, c), [(2, 3, 4), (2, 4, 5), (5, 6)]),
    "einsum-sublist": (lambda a, b: torch.einsum(a, [0, 1, 2], b, [0, 2, 3], [0, 1, 3]), [(2, 3, 4), (2, 4, 5)]),
    "einsum-outer": (lambda a, b: torch.einsum("ij,kl->ijkl", a, b), [(2, 3), (4, 5)]),
    # a contraction over a size-1 label sums nothing: torch runs a broadcast multiply
    "einsum-size1": (lambda a, b: torch.einsum("bcxd,bcyd->bcxy", a, b), [(2, 3, 5, 1), (2, 3, 7, 1)]),
    "einsum-size1-and-3": (lambda a, b: torch.einsum("bxde,byde->bxy", a, b), [(2, 5, 1, 3), (2, 7, 1, 3)]),
    "sdpa": (F.scaled_dot_product_attention, [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)]),
    "sdpa-causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    [(2, 3, 6, 8), (2, 3, 6, 8), (2, 3, 6, 4)]),
}


@pytest.mark.parametrize("name", PRODUCTS)
@pytest.mark.parametrize("needs", ["none", "first", "last", "all"])
def test_products_equal_oracle(name, needs):
    fn, shapes = PRODUCTS[name]
    grads = {"none": (), "first": (0,), "last": (len(shapes) - 1,), "all": tuple(range(len(shapes)))}[needs]
    assert_equals_oracle(lambda: Call(fn), *shapes, grads=grads)


def test_product_muls_and_adds():
    # addmm (3x4)@(4x5) + bias: 15 outputs x 4 products = 60 muls; 15 x (3 + 1 bias) = 60 adds
    counts = tf.count(Call(torch.addmm), torch.empty(5), torch.empty(3, 4), torch.empty(4, 5)).total
    assert (counts.macs, counts.muls, counts.adds) == (60, 60, 60)
    # beta=0 ignores the added tensor: 15 x 3 = 45 adds
    counts = tf.count(Call(lambda c, a, b: torch.addmm(c, a, b, beta=0)),
                      torch.empty(5), torch.empty(3, 4), torch.empty(4, 5)).total
    assert counts.adds == 45
    # mv (3x4)@(4): 12 MACs, 3 x 3 adds; dot of 7: 7 MACs, 6 adds (FlopCounterMode counts neither)
    assert tf.count(Call(torch.mv), torch.empty(3, 4), torch.empty(4)).total.adds == 9
    # matrix @ vector is an mv: (2 x 3 x 4) @ (4) = 24 MACs, each operand's gradient 48 FLOPs
    counts = tf.count(Call(torch.matmul), torch.empty(2, 3, 4, requires_grad=True),
                      torch.empty(4, requires_grad=True)).total
    assert (counts.macs, counts.grad_input_flops) == (24, 2 * 48)
    counts = tf.count(Call(torch.dot), torch.empty(7), torch.empty(7)).total
    assert (counts.macs, counts.adds) == (7, 6)
    # addmv: 3 outputs x (3 + 1) adds
    assert tf.count(Call(torch.addmv), torch.empty(3), torch.empty(3, 4), torch.empty(4)).total.adds == 12


def test_einsum_three_operands_contract_left_to_right():
    # (bij,bjk -> bik): 2*3*5*4 = 120 MACs; (bik,kl -> bil): 2*3*6*5 = 180 MACs
    fn, shapes = PRODUCTS["einsum-three"]
    assert tf.count(Call(fn), *[torch.empty(s) for s in shapes]).total.macs == 300


# -- max pooling ---------------------------------------------------------------------------------
def brute_force_comparisons(x_shape, y_shape, kernel, stride, padding, dilation):
    """Valid elements of each window, minus one, from a real convolution of ones.

    Ones padded with zeros (and enough zeros at the far end for ceil_mode windows) convolved with
    a dilated kernel of ones: each output is the number of real input elements its window reads.
    """
    dims = len(kernel)
    spatial = y_shape[-dims:]
    pad = []
    for axis in reversed(range(dims)):
        pad += [padding[axis], padding[axis] + stride[axis] * spatial[axis]]
    ones = F.pad(torch.ones(1, 1, *x_shape[-dims:], dtype=torch.float64), pad)
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    valid = conv(ones, torch.ones(1, 1, *kernel, dtype=torch.float64), stride=stride, dilation=dilation)
    valid = valid[(0, 0) + tuple(slice(0, n) for n in spatial)]
    channels = prod(y_shape) // prod(spatial)
    return channels * int((valid - 1).sum())


POOLS = {
    "max_pool1d": (lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True), (2, 3, 10), (3,), (2,), (1,), (1,)),
    "max_pool2d": (lambda x: F.max_pool2d(x, (3, 2), (2, 1), (1, 1), (2, 1)), (2, 3, 11, 9),
                   (3, 2), (2, 1), (1, 1), (2, 1)),
    "max_pool2d-indices": (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)[0],
                           (1, 2, 8, 8), (3, 3), (2, 2), (1, 1), (1, 1)),
    "torch.max_pool2d": (lambda x: torch.max_pool2d(x, [3], [], 1), (2, 9, 9), (3, 3), (3, 3), (1, 1), (1, 1)),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2, padding=1, dilation=(1, 2, 1), ceil_mode=True), (1, 2, 5, 7, 6),
                   (2, 2, 2), (2, 2, 2), (1, 1, 1), (1, 2, 1)),
}


@pytest.mark.parametrize("pool", POOLS)
def test_functional_max_pool_comparisons_equal_brute_force(pool):
    fn, shape, kernel, stride, padding, dilation = POOLS[pool]
    prof = tf.count(Call(fn), input_size=shape)
    y_shape = fn(torch.zeros(shape)).shape
    assert prof.total.comparisons == brute_force_comparisons(shape, y_shape, kernel, stride, padding, dilation)
    assert prof.total.comparisons > 0 and prof.total.macs == 0


def test_functional_adaptive_max_pool_comparisons():
    # length 10 to 4: windows [0,3) [2,5) [5,8) [7,10): 3 elements each, 2 comparisons; x 2 x 3 channels
    assert tf.count(Call(lambda x: F.adaptive_max_pool1d(x, 4)), input_size=(2, 3, 10)).total.comparisons == 48
    # 2d: the same along both axes, with indices: 4 x 4 windows of 3 x 3 = 8 comparisons each
    prof = tf.count(Call(lambda x: F.adaptive_max_pool2d(x, 4, return_indices=True)[0]), input_size=(1, 10, 10))
    assert prof.total.comparisons == 16 * 8
    # 3d: 5 -> 5 along each axis is the identity: no comparisons
    assert tf.count(Call(lambda x: F.adaptive_max_pool3d(x, 5)), input_size=(1, 1, 5, 5, 5)).total.comparisons == 0


# -- functions without a formula: counted through the ATen operations they run ----------------------
class Uncounted(nn.Module):
    def forward(self, a, b):
        return torch.tensordot(a, b, dims=1) + torch.outer(a[0], b[:, 0]).sum() + torch.tensordot(a, b, dims=1)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_functions_without_a_formula_are_counted_by_their_aten_operations(device):
    # tensordot of 3x4 and 4x3 runs one 3x4 @ 4x3 mm: 9 outputs x 4 products = 36 MACs, twice;
    # outer runs an elementwise mul: nothing counted, nothing to report
    a, b = torch.randn(3, 4, requires_grad=True), torch.randn(4, 3)
    prof = tf.count(Uncounted(), a, b, device=device, strict=True)
    assert prof.total.macs == 2 * 36
    assert [r.type for r in prof.records] == ["aten::mm", "aten::mm"]
    with FlopCounterMode(display=False) as counter:
        Uncounted()(a, b).sum().backward()
    assert prof.total.flops + prof.total.backward_flops == counter.get_total_flops()


def test_a_function_formula_is_used_instead_of_its_aten_operations():
    def tensordot(call):
        a, b = call.args[:2]
        return tf.Counts(macs=a.shape[0] * a.shape[1] * b.shape[1] + 1)     # one more, to tell them apart

    prof = tf.count(Uncounted(), torch.empty(3, 4), torch.empty(4, 3), formulas={torch.tensordot: tensordot})
    assert prof.total.macs == 2 * 37
    assert [r.type for r in prof.records] == ["tensordot", "tensordot"]


def test_costly_aten_work_without_a_formula_is_reported_under_profile():
    class Distances(nn.Module):
        def forward(self, x):
            return torch.cdist(x, x)

    model = Distances()
    with pytest.warns(tf.UnsupportedWarning, match="aten::_cdist_forward"):
        with tf.profile(model) as prof:
            model(torch.randn(3, 4))
    assert prof.unsupported == {"aten::_cdist_forward": 1}


# -- shape-only and real tensors -------------------------------------------------------------------
@pytest.mark.parametrize("build, shape", [(HandAttention, (2, 5, 16)), (Mixed, (2, 3, 12, 12))],
                         ids=["attention", "mixed"])
def test_meta_cpu_and_profile_agree(build, shape):
    torch.manual_seed(0)
    model = build()
    x = torch.randn(shape, requires_grad=True)
    meta = tf.count(model, x)
    cpu = tf.count(model, x, device="cpu")
    with tf.profile(model) as prof:
        model(x)
    assert work(meta.total) == work(cpu.total) == work(prof.total)
    assert cpu.total == prof.total
    assert [(r.name, r.type, work(r.counts)) for r in meta.records] == [
        (r.name, r.type, work(r.counts)) for r in prof.records]


def test_sdpa_on_cpu_under_no_grad():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    model = Call(F.scaled_dot_product_attention)
    with torch.no_grad(), tf.profile(model) as prof:
        model(q, k, v)
    # 2 x 3 heads x 5 x 7 x (8 + 4) = 2520 MACs
    assert prof.total.macs == 2520 == oracle(lambda: Call(F.scaled_dot_product_attention),
                                             q.shape, k.shape, v.shape) // 2


# -- third-party linear-like modules -----------------------------------------------------------------
@pytest.mark.parametrize("attention_kind", ["eager", "sdpa"])
def test_gpt2_conv1d_counts_through_addmm(attention_kind):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=100,
                                     bos_token_id=0, eos_token_id=0, attn_implementation=attention_kind)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.zeros(2, 16, dtype=torch.long)
    prof = tf.count(model, ids)
    with FlopCounterMode(display=False) as counter:
        model(ids.to("meta"))
    assert prof.total.flops == counter.get_total_flops()
    assert prof.unsupported == {}
    assert {r.name for r in prof.records if r.type == "addmm"} >= {"transformer.h.0.attn.c_attn",
                                                                   "transformer.h.0.mlp.c_fc"}
    real = transformers.GPT2LMHeadModel(config).eval()
    # bytes too: the shape-only pass runs the attention kernel the CPU picks
    assert tf.count(real, ids, device="cpu").total == tf.count(real, ids).total
