"""Arithmetic shared by every matmul-like formula."""
from __future__ import annotations

from .._counts import Counts


def dense(outputs: int, products: int, *, biases: int, input_grad: bool, weight_grad: bool) -> Counts:
    """``outputs`` elements, each summing ``products`` products and adding ``biases`` biases.

    Backward spends 2 FLOPs per MAC for each gradient autograd needs: the input's and the weight's.
    """
    macs = outputs * products
    return Counts(
        macs=macs,
        muls=macs,
        adds=outputs * (max(products - 1, 0) + biases),
        grad_input_flops=2 * macs if input_grad else 0,
        grad_weight_flops=2 * macs if weight_grad else 0,
    )


def trainable(tensor: object) -> bool:
    """Whether a module's parameter (possibly None) would get a gradient."""
    return tensor is not None and bool(getattr(tensor, "requires_grad", False))
