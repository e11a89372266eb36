"""transformers in the tests: which line is installed, small models built on meta or CPU, the oracle.

CI runs the transformers tests twice: on the newest 5.x the test extra installs, and on 4.57 from a
separate folder put first on ``PYTHONPATH`` (``.ci/run``). Tests that differ between the two lines
branch on ``V5``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

transformers = pytest.importorskip("transformers")

V5 = int(transformers.__version__.split(".")[0]) >= 5
# transformers 5 dispatches its fused experts on ``config._experts_implementation``; 4.x has one path
EXPERTS_IMPLEMENTATIONS: tuple[Optional[str], ...] = ("eager", "batched_mm", "grouped_mm") if V5 else (None,)


def build(config: Any, cls: type, *, device: str = "meta", experts: Optional[str] = None,
          attention: str = "eager", seed: int = 0) -> nn.Module:
    """``cls(config)`` in eval mode on ``device`` (random weights on CPU, from ``seed``)."""
    config._attn_implementation = attention
    if experts is not None:
        config._experts_implementation = experts
    torch.manual_seed(seed)
    with torch.device(device):
        return cls(config).eval()


def token_ids(shape: tuple[int, ...], vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def flop_counter(model: nn.Module, inputs: Mapping[str, torch.Tensor], *, backward: bool = True) -> tuple[int, int]:
    """(forward, backward) FLOPs of a real pass of the CPU ``model`` under PyTorch's FlopCounterMode;
    backward is that of the sum of every floating tensor the model returns (BERT's pooler output
    too: torchflops counts the backward of every module), caches left out."""
    with FlopCounterMode(display=False) as counter:
        out = model(**inputs)
        forward = counter.get_total_flops()
        if backward:
            values = out.values() if isinstance(out, Mapping) else out
            sum(t.float().sum() for t in values
                if isinstance(t, torch.Tensor) and t.is_floating_point()).backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops() - forward
