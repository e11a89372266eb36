"""One rank of a parallel plan as text and data: what it computes and holds next to the whole
model, the collectives it joins, and its memory."""
from __future__ import annotations

from typing import Any, Optional

from tabulate import tabulate

from ._profile import ProfileData
from ._render import binary, human, memory_summary

__all__ = ["rank_summary", "rank_dict", "collective_rows"]

_WORK = (("params", "params"), ("flops", "FLOPs"), ("backward_flops", "backward FLOPs"))
_CONVENTION = ("what this rank sends, ring algorithms: all-gather and reduce-scatter (N-1)/N of the full "
               "tensor, all-reduce twice that")


def collective_rows(profile: ProfileData) -> list[dict[str, Any]]:
    """The pass's collectives grouped by kind and group size, in order of first appearance."""
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for c in profile.collectives:
        row = groups.setdefault((c.kind, c.group_size),
                                {"kind": c.kind, "group_size": c.group_size, "calls": 0, "bytes": 0})
        row["calls"] += 1
        row["bytes"] += c.bytes
    return list(groups.values())


def _heading(parallel: Any) -> str:
    mesh = " x ".join(f"{name}={size}" for name, size in zip(parallel.mesh.mesh_dim_names, parallel.mesh.shape))
    plan = "the standard plan" if parallel.plan is None else "plan given"
    return f"one rank of {parallel.world_size} (mesh {mesh}, {plan}), per forward pass"


def rank_dict(profile: ProfileData, parallel: Any) -> dict[str, Any]:
    """The mesh, this rank's counts and its collectives as exact integers (the CLI's JSON)."""
    return {"tp": parallel.tp, "fsdp": parallel.fsdp, "world_size": parallel.world_size,
            "rank_total": profile.rank_total.as_dict(), "collectives": collective_rows(profile)}


def rank_summary(profile: ProfileData, parallel: Any, memory: Any = None, optimizer: Optional[str] = None) -> str:
    """What one rank of ``parallel`` computes, holds and sends, beside the whole model's figures,
    then its memory when given."""
    rank = profile.rank_total
    collectives = collective_rows(profile)
    work = tabulate([[label, human(getattr(profile.total, field)), human(getattr(rank, field))]
                     for field, label in _WORK],
                    headers=(_heading(parallel), "whole model", "one rank"), disable_numparse=True,
                    colalign=("left", "right", "right"))
    if collectives:
        sent = tabulate([[r["kind"], r["group_size"], r["calls"], f"{r['bytes']:,}", binary(r["bytes"])]
                         for r in collectives],
                        headers=("collective", "ranks", "calls", "bytes sent", "binary units"),
                        disable_numparse=True, colalign=("left", "right", "right", "right", "right"))
        sent += "\n" + _CONVENTION
    else:
        sent = "no collectives in the forward pass"
    parts = [work, sent]
    if memory is not None:
        parts.append(memory_summary(profile, memory, optimizer))
    return "\n\n".join(parts)
