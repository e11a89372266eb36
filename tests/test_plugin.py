"""The pytest plugin, run in inner pytest sessions with ``pytester``.

The plugin is loaded there through its ``pytest11`` entry point, as in a user's project.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

# In-process pytester runs drop the modules they imported when they end; importing the counting
# stack here keeps the formula registry and its modules in step across the inner runs.
import torchflops._api  # noqa: F401
import torchflops._budget  # noqa: F401
import torchflops._formulas  # noqa: F401

pytest_plugins = ["pytester"]

# Linear(10, W, bias=False) on a 1x10 input: 10 x W MACs, 10 x W params; the input needs no
# gradient, so backward is the weight gradient only: 2 x 10 x W FLOPs.
MODEL = """
import pytest
import torch
from torch import nn

def net(width):
    return nn.Linear(10, width, bias=False)
"""


def make_tests(pytester, body, width=20):
    pytester.makepyfile(test_model=MODEL + f"\nWIDTH = {width}\n" + body)


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, torchflops.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_plugin_is_registered_through_its_entry_point(pytester):
    make_tests(pytester, "def test_fixture(flops):\n    assert callable(flops)\n")
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    # the options are grouped under the plugin's prefix
    assert "torchflops" in "\n".join(pytester.runpytest("--help").outlines)


def test_within_budget_passes_and_the_summary_lists_figures_vs_budget(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=200, params=1e3)
def test_cost(flops):
    prof = flops(net(WIDTH), input_size=(1, 10))
    assert prof.total.macs == 200
""")
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    # 200 MACs, 400 FLOPs, 400 backward FLOPs (weight gradient), 200 params vs 1,000
    result.stdout.fnmatch_lines([
        "*= torchflops =*",
        "test_model.py::test_cost [[]Linear[]]: macs 200 / 200 ok, flops 400, backward_flops 400, "
        "comparisons 0, params 200 / 1.00 K ok",
    ])


def test_overrun_fails_the_test_with_the_budget_message(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=150)
def test_cost(flops):
    flops(net(WIDTH), input_size=(1, 10))
""")
    result = pytester.runpytest()
    # a failure of the test itself (call phase), not an error in teardown
    result.assert_outcomes(failed=1, errors=0)
    reports = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed]
    assert [r.when for r in reports] == ["call"]
    # 200 / 150 - 1 = 33.33%
    result.stdout.fnmatch_lines([
        "Linear exceeds its budget (macs):",
        "  macs: 200 (200) > limit 150 (150), 33.33% over",
        "*macs 200 / 150 OVER*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_context_manager_form_is_counted_and_checked(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=199)
def test_over(flops):
    model = net(WIDTH)
    with flops(model) as prof:
        model(torch.zeros(1, 10))
        model(torch.zeros(1, 10))
    assert prof.total.macs == 400

@pytest.mark.flops_budget(macs=200)
def test_within(flops):
    model = net(WIDTH)
    with flops(model) as prof:
        model(torch.zeros(1, 10))
    assert prof.total.macs == 200
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*macs: 400 (400) > limit 199 (199), 101.01% over*"])


def test_every_profile_of_a_test_is_checked(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=250)
def test_two(flops):
    flops(net(WIDTH), input_size=(1, 10))
    flops(net(30), input_size=(1, 10))
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # only the second profile (300 MACs) is over 250
    result.stdout.fnmatch_lines(["*macs: 300 (300) > limit 250 (250), 20.00% over*",
                                 "*test_two [[]Linear #1[]]: macs 200 / 250 ok*",
                                 "*test_two [[]Linear #2[]]: macs 300 / 250 OVER*"])


def test_a_test_that_fails_on_its_own_is_not_also_a_budget_failure(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=1)
def test_broken(flops):
    flops(net(WIDTH), input_size=(1, 10))
    assert False, "its own failure"
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "its own failure" in result.stdout.str()
    assert "exceeds its budget" not in result.stdout.str()


@pytest.mark.parametrize("marker, words", [
    ("flops_budget(mac=100)", "unknown budget limit(s) 'mac'"),
    ("flops_budget(100)", "takes keyword limits only"),
    ("flops_budget(macs=-5)", "macs must be a finite number >= 0, got -5"),
    ("flops_budget()", "needs at least one limit"),
])
def test_a_malformed_marker_is_an_error_of_that_test(pytester, marker, words):
    make_tests(pytester, f"""
@pytest.mark.{marker}
def test_bad(flops):
    raise RuntimeError("the body must not run")

def test_other():
    pass
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.flops_budget on test_model.py::test_bad: *{words}*"])
    assert "the body must not run" not in result.stdout.str()


def test_strict_markers_accepts_the_marker(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=1e9)
def test_cost():
    pass

@pytest.mark.flops_budgett(macs=1)
def test_typo():
    pass
""")
    result = pytester.runpytest("--strict-markers")
    # the misspelt marker is refused at collection, the real one is not
    result.stdout.fnmatch_lines(["*'flops_budgett' not found in `markers` configuration option*"])
    assert "'flops_budget' not found" not in result.stdout.str()
    assert "flops_budget(macs=None" in "\n".join(pytester.runpytest("--markers").outlines)


BASELINE_TEST = """
def test_cost(flops):
    flops(net(WIDTH), input_size=(1, 10))

