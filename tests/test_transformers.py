"""transformers models (both lines CI runs: 5.x and 4.57) counted shape-only against real CPU passes."""
import pytest
import torch

import torchflops as tf
from hf import V5, build, flop_counter, token_ids, transformers
from oracles import work

pytestmark = pytest.mark.transformers


def llama_macs(layers, tokens, hidden, intermediate, vocab, heads):
    """Per layer: q, k, v, o projections (4 x T x H x H), the gated MLP (3 x T x H x I) and the two
    attention matmuls (2 x heads x T x T x head_dim); then the LM head (T x H x V). transformers 4.x
    computes the rotary angles as a matmul, (head_dim / 2, 1) @ (1, T): head_dim / 2 x T more."""
    head_dim = hidden // heads
    per_layer = 4 * tokens * hidden * hidden + 3 * tokens * hidden * intermediate \
        + 2 * heads * tokens * tokens * head_dim
    rotary = 0 if V5 else head_dim // 2 * tokens
    return layers * per_layer + tokens * hidden * vocab + rotary


SMALL = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=100)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_small_llama_matches_hand_derivation_and_the_eager_oracle(attention):
    model = build(transformers.LlamaConfig(**SMALL), transformers.LlamaForCausalLM, attention=attention)
    prof = tf.count(model, input_size=(1, 16), dtype=torch.long)
    assert prof.total.macs == llama_macs(2, 16, 64, 176, 100, 4)
    assert prof.unsupported == {}       # LlamaRMSNorm has a weight but only does elementwise work
    # PyTorch's counter sees the attention matmuls only on the eager path
    cpu = build(transformers.LlamaConfig(**SMALL), transformers.LlamaForCausalLM, device="cpu")
    forward, backward = flop_counter(cpu, {"input_ids": token_ids((1, 16), 100)})
    assert (prof.total.flops, prof.total.backward_flops) == (forward, backward)


@pytest.mark.slow
def test_llama_7b_shape_only():
    config = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    prof = tf.count(build(config, transformers.LlamaForCausalLM, attention="sdpa"), input_size=(1, 2048),
                    dtype=torch.long)
    # 32 x (4 x 2048 x 4096^2 + 3 x 2048 x 4096 x 11008 + 2 x 32 x 2048^2 x 128) + 2048 x 4096 x 32000
    # (+ 64 x 2048 for 4.x's rotary matmul)
    assert prof.total.flops == 2 * llama_macs(32, 2048, 4096, 11008, 32000, 32) == (
        29_261_612_187_648 if V5 else 29_261_612_449_792)
    assert prof.total.params == 6_738_415_616
    assert prof.unsupported == {}


def _families():
    small_mistral = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=1000)     # grouped-query attention
    ids = {"input_ids": token_ids((1, 128), 1000)}
    return {
        "bert": (transformers.BertConfig, {}, transformers.BertModel, ids),
        "gpt2": (transformers.GPT2Config, {}, transformers.GPT2LMHeadModel, ids),
        "distilbert": (transformers.DistilBertConfig, {}, transformers.DistilBertModel, ids),
        "t5": (transformers.T5Config, {}, transformers.T5Model,
               dict(ids, decoder_input_ids=token_ids((1, 16), 1000))),
        "vit": (transformers.ViTConfig, {}, transformers.ViTModel, {"pixel_values": torch.zeros(1, 3, 224, 224)}),
        "mistral": (transformers.MistralConfig, small_mistral, transformers.MistralForCausalLM, ids),
    }


@pytest.mark.parametrize("family", sorted(_families()))
def test_transformers_families_equal_the_eager_oracle(family):
    config, sizes, cls, inputs = _families()[family]
    prof = tf.count(build(config(**sizes), cls), kwargs=inputs)     # on meta, shape-only
    forward, backward = flop_counter(build(config(**sizes), cls, device="cpu"), inputs)
    assert (prof.total.flops, prof.total.backward_flops) == (forward, backward)
    assert forward > 0
    assert prof.unsupported == {}


def test_bert_built_on_meta_counts_shape_only_despite_its_padding_check():
    """transformers 4.x reads the last and first token ids to warn about padding; that check decides
    nothing counted, so it is answered on meta instead of stopping the pass."""
    model = build(transformers.BertConfig(), transformers.BertModel, attention="sdpa")
    by_size = tf.count(model, input_size=(1, 128), dtype=torch.long)
    positional = tf.count(model, torch.zeros(1, 128, dtype=torch.long))
    keyword = tf.count(model, kwargs={"input_ids": torch.zeros(1, 128, dtype=torch.long)})
    assert by_size.total == positional.total == keyword.total
    forward, _ = flop_counter(build(transformers.BertConfig(), transformers.BertModel, device="cpu"),
                              {"input_ids": token_ids((1, 128), 30522)}, backward=False)
    assert by_size.total.flops == forward


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_gpt2_with_an_attention_mask_counts_shape_only(attention):
    config = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=100)
    inputs = {"input_ids": token_ids((2, 16), 100), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    prof = tf.count(build(transformers.GPT2Config(**config), transformers.GPT2LMHeadModel, attention=attention),
                    kwargs=inputs)
    without = tf.count(build(transformers.GPT2Config(**config), transformers.GPT2LMHeadModel, attention=attention),
                       kwargs={"input_ids": inputs["input_ids"]})
    cpu = build(transformers.GPT2Config(**config), transformers.GPT2LMHeadModel, device="cpu", attention="eager")
    # the mask costs elementwise work and moves bytes, and no products
    assert work(prof.total).replace(elementwise_flops=0) == work(without.total).replace(elementwise_flops=0)
    assert (prof.total.flops, prof.total.backward_flops) == flop_counter(cpu, inputs)


def test_the_installed_transformers_is_in_the_tested_range():
    """setup.cfg states the range CI tests (.ci/run runs these tests on 5.x and on 4.57)."""
    from pathlib import Path
    extra = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text().split("test =", 1)[1]
    assert "transformers>=4.57,<6" in extra.split("bench =", 1)[0]
    major, minor = (int(n) for n in transformers.__version__.split(".")[:2])
    assert (major, minor) >= (4, 57) and major < 6
