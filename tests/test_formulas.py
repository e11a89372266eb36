"""Conv, transposed conv, linear, bilinear and pooling formulas against independent oracles."""
import pytest
import torch
from torch import nn

import torchflops as tf
from oracles import (conv_products, conv_transpose_products, exact_muls_adds, flop_counter,
                     max_pool_comparisons_loop, max_pool_comparisons_sum_pool, window_taps_one_hot, work)

CONV_CASES = [
    (nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3), (2, 4, 17)),
    (nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=5, stride=2, padding=2, dilation=2,
                     bias=False), (1, 4, 30)),
    (nn.Conv2d, dict(in_channels=30, out_channels=12, kernel_size=4, stride=2, padding=1), (1, 30, 14, 14)),
    (nn.Conv2d, dict(in_channels=8, out_channels=16, kernel_size=3, padding="same", groups=4), (2, 8, 11, 9)),
    (nn.Conv2d, dict(in_channels=8, out_channels=8, kernel_size=3, stride=2, groups=8, bias=False), (1, 8, 13, 13)),
    (nn.Conv2d, dict(in_channels=6, out_channels=4, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2),
                     dilation=(2, 1), padding_mode="reflect"), (1, 6, 12, 10)),
    (nn.Conv2d, dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, padding_mode="circular"), (2, 3, 7, 7)),
    (nn.Conv3d, dict(in_channels=3, out_channels=4, kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=1,
                     groups=1), (1, 3, 5, 9, 9)),
    (nn.Conv3d, dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", dilation=2, groups=2,
                     bias=False), (1, 4, 6, 6, 6)),
]

CONV_T_CASES = [
    (nn.ConvTranspose1d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2), (2, 4, 9)),
    (nn.ConvTranspose1d, dict(in_channels=4, out_channels=2, kernel_size=2, stride=3, bias=False), (1, 4, 5)),
    (nn.ConvTranspose2d, dict(in_channels=8, out_channels=6, kernel_size=3, stride=2, padding=1,
                              output_padding=1, groups=2), (2, 8, 5, 5)),
    (nn.ConvTranspose2d, dict(in_channels=6, out_channels=4, kernel_size=(4, 3), stride=(2, 3), padding=(1, 0),
                              dilation=(1, 2)), (1, 6, 4, 7)),
    (nn.ConvTranspose3d, dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1,
                              output_padding=(1, 0, 1), groups=4, bias=False), (1, 4, 3, 4, 3)),
]

GRAD_CASES = [(True, False), (True, True), (False, False), (False, True)]   # (input_grad, frozen)


def _prepared(cls, kwargs, frozen):
    torch.manual_seed(0)
    module = cls(**kwargs)
    for p in module.parameters():
        p.requires_grad_(not frozen)
    return module


def _check_against_flop_counter(module, shape, input_grad, frozen, groups):
    x = torch.zeros(shape, requires_grad=input_grad)
    counts = tf.count(module, x).total
    forward, backward = flop_counter(module, [shape], input_grad=input_grad)
    assert counts.flops == forward
    # FlopCounterMode's weight-gradient formula for convolutions ignores `groups` and overcounts by
    # that factor; we count 2 FLOPs per MAC for the weight gradient.
    assert counts.grad_input_flops + groups * counts.grad_weight_flops == backward
    assert counts.grad_input_flops == (2 * counts.macs if input_grad else 0)
    assert counts.grad_weight_flops == (0 if frozen else 2 * counts.macs)


@pytest.mark.parametrize("input_grad,frozen", GRAD_CASES)
@pytest.mark.parametrize("cls,kwargs,shape", CONV_CASES)
def test_conv_matches_flop_counter(cls, kwargs, shape, input_grad, frozen):
    module = _prepared(cls, kwargs, frozen)
    _check_against_flop_counter(module, shape, input_grad, frozen, module.groups)


@pytest.mark.parametrize("cls,kwargs,shape", CONV_CASES)
def test_conv_muls_adds_brute_force(cls, kwargs, shape):
    module = _prepared(cls, kwargs, frozen=False)
    counts = tf.count(module, input_size=shape).total
    # padded taps are multiplied too (im2col, PyTorch's counter)
    products = conv_products(module, shape)
    assert products.shape == module(torch.zeros(shape)).shape
    muls, adds = exact_muls_adds(products, bias=module.bias is not None)
    assert (counts.muls, counts.adds) == (muls, adds)
    assert counts.macs == muls


