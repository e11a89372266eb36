"""Functional calls: torch functions a model calls itself, outside modules that have a formula.

Each formula is registered on the object ``TorchFunctionMode`` sees for the call: ``F.linear`` is
``torch._C._nn.linear``, ``F.conv2d`` is ``torch.conv2d``, ``x @ y`` and ``x.matmul(y)`` are
``torch.Tensor.matmul``, ``F.max_pool2d`` is the Python wrapper itself (``F.max_pool2d_with_indices``
when ``return_indices=True``).

Backward: 2 FLOPs per MAC for every operand of a product whose gradient autograd needs. Which
field it goes to: for ``F.linear`` and ``F.conv*`` the ``weight`` argument is the weight. A product
of two operands (``matmul``, ``@``, ``mm``, ``bmm``, ``addmm``, ``einsum``, attention) has no
weight argument: an operand that is a parameter of the model or a view of one (``x @ self.weight``,
``x @ self.weight.T``) is a weight, any other operand (activations, ``q @ k.transpose(-2, -1)``) an input.
"""
from __future__ import annotations

from math import prod
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .._call import Call, TensorInfo
from .._counts import Counts
from .._registry import register
from ._dense import dense
from .conv import transposed
from .pooling import adaptive_max_pool_comparisons, as_tuple, max_pool_comparisons, pooled

__all__ = ["product", "attention"]


def product(outputs: int, products: int, *operands: TensorInfo, biases: int = 0) -> Counts:
    """``outputs`` elements, each summing ``products`` products of the ``operands``.

    Each operand that needs a gradient costs 2 FLOPs per MAC in backward: a weight's when it is
    a parameter, an input's otherwise.
    """
    counts = dense(outputs, products, biases=biases, input_grad=False, weight_grad=False)
    needed = [t for t in operands if t.needs_grad]
    return counts.replace(
        grad_input_flops=2 * counts.macs * sum(1 for t in needed if not t.parameter),
        grad_weight_flops=2 * counts.macs * sum(1 for t in needed if t.parameter),
    )


def attention(batch: int, queries: int, keys: int, qk_dim: int, v_dim: int,
              q: TensorInfo, k: TensorInfo, v: TensorInfo) -> Counts:
    """``softmax(q k^T) v``: ``batch x queries x keys x (qk_dim + v_dim)`` MACs.

    Backward as autograd differentiates the two products (PyTorch's math path, which is what
    FlopCounterMode sees on meta and CPU): the fused kernels' recomputation is not counted.
    """
    scores = product(batch * queries * keys, qk_dim, q, k)
    weights = TensorInfo((batch, queries, keys), q.needs_grad or k.needs_grad)
    return scores + product(batch * queries * v_dim, keys, weights, v)


# -- linear and convolutions -------------------------------------------------------------------
@register(F.linear)
def linear(call: Call) -> Counts:
    """Each output element sums ``in_features`` products (+ bias)."""
    x, weight, y = call.arg(0, "input"), call.arg(1, "weight"), call.output
    return dense(y.numel, x.shape[-1], biases=int(call.arg(2, "bias") is not None),
                 input_grad=x.needs_grad, weight_grad=weight.needs_grad)


@register(torch.conv1d, torch.conv2d, torch.conv3d)
def conv(call: Call) -> Counts:
    """Each output element sums ``in_channels / groups x prod(kernel)`` products (+ bias)."""
    x, weight, y = call.arg(0, "input"), call.arg(1, "weight"), call.output
    return dense(y.numel, prod(weight.shape[1:]), biases=int(call.arg(2, "bias") is not None),
                 input_grad=x.needs_grad, weight_grad=weight.needs_grad)


@register(torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d)
def conv_transpose(call: Call) -> Counts:
    """Each input element is scattered to ``out_channels / groups x prod(kernel)`` outputs."""
    x, weight = call.arg(0, "input"), call.arg(1, "weight")
    dims = len(weight.shape) - 2
    return transposed(
        x, call.output, weight.shape[0] // call.arg(6, "groups", 1), weight.shape[1], weight.shape[2:],
        _axes(call.arg(3, "stride", 1), dims), _axes(call.arg(4, "padding", 0), dims),
        _axes(call.arg(7, "dilation", 1), dims),
        bias=call.arg(2, "bias") is not None, weight_grad=weight.needs_grad,
    )


