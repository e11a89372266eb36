"""One rank of a parallel plan: the work it does on its local shards, and the collectives it joins.

A model whose parameters are DTensors (``parallelize_module``, ``fully_shard``) runs each operation
on DTensors twice over: once as the logical operation (global shapes: what ``Profile.total``
counts) and once as the local operations DTensor runs on this rank's shards, with the collectives
its placements need. The dispatch recorder hands the DTensor operation to DTensor with itself
re-entered, so the local operations come back to it as plain ones; ``Ranks`` keeps them apart.

Work on plain tensors between DTensor operations (attention over the local heads of a column-wise
layer's output, as ``to_local`` hands them on) is the rank's, and in the logical model stands for
as many times itself as the DTensor it came from is sharded: a plain tensor unwrapped from a
DTensor sharded over ``N`` ranks holds ``1/N`` of the logical one, and so does what is computed
from it. The logical record of such work is its local count times that factor.

Autograd runs above DTensor: the local operations carry no ``requires_grad``. A local operation of
the same operator as the DTensor operation that runs it takes the gradient flags of that
operation's tensors, in order (``addmm`` on shards needs what ``addmm`` on DTensors needs).
"""
from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from ._call import Call
from ._dispatch import _flat, op_name, tensors_of
from ._known import op_is_costly
from ._sharded import is_dtensor, local

if TYPE_CHECKING:  # pragma: no cover
    from ._capture import RawCall, Session

__all__ = ["Collective", "Ranks", "distributed_parameters"]

_EMPTY_STRIDED = torch.ops.aten.empty_strided.default


@dataclass(frozen=True)
class Collective:
    """One collective of the pass, as this rank joins it.

    ``bytes`` is what this rank sends by the ring algorithms' conventions: an all-gather or a
    reduce-scatter sends ``(N - 1) / N`` of the full (gathered, or not yet scattered) tensor, an
    all-reduce twice that (a reduce-scatter, then an all-gather), an all-to-all ``(N - 1) / N``
    of its input, a broadcast from this rank its tensor; ``N`` is ``group_size``.
    """

    kind: str                   # "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast"
    module: str                 # qualified name of the innermost module it ran in ("" the model's own)
    bytes: int
    group_size: int
    dtype: torch.dtype
    shape: tuple[int, ...]      # the full tensor: gathered, not yet scattered, or reduced
    op: str                     # the operator that ran it (``_c10d_functional::all_reduce``)
    phase: str = "forward"      # "forward", "backward" or "optimizer" (of a training step)

    __module__ = "torchflops"


def distributed_parameters(model: torch.nn.Module) -> bool:
    """Whether the model holds DTensor parameters."""
    return "torch.distributed.tensor" in sys.modules and any(map(is_dtensor, model.parameters()))


def local_numel(tensor: torch.Tensor) -> int:
    return local(tensor).numel()


