"""The README's Quick start is what CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    install_and_report, install_and_test = _quick_start()
    assert install_and_report.endswith("torchflops googlenet")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci
