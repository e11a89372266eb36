"""README blocks outside the worked examples run as pasted: the API in five lines, Extending."""
import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block(heading):
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run(code):
    printed = io.StringIO()
    namespace = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), namespace)
    return printed.getvalue(), namespace


def test_the_api_in_five_lines_runs_as_pasted():
    pytest.importorskip("torchvision")
    printed, namespace = run(block("The API in five lines"))
    # GoogLeNet's published 1.498 "GFLOPS", and inception3a's 121,626,624 (test_cli derives it)
    assert printed.split()[:2] == ["1498376192", "121626624"]
    # the profile of the real pass counts what the shape-only one does
    assert namespace["prof2"].total == namespace["prof"].total


def test_extending_says_what_backward_a_formula_gets():
    printed, namespace = run(block("Extending"))
    # Linear(8, 16) on 4 rows: 512 MACs, input data (no input gradient): backward 2 x 512
    # MyBlock: 4 x 16 x 32 = 2,048 MACs, input and weight need gradients: backward 2 x 2 x 2,048
    assert printed.split() == [str(512 + 2_048), str(2 * 512 + 4 * 2_048)]
    # the same formula returning macs only: flops follow, backward is zero
    import torchflops as tf
    only_macs = tf.count(namespace["model"], input_size=(4, 8),
                         formulas={namespace["MyBlock"]: lambda m, c: tf.Counts(macs=2_048)})
    assert only_macs.records[-1].counts.flops == 4_096
    assert only_macs.records[-1].counts.backward_flops == 0
    assert "no backward FLOPs" in README.split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
