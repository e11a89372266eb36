"""count() and profile(): shape-only vs real passes, the model left untouched, clear errors."""
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchflops as tf


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, before):
    after = model.state_dict()
    return after.keys() == before.keys() and all(
        torch.equal(after[k], before[k]) and after[k].dtype == before[k].dtype for k in before)


def test_shape_only_and_real_pass_agree():
    model = Net()
    shape_only = tf.count(model, input_size=(2, 3, 8, 8))
    real = tf.count(model, input_size=(2, 3, 8, 8), device="cpu")
    assert shape_only.total == real.total
    assert [r.counts for r in shape_only.records] == [r.counts for r in real.records]
    with tf.profile(model) as own:
        model(torch.zeros(2, 3, 8, 8))
    assert own.total == real.total


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_exactly_as_it_was(device, training):
    model = Net().train(training)
    model.fc.requires_grad_(False)
    seen = []
    model.conv.register_forward_hook(lambda m, a, o: seen.append("first"))
    model.conv.register_forward_hook(lambda m, a, o: seen.append("second"))
    before, attributes = _state(model), {id(m): dict(vars(m)) for m in model.modules()}
    tf.count(model, input_size=(2, 3, 8, 8), device=device)
    assert _same_state(model, before)                      # BatchNorm statistics untouched
    assert int(model.bn.num_batches_tracked) == 0
    assert all(m.training is training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [True] * 4 + [False] * 2
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert {id(m): dict(vars(m)) for m in model.modules()} == attributes
    assert len(model.conv._forward_hooks) == 2 and not model.conv._forward_pre_hooks
    seen.clear()
    model(torch.zeros(1, 3, 8, 8))
    assert seen == ["first", "second"]


def test_a_raising_forward_leaves_no_hooks_and_names_the_module():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))

        def forward(self, x):
            return self.inner(x)

    model = Broken()
    for device in ("meta", "cpu"):
        with pytest.raises(RuntimeError) as info:
            tf.count(model, input_size=(3, 4), device=device)
        notes = getattr(info.value, "__notes__", [])
        assert any("inner.1" in n and "3x4 float32" in n for n in notes), notes
    with pytest.raises(RuntimeError):
        with tf.profile(model):
            model(torch.zeros(3, 4))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_users_exception_keeps_its_type():
    class Picky(nn.Module):
        def forward(self, x):
            raise KeyError("no such thing")

    with pytest.raises(KeyError, match="no such thing"):
        tf.count(Picky(), input_size=(1,))


def test_data_dependent_forward_suggests_cpu():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(tf.ShapeOnlyError, match="device='cpu'"):
        tf.count(Branchy(), input_size=(2, 4))
    # on real zeros the branch is not taken; with ones it is: 2 x 16 MACs
    assert tf.count(Branchy(), torch.ones(2, 4), device="cpu").total.macs == 32


def test_model_built_on_meta_counts():
    with torch.device("meta"):
        model = Net()
    assert tf.count(model, input_size=(2, 3, 8, 8)).total == tf.count(Net(), input_size=(2, 3, 8, 8)).total
    with pytest.raises(ValueError, match="meta"):
        tf.count(model, input_size=(2, 3, 8, 8), device="cpu")


def test_model_needing_a_real_device_type_falls_back_to_fake_tensors():
    class Autocasting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.fc(x)

    prof = tf.count(Autocasting(), input_size=(3, 4))
    assert prof.total.macs == 3 * 16
    assert prof.meta["device"] == "fake"


def test_grad_mode_does_not_change_backward_counts():
    model = Net()
    reference = tf.count(model, input_size=(1, 3, 8, 8)).total
    with torch.no_grad():
        assert tf.count(model, input_size=(1, 3, 8, 8)).total == reference
    with torch.inference_mode():
        assert tf.count(model, input_size=(1, 3, 8, 8), device="cpu").total == reference
    # profile() under no_grad propagates "needs grad" itself
    with torch.no_grad(), tf.profile(model) as prof:
        model(torch.zeros(1, 3, 8, 8))
    assert prof.total == reference
    assert reference.grad_input_flops > 0 and reference.grad_weight_flops > 0


