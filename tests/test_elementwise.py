"""Elementwise work, opt-in: its own field and column, by the README's per-operation conventions."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf

from test_functional import brute_force_comparisons  # noqa: E402


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.act = nn.ReLU()

    def forward(self, x):                           # 2 x 3 x 4: 24 elements everywhere
        y = self.act(self.norm(self.fc(x)))         # layer norm 5 x 24 = 120; ReLU 24
        z = y + x                                   # 24
        return torch.softmax(F.gelu(z), -1)         # GELU 2 x 24 = 48; softmax 5 x 24 = 120


def test_modules_and_functional_calls_by_the_convention_table():
    prof = tf.count(Block(), input_size=(2, 3, 4))
    assert prof.total.elementwise_flops == 120 + 24 + 24 + 48 + 120
    # records are what they were: the modules; functional elementwise calls are kept apart
    assert [(r.type, r.counts.elementwise_flops) for r in prof.records] == [
        ("Linear", 0), ("LayerNorm", 120), ("ReLU", 24)]
    assert [r.counts.elementwise_flops for r in prof.elementwise_records] == [24, 48, 120]
    assert all(r.name == "" for r in prof.elementwise_records)     # the model's own forward made them
    assert prof.module("norm").elementwise_flops == 120


def test_elementwise_work_never_reaches_flops():
    model, x = Block(), torch.zeros(2, 3, 4)
    with FlopCounterMode(display=False) as counter:
        model(x)
    prof = tf.count(model, x)
    assert prof.total.flops == counter.get_total_flops() == 2 * 2 * 3 * 4 * 4   # the Linear alone
    assert prof.total.macs == 96


@pytest.mark.parametrize("layer, size, expected", [
    # batch norm (affine): 1 x 3 x 4 x 4 = 48 elements, 2 each in eval, 5 each in training
    (nn.BatchNorm2d(3).eval(), (1, 3, 4, 4), 96),
    (nn.BatchNorm2d(3).train(), (1, 3, 4, 4), 240),
    (nn.BatchNorm2d(3, affine=False).eval(), (1, 3, 4, 4), 48),
    (nn.GroupNorm(1, 3), (1, 3, 4, 4), 240),
    (nn.LayerNorm(4, elementwise_affine=False), (1, 3, 4, 4), 192),
    (nn.RMSNorm(4), (1, 3, 4, 4), 4 * 48),
    (nn.SiLU(), (1, 3, 4, 4), 2 * 48),
    (nn.Mish(), (1, 3, 4, 4), 3 * 48),
    (nn.Softmax(-1), (1, 3, 4, 4), 5 * 48),
    (nn.AdaptiveAvgPool2d(1), (1, 3, 4, 4), 48),       # each output averages its 16 inputs
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 1, 2, 2), 16 * 4),
    (nn.Upsample(scale_factor=2), (1, 1, 2, 2), 16),
    (nn.Dropout(), (1, 3, 4, 4), 0),
])
def test_module_conventions(layer, size, expected):
    prof = tf.count(nn.Sequential(layer), input_size=size)
    assert prof.total.elementwise_flops == expected


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", [(3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, False)])
def test_average_pooling_counts_the_elements_each_window_reads(kernel, stride, padding, ceil_mode):
    pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    x = torch.zeros(1, 2, 7, 7)
    y = pool(x)
    # elements read = (elements - 1) + 1 per window: the max-pool comparison oracle plus the outputs
    read = brute_force_comparisons(x.shape, y.shape, (kernel,) * 2, (stride,) * 2, (padding,) * 2, (1, 1)) + y.numel()
    assert tf.count(nn.Sequential(pool), x).total.elementwise_flops == read

    class Functional(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, kernel, stride, padding, ceil_mode)

    assert tf.count(Functional(), x).total.elementwise_flops == read


def test_the_default_table_is_unchanged_and_the_column_is_opt_in():
    prof = tf.count(Block(), input_size=(2, 3, 4))
    default = prof.table()
    assert "elementwise" not in default and "softmax" not in default
    assert len(default.splitlines()) == 2 + 3 + 1          # header, rule, 3 records, total
    wide = prof.table(elementwise=True)
    assert "elementwise FLOPs" in wide.splitlines()[0]
    assert len(wide.splitlines()) == 2 + 6 + 1             # and the 3 functional elementwise calls
    assert wide.splitlines()[-1].split()[-2] == "336"      # the total row's elementwise FLOPs
    assert "backward" not in prof.table(elementwise=True, backward=False)
    with pytest.raises(TypeError, match="elementwise must be True or False"):
        prof.table(elementwise="yes")


def test_budgets_take_elementwise_flops():
    prof = tf.count(Block(), input_size=(2, 3, 4))
    tf.assert_budget(prof, elementwise_flops=336)
    with pytest.raises(tf.BudgetExceeded, match=r"elementwise_flops: 336 \(336\) > limit 300") as caught:
        tf.assert_budget(prof, elementwise_flops=300)
    # contributions at depth 1: the model's own functional calls (192), norm (120), act (24)
    assert caught.value.overruns[0].contributors == (("(model)", 192), ("norm", 120), ("act", 24))


pytest_plugins = ["pytester"]


def test_the_budget_marker_takes_elementwise_flops(pytester):
    import torchflops._api  # noqa: F401  - keeps the registry in step across pytester's inner run
    pytester.makepyfile(test_model="""
import pytest
from torch import nn

@pytest.mark.flops_budget(elementwise_flops=20)
def test_cost(flops):
    flops(nn.Sequential(nn.ReLU()), input_size=(3, 8))   # 24 elements, 1 each
""")
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*elementwise_flops: 24 (24) > limit 20 (20), 20.00% over*",
                                 "*elementwise_flops 24 / 20 OVER*"])
