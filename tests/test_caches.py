"""A shape-only pass leaves no stand-in in the model: caches the forward fills in place are put back."""
import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import torchflops as tf


def _standins(model: nn.Module) -> list[str]:
    """Meta or fake tensors reachable from the modules' attributes (dicts, lists, sets, tuples)."""
    found = []

    def visit(value, where, seen):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.is_meta or isinstance(value, FakeTensor):
                found.append(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{where}[{key!r}]", seen)
        elif isinstance(value, (list, tuple, set)):
            for i, item in enumerate(value):
                visit(item, f"{where}[{i}]", seen)

    for name, module in model.named_modules():
        seen = set()
        for key, value in vars(module).items():
            visit(value, f"{name}.{key}", seen)
    return found


class Caching(nn.Module):
    """Caches a tensor per device type under autocast (which sends shape-only to FakeTensorMode)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.cache = {}
        self.history = [[]]

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.device.type not in self.cache:
                self.cache[x.device.type] = self.fc.weight.detach() * 2
            self.history[0].append(x)
            return self.fc(x) + x @ self.cache[x.device.type]


def test_caches_filled_in_place_are_emptied_and_the_next_real_forward_works():
    model = Caching()
    prof = tf.count(model, input_size=(2, 4))
    assert prof.meta["device"] == "fake"      # autocast needs a real device type
    # Linear 2x4 outputs x 4 products, and x @ cache the same: 2 x 32
    assert prof.total.macs == 64
    assert model.cache == {} and model.history == [[]]
    assert _standins(model) == []
    x = torch.ones(2, 4)
    y = model(x)
    assert not isinstance(y, FakeTensor) and not y.is_meta
    torch.testing.assert_close(y, model.fc(x) + x @ (2 * model.fc.weight.detach()))


def test_a_cache_already_holding_real_tensors_is_put_back_as_it_was():
    model = Caching()
    x = torch.ones(2, 4)
    model(x)
    cached, past = model.cache["cpu"], model.history[0][0]
    tf.count(model, input_size=(2, 4))
    tf.count(model, input_size=(2, 4), device="cpu")
    assert list(model.cache) == ["cpu"] and model.cache["cpu"] is cached
    assert len(model.history[0]) == 1 and model.history[0][0] is past


class BiasCache(nn.Module):
    """The pattern of timm's LeViT attention: a dict keyed by device, filled in eval mode."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))
        self.attention_bias_cache = {}

    def forward(self, x):
        key = str(x.device)
        if key not in self.attention_bias_cache:
            self.attention_bias_cache[key] = self.bias * 1
        return x + self.attention_bias_cache[key]


def test_a_meta_entry_is_not_left_in_a_device_keyed_cache():
    model = BiasCache().eval()
    tf.count(model, input_size=(2, 3))
    assert model.attention_bias_cache == {}
    assert _standins(model) == []


timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["levit_128s", "efficientformer_l1", "tiny_vit_5m_224", "efficientvit_m0"])
def test_timm_attention_bias_caches_hold_no_stand_in(name):
    model = timm.create_model(name, pretrained=False).eval()
    caches = [m.attention_bias_cache for m in model.modules() if hasattr(m, "attention_bias_cache")]
    assert caches
    x = torch.zeros(1, 3, 224, 224)
    prof = tf.count(model, input_size=tuple(x.shape))
    assert prof.total.macs > 0
    assert all(cache == {} for cache in caches)
    assert _standins(model) == []
    with torch.no_grad():
        y = model(x)        # the real forward fills its cache with real tensors
    assert not y.is_meta and all(not t.is_meta for cache in caches for t in cache.values())
