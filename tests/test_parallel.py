"""Parallel plans on torch.distributed's fake process group: the logical model, one rank's work on
its shards, and the collectives it joins.

Oracles: FlopCounterMode on a hand-sharded equivalent (plain layers of the local shapes, forward
and backward), CommDebugMode on the same model for the collectives, and the unsharded model's own
count for the logical total.
"""
from collections import Counter

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf


@pytest.fixture
def world():
    """``world(n)``: a fake process group of ``n`` ranks (this process is rank 0) and its 1-D
    mesh; gone after the test."""
    def make(n, shape=None):
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=n)
        return init_device_mesh("cpu", shape or (n,), mesh_dim_names=None if shape is None else ("dp", "tp"))
    yield make
    if dist.is_initialized():
        dist.destroy_process_group()


class MLP(nn.Module):
    def __init__(self, outer=64, hidden=256):
        super().__init__()
        self.up = nn.Linear(outer, hidden)
        self.down = nn.Linear(hidden, outer)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


MLP_PLAN = {"up": ColwiseParallel(), "down": RowwiseParallel()}


def fwd_bwd_flops(model, *inputs):
    """FlopCounterMode over a forward and the backward of its output's sum."""
    with FlopCounterMode(display=False) as counter:
        out = model(*inputs)
        out = getattr(out, "logits", out)
        out.sum().backward()
    return counter.get_total_flops()


def comm_counts(model, *inputs):
    """CommDebugMode's collectives of one forward, by operator name (it files functional
    collectives under the ``c10d_functional`` namespace)."""
    with CommDebugMode() as comm:
        model(*inputs)
    return {op._qualified_op_name.split("::")[1]: n for op, n in comm.get_comm_counts().items()}


def ops(profile):
    return Counter(c.op.split("::")[1] for c in profile.collectives)


@pytest.mark.parametrize("ranks", [2, 8, 64])
def test_mlp_tensor_parallel_rank_work_equals_the_hand_sharded_mlp(world, ranks):
    mesh = world(ranks)
    with torch.device("meta"):
        model = parallelize_module(MLP(), mesh, MLP_PLAN)
    profile = tf.count(model, input_size=(4, 64))
    local = 256 // ranks
    # one rank: up is 64 -> local columns, down local rows -> 64, on a batch of 4
    assert profile.rank_total.macs == 4 * 64 * local + 4 * local * 64
    assert profile.rank_module("up").macs == 4 * 64 * local
    # the hand-sharded MLP: the same layers at the local shapes; the input needs no gradient
    hand = MLP(64, local)
    assert profile.rank_total.flops + profile.rank_total.backward_flops == fwd_bwd_flops(hand, torch.ones(4, 64))
    # local parameters: a column shard of up's weight and bias, a row shard of down's weight and
    # its whole bias (replicated)
    assert profile.rank_total.params == local * 64 + local + 64 * local + 64
    # the logical model is the unsharded MLP's
    plain = tf.count(MLP(), input_size=(4, 64)).total
    assert profile.total.flops == plain.flops == 2 * (4 * 64 * 256 * 2)
    assert profile.total.backward_flops == plain.backward_flops
    assert profile.total.elementwise_flops == plain.elementwise_flops
    assert profile.total.params == plain.params


@pytest.mark.parametrize("ranks", [2, 8, 64])
def test_mlp_tensor_parallel_collectives_equal_comm_debug_mode(world, ranks):
    mesh = world(ranks)
    with torch.device("meta"):
        model = parallelize_module(MLP(), mesh, MLP_PLAN)
    x = torch.empty(4, 64, device="meta")
    profile = tf.count(model, x)
    assert ops(profile) == comm_counts(model, x) == {"all_reduce": 1}
    (reduce,) = profile.collectives
    assert (reduce.kind, reduce.module, reduce.group_size, reduce.shape) == ("all_reduce", "down", ranks, (4, 64))
    # ring all-reduce: each rank sends 2 (N - 1) / N of the 4 x 64 float32 output
    assert reduce.bytes == 2 * (ranks - 1) * (4 * 64 * 4) // ranks


