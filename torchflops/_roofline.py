"""The roofline: a lower bound on each record's time from its FLOPs, its bytes and a ``Hardware``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch

from ._counts import Counts
from ._hardware import Hardware, PeakKey
from ._profile import OUTSIDE, ProfileData

__all__ = ["Estimate", "RecordEstimate", "estimate", "seconds", "default_dtype"]


@dataclass(frozen=True)
class RecordEstimate:
    """One record's estimated time and what bounds it (``"compute"`` or ``"memory"``)."""

    name: str
    seconds: float
    bound: str
    type: str = ""

    def __iter__(self):
        # unpacks as the contract's (name, seconds, bound)
        return iter((self.name, self.seconds, self.bound))


@dataclass(frozen=True)
class Estimate:
    """Per-record roofline times on ``hardware`` and their sum."""

    hardware: Hardware
    dtype: PeakKey
    efficiency: Union[float, Mapping[str, float]]
    records: tuple[RecordEstimate, ...]
    total_s: float


def seconds(counts: Counts, peak: float, bandwidth: float, efficiency: float = 1.0,
            memory_efficiency: Optional[float] = None) -> tuple[float, str]:
    """``max(flops / (peak * eff), bytes / (bandwidth * eff))`` and which term wins (ties:
    compute); ``memory_efficiency``, when given, scales the bandwidth instead of ``efficiency``."""
    compute = counts.flops / (peak * efficiency)
    memory = (counts.bytes_read + counts.bytes_written) / (
        bandwidth * (efficiency if memory_efficiency is None else memory_efficiency))
    return (compute, "compute") if compute >= memory else (memory, "memory")


def default_dtype(profile: ProfileData) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 for a model without one)."""
    for p in profile._model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _fraction(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value <= 1


def _check_efficiency(efficiency: object) -> tuple[float, float]:
    """One fraction for both ceilings, or ``{"compute": a, "memory": b}``: (compute, memory)."""
    if isinstance(efficiency, Mapping) and set(efficiency) == {"compute", "memory"} and all(
            _fraction(v) for v in efficiency.values()):
        return float(efficiency["compute"]), float(efficiency["memory"])
    if not _fraction(efficiency):
        raise ValueError(f"efficiency must be a number in (0, 1] or {{'compute': a, 'memory': b}} with both "
                         f"in (0, 1], got {efficiency!r}")
    return float(efficiency), float(efficiency)


def estimate(profile: ProfileData, hardware: Hardware, dtype: Optional[PeakKey] = None,
             efficiency: float = 1.0) -> Estimate:
    """Roofline time of every record of ``profile`` on ``hardware``; ``dtype`` defaults to the
    model's parameter dtype. ``efficiency`` scales both ceilings, or each one on its own as
    ``{"compute": a, "memory": b}`` (fractions a machine reaches on real layers: the benchmark
    ``benchmarks/time_accuracy.py`` fits them)."""
    if not isinstance(hardware, Hardware):
        raise TypeError(f"hardware must be a torchflops.Hardware (tf.hardware('h100-sxm'), tf.calibrate()), "
                        f"got {type(hardware).__name__}")
    compute, memory = _check_efficiency(efficiency)
    key = default_dtype(profile) if dtype is None else dtype
    peak = hardware.peak(key)
    out = []
    for r in profile.records:
        s, bound = seconds(r.counts, peak, hardware.bandwidth, compute, memory)
        out.append(RecordEstimate(r.name, s, bound, r.type))
    # work no record holds (a forward's own residual adds, concatenations) moves bytes too
    other = profile.outside_records
    if other.bytes_read > 0 or other.bytes_written > 0:
        s, bound = seconds(other, peak, hardware.bandwidth, compute, memory)
        out.append(RecordEstimate(OUTSIDE, s, bound))
    return Estimate(hardware, key, efficiency, tuple(out), sum(e.seconds for e in out))
