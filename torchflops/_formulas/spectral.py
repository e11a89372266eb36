"""Fast Fourier transforms (``torch.fft.*``), by the nominal count FFT benchmarks use.

Convention (as benchFFT and FFTW report speed): a complex transform of ``N`` points costs
``5 N log2 N`` real FLOPs, a transform of real data (``rfft*``, ``irfft*``, ``hfft*``, ``ihfft*``)
half of that. A multi-dimensional transform is one transform per axis over all the others, and
``sum over axes of (M / N_a) x 5 N_a log2 N_a`` is ``5 M log2 (N_1 ... N_k)`` for ``M`` points in
all. ``macs`` is half the FLOPs (rounded), so ``flops = 2 x macs``. NB: the count is nominal: real
FFT algorithms spend fewer operations on power-of-two sizes and more on primes, and no single
count is exact for all of them.
"""
from __future__ import annotations

from math import log2, prod
from typing import Optional, Sequence

import torch

from .._call import Call
from .._counts import Counts
from .._registry import register

CONVENTION = "5 N log2 N"
REAL_CONVENTION = "2.5 N log2 N"


def fft_counts(points: int, lengths: Sequence[int], *, real: bool, input_grad: bool) -> Counts:
    """``points`` points transformed along axes of ``lengths``: ``5 M log2(prod(lengths))`` FLOPs,
    half for real data. The gradient of a transform is a transform of the same size."""
    flops = 5 * points * log2(prod(lengths)) / (2 if real else 1)
    macs = round(flops / 2)
    return Counts(macs=macs, grad_input_flops=2 * macs if input_grad else 0)


def _dims(call: Call, ndim: int, default: Optional[tuple[int, ...]], sizes: Optional[Sequence[int]]
          ) -> tuple[int, ...]:
    """The transformed axes, non-negative: ``dim=``, else the last ``len(s)`` axes, else ``default``
    (``None``: every axis)."""
    dim = call.arg(2, "dim", call.kwargs.get("axis", default))      # ``axis=``: NumPy's spelling
    if isinstance(dim, int):
        dim = (dim,)
    if dim is None:
        dim = tuple(range(ndim - len(sizes), ndim)) if sizes else tuple(range(ndim))
    return tuple(d % ndim for d in dim)


def _transform(default: Optional[tuple[int, ...]], *, real_input: bool, real_output: bool):
    one_dimensional = default == (-1,)

    def fft(call: Call) -> Counts:
        x, y = call.arg(0, "input"), call.output
        size = call.arg(1, "n" if one_dimensional else "s")
        sizes = (size,) if one_dimensional and size is not None else size
        dims = _dims(call, len(y.shape), default, sizes)
        lengths = [y.shape[d] for d in dims]
        if real_input:   # the real signal's last axis, not the n // 2 + 1 complex outputs
            lengths[-1] = sizes[-1] if sizes else x.shape[dims[-1]]
        points = y.numel // prod(y.shape[d] for d in dims) * prod(lengths)
        return fft_counts(points, lengths, real=real_input or real_output, input_grad=x.needs_grad)

    fft.convention = REAL_CONVENTION if real_input or real_output else CONVENTION
    fft.__doc__ = (f"``{fft.convention}`` real FLOPs for ``N`` points along the transformed axes; "
                   "``macs`` is half of that.")
    return fft


_FFT = torch.fft
# fft/ifft/..., fft2/ifft2/... and fftn/ifftn/...: their default axes tell them apart
for _default, _suffix in (((-1,), ""), ((-2, -1), "2"), (None, "n")):
    register(_FFT.__dict__[f"fft{_suffix}"], _FFT.__dict__[f"ifft{_suffix}"])(
        _transform(_default, real_input=False, real_output=False))
    register(_FFT.__dict__[f"rfft{_suffix}"], _FFT.__dict__[f"ihfft{_suffix}"])(
        _transform(_default, real_input=True, real_output=False))
    register(_FFT.__dict__[f"irfft{_suffix}"], _FFT.__dict__[f"hfft{_suffix}"])(
        _transform(_default, real_input=False, real_output=True))
