"""Draw a profile as PNG charts (matplotlib, the optional ``plot`` extra).

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never pyplot, so the
user's backend choice and pyplot's figure registry are left alone.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from ._counts import FIELDS, ZERO, Counts
from ._profile import ProfileData
from ._render import _check_count, human, rows

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot", "plot_branches", "plot_compare", "plot_roofline", "check_path", "check_metric"]

PathLike = Union[str, "os.PathLike[str]"]

_LABELS = {
    "macs": "MACs", "flops": "FLOPs", "muls": "multiplications", "adds": "additions",
    "comparisons": "comparisons", "grad_input_flops": "input-gradient FLOPs",
    "grad_weight_flops": "weight-gradient FLOPs", "backward_flops": "backward FLOPs",
    "params": "parameters",
}
# bars per metric in plot_branches: forward work, training work, max-pool work, size
_BRANCH_METRICS = ("macs", "backward_flops", "comparisons", "params")
_NAME_WIDTH = 42
_DPI = 100


def check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming the PNG to write, "
                        f"got {type(path).__name__}")
    return os.fspath(path)


def check_metric(metric: Any) -> str:
    if not isinstance(metric, str) or metric not in FIELDS:
        raise ValueError(f"unknown metric {metric!r}; expected one of: {', '.join(FIELDS)}")
    return metric


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("torchflops charts need matplotlib: pip install torchflops[plot]") from error
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str) -> None:
    figure.savefig(path, format="png", dpi=_DPI)


def _shorten(name: str, width: int = _NAME_WIDTH) -> str:
    """Keep both ends of a long qualified name: the root says where, the leaf says what."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep // 2] + "…" + name[-(keep - keep // 2):]


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _bars(profile: ProfileData, depth: Optional[int], top: int,
          metric: str) -> tuple[list[tuple[str, int]], int]:
    """(label, value) of the ``top`` rows with a non-zero ``metric``, then one bar for the rest;
    and how many rows that last bar folds (0: none)."""
    merged: dict[tuple[str, str], Counts] = {}
    for row in rows(profile, depth):
        # a module called several times is one bar
        key = (row.name or "(model)", row.type)
        merged[key] = merged.get(key, ZERO) + row.counts
    ranked = sorted(((getattr(c, metric), name, kind) for (name, kind), c in merged.items()
                     if getattr(c, metric)), key=lambda item: item[0], reverse=True)
    kept, rest = ranked[:top], ranked[top:]
    bars = [(f"{_shorten(name)}  ({kind})" if kind else _shorten(name), value) for value, name, kind in kept]
    if rest:
        more = f"{len(rest)} more module" + ("s" if len(rest) > 1 else "")
        bars.append((f"({more})", sum(value for value, _, _ in rest)))
    return bars, len(rest)


