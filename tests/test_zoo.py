"""The torchvision classification zoo: MACs equal the published ``meta["_ops"]``, FLOPs equal
FlopCounterMode on meta, for every model at its weights' crop size."""
from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf

torchvision = pytest.importorskip("torchvision")
from torchvision.models import get_model, get_model_weights, list_models  # noqa: E402

from test_functional import brute_force_comparisons  # noqa: E402

# vit_h_14 is allowed out: at 518x518 it is by far the slowest to count
ZOO = [name for name in list_models(module=torchvision.models) if name != "vit_h_14"]
# without these the constructors warn that their default initialisation will change
OPTIONS = {"googlenet": dict(aux_logits=False, init_weights=False),
           "inception_v3": dict(aux_logits=False, init_weights=False)}


@contextlib.contextmanager
def _parameters_on_meta():
    """Constructors that compute on real tensors (RegNet's widths call ``.tolist()``) run on CPU,
    but each parameter and buffer moves to meta as it is registered: no weights are kept or
    initialised, so the 128 GFLOP RegNet builds in a moment."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor.to("meta") if tensor is not None else None, persistent)

    with mock.patch.object(nn.Module, "register_parameter", parameter), \
            mock.patch.object(nn.Module, "register_buffer", buffer):
        yield


def build(name: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return get_model(name, **OPTIONS.get(name, {})).eval()
    except NotImplementedError:         # "Cannot copy out of meta tensor": needs real values
        with _parameters_on_meta():
            return get_model(name, **OPTIONS.get(name, {})).eval()


def crop(name: str) -> int:
    return get_model_weights(name).DEFAULT.transforms().crop_size[0]


def meta_flops(model: nn.Module, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops()


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_published_ops_and_oracle(name):
    model, size = build(name), crop(name)
    prof = tf.count(model, input_size=(1, 3, size, size), strict=True)
    assert round(prof.total.macs / 1e9, 3) == get_model_weights(name).DEFAULT.meta["_ops"]
    assert prof.total.flops == meta_flops(model, size)


def test_regnet_builds_off_meta_and_counts_shape_only():
    with pytest.raises(NotImplementedError):
        with torch.device("meta"):
            get_model("regnet_y_400mf")
    model = build("regnet_y_400mf")
    assert all(p.is_meta for p in model.parameters())
    assert round(tf.count(model, input_size=(1, 3, 224, 224)).total.macs / 1e9, 3) == 0.402


def test_vit_b_16():
    model = build("vit_b_16")
    prof = tf.count(model, input_size=(1, 3, 224, 224), strict=True)
    assert round(prof.total.macs / 1e9, 3) == 17.564
    assert prof.total.flops == meta_flops(model, 224)
    # the encoder's attention is counted by the MultiheadAttention formula, once per block
    assert sum(r.type == "MultiheadAttention" for r in prof.records) == 12


def test_inception_v3_counts_functional_max_pools():
    model = build("inception_v3")
    prof = tf.count(model, input_size=(1, 3, 299, 299), strict=True)
    assert prof.total.macs == 5_713_216_096

    # brute force over every max-pool call, nn.MaxPool2d's (which call F.max_pool2d) included
    brute = []
    original = F.max_pool2d

    def counting(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        out = original(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
        two = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        brute.append(brute_force_comparisons(x.shape, out.shape, two(kernel_size), two(stride or kernel_size),
                                             two(padding), two(dilation)))
        return out

    with mock.patch.object(F, "max_pool2d", counting), torch.no_grad():
        model(torch.empty(1, 3, 299, 299, device="meta"))
    assert prof.total.comparisons == sum(brute)

    functional = [r for r in prof.records if r.type == "max_pool2d"]
    assert {r.name for r in functional} == {"Mixed_6a", "Mixed_7a"}
    assert len(brute) == 2 + len(functional)        # maxpool1 and maxpool2 are modules
    assert 0 < sum(r.counts.comparisons for r in functional) < prof.total.comparisons
