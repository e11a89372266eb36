"""transformers' mixture-of-experts families: shape-only equals a real CPU pass and FlopCounterMode.

On transformers 5 every family runs under each experts implementation (``grouped_mm``, the
default, ``batched_mm`` and ``eager``); the oracle is FlopCounterMode on a CPU pass with eager
experts (it has no formula for ``_grouped_mm``). On 4.57 the experts are a list of MLPs (or, for
GPT-OSS and DBRX, their own loops) and the oracle runs the model as built.
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from hf import EXPERTS_IMPLEMENTATIONS, V5, build, flop_counter, token_ids, transformers
from oracles import work

pytestmark = pytest.mark.transformers

VOCAB = 500
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB)

FAMILIES = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(SMALL, intermediate_size=128, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                  dict(SMALL, intermediate_size=128, moe_intermediate_size=32, shared_expert_intermediate_size=64,
                       num_experts=4, num_experts_per_tok=2)),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(SMALL, intermediate_size=128, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                       head_dim=16)),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM",
              dict(SMALL, intermediate_size=32, num_experts=4, num_experts_per_tok=2, num_key_value_heads=4)),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                dict(SMALL, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, head_dim=16)),
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                    dict(SMALL, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=4,
                         num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, num_key_value_heads=4,
                         q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                         n_group=1, topk_group=1)),
    "dbrx": ("DbrxConfig", "DbrxForCausalLM",
             dict(d_model=64, n_heads=4, n_layers=2, vocab_size=VOCAB,
                  ffn_config={"ffn_hidden_size": 32, "moe_num_experts": 4, "moe_top_k": 2},
                  attn_config={"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0})),
    "jamba": ("JambaConfig", "JambaForCausalLM",
              dict(SMALL, intermediate_size=128, num_experts=4, num_experts_per_tok=2, expert_layer_period=1,
                   expert_layer_offset=0, attn_layer_period=1, attn_layer_offset=0, use_mamba_kernels=False)),
    "glm4_moe": ("Glm4MoeConfig", "Glm4MoeForCausalLM",
                 dict(SMALL, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
                      n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, head_dim=16)),
    "ernie4_5_moe": ("Ernie4_5_MoeConfig", "Ernie4_5_MoeForCausalLM",
                     dict(SMALL, intermediate_size=128, moe_intermediate_size=32, moe_num_experts=4, moe_k=2,
                          moe_num_shared_experts=1, moe_layer_start_index=1)),
    "hunyuan_v1_moe": ("HunYuanMoEV1Config", "HunYuanMoEV1ForCausalLM",
                       dict(SMALL, intermediate_size=32, num_experts=4, moe_topk=2, head_dim=16)),
    "granitemoe": ("GraniteMoeConfig", "GraniteMoeForCausalLM",
                   dict(SMALL, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2)),
    "granitemoeshared": ("GraniteMoeSharedConfig", "GraniteMoeSharedForCausalLM",
                         dict(SMALL, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
                              shared_intermediate_size=64)),
    "granitemoehybrid": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM",
                         dict(SMALL, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
                              shared_intermediate_size=64, layer_types=["attention", "attention"])),
    "dots1": ("Dots1Config", "Dots1ForCausalLM",
              dict(SMALL, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
                   n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, head_dim=16)),
    # mixture of experts in the MLP and in attention (query and output projections)
    "jetmoe": ("JetMoeConfig", "JetMoeForCausalLM",
               dict(hidden_size=64, num_hidden_layers=2, num_key_value_heads=2, kv_channels=16, intermediate_size=32,
                    num_local_experts=4, num_experts_per_tok=2, vocab_size=VOCAB)),
}
# DBRX and JetMoe take no experts_implementation on transformers 5
ONE_IMPLEMENTATION = {"dbrx", "jetmoe"}


def _family(name):
    config, model, sizes = FAMILIES[name]
    return (lambda: getattr(transformers, config)(**sizes)), getattr(transformers, model)


def _cases():
    for name in FAMILIES:
        for experts in (EXPERTS_IMPLEMENTATIONS[:1] if name in ONE_IMPLEMENTATION and V5 else EXPERTS_IMPLEMENTATIONS):
            if name in ONE_IMPLEMENTATION:
                experts = None
            marks = () if name == "mixtral" else (pytest.mark.slow,)
            yield pytest.param(name, experts, id=f"{name}-{experts or 'as-built'}", marks=marks)


@pytest.mark.parametrize("name, experts", list(_cases()))
def test_moe_family_shape_only_equals_a_real_pass_forward_and_backward(name, experts):
    config, cls = _family(name)
    ids = token_ids((2, 8), VOCAB)
    oracle = flop_counter(build(config(), cls, device="cpu", experts="eager" if V5 and experts else None),
                          {"input_ids": ids})
    cpu = tf.count(build(config(), cls, device="cpu", experts=experts), ids, device="cpu")
    assert (cpu.total.flops, cpu.total.backward_flops) == oracle
    assert cpu.unsupported == {}
    meta = tf.count(build(config(), cls, experts=experts), input_size=(2, 8), dtype=torch.long)
    # bytes and elementwise work follow the routing each pass ran (shape-only runs no top-k)
    assert work(meta.total).replace(elementwise_flops=0) == work(cpu.total).replace(elementwise_flops=0)
    assert meta.unsupported == {}
    assert meta.active_params == cpu.active_params == _params_one_token_uses(name, experts)


def _params_one_token_uses(name, experts):
    """Brute force: the parameters a one-token pass sends a gradient to, on CPU. Inside the experts,
    a stacked weight (one slice per expert along its first dimension; JetMoe's and 4.x GraniteMoe's
    3-D weights too) counts the slices that got a nonzero gradient, and a listed expert's weight
    counts when it got one (4.x OLMoE calls every expert, those without a token on zero rows); any
    other parameter counts when it got a gradient at all (with one token, attention's query and key
    get a zero one: softmax over one key), or is frozen (Ernie 4.5's routing bias, which the router
    reads)."""
    config, cls = _family(name)
    model = build(config(), cls, device="cpu", experts=experts)
    cached = {}
    if name == "jetmoe":
        # its query projection is an expert, whose slices get a zero gradient from a softmax over
        # one key: the token attends to an earlier one as well, cached without a gradient
        with torch.no_grad():
            earlier = model(input_ids=token_ids((1, 1), VOCAB, seed=4), use_cache=True)[1]
        cached = {"cache" if V5 else "past_key_values": earlier}
    out = model(input_ids=token_ids((1, 1), VOCAB, seed=3), **cached)
    out.logits.sum().backward()
    total = 0
    for qualified, p in model.named_parameters():
        if p.grad is None:
            total += 0 if p.requires_grad else p.numel()
            continue
        path = qualified.split(".")
        owner = model.get_submodule(".".join(path[:-1]))
        if path[-2] == "experts" or p.dim() == 3 or isinstance(owner,
                                                               transformers.models.dbrx.modeling_dbrx.DbrxExpertGLU):
            ffn = getattr(model.config, "ffn_config", None)
            slices = p.grad.reshape(ffn.moe_num_experts if ffn is not None else _experts(model.config), -1)
            total += int((slices != 0).any(dim=1).sum()) * slices.shape[1]
        elif "experts" in path:
            total += p.numel() if p.grad.any() else 0
        else:
            total += p.numel()
    return total


def _experts(config):
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    raise AssertionError("no experts count in the config")


@pytest.mark.slow
def test_jetmoe_counts_shape_only_under_sdpa_attention():
    """4.x's JetMoe picks a subclass of its attention, the caller of its attention experts, per
    attention implementation; the cost is that of eager attention, where PyTorch's counter sees
    the matmuls."""
    config, cls = _family("jetmoe")
    oracle = flop_counter(build(config(), cls, device="cpu"), {"input_ids": token_ids((2, 8), VOCAB)})
    meta = tf.count(build(config(), cls, attention="sdpa"), input_size=(2, 8), dtype=torch.long)
    assert (meta.total.flops, meta.total.backward_flops) == oracle
    assert meta.active_params == _params_one_token_uses("jetmoe", None)


def test_a_scattermoe_block_whose_experts_do_not_match_its_router_is_refused():
    """JetMoe's router picks among 4 experts; experts stacked for 3 cannot be read."""
    config, cls = _family("jetmoe")
    model = build(config(), cls)
    mlp = model.model.layers[0].mlp
    weight = mlp.input_linear.weight
    mlp.input_linear.weight = torch.nn.Parameter(torch.empty(3, *weight.shape[1:], device="meta"))
    with pytest.raises(ValueError, match="JetMoeMoE's router and experts are not laid out as torchflops reads"):
        tf.count(model, input_size=(1, 8), dtype=torch.long)
    assert mlp.input_linear.weight.shape[0] == 3 and "forward" not in vars(mlp.router)


