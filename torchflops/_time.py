"""``time``: real passes on the model's device, timed per record and per module.

The counts come from the same capture as ``count`` (a ``Session``), given a clock: each counted
call and each module call gets the marks taken when it began and ended. Uninstrumented passes,
interleaved with the instrumented ones, give the whole pass's latency; the difference between the
two is the instrumentation's own cost, shared out over the module calls by how many recorded
events they contain, and subtracted. The backward is timed per module call through hooks on the
autograd nodes that call's forward created (module backward hooks cannot wrap the outputs that
in-place activations modify).
"""
from __future__ import annotations

import json
import math
import statistics
import time as _clock
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ._api import (_PASS_LOCK, SizeLike, _check_model, _check_strict, _input_sizes, _inputs, _replacements,
                   _restore, _snapshot, _substitute, _unwrapped)
from ._capture import RawCall, Session
from ._hardware import Hardware, PeakKey
from ._profile import Record
from ._registry import Resolver, validate_overrides
from ._render import Profile
from ._roofline import default_dtype
from ._shortcuts import iter_tensors

__all__ = ["time", "TimedProfile", "TimedRecord"]


@dataclass(frozen=True)
class TimedRecord(Record):
    """A ``Record`` with its measured forward time: median, min and max seconds over the repeats;
    ``backward_latency`` (median seconds) for a module's call when the backward was timed.
    An ATen-level record (work no Python-level call announced) has NaN: its time is its module's."""

    latency: float = 0.0
    latency_min: float = 0.0
    latency_max: float = 0.0
    backward_latency: Optional[float] = None
    latencies: tuple[float, ...] = ()   # one per timed pass, in order

    @property
    def achieved_flops(self) -> float:
        """Forward FLOPs over the median latency (FLOP/s)."""
        return self.counts.flops / self.latency if self.latency > 0 else 0.0

    def mfu(self, hardware: Hardware, dtype: PeakKey = torch.float32) -> float:
        """Achieved FLOP/s as a fraction of ``hardware``'s peak for ``dtype``."""
        return self.achieved_flops / _hardware(hardware).peak(dtype)


def _hardware(value: object) -> Hardware:
    if not isinstance(value, Hardware):
        raise TypeError(f"hardware must be a torchflops.Hardware, got {type(value).__name__}")
    return value


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


class TimedProfile(Profile):
    """A ``Profile`` whose records carry measured latency; ``latency`` is the whole forward pass's
    median (uninstrumented), ``backward_latency`` the backward's when it was timed."""

    latency: float
    latency_min: float
    latency_max: float
    backward_latency: Optional[float]
    timing_overhead: float           # seconds per forward pass the per-module timing added
    backward_timing_overhead: float  # the same for the backward (0 unless timed)
    repeats: int

    @property
    def achieved_flops(self) -> float:
        """Forward FLOPs of the pass over its median latency (FLOP/s)."""
        return self.total.flops / self.latency

    def mfu(self, hardware: Hardware, dtype: Optional[PeakKey] = None) -> float:
        """Achieved FLOP/s as a fraction of ``hardware``'s peak (``dtype``: the model's)."""
        return self.achieved_flops / _hardware(hardware).peak(default_dtype(self) if dtype is None else dtype)

    def module_latency(self, name: str, backward: bool = False) -> float:
        """Median seconds of module ``name``'s calls in one pass (overhead subtracted); ``""`` is
        the whole instrumented pass. A module inside one counted as a whole has no time of its own."""
        return _median(self.module_times(name, backward))

    def module_times(self, name: str, backward: bool = False) -> tuple[float, ...]:
        """Seconds of module ``name``'s calls, one figure per timed pass (overhead subtracted).
        Times of one pass add up (children within their parent); medians over passes need not."""
        self.module(name)   # KeyError with close matches for an unknown name
        table = self._backward_times if backward else self._module_times
        if backward and table is None:
            raise ValueError("the backward was not timed: pass backward=True to tf.time")
        if name not in table:
            raise KeyError(f"module {name!r} runs inside a module counted as a whole; it has no time of its own")
        return table[name]

    def timed_children(self, name: str) -> list[str]:
        """Direct children of ``name`` that have a time of their own (called, outside counted wholes)."""
        return [c for c in self.children(name) if c in self._module_times]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for row, record in zip(out["records"], self.records):
            row.update(latency_s=record.latency, latency_min_s=record.latency_min,
                       latency_max_s=record.latency_max, backward_latency_s=record.backward_latency)
        out.update(latency_s=self.latency, latency_min_s=self.latency_min, latency_max_s=self.latency_max,
                   backward_latency_s=self.backward_latency, timing_overhead_s=self.timing_overhead,
                   repeats=self.repeats)
        return out

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """``to_csv`` with the measured seconds as extra columns (the total row: the whole pass)."""
        from ._timeview import append_columns
        rows = [(r.latency, r.latency_min, r.latency_max, r.backward_latency) for r in self.records]
        rows.append((self.latency, self.latency_min, self.latency_max, self.backward_latency))
        return append_columns(super().to_csv(), ("latency_s", "latency_min_s", "latency_max_s",
                                                 "backward_latency_s"), rows)


