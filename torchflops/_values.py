"""Capture: the values of tensors without data that follow from constants alone.

A shape-only pass runs on tensors without data (meta or fake), so a forward that reads a value
(``.item()``, ``int(t)``, ``if t > 0``, a size given as a tensor) cannot go on. Some of the values
a forward reads were never data, though: ``torch.arange(seq_len)`` (transformers' ``cache_position``)
and what is computed from it and other constants, such as Jamba's ``cache_position[-1] + 1`` that
sizes its causal mask. The dispatch recorder hands every ATen operation to ``Values``, which keeps
a CPU mirror of each small tensor without data whose inputs all had known values (no tensor input
at all, as for a factory; real tensors; or tensors with a mirror), computed by the same operation
on the mirrors. When an operation with known inputs fails on tensors without data, it is answered
from the mirrors: a scalar as it is, a tensor as a tensor without data of the mirror's shape, so
the pass takes the path a real pass with the same inputs takes. Nothing else changes: an operation
that runs on tensors without data runs as it did, and its mirror is computed beside it.

Values from data (inputs, parameters, buffers) stay unknown, and so does anything computed from
them: routing, masks from an ``attention_mask``. Random operations and allocations without
initialisation have no mirror. A write through unknown values drops the mirrors of every tensor
sharing the written storage.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._mode_utils import no_dispatch
from torch.utils._pytree import tree_map
from torch.utils.weak import WeakIdKeyDictionary

from ._shortcuts import iter_tensors

__all__ = ["Values"]

_aten = torch.ops.aten

# Elements of the largest mirror: position vectors of 64K tokens. Masks over long sequences and
# activations are never mirrored, so a mirror costs microseconds.
LIMIT = 1 << 16

# Operations whose results are not functions of their inputs' values
_UNDEFINED = frozenset({
    _aten.empty.memory_format, _aten.empty_strided.default, _aten.empty_like.default,
    _aten.new_empty.default, _aten.new_empty_strided.default, _aten.resize_.default,
    _aten.set_.source_Storage, _aten.set_.source_Storage_storage_offset, _aten.set_.source_Tensor,
    _aten.set_.default,
})
_CPU = torch.device("cpu")
# The bookkeeping reads tensors' flags and shapes, which the session's function mode would see
_OWN_CODE = torch._C.DisableTorchFunction
_WRITTEN: dict[Any, tuple[tuple[int, str], ...]] = {}


def _written(func: torch._ops.OpOverload) -> tuple[tuple[int, str], ...]:
    """(position, name) of the arguments an operation writes to (``add_``'s self, ``out=``)."""
    found = _WRITTEN.get(func)
    if found is None:
        found = _WRITTEN[func] = tuple(
            (i, a.name) for i, a in enumerate(func._schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write)
    return found


def _written_tensors(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found = []
    for position, name in _written(func):
        found.extend(iter_tensors(args[position] if position < len(args) else kwargs.get(name)))
    return found


def _without_data(t: torch.Tensor) -> bool:
    # the type test first: a fake tensor's ``is_meta`` costs 10 us
    return isinstance(t, FakeTensor) or t.is_meta


def _storage_key(t: torch.Tensor) -> Optional[int]:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):   # a tensor without storage (sparse, nested)
        return None


def _constant(func: torch._ops.OpOverload) -> bool:
    """Whether the operation's results follow from its arguments' values."""
    return func not in _UNDEFINED and torch.Tag.nondeterministic_seeded not in func.tags


class Values:
    """CPU mirrors of one pass's small tensors without data whose values follow from constants."""

    def __init__(self) -> None:
        # tensor without data -> (its mirror, the storage it lives on)
        self._known: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def run(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> Any:
        """``func(*args, **kwargs)``, mirrored when its inputs' values are known, or answered from
        the mirrors when it cannot run without data."""
        with _OWN_CODE():
            tensors = list(iter_tensors((args, kwargs)))
            mirrors = self._mirrors(tensors)
        if mirrors is None:
            out = func(*args, **kwargs)
            if self._known:
                with _OWN_CODE():
                    self._forget_written(func, args, kwargs)
            return out
        try:
            out = func(*args, **kwargs)
        except Exception:
            with _OWN_CODE():
                answered, out = self._answer(func, args, kwargs, tensors, mirrors)
            if not answered:
                raise
            return out
        with _OWN_CODE():
            if not self._follow(func, args, kwargs, tensors, mirrors, out) and self._known:
                self._forget_written(func, args, kwargs)
        return out

    # -- which inputs have known values ------------------------------------------------------------
    def _mirrors(self, tensors: list[torch.Tensor]) -> Optional[list[torch.Tensor]]:
        """The CPU counterpart of each tensor input (a real tensor is its own), or None when one's
        values are unknown."""
        mirrors = []
        for t in tensors:
            if _without_data(t):
                found = self._known.get(t)
                if found is None:
                    return None
                mirrors.append(found[0])
            elif t.numel() <= LIMIT and not t.is_nested:
                mirrors.append(t)
            else:
                return None
        return mirrors

    def _on_mirrors(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict,
                    tensors: list[torch.Tensor], mirrors: list[torch.Tensor]) -> Any:
        """The operation run on the mirrors, on the CPU, out of every mode's sight."""
        swap = {id(t): m for t, m in zip(tensors, mirrors)}

        def mirrored(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return swap[id(value)]
            return _CPU if isinstance(value, torch.device) else value

        cpu_args, cpu_kwargs = tree_map(mirrored, (args, kwargs))
        with no_dispatch():
            out = func(*cpu_args, **cpu_kwargs)
            # a mirror is written to when its tensor is: never one of the real tensors themselves
            real = {_storage_key(t) for t in tensors if not _without_data(t)}
            if not real:
                return out
            return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) and _storage_key(v) in real else v,
                            out)

    # -- following a pass ----------------------------------------------------------------------------
    def _follow(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, tensors: list[torch.Tensor],
                mirrors: list[torch.Tensor], out: Any) -> bool:
        """Mirror the small outputs without data of an operation whose inputs are known; False when
        they get no mirror (a write to a known tensor then makes its mirror stale)."""
        outputs = list(iter_tensors(out))
        if not outputs or not all(_without_data(o) and o.numel() <= LIMIT for o in outputs) \
                or not _constant(func) or self._writes_real(func, args, kwargs):
            return False
        try:
            cpu = self._on_mirrors(func, args, kwargs, tensors, mirrors)
        except Exception:   # noqa: BLE001 - a kernel the CPU lacks (or refuses): no mirror
            return False
        cpu_outputs = list(iter_tensors(cpu))
        if len(cpu_outputs) != len(outputs) or any(c.shape != o.shape for c, o in zip(cpu_outputs, outputs)):
            return False
        for o, c in zip(outputs, cpu_outputs):
            self._known[o] = (c, _storage_key(o))
        return True

    def _answer(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict, tensors: list[torch.Tensor],
                mirrors: list[torch.Tensor]) -> tuple[bool, Any]:
        """``(True, result)`` of an operation that failed without data, from its known inputs
        (one that writes to its arguments returns them, so it is not answered with new tensors)."""
        like = next((t for t in tensors if _without_data(t)), None)
        if like is None or not _constant(func) or _written(func):
            return False, None
        try:
            cpu = self._on_mirrors(func, args, kwargs, tensors, mirrors)
        except Exception:   # noqa: BLE001 - the original error is the one to raise
            return False, None

        def without_data(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            # made under the dispatch modes below this one: a fake tensor in a fake pass
            made = torch.empty_strided(tuple(value.shape), tuple(value.stride()), dtype=value.dtype,
                                       device=like.device)
            if value.numel() <= LIMIT:
                self._known[made] = (value, _storage_key(made))
            return made

        return True, tree_map(without_data, cpu)

    @staticmethod
    def _writes_real(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> bool:
        """Whether the operation writes to a real tensor: its mirror would write to it again."""
        return any(not _without_data(t) for t in _written_tensors(func, args, kwargs))

    def _forget_written(self, func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> None:
        """Drop the mirrors of every tensor sharing a storage the operation wrote without them."""
        for t in _written_tensors(func, args, kwargs):
            if not _without_data(t):
                continue
            key = _storage_key(t)
            stale = [k for k, (_, storage) in self._known.items() if storage == key or k is t]
            for k in stale:
                del self._known[k]
