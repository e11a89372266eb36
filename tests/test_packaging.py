"""What ships besides the code: type information, licence, changelog, project metadata."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = """
import torch
import torchflops as tf

prof = tf.count(torch.nn.Linear(2, 2), input_size=(1, 2))
reveal_type(prof)
reveal_type(prof.total.macs)
reveal_type(prof.trainable_params)
reveal_type(tf.compare({"a": prof}))
with tf.profile(torch.nn.Linear(2, 2)) as inside:
    reveal_type(inside)
tf.assert_budget(prof, macs="1.4G", params=1e6)
"""


@pytest.mark.slow
def test_a_user_type_checker_sees_the_public_types(tmp_path):
    pytest.importorskip("mypy")
    # installed as a user gets it (a site directory, not the source tree), so py.typed decides
    site = tmp_path / "site"
    shutil.copytree(ROOT / "torchflops", site / "torchflops", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "use.py").write_text(USER_CODE)
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                           "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    revealed = [line.split("Revealed type is ")[1] for line in done.stdout.splitlines() if "Revealed" in line]
    assert revealed == ['"torchflops._render.Profile"', '"int"', '"int"', '"str"',
                        '"torchflops._render.Profile"'], done.stdout
    assert done.returncode == 0, done.stdout


def test_py_typed_ships_with_the_package():
    assert (ROOT / "torchflops" / "py.typed").is_file()
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "py.typed" in config["options.package_data"]["torchflops"]


def test_license_changelog_and_project_urls():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## 0.1.0" in (ROOT / "CHANGELOG.md").read_text()
    urls = dict(line.split(" = ") for line in config["metadata"]["project_urls"].strip().splitlines())
    assert set(urls) >= {"Source", "Issues", "Changelog"}
