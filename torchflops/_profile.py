"""Profile: the counted calls of one or more forward passes, and queries over them."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from torch import nn

from ._call import Call
from ._capture import RawCall, Span
from ._counts import ZERO, Counts
from ._storages import Storages

__all__ = ["Record", "ProfileData", "UnsupportedError", "UnsupportedWarning"]

Shape = tuple[int, ...]


class UnsupportedError(ValueError):
    """``strict=True`` and the model did work torchflops cannot count."""


class UnsupportedWarning(UserWarning):
    """The model did work torchflops cannot count; see ``Profile.unsupported``."""


@dataclass(frozen=True)
class Record:
    """One counted call, in call order."""

    name: str                           # qualified module name (functional call: the enclosing module)
    type: str                           # class name, or function name
    input_shapes: tuple[Shape, ...]     # every tensor argument, nested ones included, in order
    output_shapes: tuple[Shape, ...]
    input_needs_grad: tuple[bool, ...]  # per input tensor: would autograd need its gradient
    counts: Counts
    saved_bytes: int = 0                # storages autograd saved first in this call
    output_bytes: int = 0               # bytes its outputs span


def _record(raw: RawCall) -> Record:
    call = raw.call
    inputs = call.input_tensors()
    counts = raw.formula(raw.module, call) if raw.module is not None else raw.formula(call)
    counts = counts.replace(bytes_read=raw.read, bytes_written=raw.written)
    if raw.module is not None:
        counts = counts.replace(params=_numel(raw.module.parameters()))
    return Record(
        raw.name, raw.type,
        tuple(t.shape for t in inputs), tuple(t.shape for t in call.output_tensors()),
        tuple(t.needs_grad for t in inputs), counts, raw.saved, raw.output,
    )


def _numel(parameters: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)


def _inside(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


class ProfileData:
    """What a model costs: one ``Record`` per counted call, totals and subtree queries.

    Data only; ``_render.Profile`` adds the views (tables, JSON, CSV, charts).
    """

    def __init__(self, model: nn.Module, raw: list[RawCall], spans: list[Span], *,
                 meta: Optional[dict[str, Any]] = None,
                 modules: Optional[list[tuple[str, nn.Module]]] = None, storages: Optional[Storages] = None,
                 forward_exact: bool = True, replay: Optional[Callable[..., Storages]] = None) -> None:
        self._model = model
        self._modules = dict(modules if modules is not None else model.named_modules())
        self.meta: dict[str, Any] = dict(meta or {})
        # ``count``: replays a pass on stand-ins (a training step, or a forward the counted pass could
        # not follow exactly) and returns its storages
        self._replay = replay
        self._forward_exact = forward_exact
        self._load(raw, spans, storages)

    def _load(self, raw: list[RawCall], spans: list[Span], storages: Optional[Storages] = None) -> None:
        """Apply the formulas to captured calls (``profile`` loads again when its block ends)."""
        self._storages = storages if storages is not None else Storages()
        self._memory: dict[Any, Any] = {}          # Memory by optimizer, made when asked
        counted = [_record(r) if r.formula is not None else None for r in raw]
        self.records: list[Record] = [r for r in counted if r is not None]
        self._calls: dict[str, Call] = {}
        self._moved: dict[str, tuple[int, int]] = {}    # module name -> bytes read, written by its calls
        for span in spans:          # spans come innermost first; keep each module's first call
            self._calls.setdefault(span.name, span.call)
            read, written = self._moved.get(span.name, (0, 0))
            self._moved[span.name] = (read + span.read, written + span.written)
        self._moved_total = (sum(s.read for s in spans if s.depth == 0),
                             sum(s.written for s in spans if s.depth == 0))
        self.unsupported: dict[str, int] = {}
        self._unsupported_in: dict[str, list[str]] = {}     # where each was called
        for r in raw:
            if r.formula is None:
                self.unsupported[r.type] = self.unsupported.get(r.type, 0) + 1
                places = self._unsupported_in.setdefault(r.type, [])
                if r.name not in places:
                    places.append(r.name)
        self._total: Optional[Counts] = None

    # -- totals ---------------------------------------------------------------------------------
    @property
    def total(self) -> Counts:
        """Everything counted; ``params`` are the model's unique parameters."""
        if self._total is None:
            work = sum((r.counts for r in self.records), ZERO)
            read, written = self._moved_total
            self._total = work.replace(params=_numel(self._model.parameters()),
                                       bytes_read=read, bytes_written=written)
        return self._total

    def module(self, name: str) -> Counts:
        """Counts of the subtree at qualified ``name`` (``""`` is the whole model)."""
        if not isinstance(name, str):
            raise TypeError(f"module() takes a qualified module name (str), got {type(name).__name__}")
        if name == "":
            return self.total
        if name not in self._modules:
            close = difflib.get_close_matches(name, list(self._modules), n=5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise KeyError(f"no module named {name!r} in {type(self._model).__name__}{hint}")
        work = sum((r.counts for r in self.records if _inside(r.name, name)), ZERO)
        read, written = self._moved.get(name, (0, 0))
        return work.replace(params=_numel(self._modules[name].parameters()),
                            bytes_read=read, bytes_written=written)

    # -- structure used by the renderers ----------------------------------------------------------
    @property
    def model_name(self) -> str:
        return type(self._model).__name__

    def module_type(self, name: str) -> str:
        module = self._modules.get(name)
        return type(module).__name__ if module is not None else ""

    def module_shapes(self, name: str) -> tuple[tuple[Shape, ...], tuple[Shape, ...]]:
        """Input and output shapes of the first call of module ``name`` (empty if never called)."""
        call = self._calls.get(name)
        if call is None:
            return (), ()
        return tuple(t.shape for t in call.input_tensors()), tuple(t.shape for t in call.output_tensors())

    def children(self, name: str) -> list[str]:
        """Qualified names of the direct children of module ``name``, in registration order."""
        self.module(name)   # validates the name
        module = self._modules[name] if name else self._model
        prefix = f"{name}." if name else ""
        return [prefix + child for child, _ in module.named_children()]

    def __repr__(self) -> str:
        t = self.total
        return (f"<Profile {self.model_name}: {len(self.records)} records, macs={t.macs:,}, "
                f"comparisons={t.comparisons:,}, params={t.params:,}>")

    # -- unsupported work -------------------------------------------------------------------------
    def check_unsupported(self, strict: bool) -> None:
        """Raise under ``strict``, else warn once per unsupported name."""
        if not self.unsupported:
            return
        listed = ", ".join(f"{name} ({n} call{'s' if n != 1 else ''})" for name, n in self.unsupported.items())
        if strict:
            raise UnsupportedError(f"torchflops cannot count: {listed} (strict=True)")
        for name, n in self.unsupported.items():
            key = repr(name) if "::" in name else name      # an operator is named by its string
            places = ", ".join(repr(p) if p else "the model's own forward" for p in self._unsupported_in[name])
            warnings.warn(
                f"torchflops: {name} has compute cost but no formula; its {n} call(s) (in {places}) "
                f"were not counted. "
                f"Pass formulas={{{key}: fn}} or register one.", UnsupportedWarning, stacklevel=3)