def mixtral_macs(tokens, batch, seq, hidden, intermediate, layers, experts, top_k, heads, kv_heads, vocab):
    """Per layer: q and o (2 x T x H x H), k and v (2 x T x H x kv_heads x head_dim), the two attention
    matmuls (2 x batch x heads x seq^2 x head_dim), the router (T x H x E) and top_k experts per
    token, each a gated MLP (3 x H x I); then the LM head (T x H x V). transformers 4.x adds its
    rotary matmul, (head_dim / 2, 1) @ (1, seq)."""
    head_dim = hidden // heads
    per_layer = (2 * tokens * hidden * hidden + 2 * tokens * hidden * kv_heads * head_dim
                 + 2 * batch * heads * seq * seq * head_dim + tokens * hidden * experts
                 + tokens * top_k * 3 * hidden * intermediate)
    return layers * per_layer + tokens * hidden * vocab + (0 if V5 else head_dim // 2 * seq)


@pytest.mark.parametrize("experts", EXPERTS_IMPLEMENTATIONS)
def test_the_issues_small_mixtral_by_hand(experts):
    """hidden 64, intermediate 128, 2 layers, 4 experts, top-2, vocab 500, 32 heads (8 KV heads, so
    head_dim 2), one sequence of 32 tokens:
    per layer 2x32x64x64 + 2x32x64x16 + 2x32x32^2x2 + 32x64x4 + 32x2x3x64x128 = 2,039,808 MACs,
    x 2 layers + 32x64x500 = 5,103,616 MACs = 10,207,232 FLOPs (transformers 4.x: + 32 rotary MACs).
    A batch of 2 x 16 tokens halves the attention matmuls: 9,945,088 FLOPs."""
    config = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_local_experts=4,
                  num_experts_per_tok=2, vocab_size=500)
    expected = 2 * mixtral_macs(32, 1, 32, 64, 128, 2, 4, 2, 32, 8, 500)
    assert expected == (10_207_232 if V5 else 10_207_296)
    meta = tf.count(build(transformers.MixtralConfig(**config), transformers.MixtralForCausalLM, experts=experts),
                    input_size=(1, 32), dtype=torch.long)
    cpu_model = build(transformers.MixtralConfig(**config), transformers.MixtralForCausalLM, device="cpu",
                      experts=experts)
    cpu = tf.count(cpu_model, token_ids((1, 32), 500), device="cpu")
    assert meta.total.flops == cpu.total.flops == expected
    batched = tf.count(build(transformers.MixtralConfig(**config), transformers.MixtralForCausalLM, experts=experts),
                       input_size=(2, 16), dtype=torch.long)
    assert batched.total.flops == 2 * mixtral_macs(32, 2, 16, 64, 128, 2, 4, 2, 32, 8, 500) == (
        9_945_088 if V5 else 9_945_120)


