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
        call.arg(0, "input"), call.output, module.in_channels // module.groups,
        module.out_channels // module.groups, module.kernel_size, module.stride, module.padding,
        module.dilation, bias=module.bias is not None, weight_grad=trainable(module.weight),
    )


def transposed(x: TensorInfo, y: TensorInfo, in_per_group: int, out_per_group: int,
               kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], *, bias: bool, weight_grad: bool) -> Counts:
    """A transposed convolution from ``x`` to ``y``, shared by the module and the functional call.

    MACs are counted on the input: every input element times ``out_per_group x prod(kernel)``.
    Output elements receive different numbers of products (some none), so ``muls``/``adds`` come
    from the exact per-axis coverage. NB: products that ``padding`` crops off the output are in
    ``macs`` (PyTorch's convention, and the col2im work) but summed into no output, so not in ``muls``.
    """
    macs = x.numel * out_per_group * prod(kernel)
    dims = len(kernel)
    axes = [_axis_coverage(*args)
            for args in zip(x.shape[-dims:], y.shape[-dims:], kernel, stride, padding, dilation)]
    # Every output channel and batch entry sees the same spatial coverage; each product pairs an
    # input channel of the group with a kernel tap.
    planes = y.numel // prod(y.shape[-dims:])
    muls = planes * in_per_group * prod(products for products, _ in axes)
    reached = planes * prod(covered for _, covered in axes)
    return Counts(
        macs=macs,
        muls=muls,
        adds=muls - reached + (y.numel if bias else 0),
        grad_input_flops=2 * macs if x.needs_grad else 0,
        grad_weight_flops=2 * macs if weight_grad else 0,
    )


def _axis_coverage(length: int, out_length: int, kernel: int, stride: int, padding: int,
                   dilation: int) -> tuple[int, int]:
    """Along one axis: (input-tap pairs landing inside the output, output positions reached)."""
    landed = [
        o for o in (i * stride - padding + k * dilation for i in range(length) for k in range(kernel))
        if 0 <= o < out_length
    ]
    return len(landed), len(set(landed))
