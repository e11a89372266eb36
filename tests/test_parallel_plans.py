"""Parallel plans (torchflops._parallel): the fake process group, the standard tensor-parallel and
FSDP2 plans on small Llama, Mistral, Qwen2 and GPT-2 models and an MLP, the ``tf.parallel`` entry.

Oracles: a hand-sharded equivalent (the same config with heads, intermediate size and vocabulary
divided by tp: its plain parameters have the local shapes every rank must hold), torch's
``CommDebugMode`` for the collectives a pass issues, and the placements torch documents for
``ColwiseParallel`` (Linear weight ``Shard(0)``), ``RowwiseParallel`` (``Shard(1)``, bias
replicated) and ``fully_shard`` (``Shard(0)`` on the data-parallel mesh).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

from hf import V5, build, flop_counter, transformers

import torchflops as tf
from torchflops import _parallel


# CommDebugMode's module tracker hooks the backward of Hugging Face modules, whose outputs are dataclasses
pytestmark = pytest.mark.filterwarnings("ignore:For backward hooks to be called:UserWarning")


@pytest.fixture(autouse=True)
def no_group_left_behind():
    assert not dist.is_initialized()
    yield
    leaked = dist.is_initialized()
    if leaked:
        dist.destroy_process_group()
    assert not leaked, "a test left a process group behind"


def _llama_config(cls=transformers.LlamaConfig, tp: int = 1, kv_heads: int = 4, **extra):
    """A 2-layer model; with ``tp`` the hand-sharded equivalent of one rank: heads, key/value heads,
    intermediate size and vocabulary divided by tp, hidden size and head_dim kept."""
    return cls(hidden_size=64, intermediate_size=128 // tp, num_attention_heads=8 // tp,
               num_key_value_heads=kv_heads // tp, head_dim=8, num_hidden_layers=2, vocab_size=128 // tp, **extra)


def _local_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.to_local().shape if isinstance(p, DTensor) else p.shape) for n, p in model.named_parameters()}


def _placements(model: nn.Module) -> dict[str, tuple]:
    return {n: tuple(p.placements) if isinstance(p, DTensor) else None for n, p in model.named_parameters()}


def _comm_counts(run) -> dict[str, int]:
    with CommDebugMode() as comm:
        run()
    return {op.__name__.split(".")[-1]: n for op, n in comm.get_comm_counts().items()}


# -- the process group --------------------------------------------------------------------------
def test_the_group_is_torn_down_after_the_block_and_after_an_error():
    with tf.parallel(tp=2, fsdp=4) as par:
        assert dist.get_world_size() == 8 and dist.get_rank() == 0
        assert par.mesh.mesh_dim_names == ("dp", "tp") and tuple(par.mesh.shape) == (4, 2)
    assert not dist.is_initialized()
    with pytest.raises(ZeroDivisionError):
        with tf.parallel(fsdp=8) as par:
            assert par.mesh.mesh_dim_names == ("dp",) and par.world_size == 8
            1 / 0
    assert not dist.is_initialized()


def test_an_existing_group_of_the_same_size_is_used_and_left_in_place():
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=4)
    groups = dist.distributed_c10d._world.pg_map
    try:
        group = dist.group.WORLD
        with tf.parallel(tp=4) as par:
            assert dist.group.WORLD is group and par.mesh.mesh_dim_names == ("tp",)
        assert dist.is_initialized() and dist.group.WORLD is group
        with tf.parallel(tp=2, fsdp=2) as par:      # a 2-D mesh makes subgroups of the user's group
            assert len(groups) == 3
        assert list(groups) == [group]
        with pytest.raises(ValueError, match="a process group of 4 ranks is already set up; the plan needs 8"):
            with tf.parallel(tp=8):
                pass
        assert dist.group.WORLD is group
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("options, message", [
    ({"tp": 0}, "tp must be a positive integer"),
    ({"fsdp": 2.0}, "fsdp must be a positive integer"),
    ({"tp": True}, "tp must be a positive integer"),
    ({"tp": 2, "plan": ["q_proj"]}, "plan must be a dict of module names"),
    ({"tp": 2, "plan": {"q_proj": "colwise"}}, "plan must be a dict of module names"),
    ({"fsdp": 2, "plan": {"0": ColwiseParallel()}}, "plan= is a tensor-parallel plan; give tp="),
])
def test_bad_arguments_are_refused_before_a_group_exists(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        with tf.parallel(**options):
            pass


# -- tensor parallel: Llama, Mistral, Qwen2 -------------------------------------------------------
FAMILIES = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
            "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
            "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}


@pytest.mark.transformers
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_shards_like_the_hand_sharded_model(family, tp):
    config_cls, model_cls = FAMILIES[family]
    model = build(_llama_config(config_cls), model_cls)
    hand = build(_llama_config(config_cls, tp), model_cls)
    with tf.parallel(tp=tp) as par:
        planned = par.apply(model)
        assert _local_shapes(planned) == {n: tuple(p.shape) for n, p in hand.named_parameters()}
        placements = _placements(planned)
    layer = "model.layers.0."
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
        assert placements[layer + name + ".weight"] == (Shard(0),)
    for name in ("self_attn.o_proj", "mlp.down_proj"):
        assert placements[layer + name + ".weight"] == (Shard(1),)
    if family == "qwen2":    # its q/k/v carry biases, sharded with their output features
        assert placements[layer + "self_attn.q_proj.bias"] == (Shard(0),)
    # vocabulary-parallel embedding and head: rows of the vocabulary
    assert placements["model.embed_tokens.weight"] == placements["lm_head.weight"] == (Shard(0),)
    assert placements[layer + "input_layernorm.weight"] is None and placements["model.norm.weight"] is None


@pytest.mark.transformers
@pytest.mark.parametrize("family, tp, kv_heads", [
    (f, tp, kv) for f, tp, kv in [(f, tp, 4) for f in FAMILIES for tp in (2, 4)] + [("llama", 8, 8)]])
def test_one_rank_computes_what_the_hand_sharded_model_computes(family, tp, kv_heads):
    config_cls, model_cls = FAMILIES[family]
    model = build(_llama_config(config_cls, kv_heads=kv_heads), model_cls)
    hand = build(_llama_config(config_cls, tp, kv_heads), model_cls, device="cpu")
    forward, backward = flop_counter(hand, {"input_ids": torch.zeros(1, 16, dtype=torch.long)})
    with tf.parallel(tp=tp) as par:
        prof = par.count(model, input_size=(1, 16), dtype=torch.long)
        unsharded = tf.count(model, input_size=(1, 16), dtype=torch.long)
        real = _parallel.plan_in_place(build(_llama_config(config_cls, kv_heads=kv_heads), model_cls, device="cpu"),
                                       par.mesh, tp, 1, None)
        comm = _comm_counts(lambda: real(input_ids=torch.zeros(1, 16, dtype=torch.long)))
    assert (prof.rank_total.flops, prof.rank_total.backward_flops) == (forward, backward)
    assert prof.total.flops == unsharded.total.flops and prof.total.params == unsharded.total.params
    assert prof.rank_total.params == sum(p.numel() for p in hand.parameters())
    # CommDebugMode on the plan put on a CPU model: an all-reduce per row-parallel layer (2 x 2) and the embedding's
    assert Counter(c.kind for c in prof.collectives) == Counter(comm) == {"all_reduce": 5}
    # each reduces a 1x16x64 float32 activation (4,096 bytes); a ring sends 2 (tp - 1) / tp of it
    assert {c.bytes for c in prof.collectives} == {2 * (tp - 1) * 4096 // tp}
    assert [c.module for c in prof.collectives] == ["model.embed_tokens", "model.layers.0.self_attn.o_proj",
                                                    "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.o_proj",
                                                    "model.layers.1.mlp.down_proj"]


@pytest.mark.transformers
def test_the_copy_is_on_meta_and_the_model_is_untouched():
    model = build(_llama_config(), transformers.LlamaForCausalLM, device="cpu")
    before = {n: (p, p.device, p.requires_grad, p.detach().clone()) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    model.model.layers[1].requires_grad_(False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    with tf.parallel(tp=2, fsdp=2) as par:
        planned = par.apply(model)
        assert all(p.to_local().is_meta or isinstance(p.to_local(), torch._subclasses.FakeTensor)
                   for p in planned.parameters())
        assert {n for n, p in planned.named_parameters() if not p.requires_grad} == frozen
    assert type(model) is transformers.LlamaForCausalLM and not hasattr(model, "_get_fsdp_state")
    for name, param in model.named_parameters():
        same, device, _, values = before[name]
        assert param is same and param.device == device and not isinstance(param, DTensor)
        assert torch.equal(param.detach(), values)
    assert dict(model.named_buffers()).keys() == buffers.keys()
    assert all(b is buffers[n] for n, b in model.named_buffers())
    assert model.model.layers[0].self_attn.q_proj._forward_pre_hooks == {}


@pytest.mark.transformers
def test_a_tensor_parallel_llama_runs_on_cpu_with_one_all_reduce_per_row_parallel_layer():
    model = build(_llama_config(), transformers.LlamaForCausalLM, device="cpu")
    ids = torch.zeros(1, 16, dtype=torch.long)
    with tf.parallel(tp=4) as par:
        _parallel.plan_in_place(model, par.mesh, 4, 1, None)
        out = []
        counts = _comm_counts(lambda: out.append(model(input_ids=ids).logits))
    # the head's logits stay sharded on the vocabulary: 128 / 4 = 32 per rank
    assert out[0].shape == (1, 16, 32) and not isinstance(out[0], DTensor)
    # o_proj and down_proj of 2 layers, and the vocabulary-parallel embedding: 2 x 2 + 1
    assert counts == {"all_reduce": 5}


# -- tensor parallel: GPT-2's Conv1D ------------------------------------------------------------
def _gpt2(device: str = "meta", vocab: int = 101):
    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=8, vocab_size=vocab, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return build(config, transformers.GPT2LMHeadModel, device=device)


@pytest.mark.transformers
def test_gpt2_conv1d_is_sharded_on_its_out_dimension_and_the_head_stays_tied():
    model = _gpt2()
    with tf.parallel(tp=4) as par:
        planned = par.apply(model)
        shapes, placements = _local_shapes(planned), _placements(planned)
        assert planned.lm_head.weight is planned.transformer.wte.weight
        attention = planned.transformer.h[0].attn
        # the local attention splits its fused q/k/v output into three 64 / 4 = 16 wide parts, 2 heads
        assert (attention.split_size, attention.num_heads, attention.head_dim) == (16, 2, 8)
    assert model.transformer.h[0].attn.split_size == 64       # the user's model keeps its own
    block = "transformer.h.0."
    # Conv1D weights are (in, out): c_attn (64, 192) column-parallel -> (64, 48); c_fc (64, 256) -> (64, 64);
    # row-parallel c_proj (64, 64) -> (16, 64) and mlp.c_proj (256, 64) -> (64, 64), their biases whole
    assert shapes[block + "attn.c_attn.weight"] == (64, 48) and placements[block + "attn.c_attn.weight"] == (Shard(1),)
    assert shapes[block + "attn.c_attn.bias"] == (48,) and placements[block + "attn.c_attn.bias"] == (Shard(0),)
    assert shapes[block + "mlp.c_fc.weight"] == (64, 64) and shapes[block + "mlp.c_fc.bias"] == (64,)
    assert shapes[block + "attn.c_proj.weight"] == (16, 64) and placements[block + "attn.c_proj.weight"] == (Shard(0),)
    assert shapes[block + "mlp.c_proj.weight"] == (64, 64)
    assert shapes[block + "attn.c_proj.bias"] == (64,) and placements[block + "attn.c_proj.bias"] == (Replicate(),)
    # 101 vocabulary rows chunked over 4 ranks: rank 0 holds ceil(101 / 4) = 26; positions replicated
    assert shapes["transformer.wte.weight"] == (26, 64) and shapes["transformer.wpe.weight"] == (32, 64)


@pytest.mark.transformers
def test_one_gpt2_rank_computes_its_shards():
    model = _gpt2()
    with tf.parallel(tp=4) as par:
        prof = par.count(model, input_size=(1, 16), dtype=torch.long)
    # per token and block, at the local shapes above: c_attn 64 x 48, attn.c_proj 16 x 64, c_fc 64 x 64,
    # mlp.c_proj 64 x 64 = 12,288 MACs; the head's 26 local vocabulary rows 64 x 26 = 1,664;
    # attention on 2 local heads of 8: (q k^T + weights v) 2 x 2 x 16 x 16 x 8 = 8,192 per block
    macs = 16 * (2 * 12_288 + 1_664) + 2 * 8_192
    assert prof.rank_total.macs == macs == 436_224
    assert Counter(c.kind for c in prof.collectives) == {"all_reduce": 5}


@pytest.mark.transformers
def test_a_tensor_parallel_gpt2_runs_on_cpu():
    model = _gpt2("cpu", vocab=128)
    with tf.parallel(tp=4) as par:
        _parallel.plan_in_place(model, par.mesh, 4, 1, None)
        out = []
        counts = _comm_counts(lambda: out.append(model(input_ids=torch.zeros(2, 16, dtype=torch.long)).logits))
    assert out[0].shape == (2, 16, 32)
    # attn.c_proj and mlp.c_proj of 2 blocks, and the embedding: 2 x 2 + 1
    assert counts == {"all_reduce": 5}


# -- FSDP2 and both ------------------------------------------------------------------------------
@pytest.mark.transformers
def test_fsdp_shards_every_parameter_per_decoder_layer_and_the_root():
    from torch.distributed.fsdp import FSDPModule

    model = build(_llama_config(), transformers.LlamaForCausalLM)
    with tf.parallel(fsdp=8) as par:
        planned = par.apply(model)
        units = [n for n, m in planned.named_modules() if isinstance(m, FSDPModule)]
        shapes, placements = _local_shapes(planned), _placements(planned)
        ids = torch.zeros(1, 16, dtype=torch.long)

        def step():
            planned(input_ids=ids).logits.sum().backward()

        with _fake_mode(planned):
            counts = _comm_counts(step)
    assert units == ["", "model.layers.0", "model.layers.1"]
    assert set(placements.values()) == {(Shard(0),)}
    # dim 0 chunked over 8 ranks, rank 0's share: 128-row embedding -> 16, k_proj 32 -> 4, norms 64 -> 8
    assert shapes["model.embed_tokens.weight"] == (16, 64)
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (4, 64) and shapes["model.norm.weight"] == (8,)
    # forward: an all-gather per unit (3); backward: the two layers gather again (the root keeps
    # its parameters after the forward), and every unit reduce-scatters its gradients (3)
    assert counts == {"_allgather_base_": 5, "_reduce_scatter_base_": 3}


@contextlib.contextmanager
def _fake_mode(model: nn.Module):
    """The planned copy (meta) moved to fake tensors, for FSDP's own forward, which refuses meta
    parameters; the block runs in their FakeTensorMode."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        model.to_empty(device="cpu")
        yield mode


