"""Parallel plans: what one rank of a tensor-parallel or FSDP2 run computes, counted on
torch.distributed's own ``fake`` process group (one process, no network, no GPU).

``parallel(tp=, fsdp=)`` sets up the process group and the device mesh for a block; its
``Parallel.apply(model)`` puts the standard plan on a copy of the model on the meta device (no
weight is copied, the model is untouched) and ``Parallel.count`` counts that copy with ``count``.

The standard plan:

- Tensor parallel (Megatron-style), per decoder layer: the attention's query, key and value
  projections and the MLP's gate and up projections are column-parallel (``ColwiseParallel``: each
  rank holds ``1/tp`` of the output features, so ``1/tp`` of the heads), the attention's output and
  the MLP's down projection row-parallel (``RowwiseParallel``: ``1/tp`` of the input features, one
  all-reduce of the output). Llama, Mistral and Qwen2 (``q_proj``, ``k_proj``, ``v_proj``,
  ``o_proj``, ``gate_proj``, ``up_proj``, ``down_proj``) view their heads with ``-1`` and need
  nothing else. GPT-2's ``Conv1D`` stores its weight as (in, out), which torch's styles do not
  support: column-parallel shards its weight on dim 1 (``Shard(1)``) and bias on dim 0,
  row-parallel its weight on dim 0 with the bias replicated. Its fused ``c_attn`` holds each
  rank's query, key and value columns side by side (Megatron's per-rank order: the weight has no
  values here, so only the shapes are planned), and the attention's ``split_size`` and
  ``num_heads`` become the local ones.
- Embeddings (Hugging Face models: ``get_input_embeddings()`` and ``get_output_embeddings()``):
  the input embedding is vocabulary-parallel (``RowwiseParallel``: ``1/tp`` of the rows, one
  all-reduce), the output head column-parallel with its logits left sharded on the vocabulary,
  as a vocabulary-parallel cross-entropy reads them (no all-gather). A tied head stays tied. The
  vocabulary may split unevenly (DTensor chunks it as ``torch.chunk`` does: rank 0 holds the
  largest share, ``ceil(vocab / tp)`` rows); heads, hidden and intermediate sizes must divide.
  Position embeddings and norms are replicated.
- FSDP2: ``fully_shard`` on each decoder layer (the classes a Hugging Face model names in
  ``_no_split_modules``; otherwise each direct child of the root that holds parameters), then
  on the root. With both, the mesh is 2-D, ``("dp", "tp")``: tensor parallel inside a node's
  ranks, FSDP across them. The copy stays on the meta device; torchflops' passes run FSDP on
  meta stand-ins (``_sharded``).
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatch
from functools import partial
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel, parallelize_module

from ._api import _check_model, _unwrapped, count
from ._render import Profile

__all__ = ["Parallel", "parallel", "fake_group", "standard_plan"]


# -- the process group and the mesh -------------------------------------------------------------
def _check_size(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer (ranks), got {value!r}")
    return value


@contextlib.contextmanager
def fake_group(world_size: int) -> Iterator[bool]:
    """A default process group of ``world_size`` ranks for the block: the one already set up
    when its size matches (yields False, it is left in place), else torch's ``fake`` group, this
    process as rank 0 (yields True, destroyed when the block ends, also when it raises)."""
    _check_size(world_size, "world_size")
    if dist.is_initialized():
        if dist.get_world_size() != world_size:
            raise ValueError(f"a process group of {dist.get_world_size()} ranks is already set up; the plan "
                             f"needs {world_size} (tp x fsdp): destroy it first or plan for its size")
        yield False
        return
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield True
    finally:
        dist.destroy_process_group()


def _mesh(tp: int, fsdp: int) -> Any:
    from torch.distributed.device_mesh import init_device_mesh

    if tp > 1 and fsdp > 1:
        return init_device_mesh("cpu", (fsdp, tp), mesh_dim_names=("dp", "tp"))
    return init_device_mesh("cpu", (tp * fsdp,), mesh_dim_names=("tp" if tp > 1 else "dp",))


# -- GPT-2's Conv1D -------------------------------------------------------------------------------
def _conv1d() -> Optional[type]:
    """transformers' ``Conv1D`` (weight stored (in, out)), when transformers is loaded."""
    utils = sys.modules.get("transformers.pytorch_utils")
    return getattr(utils, "Conv1D", None)


