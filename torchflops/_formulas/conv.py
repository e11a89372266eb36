"""Convolutions and transposed convolutions in 1, 2 and 3 dimensions."""
from __future__ import annotations

from math import prod

from torch import nn

from .._call import Call
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
    """Each *input* element is scattered to ``out_channels / groups x prod(kernel)`` outputs.

    Output elements receive different numbers of products (some none); adds are counted
    per output from the exact coverage along each axis.
    """
    x, y = call.arg(0, "input"), call.output
    macs = x.numel * (module.out_channels // module.groups) * prod(module.kernel_size)
    dims = len(module.kernel_size)
    covered = prod(
        _covered_outputs(length, out_length, kernel, stride, padding, dilation)
        for length, out_length, kernel, stride, padding, dilation in zip(
            x.shape[-dims:], y.shape[-dims:], module.kernel_size, module.stride,
            module.padding, module.dilation,
        )
    )
    # Output elements with at least one product: every channel and batch entry at a covered position.
    reached = y.numel // prod(y.shape[-dims:]) * covered
    biases = y.numel if module.bias is not None else 0
    return Counts(
        macs=macs,
        muls=macs,
        adds=macs - reached + biases,
        grad_input_flops=2 * macs if x.needs_grad else 0,
        grad_weight_flops=2 * macs if trainable(module.weight) else 0,
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
