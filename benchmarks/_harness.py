"""Timing, models and table helpers shared by the benchmark scripts (not part of the package)."""
from __future__ import annotations

import os
import platform
import statistics
import time
import warnings
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torchflops._shortcuts import shortcut
from torch import nn

# Models whose constructor warns unless told how to initialise (the weights are never used here).
_INIT_WEIGHTS = {"googlenet", "inception_v3"}
RESOLUTION = {"inception_v3": 299}


def vision_model(name: str, device: str = "meta") -> nn.Module:
    """A torchvision classifier in eval mode; under ``device="meta"`` it has no storage at all."""
    import torchvision.models as models

    kwargs = {"init_weights": True} if name in _INIT_WEIGHTS else {}
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(models, name)(**kwargs).eval()


def elapsed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved(runs: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each run, taken in rounds that call every run once in turn.

    Alternating spreads the load of a shared machine evenly over the runs being compared.
    """
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(elapsed(run))
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def bare_forward(model: nn.Module, size: Sequence[int], dtype: torch.dtype = torch.float32) -> Callable[[], object]:
    """The reference a shape-only count is compared with: one forward of a meta model on a meta
    input, default grad mode, no hooks, no mode."""
    x = torch.empty(tuple(size), dtype=dtype, device="meta")
    return lambda: model(x)


class _Shortcuts(torch.overrides.TorchFunctionMode):
    """Only the shape-only answers torchflops gives slow meta kernels (torchflops._shortcuts)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = shortcut(func, args, kwargs)
        return func(*args, **kwargs) if out is None else out


def bare_forward_with_shortcuts(model: nn.Module, size: Sequence[int],
                                dtype: torch.dtype = torch.float32) -> Callable[[], object]:
    """The bare forward with torchflops' answers for normalisation and recurrent kernels and nothing
    else (no hooks, no records, no formulas): what capture and formulas add is count minus this."""
    x = torch.empty(tuple(size), dtype=dtype, device="meta")

    def run() -> object:
        with _Shortcuts():
            return model(x)
    return run


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


def environment() -> str:
    return (f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch "
            f"threads, {platform.machine()} {platform.system()}; {load()}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("x", "").replace("-", "").strip().isdigit()


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def note(text: str) -> None:
    print(text, flush=True)


def quiet() -> None:
    """Silence library warnings (deprecations, unsupported-layer notices) so the tables stay readable;
    the scripts report what matters (figures, unsupported entries) themselves."""
    warnings.simplefilter("ignore")

