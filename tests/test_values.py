"""Values that follow from constants alone are read shape-only as a real pass reads them (``_values``).

Each model reads a value computed from ``torch.arange`` and other constants (no input, parameter
or buffer data): shape-only must count what a real CPU pass counts, checked against PyTorch's
FlopCounterMode. Values computed from data stay unreadable.
"""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf


def _oracle(model, x):
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


class SizedByPositions(nn.Module):
    """A causal mask sized by the last position, as transformers 4.x's Jamba and Zamba size theirs
    (``cache_position[-1] + 1``), and a branch on the first position (0: not a cached step)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.cached = nn.Linear(16, 16)

    def forward(self, x):
        positions = torch.arange(x.shape[1], device=x.device)
        target = positions[-1] + 1
        mask = torch.full((x.shape[1], target), float("-inf"), device=x.device).triu(1)
        mask *= torch.arange(target, device=x.device) > positions.reshape(-1, 1)
        h = self.proj(x)
        scores = h @ h.transpose(-1, -2) + mask
        if positions[0] > 0:
            h = self.cached(h)
        return scores.softmax(-1) @ h


def test_a_mask_sized_by_a_position_counts_shape_only_as_on_cpu():
    """proj 2x12x16x16 + scores 2x12x12x16 + the weighted sum 2x12x12x16 MACs; the cached branch
    does not run (position 0)."""
    model = SizedByPositions()
    expected = 2 * (2 * 12 * 16 * 16 + 2 * 2 * 12 * 12 * 16)
    assert _oracle(model, torch.zeros(2, 12, 16)) == expected == 30_720
    meta = tf.count(model, input_size=(2, 12, 16))
    assert meta.meta["device"] == "meta"
    assert meta.total == tf.count(model, input_size=(2, 12, 16), device="cpu").total
    assert meta.total.flops == expected


class Repeats(nn.Module):
    """Runs its layer as many times as a value computed in place from constants says: arange(4)
    shifted by 2, a view of it doubled in place, read through ``int``."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 8)

    def forward(self, x):
        steps = torch.arange(4, device=x.device)
        steps.add_(2)
        steps[1:].mul_(2)           # written through a view: the base's values follow
        for _ in range(int(steps[0]) + int(steps[1])):       # 2 + 6
            x = self.layer(x)
        return x


def test_in_place_writes_from_constants_are_followed_also_through_views():
    model = Repeats()
    expected = 8 * 2 * 3 * 8 * 8    # 8 layers of 3x8x8 MACs
    assert _oracle(model, torch.zeros(3, 8)) == expected
    assert tf.count(model, input_size=(3, 8)).total.flops == expected


class MixesHostTensors(nn.Module):
    """Reads a value from a small host tensor moved to the input's device, and mixes a host
    tensor into the computation (which sends shape-only counting to fake tensors)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 8)
        self.offsets = torch.tensor([1, 3])     # a plain attribute: not moved with the model

    def forward(self, x):
        offsets = self.offsets.to(x.device) + 1
        for _ in range(int(offsets[0])):        # 2
            x = self.layer(x) * torch.ones(8)
        return x


def test_values_from_host_tensors_are_read_and_the_host_tensors_are_left_alone():
    model = MixesHostTensors()
    expected = 2 * 2 * 4 * 8 * 8
    assert _oracle(model, torch.zeros(4, 8)) == expected
    prof = tf.count(model, input_size=(4, 8))
    assert prof.meta["device"] == "fake"
    assert prof.total.flops == expected
    assert model.offsets.tolist() == [1, 3]


class ReadsData(nn.Module):
    """``mode`` picks where the value comes from: the input, a constant overwritten by the input
    (through a view), or a random draw."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if self.mode == "input":
            value = x[0, 0]
        elif self.mode == "overwritten":
            value = torch.zeros(4, device=x.device, dtype=torch.long)
            value[:2].copy_(x[0, :2])
        else:
            value = torch.randint(0, 3, (1,), device=x.device)
        return x[: int(value[0] if value.dim() else value) + 1]


@pytest.mark.parametrize("mode", ["input", "overwritten", "random"])
def test_values_from_data_stay_unreadable(mode):
    with pytest.raises(tf.ShapeOnlyError, match="depends on tensor values"):
        tf.count(ReadsData(mode), input_size=(3, 4), dtype=torch.long)
