"""tf.generation: prefill, decode steps with a KV cache, totals and the cache's bytes, against
PyTorch's counter around a real generate() on CPU and the cache a real generate() leaves.

Runs on whichever transformers is importable (5.x takes the cache as `cache=`, 4.57 as
`past_key_values=`). Small configs: hidden 64, 4 heads of 16, vocab 100, eager attention.
"""
import inspect
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from oracles import work

transformers = pytest.importorskip("transformers")

PROMPT, NEW = 16, 32
# transformers 4.x computes Llama's rotary angles as a matmul, inv_freq @ positions: head_dim / 2 MACs
# per position and forward, 8 here (5.x multiplies by broadcasting, which is elementwise)
ROTARY_MATMUL = int(transformers.__version__.split(".")[0]) < 5
ROTARY = 8 * ROTARY_MATMUL
SMALL = dict(hidden_size=64, intermediate_size=176, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=100, bos_token_id=0, eos_token_id=0, attn_implementation="eager")


def gpt2(dtype=torch.float32):
    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100, bos_token_id=0,
                                     eos_token_id=0, attn_implementation="eager")
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).to(dtype).eval()


def llama(dtype=torch.float32):
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(num_hidden_layers=2, **SMALL)).to(dtype).eval()


def mistral(dtype=torch.float32):
    """Every layer attends to a window of 8 tokens; its cache keeps the last 7."""
    torch.manual_seed(0)
    config = transformers.MistralConfig(num_hidden_layers=2, sliding_window=8, **SMALL)
    return transformers.MistralForCausalLM(config).to(dtype).eval()


def gemma2(dtype=torch.float32):
    """Mixed layers: sliding (window 8), full, sliding."""
    torch.manual_seed(0)
    config = transformers.Gemma2Config(num_hidden_layers=3, head_dim=16, sliding_window=8, **SMALL)
    return transformers.Gemma2ForCausalLM(config).to(dtype).eval()


MODELS = {"gpt2": gpt2, "llama": llama, "mistral": mistral, "gemma2": gemma2}


# -- hand derivations (MACs; FLOPs are twice) --------------------------------------------------------
# GPT-2 per token and layer: c_attn 64x192, c_proj 64x64, MLP 64x256 and 256x64 = 12 x 64^2 = 49,152.
# Llama per token and layer: q 64x64, k and v 64x32 (2 KV heads of 16), o 64x64, gated MLP 3 x 64 x 176
# = 46,080. Both: the LM head 64 x 100 = 6,400 for the one position whose logits generate() keeps, and
# attention q @ k^T plus weights @ v: 2 x 4 heads x 16 = 128 MACs per query and key it attends to
# (all four query heads, whatever the number of KV heads; a causal mask halves nothing).
LINEAR = {"gpt2": 49_152, "llama": 46_080}


def prefill_macs(name, prompt, batch=1):
    # rotary angles once for the batch: their position ids are 1 x tokens
    return batch * (2 * (LINEAR[name] * prompt + 128 * prompt * prompt) + 6_400) \
        + (ROTARY * prompt if name == "llama" else 0)


def step_macs(name, context, batch=1):
    return batch * (2 * (LINEAR[name] + 128 * (context + 1)) + 6_400) + (ROTARY if name == "llama" else 0)


# -- the oracles ------------------------------------------------------------------------------------
def cache_keyword(model):
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def real_generate(model, batch=1, prompt=PROMPT, new=NEW):
    ids = torch.randint(1, 100, (batch, prompt), generator=torch.Generator().manual_seed(1))
    with FlopCounterMode(display=False) as counter:
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             return_dict_in_generate=True, pad_token_id=0)
    assert out.sequences.shape == (batch, prompt + new)
    cache = getattr(out, "cache", None) or out.past_key_values
    return counter.get_total_flops(), [layer.keys.nbytes + layer.values.nbytes for layer in cache.layers]


def real_cache(model, context):
    """The cache generate() builds for this config, holding `context` tokens of zeros."""
    cache = transformers.DynamicCache(config=model.config)
    kv_heads = getattr(model.config, "num_key_value_heads", 4)
    for index in range(model.config.num_hidden_layers):
        cache.update(torch.zeros(1, kv_heads, context, 16), torch.zeros(1, kv_heads, context, 16), index)
    return cache


