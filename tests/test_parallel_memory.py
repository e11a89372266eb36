"""FSDP2 (``fully_shard``) on the fake process group: shape-only counts and per-rank memory.

Oracles: FlopCounterMode on the same model unsharded (FSDP computes the whole model on the local
batch); PyTorch's FSDPMemTracker under FakeTensorMode on the fake group for the peaks; hand
derivations from FSDP's sharding rule (dim 0 in ``world`` chunks of ceil(rows / world) rows,
every rank's shard padded to the first one's) for the parameters, gradients and optimizer state.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import torchflops as tf
from torchflops._api import _warm_optimizer

fsdp = pytest.importorskip("torch.distributed.fsdp")
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker  # noqa: E402
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402

fully_shard = fsdp.fully_shard
MLPS = [(64, 256, 64), (256, 1024, 256)]
WORLDS = [2, 8, 64]


@contextlib.contextmanager
def fake_group(world: int, rank: int = 0) -> Iterator[object]:
    """The fake process group of ``world`` ranks (this process is ``rank``) and its 1-D mesh,
    destroyed afterwards, also when the test fails."""
    assert not dist.is_initialized(), "a process group was left behind"
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        yield init_device_mesh("cpu", (world,))
    finally:
        dist.destroy_process_group()


@pytest.fixture(autouse=True)
def _no_group_left() -> Iterator[None]:
    yield
    assert not dist.is_initialized()


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def sharded(model: nn.Module, mesh, **options) -> nn.Module:
    """``fully_shard`` per Linear, then the root."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not model:
            fully_shard(module, mesh=mesh, **options)
    fully_shard(model, mesh=mesh, **options)
    return model


def built(kind: str, make, mesh) -> nn.Module:
    """``make()`` sharded: built on meta (``meta``), on meta and materialised with ``to_empty``
    under FakeTensorMode (``fake``), or with real CPU parameters (``cpu``)."""
    if kind == "cpu":
        torch.manual_seed(0)
        return sharded(make(), mesh)
    with torch.device("meta"):
        model = sharded(make(), mesh)
    if kind == "fake":
        with FakeTensorMode(allow_non_fake_inputs=True):
            model.to_empty(device="cpu")
    return model


def flop_counter(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(forward, backward) FLOPs of a real pass of the unsharded CPU ``model``."""
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        forward = counter.get_total_flops()
        out.sum().backward()
    return forward, counter.get_total_flops() - forward


def tracker_peaks(make, x_shape, optimizer=None, dtype=torch.float32) -> tuple[int, int]:
    """FSDPMemTracker's (inference, training) peaks on the same FSDP model under FakeTensorMode:
    a forward under ``no_grad``; one steady-state step (a step before makes the optimizer state,
    and DTensor's sharding propagation caches its answers then, see
    ``test_the_trackers_optimizer_figure``)."""
    with torch.device("meta"):
        model = make()      # outside the fake mode: tensor parallel's plans read the mesh's values
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        x = torch.zeros(x_shape, dtype=dtype)
        opt = optimizer(model.parameters()) if optimizer is not None else None
        if opt is not None:
            _loss(model(x)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        tracker = FSDPMemTracker(model, opt)
        tracker.track_inputs((x,))
        with tracker:
            _loss(model(x)).backward()
            if opt is not None:
                opt.step()
        training = _total(tracker)
        model.zero_grad(set_to_none=True)
        tracker = FSDPMemTracker(model)     # no optimizer: its state is not the forward's
        tracker.track_inputs((x,))
        with tracker:
            with torch.no_grad():
                model(x)
        return _total(tracker), training


def _loss(out) -> torch.Tensor:
    return (out.logits if hasattr(out, "logits") else out).sum()


def _total(tracker) -> int:
    (snapshot,) = tracker.get_tracker_snapshot("peak").values()
    return snapshot["Total"]


def _opt_bytes(tracker_snapshot) -> int:
    return next(v for k, v in tracker_snapshot.items() if str(k).endswith("OPT"))


# -- counting ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["meta", "fake", "cpu"])
@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("sizes", MLPS)
def test_count_is_the_unsharded_models(sizes, world, kind):
    """Each rank computes the whole model on its local batch: FSDP gathers the weights first."""
    batch = 4
    torch.manual_seed(0)
    plain = mlp(sizes)
    x = torch.randn(batch, sizes[0])
    forward, backward = flop_counter(plain, x)
    with fake_group(world) as mesh:
        profile = tf.count(built(kind, lambda: mlp(sizes), mesh), input_size=(batch, sizes[0]))
    a, b, c = sizes
    assert profile.total.macs == batch * (a * b + b * c)
    assert profile.total.flops == forward
    assert profile.total.backward_flops == backward
    assert profile.total.params == a * b + b + b * c + c      # the logical model's
    assert not profile.unsupported                            # FSDP's copies and collectives cost nothing


def _fsdp_state(model: nn.Module) -> list:
    """Every attribute of every FSDP state object, the module's parameters and hooks, by identity."""
    found = []
    for module in model.modules():
        found.append((module, dict(module._parameters), dict(module._forward_pre_hooks),
                      dict(module._forward_hooks), dict(module._state_dict_pre_hooks),
                      dict(module._load_state_dict_pre_hooks)))
        if isinstance(module, fsdp.FSDPModule):
            state = module._get_fsdp_state()
            for obj in [state, *state._fsdp_param_groups,
                        *(p for g in state._fsdp_param_groups for p in g.fsdp_params)]:
                found.append((obj, dict(vars(obj))))
    return found


def _same(before: list, after: list) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after):
        assert old[0] is new[0]
        for a, b in zip(old[1:], new[1:]):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] is b[key], (type(old[0]).__name__, key)