def test_nothing_measured():
    pass
"""


def record_baseline(pytester, width=20):
    make_tests(pytester, BASELINE_TEST, width)
    result = pytester.runpytest("--flops-baseline=base.json", "--flops-update-baseline")
    result.assert_outcomes(passed=2)
    return json.loads((pytester.path / "base.json").read_text())


def test_update_baseline_records_figures_per_test_id(pytester):
    assert record_baseline(pytester) == {"test_model.py::test_cost": [
        {"model": "Linear", "macs": 200, "flops": 400, "backward_flops": 400, "comparisons": 0, "params": 200}]}


def test_update_keeps_tests_that_did_not_run(pytester):
    record_baseline(pytester)
    pytester.makepyfile(test_other="""
def test_more(flops):
    from torch import nn
    flops(nn.Linear(2, 3, bias=False), input_size=(1, 2))
""")
    pytester.runpytest("test_other.py", "--flops-baseline=base.json", "--flops-update-baseline")
    recorded = json.loads((pytester.path / "base.json").read_text())
    assert sorted(recorded) == ["test_model.py::test_cost", "test_other.py::test_more"]
    assert recorded["test_other.py::test_more"][0]["macs"] == 6   # 2 x 3


def test_growth_over_the_baseline_fails(pytester):
    record_baseline(pytester, width=20)
    make_tests(pytester, BASELINE_TEST, width=21)
    result = pytester.runpytest("--flops-baseline=base.json")
    result.assert_outcomes(passed=1, failed=1)
    # 210 MACs against 200 recorded: +5.00%
    result.stdout.fnmatch_lines(["Linear: macs grew from 200 to 210 (+5.00%) over the baseline base.json "
                                 "(tolerance 0%)"])


def test_growth_within_the_tolerance_passes(pytester):
    record_baseline(pytester, width=20)
    make_tests(pytester, BASELINE_TEST, width=21)
    pytester.runpytest("--flops-baseline=base.json", "--flops-tolerance=5").assert_outcomes(passed=2)
    pytester.runpytest("--flops-baseline=base.json", "--flops-tolerance=4.9").assert_outcomes(passed=1, failed=1)


def test_shrinkage_is_reported_in_the_summary(pytester):
    record_baseline(pytester, width=20)
    make_tests(pytester, BASELINE_TEST, width=15)
    result = pytester.runpytest("--flops-baseline=base.json")
    result.assert_outcomes(passed=2)
    # 150 MACs against 200: -25.00%
    result.stdout.fnmatch_lines([
        "smaller than the baseline base.json (record with --flops-update-baseline):",
        "  test_model.py::test_cost Linear: macs 200 -> 150 (-25.00%)",
    ])


def test_a_test_missing_from_the_baseline_is_reported(pytester):
    pytester.path.joinpath("base.json").write_text("{}")
    make_tests(pytester, BASELINE_TEST)
    result = pytester.runpytest("--flops-baseline=base.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["not in the baseline base.json: test_model.py::test_cost"])


@pytest.mark.parametrize("args, words", [
    (["--flops-baseline=missing.json"], "does not exist; create it with --flops-update-baseline"),
    (["--flops-update-baseline"], "--flops-update-baseline needs --flops-baseline=PATH"),
    (["--flops-tolerance=-1"], "--flops-tolerance must be a percentage >= 0"),
])
def test_bad_options_are_usage_errors(pytester, args, words):
    make_tests(pytester, BASELINE_TEST)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{words}*"])


def test_the_readme_budget_example_and_its_message(pytester):
    pytest.importorskip("torchvision")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Budgets in CI", 1)[1].split("\n## ", 1)[0]
    (_, code), (_, shown) = re.findall(r"```(\w*)\n(.*?)```", section, re.S)[:2]
    pytester.makepyfile(test_model_cost=code)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([line.replace("[", "[[]") for line in shown.splitlines()])


def test_a_budget_that_checked_nothing_fails(pytester):
    make_tests(pytester, """
@pytest.mark.flops_budget(macs=1e9)
def test_counted_outside_the_fixture():
    import torchflops as tf
    tf.count(net(WIDTH), input_size=(1, 10))

@pytest.mark.flops_budget(macs="1G")
def test_counted(flops):
    flops(net(WIDTH), input_size=(1, 10))
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*test_counted_outside_the_fixture checked nothing: the test made no "
                                 "profile through the `flops` fixture*"])


def test_an_assert_budget_failure_shows_the_users_line_not_torchflops_source(pytester):
    make_tests(pytester, """
import torchflops as tf

def test_cost():
    prof = tf.count(net(WIDTH), input_size=(1, 10))
    tf.assert_budget(prof, macs="0.1K")
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert 'tf.assert_budget(prof, macs="0.1K")' in out
    assert "torchflops.BudgetExceeded: Linear exceeds its budget (macs):" in out
    # none of assert_budget's own lines
    assert "raise BudgetExceeded" not in out and "def assert_budget" not in out
