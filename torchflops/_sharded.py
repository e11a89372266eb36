"""Capture for FSDP2 (``fully_shard``) models: their sharding state, run shape-only and put back.

FSDP2 keeps its own state beside the module: per ``fully_shard`` call an ``FSDPState``, its
parameter groups and one ``FSDPParam`` per parameter, which hold the sharded parameter, its padded
local data, the all-gather buffers and the unsharded parameter of the last all-gather. A pass
moves that state: the first forward runs FSDP's lazy initialisation (which decides the root,
pads the local shards again and registers state-dict hooks), every forward all-gathers and swaps
the module's parameters, a backward reduce-scatters gradients onto the sharded parameters.

``Sharded`` runs such a pass on the stand-ins of ``count``: every state object's attributes are
saved, FSDP is pointed at fresh contexts and made to adopt the stand-ins by its own lazy
initialisation, and afterwards every attribute is put back, the hooks it registered are removed,
so the model's FSDP state is what it was.

The stand-ins are meta tensors, as for any other model. FSDP refuses meta parameters in its lazy
initialisation and leaves a meta shard unpadded; for the pass its check is switched off (on each
parameter group, an attribute put back with the rest) and the shards are padded as it pads real
ones. FSDP makes its buffers on its own device (the mesh's): the pass's dispatch recorder makes
them on meta instead (``follow``). Fake tensors would do too, at about 200 us an operation
against a few for meta.
"""
from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from ._capture import Session

__all__ = ["Sharded", "fsdp_states", "is_dtensor", "dtensor_standin", "local", "padded_bytes"]


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a DTensor (whose module is loaded once any DTensor exists)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor this rank holds: a DTensor's local shard, any other tensor itself."""
    return tensor._local_tensor if is_dtensor(tensor) else tensor


def dtensor_standin(tensor: torch.Tensor, local_standin: torch.Tensor) -> torch.Tensor:
    """A DTensor of the same mesh, placements, global shape and stride over ``local_standin``."""
    from torch.distributed.tensor import DTensor
    out = DTensor.from_local(local_standin, tensor.device_mesh, tensor.placements, run_check=False,
                             shape=tensor.shape, stride=tensor.stride())
    return out.requires_grad_(tensor.requires_grad) if out.is_floating_point() else out