@pytest.mark.parametrize("kind", ["meta", "fake", "cpu"])
def test_the_models_fsdp_state_is_left_as_it_was(kind):
    with fake_group(8) as mesh:
        model = built(kind, lambda: mlp((64, 256, 64)), mesh)
        before = _fsdp_state(model)
        tf.count(model, input_size=(4, 64)).memory("adamw")
        _same(before, _fsdp_state(model))
        assert model._get_fsdp_state()._is_root is None     # its lazy initialisation still to come


def test_a_trained_model_trains_on_as_if_never_counted():
    """Counted between two real steps, a model's second step equals its uncounted twin's."""
    with fake_group(2) as mesh:
        models = [built("cpu", lambda: mlp((16, 32, 16)), mesh) for _ in range(2)]
        x = torch.randn(4, 16)
        grads = []
        for counted, model in enumerate(models):
            opt = torch.optim.AdamW(model.parameters())
            for step in range(2):
                if counted and step == 1:
                    before = _fsdp_state(model)
                    tf.count(model, x).memory("adamw")
                    _same(before, _fsdp_state(model))
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
            grads.append([p.grad.to_local().clone() for p in model.parameters()])
        for a, b in zip(*grads):
            assert torch.equal(a, b)


def _allocated(fn) -> int:
    """Bytes of real memory allocated while ``fn`` runs (the profiler's allocator events)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)


@pytest.mark.parametrize("kind", ["meta", "fake", "cpu"])
def test_fsdp_passes_run_on_meta_and_leave_fsdp_as_it_was(kind):
    """Whatever the model's tensors (meta, fake, real), its FSDP passes run on meta stand-ins
    (FSDP's own meta check switched off on each group for the pass, its buffers made on meta),
    and afterwards every FSDP attribute is the model's own again."""
    with fake_group(8) as mesh:
        model = built(kind, lambda: mlp((64, 256, 64)), mesh)
        groups = [g for m in model.modules() if isinstance(m, fsdp.FSDPModule)
                  for g in m._get_fsdp_state()._fsdp_param_groups]
        before = [dict(vars(g)) for g in groups]
        data = [p._sharded_param_data for g in groups for p in g.fsdp_params]
        profile = tf.count(model, input_size=(4, 64))
        profile.memory("adamw")
        assert profile.meta["device"] == "meta"
        assert all("_validate_no_meta_params" not in vars(g) for g in groups)
        assert [dict(vars(g)) for g in groups] == before
        assert all(a is b for a, b in zip(data, (p._sharded_param_data for g in groups for p in g.fsdp_params)))


def test_adams_state_is_made_as_its_first_step_makes_it():
    """A training replay makes Adam's state with Adam's own ``_init_group`` instead of a whole
    step: the same tensors (keys, shapes, strides, dtypes, devices, placements) and step counts,
    on DTensor shards of a tensor-parallel MLP and on plain tensors."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    def made(params, warm):
        for p in params:
            p.grad = torch.zeros_like(p)
        if warm:
            return _warm_optimizer(torch.optim.AdamW, params)
        optimizer = torch.optim.AdamW(params)
        optimizer.step()
        return optimizer

    def described(optimizer):
        return [{k: (type(v), tuple(v.shape), v.stride(), v.dtype, v.device, getattr(v, "placements", None),
                     float(v) if v.dim() == 0 else None) for k, v in state.items()}
                for state in optimizer.state.values()]

    with fake_group(8) as mesh:
        plans = {"0": ColwiseParallel(), "2": RowwiseParallel()}
        for make in (lambda: parallelize_module(mlp((16, 32, 16)), mesh, plans), lambda: mlp((16, 32, 16))):
            ours, theirs = (described(made(list(make().parameters()), warm)) for warm in (True, False))
            assert ours == theirs and len(ours) == 4


def test_real_parameters_counted_on_the_cpu():
    """``device="cpu"`` counts an FSDP model with real CPU parameters on them (FSDP's buffers
    made where it makes them); the memory replay still runs on meta stand-ins. Oracles: the
    unsharded MLP's FlopCounterMode count, and FSDPMemTracker's peaks."""
    sizes, batch = (64, 256, 64), 4
    plain = mlp(sizes)
    forward, _ = flop_counter(plain, torch.zeros(batch, sizes[0]))
    with fake_group(8) as mesh:
        profile = tf.count(built("cpu", lambda: mlp(sizes), mesh), torch.zeros(batch, sizes[0]), device="cpu")
        memory = profile.memory("adamw")
        inference, training = tracker_peaks(lambda: sharded(mlp(sizes), mesh), (batch, sizes[0]),
                                            torch.optim.AdamW)
    assert profile.meta["device"] == "cpu"
    assert profile.total.flops == forward
    assert (memory.peak_inference, memory.peak_training) == (inference, training)


def test_real_parameters_are_not_gathered():
    """A model with real CPU parameters is counted on meta stand-ins: FSDP's all-gathers (64 MiB
    per layer here) allocate nothing; a real forward allocates them."""
    with fake_group(2) as mesh:
        model = sharded(nn.Sequential(nn.Linear(2048, 2048), nn.Linear(2048, 2048)), mesh)
        x = torch.zeros(4, 2048)
        assert _allocated(lambda: tf.count(model, x)) == 0
        # the training replay makes a few real scalars (192 bytes here), no parameter-sized buffer
        assert _allocated(lambda: tf.count(model, x).memory("adamw")) < 1024
        # two layers of 2048 x 2048 float32 weights gathered: 16 MiB each, at least
        assert _allocated(lambda: model(x)) >= 2 * 2048 * 2048 * 4


# -- memory ------------------------------------------------------------------------------------------
def _local_rows(rows: int, world: int, rank: int) -> tuple[int, int]:
    """(rows this rank holds, rows FSDP pads every shard to): torch.chunk's split of dim 0."""
    chunk = math.ceil(rows / world)
    return max(0, min(chunk, rows - rank * chunk)), chunk


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("sizes", MLPS)
def test_memory_per_rank(sizes, world):
    batch = 4
    with fake_group(world) as mesh:
        profile = tf.count(built("meta", lambda: mlp(sizes), mesh), input_size=(batch, sizes[0]))
        memory = profile.memory("adamw")
        inference, training = tracker_peaks(lambda: sharded(mlp(sizes), mesh), (batch, sizes[0]),
                                            torch.optim.AdamW)
    # each weight (out x in) and bias (out): rank 0 holds ceil(out / world) rows of each, 4 bytes a value
    shards = [math.ceil(b / world) * (a + 1) for a, b in zip(sizes, sizes[1:])]
    assert memory.params == memory.gradients == 4 * sum(shards)
    # AdamW: two buffers like each local shard, and a 4-byte step per parameter (four of them)
    assert memory.optimizer_state == 2 * 4 * sum(shards) + 4 * 4
    # saved for backward: the input (batch x a, for the first weight's gradient) and the ReLU's
    # output (batch x b, also the second layer's input); FSDP's gathered weights are parameters
    assert memory.activations == 4 * batch * (sizes[0] + sizes[1])
    # to the byte: both follow FSDP's buffers and the pass's storages operation by operation
    assert (memory.peak_inference, memory.peak_training) == (inference, training)