@pytest.mark.transformers
def test_both_on_a_2d_mesh():
    model = build(_llama_config(), transformers.LlamaForCausalLM)
    with tf.parallel(tp=2, fsdp=4) as par:
        planned = par.apply(model)
        placements, shapes = _placements(planned), _local_shapes(planned)
        ids = torch.zeros(1, 16, dtype=torch.long)
        with _fake_mode(planned):
            counts = _comm_counts(lambda: planned(input_ids=ids))
    # q_proj (64, 64): rows to 2 tp ranks (32), then FSDP's dp dim 0 over 4 ranks: 8
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (8, 64)
    assert placements["model.layers.0.self_attn.q_proj.weight"][1] == Shard(0)
    # o_proj (64, 64): columns to tp (32), rows to dp (16)
    assert shapes["model.layers.0.self_attn.o_proj.weight"] == (16, 32)
    assert placements["model.layers.0.self_attn.o_proj.weight"] == (Shard(0), Shard(1))
    # forward only: 3 FSDP units gather; the TP all-reduces as on one dimension (2 x 2 + 1)
    assert counts["_allgather_base_"] == 3 and counts["all_reduce"] == 5


@pytest.mark.transformers
def test_64_ranks_as_8_by_8():
    model = build(_llama_config(kv_heads=8), transformers.LlamaForCausalLM)
    with tf.parallel(tp=8, fsdp=8) as par:
        assert dist.get_world_size() == 64 and tuple(par.mesh.shape) == (8, 8)
        shapes = _local_shapes(par.apply(model))
        with pytest.raises(ValueError, match="Parallel.count counts a copy of the model without weights, "
                                             "shape-only; drop device='cpu'"):
            par.count(model, input_size=(1, 16), dtype=torch.long, device="cpu")
    # q_proj (64, 64): 8 rows per tp rank, 1 per dp rank; down_proj (64, 128): 16 columns, 8 rows;
    # the 128-row embedding: 16 per tp rank, 2 per dp rank; a norm (64,): 8
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (1, 64)
    assert shapes["model.layers.0.mlp.down_proj.weight"] == (8, 16)
    assert shapes["model.embed_tokens.weight"] == (2, 64) and shapes["model.norm.weight"] == (8,)


