"""A Llama-style decoder from transformers, built without storage, counted shape-only."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf

transformers = pytest.importorskip("transformers")


def llama_macs(layers, tokens, hidden, intermediate, vocab, heads):
    """Per layer: q, k, v, o projections (4 x T x H x H), the gated MLP (3 x T x H x I) and the two
    attention matmuls (2 x heads x T x T x head_dim); then the LM head (T x H x V)."""
    head_dim = hidden // heads
    per_layer = 4 * tokens * hidden * hidden + 3 * tokens * hidden * intermediate \
        + 2 * heads * tokens * tokens * head_dim
    return layers * per_layer + tokens * hidden * vocab


def _llama(attention, **sizes):
    config = transformers.LlamaConfig(attn_implementation=attention, **sizes)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(config).eval()


SMALL = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=100)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_small_llama_matches_hand_derivation_and_the_eager_oracle(attention):
    model = _llama(attention, **SMALL)
    prof = tf.count(model, input_size=(1, 16), dtype=torch.long)
    expected = llama_macs(2, 16, 64, 176, 100, 4)
    assert prof.total.macs == expected
    assert prof.unsupported == {}       # LlamaRMSNorm has a weight but only does elementwise work
    # PyTorch's counter sees the attention matmuls only on the eager path
    with FlopCounterMode(display=False) as counter:
        _llama("eager", **SMALL)(torch.zeros(1, 16, dtype=torch.long, device="meta"))
    assert prof.total.flops == counter.get_total_flops()


@pytest.mark.slow
def test_llama_7b_shape_only():
    model = _llama("sdpa", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    prof = tf.count(model, input_size=(1, 2048), dtype=torch.long)
    # 32 x (4 x 2048 x 4096^2 + 3 x 2048 x 4096 x 11008 + 2 x 32 x 2048^2 x 128) + 2048 x 4096 x 32000
    assert prof.total.flops == 2 * llama_macs(32, 2048, 4096, 11008, 32000, 32) == 29_261_612_187_648
    assert prof.total.params == 6_738_415_616
    assert prof.unsupported == {}


def _families():
    small_mistral = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=1000)     # grouped-query attention
    ids = {"input_ids": torch.zeros(1, 128, dtype=torch.long)}
    return {
        "bert": (transformers.BertConfig(), transformers.BertModel, ids),
        "gpt2": (transformers.GPT2Config(), transformers.GPT2LMHeadModel, ids),
        "distilbert": (transformers.DistilBertConfig(), transformers.DistilBertModel, ids),
        "t5": (transformers.T5Config(), transformers.T5Model,
               dict(ids, decoder_input_ids=torch.zeros(1, 16, dtype=torch.long))),
        "vit": (transformers.ViTConfig(), transformers.ViTModel, {"pixel_values": torch.zeros(1, 3, 224, 224)}),
        "mistral": (transformers.MistralConfig(**small_mistral), transformers.MistralForCausalLM, ids),
    }


@pytest.mark.parametrize("family", sorted(_families()))
def test_transformers_families_equal_the_eager_oracle(family):
    config, cls, inputs = _families()[family]
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = cls(config).eval()
    prof = tf.count(model, kwargs=inputs)
    with FlopCounterMode(display=False) as counter:
        model(**{name: t.to("meta") for name, t in inputs.items()})
    assert prof.total.flops == counter.get_total_flops() > 0
    assert prof.unsupported == {}
