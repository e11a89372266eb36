"""Capture below the function mode: a ``TorchDispatchMode`` that sees every ATen operation.

The function mode and the module hooks see what Python announces; this recorder sees what reaches
ATen, whatever called it (an exported graph, a TorchScript function, a custom op, a direct
``torch.ops.aten`` call, the body of a fused Python function). For each operation made inside the
model it records two facts and hands them to the session:

- the bytes it reads (each distinct input storage once, a view by the bytes it spans) and writes
  (its outputs; a view writes nothing);
- for an operation that no function-level record covers, whether it has compute cost: the session
  counts it with an ATen formula or reports it by its ATen name.

Normalisation kernels are answered from shapes here, on meta tensors (PyTorch runs them as Python
meta functions: ~0.5 ms a call). Below autograd, so autograd records the real operation and saves
what it really saves; the outputs mirror what the CPU kernels return. Values that follow from
constants alone (``torch.arange(seq_len)`` and what is computed from it) are kept beside tensors
without data, so a forward can read them (``_values``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ._values import Values

if TYPE_CHECKING:  # pragma: no cover
    from ._capture import Session

__all__ = ["OpRecorder", "op_name", "span_bytes", "kernel_bytes", "tensors_of"]

_aten = torch.ops.aten
# a fake tensor's ``.device`` (asked for by autograd, FSDP and DTensor thousands of times a step):
# an attribute read, handed straight to the mode below
_DEVICE = torch.ops.prim.device.default
_META = torch.device("meta")


def op_name(func: torch._ops.OpOverload) -> str:
    """``aten::mm`` for ``aten.mm.default``: the operator's qualified name, as ``formulas=`` takes it."""
    return func.overloadpacket._qualified_op_name


def span_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor spans in its storage: from its first to its last element."""
    if t.is_nested:     # its sizes are symbolic: the buffer holding its values
        values = getattr(t, "_values", None)
        return span_bytes(values) if values is not None else 0
    if t.numel() == 0:
        return 0
    extent = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    return extent * t.element_size()


# -- what an operation moves -----------------------------------------------------------------------
_NOTHING_WRITTEN = frozenset({
    # allocation without initialisation, and metadata-only operations
    _aten.empty.memory_format, _aten.empty_strided.default, _aten.empty_like.default,
    _aten.new_empty.default, _aten.new_empty_strided.default, _aten.resize_.default,
    _aten.lift_fresh.default, _aten._local_scalar_dense.default, _aten.set_.source_Storage,
    _aten.set_.source_Storage_storage_offset, _aten.set_.source_Tensor, _aten.set_.default,
})
_WRITE_ONLY = frozenset({
    # in-place operations that overwrite their first argument without reading it
    _aten.fill_.Scalar, _aten.fill_.Tensor, _aten.zero_.default, _aten.uniform_.default,
    _aten.normal_.default, _aten.bernoulli_.float, _aten.random_.default, _aten.exponential_.default,
})


class _Schema:
    """What an overload's schema says about its outputs: views move nothing; the first argument of
    an operation that overwrites it without reading it (``copy_``, ``fill_``) is not read."""

    __slots__ = ("view", "skip_first_read", "nothing")

    def __init__(self, func: torch._ops.OpOverload) -> None:
        returns = func._schema.returns
        self.view = bool(returns) and all(
            r.alias_info is not None and not r.alias_info.is_write for r in returns)
        self.nothing = func in _NOTHING_WRITTEN
        self.skip_first_read = func in _WRITE_ONLY or func.overloadpacket is _aten.copy_


_SCHEMAS: dict[Any, _Schema] = {}


def _schema(func: torch._ops.OpOverload) -> _Schema:
    found = _SCHEMAS.get(func)
    if found is None:
        found = _SCHEMAS[func] = _Schema(func)
    return found


def _flat(values: Any, out: list) -> list:
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (tuple, list)):
            _flat(value, out)
    return out


def tensors_of(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors among an operation's arguments, positional then keyword, nested ones included."""
    found = _flat(args, [])
    return _flat(kwargs.values(), found) if kwargs else found


def _distinct_bytes(tensors: list[torch.Tensor]) -> int:
    """Each storage once: the bytes from the lowest to the highest byte the tensors on it span."""
    if len(tensors) == 1:
        return span_bytes(tensors[0])
    spans: dict[int, tuple[int, int]] = {}
    for t in tensors:
        size = span_bytes(t)
        if not size:
            continue
        try:
            key = t.untyped_storage()._cdata
        except (RuntimeError, NotImplementedError):   # a tensor without storage (sparse, nested)
            key = id(t)
        start = t.storage_offset() * t.element_size()
        low, high = spans.get(key, (start, start + size))
        spans[key] = (min(low, start), max(high, start + size))
    return sum(high - low for low, high in spans.values())


