"""The numbers of the seed documents (shared/seeds/), reproduced."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchflops as tf
from blocks import InceptionBlock, InceptionBlockV2, NaiveBlock
from oracles import flop_counter, max_pool_comparisons_sum_pool


def homework_layer(bias=True):
    return nn.Sequential(nn.Conv2d(30, 12, kernel_size=4, stride=2, padding=1, bias=bias), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=3, stride=2))


def test_homework_question_1_output_sizes():
    prof = tf.count(homework_layer(), input_size=(1, 30, 14, 14))
    conv, relu, pool = prof.records
    # floor((14 + 2*1 - 4) / 2) + 1 = 7;  floor((7 - 3) / 2) + 1 = 3
    assert conv.output_shapes == ((1, 12, 7, 7),)
    assert pool.output_shapes == ((1, 12, 3, 3),)


def test_homework_question_1_muls_adds_comparisons():
    counts = tf.count(homework_layer(), input_size=(1, 30, 14, 14)).total
    # muls: 7 x 7 outputs x 12 filters x (30 x 4 x 4) products = 282,240
    assert counts.muls == 282_240
    # adds: each output sums 480 products (479 adds) and adds its bias: 588 x 480 = 282,240.
    # The sheet's 264,600 = 7*7*(16-1)*12*30 drops the 29 additions across the 30 input channels.
    assert counts.adds == 282_240
    # comparisons: 3 x 3 outputs x 12 channels x (9 - 1) = 864
    assert counts.comparisons == 864
    assert counts.macs == 282_240


def test_homework_question_1_without_bias():
    counts = tf.count(homework_layer(bias=False), input_size=(1, 30, 14, 14)).total
    # 588 outputs x 479 adds = 281,652
    assert counts.adds == 281_652


# count_conv_ops(kernel, out_channels, (in_channels, 28, 28)) = prod of all: the notebook's figures.
def _ops(k, out_ch, in_ch):
    return k * k * out_ch * in_ch * 28 * 28


def test_notebook_naive_block():
    expected = _ops(1, 128, 256) + _ops(3, 192, 256) + _ops(5, 96, 256)
    assert expected == 854_196_224
    assert tf.count(NaiveBlock(), input_size=(1, 256, 28, 28)).total.macs == expected


def test_notebook_reduced_block_and_branches():
    prof = tf.count(InceptionBlock(), input_size=(1, 256, 28, 28))
    branches = [_ops(1, 128, 256),
                _ops(1, 64, 256) + _ops(3, 192, 64),
                _ops(1, 64, 256) + _ops(5, 96, 64),
                _ops(1, 64, 256)]
    assert branches == [25_690_112, 99_549_184, 133_267_456, 12_845_056]
    assert [prof.module(f"branch{i}").macs for i in range(1, 5)] == branches
    assert prof.total.macs == sum(branches) == 271_351_808
    text = prof.branches("")
    # the notebook prints shares 0.095 / 0.367 / 0.491 / 0.047
    for share in ("9.5%", "36.7%", "49.1%", "4.7%"):
        assert share in text


def test_notebook_v2_block():
    expected = (_ops(1, 128, 256) + _ops(1, 64, 256) + _ops(3, 192, 64) + _ops(1, 64, 256)
                + _ops(3, 96, 64) + _ops(3, 96, 96) + _ops(1, 64, 256))
    assert expected == 259_309_568
    assert tf.count(InceptionBlockV2(), input_size=(1, 256, 28, 28)).total.macs == expected


@pytest.mark.parametrize("block", [NaiveBlock, InceptionBlock, InceptionBlockV2])
def test_notebook_blocks_match_flop_counter(block):
    forward, backward = flop_counter(block(), [(1, 256, 28, 28)])
    counts = tf.count(block(), input_size=(1, 256, 28, 28)).total
    assert counts.flops == forward
    assert counts.backward_flops == backward


def _googlenet():
    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()


def test_googlenet_macs():
    # torchvision publishes 1.498 "GFLOPS" (MACs) for GoogLeNet_Weights.IMAGENET1K_V1
    prof = tf.count(_googlenet(), input_size=(1, 3, 224, 224))
    assert prof.total.macs == 1_498_376_192
    assert round(prof.total.macs / 1e9, 3) == torchvision.models.GoogLeNet_Weights.DEFAULT.meta["_ops"]
    forward, backward = flop_counter(_googlenet(), [(1, 3, 224, 224)])
    assert (prof.total.flops, prof.total.backward_flops) == (forward, backward)


def test_googlenet_max_pool_comparisons_brute_force():
    model = _googlenet()
    calls = []
    hooks = [m.register_forward_pre_hook(lambda m, args: calls.append((m, tuple(args[0].shape))))
             for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert len(calls) == 4 + 9   # the four stem/stage pools and one per Inception block
    expected = sum(max_pool_comparisons_sum_pool(shape, m.kernel_size, m.stride, m.padding, m.ceil_mode)
                   for m, shape in calls)
    assert tf.count(model, input_size=(1, 3, 224, 224)).total.comparisons == expected


def test_sum_pool_oracle_agrees_with_the_homework():
    # 7x7 map, 3x3 windows, stride 2: 9 windows of 9 valid elements: 8 comparisons each
    assert max_pool_comparisons_sum_pool((1, 1, 7, 7), 3, 2, 0, False) == 9 * 8
    assert F.max_pool2d(torch.zeros(1, 1, 7, 7), 3, 2).shape[-1] == 3
