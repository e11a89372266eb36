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
    """As ATen contracts it: ``x1`` with the weight (``in1`` products per intermediate), then ``x2``.

    NB: backward is ``_trilinear`` again for each gradient, which PyTorch's counter does not see;
    we count 2 FLOPs per forward MAC for each gradient needed (x1, x2, weight), not ATen's exact
    pairwise order.
    """
    x1, x2 = call.arg(0, "input1"), call.arg(1, "input2")
    rows = prod(x1.shape[:-1])
    out, in1, in2 = module.out_features, module.in1_features, module.in2_features
    # (rows, out, in2) intermediates each sum in1 products; each output then sums in2 of them.
    first = dense(rows * out * in2, in1, biases=0, input_grad=False, weight_grad=False)
    second = dense(rows * out, in2, biases=int(module.bias is not None), input_grad=False, weight_grad=False)
    macs = first.macs + second.macs
    return Counts(
        macs=macs,
        muls=macs,
        adds=first.adds + second.adds,
        grad_input_flops=2 * macs * (int(x1.needs_grad) + int(x2.needs_grad)),
        grad_weight_flops=2 * macs if trainable(module.weight) else 0,
    )