def _axes(value: Any, dims: int) -> tuple[int, ...]:
    """Functional hyper-parameters: an int, or a sequence of one (broadcast) or ``dims`` ints."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return as_tuple(value, dims)


# -- products of two operands ------------------------------------------------------------------
@register(torch.matmul, torch.Tensor.matmul, torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm,
          torch.mv, torch.Tensor.mv, torch.dot, torch.Tensor.dot, torch.vdot, torch.Tensor.vdot)
def matmul(call: Call) -> Counts:
    """Each output element sums ``a.shape[-1]`` products (broadcast batches included)."""
    a, b = call.input_tensors()[:2]
    return product(call.output.numel, a.shape[-1], a, b)


@register(torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm, torch.addmv,
          torch.Tensor.addmv)
def add_product(call: Call) -> Counts:
    """``beta x input + alpha x (a @ b)``: a matmul plus one add per output (none if ``beta=0``)."""
    a, b = call.input_tensors()[1:3]
    added = call.kwargs.get("beta", 1) != 0
    return product(call.output.numel, a.shape[-1], a, b, biases=int(added))


_GROUPED_MM = tuple(f for f in (torch._grouped_mm, getattr(F, "grouped_mm", None)) if f is not None)


@register(*_GROUPED_MM)
def grouped_mm(call: Call) -> Counts:
    """Groups of products sharing one kernel (mixture-of-experts layers): each output element
    sums ``mat_a.shape[-1]`` products, except when both operands are 2-D, where the groups split
    that dimension and each of the ``G`` outputs of a position sums its own slice.

    NB: rows of a 2-D ``mat_a`` past ``offs[-1]`` are skipped by the kernel and counted here:
    shapes do not say where the offsets end.
    """
    a, b = call.arg(0, "mat_a"), call.arg(1, "mat_b")
    outputs = call.output.numel
    if len(a.shape) == 2 and len(b.shape) == 2:
        outputs //= call.output.shape[0]
    return product(outputs, a.shape[-1], a, b, biases=int(call.kwargs.get("bias") is not None))


@register(torch.einsum)
def einsum(call: Call) -> Counts:
    """Operands contracted pairwise, left to right, as ``torch.einsum`` does without opt_einsum.

    Each step costs the product of the sizes of the labels it keeps (needed by the output or a
    later operand) and of those its two operands share and sum; a label found in one operand only
    and needed by nothing later is summed out before the product, as torch does. For two operands
    without such labels this is the product of all distinct label sizes. A step that sums no
    shared label (an outer or elementwise product) is a ``mul`` in torch: elementwise, not counted;
    so is a step whose summed labels all have size 1 (``bcxd,bcyd->bcxy`` with ``d = 1``), which
    torch runs as a broadcast multiply.
    """
    terms, output, operands = _einsum_terms(call)
    sizes: dict[Any, int] = {}
    for term, info in zip(terms, operands):
        for label, size in zip(term, info.shape):
            sizes[label] = max(sizes.get(label, 1), size)
    total = Counts()
    left, left_info = set(terms[0]), operands[0]
    for i in range(1, len(terms)):
        right = set(terms[i])
        later = output.union(*terms[i + 1:])
        kept = (left | right) & later
        contracted = (left & right) - later
        summed = prod(sizes[label] for label in contracted)
        if summed > 1:
            total += product(prod(sizes[label] for label in kept), summed, left_info, operands[i])
        left = kept
        left_info = TensorInfo((), left_info.needs_grad or operands[i].needs_grad)
    return total


def _einsum_terms(call: Call) -> tuple[list[list[Any]], set[Any], list[TensorInfo]]:
    """Labels of each operand and the set of output labels; ``...`` becomes one label per axis."""
    if isinstance(call.args[0], str):
        operands = list(call.args[1:])
        if len(operands) == 1 and isinstance(operands[0], (tuple, list)):
            operands = list(operands[0])
        inputs, arrow, output = call.args[0].replace(" ", "").partition("->")
        terms = [_split(term) for term in inputs.split(",")]
        explicit: Optional[list[Any]] = _split(output) if arrow else None
    else:   # einsum(op1, sublist1, op2, sublist2, ..., [output sublist])
        pairs = len(call.args) // 2
        operands = list(call.args[0:2 * pairs:2])
        terms = [list(sub) for sub in call.args[1:2 * pairs:2]]
        explicit = list(call.args[-1]) if len(call.args) % 2 else None
    broadcast = max((len(info.shape) - len(term) + 1 for term, info in zip(terms, operands)
                     if Ellipsis in term), default=0)
    terms = [_expand(term, len(info.shape) - len(term) + 1) for term, info in zip(terms, operands)]
    if explicit is None:     # implicit output: the broadcast axes and every label used once
        labels = [label for term in terms for label in term if not _is_axis(label)]
        explicit = [Ellipsis] + [label for label in labels if labels.count(label) == 1]
    return terms, set(_expand(explicit, broadcast)), operands


def _split(term: str) -> list[Any]:
    head, dots, tail = term.partition("...")
    return list(head) + ([Ellipsis] if dots else []) + list(tail)


def _expand(term: list[Any], axes: int) -> list[Any]:
    """Replace ``...`` by ``axes`` labels ``("...", i)``, numbered from the right so broadcasting lines up."""
    if Ellipsis not in term:
        return term
    at = term.index(Ellipsis)
    return term[:at] + [("...", axes - j) for j in range(axes)] + term[at + 1:]


def _is_axis(label: Any) -> bool:
    return isinstance(label, tuple)


@register(F.scaled_dot_product_attention)
def scaled_dot_product_attention(call: Call) -> Counts:
    """``softmax(q k^T / sqrt(d)) v``, as PyTorch's counter: masks and causality change nothing."""
    q, k, v, y = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value"), call.output
    batch = prod(y.shape[:-2])
    return attention(batch, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1], q, k, v)


