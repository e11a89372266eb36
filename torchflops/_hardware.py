"""Hardware specs: peak FLOP/s per dtype and memory bandwidth, a built-in table, and a calibration
that measures this machine's CPU."""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Union

import torch

__all__ = ["Hardware", "hardware", "calibrate", "HARDWARE", "PeakKey", "dtype_name"]

# A peak is keyed by the dtype the operands have; "tf32" is float32 matmuls run on tensor cores
# (torch.backends.cuda.matmul.allow_tf32), which has no torch.dtype of its own.
PeakKey = Union[torch.dtype, str]
_TF32 = "tf32"
_FP8 = tuple(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name))


def dtype_name(key: PeakKey) -> str:
    return key if isinstance(key, str) else str(key).removeprefix("torch.")


@dataclass(frozen=True)
class Hardware:
    """A device's dense peak FLOP/s per operand dtype and its memory bandwidth in bytes/s."""

    name: str
    peak_flops: Mapping[PeakKey, float]
    bandwidth: float
    # measured by calibrate(): achieved fraction of the peaks by kind of work, not part of the spec
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Hardware name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.peak_flops, Mapping) or not self.peak_flops:
            raise TypeError("peak_flops must be a non-empty mapping {torch.dtype: FLOP/s}, "
                            f"got {self.peak_flops!r}")
        for key, value in self.peak_flops.items():
            if not (isinstance(key, torch.dtype) or key == _TF32):
                raise TypeError(f"peak_flops keys must be torch dtypes (or 'tf32'), got {key!r}")
            if not _positive(value):
                raise ValueError(f"peak_flops[{dtype_name(key)}] must be a positive number of FLOP/s, "
                                 f"got {value!r}")
        if not _positive(self.bandwidth):
            raise ValueError(f"bandwidth must be a positive number of bytes/s, got {self.bandwidth!r}")
        object.__setattr__(self, "peak_flops", MappingProxyType(dict(self.peak_flops)))

    def peak(self, dtype: PeakKey) -> float:
        """Peak FLOP/s for ``dtype``; a dtype without a peak is a ``ValueError`` naming those it has."""
        value = self.peak_flops.get(dtype)
        if value is None:
            known = ", ".join(dtype_name(k) for k in self.peak_flops)
            raise ValueError(f"{self.name} has no peak FLOP/s for {dtype_name(dtype)}; it has: {known}")
        return value

    def __str__(self) -> str:
        peaks = ", ".join(f"{dtype_name(k)} {v / 1e12:.3g} TFLOP/s" for k, v in self.peak_flops.items())
        return f"{self.name}: {peaks}; bandwidth {self.bandwidth / 1e9:.3g} GB/s"


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value != float("inf")


def _spec(name: str, bandwidth: float, fp32: float, tf32: float = 0.0, half: float = 0.0,
          fp16: float = 0.0, fp8: float = 0.0) -> Hardware:
    """Peaks in TFLOP/s, bandwidth in GB/s. ``half`` is bf16 and fp16 alike; ``fp16`` alone where
    the chip has no bf16."""
    peaks: dict[PeakKey, float] = {torch.float32: fp32 * 1e12}
    if tf32:
        peaks[_TF32] = tf32 * 1e12
    if half:
        peaks[torch.bfloat16] = peaks[torch.float16] = half * 1e12
    if fp16:
        peaks[torch.float16] = fp16 * 1e12
    for dtype in _FP8 if fp8 else ():
        peaks[dtype] = fp8 * 1e12
    return Hardware(name, peaks, bandwidth * 1e9)


