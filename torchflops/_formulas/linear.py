"""Linear and Bilinear layers, any number of leading dimensions."""
from __future__ import annotations

from math import prod

from torch import nn

from .._call import Call
from .._counts import Counts
from .._registry import register
from ._dense import dense, trainable


@register(nn.Linear)
def linear(module: nn.Linear, call: Call) -> Counts:
    """Each output element sums ``in_features`` products (+ bias)."""
    x = call.arg(0, "input")
    outputs = prod(x.shape[:-1]) * module.out_features
    return dense(
        outputs, module.in_features,
        biases=int(module.bias is not None),
        input_grad=x.needs_grad, weight_grad=trainable(module.weight),
    )


@register(nn.Bilinear)
def bilinear(module: nn.Bilinear, call: Call) -> Counts:
    """As ATen computes it: ``W . x2`` first (in1 x in2 MACs per output), then the dot with x1.

    NB: ATen's ``_trilinear`` contracts ``x1`` with the weight first, giving an intermediate of
    ``out x in2`` elements that each sum ``in1`` products, then contracts ``in2`` with ``x2``.
    """
    x1, x2 = call.arg(0, "input1"), call.arg(1, "input2")
    rows = prod(x1.shape[:-1])
    out, in1, in2 = module.out_features, module.in1_features, module.in2_features
    first = dense(rows * out * in2, in1, biases=0, input_grad=False, weight_grad=False)
    second = dense(rows * out, in2, biases=int(module.bias is not None), input_grad=False, weight_grad=False)
    macs = first.macs + second.macs
    # The gradient of x1 repeats the whole contraction with grad_out in place of x1; that of x2
    # likewise; the weight's is the outer product grad_out x x1 x x2 (rows*out*in1*in2 MACs).
    return Counts(
        macs=macs,
        muls=macs,
        adds=first.adds + second.adds,
        grad_input_flops=(2 * macs if x1.needs_grad else 0) + (2 * macs if x2.needs_grad else 0),
        grad_weight_flops=2 * first.macs + 2 * rows * out * in1 if trainable(module.weight) else 0,
    )
