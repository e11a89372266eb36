"""Capture: the storages a pass makes, how long they live, and which ones autograd saves.

Facts only, in bytes of storage (``untyped_storage().nbytes()``; a view adds nothing to the
storage it looks into). ``Storages`` is fed by the session: every ATen operation's outputs (new
storages appear there), the tensors the pass starts with (parameters, buffers, inputs, optimizer
state), and autograd's pack hook (``torch.autograd.graph.saved_tensors_hooks``), which sees each
tensor an operation saves for backward. A storage is followed by a weak reference whose callback
says when its last tensor went away, so live bytes rise and fall as in the pass itself, and the
peak is taken after each operation, as ``MemTracker`` takes it.

In a pass nobody runs backward on (``count``), the session's pack hook keeps a placeholder instead
of the tensor: autograd then keeps no storage alive, and the live bytes are those of a ``no_grad``
forward.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterable

import torch

__all__ = ["Storages", "storage_of"]


def storage_of(t: torch.Tensor) -> Any:
    """The tensor's storage, or None for a tensor without one (sparse, nested)."""
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None


class Storages:
    """Live and saved storages of one pass (or of several passes of one ``profile`` block)."""

    def __init__(self) -> None:
        self.live = 0                # bytes of storages alive now
        self.peak = 0                # the most alive after any operation
        self.saved = 0               # bytes of distinct storages autograd saved (persistent excluded)
        self._alive: dict[int, tuple[weakref.ref, int]] = {}
        self._saved: dict[int, weakref.ref] = {}
        self._persistent: set[int] = set()     # parameters and buffers: never counted as saved

    # -- what the pass starts with ----------------------------------------------------------------
    def hold(self, tensors: Iterable[torch.Tensor], persistent: bool = False) -> None:
        """Tensors alive before the pass: parameters and buffers (``persistent``), inputs, state."""
        for t in tensors:
            storage = storage_of(t)
            if storage is None:
                continue
            self._track(storage)
            if persistent:
                self._persistent.add(id(storage))
        self.peak = max(self.peak, self.live)

    # -- what the pass makes ----------------------------------------------------------------------
    def outputs(self, tensors: list[torch.Tensor]) -> None:
        for t in tensors:
            storage = storage_of(t)
            if storage is not None:
                self._track(storage)
        if self.live > self.peak:
            self.peak = self.live

    def _track(self, storage: Any) -> int:
        key = id(storage)
        known = self._alive.get(key)
        if known is not None and known[0]() is storage:
            return 0
        size = storage.nbytes()
        self._alive[key] = (weakref.ref(storage, self._freed(key, size)), size)
        self.live += size
        return size

    def _freed(self, key: int, size: int):
        def callback(ref: weakref.ref) -> None:
            known = self._alive.get(key)
            if known is not None and known[0] is ref:
                del self._alive[key]
            self.live -= size
        return callback

    # -- what autograd saves ----------------------------------------------------------------------
    def save(self, t: torch.Tensor) -> int:
        """A tensor autograd saves: the bytes of its storage the first time that storage is saved."""
        storage = storage_of(t)
        if storage is None or id(storage) in self._persistent:
            return 0
        known = self._saved.get(id(storage))
        if known is not None and known() is storage:
            return 0
        self._saved[id(storage)] = weakref.ref(storage)
        size = storage.nbytes()
        self.saved += size
        return size