# Dense (no structured sparsity) tensor-core peaks; the datasheets print the sparse figure first
# for Ampere and later, twice the dense one.
HARDWARE: Mapping[str, Hardware] = MappingProxyType({spec.name: spec for spec in (
    # NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf):
    # FP32 19.5, TF32 156, BF16/FP16 312 TFLOPS; HBM2 1,555 GB/s (40GB), HBM2e 2,039 GB/s (80GB SXM)
    _spec("a100-40gb", 1555, fp32=19.5, tf32=156, half=312),
    _spec("a100-80gb", 2039, fp32=19.5, tf32=156, half=312),
    # NVIDIA H100 Tensor Core GPU datasheet (h100-datasheet-2430615): SXM FP32 67, TF32 989/2,
    # BF16/FP16 1,979/2, FP8 3,958/2 TFLOPS, 3.35 TB/s; PCIe FP32 51, TF32 756/2, BF16 1,513/2,
    # FP8 3,026/2 TFLOPS, 2 TB/s
    _spec("h100-sxm", 3350, fp32=67, tf32=494.7, half=989.4, fp8=1978.9),
    _spec("h100-pcie", 2000, fp32=51, tf32=378, half=756.5, fp8=1513),
    # NVIDIA H200 Tensor Core GPU datasheet (h200-datasheet-3127564): the H100 SXM's compute,
    # HBM3e 4.8 TB/s
    _spec("h200", 4800, fp32=67, tf32=494.7, half=989.4, fp8=1978.9),
    # NVIDIA L4 Tensor Core GPU datasheet (l4-datasheet-2595652): FP32 30.3, TF32 120/2,
    # BF16/FP16 242/2, FP8 485/2 TFLOPS; 300 GB/s
    _spec("l4", 300, fp32=30.3, tf32=60, half=121, fp8=242.5),
    # NVIDIA T4 Tensor Core GPU datasheet (t4-tensor-core-datasheet-951643): FP32 8.1,
    # mixed FP16/FP32 65 TFLOPS; 320 GB/s; Turing has no bf16 and no tf32
    _spec("t4", 320, fp32=8.1, fp16=65),
    # NVIDIA Tesla V100 datasheet (tesla-volta-v100-datasheet-letter-fnl-web), V100 SXM2:
    # FP32 15.7, tensor FP16 125 TFLOPS; HBM2 900 GB/s
    _spec("v100", 900, fp32=15.7, fp16=125),
    # NVIDIA Ada Lovelace GPU architecture whitepaper (v2.1), GeForce RTX 4090, with FP32
    # accumulation as PyTorch runs it: FP32 82.6, TF32 82.6, BF16/FP16 165.2, FP8 330.3 TFLOPS;
    # GDDR6X 1,008 GB/s
    _spec("rtx-4090", 1008, fp32=82.6, tf32=82.6, half=165.2, fp8=330.3),
    # AMD Instinct MI300X accelerator datasheet (amd-instinct-mi300x-data-sheet): FP32 matrix 163.4,
    # TF32 653.7, BF16/FP16 1,307.4, FP8 2,614.9 TFLOPS (dense); HBM3 5.3 TB/s
    _spec("mi300x", 5300, fp32=163.4, tf32=653.7, half=1307.4, fp8=2614.9),
)})

_ALIASES = {"a100": "a100-80gb", "h100": "h100-sxm", "h200-sxm": "h200", "4090": "rtx-4090",
            "v100-sxm2": "v100"}


def hardware(name: str) -> Hardware:
    """The built-in spec called ``name`` (case and ``_``/space insensitive: ``"H100 SXM"``)."""
    if not isinstance(name, str):
        raise TypeError(f"hardware name must be a str such as 'h100-sxm', got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in HARDWARE:
        return HARDWARE[key]
    names = sorted(HARDWARE) + sorted(_ALIASES)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.4)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown hardware {name!r}{hint}; known: {', '.join(sorted(HARDWARE))}")


# -- calibration -------------------------------------------------------------------------------------
_MATMUL_SIDE = 1024         # 2 GFLOP per product: long enough to time, short enough for 2 cores
_COPY_BYTES = 64 * 2**20    # larger than the caches, as a model's activations are
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _best(fn, repeats: int) -> float:
    fn()    # warm-up: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def calibrate(repeats: int = 5, dtypes: tuple[torch.dtype, ...] = _DTYPES) -> Hardware:
    """Measure this machine's CPU: a 1024x1024 matmul per dtype (best of ``repeats``) and a
    64 MiB copy (read and written) for the bandwidth. Returns a ``Hardware`` named ``"cpu"``."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    peaks: dict[PeakKey, float] = {}
    n = _MATMUL_SIDE
    with torch.no_grad():
        for dtype in dtypes:
            a = torch.randn(n, n).to(dtype)
            b = torch.randn(n, n).to(dtype)
            out = torch.empty(n, n, dtype=dtype)
            peaks[dtype] = 2 * n**3 / _best(lambda: torch.mm(a, b, out=out), repeats)
        source = torch.ones(_COPY_BYTES // 4)
        target = torch.empty_like(source)
        bandwidth = 2 * _COPY_BYTES / _best(lambda: target.copy_(source), repeats)
    return Hardware("cpu", peaks, bandwidth,
                    notes=f"calibrated: {n}x{n} matmul, {_COPY_BYTES >> 20} MiB copy, "
                          f"{torch.get_num_threads()} threads")
