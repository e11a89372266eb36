"""Capture: hooks, a function mode and a dispatch recorder that record what each call saw.

A ``Session`` installs a global forward pre-hook and an always-called global forward hook that
see the calls of the model's modules in the session's thread, pushes a ``TorchFunctionMode`` for
the functional calls made outside modules that have a formula (the mode is taken off the stack
inside those), and pushes a ``TorchDispatchMode`` (``_dispatch.OpRecorder``) that sees every ATen
operation. Functions with a formula are recorded at the function level; an ATen operation that runs outside every such record and every claimed
module (an exported graph, TorchScript, a custom op, a direct ``torch.ops`` call) is recorded at
the dispatch level, counted by an ATen formula or reported by its name. Each call is reduced to
shapes and needs-grad flags (``_call.Call``) and kept as a ``RawCall`` with the bytes its ATen
operations moved; every module call also leaves a ``Span`` (its shapes, bytes and which raw calls
it made). Formulas are applied later, by the profile.

On a shape-only pass the mixture-of-experts modules ``_moe`` recognises run a stand-in forward
(their routing reads tensor values), put back when the session ends.

While the mode is active ``has_torch_function`` is true for every tensor, so a module without a
formula such as ``nn.TransformerEncoderLayer`` does not take its fused inference path during a
session: it runs its submodules, which the formulas count.
"""
from __future__ import annotations

import enum
import sys
import threading
import weakref
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from ._attention import CpuAttention
from ._call import Call, ObjectInfo, PackedInfo, TensorInfo
from ._checks import check_function, check_module
from ._dispatch import OpRecorder, kernel_bytes, op_name
from ._known import op_is_costly
from ._moe import MoE, resolve
from ._ranks import Ranks, distributed_parameters, stamp
from ._registry import Formula, Resolver
from ._shortcuts import SHORTCUT_MODULES, iter_tensors, shortcut
from ._storages import Storages

__all__ = ["RawCall", "Span", "Session", "describe", "NOTE_PREFIX", "NESTED"]

NOTE_PREFIX = "torchflops:"
_RAISED_IN = f"{NOTE_PREFIX} raised in"
NESTED = ("torchflops counts dense shapes, and a nested (jagged) tensor's lengths are in its data: "
          "count one padded batch, or each sequence's shape on its own, and add them")


@dataclass(frozen=True, slots=True)
class RawCall:
    """One counted call: a module with a formula, a functional call outside such modules, or an
    ATen operation outside every function-level record."""

    name: str                       # the module's qualified name (for a function: the enclosing module's)
    type: str                       # class name, function name, or ATen name (``aten.mm``)
    module: Optional[nn.Module]     # None for a functional call
    formula: Optional[Formula]      # None: costly work nothing counts (unsupported)
    call: Call
    read: int = 0                   # bytes its ATen operations read and wrote
    written: int = 0
    saved: int = 0                  # bytes of storages autograd saved first in this call
    output: int = 0                 # bytes its outputs span
    scale: int = 1                  # times the logical model does it (work on shards of a plan, ``_ranks``)


@dataclass(frozen=True, slots=True)
class Span:
    """One module call outside claimed subtrees: its shapes and the raw calls it made."""

    name: str
    module: nn.Module
    call: Call
    start: int                      # index of its first raw call
    end: int                        # one past its last raw call
    claimed: bool                   # the module has a formula (its raw call is ``end - 1``)
    depth: int                      # 0 for a call of the model itself, or of an outermost module
    read: int                       # bytes every ATen operation inside it read and wrote
    written: int