def test_memory_of_the_issues_mlp_on_8_ranks():
    """256-1024-256 on 8 ranks with AdamW: sharded parameters 262,784 bytes (the eighth of
    525,568 values, 4 bytes each); the peaks equal FSDPMemTracker's to the byte."""
    with fake_group(8) as mesh:
        profile = tf.count(built("fake", lambda: mlp((256, 1024, 256)), mesh), input_size=(4, 256))
        memory = profile.memory("adamw")
        inference, training = tracker_peaks(lambda: sharded(mlp((256, 1024, 256)), mesh), (4, 256),
                                            torch.optim.AdamW)
    assert memory.params == 525_568 * 4 // 8 == 262_784
    assert memory.optimizer_state == 2 * 262_784 + 4 * 4 == 525_584
    assert (memory.peak_inference, memory.peak_training) == (inference, training)


def test_the_trackers_optimizer_figure():
    """In a fresh process, FSDPMemTracker on the first optimizer step of the issue's MLP puts
    3,802,384 bytes under "OptState" at its peak: 525,584 of state plus 3,276,800 of tensors no
    real rank holds. Under FakeTensorMode, DTensor's sharding propagation runs each operation of
    that step once on fake tensors of the global shapes (1024 x 256 float32: 1,048,576 bytes, up
    to three alive at once) before caching its answer, and the tracker, which tells propagation
    apart only by a fake mode other than the one it entered under, counts them. Those caches are
    process-wide (a step before in any test fills them), so the first-step figure is measured in a
    fresh process by ``benchmarks/fsdp_tracker_first_step.py``; here the tracker's steady-state
    step: its state once the step is over (its peak adds the step's own temporaries, 262,656
    bytes) is the hand derivation torchflops reports."""
    with fake_group(8) as mesh:
        profile = tf.count(built("meta", lambda: mlp((256, 1024, 256)), mesh), input_size=(4, 256))
        memory = profile.memory("adamw")
        with FakeTensorMode(allow_non_fake_inputs=True):
            with torch.device("meta"):
                model = sharded(mlp((256, 1024, 256)), mesh)
            model.to_empty(device="cpu")
            opt = torch.optim.AdamW(model.parameters())
            x = torch.zeros(4, 256)
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                model(x).sum().backward()
                tracker = FSDPMemTracker(model, opt)
                with tracker:
                    opt.step()
            state = _opt_bytes(next(iter(tracker.get_tracker_snapshot("current").values())))
    # AdamW: exp_avg and exp_avg_sq like each local shard (262,784 bytes in all), a 4-byte step
    # for each of the four parameters
    assert memory.optimizer_state == state == 2 * 262_784 + 4 * 4 == 525_584