def moved(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    """``(read, written)`` bytes of one operation."""
    schema = _schema(func)
    if schema.view or schema.nothing:
        return 0, 0
    return kernel_bytes(args, kwargs, out, skip_first=schema.skip_first_read)


def kernel_bytes(args: tuple, kwargs: dict, out: Any, skip_first: bool = False) -> tuple[int, int]:
    """``(read, written)`` of one kernel: its distinct input storages and its outputs. Also what a
    call answered from shapes (a fused recurrent kernel) moves."""
    inputs = tensors_of(args, kwargs)
    if skip_first and inputs and args and inputs[0] is args[0]:
        inputs = inputs[1:]
    outputs = _flat((out,), [])
    return _distinct_bytes(inputs) if inputs else 0, _distinct_bytes(outputs) if outputs else 0


# -- normalisation answered from shapes ----------------------------------------------------------
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _all_meta(tensors: list) -> bool:
    # subclasses (fake tensors, DTensors) run their own kernels
    return all(type(t) in _PLAIN and t.is_meta for t in tensors)


def _stats_dtype(x: torch.Tensor, running: Optional[torch.Tensor]) -> torch.dtype:
    if running is not None:
        return running.dtype
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _batch_norm(args: tuple, kwargs: dict) -> Optional[tuple]:
    """``native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
    eps)``: statistics per channel in training, empty ones in evaluation (as on the CPU)."""
    if kwargs or len(args) != 8:
        return None
    x, weight, bias, mean, var, training = args[:6]
    given = [t for t in (weight, bias, mean, var) if t is not None]
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not _all_meta([x] + given):
        return None
    channels = x.shape[1]
    if any(t.numel() != channels for t in given) or (training and x.numel() // channels <= 1):
        return None     # the real kernel raises
    stats = (channels,) if training or mean is None else (0,)
    dtype = _stats_dtype(x, mean)
    return (torch.empty_like(x), torch.empty(stats, dtype=dtype, device="meta"),
            torch.empty(stats, dtype=dtype, device="meta"))


def _layer_norm(args: tuple, kwargs: dict) -> Optional[tuple]:
    """``native_layer_norm(input, normalized_shape, weight, bias, eps)``: a mean and a reciprocal
    deviation per leading index, in the input's dtype (as on the CPU)."""
    if kwargs or len(args) != 5:
        return None
    x, shape, weight, bias = args[:4]
    given = [t for t in (weight, bias) if t is not None]
    if not isinstance(x, torch.Tensor) or not _all_meta([x] + given):
        return None
    shape = tuple(shape)
    if not shape or tuple(x.shape[-len(shape):]) != shape or any(tuple(t.shape) != shape for t in given):
        return None
    stats = tuple(x.shape[:-len(shape)]) + (1,) * len(shape)
    return (torch.empty(tuple(x.shape), dtype=x.dtype, device="meta"),
            torch.empty(stats, dtype=x.dtype, device="meta"), torch.empty(stats, dtype=x.dtype, device="meta"))


def _group_norm(args: tuple, kwargs: dict) -> Optional[tuple]:
    """``native_group_norm(input, weight, bias, N, C, HxW, group, eps)``: statistics per sample
    and group."""
    if kwargs or len(args) != 8:
        return None
    x, weight, bias, n, c, hw, groups = args[:7]
    given = [t for t in (weight, bias) if t is not None]
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not _all_meta([x] + given):
        return None
    if (not isinstance(groups, int) or groups <= 0 or c % groups or x.numel() == 0
            or x.shape[0] != n or x.shape[1] != c or x.numel() != n * c * hw
            or any(t.numel() != c for t in given)):
        return None
    return (torch.empty_like(x), torch.empty((n, groups), dtype=x.dtype, device="meta"),
            torch.empty((n, groups), dtype=x.dtype, device="meta"))


_ANSWERS: dict[Any, Callable[[tuple, dict], Optional[tuple]]] = {
    _aten.native_batch_norm.default: _batch_norm,
    _aten.native_layer_norm.default: _layer_norm,
    _aten.native_group_norm.default: _group_norm,
}


# -- the mode --------------------------------------------------------------------------------------
class OpRecorder(TorchDispatchMode):
    """Hands every ATen operation of the session's thread to the session, with its bytes."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session
        self._delegate = False      # the next DTensor operation is handed to DTensor itself
        self._values = Values()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _DEVICE:
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        session = self._session
        if session.redirect and kwargs.get("device") in session.redirect:
            # FSDP's buffers, made on its device, for a pass on meta stand-ins (``_sharded``)
            kwargs = {**kwargs, "device": _META}
        if session.distributed is not None:
            if self._delegate:
                self._delegate = False
                return NotImplemented
            if session.distributed.dtensor in types:
                return self._dtensor_op(func, args, kwargs)
        answer = _ANSWERS.get(func)
        out = answer(args, kwargs) if answer is not None else None
        if out is None:
            out = self._values.run(func, args, kwargs)
        if session.distributed is not None and session.distributed.passes(func, args, out):
            return out      # not the model's work: DTensor working out placements, or a hand-over
        if session.follows():
            session.on_outputs(_flat((out,), []))
        if session.inside():
            read, written = moved(func, args, kwargs, out)
            session.on_op(func, args, kwargs, out, read, written)
        elif session.distributed is not None and session.follows():
            session.distributed.on_outside(func, args, out)
        return out

    def _dtensor_op(self, func, args: tuple, kwargs: dict) -> Any:
        """An operation on DTensors: its global shapes are the logical model's; the local
        operations DTensor runs for it (on this rank's shards, with the collectives it needs) come
        back through this mode, re-entered, as plain operations of the rank."""
        session = self._session
        ranks = session.distributed
        ranks.enter(func, args, kwargs)
        self._delegate = True
        try:
            with self:
                out = func(*args, **kwargs)
        finally:
            self._delegate = False
            ranks.exit()
        ranks.mark(out)
        if session.inside() and not ranks.depth:
            read, written = moved(func, args, kwargs, out)
            session.on_op(func, args, kwargs, out, read, written, local=False)
        return out