def plot(profile: ProfileData, path: PathLike, depth: Optional[int] = None, top: int = 15,
         metric: str = "macs") -> None:
    """Horizontal bars of the ``top`` modules by ``metric``, labelled with human units and share."""
    target = check_path(path)
    check_metric(metric)
    _check_count(depth, "depth", 0)
    if top is None:
        raise ValueError("top must be an integer >= 1, got None")
    _check_count(top, "top", 1)

    bars, folded = _bars(profile, depth, top, metric)
    total = getattr(profile.total, metric)

    figure = _figure(10, 1.4 + 0.34 * max(len(bars), 1))
    axes = figure.add_subplot()
    title = f"{profile.model_name}: {_LABELS[metric]} by module"
    if depth is not None:
        title += f" (depth {depth})"
    axes.set_title(f"{title}, total {human(total)}", loc="left", fontsize=11)
    if not bars:
        axes.text(0.5, 0.5, f"no {_LABELS[metric]} counted", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_axis_off()
        _save(figure, target)
        return
    labels = [label for label, _ in reversed(bars)]
    values = [value for _, value in reversed(bars)]
    colours = ["#b0b0b0" if folded and i == 0 else "#3b75af" for i in range(len(values))]
    drawn = axes.barh(range(len(values)), values, color=colours, height=0.7)
    axes.set_yticks(range(len(values)), labels, fontsize=9, fontfamily="monospace")
    axes.bar_label(drawn, [f" {human(v)}  {_share(v, total)}" for v in values], fontsize=8)
    axes.set_xlim(0, max(values) * 1.25)
    axes.margins(y=0.01)
    axes.xaxis.set_major_formatter(_tick)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_xlabel(_LABELS[metric])
    _save(figure, target)


def _parts(profile: ProfileData, name: str) -> list[tuple[str, str]]:
    """(label, qualified name or "" for the block's own functional calls) of each part of ``name``."""
    parts = [(child.rsplit(".", 1)[-1], child) for child in profile.children(name)]
    if any(r.name == name and r.type != profile.module_type(name) for r in profile.records):
        parts.append(("(own calls)", ""))
    return parts


def _own(profile: ProfileData, name: str) -> Counts:
    own_type = profile.module_type(name)
    return sum((r.counts for r in profile.records if r.name == name and r.type != own_type), ZERO)


def plot_branches(profile: ProfileData, path: PathLike, name: str) -> None:
    """Two panels for module ``name``: each child's share of every metric, and each child's MACs
    stacked by its own children (the notebook's ``Branch2: [12845056 86704128]``)."""
    target = check_path(path)
    if not isinstance(name, str):
        raise TypeError(f"name must be a qualified module name (str), got {type(name).__name__}")
    parent = profile.module(name)   # KeyError with close matches for an unknown name
    parts = _parts(profile, name)
    if not parts:
        raise ValueError(f"module {name!r} has no children to break down")
    counts = [profile.module(q) if q else _own(profile, name) for _, q in parts]
    metrics = [m for m in _BRANCH_METRICS if getattr(parent, m)] or ["macs"]

    # the MACs panel leaves out parts that do no matmul work (pools, dropout)
    working = [(part, c) for part, c in zip(parts, counts) if c.macs] or list(zip(parts, counts))
    block = f"{name} ({profile.module_type(name)})" if name else profile.model_name

    figure = _figure(11, 2.0 + 0.55 * len(metrics) + 0.5 * len(working))
    colours = _palette(len(parts))
    grid = figure.add_gridspec(2, 1, height_ratios=[len(metrics) + 0.8, len(working) + 0.8])

    shares = figure.add_subplot(grid[0])
    shares.set_title(f"{block}: share of each metric by branch", loc="left", fontsize=11)
    for row, metric in enumerate(reversed(metrics)):
        whole = getattr(parent, metric)
        left = 0.0
        for (label, _), c, colour in zip(parts, counts, colours):
            part = getattr(c, metric) / whole if whole else 0.0
            shares.barh(row, part, left=left, color=colour, height=0.6,
                        label=label if row == 0 else None)
            if part >= 0.06:
                shares.text(left + part / 2, row, f"{100 * part:.1f}%", ha="center", va="center",
                            fontsize=8, color="white")
            left += part
    shares.set_yticks(range(len(metrics)),
                      [f"{_LABELS[m]}\n{human(getattr(parent, m))}" for m in reversed(metrics)], fontsize=9)
    shares.set_xlim(0, 1)
    shares.xaxis.set_major_formatter(lambda x, _: f"{100 * x:.0f}%")
    shares.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    shares.spines[["top", "right"]].set_visible(False)

    macs = figure.add_subplot(grid[1])
    widest = max(c.macs for _, c in working)
    macs.set_title("MACs of each branch, stacked by its layers", loc="left", fontsize=11)
    for row, ((label, qualified), c) in enumerate(reversed(working)):
        pieces = [(f"{q.rsplit('.', 1)[-1]}: {profile.module_type(q)}", profile.module(q).macs)
                  for q in profile.children(qualified)] if qualified else []
        if not pieces or sum(m for _, m in pieces) != c.macs:
            pieces = [(label, c.macs)]
        left = 0
        for i, (piece, value) in enumerate(pieces):
            macs.barh(row, value, left=left, height=0.6, color=_shade(i), edgecolor="white")
            if widest and value / widest >= 0.12 and len(pieces) > 1:
                macs.text(left + value / 2, row, f"{piece}\n{human(value)}", ha="center", va="center",
                          fontsize=7, color="white")
            left += value
        macs.text(left, row, f"  {human(c.macs)}  {_share(c.macs, parent.macs)}", va="center", fontsize=8)
    macs.set_yticks(range(len(working)), [label for (label, _), _ in reversed(working)], fontsize=9,
                    fontfamily="monospace")
    macs.set_xlim(0, max(widest, 1) * 1.3)
    macs.xaxis.set_major_formatter(_tick)
    macs.spines[["top", "right"]].set_visible(False)
    _save(figure, target)


def plot_compare(profiles: Mapping[str, ProfileData], path: PathLike, metrics: Sequence[str]) -> None:
    """One panel per metric, one bar per profile, labelled with the value and the ratio to the first."""
    target = check_path(path)
    labels = list(profiles)
    figure = _figure(4.2 * len(metrics), 1.5 + 0.45 * len(labels))
    from matplotlib.ticker import MaxNLocator
    panels = figure.subplots(1, len(metrics), squeeze=False)[0]
    colours = _palette(len(labels))
    for axes, metric in zip(panels, metrics):
        values = [getattr(p.total, metric) for p in profiles.values()]
        drawn = axes.barh(range(len(labels)), values, color=colours, height=0.6)
        base = values[0]
        axes.bar_label(drawn, [f" {human(v)}" + (f"  {v / base:.2f}x" if base else "") for v in values],
                       fontsize=8)
        axes.set_yticks(range(len(labels)), labels, fontsize=9)
        axes.invert_yaxis()   # the reference profile on top
        axes.set_title(_LABELS[metric], fontsize=10)
        axes.set_xlim(0, max(max(values), 1) * 1.45)
        axes.xaxis.set_major_formatter(_tick)
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4))
        axes.tick_params(axis="x", labelsize=8)
        axes.spines[["top", "right"]].set_visible(False)
    _save(figure, target)