# -- FLOPs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, batch", [("gpt2", 1), ("llama", 1), ("gpt2", 2)])
def test_total_equals_the_counter_around_generate_and_the_hand_derivation(name, batch):
    model = MODELS[name]()
    gen = tf.generation(model, PROMPT, NEW, batch=batch)
    # the prefill makes the first new token; the other 31 come from steps at contexts 16 ... 46
    expected = prefill_macs(name, PROMPT, batch) + sum(step_macs(name, c, batch) for c in range(16, 47))
    assert gen.total.flops == 2 * expected == real_generate(model, batch)[0]
    assert gen.prefill.flops == 2 * prefill_macs(name, PROMPT, batch)
    assert gen.total.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_total_equals_the_sum_of_individually_counted_steps(name):
    """A real greedy loop on CPU, each forward counted on its own with tf.count."""
    model = MODELS[name]()
    keyword = cache_keyword(model)
    cache = transformers.DynamicCache(config=model.config)
    ids = torch.randint(1, 100, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    prefill = tf.count(model, device="cpu", kwargs={"input_ids": ids, keyword: cache, "use_cache": True,
                                                    "logits_to_keep": 1})
    gen = tf.generation(model, PROMPT, NEW)
    assert work(gen.prefill) == work(prefill.total)
    steps = []
    for context in range(PROMPT, PROMPT + NEW - 1):
        assert cache.get_seq_length() == context
        step = tf.count(model, device="cpu", kwargs={"input_ids": ids[:, :1], keyword: cache, "use_cache": True})
        assert work(gen.step(context)) == work(step.total)
        steps.append(step.total.flops)
    assert gen.total.flops == prefill.total.flops + sum(steps)
    assert work(tf.generation(model, PROMPT, NEW, device="cpu").total) == work(gen.total)      # real tensors, same counts


@pytest.mark.parametrize("name", ["llama", "mistral", "gemma2"])
def test_closed_form_equals_a_step_counted_at_context_4096(name):
    model = MODELS[name]()
    gen = tf.generation(model, PROMPT, NEW)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.ones(1, 1, dtype=torch.long), use_cache=True,
              **{cache_keyword(model): real_cache(model, 4096)})
    # A sliding layer's cache holds its last 7 tokens, so a step there attends to 8 of them.
    # llama: 2 full layers; mistral: 2 sliding; gemma2: sliding, full, sliding (3 x 46,080 linear)
    attention = {"llama": 2 * 128 * 4097, "mistral": 2 * 128 * 8, "gemma2": 128 * 4097 + 2 * 128 * 8}[name]
    linear = 3 * 46_080 if name == "gemma2" else 2 * 46_080
    assert gen.step(4096).flops == 2 * (linear + attention + 6_400 + ROTARY) == counter.get_total_flops()


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_a_generation_across_the_window_break_equals_the_counter_around_generate(name):
    """A prompt of 4 and 8 new tokens: steps at contexts 4 ... 10, the window's cache fills at 7."""
    model = MODELS[name]()
    assert tf.generation(model, 4, 8).total.flops == real_generate(model, prompt=4, new=8)[0]


def test_steps_are_affine_in_the_context_until_a_window_fills():
    gen = tf.generation(gemma2(), PROMPT, NEW)
    # per token of context: the full layer's 128 MACs, and the two sliding layers' until 7 are cached
    assert [gen.step(c + 1).macs - gen.step(c).macs for c in (1, 6, 7, 100)] == [384, 384, 128, 128]
    assert gen.step_formula("macs").count("* c") == 2


# -- the KV cache -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, dtype", [("gpt2", torch.float32), ("llama", torch.float32),
                                         ("llama", torch.bfloat16), ("mistral", torch.float32),
                                         ("gemma2", torch.float32)])
