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
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from ._sharded import local

__all__ = ["Storages", "storage_of"]


def storage_of(t: torch.Tensor) -> Any:
    """The tensor's storage, or None for a tensor without one (sparse, nested); a DTensor's is
    its local shard's, what this rank holds."""
    try:
        return local(t).untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None


class Storages:
    """Live and saved storages of one pass (or of several passes of one ``profile`` block)."""

    def __init__(self) -> None:
        # FSDP frees and re-allocates its unsharded parameters in place (``storage.resize_``),
        # which no operation announces: when set, this gives the tensors whose storages may be
        # resized so, and their sizes are read again after each operation
        self.resizable: Optional[Callable[[], Iterable[torch.Tensor]]] = None
        self.live = 0                # bytes of storages alive now
        self.peak = 0                # the most alive after any operation
        self.saved = 0               # bytes of distinct storages autograd saved (persistent excluded)
        self._alive: dict[int, list] = {}      # id -> [weak reference, bytes counted]
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
        if self.resizable is not None:
            self._measure(self.resizable())
        if self.live > self.peak:
            self.peak = self.live

    def _track(self, storage: Any) -> int:
        key = id(storage)
        known = self._alive.get(key)
        if known is not None and known[0]() is storage:
            return 0
        entry = [None, storage.nbytes()]
        entry[0] = weakref.ref(storage, self._freed(key, entry))
        self._alive[key] = entry
        self.live += entry[1]
        return entry[1]

    def _freed(self, key: int, entry: list):
        def callback(ref: weakref.ref) -> None:
            if self._alive.get(key) is entry:
                del self._alive[key]
            self.live -= entry[1]
        return callback

    def _measure(self, tensors: Iterable[torch.Tensor]) -> None:
        for t in tensors:
            storage = t.untyped_storage()
            entry = self._alive.get(id(storage))
            if entry is not None and entry[0]() is storage and storage.nbytes() != entry[1]:
                self.live += storage.nbytes() - entry[1]
                entry[1] = storage.nbytes()

    # -- what autograd saves ----------------------------------------------------------------------
    def save(self, t: torch.Tensor) -> int:
        """A tensor autograd saves: the bytes of its storage the first time that storage is saved."""
        storage = storage_of(t)
        if storage is None or id(storage) in self._persistent or _parameter(t):
            return 0
        known = self._saved.get(id(storage))
        if known is not None and known() is storage:
            return 0
        self._saved[id(storage)] = weakref.ref(storage)
        size = storage.nbytes()
        self.saved += size
        return size


def _parameter(t: torch.Tensor) -> bool:
    """A parameter or a view of one. FSDP's unsharded parameters are made during the pass, after
    the parameters the pass starts with are held, and are parameters all the same."""
    return isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter)