@pytest.mark.parametrize("input_grad,frozen", GRAD_CASES)
@pytest.mark.parametrize("cls,kwargs,shape", CONV_T_CASES)
def test_conv_transpose_matches_flop_counter(cls, kwargs, shape, input_grad, frozen):
    module = _prepared(cls, kwargs, frozen)
    _check_against_flop_counter(module, shape, input_grad, frozen, module.groups)


@pytest.mark.parametrize("cls,kwargs,shape", CONV_T_CASES)
def test_conv_transpose_muls_adds_brute_force(cls, kwargs, shape):
    module = _prepared(cls, kwargs, frozen=False)
    counts = tf.count(module, input_size=shape).total
    products = conv_transpose_products(
        shape, module.weight.shape, stride=module.stride, padding=module.padding,
        output_padding=module.output_padding, groups=module.groups, dilation=module.dilation)
    muls, adds = exact_muls_adds(products, bias=module.bias is not None)
    assert (counts.muls, counts.adds) == (muls, adds)
    # MACs are counted on the input's spatial size, N x Cin x prod(in) x Cout/groups x prod(kernel),
    # which includes the products `padding` crops off the output (those are in no output's sum).
    assert counts.macs == shape[0] * module.in_channels * torch.Size(shape[2:]).numel() * (
        module.out_channels // module.groups) * module.weight[0, 0].numel()
    assert counts.macs >= muls


def test_conv_transpose_counts_input_size_not_output_size():
    # ConvTranspose2d(16->8, k=3, s=2) on 1x16x10x10: every one of the 1,600 input elements is
    # scattered to 8 x 3 x 3 outputs: 1,600 x 72 = 115,200 MACs, although the output is
    # 1x8x21x21 (counting per output element would give 3,528 x 16 x 9 = 508,032).
    counts = tf.count(nn.ConvTranspose2d(16, 8, 3, stride=2), input_size=(1, 16, 10, 10)).total
    assert counts.macs == 115_200


@pytest.mark.parametrize("input_grad,frozen", GRAD_CASES)
@pytest.mark.parametrize("shape", [(7, 10), (2, 5, 10), (2, 3, 4, 10), (10,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_any_leading_dims(shape, bias, input_grad, frozen):
    module = _prepared(nn.Linear, dict(in_features=10, out_features=6, bias=bias), frozen)
    _check_against_flop_counter(module, shape, input_grad, frozen, groups=1)
    counts = tf.count(module, input_size=shape).total
    rows = torch.Size(shape[:-1]).numel()
    # each of rows x 6 outputs sums 10 products: 9 adds, +1 with the bias
    assert counts.muls == rows * 6 * 10
    assert counts.adds == rows * 6 * (9 + int(bias))


def test_bilinear_forward_matches_its_decomposition():
    # ATen's _trilinear contracts x1 with the weight first, then x2; PyTorch's counter sees
    # nothing for nn.Bilinear, so the oracle is the same contraction written as mm + bmm.
    module = nn.Bilinear(5, 7, 4)
    rows, out, in1, in2 = 3, 4, 5, 7

    class Decomposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(out, in1, in2))

        def forward(self, x1, x2):
            a = x1 @ self.weight.permute(1, 0, 2).reshape(in1, out * in2)
            return torch.bmm(a.view(rows, out, in2), x2.view(rows, in2, 1))

    forward, _ = flop_counter(Decomposed(), [(rows, in1), (rows, in2)], backward=False)
    counts = tf.count(module, input_size=[(rows, in1), (rows, in2)]).total
    assert counts.flops == forward
    # rows x out x in2 intermediates sum in1 products (in1 - 1 adds); rows x out outputs sum in2
    # of them (in2 - 1 adds) plus the bias.
    assert counts.adds == rows * out * in2 * (in1 - 1) + rows * out * in2
    assert counts.macs == rows * out * in2 * (in1 + 1)


POOL_CASES = [
    (nn.MaxPool1d, dict(kernel_size=3, stride=2), (2, 3, 11)),
    (nn.MaxPool1d, dict(kernel_size=4, stride=3, padding=2, ceil_mode=True), (1, 2, 10)),
    (nn.MaxPool1d, dict(kernel_size=3, stride=1, padding=1, dilation=2), (1, 2, 9)),
    (nn.MaxPool2d, dict(kernel_size=3, stride=2), (1, 12, 7, 7)),
    (nn.MaxPool2d, dict(kernel_size=3, stride=2, ceil_mode=True), (2, 4, 8, 8)),
    (nn.MaxPool2d, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(2, 1), ceil_mode=True),
     (1, 3, 9, 6)),
    (nn.MaxPool3d, dict(kernel_size=2, stride=2, ceil_mode=True), (1, 2, 5, 5, 5)),
    (nn.MaxPool3d, dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2, 1)), (1, 2, 6, 8, 5)),
]