def _group_size(value: Any) -> Optional[int]:
    """The size of a process group given by name (functional collectives) or object (c10d)."""
    from torch.distributed import distributed_c10d as c10d
    if isinstance(value, str):
        return c10d._resolve_process_group(value).size()
    if isinstance(value, torch.ScriptObject):     # c10d's operators take the group boxed
        return c10d.ProcessGroup.unbox(value).size()
    size = getattr(value, "size", None)
    return size() if callable(size) else None


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _first(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


# operator name -> (kind, how to read (tensor, group) from its arguments and output)
_Reader = Callable[[tuple, Any], tuple[Optional[torch.Tensor], Any]]
_COLLECTIVES: dict[str, tuple[str, _Reader]] = {
    # functional collectives (tensor parallel, DTensor redistribution): (input, ..., group name)
    "_c10d_functional::all_reduce": ("all_reduce", lambda a, out: (a[0], a[-1])),
    "_c10d_functional::all_reduce_coalesced": ("all_reduce", lambda a, out: (_first(a[0]), a[-1])),
    "_c10d_functional::all_gather_into_tensor": ("all_gather", lambda a, out: (out, a[-1])),
    "_c10d_functional::all_gather_into_tensor_coalesced": ("all_gather", lambda a, out: (_first(out), a[-1])),
    "_c10d_functional::reduce_scatter_tensor": ("reduce_scatter", lambda a, out: (a[0], a[-1])),
    "_c10d_functional::reduce_scatter_tensor_coalesced": ("reduce_scatter", lambda a, out: (_first(a[0]), a[-1])),
    "_c10d_functional::all_to_all_single": ("all_to_all", lambda a, out: (a[0], a[-1])),
    "_c10d_functional::broadcast": ("broadcast", lambda a, out: (a[0], a[-1])),
    # c10d's own (FSDP2): (output, input, group, ...) / (tensors, group, ...)
    "c10d::_allgather_base_": ("all_gather", lambda a, out: (a[0], a[2])),
    "c10d::_reduce_scatter_base_": ("reduce_scatter", lambda a, out: (a[1], a[2])),
    "c10d::allreduce_": ("all_reduce", lambda a, out: (_first(a[0]), a[1])),
    "c10d::broadcast_": ("broadcast", lambda a, out: (_first(a[0]), a[1])),
}
_SENT = {"all_reduce": lambda n, b: 2 * (n - 1) * b // n, "all_gather": lambda n, b: (n - 1) * b // n,
         "reduce_scatter": lambda n, b: (n - 1) * b // n, "all_to_all": lambda n, b: (n - 1) * b // n,
         "broadcast": lambda n, b: b if n > 1 else 0}


class Ranks:
    """The rank's side of a session on a model with DTensor parameters."""

    def __init__(self, session: Session) -> None:
        from torch.distributed.tensor import DTensor
        from torch._subclasses.fake_tensor import FakeTensor
        self.dtensor = DTensor
        self._fake = FakeTensor
        # the pass's own fake mode, if any; DTensor's sharding propagation runs its own
        self._fake_mode = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
        self._session = session
        self.depth = 0          # DTensor operations in flight
        self._outer: list[tuple[Any, tuple, dict]] = []
        self.raw: list[RawCall] = []
        self.collectives: list[Collective] = []
        self.moved: dict[str, list[int]] = {}       # module name -> [read, written] of its local operations
        self._factors: dict[int, tuple[weakref.ref, int]] = {}    # tensor id -> (tensor, shard factor)
        self._propagation: dict[int, weakref.ref] = {}             # tensors of DTensor's propagation
        self.phase = "forward"      # what the pass runs now: a training step's replay moves it on
        # registered once DTensor's functional collectives are loaded, as they are by now
        functional = torch.ops._c10d_functional
        self._hand_overs = frozenset(getattr(functional, name).default
                                     for name in ("wait_tensor", "_wrap_tensor_autograd")
                                     if hasattr(functional, name))

    # -- the logical model ---------------------------------------------------------------------------
    def mark(self, out: Any) -> None:
        """A DTensor operation's results: their shards hold ``1/factor`` of them."""
        for t in _flat((out,), []):
            local = getattr(t, "_local_tensor", None)
            if local is None:
                continue
            factor = 1
            for dim, placement in enumerate(t.placements):
                if placement.is_shard():
                    factor *= t.device_mesh.size(dim)
            if factor > 1:
                self._factors[id(local)] = (weakref.ref(local), factor)

    def factor(self, tensors: list[torch.Tensor]) -> int:
        """How many times the logical model does the work done here on these local tensors."""
        found = 1
        factors = self._factors
        for t in tensors:
            entry = factors.get(id(t))
            if entry is not None and entry[0]() is t and entry[1] > found:
                found = entry[1]
        return found

    def propagate(self, args: tuple, kwargs: dict, out: Any) -> int:
        """A plain operation between DTensor operations: its results are as sharded as its
        most sharded input. Returns that factor."""
        found = self.factor(tensors_of(args, kwargs))
        if found > 1:
            for t in _flat((out,), []):
                self._factors[id(t)] = (weakref.ref(t), found)
        return found

    def passes(self, func: Any, args: tuple, out: Any) -> bool:
        """Whether an operation is left out of the rank's record: DTensor's placement propagation,
        or a functional collective's hand-over of its result (``wait_tensor``, the autograd
        wrapper), which returns the input's data (as a new tensor on meta, where kernels make
        their outputs afresh)."""
        return func in self._hand_overs or self.propagating(func, args, out)

    def propagating(self, func: Any, args: tuple, out: Any) -> bool:
        """Whether this operation is DTensor working out output placements: it runs the operation
        once on fake tensors of the global shapes, which it makes with ``empty_strided`` (in the
        pass's own fake mode when there is one, else in a mode of its own)."""
        if not self.depth:
            return False
        if func is _EMPTY_STRIDED:
            self._mark_propagation(out)
            return True
        propagation = self._propagation
        fake = self._fake
        for a in args:
            if isinstance(a, torch.Tensor) and (
                    id(a) in propagation and propagation[id(a)]() is a
                    or isinstance(a, fake) and a.fake_mode is not self._fake_mode):
                self._mark_propagation(out)
                return True
        return False

    def _mark_propagation(self, out: Any) -> None:
        for t in _flat((out,), []):
            self._propagation[id(t)] = weakref.ref(t)

    def enter(self, func: Any, args: tuple, kwargs: dict) -> None:
        self.depth += 1
        self._outer.append((func, args, kwargs))

    def exit(self) -> None:
        self.depth -= 1
        self._outer.pop()

    def on_local(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any,
                 read: int, written: int, name: str) -> None:
        """One plain operation of this rank, inside the model."""
        moved = self.moved.get(name)
        if moved is None:
            moved = self.moved[name] = [0, 0]
        moved[0] += read
        moved[1] += written
        qualified = op_name(func)
        collective = _COLLECTIVES.get(qualified)
        if collective is not None:
            self._collective(collective, qualified, args, out, name)
            return
        session = self._session
        formula, takes_module = session.resolver.for_op(func)
        if formula is None and not op_is_costly(func):
            return
        if takes_module:
            formula = partial(formula, session.current_module())
        call = self._describe(func, args, kwargs, out)
        self.raw.append(session.raw_call(name, qualified, formula, call, read, written))

    def _describe(self, func: Any, args: tuple, kwargs: dict, out: Any) -> Call:
        """The call with the gradient flags of the DTensor operation running it, where one does."""
        session = self._session
        flags: dict[int, tuple[bool, bool]] = {}
        if self._outer:
            outer, outer_args, outer_kwargs = self._outer[-1]
            if outer.overloadpacket is func.overloadpacket:
                mine, theirs = tensors_of(args, kwargs), tensors_of(outer_args, outer_kwargs)
                if len(mine) == len(theirs):
                    for local, logical in zip(mine, theirs):
                        flags[id(local)] = (session.needs_grad(logical), session.is_parameter(logical))
        grad = lambda t: flags[id(t)][0] if id(t) in flags else session.needs_grad(t)  # noqa: E731
        param = lambda t: flags[id(t)][1] if id(t) in flags else session.is_parameter(t)  # noqa: E731
        return session.describe_call(args, kwargs, out, grad, param)

    def on_outside(self, func: torch._ops.OpOverload, args: tuple, out: Any) -> None:
        """An operation of the thread outside the model's forward: a training step's backward
        or optimizer. Only its collectives are kept, named by the module whose backward ran them
        (the module that made the autograd node running, or the FSDP group reducing)."""
        qualified = op_name(func)
        collective = _COLLECTIVES.get(qualified)
        if collective is not None:
            self._collective(collective, qualified, args, out, _backward_module())

    def _collective(self, collective: tuple[str, _Reader], qualified: str, args: tuple, out: Any,
                    name: str) -> None:
        kind, read = collective
        tensor, group = read(args, out)
        size = _group_size(group)
        if tensor is None or size is None:
            return
        full = _tensor_bytes(tensor)
        shape = tuple(tensor.shape)
        self.collectives.append(Collective(kind, name, _SENT[kind](size, full), size, tensor.dtype, shape,
                                           qualified, self.phase))


MODULE_KEY = "torchflops.module"     # the module a forward operation ran in, on its autograd node


def stamp(out: Any, name: str) -> None:
    """Name on the autograd nodes of ``out`` the module that made them, for their backward (a
    call's inputs too, where nothing named theirs: a plan's input hooks redistribute them)."""
    for t in _flat((out,), []):
        node = t.grad_fn
        if node is not None and MODULE_KEY not in node.metadata:
            node.metadata[MODULE_KEY] = name


def _backward_module() -> str:
    frame = sys._getframe(2)
    while frame is not None:        # FSDP gathers and reduces a parameter group of its own
        owner = frame.f_locals.get("self")
        name = getattr(owner, "_module_fqn", None) if type(owner).__name__ == "FSDPParamGroup" else None
        if name is not None:
            return name
        frame = frame.f_back
    node = torch._C._current_autograd_node()
    name = node.metadata.get(MODULE_KEY) if node is not None else None
    return name if name is not None else ""
