"""Render a profile: text tables (tabulate), the branch breakdown, dict/JSON/CSV; the public ``Profile``."""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from tabulate import tabulate, tabulate_formats

from ._counts import FIELDS, ZERO, Counts
from ._display import Displayable, Shown, Table
from ._profile import OUTSIDE, ProfileData, Record, Shape
from ._ranks import Collective

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from ._memory import Memory

__all__ = ["Profile", "human", "table", "branches", "to_dict", "to_json", "to_csv", "FORMATS",
           "trainable_params"]

# "markdown" is our name for tabulate's GitHub-flavoured pipe table.
_ALIASES = {"markdown": "github"}
FORMATS = tuple(sorted(set(tabulate_formats) | set(_ALIASES)))
_UNITS = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3))


def human(n: int) -> str:
    """``1498376192`` -> ``'1.50 G'``; below a thousand, the integer itself."""
    for unit, scale in _UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


_BINARY = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def binary(n: int) -> str:
    """``1572864`` -> ``'1.50 MiB'`` (binary units); below a KiB, bytes: ``'512 B'``."""
    for unit, scale in _BINARY:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _shapes_text(shapes: Iterable[Shape]) -> str:
    return ", ".join("x".join(map(str, s)) if s else "scalar" for s in shapes)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


@dataclass(frozen=True)
class _Row:
    name: str
    type: str
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    counts: Counts
    saved: int = 0          # bytes autograd saved first in these calls


def _ancestor(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth]) if name else name


def rows(profile: ProfileData, depth: Optional[int] = None, elementwise: bool = False) -> list[_Row]:
    """One row per record, or with ``depth``, records below that depth folded into their ancestor.

    A row of a module's own functional call is named after the module, typed ``Module (function)``
    and carries the module's own parameters (on its first such row); a row of several calls of
    one module carries its parameters once. ``elementwise=True`` takes the functional elementwise
    records too, in call order.
    """
    records = profile._ordered if elementwise else profile.records
    if depth is None:
        out, seen = [], set()
        for r in records:
            module_type = profile.module_type(r.name)
            counts = r.counts
            kind = r.type
            if module_type and r.type != module_type:      # a functional call inside the module
                kind = f"{module_type} ({r.type})"
                counts = counts.replace(params=0 if r.name in seen else profile.own_params(r.name))
                seen.add(r.name)
            out.append(_Row(r.name, kind, r.input_shapes, r.output_shapes, counts, r.saved_bytes))
        return out
    own: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        key = _ancestor(r.name, depth)
        # a record at or above the fold depth stays its own row (per type: a module's own
        # functional calls are not mixed with its children)
        own.setdefault((key, r.type) if key == r.name else (key, ""), []).append(r)
    out = []
    for (key, kind), group in own.items():
        work = sum((r.counts for r in group), ZERO)
        saved = sum(r.saved_bytes for r in group)
        if kind:
            first = group[0]
            module_type = profile.module_type(key)
            if kind == module_type:
                params = profile.module(key).params
            else:
                kind, params = (f"{module_type} ({kind})" if module_type else kind), profile.own_params(key)
            out.append(_Row(key, kind, first.input_shapes, first.output_shapes, work.replace(params=params), saved))
        else:
            inputs, outputs = profile.module_shapes(key)
            out.append(_Row(key, profile.module_type(key), inputs, outputs,
                            work.replace(params=profile.module(key).params), saved))
    return out


def _check_fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown fmt {fmt!r}; expected one of: {', '.join(FORMATS)}")
    return _ALIASES.get(fmt, fmt)


def _check_count(value: Optional[int], what: str, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum} or None, got {value!r}")


_HEADERS = ("module", "type", "input shape", "output shape", "params", "MACs", "FLOPs",
            "backward FLOPs", "comparisons", "share")
_BACKWARD = _HEADERS.index("backward FLOPs")
_ELEMENTWISE = _HEADERS.index("comparisons") + 1