def test_example_inputs_keep_their_requires_grad():
    model = nn.Linear(4, 3)
    x = torch.zeros(2, 4, requires_grad=True)
    # 2 x 3 x 4 = 24 MACs; the input needs a gradient: 48 FLOPs for it, 48 for the weight
    counts = tf.count(model, x).total
    assert (counts.grad_input_flops, counts.grad_weight_flops) == (48, 48)
    assert tf.count(model, x.detach()).total.grad_input_flops == 0


def test_shared_module_counts_per_call_params_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.alias = self.fc

        def forward(self, x):
            return self.alias(self.fc(x))

    prof = tf.count(Twice(), input_size=(1, 4))
    assert [r.name for r in prof.records] == ["fc", "fc"]
    assert prof.total.macs == 2 * 16
    assert prof.total.params == 20
    assert [r.counts.params for r in prof.records] == [20, 20]


def test_several_inputs_and_kwargs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(6, 2)

        def forward(self, x, y, *, scale=1.0):
            return self.a(x) * scale + self.b(y)

    prof = tf.count(Two(), input_size=[(3, 4), (3, 6)], kwargs={"scale": 2.0})
    assert prof.total.macs == 3 * 2 * 4 + 3 * 2 * 6
    assert tf.count(Two(), torch.zeros(3, 4), torch.zeros(3, 6)).total == prof.total


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=(1, 0, 3)), ValueError, "positive integer"),
    (dict(input_size=(1, -2)), ValueError, "positive integer"),
    (dict(input_size=(1, 2.5)), ValueError, "positive integer"),
    (dict(input_size="1,3"), ValueError, "input_size"),
    (dict(input_size=(2, 4), device="tpu"), ValueError, "unknown device 'tpu'"),
    (dict(input_size=(2, 4), device=3), TypeError, "device"),
    (dict(input_size=(2, 4), dtype="float32"), TypeError, "torch.dtype"),
    (dict(input_size=(2, 4), kwargs=[1]), TypeError, "kwargs"),
    (dict(input_size=(2, 4), strict="yes"), TypeError, "strict"),
    (dict(), ValueError, "input_size"),
])
def test_bad_arguments_are_rejected_before_anything_runs(kwargs, error, match):
    model = nn.Linear(4, 2)
    before = _state(model)
    with pytest.raises(error, match=match):
        tf.count(model, **kwargs)
    assert _same_state(model, before) and not model._forward_hooks


def test_inputs_and_input_size_together_are_an_error():
    with pytest.raises(ValueError, match="not both"):
        tf.count(nn.Linear(4, 2), torch.zeros(1, 4), input_size=(1, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        tf.count(lambda x: x, input_size=(1, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        with tf.profile("model"):
            pass


def test_forward_without_arguments_needs_no_inputs():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self):
            return self.fc(torch.zeros(1, 3, device=self.fc.weight.device))

    assert tf.count(Constant()).total.macs == 9


def test_profile_counts_every_call_and_repeats_do_not_accumulate():
    model = Net()
    with tf.profile(model) as prof:
        model(torch.zeros(1, 3, 8, 8))
        model(torch.zeros(1, 3, 8, 8))
    once = tf.count(model, input_size=(1, 3, 8, 8)).total
    assert prof.total.macs == 2 * once.macs
    assert tf.count(model, input_size=(1, 3, 8, 8)).total == once


def test_nested_profiles_both_count():
    model = Net()
    with tf.profile(model) as outer:
        model(torch.zeros(1, 3, 8, 8))
        with tf.profile(model) as inner:
            model(torch.zeros(1, 3, 8, 8))
    assert outer.total.macs == 2 * inner.total.macs > 0


def test_profiles_in_threads_do_not_mix():
    model = Net()
    before = _state(model)
    results = {}

    def work(batch):
        results[batch] = tf.count(model, input_size=(batch, 3, 8, 8)).total.macs

    threads = [threading.Thread(target=work, args=(b % 4 + 1,)) for b in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = tf.count(model, input_size=(1, 3, 8, 8)).total.macs
    assert results == {b: b * single for b in (1, 2, 3, 4)}
    assert _same_state(model, before)
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}
