"""Attention modules.

``nn.MultiheadAttention`` computes through ``F.multi_head_attention_forward`` with its own
projection weights and ``out_proj.weight``, never calling ``out_proj``: its formula claims the call.
``nn.TransformerEncoderLayer``/``DecoderLayer`` need no formula of their own: under torchflops they
always run their submodules (see ``_capture``), which the attention and linear formulas count.
"""
from __future__ import annotations

from torch import nn

from .._call import Call, TensorInfo
from .._counts import Counts
from .._registry import register
from ._dense import dense, trainable
from .functional import attention


@register(nn.MultiheadAttention)
def multihead_attention(module: nn.MultiheadAttention, call: Call) -> Counts:
    """Projections of query, key and value (+ bias), attention over all heads, output projection.

    ``add_bias_kv`` and ``add_zero_attn`` each add one key; ``need_weights`` and the fused
    inference path compute the same products. Backward follows autograd through the slow path.
    """
    query, key, value = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    embed = module.embed_dim
    if module._qkv_same_embed_dim:
        weights = (module.in_proj_weight,) * 3
    else:
        weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
    bias = module.in_proj_bias
    projections = Counts()
    projected = []
    for x, weight, extra in zip((query, key, value), weights, (None, module.bias_k, module.bias_v)):
        projections += dense(x.numel // weight.shape[1] * embed, weight.shape[1], biases=int(bias is not None),
                             input_grad=x.needs_grad, weight_grad=trainable(weight))
        projected.append(TensorInfo((), x.needs_grad or any(trainable(t) for t in (weight, bias, extra))))
    q, k, v = projected

    seq = 1 if module.batch_first and len(query.shape) == 3 else 0
    queries, keys = query.shape[seq], key.shape[seq]
    keys += int(module.bias_k is not None) + int(module.add_zero_attn)
    batch_heads = query.numel // embed // queries * module.num_heads
    head_dim = embed // module.num_heads
    core = attention(batch_heads, queries, keys, head_dim, head_dim, q, k, v)

    out = module.out_proj
    output = dense(query.numel, embed, biases=int(out.bias is not None),
                   input_grad=q.needs_grad or k.needs_grad or v.needs_grad, weight_grad=trainable(out.weight))
    return projections + core + output
