"""assert_budget: limits, validation, the message, and what each module contributes."""
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import torchflops as tf
from torchflops._budget import contributions


def stem_head():
    # stem: bias-free conv 3->8, 3x3 on 8x8 -> 8x6x6 = 288 outputs x 27 products = 7,776 MACs, 216 params
    # head: linear 288 -> 10: 2,880 MACs, 2,880 + 10 = 2,890 params
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, 8, 3, bias=False), act=nn.ReLU(), flat=nn.Flatten(), head=nn.Linear(288, 10)))


@pytest.fixture(scope="module")
def prof():
    return tf.count(stem_head(), input_size=(1, 3, 8, 8))


def test_figures_of_the_fixture_model(prof):
    assert prof.total.macs == 7_776 + 2_880
    assert prof.total.params == 216 + 2_890


@pytest.mark.parametrize("limits", [
    {"macs": 10_656},                 # equal to the figure: passes
    {"macs": 1.0656e4},
    {"flops": 21_312, "params": 3_106},
    {"comparisons": 0},
])
def test_within_budget_passes(prof, limits):
    tf.assert_budget(prof, **limits)


def test_exceeded_is_an_assertion_error_with_the_figures(prof):
    with pytest.raises(tf.BudgetExceeded) as caught:
        tf.assert_budget(prof, macs=10_000)
    assert isinstance(caught.value, AssertionError)
    message = str(caught.value)
    assert message.splitlines()[0] == "Sequential exceeds its budget (macs):"
    # 10,656 / 10,000 - 1 = 6.56%
    assert "macs: 10,656 (10.66 K) > limit 10,000 (10.00 K), 6.56% over" in message
    # the contributors, largest first: 7,776 / 10,656 = 73.0%, 2,880 / 10,656 = 27.0%
    lines = message.splitlines()
    start = lines.index("    largest macs by module (depth 1):")
    assert lines[start + 1].split() == ["stem", "7,776", "7.78", "K", "73.0%"]
    assert lines[start + 2].split() == ["head", "2,880", "2.88", "K", "27.0%"]
    (overrun,) = caught.value.overruns
    assert (overrun.field, overrun.actual, overrun.limit) == ("macs", 10_656, 10_000)
    assert overrun.contributors == (("stem", 7_776), ("head", 2_880))
    assert overrun.percent == pytest.approx(6.56)


def test_every_exceeded_limit_is_named_and_only_those(prof):
    with pytest.raises(tf.BudgetExceeded) as caught:
        tf.assert_budget(prof, macs=1.6e9, flops=20_000, params=3_000)
    assert [o.field for o in caught.value.overruns] == ["flops", "params"]
    message = str(caught.value)
    assert "(flops, params)" in message.splitlines()[0]
    # flops 21,312 vs 20,000: 6.56% over; params 3,106 vs 3,000: 3.53% over
    assert "flops: 21,312 (21.31 K) > limit 20,000 (20.00 K), 6.56% over" in message
    assert "params: 3,106 (3.11 K) > limit 3,000 (3.00 K), 3.53% over" in message
    assert "macs:" not in message
    # params of the head first: 2,890 then 216
    assert caught.value.overruns[1].contributors == (("head", 2_890), ("stem", 216))


def test_a_limit_of_zero(prof):
    with pytest.raises(tf.BudgetExceeded, match="over a limit of 0"):
        tf.assert_budget(prof, macs=0)


@pytest.mark.parametrize("limits, error, words", [
    ({"macs": -1}, ValueError, "macs must be a finite number >= 0, got -1"),
    ({"flops": math.nan}, ValueError, "flops must be a finite number >= 0, got nan"),
    ({"params": math.inf}, ValueError, "params must be a finite number >= 0, got inf"),
    ({"macs": True}, TypeError, "macs must be a number such as 1.6e9 or a string such as '1.6G', got True"),
    ({"comparisons": [1e9]}, TypeError, "comparisons must be a number such as 1.6e9 or a string"),
    ({"comparisons": "1.4Q"}, ValueError, "comparisons must be a number or a string such as '1.4G' "
                                          "(SI prefixes K, M, G, T), got '1.4Q'"),
    ({"macs": "-1K"}, ValueError, "got '-1K'"),
    ({}, TypeError, "needs at least one limit"),
])
def test_bad_limits_are_named(prof, limits, error, words):
    with pytest.raises(error) as caught:
        tf.assert_budget(prof, **limits)
    assert words in str(caught.value)


def test_unknown_keyword_and_bad_arguments(prof):
    with pytest.raises(TypeError, match="mac"):
        tf.assert_budget(prof, mac=10)
    with pytest.raises(TypeError, match="takes a torchflops Profile, got int"):
        tf.assert_budget(10, macs=10)
    with pytest.raises(ValueError, match="depth must be an integer >= 1, got 0"):
        tf.assert_budget(prof, macs=10, depth=0)


