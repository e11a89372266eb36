"""ATen operations that reach the dispatcher without a function-level record.

An exported or FX graph, a TorchScript function, a direct ``torch.ops.aten`` call, or the body of
a fused Python function arrives here as ATen operations. Formulas are keyed by the operation's
packet (``torch.ops.aten.mm``), follow the same counting rules as the functional formulas (and
reuse them where the arguments line up), and equal PyTorch's ``FlopCounterMode`` on the same
operations (but for its grouped-convolution weight-gradient overcount).

Operations with compute cost and no formula are listed in ``_known.COSTLY_OPS`` and reported.
"""
from __future__ import annotations

from math import prod

import torch

from .._call import Call
from .._counts import Counts
from .._registry import register
from ._dense import dense
from .conv import transposed
from .functional import _axes, _max_pool, _adaptive_max_pool, add_product, attention, matmul, product

__all__ = ["addbmm", "convolution", "fused_attention", "attention_forward"]

aten = torch.ops.aten

register(aten.mm, aten.bmm, aten.mv, aten.dot, aten.vdot)(matmul)
register(aten.addmm, aten.baddbmm, aten.addmv)(add_product)
register(aten.max_pool1d_with_indices, aten.max_pool1d)(_max_pool(1))
register(aten.max_pool2d_with_indices, aten.max_pool2d)(_max_pool(2))
register(aten.max_pool3d_with_indices, aten.max_pool3d)(_max_pool(3))
register(aten.adaptive_max_pool1d)(_adaptive_max_pool(1))
register(aten.adaptive_max_pool2d)(_adaptive_max_pool(2))
register(aten.adaptive_max_pool3d)(_adaptive_max_pool(3))


@register(aten.addbmm)
def addbmm(call: Call) -> Counts:
    """``input + sum_b a[b] @ b[b]``: each output element sums ``batch x k`` products, plus one add."""
    a, b = call.input_tensors()[1:3]
    added = call.kwargs.get("beta", 1) != 0
    return product(call.output.numel, a.shape[0] * a.shape[-1], a, b, biases=int(added))


@register(aten.convolution, aten._convolution)
def convolution(call: Call) -> Counts:
    """``convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    groups)``: as ``F.conv*`` and ``F.conv_transpose*``."""
    x, weight, bias = call.args[:3]
    groups = call.args[8]
    if call.args[6]:
        dims = len(weight.shape) - 2
        return transposed(
            x, call.output, weight.shape[0] // groups, weight.shape[1], weight.shape[2:],
            _axes(call.args[3], dims), _axes(call.args[4], dims), _axes(call.args[5], dims),
            bias=bias is not None, weight_grad=weight.needs_grad)
    return dense(call.output.numel, prod(weight.shape[1:]), biases=int(bias is not None),
                 input_grad=x.needs_grad, weight_grad=weight.needs_grad)


@register(aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
          aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention,
          aten._scaled_dot_product_fused_attention_overrideable)
def fused_attention(call: Call) -> Counts:
    """The fused ``(batch, heads, length, dim)`` kernels: as ``F.scaled_dot_product_attention``."""
    q, k, v = call.args[:3]
    return attention(prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1], q, k, v)


@register(aten._flash_attention_forward, aten._efficient_attention_forward)
def attention_forward(call: Call) -> Counts:
    """The ``(batch, length, heads, dim)`` kernels under the fused ones."""
    q, k, v = call.args[:3]
    return attention(q.shape[0] * q.shape[2], q.shape[1], k.shape[1], q.shape[-1], v.shape[-1], q, k, v)