@pytest.mark.parametrize("world", [3, 8])
def test_uneven_shards_are_padded(world):
    """30 rows on 8 ranks: chunks of 4 rows, the last rank holds 2 (and a world of 3, 10 each:
    even). FSDP pads every rank's shard to 4 rows, so the last rank holds the padded bytes for the
    parameter and its gradient; the optimizer's state is made like the unpadded local shard."""
    rank = world - 1
    with fake_group(world, rank=rank) as mesh:
        memory = tf.count(built("meta", lambda: nn.Linear(10, 30), mesh), input_size=(4, 10)).memory("adamw")
    held, padded = _local_rows(30, world, rank)
    assert memory.params == memory.gradients == 4 * padded * (10 + 1)
    assert memory.optimizer_state == 2 * 4 * held * (10 + 1) + 2 * 4


def test_more_ranks_than_rows():
    """3 rows on 8 ranks: ranks 3 to 7 hold nothing, yet FSDP keeps a padded row for each."""
    with fake_group(8, rank=5) as mesh:
        memory = tf.count(built("meta", lambda: nn.Linear(4, 3), mesh), input_size=(2, 4)).memory("adamw")
    assert memory.params == memory.gradients == 4 * (4 + 1)
    assert memory.optimizer_state == 2 * 4      # the step counters alone