class _GradTracker:
    """Which tensors would need a gradient, for passes run while autograd is off.

    Under ``no_grad``/``inference_mode`` autograd keeps no ``requires_grad`` on results, so the
    function mode propagates it: a floating result needs a gradient when any tensor argument does.
    """

    _NON_DIFFERENTIABLE = {torch.Tensor.detach, torch.detach, torch.Tensor.detach_,
                           torch.ops.aten.detach.default}

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}

    def __call__(self, tensor: torch.Tensor) -> bool:
        if tensor.requires_grad:
            return True
        ref = self._refs.get(id(tensor))
        return ref is not None and ref() is tensor

    def propagate(self, func: Callable, args: tuple, kwargs: dict, out: Any) -> None:
        if func in self._NON_DIFFERENTIABLE:
            return
        if any(self(t) for t in iter_tensors((args, kwargs))):
            self._mark(out)

    def propagate_module(self, module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        """A module whose insides the mode did not see: its result needs a gradient when an
        input does or one of its parameters trains."""
        if any(p.requires_grad for p in module.parameters()) or any(
                self(t) for t in iter_tensors((args, kwargs))):
            self._mark(out)

    def _mark(self, out: Any) -> None:
        for t in iter_tensors(out):
            if t.is_floating_point() or t.is_complex():
                self._refs[id(t)] = weakref.ref(t)


def _not_parameter(tensor: torch.Tensor) -> bool:
    return False




# what a call's record keeps as it is: values that hold no tensors
_PLAIN_VALUES = (bool, int, float, complex, str, bytes, slice, type(Ellipsis), enum.Enum, type,
                 torch.dtype, torch.device, torch.layout, torch.memory_format, torch.SymInt,
                 torch.SymFloat, torch.SymBool)


def describe(value: Any, needs_grad: Callable[[torch.Tensor], bool],
             parameter: Callable[[torch.Tensor], bool]) -> Any:
    """Replace tensors by ``TensorInfo`` (packed sequences by ``PackedInfo``), keeping structure."""
    if isinstance(value, torch.Tensor):
        if value.is_nested:
            raise ValueError(NESTED)
        return TensorInfo(tuple(value.shape), needs_grad(value), parameter(value))
    if isinstance(value, PackedSequence):
        return PackedInfo(describe(value.data, needs_grad, parameter),
                          tuple(int(n) for n in value.batch_sizes.tolist()))
    if isinstance(value, (tuple, list)):
        return tuple(describe(item, needs_grad, parameter) for item in value)
    if isinstance(value, dict):
        return {key: describe(item, needs_grad, parameter) for key, item in value.items()}
    if value is None or isinstance(value, _PLAIN_VALUES):
        return value
    return ObjectInfo(type(value).__name__)


def _function_name(func: Callable) -> str:
    return getattr(func, "__name__", None) or repr(func)


# Our hooks read shapes and flags of the model's tensors; with the function mode on, each read
# would be intercepted by the mode itself (over a thousand times for GoogLeNet).
_OWN_CODE = torch._C.DisableTorchFunction


class _FunctionMode(TorchFunctionMode):
    """Sees every torch function call of the session's thread; hands them to the session."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        check_function(func, args)
        session = self._session
        clock = session.clock
        start = clock() if clock is not None else None
        entry = session.function_entry(func)
        try:
            out = shortcut(func, args, kwargs) if session.shortcuts else None
            if out is None:
                out = func(*args, **kwargs)
            elif session.inside():
                session.add_moved(*kernel_bytes(args, kwargs, out))
                session.answered_from_shapes = True
        finally:
            if entry is not None:
                session.covered -= 1
        session.on_function(func, args, kwargs, out, entry, start)
        return out


class Session:
    """Hooks on one model for the duration of a ``with`` block, recording calls of this thread.

    The hooks are global module hooks (two handles, however large the model) that ignore modules
    outside this model and calls from other threads; the model's own hook dictionaries are never
    touched, so the user's hooks keep their order.

    With a ``clock`` (a callable returning a time mark), each raw call and span also gets the
    marks taken when it began and ended, in ``marks`` and ``span_marks`` (aligned with ``raw``
    and ``spans``; a span's also holds how many functional calls the mode saw inside it); what a
    mark means is the caller's business. A clocked session records no bytes and no ATen-level
    calls: the dispatch recorder stays off, as its cost per operation would sit inside the times.
    """

    def __init__(self, model: nn.Module, resolver: Resolver,
                 modules: Optional[list[tuple[str, nn.Module]]] = None,
                 clock: Optional[Callable[[], Any]] = None, *, shape_only: bool = False,
                 keep_saved: bool = True, shortcuts: bool = True, whole_thread: bool = False) -> None:
        self.model = model
        self.resolver = resolver
        self._modules = modules if modules is not None else list(model.named_modules())
        self.raw: list[RawCall] = []
        self.spans: list[Span] = []
        self.moe: list[tuple[str, nn.Module, MoE]] = []   # mixture-of-experts modules (``_moe``)
        self._shape_only = shape_only
        self._forwards: list[tuple[nn.Module, Any]] = []    # forwards the stand-ins replaced
        self._thread = threading.get_ident()
        self._known: dict[int, tuple[str, Optional[Formula]]] = {}
        # (module, name, first raw call, exception in flight at entry, bytes read, bytes written)
        self._stack: list[tuple[nn.Module, str, int, Optional[BaseException], int, int]] = []
        self._claim = 0              # > 0 while inside a module that has a formula
        self.covered = 0             # > 0 while inside a function-level record
        self.read = 0                # bytes read and written by every ATen operation inside the model
        self.written = 0
        self._handles: list[Any] = []
        self._mode: Optional[_FunctionMode] = None
        self._recorder: Optional[OpRecorder] = None
        self._attention: Optional[CpuAttention] = None
        self._tracker = _GradTracker()
        self._graphs = _graph_names(self._modules)
        # (parent id, child id) -> the child's attribute name: a call is named by its caller's
        # path (fvcore's caller mode), so a module shared by two parents has a name under each
        self._children: dict[tuple[int, int], str] = {}
        self._parameters: Optional[dict[int, torch.Tensor]] = None
        self._suspended = False      # the mode is off the stack while inside a claimed module
        # storages: autograd's saved tensors are kept for a backward (``profile``, a training step)
        # or replaced by placeholders (``count``); ``whole_thread`` follows every operation of the
        # thread (a training step's backward and optimizer), not only the model's forward
        self.storages = Storages()
        self.keep_saved = keep_saved
        self.shortcuts = shortcuts
        self.answered_from_shapes = False   # a kernel was answered from shapes (autograd saw no graph)
        self.host_autocast = False          # autocast was on for the host (meta tensors skip it)
        self._whole_thread = whole_thread
        self._saved_hooks: Optional[torch.autograd.graph.saved_tensors_hooks] = None
        self._op_record: Optional[int] = None   # the raw call of the ATen operation in flight
        self.clock = clock
        self.marks: list[tuple[Any, Any]] = []
        self.span_marks: list[tuple[Any, Any, int]] = []
        self._starts: list[tuple[Any, int]] = []
        self._seen = 0               # functional calls the mode saw (counted when clocked)
        # a model with DTensor parameters: what this rank runs on its shards, kept apart
        self.distributed: Optional[Ranks] = None
        self._stamps = False
        # devices whose new tensors are made on meta instead (an FSDP model's, ``_sharded``)
        self.redirect: frozenset[torch.device] = frozenset()

    # -- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> Session:
        if self.clock is None and distributed_parameters(self.model):
            self.distributed = Ranks(self)
            # a training step's collectives in backward are named by the module that ran the forward
            self._stamps = self._whole_thread
        for name, module in self._modules:
            for key, child in module._modules.items():
                if child is not None:
                    self._children.setdefault((id(module), id(child)), key)
            # TorchScript runs its insides out of Python's sight: its ATen operations are counted
            if isinstance(module, torch.jit.ScriptModule):
                self._known[id(module)] = (name, None)
                continue
            formula, moe = resolve(module, self.resolver.for_module(module))
            if self.distributed is not None and moe is None:
                # a module formula reads its global sizes off the module, while the plan's hooks
                # hand it local tensors: its functional calls, on DTensors, count it instead
                formula = None
            self._known[id(module)] = (name, formula)
            if moe is not None:
                self.moe.append((name, module, moe))
        try:
            if self._shape_only:
                # routing reads tensor values: shape-only passes run the MoE stand-ins instead
                for _, module, moe in self.moe:
                    for target, standin in moe.standins(module):
                        self._forwards.append((target, vars(target).get("forward")))
                        vars(target)["forward"] = standin
            self._handles.append(nn.modules.module.register_module_forward_pre_hook(self._pre))
            if self.distributed is None:
                self._handles.append(nn.modules.module.register_module_forward_hook(
                    self._post, with_kwargs=True, always_call=True))
            else:
                # a plan's output hooks (a row-wise layer's all-reduce, FSDP's reshard) run after
                # global hooks: the call ends after them, in a hook of the module's own, put last
                for _, module in self._modules:
                    self._handles.append(module.register_forward_hook(
                        self._post, with_kwargs=True, always_call=True))
            self._mode = _FunctionMode(self)
            self._mode.__enter__()
            if self.clock is None:      # a clocked pass times the model, it records no facts
                self._recorder = OpRecorder(self)
                self._recorder.__enter__()
                self._attention = CpuAttention().__enter__()
                self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
                self._saved_hooks.__enter__()
        except BaseException:
            self._exit_modes(None, None, None)
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._exit_modes(*exc_info)
        finally:
            self._remove_hooks()
            self._stack.clear()
            self._starts.clear()
            self._claim = 0
            self.covered = 0
            self._parameters = None

    def _exit_modes(self, *exc_info: Any) -> None:
        try:
            if self._attention is not None:
                self._attention.__exit__(*exc_info)
                self._attention = None
            if self._saved_hooks is not None:
                self._saved_hooks.__exit__(*exc_info)
                self._saved_hooks = None
            if self._recorder is not None:
                self._recorder.__exit__(*exc_info)
        finally:
            self._recorder = None
            try:
                self._resume_mode()
                if self._mode is not None:
                    self._mode.__exit__(*exc_info)
            finally:
                self._mode = None

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, forward in self._forwards:
            if forward is None:
                del vars(module)["forward"]
            else:
                vars(module)["forward"] = forward
        self._forwards.clear()

    # -- module hooks ---------------------------------------------------------------------------
    def _pre(self, module: nn.Module, args: tuple) -> None:
        known = self._known.get(id(module))
        if known is None or threading.get_ident() != self._thread:
            return
        name = known[0]
        if not self.host_autocast and torch.is_autocast_enabled("cpu"):
            self.host_autocast = True
        if not self._stack:
            self._parameters = None     # looked up again, lazily, for each outermost call
            if self._recorder is not None:
                with _OWN_CODE():
                    self.storages.hold(self._persistent(), persistent=True)
                    self.storages.hold(iter_tensors(args))
        else:
            parent, parent_name = self._stack[-1][:2]
            key = self._children.get((id(parent), id(module)))
            if key is not None:
                name = f"{parent_name}.{key}" if parent_name else key
        self._op_record = None
        self._stack.append((module, name, len(self.raw), sys.exc_info()[1], self.read, self.written,
                            self.storages.saved))
        if self.distributed is None:    # a plan's input hooks have not made its DTensors yet
            check_module(module, args)  # on the stack already, so its error is noted on it
        if self._claim:
            self._claim += 1
        elif known[1] is not None:
            self._claim = 1
            if not isinstance(module, SHORTCUT_MODULES):
                self._suspend_mode()
        if self.clock is not None:
            self._starts.append((self.clock(), self._seen))

    def _suspend_mode(self) -> None:
        """Take the mode off the stack inside a claimed module: nothing there is recorded, and
        every torch call the mode skips is time saved. Only when it is on top (a forward may
        have pushed a mode of its own, such as ``torch.device``)."""
        depth = torch._C._len_torch_function_stack()
        if depth and torch._C._get_function_stack_at(depth - 1) is self._mode:
            torch._C._pop_torch_function_stack()
            self._suspended = True

    def _resume_mode(self) -> None:
        if self._suspended:
            torch._C._push_on_torch_function_stack(self._mode)
            self._suspended = False

    def _post(self, module: nn.Module, args: tuple, *rest: Any) -> None:
        # (kwargs, output) normally; (output,) when the forward raised (torch drops kwargs then)
        if not self._stack or self._stack[-1][0] is not module or threading.get_ident() != self._thread:
            return
        kwargs, output = rest if len(rest) == 2 else (_failed_call_kwargs(), rest[0])
        marks = self._span_marks() if self.clock is not None else None
        formula = self._known[id(module)][1]
        _, name, start, ambient, read, written, saved = self._stack.pop()
        if self._stamps:     # a plan's output hooks redistribute there: their backward is the module's
            stamp(output, name)
        read, written = self.read - read, self.written - written
        saved = self.storages.saved - saved
        self._op_record = None
        error = sys.exc_info()[1]
        failed = error is not None and error is not ambient
        if failed:
            self._note(error, name, module, args, kwargs)
        if self._claim > 1:
            self._claim -= 1
            return
        claimed = self._claim == 1
        self._claim = 0
        if claimed:
            self._resume_mode()
        if failed:
            return
        with _OWN_CODE():
            if claimed and not torch.is_grad_enabled():
                self._tracker.propagate_module(module, args, kwargs, output)
            # module formulas read their weights from the module: no parameter look-ups here
            call = self._describe(args, kwargs, output, _not_parameter)
        if claimed:
            with _OWN_CODE():
                output_bytes = kernel_bytes((), {}, output)[1]
            self.raw.append(RawCall(name, type(module).__name__, module, formula, call, read, written,
                                    saved, output_bytes))
        self.spans.append(Span(name, module, call, start, len(self.raw), claimed, len(self._stack),
                               read, written))
        if marks is not None:
            if claimed:
                self.marks.append(marks[:2])
            self.span_marks.append(marks)

    def _span_marks(self) -> tuple[Any, Any, int]:
        end = self.clock()
        start, seen = self._starts.pop()
        return start, end, self._seen - seen

    def _note(self, error: BaseException, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Say once, on the innermost module, where the user's forward raised and on what shapes.
        Read off the error's own notes: a reference kept to the error would keep its traceback's
        frames, and every tensor they hold, alive (non-reentrant checkpointing stops each
        recomputation by raising an error through the recomputed modules)."""
        if any(note.startswith(_RAISED_IN) for note in getattr(error, "__notes__", ())):
            return
        with _OWN_CODE():
            shapes = ", ".join([_shape_text(t) for t in iter_tensors(args)] + [
                f"{key}={_shape_text(t)}" for key, value in kwargs.items() for t in iter_tensors(value)
            ]) or "no tensors"
        where = f"module '{name}'" if name else "the model's own forward"
        # torch drops the keyword arguments of a call that raised: no shapes is not no inputs
        called = f" called with {shapes}" if shapes else ""
        error.add_note(f"{_RAISED_IN} {where} ({type(module).__name__}){called}")

    # -- functional calls -----------------------------------------------------------------------
    def function_entry(self, func: Callable) -> Optional[tuple[Formula, int, int, int]]:
        """Before a function runs: its formula and the byte counters when the call is counted
        here (a function with a formula, in the model's own forward); None when the dispatch
        recorder decides (what the function runs is counted, reported or free by its ATen ops)."""
        # only work of the model's own forward: not inside a claimed module, not outside the model
        if self._claim or not self._stack or threading.get_ident() != self._thread:
            return None
        formula = self.resolver.for_function(func)
        if formula is None:
            return None
        self.covered += 1
        self._op_record = None
        return formula, self.read, self.written, self.storages.saved

    def on_function(self, func: Callable, args: tuple, kwargs: dict, out: Any,
                    entry: Optional[tuple[Formula, int, int, int]], start: Any = None) -> None:
        end = None
        if self.clock is not None and threading.get_ident() == self._thread:
            end = self.clock()
            self._seen += 1
        if not torch.is_grad_enabled() and threading.get_ident() == self._thread:
            self._tracker.propagate(func, args, kwargs, out)
        if self._stamps and self._stack and threading.get_ident() == self._thread:
            stamp((out, args, tuple(kwargs.values())), self._stack[-1][1])
        if entry is None:
            return
        formula, read, written, saved = entry
        self._op_record = None
        with _OWN_CODE():
            output_bytes = kernel_bytes((), {}, out)[1]
        scale = 1
        if self.distributed is not None:
            scale = self.distributed.factor(list(iter_tensors((args, kwargs))))
        self.raw.append(RawCall(self._stack[-1][1], _function_name(func), None, formula,
                                self._describe(args, kwargs, out, self._is_parameter),
                                self.read - read, self.written - written,
                                self.storages.saved - saved, output_bytes, scale))
        if end is not None:
            self.marks.append((start, end))

    # -- ATen operations --------------------------------------------------------------------------
    def inside(self) -> bool:
        """Whether an operation now runs inside the model (the recorder is this thread's)."""
        return bool(self._stack)

    def follows(self) -> bool:
        """Whether the storages an operation makes now are followed."""
        return bool(self._stack) or self._whole_thread

    def on_outputs(self, outputs: list[torch.Tensor]) -> None:
        with _OWN_CODE():
            self.storages.outputs(outputs)

    def _pack(self, tensor: torch.Tensor) -> Any:
        """Autograd's pack hook: what the model's forward saves for backward, attributed to the
        call that saved each storage first."""
        if self._stack:
            with _OWN_CODE():
                size = self.storages.save(tensor)
            if size and self._op_record is not None:
                raw = self.raw[self._op_record]
                self.raw[self._op_record] = replace(raw, saved=raw.saved + size)
        # kept for the user's backward as a detached alias (same storage and version counter): the
        # tensor itself would make a cycle through autograd's graph (an output saved by its own
        # node) that no collector breaks, and leak every pass's activations
        return tensor.detach() if self.keep_saved else None

    def _persistent(self) -> Iterator[torch.Tensor]:
        """The parameters and buffers the pass runs with (``count``'s stand-ins, or the model's own)."""
        yield from self.model.parameters()
        yield from self.model.buffers()

    def add_moved(self, read: int, written: int) -> None:
        self.read += read
        self.written += written

    def on_op(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any,
              read: int, written: int, local: bool = True) -> None:
        """One ATen operation inside the model. On a model with DTensor parameters, a ``local``
        (plain) operation is also this rank's work, and one that runs for a DTensor operation
        is the rank's only: the DTensor operation stands for it in the logical model."""
        ranks = self.distributed
        scale = 1
        if ranks is not None and local:
            ranks.on_local(func, args, kwargs, out, read, written, self._current_name())
            if ranks.depth:
                return
            scale = ranks.propagate(args, kwargs, out)
            read, written = read * scale, written * scale
        self.read += read
        self.written += written
        self._op_record = None
        if not torch.is_grad_enabled():
            self._tracker.propagate(func, args, kwargs, out)
        if self.covered or self._claim:
            return
        formula, takes_module = self.resolver.for_op(func)
        if formula is None and not op_is_costly(func):
            return
        module, name = self._stack[-1][:2]
        if takes_module:
            formula = partial(formula, module)
        if self._graphs:
            name = _graph_node_name(self._graphs) or name
        with _OWN_CODE():
            call = self._describe(args, kwargs, out, self._is_parameter)
        self._op_record = len(self.raw)
        self.raw.append(RawCall(name, op_name(func), None, formula, call, read, written, 0, written, scale))

    def _describe(self, args: tuple, kwargs: dict, output: Any, parameter: Callable[[torch.Tensor], bool],
                  needs_grad: Optional[Callable[[torch.Tensor], bool]] = None) -> Call:
        needs_grad = needs_grad or self._tracker
        return Call(*(describe(part, needs_grad, parameter) for part in (args, kwargs, output)))

    # -- what ``Ranks`` asks of the session ---------------------------------------------------------
    def _current_name(self) -> str:
        name = self._stack[-1][1]
        return (_graph_node_name(self._graphs) or name) if self._graphs else name

    def current_module(self) -> nn.Module:
        return self._stack[-1][0]

    def needs_grad(self, tensor: torch.Tensor) -> bool:
        return self._tracker(tensor)

    def is_parameter(self, tensor: torch.Tensor) -> bool:
        return self._is_parameter(tensor)

    def describe_call(self, args: tuple, kwargs: dict, output: Any, needs_grad: Callable[[torch.Tensor], bool],
                      parameter: Callable[[torch.Tensor], bool]) -> Call:
        with _OWN_CODE():
            return self._describe(args, kwargs, output, parameter, needs_grad)

    @staticmethod
    def raw_call(name: str, op: str, formula: Optional[Formula], call: Call, read: int, written: int) -> RawCall:
        return RawCall(name, op, None, formula, call, read, written, 0, written)

    def _is_parameter(self, tensor: torch.Tensor) -> bool:
        """A parameter of the model, or a view of one (``self.weight.t()``)."""
        if self._parameters is None:
            # the parameters the pass runs with (``count``'s stand-ins, or the model's own)
            self._parameters = {id(p): p for p in self.model.parameters()}
        base = tensor._base if tensor._base is not None else tensor
        return isinstance(base, nn.Parameter) or self._parameters.get(id(base)) is base


def _failed_call_kwargs() -> dict:
    """The keyword arguments of a module call whose forward raised: torch calls the always-called
    hook without them, from ``Module._call_impl``, whose frame still holds them."""
    frame = sys._getframe(2)
    kwargs = frame.f_locals.get("kwargs") if frame.f_code.co_name == "_call_impl" else None
    return kwargs if isinstance(kwargs, dict) else {}


# -- FX and exported graphs ---------------------------------------------------------------------------
# A graph module's generated forward -> (its first line, line -> node index, the qualified module
# name of each node's innermost ``nn_module_stack`` entry, or None)
_GraphNames = dict[Any, tuple[int, dict[int, Optional[int]], list[Optional[str]]]]


def _graph_names(modules: list[tuple[str, nn.Module]]) -> _GraphNames:
    """Where the graph modules of the model keep the module paths of their nodes."""
    found: _GraphNames = {}
    for prefix, module in modules:
        if not isinstance(module, torch.fx.GraphModule) or not getattr(module, "_lineno_map", None):
            continue
        names: list[Optional[str]] = []
        for node in module.graph.nodes:
            stack = node.meta.get("nn_module_stack")
            path = next(reversed(stack.values()))[0] if stack else None
            names.append(".".join(p for p in (prefix, path) if p) if path is not None else None)
        code = type(module).forward.__code__
        found[code] = (code.co_firstlineno, module._lineno_map, names)
    return found


def _graph_node_name(graphs: _GraphNames) -> Optional[str]:
    """The module path of the graph node running now, read off the generated forward's frame."""
    frame = sys._getframe(2)
    while frame is not None:
        graph = graphs.get(frame.f_code)
        if graph is not None:
            first, lines, names = graph
            index = lines.get(frame.f_lineno - first)
            return names[index] if index is not None and index < len(names) else None
        frame = frame.f_back
    return None


def _unpack(value: Any) -> Any:
    if value is None:
        raise RuntimeError("torchflops: backward through a tf.count pass, which keeps no saved tensors; "
                           "run backward on the model's own outputs outside tf.count")
    return value


def _shape_text(tensor: torch.Tensor) -> str:
    shape = "x".join(str(d) for d in tensor.shape) or "scalar"
    return f"{shape} {str(tensor.dtype).removeprefix('torch.')}"