# -- an MLP with a plan of the user's ---------------------------------------------------------------
def test_an_mlp_with_its_own_plan_over_8_ranks():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    plan = {"0": ColwiseParallel(), "2": RowwiseParallel()}
    with tf.parallel(tp=8, plan=plan) as par:
        planned = par.apply(model)
        # column-parallel 256 / 8 = 32 output rows; row-parallel 256 / 8 = 32 input columns
        assert _local_shapes(planned) == {"0.weight": (32, 64), "0.bias": (32,), "2.weight": (64, 32),
                                          "2.bias": (64,)}
        counts = _comm_counts(lambda: planned(torch.zeros(4, 64, device="meta")))
    assert counts == {"all_reduce": 1}


def test_a_plan_pattern_reaches_every_layer():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8)) for _ in range(3)])
    with tf.parallel(tp=2, plan={"*.0": ColwiseParallel(), "*.1": RowwiseParallel()}) as par:
        placements = _placements(par.apply(model))
    assert [placements[f"{i}.0.weight"] for i in range(3)] == [(Shard(0),)] * 3


# -- bad input: one clear line, nothing touched ------------------------------------------------------
@pytest.mark.transformers
@pytest.mark.parametrize("tp, changes, message", [
    (3, {}, "tp=3 does not divide num_attention_heads=8 of LlamaForCausalLM: each rank holds whole"),
    (8, {}, "tp=8 does not divide num_key_value_heads=4 of LlamaForCausalLM"),
    (4, {"intermediate_size": 102}, r"tp=4 does not divide model.layers.0.mlp.gate_proj's out_features=102 "
                                    r"\(ColwiseParallel shards it\)"),
])
def test_a_mesh_that_does_not_divide_a_sharded_size(tp, changes, message):
    model = build(transformers.LlamaConfig(**{**_llama_config().to_dict(), **changes}), transformers.LlamaForCausalLM)
    with tf.parallel(tp=tp) as par:
        with pytest.raises(ValueError, match=message):
            par.apply(model)


