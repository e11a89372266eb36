"""Budgets: fail when a profile costs more than its limits, and say where the cost comes from."""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Optional, Union

from ._memory import memory as memory_of
from ._profile import ProfileData
from ._render import human

__all__ = ["BudgetExceeded", "Overrun", "assert_budget", "check_limits", "LIMITS"]

COUNT_LIMITS = ("macs", "flops", "backward_flops", "comparisons", "params", "elementwise_flops")
MEMORY_LIMITS = ("activations", "peak_inference", "peak_training")     # bytes, from Profile.memory()
LIMITS = COUNT_LIMITS + MEMORY_LIMITS
_TOP = 5

Limit = Union[int, float]
# what a budget may be written as: a number, or a string such as "1.4G" (SI prefixes, powers of 1000)
LimitLike = Union[int, float, str]
_SI = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_HUMAN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)\s*")


class BudgetExceeded(AssertionError):
    """A profile exceeds one or more limits; ``overruns`` holds one ``Overrun`` per exceeded limit."""

    __module__ = "torchflops"   # tracebacks name the public path

    def __init__(self, message: str, overruns: tuple[Overrun, ...]) -> None:
        super().__init__(message)
        self.overruns = overruns


@dataclass(frozen=True)
class Overrun:
    """One exceeded limit: the figure, its limit, and the largest contributors as (module, amount)."""

    field: str
    actual: int
    limit: Limit
    contributors: tuple[tuple[str, int], ...]

    @property
    def percent(self) -> float:
        """How far over the limit, in percent of the limit (infinite for a limit of 0)."""
        return math.inf if self.limit == 0 else 100 * (self.actual - self.limit) / self.limit