# -- clocks ---------------------------------------------------------------------------------------------
class _Clock:
    """Time marks: ``perf_counter`` on the CPU; CUDA events on a GPU, read after one synchronisation
    (a per-call synchronisation would serialise the launches being timed)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return _clock.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start


# -- the model's device and state -------------------------------------------------------------------------
def _device(modules: list[tuple[str, nn.Module]], device: object) -> torch.device:
    tensors = [(f"{prefix}.{key}" if prefix else key, t) for prefix, m in modules
               for store in (m._parameters, m._buffers) for key, t in store.items() if t is not None]
    for name, tensor in tensors:
        if tensor.is_meta or isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            raise ValueError(f"tf.time runs the model and needs real tensors, but {name} is on the meta device "
                             "(or not initialized); build the model on a real device, or count it shape-only "
                             "with tf.count")
    where = {t.device for _, t in tensors}
    if len(where) > 1:
        raise ValueError(f"tf.time times a model on one device; its tensors are on {sorted(map(str, where))}")
    found = where.pop() if where else None
    if device is not None:
        if isinstance(device, str):
            device = torch.device(device)
        if not isinstance(device, torch.device):
            raise TypeError(f"device must be None (the model's), a str or a torch.device, got {device!r}")
        if device.type == "meta":
            raise ValueError("tf.time runs the model and needs real tensors; device='meta' is shape-only "
                             "(use tf.count)")
        if found is not None and device != found and not (device.index is None and device.type == found.type):
            raise ValueError(f"the model is on {found}; tf.time runs it where it is (move it first)")
        found = found or device
    found = found or torch.device("cpu")
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {found} is not available on this machine")
    return found


def _random_inputs(sizes: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device) -> tuple:
    # random rather than zeros: some kernels take shortcuts on zeros
    generator = torch.Generator(device="cpu").manual_seed(0)
    if dtype.is_floating_point:
        return tuple(torch.randn(s, generator=generator).to(device=device, dtype=dtype) for s in sizes)
    return tuple(torch.zeros(s, dtype=dtype, device=device) for s in sizes)


class _Gradients:
    """The ``.grad`` of every parameter and leaf input, put back after the timed backward passes."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self._saved = [(t, t.grad) for t in {id(t): t for t in tensors}.values()]

    def clear(self) -> None:
        for tensor, _ in self._saved:
            tensor.grad = None

    def restore(self) -> None:
        for tensor, grad in self._saved:
            tensor.grad = grad


def _loss(output: Any) -> torch.Tensor:
    for tensor in iter_tensors(output):
        if tensor.is_floating_point() and tensor.requires_grad:
            return tensor
    raise ValueError("backward=True: no floating output of the model needs a gradient (are all its "
                     "parameters frozen and its inputs without requires_grad?)")


# -- backward timing ------------------------------------------------------------------------------------
_PROBE: Optional[torch.Tensor] = None


