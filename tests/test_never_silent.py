"""Never silent, and no false alarms: every call that is neither counted nor known free is reported."""
import warnings

import pytest
import torch
from torch import nn

import torchflops as tf


class Checked(nn.Module):
    """timm's EvoNorm pattern: a module with parameters whose only extra call is ``torch._assert``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self, x):
        torch._assert(x.dim() == 2, "expected a 2-D input")
        return x * self.weight


def test_assert_is_free():
    assert tf.count(Checked(), input_size=(2, 4), strict=True).unsupported == {}


def test_meshgrid_is_free_and_beit_has_no_alarm_on_any_count():
    transformers = pytest.importorskip("transformers")
    # a window size no other test uses, so transformers' cached relative-position index is cold
    config = transformers.BeitConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, image_size=40, patch_size=8,
                                     use_relative_position_bias=True)
    with torch.device("meta"):
        model = transformers.BeitModel(config).eval()
    for _ in range(2):      # the second count finds transformers' cached index
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            prof = tf.count(model, input_size=(1, 3, 40, 40), strict=True)
        assert prof.unsupported == {}


class MatrixExpNextToLinear(nn.Module):
    """Counted work (a Linear) and, in the same forward, a costly call nothing counts."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.linalg.matrix_exp(self.fc(x).reshape(2, 2, 2))


class Parameterless(nn.Module):
    def forward(self, x):
        return torch.linalg.matrix_exp(x)


def _matrix_exp(unsupported):
    """The calls reported under the matrix exponential's name (function or ATen operation)."""
    return {name: n for name, n in unsupported.items() if name.endswith("linalg_matrix_exp")}


def test_an_unknown_call_next_to_counted_work_is_reported():
    with pytest.warns(tf.UnsupportedWarning, match="linalg_matrix_exp"):
        prof = tf.count(MatrixExpNextToLinear(), input_size=(2, 4))
    assert prof.total.macs == 2 * 4 * 4     # the Linear: 8 outputs x 4 products
    assert list(_matrix_exp(prof.unsupported).values()) == [1] and len(prof.unsupported) == 1
    with pytest.raises(tf.UnsupportedError, match="linalg_matrix_exp"):
        tf.count(MatrixExpNextToLinear(), input_size=(2, 4), strict=True)


def test_an_unknown_call_in_a_module_without_parameters_is_reported_per_call():
    model = nn.Sequential(Parameterless(), Parameterless())
    with pytest.warns(tf.UnsupportedWarning):
        prof = tf.count(model, input_size=(3, 3))
    assert list(_matrix_exp(prof.unsupported).values()) == [2] and len(prof.unsupported) == 1
    assert "linalg_matrix_exp x2" in prof.table()