def check_limits(limits: Mapping[str, object]) -> dict[str, Limit]:
    """The limits that are set, validated: finite non-negative ints or floats, known names only."""
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise TypeError(f"unknown budget limit(s) {', '.join(map(repr, unknown))}; "
                        f"expected some of: {', '.join(LIMITS)}")
    checked: dict[str, Limit] = {}
    for name in LIMITS:
        value = limits.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            value = _parse(name, value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"budget limit {name} must be a number such as 1.6e9 or a string such as "
                            f"'1.6G', got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"budget limit {name} must be a finite number >= 0, got {value!r}")
        checked[name] = value if isinstance(value, (int, float)) else float(value)
    if not checked:
        raise TypeError(f"a budget needs at least one limit: {', '.join(f'{n}=...' for n in LIMITS)}")
    return checked


def _parse(name: str, text: str) -> Limit:
    """``"1.4G"`` -> ``1400000000``; exact for whole results (``"1.5K"`` is 1500, not 1500.0000002)."""
    match = _HUMAN.fullmatch(text)
    if match is None:
        raise ValueError(f"budget limit {name} must be a number or a string such as '1.4G' "
                         f"(SI prefixes K, M, G, T), got {text!r}")
    digits, prefix = match.groups()
    exact = Fraction(digits) * _SI[prefix]
    return int(exact) if exact.denominator == 1 else float(exact)


def _group(name: str, depth: int) -> str:
    """The module at ``depth`` that contains ``name``; a shallower module keeps its own name."""
    parts = name.split(".") if name else []
    if len(parts) >= depth:
        return ".".join(parts[:depth])
    return f"{name} (own)" if name else "(model)"


def contributions(profile: ProfileData, field: str, depth: int = 1) -> list[tuple[str, int]]:
    """What each module at ``depth`` adds to ``profile.total.<field>``, largest first; they sum to it.

    Work (MACs, FLOPs, comparisons) belongs to the calls made inside a module, so a module called
    twice contributes twice. A parameter belongs to the first module that holds it (PyTorch's
    ``named_parameters`` order), so a tied weight is counted once, and a module never called still
    contributes its parameters. Work or parameters of a module shallower than ``depth`` itself
    (a functional call in the model's own ``forward``, a class token) appear as ``name (own)``, or
    ``(model)`` for the model itself.
    """
    amounts: dict[str, int] = {}
    if field == "activations":
        for record in profile.records:
            key = _group(record.name, depth)
            amounts[key] = amounts.get(key, 0) + record.saved_bytes
    elif field in MEMORY_LIMITS:
        return []           # a peak is one moment of the whole pass: no module adds to it alone
    elif field == "params":
        for name, parameter in profile._model.named_parameters():
            key = _group(name.rpartition(".")[0], depth)
            amounts[key] = amounts.get(key, 0) + parameter.numel()
    else:
        for record in profile._ordered:        # functional elementwise calls included
            key = _group(record.name, depth)
            amounts[key] = amounts.get(key, 0) + getattr(record.counts, field)
    return sorted(((k, v) for k, v in amounts.items() if v), key=lambda kv: kv[1], reverse=True)


def _overrun_text(overrun: Overrun, total: int, depth: int) -> str:
    limit = overrun.limit
    exact = f"{int(limit):,}" if float(limit).is_integer() else f"{limit:,.6g}"
    over = "over a limit of 0" if limit == 0 else f"{overrun.percent:.2f}% over"
    lines = [f"  {overrun.field}: {overrun.actual:,} ({human(overrun.actual)}) > limit {exact} "
             f"({human(int(limit))}), {over}"]
    if overrun.contributors:
        lines.append(f"    largest {overrun.field} by module (depth {depth}):")
        width = max(len(name) for name, _ in overrun.contributors)
        for name, amount in overrun.contributors:
            share = f"{100 * amount / total:5.1f}%" if total else ""
            lines.append(f"      {name:<{width}}  {amount:>15,}  {human(amount):>9}  {share}")
    return "\n".join(lines)


def assert_budget(profile: ProfileData, *, macs: Optional[LimitLike] = None,
                  flops: Optional[LimitLike] = None, backward_flops: Optional[LimitLike] = None,
                  comparisons: Optional[LimitLike] = None, params: Optional[LimitLike] = None,
                  elementwise_flops: Optional[LimitLike] = None, activations: Optional[LimitLike] = None,
                  peak_inference: Optional[LimitLike] = None, peak_training: Optional[LimitLike] = None,
                  optimizer: Any = None, depth: int = 1) -> None:
    """Raise ``BudgetExceeded`` if ``profile`` costs more than any limit given (at least one).

    The memory limits are bytes of ``profile.memory(optimizer)``; ``activations`` names the modules
    that save the most.

    A figure equal to its limit passes. The message names each exceeded limit, the figure (exact
    and in human units), the excess in percent, and the five modules at ``depth`` that contribute
    most to that figure. A limit is a number or a string with an SI prefix (``"1.4G"``).
    """
    __tracebackhide__ = True   # pytest shows the caller's line, not this function's source
    if not isinstance(profile, ProfileData):
        raise TypeError(f"assert_budget takes a torchflops Profile, got {type(profile).__name__}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    limits = check_limits({"macs": macs, "flops": flops, "backward_flops": backward_flops,
                           "comparisons": comparisons, "params": params,
                           "elementwise_flops": elementwise_flops, "activations": activations,
                           "peak_inference": peak_inference, "peak_training": peak_training})
    total = profile.total
    memory = memory_of(profile, optimizer) if any(n in MEMORY_LIMITS for n in limits) else None
    figures = {name: getattr(memory if name in MEMORY_LIMITS else total, name) for name in limits}
    overruns = tuple(
        Overrun(name, figures[name], limit, tuple(contributions(profile, name, depth)[:_TOP]))
        for name, limit in limits.items() if figures[name] > limit
    )
    if overruns:
        head = (f"{profile.model_name} exceeds its budget "
                f"({', '.join(o.field for o in overruns)}):")
        body = "\n".join(_overrun_text(o, figures[o.field], depth) for o in overruns)
        raise BudgetExceeded(f"{head}\n{body}", overruns)
