"""Profile: the counted calls of one or more forward passes, and queries over them."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from torch import nn

from ._call import Call
from ._capture import RawCall, Span
from ._counts import SUMMED, ZERO, Counts
from ._moe import MoE
from ._ranks import Collective, Ranks, local_numel
from ._storages import Storages

__all__ = ["Record", "ProfileData", "UnsupportedError", "UnsupportedWarning"]

Shape = tuple[int, ...]


# the name of what no record holds: in CSV and pandas rows, and in a time estimate
OUTSIDE = "(outside counted calls)"


class UnsupportedError(ValueError):
    """``strict=True`` and the model did work torchflops cannot count."""

    __module__ = "torchflops"   # tracebacks name the public path


class UnsupportedWarning(UserWarning):
    """The model did work torchflops cannot count; see ``Profile.unsupported``."""

    __module__ = "torchflops"


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
    if raw.scale != 1:
        counts = Counts(**{f: getattr(counts, f) * raw.scale for f in SUMMED})
    counts = counts.replace(bytes_read=raw.read, bytes_written=raw.written)
    if raw.module is not None:
        counts = counts.replace(params=_numel(raw.module.parameters()))
    # a nominal count names its convention in the record's type (``fft_rfft (2.5 N log2 N)``)
    convention = getattr(raw.formula, "convention", None)
    return Record(
        raw.name, f"{raw.type} ({convention})" if convention else raw.type,
        tuple(t.shape for t in inputs), tuple(t.shape for t in call.output_tensors()),
        tuple(t.needs_grad for t in inputs), counts, raw.saved, raw.output,
    )


def _numel(parameters: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)


class ProfileData:
    """What a model costs: one ``Record`` per counted call, totals and subtree queries.

    Data only; ``_render.Profile`` adds the views (tables, JSON, CSV, charts).
    """

    def __init__(self, model: nn.Module, raw: list[RawCall], spans: list[Span], *,
                 meta: Optional[dict[str, Any]] = None,
                 modules: Optional[list[tuple[str, nn.Module]]] = None,
                 moe: Sequence[tuple[str, nn.Module, MoE]] = (), storages: Optional[Storages] = None,
                 forward_exact: bool = True, replay: Optional[Callable[..., Storages]] = None,
                 ranks: Optional[Ranks] = None) -> None:
        self._model = model
        self._modules = dict(modules if modules is not None else model.named_modules())
        self._aliases: Optional[dict[str, nn.Module]] = None     # every name of every module
        self.meta: dict[str, Any] = dict(meta or {})
        # ``count``: replays a pass on stand-ins (a training step, or a forward the counted pass could
        # not follow exactly) and returns its storages
        self._replay = replay
        self._forward_exact = forward_exact
        self._load(raw, spans, moe, storages, ranks)

    def _load(self, raw: list[RawCall], spans: list[Span], moe: Sequence[tuple[str, nn.Module, MoE]] = (),
              storages: Optional[Storages] = None, ranks: Optional[Ranks] = None) -> None:
        """Apply the formulas to captured calls (``profile`` loads again when its block ends)."""
        self._ranks = ranks
        self._rank_records = [_record(r) for r in ranks.raw if r.formula is not None] if ranks else []
        self._rank_total: Optional[Counts] = None
        self._step_collectives: Optional[list[Collective]] = None
        self._storages = storages if storages is not None else Storages()
        self._memory: dict[Any, Any] = {}          # Memory by optimizer, made when asked
        counted = [_record(r) if r.formula is not None else None for r in raw]
        # functional elementwise calls (``x + y``, ``F.relu``) are kept apart, so that records and
        # tables are the same whether or not elementwise work is looked at
        self._ordered: list[Record] = [r for r in counted if r is not None]
        apart = {id(c) for c, r in zip(counted, raw) if c is not None and getattr(r.formula, "elementwise", False)}
        self.records: list[Record] = [r for r in self._ordered if id(r) not in apart]
        self.elementwise_records: list[Record] = [r for r in self._ordered if id(r) in apart]
        self._counted = counted
        self._calls: dict[str, Call] = {}
        self._spans: dict[int, list[Span]] = {}        # module id -> its calls
        for span in spans:          # spans come innermost first; keep each module's first call
            self._calls.setdefault(span.name, span.call)
            self._spans.setdefault(id(span.module), []).append(span)
        self._moved_total = (sum(s.read for s in spans if s.depth == 0),
                             sum(s.written for s in spans if s.depth == 0))
        self.unsupported: dict[str, int] = {}
        self._unsupported_in: dict[str, list[str]] = {}     # where each was called
        for r in list(raw) + (ranks.raw if ranks is not None else []):
            if r.formula is None:
                self.unsupported[r.type] = self.unsupported.get(r.type, 0) + 1
                places = self._unsupported_in.setdefault(r.type, [])
                if r.name not in places:
                    places.append(r.name)
        self._total: Optional[Counts] = None
        # experts a token does not use, once per mixture-of-experts module that was called
        self._inactive = sum(spec.inactive(module, self._calls[name]) for name, module, spec in moe
                             if name in self._calls)

    # -- totals ---------------------------------------------------------------------------------
    @property
    def total(self) -> Counts:
        """Everything counted; ``params`` are the model's unique parameters."""
        if self._total is None:
            work = sum((r.counts for r in self._ordered), ZERO)
            read, written = self._moved_total
            self._total = work.replace(params=_numel(self._model.parameters()),
                                       bytes_read=read, bytes_written=written)
        return self._total

    @property
    def outside_records(self) -> Counts:
        """What rows of records lack of the total: the bytes moved by work no record holds (a
        forward's own residual adds, concatenations) and the ``elementwise_records``' work."""
        held = sum((r.counts for r in self.records), ZERO)
        total = self.total
        return Counts(**{f: getattr(total, f) - getattr(held, f) for f in SUMMED if f != "params"})

    @property
    def active_params(self) -> int:
        """Parameters one token uses: every shared weight and ``top_k`` experts of each
        mixture-of-experts block (``total.params`` for a dense model)."""
        return self.total.params - self._inactive

    # -- one rank of a parallel plan -------------------------------------------------------------------
    @property
    def distributed(self) -> bool:
        """Whether the model ran with DTensor parameters (a parallel plan)."""
        return self._ranks is not None

    @property
    def rank_total(self) -> Counts:
        """What this rank computes on its local shards of a model with DTensor parameters: the
        local ATen operations DTensor runs (matmul-like work, pooling comparisons, the bytes of
        every local operation) and its local parameters. Elementwise work is counted on the
        logical model only (``total``). Equal to ``total``'s work for a model on one device."""
        if self._ranks is None:
            return self.total.replace(elementwise_flops=0)
        if self._rank_total is None:
            work = sum((r.counts for r in self._rank_records), ZERO)
            read = sum(m[0] for m in self._ranks.moved.values())
            written = sum(m[1] for m in self._ranks.moved.values())
            self._rank_total = work.replace(params=sum(map(local_numel, self._model.parameters())),
                                            bytes_read=read, bytes_written=written)
        return self._rank_total

    def rank_module(self, name: str) -> Counts:
        """``rank_total`` of the work inside module ``name`` (by qualified path), with its local
        parameters."""
        if not isinstance(name, str):
            raise TypeError(f"rank_module() takes a qualified module name (str), got {type(name).__name__}")
        if self._ranks is None:
            return self.module(name).replace(elementwise_flops=0)
        if name == "":
            return self.rank_total
        module = self._named(name)
        prefix = name + "."
        inside = lambda n: n == name or n.startswith(prefix)  # noqa: E731
        work = sum((r.counts for r in self._rank_records if inside(r.name)), ZERO)
        moved = [m for n, m in self._ranks.moved.items() if inside(n)]
        return work.replace(params=sum(map(local_numel, module.parameters())),
                            bytes_read=sum(m[0] for m in moved), bytes_written=sum(m[1] for m in moved))

    @property
    def collectives(self) -> list[Collective]:
        """The collectives of the counted forward, in order, as this rank joins them."""
        return list(self._ranks.collectives) if self._ranks is not None else []

    def step_collectives(self) -> list[Collective]:
        """The collectives of one training step, in order: forward, backward of the output's sum
        and the optimizer's step (``.phase``), from the step ``memory()`` replays (replayed here
        without an optimizer if it has not run: optimizers on sharded parameters communicate
        nothing). A profile of ``tf.profile`` has only its forward's."""
        if self._ranks is None:
            return []
        if self._step_collectives is None:
            if self._replay is None:
                return self.collectives
            self._step_collectives = self._replay(None, train=True).collectives
        return list(self._step_collectives)

    def module(self, name: str) -> Counts:
        """Counts of every call of the module at qualified ``name`` (``""`` is the whole model):
        the work done inside those calls, whoever made them. A module shared by several parents
        answers under each of its names with all its calls; each parent is credited with the
        calls made inside its own (fvcore's caller mode)."""
        if not isinstance(name, str):
            raise TypeError(f"module() takes a qualified module name (str), got {type(name).__name__}")
        if name == "":
            return self.total
        module = self._named(name)
        spans = self._spans.get(id(module), [])
        inside: set[int] = set()
        for span in spans:
            inside.update(range(span.start, span.end))
        # calls named by path without a call of the module around them (a graph module's nodes)
        prefix = name + "."
        inside.update(i for i, r in enumerate(self._counted)
                      if r is not None and (r.name == name or r.name.startswith(prefix)))
        work = sum((self._counted[i].counts for i in sorted(inside) if self._counted[i] is not None), ZERO)
        outermost = [s for s in spans if not any(o is not s and o.start <= s.start and s.end <= o.end
                                                 and o.depth < s.depth for o in spans)]
        return work.replace(params=_numel(module.parameters()),
                            bytes_read=sum(s.read for s in outermost),
                            bytes_written=sum(s.written for s in outermost))

    def _named(self, name: str) -> nn.Module:
        """The module at a qualified name, under any of its names."""
        found = self._modules.get(name)
        if found is not None:
            return found
        if self._aliases is None:
            self._aliases = dict(self._model.named_modules(remove_duplicate=False))
        found = self._aliases.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self._aliases), n=5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise KeyError(f"no module named {name!r} in {type(self._model).__name__}{hint}")
        return found

    # -- structure used by the renderers ----------------------------------------------------------
    @property
    def model_name(self) -> str:
        return type(self._model).__name__

    def module_type(self, name: str) -> str:
        if name == "":
            return self.model_name
        try:
            return type(self._named(name)).__name__
        except KeyError:
            return ""

    def own_params(self, name: str) -> int:
        """Parameters module ``name`` holds itself, not through its children."""
        module = self._named(name) if name else self._model
        return _numel(module.parameters(recurse=False))

    def module_shapes(self, name: str) -> tuple[tuple[Shape, ...], tuple[Shape, ...]]:
        """Input and output shapes of the first call of module ``name`` (empty if never called)."""
        call = self._calls.get(name)
        if call is None:
            return (), ()
        return tuple(t.shape for t in call.input_tensors()), tuple(t.shape for t in call.output_tensors())

    def children(self, name: str) -> list[str]:
        """Qualified names of the direct children of module ``name``, in registration order."""
        self.module(name)   # validates the name
        module = self._named(name) if name else self._model
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
            called_in = [repr(p) if p else "the model's own forward" for p in self._unsupported_in[name]]
            places = ", ".join(called_in[:3]) + (f" and {len(called_in) - 3} more" if len(called_in) > 3 else "")
            warnings.warn(
                f"torchflops: {name} has compute cost but no formula; its {n} call(s) (in {places}) "
                f"were not counted. "
                f"Pass formulas={{{key}: fn}} or register one.", UnsupportedWarning, stacklevel=3)
