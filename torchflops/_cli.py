"""Command line: ``torchflops MODEL`` prints what a model costs; ``torchflops --list`` names the zoo.

User errors (unknown model, malformed size, a model that fails on its input) are one line on
stderr and exit status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import warnings
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

from . import _hub

__all__ = ["main"]

FORMATS = ("table", "markdown", "json", "csv")
_DEFAULT_SIZE = (1, 3, 224, 224)
_DEFAULT_DEPTH = 1
# --output writes text; these are charts or pages, which have their own options
_NOT_TEXT = {".png": "--plot", ".jpg": "--plot", ".jpeg": "--plot", ".svg": "--plot", ".pdf": "--plot",
             ".html": "--html", ".htm": "--html"}
# optical-flow models take two frames
_FRAME_PAIRS = ("raft_large", "raft_small")
_VIDEO_FRAMES = 16          # torchvision's video models are measured on 16-frame clips
# as torchvision's published figures count them: GoogLeNet without its auxiliary heads, Inception v3
# with its one (eval mode never runs them, so only the parameters differ); init_weights=False skips
# a warning about a changed default
_TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
                       "inception_v3": {"init_weights": False}}


class UsageError(Exception):
    """A mistake in the command line or in the model it names: one line, exit status 2."""


class _ModelError(UsageError):
    """The model's own code failed (building it or running it); ``--debug`` shows where."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchflops",
        description="What a PyTorch model costs, layer by layer: MACs, FLOPs, backward FLOPs, "
                    "max-pool comparisons, parameters. One shape-only pass by default.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"torchflops {__version__}")
    parser.add_argument("model", nargs="?",
                        help="a torchvision model name (googlenet), package.module:callable, "
                             "path/to/file.py:callable, or hf:PATH_OR_ID (a Hugging Face config)")
    parser.add_argument("--list", action="store_true", help="list the torchvision model names and exit")
    parser.add_argument("--input-size", action="append", metavar="SHAPE",
                        help="comma-separated input shape such as 1,3,224,224; repeat for several inputs "
                             "(default: the torchvision weights' crop size, else 1,3,224,224)")
    parser.add_argument("--dtype", default=None,
                        help="input dtype (default float32; int64 when the input feeds an nn.Embedding)")
    parser.add_argument("--device", default="meta", choices=("meta", "cpu"),
                        help="meta: shape-only, nothing computed (default); cpu: real tensors")
    parser.add_argument("--depth", type=int, default=None,
                        help=f"fold modules deeper than N (tables and charts; default {_DEFAULT_DEPTH})")
    parser.add_argument("--top", type=int, default=None, metavar="K",
                        help="keep the K most expensive rows (tables and charts)")
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default table)")
    parser.add_argument("--kwargs", default=None, metavar="JSON",
                        help="keyword arguments of the model's constructor, as a JSON object")
    parser.add_argument("--backward", action=argparse.BooleanOptionalAction, default=True,
                        help="show the backward FLOPs column (tables; default on)")
    parser.add_argument("--branches", metavar="NAME", default=None,
                        help="print the per-branch breakdown of module NAME instead of the table")
    parser.add_argument("--memory", action="store_true",
                        help="also print the memory a training step needs (bytes, binary units)")
    parser.add_argument("--optimizer", default=None, metavar="NAME",
                        help="optimizer whose state --memory counts: sgd, momentum, adam, adamw (default none)")
    parser.add_argument("--output", metavar="PATH", default=None, help="write the text report to PATH")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="also draw a PNG bar chart of the most expensive modules (needs matplotlib)")
    parser.add_argument("--html", metavar="PATH", default=None,
                        help="also write a self-contained HTML report (sortable table, icicle chart)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    _hub.add_arguments(parser)
    _time_options(parser)
    parser.add_argument("--tp", type=int, default=None, metavar="N",
                        help="count one rank of N-way tensor parallel: the standard Megatron-style plan on "
                             "torch's fake process group (README: Parallel plans)")
    parser.add_argument("--fsdp", type=int, default=None, metavar="N",
                        help="count one rank of N-way FSDP2 (fully_shard per decoder layer and the root); "
                             "with --tp, a 2-D (dp, tp) mesh")
    return parser


def _time_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time", action="store_true",
                        help="run the model on the CPU and report measured time per row")
    parser.add_argument("--repeats", type=int, default=10, metavar="N", help="timed passes for --time (default 10)")
    parser.add_argument("--hardware", metavar="NAME", default=None,
                        help="report the roofline time estimate on NAME (h100-sxm, a100-80gb, ...; cpu: calibrate "
                             "this machine)")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's CPU (matmul peak per dtype, copy bandwidth) and exit")