class Conv1DParallel(ParallelStyle):
    """Column- or row-parallel for a layer computing ``x @ weight + bias`` with weight (in, out):
    columns shard the weight on dim 1 and the bias; rows shard the weight on dim 0, replicate the
    bias and all-reduce the output."""

    def __init__(self, colwise: bool) -> None:
        super().__init__()
        self.colwise = colwise

    def _partition(self, name: str, module: nn.Module, mesh: Any) -> None:
        for key, param in list(module.named_parameters(recurse=False)):
            placement = (Shard(1) if key == "weight" else Shard(0)) if self.colwise else (
                Shard(0) if key == "weight" else Replicate())
            sharded = distribute_tensor(param, mesh, [placement], src_data_rank=self.src_data_rank)
            module.register_parameter(key, nn.Parameter(sharded, requires_grad=param.requires_grad))

    @staticmethod
    def _input(colwise: bool, module: nn.Module, inputs: tuple, mesh: Any) -> Any:
        x = inputs[0]
        if isinstance(x, DTensor):
            return x
        return DTensor.from_local(x, mesh, (Replicate(),) if colwise else (Shard(-1),), run_check=False)

    @staticmethod
    def _output(colwise: bool, module: nn.Module, output: Any, mesh: Any) -> Any:
        if not colwise:
            output = output.redistribute(placements=(Replicate(),), async_op=True)
        return output.to_local()

    def _apply(self, module: nn.Module, device_mesh: Any) -> nn.Module:
        return distribute_module(module, device_mesh, self._partition, partial(self._input, self.colwise),
                                 partial(self._output, self.colwise))

    def __repr__(self) -> str:
        return f"Conv1DParallel(colwise={self.colwise})"


# -- the standard plan ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    """The tensor-parallel plan of one kind of decoder layer: paths inside the layer -> column
    (True) or row (False) parallel, and the attributes of its attention that hold global sizes."""

    styles: dict[str, bool]
    local_attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)


_FAMILIES = (
    _Family({"self_attn.q_proj": True, "self_attn.k_proj": True, "self_attn.v_proj": True,
             "self_attn.o_proj": False, "mlp.gate_proj": True, "mlp.up_proj": True, "mlp.down_proj": False}),
    _Family({"attn.c_attn": True, "attn.c_proj": False, "mlp.c_fc": True, "mlp.c_proj": False},
            {"attn": ("split_size", "num_heads")}),
)
# config attributes that count attention heads, each of which every rank must hold whole
_HEAD_COUNTS = ("num_attention_heads", "num_key_value_heads")


def _layers(model: nn.Module) -> list[str]:
    """Qualified names of the model's decoder layers (FSDP2's units): the classes a Hugging Face
    model declares in ``_no_split_modules``, else the direct children holding parameters."""
    declared = set(getattr(model, "_no_split_modules", None) or ())
    if declared:
        found = [name for name, m in model.named_modules() if name and type(m).__name__ in declared]
        if found:
            return found
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def _style(module: nn.Module, colwise: bool) -> ParallelStyle:
    conv1d = _conv1d()
    if conv1d is not None and isinstance(module, conv1d):
        return Conv1DParallel(colwise)
    return ColwiseParallel() if colwise else RowwiseParallel()


def standard_plan(model: nn.Module) -> dict[str, ParallelStyle]:
    """The standard tensor-parallel plan of ``model`` (module name -> style), as the module
    docstring describes it; ``ValueError`` when its decoder layers match no known family."""
    modules = dict(model.named_modules())
    plan: dict[str, ParallelStyle] = {}
    for layer in _layers(model):
        family = next((f for f in _FAMILIES if all(f"{layer}.{p}" in modules for p in f.styles)), None)
        if family is None:
            raise ValueError(f"no standard tensor-parallel plan for {type(model).__name__}: its layer "
                             f"{layer} ({type(modules[layer]).__name__}) has neither q/k/v/o and gate/up/down "
                             "projections nor GPT-2's c_attn/c_proj/c_fc; pass plan={module name: "
                             "ColwiseParallel() or RowwiseParallel(), ...}")
        for path, colwise in family.styles.items():
            plan[f"{layer}.{path}"] = _style(modules[f"{layer}.{path}"], colwise)
    inputs, outputs = _embeddings(model)
    if inputs is not None:
        plan[inputs] = RowwiseParallel(input_layouts=Replicate())
    if outputs is not None:
        plan[outputs] = ColwiseParallel()
    return plan


def _embeddings(model: nn.Module) -> tuple[Optional[str], Optional[str]]:
    """Names of a Hugging Face model's input embedding and output head (None where it has none)."""
    names = {id(m): n for n, m in model.named_modules()}
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            module = getattr(model, getter)() if hasattr(model, getter) else None
        except NotImplementedError:
            module = None
        found.append(names.get(id(module)) if isinstance(module, (nn.Embedding, nn.Linear)) else None)
    return found[0], found[1]


