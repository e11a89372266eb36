"""Compare several profiles: chosen metrics side by side, with ratios to the first profile."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from tabulate import tabulate

from ._counts import FIELDS
from ._display import Table
from ._profile import ProfileData
from ._render import _check_fmt

__all__ = ["compare", "compare_plot", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("macs", "flops", "backward_flops", "comparisons", "params")


def _check(profiles: Any, metrics: Any) -> tuple[dict[str, ProfileData], tuple[str, ...]]:
    if not isinstance(profiles, Mapping):
        raise TypeError(f"profiles must be a dict of label -> Profile, got {type(profiles).__name__}")
    if not profiles:
        raise ValueError("profiles is empty; expected at least one label -> Profile")
    for label, value in profiles.items():
        if not isinstance(label, str):
            raise TypeError(f"profile labels must be str, got {label!r}")
        if not isinstance(value, ProfileData):
            raise TypeError(f"profiles[{label!r}] must be a Profile (from tf.count or tf.profile), "
                            f"got {type(value).__name__}")
    if isinstance(metrics, str):
        raise TypeError(f"metrics must be a sequence of metric names, got the string {metrics!r}; "
                        f"write ({metrics!r},) for one")
    if not isinstance(metrics, Sequence) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of names from: {', '.join(FIELDS)}; "
                         f"got {metrics!r}")
    unknown = [m for m in metrics if m not in FIELDS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; "
                         f"expected names from: {', '.join(FIELDS)}")
    return dict(profiles), tuple(metrics)


def _ratio(value: int, base: int) -> str:
    if base:
        return f"{value / base:.3f}"
    return "1.000" if value == 0 else "-"


def compare(profiles: Mapping[str, ProfileData], metrics: Sequence[str] = DEFAULT_METRICS,
            fmt: str = "simple") -> str:
    """A table: one row per metric, each profile's exact total, and its ratio to the first profile.

    The table is a ``str``; a notebook shows it as an HTML table.

    >>> print(tf.compare({"naive": p1, "reduced": p2}, metrics=("macs",)))   # doctest: +SKIP
    metric          naive      reduced    reduced/naive
    --------  -----------  -----------  ---------------
    macs      854,196,224  271,351,808            0.318
    """
    profiles, metrics = _check(profiles, metrics)
    tab_fmt = _check_fmt(fmt)
    labels = list(profiles)
    first = labels[0]
    headers = ["metric", first]
    for label in labels[1:]:
        headers += [label, f"{label}/{first}"]
    lines = []
    for metric in metrics:
        values = [getattr(p.total, metric) for p in profiles.values()]
        line = [metric, f"{values[0]:,}"]
        for value in values[1:]:
            line += [f"{value:,}", _ratio(value, values[0])]
        lines.append(line)
    text = tabulate(lines, headers=headers, tablefmt=tab_fmt, disable_numparse=True,
                    colalign=("left",) + ("right",) * (len(headers) - 1))
    return Table(text, tuple(headers), lines)


def compare_plot(profiles: Mapping[str, ProfileData], path: Any,
                 metrics: Sequence[str] = ("macs", "backward_flops", "params")) -> None:
    """PNG: one panel per metric, one bar per profile with its value and ratio to the first
    (needs ``pip install torchflops[plot]``)."""
    from ._plot import check_path, plot_compare
    profiles, metrics = _check(profiles, metrics)
    check_path(path)
    plot_compare(profiles, path, metrics)
