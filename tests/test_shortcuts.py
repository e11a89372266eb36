"""Shape-only answers for normalisation and recurrent kernels (torchflops._shortcuts).

They replace slow meta kernels during the shape-only pass; a real CPU pass runs the real kernels,
so every case here compares the two passes: same shapes, same needs-grad, same counts, same errors.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchflops as tf


class Sandwich(nn.Module):
    """conv -> norm -> in-place ReLU -> linear: the linear's input gradient depends on whether the
    norm's output needs one, and the in-place ReLU fails on a leaf that needs a gradient."""

    def __init__(self, norm: nn.Module, channels: int, features: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1)
        self.norm = norm
        self.fc = nn.Linear(features, 2)

    def forward(self, x):
        return self.fc(F.relu(self.norm(self.conv(x)), inplace=True))


NORMS = {
    "batch": lambda: nn.BatchNorm1d(4),
    "batch-no-affine": lambda: nn.BatchNorm1d(4, affine=False),
    "batch-no-stats": lambda: nn.BatchNorm1d(4, track_running_stats=False),
    "instance": lambda: nn.InstanceNorm1d(4, affine=True),
    "layer": lambda: nn.LayerNorm(6),
    "layer-2d": lambda: nn.LayerNorm((4, 6), elementwise_affine=True),
    "layer-no-bias": lambda: nn.LayerNorm(6, bias=False),
    "group": lambda: nn.GroupNorm(2, 4),
    "rms": lambda: nn.RMSNorm(6),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("frozen", ["nothing", "conv", "all"])
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("norm", sorted(NORMS))
def test_norm_shortcut_agrees_with_the_real_kernel(norm, input_grad, frozen, training):
    model = Sandwich(NORMS[norm](), 4, 6).train(training)
    if frozen != "nothing":
        (model if frozen == "all" else model.conv).requires_grad_(False)
    x = torch.randn(3, 4, 6, requires_grad=input_grad)
    shape_only, real = tf.count(model, x), tf.count(model, x, device="cpu")
    assert shape_only.total == real.total
    assert [(r.output_shapes, r.input_needs_grad) for r in shape_only.records] == [
        (r.output_shapes, r.input_needs_grad) for r in real.records]


def test_norm_layers_inside_a_torchvision_model_are_answered_from_shapes():
    # GoogLeNet has 57 BatchNorm calls; shape-only and real passes agree on all of them
    import torchvision
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    shape_only = tf.count(model, input_size=(1, 3, 64, 64))
    real = tf.count(model, input_size=(1, 3, 64, 64), device="cpu")
    assert shape_only.total == real.total
    assert [r.output_shapes for r in shape_only.records] == [r.output_shapes for r in real.records]


@pytest.mark.parametrize("norm,shape", [
    (lambda: nn.BatchNorm2d(8), (1, 4, 5, 5)),          # channels do not match
    (lambda: nn.LayerNorm(7), (2, 3, 6)),               # normalized_shape does not match
    (lambda: nn.GroupNorm(2, 4), (2, 6, 5)),            # 6 channels for 4 affine weights
    (lambda: nn.BatchNorm1d(4).train(), (1, 4)),        # one value per channel in training
])
def test_what_the_real_kernel_rejects_is_still_rejected(norm, shape):
    module = norm()
    with pytest.raises((RuntimeError, ValueError)) as real:
        module(torch.zeros(shape))
    with pytest.raises(type(real.value)):
        tf.count(module, input_size=shape)


def test_a_norm_call_outside_modules_is_answered_too():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            return self.fc(F.layer_norm(x, (6,), self.fc.weight[0], None))

    x = torch.zeros(2, 6)
    assert tf.count(Functional(), x).total == tf.count(Functional(), x, device="cpu").total