def test_a_model_with_real_dtensor_parameters_is_counted_shape_only_and_left_untouched(world):
    mesh = world(8)
    torch.manual_seed(0)
    model = parallelize_module(MLP(), mesh, MLP_PLAN)
    before = {name: (p, p.to_local().clone()) for name, p in model.named_parameters()}
    hooks = {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in model.named_modules()}
    profile = tf.count(model, input_size=(4, 64))
    assert profile.rank_total.macs == 4 * 64 * 32 * 2
    for name, p in model.named_parameters():
        original, values = before[name]
        assert p is original and isinstance(p, DTensor) and not p.to_local().is_meta
        assert torch.equal(p.to_local(), values) and p.grad is None
    assert hooks == {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in model.named_modules()}
    # and the same figures as the model built on the meta device
    with torch.device("meta"):
        meta = parallelize_module(MLP(), mesh, MLP_PLAN)
    assert tf.count(meta, input_size=(4, 64)).rank_total == profile.rank_total


def test_tensor_parallel_on_one_dimension_of_a_2d_mesh_shards_over_that_dimension(world):
    mesh = world(8, (2, 4))
    with torch.device("meta"):
        model = parallelize_module(MLP(), mesh["tp"], MLP_PLAN)
    profile = tf.count(model, input_size=(4, 64))
    # four tensor-parallel ranks: 256 / 4 = 64 local columns
    assert profile.rank_total.macs == 2 * 4 * 64 * 64
    (reduce,) = profile.collectives
    assert reduce.group_size == 4 and reduce.bytes == 2 * 3 * 1024 // 4


def test_a_model_without_dtensors_has_its_total_as_rank_total_and_no_collectives():
    profile = tf.count(MLP(), input_size=(4, 64))
    assert profile.rank_total == profile.total.replace(elementwise_flops=0)
    assert profile.collectives == []


# -- a small Llama, Megatron-style ------------------------------------------------------------------
LLAMA = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=8, head_dim=8)


def llama_plan(layers):
    plan = {}
    for i in range(layers):
        for name in ("q_proj", "k_proj", "v_proj"):
            plan[f"model.layers.{i}.self_attn.{name}"] = ColwiseParallel()
        plan[f"model.layers.{i}.self_attn.o_proj"] = RowwiseParallel()
        for name in ("gate_proj", "up_proj"):
            plan[f"model.layers.{i}.mlp.{name}"] = ColwiseParallel()
        plan[f"model.layers.{i}.mlp.down_proj"] = RowwiseParallel()
    return plan


