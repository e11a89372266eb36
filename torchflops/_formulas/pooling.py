"""Pooling: exact max-pool comparisons; average pooling is elementwise and costs no matmul work."""
from __future__ import annotations

from math import ceil, floor, prod
from typing import Sequence

from torch import nn

from .._call import Call, TensorInfo
from .._counts import Counts
from .._registry import register


def as_tuple(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)`` for two dimensions; sequences are kept."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _valid_taps(length: int, out_length: int, kernel: int, stride: int, padding: int,
                dilation: int) -> tuple[int, int]:
    """Along one axis: (window taps landing inside the input, windows with at least one)."""
    taps = windows = 0
    for o in range(out_length):
        start = o * stride - padding
        valid = sum(1 for k in range(kernel) if 0 <= start + k * dilation < length)
        taps += valid
        windows += valid > 0
    return taps, windows


def max_pool_comparisons(x: TensorInfo, y: TensorInfo, kernel: Sequence[int], stride: Sequence[int],
                         padding: Sequence[int], dilation: Sequence[int]) -> int:
    """Valid window elements minus one, summed over output elements (an all-padding window: none).

    Windows are products of per-axis windows, so the sums over outputs factorise by axis.
    """
    dims = len(kernel)
    axes = [_valid_taps(*args)
            for args in zip(x.shape[-dims:], y.shape[-dims:], kernel, stride, padding, dilation)]
    channels = y.numel // prod(y.shape[-dims:])
    return channels * (prod(taps for taps, _ in axes) - prod(windows for _, windows in axes))


def adaptive_max_pool_comparisons(x: TensorInfo, y: TensorInfo, dims: int) -> int:
    """Adaptive windows span ``[floor(o*L/O), ceil((o+1)*L/O))`` along each axis."""
    per_axis = prod(
        sum(ceil((o + 1) * length / out) - floor(o * length / out) for o in range(out))
        for length, out in zip(x.shape[-dims:], y.shape[-dims:])
    )
    channels = y.numel // prod(y.shape[-dims:])
    return channels * per_axis - y.numel


def pooled(output: object) -> TensorInfo:
    """The pooled values of a max-pool output (``return_indices=True`` gives ``(values, indices)``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


@register(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def max_pool(module: nn.modules.pooling._MaxPoolNd, call: Call) -> Counts:
    """Comparisons: valid elements in each window minus one; padding is never read."""
    x, y = call.arg(0, "input"), pooled(call.output)
    dims = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[_base(module, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)]
    kernel = as_tuple(module.kernel_size, dims)
    stride = as_tuple(module.stride if module.stride is not None else module.kernel_size, dims)
    return Counts(comparisons=max_pool_comparisons(
        x, y, kernel, stride, as_tuple(module.padding, dims), as_tuple(module.dilation, dims)))


@register(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def adaptive_max_pool(module: nn.Module, call: Call) -> Counts:
    """Comparisons: elements of each adaptive window minus one."""
    x, y = call.arg(0, "input"), pooled(call.output)
    dims = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[
        _base(module, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)]
    return Counts(comparisons=adaptive_max_pool_comparisons(x, y, dims))


def _base(module: nn.Module, *bases: type) -> type:
    return next(base for base in bases if isinstance(module, base))