@pytest.mark.parametrize("cls,kwargs,shape", POOL_CASES)
def test_max_pool_comparisons_brute_force(cls, kwargs, shape):
    module = cls(**kwargs)
    counts = tf.count(module, input_size=shape).total
    out = module(torch.zeros(shape)).shape
    dims = len(shape) - 2
    channels = shape[0] * shape[1]
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims  # noqa: E731
    by_loop = max_pool_comparisons_loop(
        shape[2:], out[2:], channels, as_tuple(module.kernel_size), as_tuple(module.stride),
        as_tuple(module.padding), as_tuple(module.dilation))
    by_pytorch = channels * window_taps_one_hot(module, shape[2:]) - out.numel()
    assert counts.comparisons == by_loop == by_pytorch
    assert counts.macs == counts.muls == counts.adds == counts.backward_flops == 0


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(3, 2, 0, True), (3, 1, 1, False), (2, 2, 0, True),
                                                             (5, 3, 2, True)])
def test_max_pool2d_comparisons_sum_pooling(kernel, stride, padding, ceil_mode):
    shape = (2, 3, 15, 12)
    counts = tf.count(nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode), input_size=shape).total
    assert counts.comparisons == max_pool_comparisons_sum_pool(shape, kernel, stride, padding, ceil_mode)


@pytest.mark.parametrize("cls,out,shape", [
    (nn.AdaptiveMaxPool1d, 4, (2, 3, 10)),
    (nn.AdaptiveMaxPool2d, (3, 5), (1, 2, 7, 11)),
    (nn.AdaptiveMaxPool2d, 1, (1, 8, 7, 7)),
    (nn.AdaptiveMaxPool3d, (2, 3, 2), (1, 2, 5, 7, 3)),
])
def test_adaptive_max_pool_comparisons_brute_force(cls, out, shape):
    module = cls(out)
    counts = tf.count(module, input_size=shape).total
    outputs = module(torch.zeros(shape)).numel()
    assert counts.comparisons == shape[0] * shape[1] * window_taps_one_hot(module, shape[2:]) - outputs


def test_adaptive_max_pool_global_is_all_but_one():
    # AdaptiveMaxPool2d(1) over 7x7: one window of 49 elements: 48 comparisons per channel.
    counts = tf.count(nn.AdaptiveMaxPool2d(1), input_size=(2, 10, 7, 7)).total
    assert counts.comparisons == 2 * 10 * 48


def test_average_pooling_and_activations_are_free():
    model = nn.Sequential(nn.AvgPool2d(2), nn.ReLU(), nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    prof = tf.count(model, input_size=(1, 3, 8, 8))
    # only elementwise work: pool 48 outputs x 4 inputs, ReLU 48 x 1, batch norm (training) 48 x 5,
    # adaptive pool 48 inputs
    assert work(prof.total).replace(params=0) == tf.Counts(elementwise_flops=192 + 48 + 240 + 48)
    assert prof.unsupported == {}
    assert [r.type for r in prof.records] == ["AvgPool2d", "ReLU", "BatchNorm2d", "AdaptiveAvgPool2d", "Flatten"]


def test_frozen_first_layer_backward():
    # Conv(3->8, k3) on 1x3x8x8 -> 1x8x6x6: 288 outputs x 27 products = 7,776 MACs.
    # Linear(288->10): 2,880 MACs. The first layer's input needs no gradient and its weights are
    # frozen: it spends nothing backward; the linear layer spends 2 x 2,880 for its weight and,
    # because the conv output does not need a gradient either, nothing for its input.
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(0), nn.Linear(288, 10))
    model[0].requires_grad_(False)
    counts = tf.count(model, input_size=(1, 3, 8, 8)).total
    assert counts.macs == 7_776 + 2_880
    assert counts.grad_weight_flops == 2 * 2_880
    assert counts.grad_input_flops == 0
    forward, backward = flop_counter(model, [(1, 3, 8, 8)])
    assert (counts.flops, counts.backward_flops) == (forward, backward)


def test_backward_is_twice_forward_when_everything_trains():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(64, 5))
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    counts = tf.count(model, x).total
    assert counts.backward_flops == 2 * counts.flops