# -- arguments -----------------------------------------------------------------------------------
def _sizes(values: Optional[list[str]]) -> Optional[list[tuple[int, ...]]]:
    if not values:
        return None
    sizes = []
    for text in values:
        try:
            size = tuple(int(part) for part in text.replace("x", ",").split(","))
        except ValueError:
            size = ()
        if not size or min(size) < 1:
            raise UsageError(f"malformed --input-size {text!r}; expected positive integers such as 1,3,224,224")
        sizes.append(size)
    return sizes


def _dtype(name: str) -> Any:
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise UsageError(f"unknown --dtype {name!r}; expected a torch dtype such as float32, float16, bfloat16")
    return dtype


def _kwargs(text: Optional[str]) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--kwargs is not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--kwargs must be a JSON object such as '{{\"num_classes\": 10}}', got {text!r}")
    return value


def _count_option(value: Optional[int], flag: str, minimum: int) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {value}")


# -- the model -----------------------------------------------------------------------------------
def _zoo() -> list[str]:
    import torchvision

    return torchvision.models.list_models()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _torchvision_model(name: str, kwargs: dict[str, Any], device: str) -> Any:
    import torchvision

    names = _zoo()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `torchflops --list` shows the names"
        raise UsageError(f"unknown model {name!r}{hint}")
    options = {**_TORCHVISION_KWARGS.get(name, {}), **kwargs}
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
        # detection and segmentation builders otherwise download a pretrained backbone
        options.setdefault("weights_backbone", None)

    def build() -> Any:
        try:
            return torchvision.models.get_model(name, weights=None, **options)
        except Exception as error:  # noqa: BLE001 - torchvision's own message says what is wrong
            raise _ModelError(f"building {name}({_kwargs_text(options)}) failed: {_first_line(error)}") from error

    return _meta_first(build, device)


def _meta_first(build: Callable[[], Any], device: str) -> Any:
    """``build()`` on the meta device for a shape-only count: instant, no weights allocated.
    A constructor that reads tensor values (RegNet computes its widths) is built for real."""
    import torch

    if device == "meta":
        try:
            with torch.device("meta"):
                return build()
        except _ModelError:
            pass
    return build()


def _callable(spec: str) -> Callable[..., Any]:
    location, _, attribute = spec.rpartition(":")
    if not location or not attribute:
        raise UsageError(f"malformed model {spec!r}; expected package.module:callable or path/to/file.py:callable")
    is_file = location.endswith(".py") or "/" in location or os.sep in location
    if is_file and not os.path.isfile(location):
        raise UsageError(f"no such file {location!r} (model {spec!r})")
    name = os.path.splitext(os.path.basename(location))[0]
    module_spec = importlib.util.spec_from_file_location(name, location) if is_file else None
    if is_file and (module_spec is None or module_spec.loader is None):
        raise UsageError(f"cannot load {location!r} as Python source (model {spec!r})")
    try:
        if module_spec is not None and module_spec.loader is not None:
            module = importlib.util.module_from_spec(module_spec)
            # registered like an imported module, so that code in it (dataclasses, pickling) finds itself
            sys.modules.setdefault(name, module)
            module_spec.loader.exec_module(module)
        else:
            # the console script, unlike `python -m`, does not put the working directory on the path
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(location)
    except ModuleNotFoundError as error:
        raise UsageError(f"cannot import {location!r} (model {spec!r}): {error}") from None
    except Exception as error:  # noqa: BLE001 - the user's own module failed while loading
        raise _ModelError(f"loading {location} failed: {_first_line(error)}") from error
    target = getattr(module, attribute, None)
    if not callable(target):
        raise UsageError(f"{location!r} has no callable {attribute!r}")
    return target