def test_mixtral_8x7b_built_on_meta_total_and_active_parameters_and_flops():
    config = transformers.MixtralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                        num_local_experts=8, num_experts_per_tok=2, num_attention_heads=32,
                                        num_key_value_heads=8, vocab_size=32000)
    prof = tf.count(build(config, transformers.MixtralForCausalLM), input_size=(1, 2048), dtype=torch.long)
    # per layer: attention 2x4096^2 + 2x4096x1024, 2 RMSNorms of 4096, router 8x4096, 8 experts of
    # 3x4096x14336; embeddings and LM head 2x32000x4096; final norm 4096
    layer = 2 * 4096 ** 2 + 2 * 4096 * 1024 + 2 * 4096 + 8 * 4096 + 8 * 3 * 4096 * 14336
    assert prof.total.params == 32 * layer + 2 * 32000 * 4096 + 4096 == 46_702_792_704
    # one token uses 2 of the 8 experts of each layer
    assert prof.active_params == prof.total.params - 32 * 6 * 3 * 4096 * 14336 == 12_879_925_248
    # 32 x (2x2048x4096^2 + 2x2048x4096x1024 + 2x32x2048^2x128 + 2048x4096x8 + 2048x2x3x4096x14336)
    #   + 2048x4096x32000 MACs
    assert prof.total.flops == 2 * mixtral_macs(2048, 1, 2048, 4096, 14336, 32, 8, 2, 32, 8, 32000) == (
        54_417_235_640_320 if V5 else 54_417_235_902_464)
    assert prof.unsupported == {}
    assert prof.to_dict()["active_params"] == 12_879_925_248
    assert prof.table(depth=1).splitlines()[-1] == (
        "active params: 12.88 G of 46.70 G (12,879,925,248 of 46,702,792,704: "
        "shared weights and top_k experts per token)")


