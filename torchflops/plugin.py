"""pytest plugin: the ``flops`` fixture, the ``flops_budget`` marker, baselines and a summary.

It loads in every pytest run where torchflops is installed, so this module imports neither torch
nor the rest of torchflops; they are imported when a test uses the fixture or the marker.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytest

MARKER = "flops_budget"
# the budget limits (torchflops._budget.LIMITS), repeated so that the plugin imports nothing heavy
FIGURES = ("macs", "flops", "backward_flops", "comparisons", "params")


@dataclass(frozen=True)
class Measured:
    """The figures of one profile made in one test, and the budget it was held to."""

    model: str
    figures: dict[str, int]
    limits: dict[str, float]


@dataclass
class _State:
    baseline_path: Optional[str]
    tolerance: float
    update: bool
    baseline: dict[str, list[dict[str, Any]]]
    measured: dict[str, list[Measured]] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)
    shrunk: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()
_PROFILES = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchflops", "torchflops op budgets")
    group.addoption("--flops-baseline", metavar="PATH", default=None,
                    help="JSON file of recorded figures per test; a test whose figures grow fails")
    group.addoption("--flops-tolerance", metavar="PERCENT", type=float, default=0.0,
                    help="growth over the baseline that still passes, in percent (default 0)")
    group.addoption("--flops-update-baseline", action="store_true", default=False,
                    help="record this run's figures in the --flops-baseline file instead of comparing")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(macs=None, flops=None, backward_flops=None, comparisons=None, params=None): "
        "fail the test when a profile made through the torchflops `flops` fixture exceeds a limit "
        "(numbers or strings such as '1.4G'), or when the test made no such profile")
    path = config.getoption("flops_baseline")
    tolerance = config.getoption("flops_tolerance")
    update = config.getoption("flops_update_baseline")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise pytest.UsageError(f"--flops-tolerance must be a percentage >= 0, got {tolerance}")
    if update and path is None:
        raise pytest.UsageError("--flops-update-baseline needs --flops-baseline=PATH (the file to write)")
    config.stash[_STATE] = _State(path, tolerance, update, _load_baseline(path, update))


def _load_baseline(path: Optional[str], update: bool) -> dict[str, list[dict[str, Any]]]:
    if path is None or (update and not os.path.exists(path)):
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise pytest.UsageError(f"--flops-baseline file {path!r} does not exist; "
                                "create it with --flops-update-baseline") from None
    except (OSError, ValueError) as error:
        raise pytest.UsageError(f"--flops-baseline file {path!r} is not readable JSON: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise pytest.UsageError(f"--flops-baseline file {path!r} must map test ids to lists of figures")
    return data


class Flops:
    """The ``flops`` fixture: ``flops(model, x)`` / ``flops(model, input_size=...)`` is
    ``torchflops.count``; ``with flops(model) as prof: model(x)`` is ``torchflops.profile``.
    Every profile it makes is checked against the test's ``flops_budget`` marker when the test ends.
    """

    def __init__(self, profiles: list) -> None:
        self.profiles = profiles

    def __call__(self, model: Any, *inputs: Any, input_size: Any = None, kwargs: Any = None,
                 **options: Any) -> Any:
        import torchflops as tf

        if inputs or input_size is not None or kwargs is not None:
            result = tf.count(model, *inputs, input_size=input_size, kwargs=kwargs, **options)
            self.profiles.append(result)
            return result
        return self._profiling(tf, model, options)

    @contextlib.contextmanager
    def _profiling(self, tf: Any, model: Any, options: dict[str, Any]) -> Iterator[Any]:
        with tf.profile(model, **options) as result:
            # the profile is filled when the block ends, before the budget is checked
            self.profiles.append(result)
            yield result


@pytest.fixture
def flops(request: pytest.FixtureRequest) -> Flops:
    """Count a model like ``torchflops.count``, or ``with flops(model): model(x)``; budgets apply."""
    return Flops(request.node.stash.setdefault(_PROFILES, []))


def _limits(item: pytest.Item) -> Optional[dict[str, float]]:
    """The validated limits of the test's ``flops_budget`` marker, or None without one."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if marker.args:
        raise TypeError(f"takes keyword limits only ({', '.join(f'{n}=...' for n in FIGURES)}), "
                        f"got positional {marker.args!r}")
    from torchflops._budget import check_limits
    return check_limits(marker.kwargs)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # a malformed marker is an error of that test, reported before its body runs
    try:
        _limits(item)
    except (TypeError, ValueError) as error:
        problem = str(error)
    else:
        return
    pytest.fail(f"@pytest.mark.{MARKER} on {item.nodeid}: {problem}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    state = item.config.stash[_STATE]
    state.ran.add(item.nodeid)
    profiles = item.stash.get(_PROFILES, [])
    limits = _limits(item)
    if not profiles:
        if limits is not None:
            # a budget that checked nothing would pass forever, whatever the model costs
            pytest.fail(f"@pytest.mark.{MARKER} on {item.nodeid} checked nothing: the test made no profile "
                        "through the `flops` fixture (flops(model, input_size=...) or "
                        "`with flops(model): model(x)`)", pytrace=False)
        return result
    limits = limits or {}
    # figures shown: the usual ones, and any other one the budget limits (elementwise_flops)
    shown = FIGURES + tuple(n for n in limits if n not in FIGURES)
    measured = [Measured(p.model_name, {n: getattr(p.total, n) for n in shown}, limits)
                for p in profiles]
    state.measured[item.nodeid] = measured
    problems = [str(e) for e in _budget_failures(profiles, limits)]
    problems += _compare_baseline(state, item.nodeid, measured)
    profiles.clear()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result


def _budget_failures(profiles: list, limits: dict[str, Any]) -> list[AssertionError]:
    if not limits:
        return []
    from torchflops._budget import BudgetExceeded, assert_budget
    failures: list[AssertionError] = []
    for p in profiles:
        try:
            assert_budget(p, **limits)
        except BudgetExceeded as error:
            failures.append(error)
    return failures


def _compare_baseline(state: _State, nodeid: str, measured: list[Measured]) -> list[str]:
    """Growth beyond the tolerance fails the test; shrinkage is noted for the summary."""
    if state.baseline_path is None or state.update:
        return []
    recorded = state.baseline.get(nodeid)
    if recorded is None:
        state.unrecorded.append(nodeid)
        return []
    if len(recorded) != len(measured):
        return [f"{nodeid} made {len(measured)} profile(s), the baseline {state.baseline_path} records "
                f"{len(recorded)}; rerun with --flops-update-baseline if that is intended"]
    grew = []
    for index, (old, new) in enumerate(zip(recorded, measured)):
        where = f"{new.model}" + (f" (profile {index + 1})" if len(measured) > 1 else "")
        for name in FIGURES:
            before, now = old.get(name), new.figures[name]
            if not isinstance(before, int):
                continue
            if now > before * (1 + state.tolerance / 100):
                grew.append(f"{where}: {name} grew from {before:,} to {now:,} ({_change(before, now)}) "
                            f"over the baseline {state.baseline_path} (tolerance {state.tolerance:g}%)")
            elif now < before:
                state.shrunk.append(f"{nodeid} {where}: {name} {before:,} -> {now:,} ({_change(before, now)})")
    return grew


def _change(before: int, now: int) -> str:
    return "new" if before == 0 else f"{100 * (now - before) / before:+.2f}%"


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or not state.update or state.baseline_path is None:
        return
    baseline = dict(state.baseline)
    for nodeid in state.ran:
        baseline.pop(nodeid, None)
    for nodeid, measured in state.measured.items():
        baseline[nodeid] = [{"model": m.model, **m.figures} for m in measured]
    with open(state.baseline_path, "w", encoding="utf-8") as file:
        json.dump(dict(sorted(baseline.items())), file, indent=2)
        file.write("\n")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not (state.measured or state.shrunk or state.unrecorded):
        return
    # torch is loaded by now whenever a test profiled; the summary only reads plain figures
    from torchflops._render import human

    write = terminalreporter.write_line
    terminalreporter.section("torchflops")
    for nodeid, measured in state.measured.items():
        for index, m in enumerate(measured, 1):
            cells = []
            for name in m.figures:
                text = f"{name} {human(m.figures[name])}"
                if name in m.limits:
                    limit = m.limits[name]
                    verdict = "OVER" if m.figures[name] > limit else "ok"
                    text += f" / {human(int(limit))} {verdict}"
                cells.append(text)
            budget = "" if m.limits else " (no budget)"
            which = f" #{index}" if len(measured) > 1 else ""
            write(f"{nodeid} [{m.model}{which}]{budget}: {', '.join(cells)}")
    if state.shrunk:
        write(f"smaller than the baseline {state.baseline_path} (record with --flops-update-baseline):")
        for line in state.shrunk:
            write(f"  {line}")
    if state.unrecorded:
        write(f"not in the baseline {state.baseline_path}: {', '.join(state.unrecorded)}")
    if state.update:
        write(f"baseline written: {state.baseline_path}")
