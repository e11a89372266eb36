"""Wrappers, compiled and scripted modules, odd signatures, interrupted passes."""
import collections
import warnings

import pytest
import torch
from torch import nn

import torchflops as tf

# Conv2d(3->4, k3) on 1x3x8x8 -> 1x4x6x6: 144 outputs x 27 products
CONV_MACS = 144 * 27


def _conv():
    return nn.Sequential(nn.Conv2d(3, 4, 3))


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit.* are deprecated
        yield


def test_data_parallel_wrapper():
    model = nn.DataParallel(_conv())
    assert tf.count(model, input_size=(1, 3, 8, 8)).total.macs == CONV_MACS
    with tf.profile(model) as prof:
        model(torch.zeros(1, 3, 8, 8))
    assert prof.total.macs == CONV_MACS
    assert [r.name for r in prof.records] == ["module.0"]


def test_compiled_model_counts_the_original_module():
    model = torch.compile(_conv())
    assert tf.count(model, input_size=(1, 3, 8, 8)).total.macs == CONV_MACS
    with pytest.raises(TypeError, match="_orig_mod"):
        with tf.profile(model):
            pass


def test_scripted_and_traced_submodules_are_counted_through_their_aten_operations():
    # Conv2d(3->4, k3) on 8x8: 4x6x6 = 144 outputs x 27 products = 3,888 MACs; Linear 144->2: 288
    scripted = nn.Sequential(torch.jit.script(nn.Conv2d(3, 4, 3)), nn.Flatten(), nn.Linear(144, 2))
    for device in ("meta", "cpu"):
        prof = tf.count(scripted, input_size=(1, 3, 8, 8), device=device, strict=True)
        assert prof.total.macs == 3888 + 288
        assert [(r.name, r.type) for r in prof.records] == [("0", "aten::convolution"), ("1", "Flatten"),
                                                            ("2", "Linear")]
    traced = nn.Sequential(torch.jit.trace(nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 8, 8)))
    assert tf.count(traced, input_size=(1, 3, 8, 8), strict=True).total.macs == 3888
    with pytest.raises(TypeError, match="TorchScript"):
        tf.count(torch.jit.script(_conv()), input_size=(1, 3, 8, 8))


def test_keyword_only_inputs_and_dict_outputs():
    class KeywordOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 5)})

        def forward(self, *, x):
            return {name: head(x) for name, head in self.heads.items()}

    prof = tf.count(KeywordOnly(), kwargs={"x": torch.zeros(2, 4)})
    assert prof.total.macs == 2 * 4 * (3 + 5)
    assert prof.module_shapes("") == (((2, 4),), ((2, 3), (2, 5)))


def test_namedtuple_outputs():
    Pair = collections.namedtuple("Pair", "logits features")

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return Pair(self.fc(x), x)

    prof = tf.count(Named(), input_size=(3, 4))
    assert prof.total.macs == 24
    assert prof.module_shapes("")[1] == ((3, 2), (3, 4))


def test_autocast_does_not_change_counts():
    model = _conv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert tf.count(model, input_size=(1, 3, 8, 8)).total.macs == CONV_MACS
        assert tf.count(model, input_size=(1, 3, 8, 8), device="cpu").total.macs == CONV_MACS


def test_interrupted_pass_leaves_the_model_as_it_was():
    class Interrupted(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            self.bn(x)
            raise KeyboardInterrupt

    model = Interrupted().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for device in ("meta", "cpu"):
        with pytest.raises(KeyboardInterrupt):
            tf.count(model, input_size=(2, 4), device=device)
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert model.training


def test_profile_survives_a_caught_exception_inside_the_block():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with tf.profile(model) as prof:
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 5))
        model(torch.zeros(1, 4))
    # the failed call counted nothing; the good one counts both layers: 16 + 8 MACs
    assert prof.total.macs == 24


def test_a_second_count_does_not_see_the_first():
    model = _conv()
    first = tf.count(model, input_size=(1, 3, 8, 8))
    second = tf.count(model, input_size=(1, 3, 8, 8))
    assert len(first.records) == len(second.records) == 1
    assert first.total == second.total


def test_module_called_in_two_nested_profiles_counts_in_both():
    inner = nn.Linear(4, 4)
    outer = nn.Sequential(inner, nn.Linear(4, 2))
    with tf.profile(outer) as whole, tf.profile(inner) as part:
        outer(torch.zeros(1, 4))
    assert part.total.macs == 16
    assert whole.total.macs == 16 + 8


def test_a_real_shape_error_comes_without_a_logged_traceback(caplog):
    # the shape-only pass retries under FakeTensorMode, which logs a traceback when its meta
    # kernel fails; the user gets the error itself, once
    import logging
    with caplog.at_level(logging.ERROR):
        with pytest.raises(RuntimeError, match="smaller than kernel size") as info:
            tf.count(nn.AvgPool3d((2, 7, 7)), input_size=(1, 3, 1, 3, 3))
    assert not [r for r in caplog.records if r.name.startswith("torch._subclasses")]
    assert not logging.getLogger("torch._subclasses.fake_tensor").filters
    assert any("AvgPool3d" in note and "1x3x1x3x3" in note for note in info.value.__notes__)
