"""Convolutions and transposed convolutions in 1, 2 and 3 dimensions."""
from __future__ import annotations

from math import prod
from typing import Sequence

from torch import nn

from .._call import Call, TensorInfo
from .._counts import Counts
from .._registry import register
from ._dense import dense, trainable


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(module: nn.modules.conv._ConvNd, call: Call) -> Counts:
    """Each output element sums ``in_channels / groups x prod(kernel)`` products (+ bias).

    Taps that fall on zero padding are multiplied too, as im2col and PyTorch's counter do.
    """
    x, y = call.arg(0, "input"), call.output
    products = module.in_channels // module.groups * prod(module.kernel_size)
    return dense(
        y.numel, products,
        biases=int(module.bias is not None),
        input_grad=x.needs_grad, weight_grad=trainable(module.weight),
    )


@register(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(module: nn.modules.conv._ConvTransposeNd, call: Call) -> Counts:
    """Each *input* element is scattered to ``out_channels / groups x prod(kernel)`` outputs."""
    return transposed(
        call.arg(0, "input"), call.output, module.out_channels // module.groups, module.kernel_size,
        module.stride, module.padding, module.dilation,
        bias=module.bias is not None, weight_grad=trainable(module.weight),
    )


def transposed(x: TensorInfo, y: TensorInfo, out_per_group: int, kernel: Sequence[int],
               stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], *,
               bias: bool, weight_grad: bool) -> Counts:
    """A transposed convolution from ``x`` to ``y``, shared by the module and the functional call.

    Output elements receive different numbers of products (some none); adds are counted
    per output from the exact coverage along each axis.
    """
    macs = x.numel * out_per_group * prod(kernel)
    dims = len(kernel)
    covered = prod(
        _covered_outputs(*args)
        for args in zip(x.shape[-dims:], y.shape[-dims:], kernel, stride, padding, dilation)
    )
    # Output elements with at least one product: every channel and batch entry at a covered position.
    reached = y.numel // prod(y.shape[-dims:]) * covered
    return Counts(
        macs=macs,
        muls=macs,
        adds=macs - reached + (y.numel if bias else 0),
        grad_input_flops=2 * macs if x.needs_grad else 0,
        grad_weight_flops=2 * macs if weight_grad else 0,
    )


def _covered_outputs(length: int, out_length: int, kernel: int, stride: int, padding: int,
                     dilation: int) -> int:
    """How many output positions along one axis receive at least one product."""
    reached = {
        i * stride - padding + k * dilation
        for i in range(length)
        for k in range(kernel)
    }
    return sum(1 for o in reached if 0 <= o < out_length)