def _sequence_now() -> int:
    """The autograd sequence number the next node of this thread gets (a node made now has it)."""
    global _PROBE
    if _PROBE is None:
        _PROBE = torch.zeros(1, requires_grad=True)
    return _PROBE.view(-1).grad_fn._sequence_nr()


_CHAIN = 256


class _Views(nn.Module):
    """``_CHAIN`` functional calls that cost nothing: what the capture's mode adds to each."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(_CHAIN):
            x = x.view(-1)
        return x


def _session_cost(clock: _Clock) -> tuple[float, float]:
    """Seconds the capture adds per module call and per functional call it sees: a chain of
    ``_CHAIN`` ReLU modules and one of ``_CHAIN`` views on one element, each run with and without
    a clocked session (best of five)."""
    x = torch.ones(1)
    resolver = Resolver({})

    def cost(model: nn.Module) -> float:
        modules = list(model.named_modules())

        def run(session: Optional[Session]) -> float:
            start = _clock.perf_counter()
            if session is None:
                model(x)
            else:
                with session:
                    model(x)
            return _clock.perf_counter() - start

        plain = min(run(None) for _ in range(5))
        hooked = min(run(Session(model, resolver, modules, clock=clock.mark)) for _ in range(5))
        return max(0.0, hooked - plain) / _CHAIN

    with torch.no_grad():
        return cost(nn.Sequential(*(nn.ReLU() for _ in range(_CHAIN)))), cost(_Views())


def _hook_cost() -> float:
    """Seconds the two timing hooks add to one autograd node: a chain of tiny nodes run
    backward with and without them (best of five each; the hooks run on the CPU on every device)."""
    clock = _Clock(torch.device("cpu"))

    def run(hooked: bool) -> float:
        leaf = torch.ones(1, requires_grad=True)
        timer = _GraphTimer([], clock)
        x = leaf
        for _ in range(_CHAIN):
            x = x * 1.0
            if hooked:
                timer._hook(x.grad_fn)
        start = _clock.perf_counter()
        x.backward()
        return _clock.perf_counter() - start

    with torch.enable_grad():
        plain = min(run(False) for _ in range(5))
        hooked = min(run(True) for _ in range(5))
    return max(0.0, hooked - plain) / _CHAIN


class _GraphTimer:
    """Per module call, the autograd nodes its forward created; hooks on them mark when each runs."""

    def __init__(self, modules: list[tuple[str, nn.Module]], clock: _Clock) -> None:
        self._names = {id(m): n for n, m in modules}
        self._clock = clock
        self._floors: list[int] = []
        self.calls: list[tuple[str, list[int]]] = []    # forward completion order: name, node indices
        self._index: dict[int, int] = {}
        self._nodes: list[Any] = []
        self.starts: dict[int, Any] = {}
        self.ends: dict[int, Any] = {}

    def pre(self, module: nn.Module, args: tuple) -> None:
        if id(module) in self._names:
            self._floors.append(_sequence_now())

    def post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if id(module) not in self._names or not self._floors:
            return
        floor = self._floors.pop()
        self.calls.append((self._names[id(module)], self._created(output, floor)))

    def _created(self, output: Any, floor: int) -> list[int]:
        found, todo, seen = [], [t.grad_fn for t in iter_tensors(output) if t.grad_fn is not None], set()
        while todo:
            node = todo.pop()
            if node is None or id(node) in seen or type(node).__name__ == "AccumulateGrad":
                continue
            seen.add(id(node))
            if node._sequence_nr() < floor:
                continue
            found.append(self._hook(node))
            todo.extend(next_node for next_node, _ in node.next_functions)
        return found

    def _hook(self, node: Any) -> int:
        index = self._index.get(id(node))
        if index is None:
            index = self._index[id(node)] = len(self._nodes)
            self._nodes.append(node)
            node.register_prehook(partial(self._started, index))
            node.register_hook(partial(self._ended, index))
        return index

    # autograd hooks: returning None leaves the gradients as they are
    def _started(self, index: int, grads: Any) -> None:
        if index not in self.starts:
            self.starts[index] = self._clock.mark()

    def _ended(self, index: int, grads_in: Any, grads_out: Any) -> None:
        self.ends[index] = self._clock.mark()

    def times(self, origin: Any, per_node: float) -> list[tuple[str, float]]:
        """Per call: seconds from its first node starting to its last ending, less the hooks' own
        cost inside that span (``per_node`` per node)."""
        self._clock.sync()
        out = []
        for name, nodes in self.calls:
            ran = [i for i in nodes if i in self.starts and i in self.ends]
            if not ran:
                out.append((name, 0.0))
                continue
            start = min(self._clock.seconds(origin, self.starts[i]) for i in ran)
            end = max(self._clock.seconds(origin, self.ends[i]) for i in ran)
            out.append((name, max(0.0, end - start - per_node * (len(ran) - 1))))
        return out

    @property
    def node_count(self) -> int:
        return len(self.starts)


# -- the passes -------------------------------------------------------------------------------------------
@dataclass
class _Request:
    model: nn.Module
    modules: list[tuple[str, nn.Module]]
    args: tuple
    kwargs: dict
    resolver: Resolver
    clock: _Clock
    backward: bool

    def forward(self) -> Any:
        return self.model(*self.args, **self.kwargs)

    def clean(self) -> tuple[float, Optional[float]]:
        """One uninstrumented pass: forward seconds, and backward seconds when timed."""
        clock = self.clock
        start = clock.mark()
        out = self.forward()
        end = clock.mark()
        if not self.backward:
            clock.sync()
            return clock.seconds(start, end), None
        loss = _loss(out)
        grad = torch.ones_like(loss)
        begin = clock.mark()
        loss.backward(grad)
        finish = clock.mark()
        clock.sync()
        return clock.seconds(start, end), clock.seconds(begin, finish)

    def instrumented(self) -> tuple[Session, Any, Any]:
        session = Session(self.model, self.resolver, self.modules, clock=self.clock.mark)
        with session:
            origin = self.clock.mark()
            out = self.forward()
        self.clock.sync()
        return session, origin, out

    def graph_timed(self) -> tuple[_GraphTimer, float]:
        """A forward that notes each call's nodes, then a backward whose nodes mark their times."""
        timer = _GraphTimer(self.modules, self.clock)
        handles = [nn.modules.module.register_module_forward_pre_hook(timer.pre),
                   nn.modules.module.register_module_forward_hook(timer.post)]
        try:
            out = self.forward()
        finally:
            for handle in handles:
                handle.remove()
        loss = _loss(out)
        grad = torch.ones_like(loss)
        origin = self.clock.mark()
        loss.backward(grad)
        end = self.clock.mark()
        self.clock.sync()
        return timer, (origin, end)


