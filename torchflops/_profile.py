"""Profile: the counted calls of one or more forward passes, and queries over them."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
from torch import nn

from ._call import Call
from ._capture import RawCall, Span
from ._counts import ZERO, Counts

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


def _record(raw: RawCall) -> Record:
    call = raw.call
    inputs = call.input_tensors()
    counts = raw.formula(raw.module, call) if raw.module is not None else raw.formula(call)
    if raw.module is not None:
        counts = counts.replace(params=_numel(raw.module.parameters()))
    # a nominal count names its convention in the record's type (``fft_rfft (2.5 N log2 N)``)
    convention = getattr(raw.formula, "convention", None)
    return Record(
        raw.name, f"{raw.type} ({convention})" if convention else raw.type,
        tuple(t.shape for t in inputs), tuple(t.shape for t in call.output_tensors()),
        tuple(t.needs_grad for t in inputs), counts,
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
                 modules: Optional[list[tuple[str, nn.Module]]] = None) -> None:
        self._model = model
        self._modules = dict(modules if modules is not None else model.named_modules())
        self.meta: dict[str, Any] = dict(meta or {})
        self._load(raw, spans)

    def _load(self, raw: list[RawCall], spans: list[Span]) -> None:
        """Apply the formulas to captured calls (``profile`` loads again when its block ends)."""
        counted = [_record(r) if r.formula is not None else None for r in raw]
        # functional elementwise calls (``x + y``, ``F.relu``) are kept apart, so that records and
        # tables are the same whether or not elementwise work is looked at
        self._ordered: list[Record] = [r for r in counted if r is not None]
        apart = {id(c) for c, r in zip(counted, raw) if c is not None and getattr(r.formula, "elementwise", False)}
        self.records: list[Record] = [r for r in self._ordered if id(r) not in apart]
        self.elementwise_records: list[Record] = [r for r in self._ordered if id(r) in apart]
        self._calls: dict[str, Call] = {}
        for span in spans:          # spans come innermost first; keep each module's first call
            self._calls.setdefault(span.name, span.call)
        self.unsupported: dict[str, int]
        self.unsupported, self._unknown_calls, unknown = _unsupported(spans, counted)
        self._unknown_functions = set(unknown)
        for name, n in unknown.items():
            self.unsupported[name] = self.unsupported.get(name, 0) + n
        uncounted = [r.type for r in raw if r.formula is None]
        self._unsupported_functions = set(uncounted)
        for name in uncounted:
            self.unsupported[name] = self.unsupported.get(name, 0) + 1
        self._total: Optional[Counts] = None

    # -- totals ---------------------------------------------------------------------------------
    @property
    def total(self) -> Counts:
        """Everything counted; ``params`` are the model's unique parameters."""
        if self._total is None:
            work = sum((r.counts for r in self._ordered), ZERO)
            self._total = work.replace(params=_numel(self._model.parameters()))
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
        work = sum((r.counts for r in self._ordered if _inside(r.name, name)), ZERO)
        return work.replace(params=_numel(self._modules[name].parameters()))

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
            if name in self._unsupported_functions:
                what = "is a function with compute cost but no formula"
            elif name in self._unknown_functions:
                what = "is a call torchflops neither counts nor knows to cost nothing"
            elif self._unknown_calls.get(name):
                what = (f"has parameters, no formula, and calls torchflops cannot count "
                        f"({', '.join(sorted(self._unknown_calls[name]))})")
            else:
                what = "runs as TorchScript, out of torchflops' sight"
            warnings.warn(
                f"torchflops: {name} {what}; its {n} call(s) were not counted. "
                f"Pass formulas={{{name}: fn}} or register one.", UnsupportedWarning, stacklevel=3)


def _unsupported(spans: list[Span], counted: list[Optional[Record]]
                 ) -> tuple[dict[str, int], dict[str, set[str]], dict[str, int]]:
    """What was seen and not counted: modules (calls per kind, and the names of the unknown calls
    per kind), and the unknown calls made anywhere else (calls per function name).

    A module is reported when it has its own parameters and no formula, its call produced no
    counted work, and it made calls torchflops cannot count (or ran as TorchScript, out of
    sight). Its unknown calls are reported with it; those of any other module (one that did
    counted work too, or has no parameters) are reported by function name.
    ``counted`` is aligned with the raw calls the spans index (None: an uncounted function).
    """
    found: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    functions: dict[str, int] = {}
    for span in spans:
        if span.claimed:
            continue
        if _module_unsupported(span, counted):
            kind = _kind(span.module)
            found[kind] = found.get(kind, 0) + 1
            calls.setdefault(kind, set()).update(span.unknown)
            continue
        for name, n in span.unknown.items():
            functions[name] = functions.get(name, 0) + n
    return found, calls, functions


def _module_unsupported(span: Span, counted: list[Optional[Record]]) -> bool:
    if not _has_own_parameters(span.module):
        return False
    if any(r is not None and _does_work(r.counts) for r in counted[span.start:span.end]):
        return False
    # everything its own forward did is known to cost nothing we count, unless out of sight
    return bool(span.unknown) or isinstance(span.module, torch.jit.ScriptModule)


def _kind(module: nn.Module) -> str:
    if isinstance(module, torch.jit.ScriptModule):
        return f"{module.original_name} (TorchScript)"
    return type(module).__name__


def _has_own_parameters(module: nn.Module) -> bool:
    # a TorchScript module's children are out of sight: its parameters are all its own
    recurse = isinstance(module, torch.jit.ScriptModule)
    return next(iter(module.parameters(recurse=recurse)), None) is not None


def _does_work(counts: Counts) -> bool:
    return bool(counts.macs or counts.comparisons)