def test_a_plan_naming_a_module_that_does_not_exist():
    from collections import OrderedDict

    model = nn.Sequential(OrderedDict(fc1=nn.Linear(64, 256), act=nn.ReLU(), fc2=nn.Linear(256, 64)))
    with tf.parallel(tp=2, plan={"fc1": ColwiseParallel(), "fc3": RowwiseParallel()}) as par:
        with pytest.raises(ValueError, match=r"^plan names 'fc3', which is no module of Sequential; "
                                             r"did you mean fc2, fc1\?$"):
            par.apply(model)
    assert not isinstance(model.fc1.weight, DTensor)


def test_a_model_without_a_standard_plan_and_an_already_distributed_one():
    from torch.distributed.fsdp import FSDPModule

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    with tf.parallel(tp=2) as par:
        with pytest.raises(ValueError, match=r"no standard tensor-parallel plan for Sequential: its layer 0 "
                                             r"\(Linear\) has neither"):
            par.apply(model)
    with tf.parallel(fsdp=2) as par:
        # FSDP2 needs no tensor-parallel plan: each direct child holding parameters is a unit
        planned = par.apply(model)
        assert [n for n, m in planned.named_modules() if isinstance(m, FSDPModule)] == ["", "0", "2"]
        _parallel.plan_in_place(model, par.mesh, 1, 2, None)
        with pytest.raises(ValueError, match=r"Sequential is already distributed \(0.weight is a DTensor\)"):
            par.apply(model)