def _check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def time(model: nn.Module, *inputs: Any, input_size: Optional[SizeLike] = None,
         dtype: torch.dtype = torch.float32, device: Union[str, torch.device, None] = None,
         repeats: int = 10, warmup: int = 2, backward: bool = False,
         kwargs: Optional[Mapping[str, Any]] = None, formulas: Optional[Mapping[object, Any]] = None,
         strict: bool = False) -> TimedProfile:
    """Run ``warmup`` then ``repeats`` real passes of ``model`` where it is and return its profile
    with measured latency per record and for the whole pass (medians; min and max too).

    The forward runs under ``torch.no_grad()`` unless ``backward=True``, which also times the
    backward of the first floating output (gradient of ones) per module call. ``input_size``
    inputs are random (seeded). The model is left as it was: mode, parameters, buffers (BatchNorm
    statistics), ``.grad`` of parameters and inputs, hooks.
    """
    _check_model(model)
    _check_strict(strict)
    model = _unwrapped(model)
    repeats = _check_int(repeats, "repeats", 1)
    warmup = _check_int(warmup, "warmup", 0)
    if not isinstance(backward, bool):
        raise TypeError(f"backward must be True or False, got {backward!r}")
    if inputs and input_size is not None:
        raise ValueError("give example inputs or input_size=, not both")
    sizes = _input_sizes(input_size) if input_size is not None else None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__}")
    kwargs = dict(kwargs or {})
    if any(t.is_meta for t in iter_tensors((inputs, kwargs))):
        raise ValueError("tf.time runs the model and needs real tensors; an input is on the meta device "
                         "(use tf.count for a shape-only count)")
    modules = list(model.named_modules())
    where = _device(modules, device)
    resolver = Resolver(validate_overrides(formulas))
    if sizes is not None:
        args, kw = _random_inputs(sizes, dtype, where), kwargs
    else:
        args, kw = _inputs(inputs, kwargs, None, dtype, where, fake=False)

    clock = _Clock(where)
    request = _Request(model, modules, args, kw, resolver, clock, backward)
    grads = _Gradients([p for _, m in modules for p in m._parameters.values() if p is not None]
                       + [t for t in iter_tensors((args, kw)) if t.is_leaf and t.requires_grad])
    counting = Session(model, resolver, modules)
    clean: list[tuple[float, Optional[float]]] = []
    passes: list[tuple[Session, Any]] = []
    graphs: list[tuple[_GraphTimer, tuple[Any, Any]]] = []
    with _PASS_LOCK:
        snapshot = _snapshot(modules)
        replacements = _replacements(snapshot, where, fake=False)
        grad_mode = torch.enable_grad() if backward else torch.no_grad()
        try:
            _substitute(snapshot, replacements)
            grads.clear()     # a backward would add into the gradients found
            with torch.inference_mode(False), grad_mode:
                with counting:      # counts and bytes, as count() records them
                    request.forward()
                for _ in range(warmup):
                    request.clean()
                    grads.clear()
                # interleaved, so that drift in the machine's speed reaches both alike
                for _ in range(repeats):
                    clean.append(request.clean())
                    grads.clear()
                    session, origin, _ = request.instrumented()
                    passes.append((session, origin))
                    if backward:
                        graphs.append(request.graph_timed())
                        grads.clear()
        finally:
            _restore(snapshot)
            grads.restore()

    meta = {"device": where.type, "input_shapes": [list(t.shape) for t in args if isinstance(t, torch.Tensor)],
            "timed": True}
    result = TimedProfile(model, counting.raw, counting.spans, meta=meta, modules=modules)
    _attach(result, counting, clean, passes, graphs, clock)
    result.check_unsupported(strict)
    return result


