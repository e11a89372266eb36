"""The formula registry: MRO lookup, claims, overrides, free vs unsupported, strict."""
import pytest
import torch
from torch import nn

import torchflops as tf
from torchflops._registry import Registry


class MyConv(nn.Conv2d):
    """A subclass with no formula of its own inherits Conv2d's."""


class Scale(nn.Module):
    """Own parameters, no formula, only elementwise work (like transformers' LlamaRMSNorm): free."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(4))

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.gamma * (x * torch.rsqrt(variance + 1e-6)).to(x.dtype)


class Solver(nn.Module):
    """Own parameters, no formula, work torchflops has no formula for: unsupported."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.eye(4))

    def forward(self, x):
        return torch.linalg.matrix_exp(self.a)[0] * x


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_subclass_inherits_formula_along_the_mro():
    # 1x3x6x6 -> 1x5x4x4: 80 outputs x 27 products
    prof = tf.count(MyConv(3, 5, 3), input_size=(1, 3, 6, 6))
    assert prof.total.macs == 80 * 27
    assert prof.records[0].type == "MyConv"


def test_one_formula_for_several_types_and_duplicates_are_errors():
    registry = Registry()

    @registry.register(nn.ReLU, nn.GELU)
    def zero(module, call):
        return tf.Counts()

    assert registry.get(nn.ReLU) is zero and registry.get(nn.GELU) is zero

    def other(module, call):
        return tf.Counts()

    with pytest.raises(ValueError, match="already registered"):
        registry.register(nn.ReLU)(other)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(nn.SiLU, nn.GELU)(other)
    assert registry.get(nn.SiLU) is None            # nothing registered when one target clashes
    with pytest.raises(ValueError, match="already registered"):
        tf.register(nn.Conv2d)(zero)
    with pytest.raises(TypeError):
        registry.register()


def test_reimporting_the_formulas_is_not_a_duplicate():
    # pytester's in-process runs drop imported modules and import them again
    import importlib
    import sys

    import torchflops._formulas.linear as linear
    before = {name: module for name, module in sys.modules.items() if name.startswith("torchflops._formulas")}
    try:
        del sys.modules["torchflops._formulas.linear"]
        importlib.import_module("torchflops._formulas.linear")
        assert tf.count(nn.Linear(4, 2), input_size=(1, 4)).total.macs == 8
    finally:
        sys.modules.update(before)
        importlib.reload(linear)


def test_per_call_override_does_not_touch_the_registry():
    def block_formula(module, call):
        return tf.Counts(macs=1000)

    with_override = tf.count(Block(), input_size=(2, 4), formulas={Block: block_formula})
    # the override claims the whole block: its Linear children are not counted on top of it
    assert with_override.total.macs == 1000
    assert [r.type for r in with_override.records] == ["Block"]
    assert with_override.records[0].counts.params == 4 * 8 + 8 + 8 * 4 + 4
    # and the next call sees the built-in formulas again: 2 x (4 x 8 + 8 x 4) MACs
    assert tf.count(Block(), input_size=(2, 4)).total.macs == 2 * (32 + 32)


def test_override_reaches_subclasses_of_the_overridden_type():
    prof = tf.count(MyConv(3, 5, 3), input_size=(1, 3, 6, 6),
                    formulas={nn.Conv2d: lambda module, call: tf.Counts(macs=7)})
    assert prof.total.macs == 7


def test_bad_overrides_are_rejected_before_running():
    with pytest.raises(TypeError, match="formulas="):
        tf.count(Block(), input_size=(2, 4), formulas=[Block])
    with pytest.raises(TypeError, match="not callable"):
        tf.count(Block(), input_size=(2, 4), formulas={Block: 3})


def test_unsupported_module_warns_once_and_is_listed():
    model = nn.Sequential(nn.Linear(4, 4), Solver(), Solver())
    # the operation is named as formulas= takes it, with the modules that called it
    with pytest.warns(tf.UnsupportedWarning, match=r"aten::linalg_matrix_exp.*in '1', '2'.*"
                                                   r"formulas=\{'aten::linalg_matrix_exp': fn\}") as caught:
        prof = tf.count(model, input_size=(1, 4))
    assert prof.unsupported == {"aten::linalg_matrix_exp": 2}
    assert len([w for w in caught if "matrix_exp" in str(w.message)]) == 1
    assert "uncounted: aten::linalg_matrix_exp x2" in prof.table()


def test_parameters_used_only_elementwise_are_free():
    # an RMSNorm-like module of its own: pow, mean, rsqrt, mul, to are all known to be free
    prof = tf.count(nn.Sequential(nn.Linear(4, 4), Scale()), input_size=(2, 4))
    assert prof.unsupported == {}
    assert prof.total.macs == 2 * 16


class Sorted(nn.Module):
    def forward(self, x):
        return torch.cdist(x, x)


def test_strict_names_every_unsupported_type():
    class Other(Solver):
        pass

    model = nn.Sequential(Solver(), Other(), nn.Linear(4, 4), Sorted())
    with pytest.raises(tf.UnsupportedError, match=r"linalg_matrix_exp \(2 calls\).*_cdist_forward \(1 call\)"):
        tf.count(model, input_size=(1, 4), strict=True)
    with pytest.raises(tf.UnsupportedError, match="matrix_exp"):
        with tf.profile(model, strict=True):
            model(torch.zeros(1, 4))


def test_free_modules_and_containers_are_not_unsupported():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GELU(), nn.Dropout(),
                          nn.ModuleList([nn.Identity()])[0], nn.Flatten())
    prof = tf.count(model, input_size=(2, 4))
    assert prof.unsupported == {}


def test_parent_with_own_parameters_is_supported_when_its_children_work():
    class Scaled(Block):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return super().forward(x) * self.gamma

    assert tf.count(Scaled(), input_size=(1, 4)).unsupported == {}