# -- max pooling -------------------------------------------------------------------------------
def _max_pool(dims: int):
    def max_pool(call: Call) -> Counts:
        """Comparisons: valid elements in each window minus one; padding is never read."""
        kernel = _axes(call.arg(1, "kernel_size"), dims)
        stride = call.arg(2, "stride")
        return Counts(comparisons=max_pool_comparisons(
            call.arg(0, "input"), pooled(call.output), kernel,
            _axes(stride, dims) if stride else kernel,      # None or [] means the kernel size
            _axes(call.arg(3, "padding", 0), dims), _axes(call.arg(4, "dilation", 1), dims)))
    return max_pool


def _adaptive_max_pool(dims: int):
    def adaptive_max_pool(call: Call) -> Counts:
        """Comparisons: elements of each adaptive window minus one."""
        return Counts(comparisons=adaptive_max_pool_comparisons(call.arg(0, "input"), pooled(call.output), dims))
    return adaptive_max_pool


_MAX_POOLS = {
    1: (F.max_pool1d, F.max_pool1d_with_indices, torch.max_pool1d, torch.max_pool1d_with_indices),
    2: (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d),
    3: (F.max_pool3d, F.max_pool3d_with_indices, torch.max_pool3d),
}
_ADAPTIVE_MAX_POOLS = {
    1: (F.adaptive_max_pool1d, F.adaptive_max_pool1d_with_indices, torch.adaptive_max_pool1d),
    2: (F.adaptive_max_pool2d, F.adaptive_max_pool2d_with_indices),
    3: (F.adaptive_max_pool3d, F.adaptive_max_pool3d_with_indices),
}
for _dims, _targets in _MAX_POOLS.items():
    register(*_targets)(_max_pool(_dims))
for _dims, _targets in _ADAPTIVE_MAX_POOLS.items():
    register(*_targets)(_adaptive_max_pool(_dims))
