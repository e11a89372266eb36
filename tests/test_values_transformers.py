"""transformers 4.57's hybrid Mamba models size their causal mask by ``cache_position[-1] + 1`` and
branch on ``cache_position[0] > 0``: values that follow from ``torch.arange`` alone, which a
shape-only pass reads (``_values``). Counted on meta, they equal a real CPU pass under PyTorch's
FlopCounterMode, forward and backward. (Jamba, the mixture-of-experts one, is in
``test_moe_transformers``; on transformers 5 these models build their masks from shapes.)
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from hf import V5, build, token_ids, transformers

pytestmark = [pytest.mark.transformers, pytest.mark.slow,
              pytest.mark.skipif(V5, reason="transformers 5 builds these masks from shapes")]

SMALL = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, vocab_size=500, intermediate_size=128)
MODELS = {
    # a Mamba layer, then an attention layer (the one the mask is for); small Mamba heads and chunks
    "bamba": ("BambaConfig", "BambaForCausalLM", dict(SMALL, num_hidden_layers=2, attn_layer_indices=[1],
                                                      mamba_n_heads=8, mamba_d_head=16, mamba_d_state=16,
                                                      mamba_chunk_size=8)),
    # Zamba's layer pattern (mamba layers with a shared attention block) needs 6 layers
    "zamba": ("ZambaConfig", "ZambaForCausalLM", dict(SMALL, num_hidden_layers=6, use_mamba_kernels=False)),
}


def _oracle(model, ids):
    """(forward, backward) FLOPs of a real CPU pass under FlopCounterMode, except that the
    depthwise convolutions' backward is taken as twice their forward (the input and the weight
    gradient each cost one forward): PyTorch's counter ignores ``groups`` there (a Conv1d of 160
    channels, groups=160, over 2x8 steps with kernel 4: forward 28,160, its backward 4,533,760)."""
    aten = torch.ops.aten
    with FlopCounterMode(display=False) as forward:
        out = model(input_ids=ids)
    with FlopCounterMode(display=False) as backward:
        out.logits.sum().backward()
    ops, back = forward.get_flop_counts()["Global"], backward.get_flop_counts()["Global"]
    convolutions = ops.get(aten.convolution, 0)
    return sum(ops.values()), sum(back.values()) - back.get(aten.convolution_backward, 0) + 2 * convolutions


@pytest.mark.parametrize("name", MODELS)
def test_a_hybrid_model_whose_mask_reads_positions_counts_shape_only_as_a_real_pass(name):
    config, cls, sizes = MODELS[name]
    make = lambda: getattr(transformers, config)(**sizes)      # noqa: E731
    ids = token_ids((2, 8), 500)
    meta = tf.count(build(make(), getattr(transformers, cls)), input_size=(2, 8), dtype=torch.long)
    assert (meta.total.flops, meta.total.backward_flops) == _oracle(
        build(make(), getattr(transformers, cls), device="cpu"), ids)
    assert meta.unsupported == {}
