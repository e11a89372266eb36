"""The README's worked examples run as written and print exactly what the README shows.

In the "Worked examples" section every ```python block is followed by a ```text block holding its
output; the blocks of one ### subsection run in order in one namespace, like a notebook.

After a deliberate change of output (a new formula changes Inception v3's totals, say), rewrite the
text blocks and review the diff:

    python tests/test_readme_examples.py --update
"""
from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Worked examples"
UPDATE = "python tests/test_readme_examples.py --update"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
_HEADING = re.compile(r"^### (.+)$", re.M)


@dataclass(frozen=True)
class Snippet:
    code: str
    expected: str
    start: int   # where the text block's body starts in README.md
    end: int
    line: int


def examples(text: str) -> dict[str, list[Snippet]]:
    """{subsection title: its snippets}, from the Worked examples section of ``text``."""
    begin = text.index(f"\n{SECTION}\n")
    following = text.find("\n## ", begin + 1)
    end = following if following != -1 else len(text)
    headings = list(_HEADING.finditer(text, begin, end))
    found: dict[str, list[Snippet]] = {}
    for heading, after in zip(headings, headings[1:] + [None]):
        stop = after.start() if after else end
        fences = list(_FENCE.finditer(text, heading.end(), stop))
        snippets = []
        for i, fence in enumerate(fences):
            if fence.group(1) != "python":
                continue
            line = text.count("\n", 0, fence.start()) + 1
            output = fences[i + 1] if i + 1 < len(fences) else None
            if output is None or output.group(1) != "text":
                raise ValueError(f"README.md line {line}: a ```python block in {SECTION!r} needs a "
                                 f"```text block with its output right after it")
            snippets.append(Snippet(fence.group(2), output.group(2), output.start(2), output.end(2), line))
        found[heading.group(1).strip()] = snippets
    return found


def run(title: str, snippets: list[Snippet]) -> list[str]:
    """What each snippet prints, run in order in one namespace."""
    namespace: dict = {"__name__": "__readme__"}
    printed = []
    for snippet in snippets:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(snippet.code, f"README.md:{snippet.line} ({title})", "exec"), namespace)
        printed.append(buffer.getvalue())
    return printed


def normalise(text: str) -> str:
    # editors strip trailing spaces, tabulate pads with them
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def _sections() -> dict[str, list[Snippet]]:
    return examples(README.read_text())


@pytest.mark.parametrize("title", list(_sections()))
def test_worked_example_prints_what_the_readme_shows(title, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)   # a snippet that writes a file writes it here
    snippets = _sections()[title]
    assert snippets, f"README subsection {title!r} has no ```python block"
    for snippet, printed in zip(snippets, run(title, snippets)):
        expected, actual = normalise(snippet.expected), normalise(printed)
        if expected != actual:
            diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                                  "README.md", "printed now", lineterm=""))
            pytest.fail(f"README.md line {snippet.line} ({title}): the snippet's output drifted from "
                        f"its ```text block.\n{diff}\nIf the new output is right: {UPDATE}", pytrace=False)


def test_worked_examples_show_the_seed_figures():
    """The hand derivations of the seeds (tests/test_seeds.py) stay in the README, whatever --update writes."""
    shown = "\n".join(s.expected for snippets in _sections().values() for s in snippets)
    # homework Q1: muls, adds with and without bias, comparisons, output sizes
    for figure in ("282,240", "281,652", "864", "7x7", "3x3",
                   # the notebook's three block totals and the reduced block's branch shares
                   "854,196,224", "271,351,808", "259,309,568", "9.5%", "36.7%", "49.1%", "4.7%",
                   # GoogLeNet's published 1.498 "GFLOPS"
                   "1,498,376,192"):
        assert figure in shown, figure


@pytest.mark.parametrize("input_grad", [True, False])
def test_keras_summary_model_matches_flop_counter(input_grad):
    """The README's recurrent model: torchflops' totals are PyTorch's FlopCounterMode's."""
    from oracles import flop_counter

    import torchflops as tf
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(_sections()["The Keras summary: forward and backward per layer"][0].code, namespace)
    model = namespace["Summary"]()
    frames = torch.zeros(1, 5, 3, 8, 8, requires_grad=input_grad)
    counts = tf.count(model, frames).total
    assert (counts.flops, counts.backward_flops) == flop_counter(model, [(1, 5, 3, 8, 8)],
                                                                 input_grad=input_grad)


def test_worked_examples_link_existing_charts():
    section = README.read_text().split(f"\n{SECTION}\n", 1)[1]
    images = re.findall(r"\]\((docs/[^)]+\.png)\)", section)
    assert images
    for image in images:
        assert (ROOT / image).is_file(), image


def update() -> int:
    """Rewrite every text block of the section with what its snippet prints now."""
    import torchflops as tf
    text = README.read_text()
    replacements = []
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("error", tf.UnsupportedWarning)   # as the test suite runs them
        here = os.getcwd()
        os.chdir(scratch)
        try:
            for title, snippets in examples(text).items():
                for snippet, printed in zip(snippets, run(title, snippets)):
                    replacements.append((snippet, normalise(printed) + "\n"))
        finally:
            os.chdir(here)
    changed = 0
    for snippet, body in sorted(replacements, key=lambda item: item[0].start, reverse=True):
        if body != snippet.expected:
            changed += 1
            text = text[:snippet.start] + body + text[snippet.end:]
    README.write_text(text)
    print(f"{README}: {changed} output block(s) rewritten; review with git diff")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {UPDATE}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(update())