def test_a_dense_model_uses_all_its_parameters():
    prof = tf.count(build(transformers.LlamaConfig(**dict(SMALL, intermediate_size=128)),
                          transformers.LlamaForCausalLM), input_size=(1, 8), dtype=torch.long)
    assert prof.active_params == prof.total.params
    assert "active params" not in prof.table()


def test_the_shape_only_error_names_the_module_whose_call_raised():
    """Llama-style models fail the meta attempt in the rotary embedding (autocast on the meta device)
    and the fake-tensor attempt at the value-dependent call: the error names the latter."""

    class ReadsValues(torch.nn.Module):
        def forward(self, x):
            return x[: int(x.sum())]

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build(transformers.LlamaConfig(**dict(SMALL, intermediate_size=128)),
                               transformers.LlamaModel, device="cpu")
            self.reads = ReadsValues()

        def forward(self, ids):
            return self.reads(self.inner(ids).last_hidden_state)

    with pytest.raises(tf.ShapeOnlyError, match=r"raised in module 'reads' \(ReadsValues\)") as caught:
        tf.count(Decoder(), input_size=(1, 8), dtype=torch.long)
    assert "rotary" not in str(caught.value)
    assert "Count it on real tensors with device='cpu'" in str(caught.value)   # built on CPU: that works


def test_a_meta_built_model_that_cannot_run_shape_only_gets_advice_that_works_from_there():
    config = transformers.MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                        num_local_experts=4, num_experts_per_tok=2, vocab_size=500)
    model = build(config, transformers.MixtralForCausalLM, experts=EXPERTS_IMPLEMENTATIONS[-1])
    with pytest.raises(ValueError, match="build it with real parameters"):
        tf.count(model, input_size=(1, 8), dtype=torch.long, device="cpu")