def _family_attributes(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The (module, attribute) pairs of the standard plan's attention sizes to divide by tp."""
    modules = dict(model.named_modules())
    pairs = []
    for layer in _layers(model):
        for family in _FAMILIES:
            if all(f"{layer}.{p}" in modules for p in family.styles):
                for path, attributes in family.local_attributes.items():
                    pairs += [(modules[f"{layer}.{path}"], a) for a in attributes
                              if isinstance(getattr(modules[f"{layer}.{path}"], a, None), int)]
                break
    return pairs


# -- checks (before anything is touched) ---------------------------------------------------------
def _check_plan(plan: object) -> Optional[dict[str, ParallelStyle]]:
    if plan is None:
        return None
    if not isinstance(plan, Mapping) or not all(
            isinstance(k, str) and isinstance(v, ParallelStyle) for k, v in plan.items()):
        raise TypeError("plan must be a dict of module names (fnmatch patterns such as 'layers.*.mlp.up_proj') "
                        f"to torch ParallelStyles (ColwiseParallel(), RowwiseParallel(), ...), got {plan!r}")
    return dict(plan)


def _matches(pattern: str, names: list[str]) -> list[str]:
    """The module names ``pattern`` names, token by token as ``parallelize_module`` reads it."""
    tokens = pattern.split(".")
    return [n for n in names if n and len(n.split(".")) == len(tokens)
            and all(fnmatch(part, token) for part, token in zip(n.split("."), tokens))]


def _check_divisible(model: nn.Module, plan: dict[str, ParallelStyle], tp: int) -> None:
    names = [n for n, _ in model.named_modules()]
    modules = dict(model.named_modules())
    config = getattr(model, "config", None)
    for attribute in _HEAD_COUNTS:
        heads = getattr(config, attribute, None)
        if isinstance(heads, int) and heads % tp:
            raise ValueError(f"tp={tp} does not divide {attribute}={heads} of {type(model).__name__}: each rank "
                             "holds whole attention heads")
    vocabulary = set(_embeddings(model))     # its rows may split unevenly
    for pattern, style in plan.items():
        matched = [pattern] if pattern in modules else _matches(pattern, names)
        if not matched:
            close = difflib.get_close_matches(pattern, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"plan names {pattern!r}, which is no module of {type(model).__name__}{hint}")
        for name in (n for n in matched if n not in vocabulary):
            dim = _sharded_size(modules[name], style)
            if dim is not None and dim[1] % tp:
                raise ValueError(f"tp={tp} does not divide {name}'s {dim[0]}={dim[1]} "
                                 f"({type(style).__name__} shards it)")


def _sharded_size(module: nn.Module, style: ParallelStyle) -> Optional[tuple[str, int]]:
    """The size a style splits across ranks, where it must divide (a row-parallel embedding's
    vocabulary may split unevenly: None)."""
    if isinstance(module, nn.Linear) and isinstance(style, (ColwiseParallel, RowwiseParallel)):
        return ("out_features", module.out_features) if isinstance(style, ColwiseParallel) else (
            "in_features", module.in_features)
    conv1d = _conv1d()
    if conv1d is not None and isinstance(module, conv1d) and isinstance(style, Conv1DParallel):
        weight = module.weight
        return ("out features", weight.shape[1]) if style.colwise else ("in features", weight.shape[0])
    if isinstance(module, nn.Embedding) and isinstance(style, ColwiseParallel):
        return "embedding_dim", module.embedding_dim
    return None


def _check_not_distributed(model: nn.Module) -> None:
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if isinstance(tensor, DTensor):
            raise ValueError(f"{type(model).__name__} is already distributed ({name} is a DTensor): "
                             "count it with tf.count inside your own process group")


# -- the planned copy ----------------------------------------------------------------------------
def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are meta tensors of the same shapes,
    dtypes and ``requires_grad`` (tied ones stay tied); no weight is copied."""
    memo: dict[int, Any] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in memo:
            empty = torch.empty_like(tensor, device="meta")
            memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(model, memo)


def _ties(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """Groups of (module, name) holding one parameter, for the groups of more than one."""
    holders: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for key, param in module._parameters.items():
            if param is not None:
                holders.setdefault(id(param), []).append((module, key))
    return [group for group in holders.values() if len(group) > 1]


def plan_in_place(model: nn.Module, mesh: Any, tp: int, fsdp: int,
                  plan: Optional[dict[str, ParallelStyle]]) -> nn.Module:
    """Put the plan on ``model`` itself (tensor parallel over the mesh's ``tp`` ranks, FSDP2 over
    its ``dp`` ranks) and return it; the plan has been checked."""
    if tp > 1:
        tp_mesh = mesh["tp"] if mesh.ndim > 1 else mesh
        ties = _ties(model)
        attributes = _family_attributes(model) if plan is None else []
        parallelize_module(model, tp_mesh, plan if plan is not None else standard_plan(model))
        for module, attribute in attributes:
            setattr(module, attribute, getattr(module, attribute) // tp)
        for (first, key), *others in ties:
            for module, other in others:
                setattr(module, other, getattr(first, key))
    if fsdp > 1:
        from torch.distributed.fsdp import fully_shard

        dp_mesh = mesh["dp"] if mesh.ndim > 1 else mesh
        for name in _layers(model):
            fully_shard(model.get_submodule(name), mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
    return model


@dataclass(frozen=True)
class Parallel:
    """The fake process group's mesh and plan, as ``parallel()`` set them up for its block."""

    tp: int
    fsdp: int
    mesh: Any                      # a DeviceMesh: 1-D ("tp",) or ("dp",), or 2-D ("dp", "tp")
    plan: Optional[dict[str, ParallelStyle]] = None      # None: the standard plan

    @property
    def world_size(self) -> int:
        return self.tp * self.fsdp

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` when the plan cannot be put on ``model``: a module it names that
        does not exist, a size the mesh does not divide, a model without a standard plan."""
        _check_model(model)
        model = _unwrapped(model)
        _check_not_distributed(model)
        if self.tp > 1:
            _check_divisible(model, self.plan if self.plan is not None else standard_plan(model), self.tp)

    def apply(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the plan on it, its tensors on the meta device; ``model`` is
        untouched, no weight is copied. (FSDP runs such a copy only in torchflops' passes: its
        own forward refuses meta parameters.)"""
        self.check(model)
        return plan_in_place(_meta_copy(_unwrapped(model)), self.mesh, self.tp, self.fsdp, self.plan)

    def count(self, model: nn.Module, *inputs: Any, **options: Any) -> Profile:
        """``count`` (same inputs and options) of the planned copy of ``model``, shape-only."""
        if str(options.get("device", "meta")) != "meta":
            raise ValueError(f"Parallel.count counts a copy of the model without weights, shape-only; drop "
                             f"device={options['device']!r}")
        return count(self.apply(model), *inputs, **options)


@contextlib.contextmanager
def parallel(*, tp: int = 1, fsdp: int = 1, plan: Optional[Mapping[str, ParallelStyle]] = None) -> Iterator[Parallel]:
    """A ``tp`` x ``fsdp`` rank mesh on torch's fake process group for the block (this process is
    rank 0; an existing default group of that size is used instead), yielding a ``Parallel``
    whose ``count(model, ...)`` counts what one rank of that run does. ``plan`` replaces the
    standard tensor-parallel plan: module names (fnmatch patterns) -> ParallelStyles. Profiles
    whose figures need another pass (``memory()``) are read inside the block."""
    _check_size(tp, "tp")
    _check_size(fsdp, "fsdp")
    checked = _check_plan(plan)
    if checked is not None and tp == 1:
        raise ValueError("plan= is a tensor-parallel plan; give tp= greater than 1")
    with fake_group(tp * fsdp) as ours:
        mesh = _mesh(tp, fsdp)
        try:
            yield Parallel(tp, fsdp, mesh, checked)
        finally:
            if not ours:
                # the user's group stays; the mesh's own subgroups of it (a 2-D mesh's rows and
                # columns) go with the block
                for group in dict.fromkeys(mesh.get_group(d) for d in range(mesh.ndim)):
                    if group is not dist.group.WORLD:
                        dist.destroy_process_group(group)