def test_the_group_does_not_leak_into_other_tests():
    prof = tf.count(nn.Linear(8, 4), input_size=(2, 8))
    # 2 x 8 x 4 = 64 MACs, 128 FLOPs: a plain count after the parallel tests
    assert (prof.total.macs, prof.total.flops) == (64, 128) and not dist.is_initialized()


# -- the command line ---------------------------------------------------------------------------------
def _llama_folder(tmp_path, **changes):
    config = _llama_config(bos_token_id=0, eos_token_id=0)
    for key, value in changes.items():
        setattr(config, key, value)
    config.save_pretrained(tmp_path)
    return f"hf:{tmp_path}"


@pytest.mark.transformers
@pytest.mark.parametrize("argv, message", [
    (["--tp", "3"], "tp=3 does not divide num_attention_heads=8 of LlamaForCausalLM: each rank holds whole "
                    "attention heads"),
    (["--tp", "8", "--fsdp", "8"], "tp=8 does not divide num_key_value_heads=4 of LlamaForCausalLM: each rank "
                                   "holds whole attention heads"),
    (["--tp", "0"], "--tp must be >= 1, got 0"),
    (["--fsdp", "-2"], "--fsdp must be >= 1, got -2"),
    (["--tp", "2", "--generate", "4"], "--tp and --fsdp count one rank shape-only; they cannot be combined with "
                                       "--generate"),
    (["--fsdp", "2", "--format", "csv"], "--tp and --fsdp count one rank shape-only; they cannot be combined with "
                                         "--format csv"),
])
def test_cli_bad_parallel_options_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    from torchflops._cli import main

    assert main([_llama_folder(tmp_path), *argv]) == 2
    assert capsys.readouterr().err == f"torchflops: error: {message}\n"


