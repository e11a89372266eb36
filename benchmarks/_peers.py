"""The tools torchflops is timed against, each called the way its documentation shows.

Every entry returns a ``Tool`` whose ``run()`` makes one full count and returns the figure the tool
reports, with that figure's meaning as the tool names it. A peer that is not installed raises
``Missing`` with the reason; the benchmark prints it and goes on.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Callable

import torch

import torchflops as tf

from _harness import vision_model


class Missing(Exception):
    """The peer is not installed."""


@dataclass(frozen=True)
class Tool:
    name: str
    run: Callable[[], int]          # one complete count; returns the tool's headline figure
    unit: str                       # what that figure is, in the tool's own words
    real_compute: bool              # runs the model's arithmetic on real tensors


def _silent(run: Callable[[], int]) -> Callable[[], int]:
    """Peers print progress and per-layer tables; keep them out of the benchmark's output."""
    def wrapped() -> int:
        with contextlib.redirect_stdout(io.StringIO()):
            return run()
    return wrapped


def _input(batch: int, resolution: int, device: str) -> torch.Tensor:
    if device == "meta":
        return torch.empty(batch, 3, resolution, resolution, device="meta")
    return torch.randn(batch, 3, resolution, resolution)


def torchflops(name: str, batch: int, resolution: int) -> Tool:
    model = vision_model(name)
    size = (batch, 3, resolution, resolution)
    return Tool("torchflops (shape-only)", lambda: tf.count(model, input_size=size).total.macs, "MACs", False)


def flop_counter(name: str, batch: int, resolution: int, device: str) -> Tool:
    from torch.utils.flop_counter import FlopCounterMode

    model = vision_model(name, device)
    x = _input(batch, resolution, device)

    def run() -> int:
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    return Tool(f"FlopCounterMode ({device})", run, "FLOPs (2 per MAC)", device != "meta")


def fvcore(name: str, batch: int, resolution: int) -> Tool:
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError as error:
        raise Missing(f"fvcore is not installed ({error})") from None
    model = vision_model(name, "cpu")
    x = _input(batch, resolution, "cpu")

    def run() -> int:
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())

    return Tool("fvcore", _silent(run), "'flops' (1 per MAC)", True)


def ptflops(name: str, batch: int, resolution: int) -> Tool:
    try:
        from ptflops import get_model_complexity_info
    except ImportError as error:
        raise Missing(f"ptflops is not installed ({error})") from None
    model = vision_model(name, "cpu")

    def run() -> int:
        macs, _ = get_model_complexity_info(
            model, (3, resolution, resolution), as_strings=False, print_per_layer_stat=False, verbose=False,
            input_constructor=lambda res: {"x": torch.randn(batch, *res)})
        return int(macs)

    return Tool("ptflops", _silent(run), "MACs, incl. norm/activation/pool", True)


def thop(name: str, batch: int, resolution: int) -> Tool:
    try:
        from thop import profile
    except ImportError as error:
        raise Missing(f"thop is not installed ({error})") from None
    model = vision_model(name, "cpu")
    x = _input(batch, resolution, "cpu")

    def run() -> int:
        macs, _ = profile(model, inputs=(x,), verbose=False)
        return int(macs)

    return Tool("thop", _silent(run), "MACs, incl. some elementwise", True)


def torchinfo(name: str, batch: int, resolution: int) -> Tool:
    try:
        from torchinfo import summary
    except ImportError as error:
        raise Missing(f"torchinfo is not installed ({error})") from None
    model = vision_model(name, "cpu")

    def run() -> int:
        return int(summary(model, input_size=(batch, 3, resolution, resolution), verbose=0).total_mult_adds)

    return Tool("torchinfo", _silent(run), "mult-adds", True)


def all_tools(name: str, batch: int, resolution: int) -> tuple[list[Tool], list[str]]:
    """The tools to time, torchflops first, and a message for each peer that is missing."""
    tools = [torchflops(name, batch, resolution),
             flop_counter(name, batch, resolution, "meta"),
             flop_counter(name, batch, resolution, "cpu")]
    missing = []
    for make in (fvcore, ptflops, thop, torchinfo):
        try:
            tools.append(make(name, batch, resolution))
        except Missing as reason:
            missing.append(f"{make.__name__}: skipped, {reason}")
    return tools, missing