# -- from marks to latencies ---------------------------------------------------------------------------------
def _nesting(intervals: list[tuple[float, float]]) -> list[int]:
    """For intervals that nest or are disjoint: the index of each one's smallest enclosing interval (-1: none)."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], -intervals[i][1]))
    parent = [-1] * len(intervals)
    stack: list[int] = []
    for i in order:
        start, end = intervals[i]
        while stack and intervals[stack[-1]][1] < end:
            stack.pop()
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    return parent


def _one_pass(session: Session, origin: Any, clock: _Clock, costs: tuple[float, float]
              ) -> tuple[list[float], list[float], float]:
    """Seconds of each raw call and each span of one instrumented pass, each span less what the
    capture cost inside it (``costs``: per module call, per functional call seen); and that cost
    for the whole pass."""
    per_module, per_function = costs
    raw = [(clock.seconds(origin, a), clock.seconds(origin, b)) for a, b in session.marks]
    spans = [(clock.seconds(origin, a), clock.seconds(origin, b)) for a, b, _ in session.span_marks]
    parent = _nesting(spans)
    modules_inside = [0] * len(spans)
    for i in range(len(spans)):
        p = parent[i]
        while p != -1:
            modules_inside[p] += 1
            p = parent[p]
    cost = [per_module * n + per_function * seen for n, (_, _, seen) in zip(modules_inside, session.span_marks)]
    span_s = [max(0.0, (b - a) - c) for (a, b), c in zip(spans, cost)]
    return [b - a for a, b in raw], span_s, cost[-1] + per_module


def _attach(result: TimedProfile, counting: Session, clean: list[tuple[float, Optional[float]]],
            passes: list[tuple[Session, Any]], graphs: list[tuple[_GraphTimer, tuple[Any, Any]]],
            clock: _Clock) -> None:
    forward = [f for f, _ in clean]
    result.latency, result.latency_min, result.latency_max = _median(forward), min(forward), max(forward)
    result.repeats = len(forward)
    shape = (len(passes[0][0].raw), len(passes[0][0].spans))
    if any((len(s.raw), len(s.spans)) != shape for s, _ in passes):
        raise RuntimeError("the model's calls changed from one pass to the next; tf.time needs the same "
                           "calls every pass")
    costs = _session_cost(clock)
    per_pass = [_one_pass(s, origin, clock, costs) for s, origin in passes]
    result.timing_overhead = per_pass[0][2]

    spans = passes[0][0].spans
    module_times: dict[str, list[float]] = {}
    for repeat in per_pass:
        summed: dict[str, float] = {}
        for span, seconds in zip(spans, repeat[1]):
            summed[span.name] = summed.get(span.name, 0.0) + seconds
        for name, seconds in summed.items():
            module_times.setdefault(name, []).append(seconds)
    result._module_times = {name: tuple(v) for name, v in module_times.items()}

    backward_of = _backward(result, clean, graphs, clock)
    timed = _aligned(counting.raw, passes[0][0].raw)
    # the calls behind ``result.records`` (functional elementwise calls are kept apart)
    counted = [i for i, r in enumerate(counting.raw)
               if r.formula is not None and not getattr(r.formula, "elementwise", False)]
    occurrence: dict[str, int] = {}
    records = []
    for record, index in zip(result.records, counted):
        raw = counting.raw[index]
        # ATen-level work (no Python-level call to time) is part of its module's time only
        times = [repeat[0][timed[index]] for repeat in per_pass] if timed[index] is not None else [math.nan]
        back = None
        if raw.module is not None and backward_of is not None:
            k = occurrence.get(raw.name, 0)
            occurrence[raw.name] = k + 1
            calls = backward_of.get(raw.name, [])
            back = calls[k] if k < len(calls) else None
        records.append(TimedRecord(**{f: getattr(record, f) for f in record.__dataclass_fields__},
                                   latency=_median(times), latency_min=min(times), latency_max=max(times),
                                   backward_latency=back, latencies=tuple(times)))
    result.records = records


def _aligned(counted: list[RawCall], timed: list[RawCall]) -> list[Optional[int]]:
    """For each call of the counting pass, its index in a clocked pass (None: an ATen-level call,
    which only the counting pass records). The clocked calls are the others, in the same order."""
    out: list[Optional[int]] = []
    j = 0
    for call in counted:
        if j < len(timed) and (timed[j].name, timed[j].type) == (call.name, call.type):
            out.append(j)
            j += 1
        else:
            out.append(None)
    if j != len(timed):
        raise RuntimeError("the model's calls changed from one pass to the next; tf.time needs the same "
                           "calls every pass")
    return out


def _backward(result: TimedProfile, clean: list[tuple[float, Optional[float]]],
              graphs: list[tuple[_GraphTimer, tuple[Any, Any]]], clock: _Clock
              ) -> Optional[dict[str, list[float]]]:
    """Median backward seconds per module call (by name, in forward order); None when not timed."""
    result.backward_latency = None
    result._backward_times = None
    result.backward_timing_overhead = 0.0
    if not graphs:
        return None
    backward = [b for _, b in clean]
    result.backward_latency = _median(backward)
    per_node = _hook_cost()
    result.backward_timing_overhead = per_node * graphs[0][0].node_count
    per_call = [timer.times(origin, per_node) for timer, (origin, _) in graphs]
    calls: dict[str, list[float]] = {}
    module_times: dict[str, list[float]] = {}
    for position, (name, _) in enumerate(per_call[0]):
        samples = [repeat[position][1] for repeat in per_call]
        calls.setdefault(name, []).append(_median(samples))
        summed = module_times.setdefault(name, [0.0] * len(samples))
        for i, seconds in enumerate(samples):
            summed[i] += seconds
    result._backward_times = {name: tuple(v) for name, v in module_times.items()}
    return calls