def _built(spec: str, factory: Callable[..., Any], kwargs: dict[str, Any], device: str) -> Any:
    def build() -> Any:
        try:
            return factory(**kwargs)
        except Exception as error:  # noqa: BLE001 - the user's own code
            raise _ModelError(f"{spec}({_kwargs_text(kwargs)}) failed: {_first_line(error)}") from error

    return _meta_first(build, device)


def _model(spec: str, kwargs: dict[str, Any], device: str) -> Any:
    from torch import nn

    if ":" not in spec:
        model = _torchvision_model(spec, kwargs, device)
    else:
        target = _callable(spec)
        if isinstance(target, nn.Module):
            if kwargs:
                raise UsageError(f"{spec} is a module instance, not a constructor; it takes no --kwargs")
            model = target
        else:
            model = _built(spec, target, kwargs, device)
        if not isinstance(model, nn.Module):
            raise UsageError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    # count() never changes a model; this one is ours, so eval mode is set on it directly
    return model.eval()


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _default_sizes(spec: str, model: Any) -> list[tuple[int, ...]]:
    """The size the model was built for (a ViT's ``image_size``), else the torchvision weights'
    crop size (video models: a 16-frame clip; optical flow: two frames), else 1x3x224x224."""
    if ":" in spec:
        return [_DEFAULT_SIZE]
    import torchvision

    transforms = torchvision.models.get_model_weights(spec).DEFAULT.transforms()
    side = getattr(transforms, "crop_size", None) or getattr(transforms, "resize_size", None)
    built = getattr(model, "image_size", None)
    if isinstance(built, int):
        # the default weights may be for another size (ViT-H/14's are 518, the model is built at 224)
        side = [built]
    if not side:
        side = list(_DEFAULT_SIZE[2:])
    height, width = (side[0], side[0]) if len(side) == 1 else side[:2]
    if spec in torchvision.models.list_models(module=torchvision.models.video):
        return [(1, 3, _VIDEO_FRAMES, height, width)]
    if spec in _FRAME_PAIRS:
        return [(1, 3, height, width)] * 2
    return [(1, 3, height, width)]


# -- the report -----------------------------------------------------------------------------------
def _report(prof: Any, args: argparse.Namespace) -> str:
    if args.branches is not None:
        try:
            return prof.branches(args.branches)
        except KeyError as error:
            raise UsageError(f"--branches: {error.args[0]}") from None
    if args.format == "json":
        return prof.to_json()
    if args.format == "csv":
        return prof.to_csv().rstrip("\n")
    return prof.table(depth=_depth(args), top=args.top, fmt="simple" if args.format == "table" else "markdown",
                      backward=args.backward)


def _depth(args: argparse.Namespace) -> int:
    return _DEFAULT_DEPTH if args.depth is None else args.depth


def _check_outputs(args: argparse.Namespace) -> None:
    if args.format in ("json", "csv") and args.plot is None:
        given = [flag for flag, value in (("--depth", args.depth), ("--top", args.top)) if value is not None]
        if given:
            raise UsageError(f"--format {args.format} holds every record with exact figures; "
                             f"{' and '.join(given)} fold tables only (use --format table or markdown, "
                             f"or fold the records yourself)")
    if args.output is not None:
        suffix = os.path.splitext(args.output)[1].lower()
        if suffix in _NOT_TEXT:
            raise UsageError(f"--output writes the text report, not a {suffix} file; "
                             f"use {_NOT_TEXT[suffix]} {args.output}")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot draws a PNG; give a path ending in .png, got {args.plot!r}")


def _advice(error: BaseException) -> str:
    """The error's first line, with its advice in command-line words."""
    return (_first_line(error).replace("device='cpu'", "--device cpu").replace("device='meta'", "--device meta")
            .replace('device="cpu"', "--device cpu"))


