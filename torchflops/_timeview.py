"""Time as text and data: a table of measured and estimated seconds per row, and their dict/CSV form."""
from __future__ import annotations

from typing import Any, Optional

from ._profile import ProfileData
from ._render import _ancestor, _check_count, _check_fmt, human
from ._roofline import Estimate

__all__ = ["time_rows", "time_table", "estimate_dict", "append_columns", "with_estimate_csv"]


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns" if value else "0"


def time_rows(profile: ProfileData, estimate: Optional[Estimate], depth: Optional[int]) -> list[dict[str, Any]]:
    """Records grouped as ``table`` folds them (``depth``), each group's FLOPs, bytes, measured
    seconds (the sum of its records', when timed) and estimated seconds with the bound that
    dominates them."""
    _check_count(depth, "depth", 0)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    guesses = estimate.records if estimate is not None else [None] * len(profile.records)
    for record, guess in zip(profile.records, guesses):
        key = _ancestor(record.name, depth) if depth is not None else record.name
        kind = record.type if key == record.name else profile.module_type(key)
        row = groups.setdefault((key, kind), {"name": key, "type": kind, "flops": 0, "bytes": 0,
                                               "measured_s": None, "estimated_s": None,
                                               "compute_s": 0.0, "memory_s": 0.0})
        row["flops"] += record.counts.flops
        row["bytes"] += record.counts.bytes_read + record.counts.bytes_written
        latency = getattr(record, "latency", None)
        if latency is not None:
            row["measured_s"] = (row["measured_s"] or 0.0) + latency
        if guess is not None:
            row["estimated_s"] = (row["estimated_s"] or 0.0) + guess.seconds
            row[f"{guess.bound}_s"] += guess.seconds
    out = []
    for row in groups.values():
        if row["estimated_s"] is not None:
            row["bound"] = "compute" if row.pop("compute_s") >= row.pop("memory_s") else "memory"
        else:
            del row["compute_s"], row["memory_s"]
        out.append(row)
    if estimate is not None:
        other = profile.outside_records
        for extra in estimate.records[len(profile.records):]:     # the work no record holds
            out.append({"name": extra.name, "type": "", "flops": other.flops,
                        "bytes": other.bytes_read + other.bytes_written, "measured_s": None,
                        "estimated_s": extra.seconds, "bound": extra.bound})
    return out


def time_table(profile: ProfileData, estimate: Optional[Estimate], depth: Optional[int] = None,
               fmt: str = "simple") -> str:
    """Per row: FLOPs, bytes moved, measured time and achieved FLOP/s (timed profiles), estimated
    time and bound (with an estimate); then the whole pass."""
    from tabulate import tabulate
    tab_fmt = _check_fmt(fmt)
    timed = hasattr(profile, "latency")
    headers = ["module", "type", "FLOPs", "bytes"]
    if timed:
        headers += ["measured", "FLOP/s"]
    if estimate is not None:
        headers += [f"estimated ({estimate.hardware.name})", "bound"]
    lines = []
    for row in time_rows(profile, estimate, depth):
        cells = [row["name"] or "(model)", row["type"], human(row["flops"]), human(row["bytes"])]
        if timed:
            measured = row["measured_s"] or 0.0
            cells += [_seconds(measured), human(int(row["flops"] / measured)) if measured else "-"]
        if estimate is not None:
            cells += [_seconds(row["estimated_s"]), row["bound"]]
        lines.append(cells)
    total = profile.total
    cells = ["total", profile.model_name, human(total.flops), human(total.bytes_read + total.bytes_written)]
    if timed:
        cells += [_seconds(profile.latency), human(int(profile.achieved_flops)) if profile.latency else "-"]
    if estimate is not None:
        cells += [_seconds(estimate.total_s), ""]
    lines.append(cells)
    return tabulate(lines, headers=headers, tablefmt=tab_fmt, disable_numparse=True)


def estimate_dict(estimate: Estimate) -> dict[str, Any]:
    return {
        "hardware": estimate.hardware.name,
        "dtype": str(estimate.dtype).removeprefix("torch."),
        "efficiency": estimate.efficiency,
        "total_s": estimate.total_s,
        "records": [{"name": e.name, "type": e.type, "seconds": e.seconds, "bound": e.bound}
                    for e in estimate.records],
    }


def append_columns(csv_text: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """``to_csv`` output (a header, one line per record, a total line) with more columns:
    ``rows`` holds one tuple per record and one for the total; ``None`` is an empty cell."""
    lines = csv_text.rstrip("\n").split("\n")
    cells = [header] + [tuple("" if v is None else v if isinstance(v, str) else repr(v) for v in row)
                        for row in rows]
    return "".join(f"{line},{','.join(extra)}\n" for line, extra in zip(lines, cells))


def with_estimate_csv(csv_text: str, estimate: Estimate) -> str:
    """``to_csv`` output with ``estimated_s`` and ``bound`` columns (the total row: the sum)."""
    rows = [(e.seconds, e.bound) for e in estimate.records] + [(estimate.total_s, "")]
    return append_columns(csv_text, ("estimated_s", "bound"), rows)