def table(profile: ProfileData, depth: Optional[int] = None, fmt: str = "simple",
          top: Optional[int] = None, backward: bool = True, elementwise: bool = False,
          saved: bool = False) -> str:
    """A per-module table in human units; its rows add up to the total row.

    ``backward=False`` leaves out the backward FLOPs column (inference-only reports);
    ``elementwise=True`` adds an elementwise FLOPs column, and rows for functional elementwise calls;
    ``saved=True`` adds the bytes autograd saves for backward (binary units; a storage belongs to
    the first call that saved it).
    """
    tab_fmt = _check_fmt(fmt)
    for flag, value in (("backward", backward), ("elementwise", elementwise), ("saved", saved)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    _check_count(depth, "depth", 0)
    _check_count(top, "top", 1)
    total = profile.total
    # at depth 0 everything folds into the model, which is the total row itself
    body = rows(profile, depth, elementwise) if depth != 0 else []
    rest: list[_Row] = []
    if top is not None and len(body) > top:
        ranked = sorted(body, key=lambda r: (r.counts.macs, r.counts.comparisons), reverse=True)
        kept = {id(r) for r in ranked[:top]}
        rest = [r for r in body if id(r) not in kept]
        body = [r for r in body if id(r) in kept]

    def columns(cells: list[str], elementwise_cell: str, saved_cell: str) -> list[str]:
        if elementwise:
            cells = cells[:_ELEMENTWISE] + [elementwise_cell] + cells[_ELEMENTWISE:]
        cells = cells if backward else cells[:_BACKWARD] + cells[_BACKWARD + 1:]
        return cells + [saved_cell] if saved else cells

    def line(name: str, kind: str, inputs: str, outputs: str, c: Counts, kept: int) -> list[str]:
        cells = [name, kind, inputs, outputs, human(c.params), human(c.macs), human(c.flops),
                 human(c.backward_flops), human(c.comparisons), _share(c.macs, total.macs)]
        return columns(cells, human(c.elementwise_flops), binary(kept))

    out = [line(r.name or "(model)", r.type, _shapes_text(r.input_shapes), _shapes_text(r.output_shapes),
                r.counts, r.saved) for r in body]
    if rest:
        other = sum((r.counts for r in rest), ZERO)
        out.append(line(f"({len(rest)} more row{'s' if len(rest) != 1 else ''})", "", "", "", other,
                        sum(r.saved for r in rest)))
    inputs, outputs = profile.module_shapes("")
    out.append(line("total", profile.model_name, _shapes_text(inputs), _shapes_text(outputs), total,
                    sum(r.saved_bytes for r in profile.records)))
    headers = columns(list(_HEADERS), "elementwise FLOPs", "saved (binary)")
    listed = sum(r.counts.params for r in body + rest)
    note = (f"\nparams: rows repeat parameters that are tied or whose module runs more than once "
            f"({human(listed)} in all); the total counts each once" if listed > total.params else "")
    if profile.unsupported:
        listed = ", ".join(f"{name} x{n}" for name, n in profile.unsupported.items())
        out.append([f"uncounted: {listed}"] + [""] * (len(headers) - 1))
    text = tabulate(out, headers=headers, tablefmt=tab_fmt, disable_numparse=True) + note
    frozen = total.params - trainable_params(profile)
    if frozen:
        # torchinfo's footer; absent when every parameter trains
        text += f"\nfrozen params: {human(frozen)} of {human(total.params)} ({human(total.params - frozen)} trainable)"
    if profile.active_params != total.params:
        # below the table, so the module column keeps its width
        text += (f"\nactive params: {human(profile.active_params)} of {human(total.params)} "
                 f"({profile.active_params:,} of {total.params:,}: shared weights and top_k experts per token)")
    return Table(text, headers, out)


def trainable_params(profile: ProfileData) -> int:
    """Unique parameters of the model with ``requires_grad`` (a tied one counts once)."""
    return sum(p.numel() for p in profile._model.parameters() if p.requires_grad)


def branches(profile: ProfileData, name: str) -> str:
    """The direct children of ``name`` (and its own functional calls) with exact MACs and share."""
    parent = profile.module(name)
    lines = []
    for child in profile.children(name):
        lines.append([child.rsplit(".", 1)[-1], profile.module_type(child),
                      f"{profile.module(child).macs:,}", _share(profile.module(child).macs, parent.macs)])
    own: dict[str, int] = {}
    for r in profile.records:
        if r.name == name and r.type != profile.module_type(name):
            own[r.type] = own.get(r.type, 0) + r.counts.macs
    for kind, macs in own.items():
        lines.append([f"({kind})", "function", f"{macs:,}", _share(macs, parent.macs)])
    lines.append(["total", profile.module_type(name) or profile.model_name, f"{parent.macs:,}",
                  _share(parent.macs, parent.macs)])
    return tabulate(lines, headers=("branch", "type", "MACs", "share"), disable_numparse=True,
                    colalign=("left", "left", "right", "right"))


def _record_dict(r: Record) -> dict[str, Any]:
    return {
        "name": r.name, "type": r.type,
        "input_shapes": [list(s) for s in r.input_shapes],
        "output_shapes": [list(s) for s in r.output_shapes],
        "input_needs_grad": list(r.input_needs_grad),
        **r.counts.as_dict(),
        "saved_bytes": r.saved_bytes, "output_bytes": r.output_bytes,
    }


def to_dict(profile: ProfileData) -> dict[str, Any]:
    """Exact integers: one entry per record, the total, what was not counted, and metadata."""
    from . import __version__
    return {
        "model": profile.model_name,
        "torchflops": __version__,
        **profile.meta,
        "records": [_record_dict(r) for r in profile.records],
        "elementwise_records": [_record_dict(r) for r in profile.elementwise_records],
        "total": profile.total.as_dict(),
        "active_params": profile.active_params,
        "unsupported": dict(profile.unsupported),
        **({"rank_total": profile.rank_total.as_dict(),
            "collectives": [_collective_dict(c) for c in profile.collectives]} if profile.distributed else {}),
    }


def _collective_dict(c: Collective) -> dict[str, Any]:
    return {"kind": c.kind, "module": c.module, "bytes": c.bytes, "group_size": c.group_size,
            "dtype": str(c.dtype).removeprefix("torch."), "shape": list(c.shape), "op": c.op}


def to_json(profile: ProfileData, indent: Optional[int] = 2) -> str:
    return json.dumps(to_dict(profile), indent=indent)


_RECORD_BYTES = ("saved_bytes", "output_bytes")


def to_csv(profile: ProfileData) -> str:
    """One row per record, then a ``total`` row; exact integers.

    The first column, ``row``, says which is which (``record``, ``other`` or ``total``), so that
    the work columns of the ``record`` rows and the ``other`` row sum to the ``total`` row
    (``params`` are each record's module's own, repeated per call, as in ``records``). The
    ``other`` row, when there is one, holds the bytes of work no record holds.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("row", "name", "type", "input_shapes", "output_shapes") + FIELDS + _RECORD_BYTES)
    for r in profile.records:
        writer.writerow(("record", r.name, r.type, _shapes_text(r.input_shapes), _shapes_text(r.output_shapes))
                        + tuple(getattr(r.counts, f) for f in FIELDS) + (r.saved_bytes, r.output_bytes))
    other = profile.outside_records
    if other != ZERO:
        writer.writerow(("other", OUTSIDE, "", "", "") + tuple(getattr(other, f) for f in FIELDS) + (0, ""))
    total = profile.total
    writer.writerow(("total", "total", profile.model_name, "", "") + tuple(getattr(total, f) for f in FIELDS)
                    + (sum(r.saved_bytes for r in profile.records), ""))
    return buffer.getvalue()


_MEMORY_LINES = (("params", "parameters"), ("buffers", "buffers"), ("gradients", "gradients"),
                 ("optimizer_state", "optimizer state"), ("activations", "activations (saved for backward)"),
                 ("peak_inference", "peak, inference (no_grad forward)"),
                 ("peak_training", "peak, training step"))


def memory_summary(profile: ProfileData, memory: "Memory", optimizer: Optional[str]) -> str:
    """The memory figures, exact bytes and binary units (KiB = 1024 B), and why activations are 0."""
    rows = [[label, f"{getattr(memory, field):,}", binary(getattr(memory, field))]
            for field, label in _MEMORY_LINES]
    text = tabulate(rows, headers=(f"memory (optimizer: {optimizer or 'none'})", "bytes",
                                   "binary units (KiB = 1024 B)"),
                    disable_numparse=True, colalign=("left", "right", "right"))
    if memory.activations == 0:
        text += ("\nactivations are 0: nothing in the pass needs a gradient (no parameter trains and "
                 "no input requires grad), so autograd saves nothing for backward")
    return text


class Profile(Displayable, ProfileData):
    """What a model costs: ``records``, ``total``, ``module(name)``, ``unsupported`` and their views.

    In a notebook a profile shows itself: its totals and its depth-1 table.
    """

    @property
    def trainable_params(self) -> int:
        """Unique parameters with ``requires_grad``; ``total.params - trainable_params`` are frozen."""
        return trainable_params(self)

    def _summary(self) -> str:
        t = self.total
        return (f"Profile {self.model_name}: {human(t.macs)} MACs, {human(t.params)} params, "
                f"{len(self.records)} records")

    def _shown(self) -> Shown:
        t = self.total
        inputs, outputs = self.module_shapes("")
        frozen = t.params - self.trainable_params
        facts = [("input", _shapes_text(inputs) or "-"), ("output", _shapes_text(outputs) or "-"),
                 ("MACs", f"{t.macs:,}"), ("FLOPs", f"{t.flops:,}"),
                 ("backward FLOPs", f"{t.backward_flops:,}"), ("comparisons", f"{t.comparisons:,}"),
                 ("params", f"{t.params:,} ({t.params - frozen:,} trainable, {frozen:,} frozen)")]
        if self.unsupported:
            facts.append(("uncounted", ", ".join(f"{n} x{k}" for n, k in self.unsupported.items())))
        body = rows(self, depth=1)
        headers = ("module", "type", "output shape", "params", "MACs", "backward FLOPs", "comparisons", "share")
        cells, exact = [], []
        for r in body:
            c = r.counts
            cells.append((r.name or "(model)", r.type, _shapes_text(r.output_shapes), human(c.params),
                          human(c.macs), human(c.backward_flops), human(c.comparisons), _share(c.macs, t.macs)))
            exact.append((None, None, None, f"{c.params:,}", f"{c.macs:,}", f"{c.backward_flops:,}",
                          f"{c.comparisons:,}", None))
        return Shown(f"{self.model_name}: {human(t.macs)} MACs, {human(t.params)} params", tuple(facts),
                     headers, tuple(cells), tuple(exact))

    def table(self, depth: Optional[int] = None, fmt: str = "simple", top: Optional[int] = None,
              backward: bool = True, elementwise: bool = False, saved: bool = False) -> str:
        """Per-module table; ``depth`` folds deeper modules into their ancestor, ``top`` keeps K rows,
        ``backward=False`` leaves out the backward FLOPs column, ``elementwise=True`` adds the
        elementwise FLOPs column (and rows for functional elementwise calls), ``saved=True`` the
        bytes autograd saves for backward."""
        return table(self, depth=depth, fmt=fmt, top=top, backward=backward, elementwise=elementwise,
                     saved=saved)

    def branches(self, name: str) -> str:
        """The direct children of module ``name`` with their MACs and share of the parent."""
        return branches(self, name)

    def plot(self, path: Union[str, "os.PathLike[str]"], depth: Optional[int] = None, top: int = 15,
             metric: str = "macs") -> None:
        """PNG bar chart of the ``top`` modules by ``metric`` (needs ``pip install torchflops[plot]``)."""
        from ._plot import plot
        plot(self, path, depth=depth, top=top, metric=metric)

    def plot_branches(self, path: Union[str, "os.PathLike[str]"], name: str) -> None:
        """PNG of module ``name``'s children: their share of each metric and their MACs by layer."""
        from ._plot import plot_branches
        plot_branches(self, path, name)

    def estimate_time(self, hardware: Any, dtype: Any = None, efficiency: float = 1.0) -> Any:
        """Roofline time per record on ``hardware``: ``max(flops / (peak * efficiency),
        (bytes_read + bytes_written) / (bandwidth * efficiency))``; an ``Estimate``."""
        from ._roofline import estimate
        return estimate(self, hardware, dtype=dtype, efficiency=efficiency)

    def plot_roofline(self, path: Union[str, "os.PathLike[str]"], hardware: Any, dtype: Any = None) -> None:
        """PNG roofline: records as points (intensity, FLOP/s: measured where timed, else estimated)
        under the hardware's compute and bandwidth ceilings."""
        from ._plot import plot_roofline
        plot_roofline(self, path, hardware, dtype=dtype)

    def memory(self, optimizer: Union[None, str, type] = None) -> "Memory":
        """Bytes the model needs: parameters, buffers, gradients, optimizer state, activations and
        the peaks of inference and of a training step with ``optimizer`` ("sgd", "momentum",
        "adam", "adamw" or a ``torch.optim`` class)."""
        from ._memory import memory
        return memory(self, optimizer)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self, indent: Optional[int] = 2) -> str:
        return to_json(self, indent=indent)

    def to_csv(self) -> str:
        return to_csv(self)

    def to_pandas(self, depth: Optional[int] = None) -> "pandas.DataFrame":
        """A ``pandas.DataFrame``, one row per record (or per module folded at ``depth``), int64
        count columns that sum to ``total`` (needs ``pip install torchflops[pandas]``)."""
        from ._frame import to_pandas
        return to_pandas(self, depth=depth)

    def to_html(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write one self-contained HTML report (no network fetches): the summary, a sortable
        per-module table with depth folding, and an icicle chart of where the cost goes."""
        from ._html import write_html
        write_html(self, path)