def test_kv_cache_bytes_equal_the_cache_a_real_generate_leaves(name, dtype):
    model = MODELS[name](dtype)
    gen = tf.generation(model, PROMPT, NEW)
    # after 32 new tokens the cache holds 16 + 31 = 47 (the last token is never fed back); a layer
    # stores keys and values of (batch 1, KV heads, tokens, 16) in the model's dtype: GPT-2 has 4 KV
    # heads, the others 2 (grouped-query); a sliding layer holds 7 tokens
    size = dtype.itemsize
    full, sliding = 2 * 2 * 47 * 16 * size, 2 * 2 * 7 * 16 * size
    expected = {"gpt2": [2 * full] * 2, "llama": [full] * 2, "mistral": [sliding] * 2,
                "gemma2": [sliding, full, sliding]}[name]
    flops, layers = real_generate(model)
    assert list(gen.kv_cache_layers(47)) == expected == layers
    assert gen.kv_cache_bytes(47) == sum(expected)
    assert gen.total.flops == flops


def test_kv_cache_of_llama_7b_counts_kv_heads_not_the_hidden_size():
    config = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                      num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).to(torch.float16)
    gen = tf.generation(model, 128, 4096)
    # 32 layers x (keys + values) x 8 KV heads x 128 x 2 bytes = 131,072 bytes per token
    assert gen.kv_cache_bytes(4096) == 32 * 2 * 8 * 128 * 2 * 4096 == 536_870_912
    # per step: 32 x (q 4096^2 + k, v 4096x1024 + o 4096^2 + MLP 3 x 4096 x 11008) + head 4096 x 32000,
    # attention 32 layers x 2 x 32 heads x 128 per attended token, rotary 64 MACs on transformers 4
    linear = 32 * (2 * 4096 ** 2 + 2 * 4096 * 1024 + 3 * 4096 * 11008) + 4096 * 32000
    assert gen.step(4096).macs == linear + 32 * 2 * 32 * 128 * 4097 + 64 * ROTARY_MATMUL


# -- bad input and the model left alone ------------------------------------------------------------
def test_bad_arguments_are_refused_before_anything_runs():
    model = llama()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        tf.generation("llama", 16, 32)
    with pytest.raises(TypeError, match="transformers models"):
        tf.generation(torch.nn.Linear(4, 4), 16, 32)
    with torch.device("meta"):
        t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(d_model=64, num_layers=1, num_heads=4))
    with pytest.raises(TypeError, match="decoder-only"):
        tf.generation(t5, 16, 32)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="prompt_tokens must be a positive integer"):
            tf.generation(model, bad, 32)
    with pytest.raises(ValueError, match="new_tokens"):
        tf.generation(model, 16, 0)
    with pytest.raises(ValueError, match="batch"):
        tf.generation(model, 16, 32, batch=0)
    gen = tf.generation(model, 16, 32)
    with pytest.raises(ValueError, match="context"):
        gen.step(0)
    with pytest.raises(ValueError, match="unknown field"):
        gen.step_formula("watts")


def test_the_model_is_left_as_it_was():
    model = llama()
    model.train()
    before = {name: (p, p.clone(), p.requires_grad) for name, p in model.named_parameters()}
    attributes = dict(vars(model))
    tf.generation(model, 16, 8)
    assert model.training
    assert dict(vars(model)) == attributes
    for name, p in model.named_parameters():
        same, values, grad = before[name]
        assert p is same and torch.equal(p, values) and p.requires_grad == grad and p.device.type == "cpu"


@pytest.mark.skipif(ROTARY_MATMUL, reason="the README shows transformers 5's figures")
def test_the_readme_example_prints_what_the_readme_shows(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("\n## LLMs\n"):]
    code, shown = re.search(r"```python\n(.*?)```\n\n```text\n(.*?)```", section, re.S).groups()
    exec(compile(code, "README.md (LLMs)", "exec"), {})
    assert capsys.readouterr().out == shown
    # the step at 4,096: 2 x (32 x (4 x 4096^2 + 3 x 4096 x 11008) + 4096 x 32000) linear FLOPs
    # + 2 x 32 layers x 2 x 32 heads x 128 x 4,097 keys; the cache 32 x 2 x 4096 x 2 bytes per token
    linear = 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008) + 4096 * 32000
    assert f"{2 * (linear + 32 * 2 * 32 * 128 * 4097):,} FLOPs" in shown
    assert f"{32 * 2 * 4096 * 2 * 4096:,} bytes" in shown