def test_five_largest_contributors_only():
    # eight linear layers 1 -> k (k = 1..8): layer k does k MACs; the budget names k = 8..4
    model = nn.ModuleDict({f"l{k}": nn.Linear(1, k) for k in range(1, 9)})

    class Fan(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = model

        def forward(self, x):
            return [layer(x) for layer in self.layers.values()]

    prof = tf.count(Fan(), input_size=(1, 1))
    with pytest.raises(tf.BudgetExceeded) as caught:
        tf.assert_budget(prof, macs=1, depth=2)
    assert caught.value.overruns[0].contributors == tuple((f"layers.l{k}", k) for k in range(8, 3, -1))


class Shared(nn.Module):
    """``decoder`` reuses ``encoder``'s weight; ``spare`` is never called; ``block`` runs twice."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 4, bias=False)     # 16 params
        self.decoder = nn.Linear(4, 4, bias=False)
        self.decoder.weight = self.encoder.weight        # tied: no params of its own
        self.block = nn.Linear(4, 4, bias=False)         # 16 params, 16 MACs per call
        self.spare = nn.Linear(4, 3)                     # 12 + 3 = 15 params, 0 MACs
        self.scale = nn.Parameter(torch.ones(4, 6))      # the model's own: 24 params

    def forward(self, x):
        x = self.decoder(self.encoder(x))
        x = self.block(self.block(x))
        return torch.matmul(x, self.scale)               # 1x4 @ 4x6: 24 MACs in the model's own forward


def _matmul(call):
    # this test is about attribution, so a two-dimensional matmul formula is enough
    (rows, inner), (_, columns) = call.args[0].shape, call.args[1].shape
    return tf.Counts(macs=rows * inner * columns)


def test_contributions_params_are_unique_and_include_modules_never_called():
    prof = tf.count(Shared(), input_size=(1, 4))
    params = dict(contributions(prof, "params"))
    assert params == {"encoder": 16, "block": 16, "spare": 15, "(model)": 24}
    assert sum(params.values()) == prof.total.params == 71


def test_contributions_work_counts_every_call_and_the_models_own():
    prof = tf.count(Shared(), input_size=(1, 4), formulas={torch.matmul: _matmul})
    macs = dict(contributions(prof, "macs"))
    # block called twice: 2 x 16; encoder and decoder 16 each; x @ scale: 24 in the model itself
    assert macs == {"block": 32, "(model)": 24, "encoder": 16, "decoder": 16}
    assert sum(macs.values()) == prof.total.macs


def test_contributions_deeper_than_a_module():
    # at depth 2, a depth-1 leaf keeps its work under "name (own)"
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 5)), nn.Linear(5, 7))
    prof = tf.count(model, input_size=(1, 2))
    assert contributions(prof, "macs", depth=2) == [("1 (own)", 35), ("0.1", 15), ("0.0", 6)]


def test_contributions_add_up_to_the_total_on_googlenet():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = torchvision.models.googlenet(aux_logits=False, init_weights=False)
    prof = tf.count(model, input_size=(1, 3, 224, 224))
    for field in ("macs", "flops", "backward_flops", "comparisons", "params"):
        assert sum(v for _, v in contributions(prof, field)) == getattr(prof.total, field), field


@pytest.mark.parametrize("text, value", [
    ("10656", 10_656), ("10.656K", 10_656), ("0.010656M", 10_656), ("1.0656e4", 10_656),
    ("1.4G", 1_400_000_000), (" 2 T ", 2 * 10**12), ("0.5", 0.5),
])
def test_limits_as_si_strings(text, value):
    from torchflops._budget import check_limits
    assert check_limits({"macs": text}) == {"macs": value}


def test_a_string_limit_is_held_like_the_number(prof):
    # 10,656 MACs: "10.656K" is exactly the figure (passes), "10.655K" one MAC under it (fails)
    tf.assert_budget(prof, macs="10.656K")
    with pytest.raises(tf.BudgetExceeded, match="limit 10,655 "):
        tf.assert_budget(prof, macs="10.655K")


def test_public_exceptions_name_their_public_module():
    import torchflops
    exceptions = [name for name in torchflops._EXPORTS
                  if isinstance(getattr(tf, name), type) and issubclass(getattr(tf, name), BaseException)]
    assert {"BudgetExceeded", "ShapeOnlyError", "UnsupportedError", "UnsupportedWarning"} <= set(exceptions)
    for name in exceptions:
        assert getattr(tf, name).__module__ == "torchflops", name
