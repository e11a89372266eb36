"""Property tests: random layer configurations, every field against an independent oracle.

Deterministic (``derandomize=True``): the same examples on every run. Example counts add up to
2,350 (EXAMPLES plus 250 recurrent layers); the whole file runs in about a minute on two cores.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import torchflops as tf
from oracles import (conv_products, conv_transpose_products, exact_muls_adds, flop_counter, max_pool_comparisons_loop,
                     window_taps_one_hot)

EXAMPLES = {"conv": 700, "conv_transpose": 500, "linear": 300, "max_pool": 400, "adaptive_max_pool": 200}


def _settings(kind):
    return settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _grad_flags(data, module):
    input_grad = data.draw(st.booleans(), label="input_grad")
    if data.draw(st.booleans(), label="frozen"):
        module.requires_grad_(False)
    return input_grad


def _check_backward(module, shape, counts, input_grad, groups):
    forward, backward = flop_counter(module, [shape], input_grad=input_grad)
    assert counts.flops == forward
    # PyTorch's counter overcounts grouped weight gradients by `groups`; we count 2 per MAC.
    assert counts.grad_input_flops + groups * counts.grad_weight_flops == backward
    assert counts.grad_input_flops == (2 * counts.macs if input_grad else 0)
    assert counts.grad_weight_flops == (2 * counts.macs if module.weight.requires_grad else 0)


@pytest.mark.slow
@_settings("conv")
@given(st.data())
def test_conv(data):
    dims = data.draw(st.integers(1, 3), label="dims")
    groups = data.draw(st.integers(1, 3), label="groups")
    size = 8 if dims < 3 else 5
    kernel = tuple(data.draw(st.integers(1, 4), label="k") for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2), label="d") for _ in range(dims))
    stride = tuple(data.draw(st.integers(1, 3), label="s") for _ in range(dims))
    same = data.draw(st.booleans(), label="same") and stride == (1,) * dims
    padding = "same" if same else tuple(data.draw(st.integers(0, 2), label="p") for _ in range(dims))
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(max(1, r - (0 if same else 2 * p)) + data.draw(st.integers(0, size), label="extra")
                    for r, p in zip(reach, padding if not same else (0,) * dims))
    mode = data.draw(st.sampled_from(["zeros", "zeros", "reflect", "circular"]), label="mode")
    if mode != "zeros" and (same or any(p >= s for p, s in zip(padding, spatial))):
        mode = "zeros"
    module = CONV[dims](groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3)), kernel,
                        stride=stride, padding=padding, dilation=dilation, groups=groups,
                        bias=data.draw(st.booleans(), label="bias"), padding_mode=mode)
    shape = (data.draw(st.integers(1, 2), label="batch"), module.in_channels) + spatial
    input_grad = _grad_flags(data, module)
    counts = tf.count(module, torch.zeros(shape, requires_grad=input_grad)).total
    _check_backward(module, shape, counts, input_grad, groups)
    # every output element sums in/groups x prod(kernel) products, padded taps included
    products = conv_products(module, shape)
    assert (counts.muls, counts.adds) == exact_muls_adds(products, bias=module.bias is not None)


@pytest.mark.slow
@_settings("conv_transpose")
@given(st.data())
def test_conv_transpose(data):
    dims = data.draw(st.integers(1, 3), label="dims")
    groups = data.draw(st.integers(1, 3), label="groups")
    kernel = tuple(data.draw(st.integers(1, 4), label="k") for _ in range(dims))
    stride = tuple(data.draw(st.integers(1, 3), label="s") for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2), label="d") for _ in range(dims))
    padding = tuple(data.draw(st.integers(0, d * (k - 1)), label="p") for k, d in zip(kernel, dilation))
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1), label="op") for s, d in zip(stride, dilation))
    spatial = tuple(data.draw(st.integers(1, 6 if dims < 3 else 4), label="L") for _ in range(dims))
    out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1
           for n, s, p, d, k, op in zip(spatial, stride, padding, dilation, kernel, output_padding)]
    if min(out) < 1:
        return
    module = CONV_T[dims](groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3)), kernel,
                          stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                          bias=data.draw(st.booleans(), label="bias"), dilation=dilation)
    shape = (data.draw(st.integers(1, 2), label="batch"), module.in_channels) + spatial
    input_grad = _grad_flags(data, module)
    counts = tf.count(module, torch.zeros(shape, requires_grad=input_grad)).total
    _check_backward(module, shape, counts, input_grad, groups)
    products = conv_transpose_products(shape, module.weight.shape, stride=stride, padding=padding,
                                       output_padding=output_padding, groups=groups, dilation=dilation)
    assert (counts.muls, counts.adds) == exact_muls_adds(products, bias=module.bias is not None)


@pytest.mark.slow
@_settings("linear")
@given(lead=st.lists(st.integers(1, 4), max_size=3), features=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       bias=st.booleans(), input_grad=st.booleans(), frozen=st.booleans())
def test_linear(lead, features, bias, input_grad, frozen):
    module = nn.Linear(*features, bias=bias).requires_grad_(not frozen)
    shape = tuple(lead) + (features[0],)
    counts = tf.count(module, torch.zeros(shape, requires_grad=input_grad)).total
    _check_backward(module, shape, counts, input_grad, groups=1)
    products = torch.ones(shape, dtype=torch.float64) @ torch.ones(features, dtype=torch.float64)
    assert (counts.muls, counts.adds) == exact_muls_adds(products, bias=bias)


MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
ADAPTIVE_MAX_POOL = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


@pytest.mark.slow
@_settings("max_pool")
@given(st.data())
def test_max_pool(data):
    dims = data.draw(st.integers(1, 3), label="dims")
    kernel = tuple(data.draw(st.integers(1, 4), label="k") for _ in range(dims))
    stride = tuple(data.draw(st.integers(1, 3), label="s") for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2), label="d") for _ in range(dims))
    padding = tuple(data.draw(st.integers(0, k // 2), label="p") for k in kernel)
    spatial = tuple(max(1, d * (k - 1) + 1 - 2 * p) + data.draw(st.integers(0, 6 if dims < 3 else 3))
                    for k, d, p in zip(kernel, dilation, padding))
    module = MAX_POOL[dims](kernel, stride, padding, dilation, ceil_mode=data.draw(st.booleans(), label="ceil"))
    shape = (data.draw(st.integers(1, 2), label="batch"), data.draw(st.integers(1, 3), label="channels")) + spatial
    out = module(torch.zeros(shape)).shape
    counts = tf.count(module, input_size=shape).total
    channels = shape[0] * shape[1]
    windows = int((module(torch.ones(shape)) > 0).sum())   # windows that read an element
    by_pytorch = channels * window_taps_one_hot(module, spatial) - windows
    by_loop = max_pool_comparisons_loop(spatial, out[2:], channels, kernel, stride, padding, dilation)
    assert counts.comparisons == by_pytorch == by_loop
    assert counts.macs == counts.backward_flops == 0


@pytest.mark.slow
@_settings("adaptive_max_pool")
@given(st.data())
def test_adaptive_max_pool(data):
    dims = data.draw(st.integers(1, 3), label="dims")
    spatial = tuple(data.draw(st.integers(1, 9 if dims < 3 else 5), label="L") for _ in range(dims))
    output = tuple(data.draw(st.integers(1, n), label="O") for n in spatial)
    module = ADAPTIVE_MAX_POOL[dims](output)
    shape = (1, data.draw(st.integers(1, 3), label="channels")) + spatial
    counts = tf.count(module, input_size=shape).total
    outputs = module(torch.zeros(shape)).numel()
    assert counts.comparisons == shape[1] * window_taps_one_hot(module, spatial) - outputs


RECURRENT = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


@pytest.mark.slow
@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_recurrent(data):
    kind = data.draw(st.sampled_from(sorted(RECURRENT)), label="kind")
    hidden = data.draw(st.integers(1, 6), label="hidden")
    options = dict(num_layers=data.draw(st.integers(1, 3), label="layers"),
                   bidirectional=data.draw(st.booleans(), label="bidirectional"),
                   bias=data.draw(st.booleans(), label="bias"),
                   batch_first=data.draw(st.booleans(), label="batch_first"))
    if kind == "LSTM":
        options["proj_size"] = data.draw(st.integers(0, hidden - 1), label="proj_size")
    module = RECURRENT[kind](data.draw(st.integers(1, 5), label="inputs"), hidden, **options)
    steps, batch = data.draw(st.integers(1, 4), label="steps"), data.draw(st.integers(1, 3), label="batch")
    shape = (batch, steps, module.input_size) if module.batch_first else (steps, batch, module.input_size)
    input_grad = _grad_flags(data, module)
    counts = tf.count(module, torch.zeros(shape, requires_grad=input_grad)).total
    # PyTorch's counter decomposes recurrent layers into per-step matmuls on the meta device
    forward, backward = flop_counter(module, [shape], input_grad=input_grad)
    assert (counts.flops, counts.backward_flops) == (forward, backward)
    assert counts.muls == counts.macs