def test_mixed_precision_gathers_in_the_policys_dtype():
    """param_dtype=bfloat16: the inputs and gathered weights are cast, so the counted shapes are
    those of the float32 model, and the sharded state stays float32."""
    policy = fsdp.MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    with fake_group(8) as mesh:
        with torch.device("meta"):
            model = sharded(mlp((64, 256, 64)), mesh, mp_policy=policy)
        profile = tf.count(model, input_size=(4, 64))
        memory = profile.memory("adamw")
    assert profile.total.macs == 4 * (64 * 256 + 256 * 64)
    assert memory.params == 4 * (256 // 8 * 65 + 64 // 8 * 257)


def _tensor_parallel(model: nn.Module, mesh) -> nn.Module:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
    return parallelize_module(model, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})


@pytest.mark.parametrize("plan", ["hsdp", "fsdp+tp"])
def test_two_dimensional_meshes(plan):
    """8 ranks as 2 x 4. HSDP: replicated over 2, sharded over 4. FSDP over 2 of tensor parallel
    over 4: Colwise splits the first layer's rows (weight and bias) over 4, Rowwise the second's
    columns (its bias replicated), then FSDP halves the rows of each local shard."""
    with fake_group(8):
        if plan == "hsdp":
            mesh = init_device_mesh("cpu", (2, 4), mesh_dim_names=("replicate", "shard"))
            make = lambda: sharded(mlp((64, 256, 64)), mesh)  # noqa: E731
        else:
            mesh = init_device_mesh("cpu", (2, 4), mesh_dim_names=("dp", "tp"))
            make = lambda: sharded(_tensor_parallel(mlp((64, 256, 64)), mesh["tp"]), mesh["dp"])  # noqa: E731
        with torch.device("meta"):
            profile = tf.count(make(), input_size=(4, 64))
        memory = profile.memory("adamw")
        inference, training = tracker_peaks(make, (4, 64), torch.optim.AdamW)
    assert profile.total.flops == 2 * 4 * (64 * 256 + 256 * 64)        # the logical model's
    if plan == "hsdp":
        values = (256 * 65 + 64 * 257) // 4
    else:
        values = 256 // 4 * 65 // 2 + 64 * (256 // 4) // 2 + 64 // 2
    assert memory.params == memory.gradients == 4 * values
    assert memory.optimizer_state == 2 * 4 * values + 4 * 4
    assert (memory.peak_inference, memory.peak_training) == (inference, training)


# -- bad input ---------------------------------------------------------------------------------------
def test_an_unsharded_model_is_refused_before_anything_is_touched():
    with fake_group(2) as mesh:
        model = built("cpu", lambda: mlp((16, 32, 16)), mesh)
        model(torch.zeros(2, 16))                 # lazy initialisation, then resharded
        model[0].unshard()
        before = _fsdp_state(model)
        with pytest.raises(ValueError, match=r"0\.weight, 0\.bias are unsharded .*reshard\(\)"):
            tf.count(model, input_size=(2, 16))
        _same(before, _fsdp_state(model))
        model[0].reshard()
        assert tf.count(model, input_size=(2, 16)).total.macs == 2 * (16 * 32 + 32 * 16)


# -- a language model ----------------------------------------------------------------------------------
def _llama(device: str = "meta"):
    transformers = pytest.importorskip("transformers")
    # no KV cache: a training step has none, and the records would keep it alive (see the report)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, use_cache=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    with torch.device(device):
        return transformers.LlamaForCausalLM(config)


def _llama_sharded(mesh):
    model = _llama()
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


@pytest.mark.parametrize("world", WORLDS)
def test_llama_per_decoder_layer(world):
    """fully_shard per decoder layer and the root. The k and v projections (32 rows) do not divide
    over 64 ranks: FSDP pads them, and the oracle's peaks, which follow FSDP's own buffers, agree."""
    ids = torch.randint(0, 128, (2, 16))
    plain = _llama("cpu")
    with FlopCounterMode(display=False) as counter:
        plain(ids)
    with fake_group(world) as mesh:
        profile = tf.count(_llama_sharded(mesh), ids)
        memory = profile.memory("adamw")
        inference, training = tracker_peaks(lambda: _llama_sharded(mesh), (2, 16), torch.optim.AdamW,
                                            dtype=torch.long)
    assert profile.total.flops == counter.get_total_flops()
    assert not profile.unsupported
    padded = sum(math.ceil(p.shape[0] / world) * math.prod(p.shape[1:]) for p in plain.parameters())
    assert memory.params == memory.gradients == 4 * padded
    # to the byte: both follow FSDP's buffers and the pass's storages operation by operation
    assert (memory.peak_inference, memory.peak_training) == (inference, training)