def _tick(x: float, _: int) -> str:
    """Axis ticks in short human units: ``200 M``, ``1.5 G``."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:g} {unit}"
    return f"{x:g}"


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"] if n <= 10 else colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _shade(i: int) -> str:
    # alternating blues keep the layers of one branch apart without a legend
    return ("#3b75af", "#6f9fd0", "#24507d", "#9bbde0")[i % 4]


def plot_roofline(profile: ProfileData, path: PathLike, hardware: Any, dtype: Any = None) -> None:
    """Log-log roofline: each record with FLOPs and bytes as a point at its arithmetic intensity
    (FLOPs per byte) and its FLOP/s (measured where the profile was timed, else the roofline
    estimate's), under the compute ceiling and the bandwidth slope."""
    from ._roofline import estimate
    target = check_path(path)
    result = estimate(profile, hardware, dtype=dtype)     # validates hardware and dtype
    peak, bandwidth = hardware.peak(result.dtype), hardware.bandwidth
    measured = all(hasattr(r, "latency") for r in profile.records) and bool(profile.records)
    points = []
    for record, guess in zip(profile.records, result.records):
        moved = record.counts.bytes_read + record.counts.bytes_written
        seconds = record.latency if measured else guess.seconds
        if record.counts.flops and moved and seconds > 0:
            points.append((record.counts.flops / moved, record.counts.flops / seconds))

    figure = _figure(8, 5.5)
    axes = figure.add_subplot()
    axes.set_xscale("log")
    axes.set_yscale("log")
    ridge = peak / bandwidth
    low = min([ridge / 100] + [x / 2 for x, _ in points])
    high = max([ridge * 100] + [x * 2 for x, _ in points])
    axes.plot([low, ridge, high], [bandwidth * low, peak, peak], color="#24507d", linewidth=2,
              label=f"ceilings: {human(int(peak))}FLOP/s, {human(int(bandwidth))}B/s")
    if points:
        axes.scatter([x for x, _ in points], [y for _, y in points], s=14, color="#d1603d",
                     label="measured" if measured else "estimated", zorder=3)
    else:
        axes.text(0.5, 0.5, "no record with both FLOPs and bytes", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlabel("arithmetic intensity (FLOPs per byte)")
    axes.set_ylabel("FLOP/s")
    axes.set_title(f"{profile.model_name} on {hardware.name} ({str(result.dtype).removeprefix('torch.')})",
                   loc="left", fontsize=11)
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    _save(figure, target)
