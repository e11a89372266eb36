"""The CI speed guard (``benchmarks/regression.py``) runs, reports a ratio, and counted GoogLeNet right.

The ratio itself is machine-dependent and only printed; what can fail here is the script breaking
or timing a count that went wrong.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

torchvision = pytest.importorskip("torchvision")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "regression.py"


def test_regression_guard_prints_a_ratio_for_a_correct_googlenet_count():
    done = subprocess.run([sys.executable, str(SCRIPT), "--pairs", "2"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    ratio = re.search(r"^googlenet 1x3x224x224 ratio count/bare: (\d+\.\d\d) \(", done.stdout, re.MULTILINE)
    assert ratio is not None, done.stdout
    assert float(ratio.group(1)) > 0
    macs = re.search(r"^googlenet 1x3x224x224 MACs: ([\d,]+)$", done.stdout, re.MULTILINE)
    assert macs is not None, done.stdout
    # GoogLeNet at 224x224: 1,498,376,192 MACs, which torchvision publishes as 1.498 "GFLOPS" (meta["_ops"])
    assert int(macs.group(1).replace(",", "")) == 1_498_376_192
    assert round(1_498_376_192 / 1e9, 3) == torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["_ops"]


def test_regression_guard_rejects_zero_pairs():
    done = subprocess.run([sys.executable, str(SCRIPT), "--pairs", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--pairs must be at least 1, got 0" in done.stderr