def _count(model: Any, sizes: list[tuple[int, ...]], dtype: Any, args: argparse.Namespace) -> Any:
    import torch
    import torchflops as tf
    from ._api import _token_ids

    shown = " and ".join("x".join(map(str, s)) for s in sizes)
    counter = tf.count if args.parallel is None else args.parallel.count
    try:
        if args.time:
            return tf.time(model, input_size=sizes, dtype=dtype or torch.float32, repeats=args.repeats)
        return counter(model, input_size=sizes, dtype=dtype or torch.float32, device=args.device)
    except Exception as error:  # noqa: BLE001 - the model's own failure on this input
        if dtype is None and _token_ids(error):
            warnings.warn("the input feeds an nn.Embedding: counted with token ids (--dtype int64)")
            return _count(model, sizes, torch.int64, args)
        if isinstance(error, tf.ShapeOnlyError) and not args.device_given and args.parallel is None:
            # a model that cannot run shape-only is counted on real CPU tensors, and says so
            warnings.warn(f"{type(model).__name__} cannot run shape-only; counted on real tensors "
                          "(--device cpu)")
            args.device = "cpu"
            return _count(_model(args.model, _kwargs(args.kwargs), "cpu"), sizes, dtype, args)
        hint = ""
        if _token_ids(error):
            hint = "; the input feeds an nn.Embedding: pass --dtype int64 (token ids)"
        raise _ModelError(f"{type(model).__name__} failed on input {shown}: {_advice(error)}{hint}") from error


def _run(args: argparse.Namespace) -> str:
    if args.list:
        return "\n".join(_zoo())
    if args.calibrate:
        import torchflops as tf
        return str(tf.calibrate())
    if args.model is None:
        raise UsageError("give a MODEL (a torchvision name such as googlenet, or module:callable), or --list")
    sizes = _sizes(args.input_size)
    dtype = _dtype(args.dtype) if args.dtype is not None else None
    kwargs = _kwargs(args.kwargs)
    _count_option(args.depth, "--depth", 0)
    _count_option(args.top, "--top", 1)
    if args.optimizer is not None and not args.memory:
        raise UsageError("--optimizer says which optimizer --memory counts; add --memory")
    if args.memory and args.format in ("json", "csv"):
        raise UsageError(f"--memory prints a summary table; it cannot be combined with --format {args.format}")
    if args.optimizer is not None:
        from torchflops._memory import optimizer_name
        try:
            optimizer_name(args.optimizer)
        except ValueError as error:
            raise UsageError(f"--optimizer: {error}") from None
    if args.branches is not None and args.format != "table":
        raise UsageError(f"--branches prints a table; it cannot be combined with --format {args.format}")
    _check_outputs(args)
    _check_parallel(args)
    with _parallel_block(args):
        return _counted(args, sizes, dtype, kwargs)


def _counted(args: argparse.Namespace, sizes: Optional[list[tuple[int, ...]]], dtype: Any,
             kwargs: dict[str, Any]) -> str:
    if args.model.startswith(_hub.PREFIX):
        count = None if args.parallel is None else partial(_parallel_count, args.parallel)
        try:
            return _hub.report(args, _report if args.parallel is None else _parallel_report, count)
        except _hub.HubError as error:
            raise UsageError(str(error)) from error
    hardware = _hardware_option(args)
    model = _model(args.model, kwargs, "cpu" if args.time else args.device)
    if args.parallel is not None:
        _parallel_check(args.parallel, model)
    prof = _count(model, sizes or _default_sizes(args.model, model), dtype, args)
    if args.parallel is not None:
        text = _parallel_report(prof, args)
    else:
        text = _time_report(prof, args, hardware) if args.time or hardware is not None else _report(prof, args)
        if args.memory:
            text += "\n\n" + _memory_report(prof, args)
    if args.plot is not None:
        prof.plot(args.plot, depth=_depth(args), top=args.top or 15)
    if args.html is not None:
        try:
            prof.to_html(args.html)
        except OSError as error:
            raise UsageError(f"cannot write --html {args.html!r}: {error.strerror}") from None
    return text