def _experts_classes():
    """Every experts class of the installed transformers 5 (those ``use_experts_implementation``
    gives its dispatching forward), with the default config of its model that builds it."""
    import importlib
    from pathlib import Path

    from transformers.integrations.moe import use_experts_implementation

    class Probe(torch.nn.Module):
        def forward(self):
            return None

    code = use_experts_implementation(Probe).forward.__code__
    found, unbuilt = [], []
    for folder in sorted((Path(transformers.__file__).parent / "models").iterdir()):
        for path in folder.glob("modeling_*.py"):
            if "use_experts_implementation" not in path.read_text():
                continue
            module = importlib.import_module(f"transformers.models.{folder.name}.{path.stem}")
            configs = importlib.import_module(f"transformers.models.{folder.name}.configuration_{folder.name}")
            config_classes = [c for c in vars(configs).values() if isinstance(c, type)
                              and issubclass(c, transformers.PreTrainedConfig) and c.__module__ == configs.__name__]
            for cls in vars(module).values():
                if isinstance(cls, type) and cls.__module__ == module.__name__ and \
                        getattr(getattr(cls, "forward", None), "__code__", None) is code:
                    built = _build_experts(cls, config_classes)
                    (found if built else unbuilt).append(built or cls.__name__)
    return found, unbuilt


def _build_experts(cls, config_classes):
    for config_class in config_classes:
        try:
            config = config_class()
        except Exception:       # a config that needs arguments
            continue
        for candidate in (config, config.get_text_config()):
            try:
                with torch.device("meta"):
                    return cls(candidate), candidate
            except Exception:   # the experts read a sub-config this one is not
                continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not V5, reason="transformers 4.x has no experts modules of its own")
def test_every_experts_class_transformers_ships_counts_as_pytorchs_counter_on_batched_mm():
    """Default (full-size) configs built on meta; PyTorch's counter sees the batched_mm
    implementation's bmm calls on meta, forward and backward, so it is an oracle at any size."""
    found, unbuilt = _experts_classes()
    names = {type(experts).__name__ for experts, _ in found}
    assert {"MixtralExperts", "Qwen2MoeExperts", "Qwen3MoeExperts", "OlmoeExperts", "GptOssExperts",
            "DeepseekV3Experts", "JambaExperts"} <= names
    assert len(unbuilt) < len(found) / 10, unbuilt
    for experts, config in found:
        top_k = getattr(config, "num_experts_per_tok", None) or 2
        weight = next(p for p in experts.parameters() if p.dim() == 3)
        hidden = weight.shape[1] if experts.is_transposed else weight.shape[2]

        def inputs():
            return (torch.empty(4, hidden, device="meta", requires_grad=True),
                    torch.zeros(4, top_k, dtype=torch.long, device="meta"), torch.empty(4, top_k, device="meta"))

        config._experts_implementation = "batched_mm"
        with FlopCounterMode(display=False) as counter:
            out = experts(*inputs())
            forward = counter.get_total_flops()
            out.sum().backward()
        experts.zero_grad(set_to_none=True)
        prof = tf.count(experts, *inputs())
        assert (prof.total.flops, prof.total.backward_flops) == (forward, counter.get_total_flops() - forward), \
            type(experts).__name__


@pytest.mark.slow       # two fresh interpreters importing torch and transformers
def test_the_cli_shows_total_and_active_parameters(tmp_path):
    import json
    import subprocess
    import sys
    source = tmp_path / "small_mixtral.py"
    source.write_text(
        "import torch, transformers\n"
        "def build():\n"
        "    config = transformers.MixtralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,\n"
        "                                        num_local_experts=4, num_experts_per_tok=2, vocab_size=500)\n"
        "    with torch.device('meta'):\n"
        "        return transformers.MixtralForCausalLM(config)\n")
    run = [sys.executable, "-m", "torchflops", f"{source}:build", "--input-size", "1,32", "--dtype", "long"]
    table = subprocess.run(run, capture_output=True, text=True, timeout=300)
    data = subprocess.run(run + ["--format", "json"], capture_output=True, text=True, timeout=300)
    assert table.returncode == data.returncode == 0, table.stderr + data.stderr
    # 2 layers x 2 unused experts x 3 x 64 x 128 fewer than the 281,920 parameters
    assert json.loads(data.stdout)["active_params"] == 281_920 - 2 * 2 * 3 * 64 * 128 == 183_616
    assert table.stdout.splitlines()[-1].startswith("active params: 183.62 K of 281.92 K")