@pytest.mark.transformers
@pytest.mark.filterwarnings("ignore:For backward hooks to be called")     # the oracle's, on model outputs
@pytest.mark.parametrize("ranks", [2, 8])
def test_llama_tensor_parallel_rank_work_equals_a_llama_of_the_local_shapes(world, ranks):
    transformers = pytest.importorskip("transformers")
    mesh = world(ranks)

    def llama(device="meta", **changes):
        config = transformers.LlamaConfig(**dict(LLAMA, **changes))
        config._attn_implementation = "eager"      # FlopCounterMode's blind spot: fused attention
        with torch.device(device):
            return transformers.LlamaForCausalLM(config)

    model = parallelize_module(llama(), mesh, llama_plan(2))
    ids = torch.zeros(1, 16, dtype=torch.long)
    profile = tf.count(model, ids)
    # the hand-sharded equivalent: each rank's heads and intermediate columns, the same hidden size
    # (on CPU: transformers 4 opens autocast on the input's device type, which meta refuses)
    hand = llama("cpu", num_attention_heads=8 // ranks, num_key_value_heads=8 // ranks,
                 intermediate_size=128 // ranks)
    assert profile.rank_total.flops + profile.rank_total.backward_flops == fwd_bwd_flops(hand, ids)
    assert profile.rank_total.flops == tf.count(hand, ids).total.flops
    # the logical model: the unsharded Llama, attention over all heads included
    plain = tf.count(llama(), ids).total
    for field in ("macs", "grad_input_flops", "grad_weight_flops", "elementwise_flops", "params"):
        assert getattr(profile.total, field) == getattr(plain, field), field
    # a row-wise layer's output is all-reduced: o_proj and down_proj of each layer
    # CommDebugMode on a real CPU forward of the same plan
    real = parallelize_module(llama("cpu"), mesh, llama_plan(2))
    assert ops(profile) == comm_counts(real, ids) == {"all_reduce": 4}
    assert [c.module for c in profile.collectives] == [
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.o_proj", "mlp.down_proj")]
    assert all(c.bytes == 2 * (ranks - 1) * (16 * 64 * 4) // ranks for c in profile.collectives)


def test_json_carries_the_rank_and_its_collectives(world):
    mesh = world(8)
    with torch.device("meta"):
        model = parallelize_module(MLP(), mesh, MLP_PLAN)
    profile = tf.count(model, input_size=(4, 64))
    data = profile.to_dict()
    # the row layer's all-reduce of a 4 x 64 float32 output on 8 ranks: 2 x 7/8 x 1,024 = 1,792 bytes
    assert data["rank_total"] == profile.rank_total.as_dict()
    assert data["collectives"] == [{"kind": "all_reduce", "module": "down", "bytes": 1792, "group_size": 8,
                                    "dtype": "float32", "shape": [4, 64], "op": "_c10d_functional::all_reduce"}]
    assert isinstance(profile.collectives[0], tf.Collective)
    assert "rank_total" not in tf.count(MLP(), input_size=(4, 64)).to_dict()


# -- a training step's collectives ------------------------------------------------------------------
def test_a_training_steps_collectives_equal_comm_debug_mode_over_forward_and_backward(world):
    mesh = world(8)
    with torch.device("meta"):
        model = parallelize_module(MLP(), mesh, MLP_PLAN)
    x = torch.empty(4, 64, device="meta", requires_grad=True)
    profile = tf.count(model, x)
    with CommDebugMode() as comm:
        model(x).sum().backward()
    step = profile.step_collectives()
    assert Counter(c.op.split("::")[1] for c in step) == {
        op._qualified_op_name.split("::")[1]: n for op, n in comm.get_comm_counts().items()} == {"all_reduce": 2}
    # forward: down's output; backward: the gradient of up's replicated input, partial on each rank
    assert [(c.phase, c.module) for c in step] == [("forward", "down"), ("backward", "up")]
    assert all(c.bytes == 2 * 7 * 1024 // 8 for c in step)
    assert profile.collectives == step[:1]


def test_fsdp_training_step_gathers_and_reduces_each_layer_as_comm_debug_mode_counts(world):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed.fsdp import fully_shard

    mesh = world(8)
    with torch.device("meta"):
        model = MLP()
    for module in (model.up, model.down, model):
        fully_shard(module, mesh=mesh)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        model.to_empty(device="cpu")
    profile = tf.count(model, input_size=(4, 64))
    step = profile.step_collectives()
    with fake, CommDebugMode() as comm:
        model(torch.empty(4, 64)).sum().backward()
    assert Counter(c.op for c in step) == {op._qualified_op_name: n for op, n in comm.get_comm_counts().items()} == {
        "c10d::_allgather_base_": 4, "c10d::_reduce_scatter_base_": 2}
    up, down = 64 * 256 + 256, 256 * 64 + 64      # each layer's parameters, gathered whole (float32)
    assert [(c.phase, c.kind, c.module, c.bytes) for c in step] == [
        ("forward", "all_gather", "up", 7 * 4 * up // 8), ("forward", "all_gather", "down", 7 * 4 * down // 8),
        # down's parameters are gathered again for its backward, up's prefetched; each gradient is
        # reduce-scattered (N - 1)/N of the whole
        ("backward", "all_gather", "down", 7 * 4 * down // 8), ("backward", "all_gather", "up", 7 * 4 * up // 8),
        ("backward", "reduce_scatter", "down", 7 * 4 * down // 8),
        ("backward", "reduce_scatter", "up", 7 * 4 * up // 8)]


# -- memory per rank under tensor parallel ----------------------------------------------------------
@pytest.mark.parametrize("ranks", [2, 8])
def test_tensor_parallel_memory_is_the_ranks_shards_and_peaks_equal_memtracker(world, ranks):
    from oracles import memtracker_peak

    mesh = world(ranks)
    torch.manual_seed(0)
    model = parallelize_module(MLP(), mesh, MLP_PLAN)
    x = torch.randn(4, 64)
    memory = tf.count(model, x).memory("adamw")
    local = 256 // ranks
    shard = 4 * (local * 64 + local + 64 * local + 64)      # float32: up's rows and bias, down's columns, its bias
    assert memory.params == memory.gradients == shard
    assert memory.optimizer_state == 2 * shard + 4 * 4     # AdamW: two buffers a shard, four step counters
    # saved for backward: the input (up's weight gradient) and the ReLU's local output (its own
    # backward and down's weight gradient), 4 x 64 and 4 x local float32
    assert memory.activations == 4 * (4 * 64 + 4 * local)
    assert memory.peak_training == memtracker_peak(model, x, optimizer=torch.optim.AdamW)
    assert memory.peak_inference == memtracker_peak(model, x, train=False)