def fsdp_states(modules: Iterable[nn.Module]) -> list[Any]:
    """The distinct FSDP2 states of the modules, in module order."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is None:
        return []
    found: dict[int, Any] = {}
    for module in modules:
        if isinstance(module, fsdp.FSDPModule):
            state = module._get_fsdp_state()
            found.setdefault(id(state), state)
    return list(found.values())


def padded_bytes(states: list[Any]) -> dict[int, int]:
    """id(sharded parameter) -> bytes of its local shard as FSDP pads it (dim 0 to a multiple of the
    world size): what the rank holds for it, and for its gradient."""
    found: dict[int, int] = {}
    for state in states:
        for group in state._fsdp_param_groups:
            for param in group.fsdp_params:
                numel = 1
                for size in param.padded_sharded_param_size:
                    numel *= size
                found[id(param.sharded_param)] = numel * param.sharded_param.element_size()
    return found


class Sharded:
    """The FSDP2 state of one model, held for the length of one shape-only pass."""

    def __init__(self, states: list[Any]) -> None:
        self.states = states
        self._saved: list[tuple[Any, dict[str, Any]]] = []
        self._hooks: list[Any] = []      # parameter groups whose state-dict hooks the pass registers
        self._groups = [group for state in states for group in state._fsdp_param_groups]
        self._seen: dict[int, Any] = {}  # id(group) -> its sharded state when last measured

    def _objects(self) -> Iterator[Any]:
        for state in self.states:
            yield state
            for group in state._fsdp_param_groups:
                yield group
                yield from group.fsdp_params

    def check(self) -> None:
        """A clear error, before anything is touched, for FSDP state that is not at rest."""
        from torch.distributed.fsdp._fully_shard._fsdp_common import TrainingState
        from torch.distributed.fsdp._fully_shard._fsdp_param import ShardedState
        for state in self.states:
            if state._training_state != TrainingState.IDLE:
                raise ValueError(f"the model's FSDP state is in {state._training_state.name} (a forward "
                                 "or backward in progress): count it between training steps")
            for group in state._fsdp_param_groups:
                unsharded = [p._param_fqn or repr(p) for p in group.fsdp_params
                             if p.sharded_state != ShardedState.SHARDED]
                if unsharded:
                    raise ValueError(f"FSDP parameters {', '.join(unsharded)} are unsharded (after "
                                     "unshard(), or a forward with reshard_after_forward=False and no "
                                     "backward yet): call reshard() on the fully_shard module that holds "
                                     "them before counting")

    def __enter__(self) -> Sharded:
        from torch.distributed.fsdp._fully_shard._fsdp_param_group import FSDPCommContext
        from torch.distributed.fsdp._fully_shard._fsdp_state import FSDPStateContext
        self._saved = [(obj, dict(vars(obj))) for obj in self._objects()]
        for state in self.states:
            # fresh contexts: the lazy initialisation fills them in place
            state._is_root = None
            state._state_ctx = FSDPStateContext()
            state._comm_ctx = FSDPCommContext()
            for group in state._fsdp_param_groups:
                group._reset_sharded_params = False     # adopt the stand-ins
                group.comm_ctx = FSDPCommContext()
                group._post_forward_indices = []
                group._all_gather_result = None
                if not group._module_to_pre_save_state_dict_hook_handle:
                    # the state-dict hooks it registers are removed afterwards
                    group._module_to_pre_save_state_dict_hook_handle = {}
                    group._module_to_pre_load_state_dict_hook_handle = {}
                    self._hooks.append(group)
                # the stand-ins are meta tensors (restored with the rest of the attributes)
                group._validate_no_meta_params = _nothing
                for param in group.fsdp_params:
                    # buffers of the model's own all-gathers: the pass makes its own
                    vars(param).pop("_unsharded_param", None)
                    param.all_gather_outputs = []
                    param._unsharded_inner_tensors = []
                    param.unsharded_accumulated_grad = None
        return self

    def adopt(self) -> None:
        """FSDP's own lazy initialisation on the stand-ins now in the modules (outside the
        session: its re-padding of the local shards is no work of the model)."""
        with warnings.catch_warnings():
            # it compares storages by data pointer, which fake tensors warn about
            warnings.filterwarnings("ignore", "Accessing the data pointer of FakeTensor")
            for state in self.states:     # module order: an outer root first claims the states below
                state._lazy_init()
        for group in self._groups:
            for param in group.fsdp_params:
                _pad_meta(param)

    def follow(self, session: Session) -> None:
        """Point ``session`` at FSDP's in-place storage changes (``resizable``) and, on meta
        stand-ins, at the devices FSDP makes its buffers on (its mesh's), to be made on meta."""
        if not self.states:
            return
        session.storages.resizable = self.resizable
        if all(p.sharded_param._local_tensor.is_meta for g in self._groups for p in g.fsdp_params):
            session.redirect = frozenset(group.device for group in self._groups)

    def resizable(self) -> Iterator[torch.Tensor]:
        """The tensors whose storages FSDP may have freed or re-allocated in place since the last
        call: the all-gather outputs (which the unsharded parameters view) of each parameter group
        that is gathering now or has changed state since then. Only those, so that a pass does
        not read hundreds of sizes after every operation."""
        for group in self._groups:
            state = group._sharded_state
            if group._all_gather_result is None and self._seen.get(id(group)) is state:
                continue
            self._seen[id(group)] = state
            for param in group.fsdp_params:
                yield from param.all_gather_outputs
                yield from param._unsharded_inner_tensors

    def __exit__(self, *exc_info: Any) -> None:
        for group in self._hooks:
            for handles in (group._module_to_pre_save_state_dict_hook_handle,
                            group._module_to_pre_load_state_dict_hook_handle):
                for handle in handles.values():
                    handle.remove()
        self._hooks = []
        for obj, saved in self._saved:
            attributes = vars(obj)
            attributes.clear()
            attributes.update(saved)
        self._saved = []


def _nothing() -> None:
    return None


def _pad_meta(param: Any) -> None:
    """What FSDP's adoption of a new shard (``FSDPParam.reset_sharded_param``) does to a real one
    and skips for a meta one: the local shard padded along the sharded dimension to the padded
    size, the parameter's local tensor its unpadded view, the padded data kept flat."""
    sharded = param.sharded_param
    local = sharded._local_tensor
    if not local.is_meta:
        return
    size = param.padded_sharded_param_size
    dim = param.fsdp_placement.dim
    if local.size() != size:
        length = local.size(dim) if local.numel() > 0 else 0
        padded = local.new_zeros(size)
        sharded._local_tensor = padded.narrow(dim, 0, length)
        local = padded
    param._sharded_param_data = local.view(-1)
    param._sharding_spec = sharded._spec