# -- parallel plans --------------------------------------------------------------------------------
def _check_parallel(args: argparse.Namespace) -> None:
    """--tp and --fsdp: positive, and only with the options that count one rank shape-only."""
    if args.tp is None and args.fsdp is None:
        return
    _count_option(args.tp, "--tp", 1)
    _count_option(args.fsdp, "--fsdp", 1)
    others = [("--time", args.time), ("--hardware", args.hardware is not None),
              ("--generate", args.generate is not None), ("--branches", args.branches is not None),
              (f"--device {args.device}", args.device != "meta"), (f"--format {args.format}", args.format == "csv")]
    refused = [flag for flag, given in others if given]
    if refused:
        raise UsageError(f"--tp and --fsdp count one rank shape-only; they cannot be combined with {refused[0]}")


@contextlib.contextmanager
def _parallel_block(args: argparse.Namespace) -> Iterator[None]:
    """The fake process group of --tp/--fsdp for the block (``args.parallel``; None without them)."""
    args.parallel = None
    if args.tp is None and args.fsdp is None:
        yield
        return
    import torchflops as tf

    with tf.parallel(tp=args.tp or 1, fsdp=args.fsdp or 1) as par:
        args.parallel = par
        yield


def _parallel_check(par: Any, model: Any) -> None:
    """A plan the model cannot take is a usage error."""
    try:
        par.check(model)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _parallel_count(par: Any, model: Any, *inputs: Any, **options: Any) -> Any:
    _parallel_check(par, model)
    return par.count(model, *inputs, **options)


def _parallel_report(prof: Any, args: argparse.Namespace) -> str:
    """The logical model's report, then what one rank computes, holds and sends."""
    from ._parallelview import rank_dict, rank_summary

    text = _report(prof, args)
    if args.format == "json":
        return json.dumps({**json.loads(text), "parallel": rank_dict(args.parallel)}, indent=2)
    memory = prof.memory(args.optimizer) if args.memory else None
    return text + "\n\n" + rank_summary(prof, args.parallel, memory, args.optimizer)


def _hardware_option(args: argparse.Namespace) -> Any:
    import torchflops as tf

    _count_option(args.repeats, "--repeats", 1)
    if args.hardware is None:
        return None
    if args.hardware == "cpu":
        return tf.calibrate()
    try:
        return tf.hardware(args.hardware)
    except ValueError as error:
        raise UsageError(f"--hardware: {error}") from None


def _time_report(prof: Any, args: argparse.Namespace, hardware: Any) -> str:
    """Measured (``--time``) and estimated (``--hardware``) seconds per row, and the figures in JSON/CSV."""
    from ._timeview import estimate_dict, time_table, with_estimate_csv

    if args.branches is not None:
        raise UsageError("--branches cannot be combined with --time or --hardware")
    try:
        estimate = prof.estimate_time(hardware) if hardware is not None else None
    except ValueError as error:
        raise UsageError(f"--hardware: {error}") from None
    if args.format == "json":
        data = prof.to_dict()
        if estimate is not None:
            data["estimate"] = estimate_dict(estimate)
        return json.dumps(data, indent=2)
    if args.format == "csv":
        text = prof.to_csv()
        return (with_estimate_csv(text, estimate) if estimate is not None else text).rstrip("\n")
    return time_table(prof, estimate, depth=args.depth, fmt="simple" if args.format == "table" else "markdown")


def _memory_report(prof: Any, args: argparse.Namespace) -> str:
    """The memory summary of ``--memory``, with the optimizer of ``--optimizer``."""
    from torchflops._render import memory_summary

    return memory_summary(prof, prof.memory(args.optimizer), args.optimizer)


def _fail(problem: object) -> int:
    print(f"torchflops: error: {problem}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user error)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = _parser().parse_args(argv)
    except UsageError as error:
        return _fail(error)
    args.device_given = any(a == "--device" or a.startswith("--device=") for a in argv)
    if args.debug:
        text = _run(args)   # tracebacks and warnings as Python shows them
    else:
        problem: Optional[UsageError] = None
        with warnings.catch_warnings(record=True) as caught:
            try:
                text = _run(args)
            except UsageError as error:
                problem = error
        for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught):
            print(f"torchflops: warning: {message}", file=sys.stderr)
        if problem is not None:
            return _fail(problem)
    if args.output is None:
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # the reader stopped early (`torchflops --list | head`); Python's documented recipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    except OSError as error:
        return _fail(f"cannot write --output {args.output!r}: {error.strerror}")
    return 0