@pytest.mark.transformers
def test_cli_intermediate_size_that_tp_does_not_divide(tmp_path, capsys):
    from torchflops._cli import main

    assert main([_llama_folder(tmp_path, intermediate_size=102), "--tp", "4"]) == 2
    assert capsys.readouterr().err == ("torchflops: error: tp=4 does not divide model.layers.0.mlp.gate_proj's "
                                       "out_features=102 (ColwiseParallel shards it)\n")


def test_cli_tensor_parallel_of_a_cnn_has_no_standard_plan(capsys):
    from torchflops._cli import main

    assert main(["resnet18", "--tp", "2"]) == 2
    assert capsys.readouterr().err == (
        "torchflops: error: no standard tensor-parallel plan for ResNet: its layer conv1 (Conv2d) has neither "
        "q/k/v/o and gate/up/down projections nor GPT-2's c_attn/c_proj/c_fc; pass plan={module name: "
        "ColwiseParallel() or RowwiseParallel(), ...}\n")
    assert not dist.is_initialized()


@pytest.mark.transformers
def test_cli_prints_one_rank_beside_the_whole_model(tmp_path, capsys):
    from torchflops._cli import main

    folder = _llama_folder(tmp_path)
    hand = build(_llama_config(tp=4), transformers.LlamaForCausalLM, device="cpu")
    forward, backward = flop_counter(hand, {"input_ids": torch.zeros(1, 16, dtype=torch.long)})
    assert main([folder, "--seq-len", "16", "--tp", "4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parallel"] == {"tp": 4, "fsdp": 1, "world_size": 4, "mesh": {"tp": 4}, "plan": "standard"}
    assert (data["rank_total"]["flops"], data["rank_total"]["backward_flops"]) == (forward, backward)
    assert main([folder, "--seq-len", "16", "--tp", "4"]) == 0
    text = capsys.readouterr().out
    # the rank's FLOPs and the five all-reduces of 2 x 3/4 x 4,096 bytes: 30,720
    assert "rank 0 of 4 (mesh tp=4, the standard plan)" in text
    assert re.search(rf"^FLOPs +{data['total']['flops'] / 1e6:.2f} M +{forward / 1e3:.2f} K$", text, re.M)
    assert re.search(r"^forward all_reduce +4 +5 +30,720 +30.00 KiB$", text, re.M)
    assert not dist.is_initialized()
    # with memory, a training step is replayed: its backward's collectives too, as CommDebugMode
    # counts them over a real step of the same plan
    assert main([folder, "--seq-len", "16", "--tp", "4", "--memory"]) == 0
    text = capsys.readouterr().out
    assert "collectives of a training step" in text
    assert re.search(r"^forward all_reduce +4 +5 +30,720 +30.00 KiB$", text, re.M)
    with tf.parallel(tp=4) as par:
        real = par.apply(build(_llama_config(), transformers.LlamaForCausalLM, device="cpu"))
        real.to_empty(device="cpu")
        with CommDebugMode() as comm:
            real(torch.zeros(1, 16, dtype=torch.long)).logits.sum().backward()
        calls = sum(comm.get_comm_counts().values())
    backward = re.search(r"^backward all_reduce +4 +(\d+) ", text, re.M)
    assert backward is not None and 5 + int(backward.group(1)) == calls


@pytest.mark.skipif(not V5, reason="the README's figures are transformers 5's: 4.x computes the rotary angles "
                                    "as a matmul, head_dim / 2 MACs a token more")
def test_the_readme_example_prints_what_it_says():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Parallel plans\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert printed.getvalue().splitlines() == expected
