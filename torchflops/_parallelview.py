"""One rank of a parallel plan as text and data: what it computes and holds next to the whole
model, the collectives it joins, and its memory."""
from __future__ import annotations

from typing import Any, Optional

from tabulate import tabulate

from ._profile import ProfileData
from ._ranks import Collective
from ._render import binary, human, memory_summary

__all__ = ["rank_summary", "rank_dict", "collective_rows"]

_WORK = (("params", "params"), ("flops", "FLOPs"), ("backward_flops", "backward FLOPs"))
_CONVENTION = ("bytes sent by this rank, ring algorithms: all-gather and reduce-scatter (N-1)/N of the "
               "full tensor, all-reduce twice that")


def collective_rows(collectives: list[Collective]) -> list[dict[str, Any]]:
    """Collectives grouped by phase, kind and group size, in order of first appearance."""
    groups: dict[tuple[str, str, int], dict[str, Any]] = {}
    for c in collectives:
        row = groups.setdefault((c.phase, c.kind, c.group_size), {
            "phase": c.phase, "kind": c.kind, "group_size": c.group_size, "calls": 0, "bytes": 0})
        row["calls"] += 1
        row["bytes"] += c.bytes
    return list(groups.values())


def _heading(parallel: Any) -> str:
    import torch.distributed as dist

    mesh = " x ".join(f"{name}={size}" for name, size in zip(parallel.mesh.mesh_dim_names, parallel.mesh.shape))
    plan = "the standard plan" if parallel.plan is None else "the plan given"
    return f"rank {dist.get_rank()} of {parallel.world_size} (mesh {mesh}, {plan})"


def rank_dict(parallel: Any) -> dict[str, Any]:
    """The mesh, for the CLI's JSON (whose ``rank_total`` and ``collectives`` say what the rank does)."""
    return {"tp": parallel.tp, "fsdp": parallel.fsdp, "world_size": parallel.world_size,
            "mesh": dict(zip(parallel.mesh.mesh_dim_names, map(int, parallel.mesh.shape))),
            "plan": "standard" if parallel.plan is None else "given"}


def rank_summary(profile: ProfileData, parallel: Any, memory: Any = None, optimizer: Optional[str] = None) -> str:
    """What one rank of ``parallel`` computes, holds and sends, beside the whole model's figures,
    then its memory when given."""
    rank = profile.rank_total
    # with memory, a training step was replayed: its backward's collectives are known too
    step = memory is not None
    collectives = collective_rows(profile.step_collectives() if step else profile.collectives)
    what = "a training step" if step else "the forward"
    work = _heading(parallel) + "\n" + tabulate(
        [[label, human(getattr(profile.total, field)), human(getattr(rank, field))] for field, label in _WORK],
        headers=("", "whole model", "this rank"), disable_numparse=True, colalign=("left", "right", "right"))
    if collectives:
        sent = tabulate([[f"{r['phase']} {r['kind']}", r["group_size"], r["calls"], f"{r['bytes']:,}",
                          binary(r["bytes"])] for r in collectives],
                        headers=(f"collectives of {what}", "ranks", "calls", "bytes sent", "binary units"),
                        disable_numparse=True, colalign=("left", "right", "right", "right", "right"))
        sent += "\n" + _CONVENTION
    else:
        sent = f"no collectives in {what}"
    parts = [work, sent]
    if memory is not None:
        parts.append(memory_summary(profile, memory, optimizer))
    return "\n\n".join(parts)
