"""The command line: ``main(argv)`` in-process, and the installed script through subprocess."""
import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torchvision = pytest.importorskip("torchvision")

from torchflops._cli import main  # noqa: E402


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def total(out):
    return json.loads(out)["total"]


def published(name):
    return torchvision.models.get_model_weights(name).DEFAULT.meta


@pytest.mark.parametrize("name, size", [("googlenet", [1, 3, 224, 224]), ("inception_v3", [1, 3, 299, 299])])
def test_torchvision_model_matches_published_figures_at_its_crop_size(capsys, name, size):
    status, out, err = run(capsys, name, "--format", "json")
    assert (status, err) == (0, "")
    assert json.loads(out)["input_shapes"] == [size]
    assert round(total(out)["macs"] / 1e9, 3) == published(name)["_ops"]
    assert total(out)["params"] == published(name)["num_params"]


def test_a_builder_that_needs_real_tensors_is_built_for_real(capsys):
    # RegNet computes its widths from tensor values, which a meta build cannot
    status, out, _ = run(capsys, "regnet_x_400mf", "--format", "json")
    assert status == 0
    assert round(total(out)["macs"] / 1e9, 3) == published("regnet_x_400mf")["_ops"]


def test_table_depth_top_and_backward_column(capsys):
    status, out, _ = run(capsys, "googlenet", "--top", "3")
    lines = out.splitlines()
    assert status == 0
    assert "backward FLOPs" in lines[0]
    # header, rule, the three most expensive depth-1 modules, "(16 more rows)", total
    assert [line.split()[0] for line in lines[2:]] == ["conv3", "inception3b", "inception4e", "(16", "total"]
    _, out, _ = run(capsys, "googlenet", "--top", "3", "--no-backward")
    assert "backward FLOPs" not in out.splitlines()[0]
    assert "comparisons" in out.splitlines()[0]


def test_markdown(capsys):
    status, out, _ = run(capsys, "googlenet", "--format", "markdown", "--depth", "0")
    assert status == 0
    assert out.startswith("| module ")
    assert out.splitlines()[-1].startswith("| total ")


def test_branches(capsys):
    status, out, _ = run(capsys, "googlenet", "--branches", "inception3a")
    assert status == 0
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[2:]}
    # on 192x28x28 (784 positions): 1x1 192->64; 1x1 192->96 + 3x3 96->128; 1x1 192->16 + 3x3 16->32;
    # pool + 1x1 192->32
    assert rows["branch1"] == f"{784 * 192 * 64:,}"
    assert rows["branch2"] == f"{784 * 192 * 96 + 784 * 96 * 9 * 128:,}"
    assert rows["branch3"] == f"{784 * 192 * 16 + 784 * 16 * 9 * 32:,}"
    assert rows["branch4"] == f"{784 * 192 * 32:,}"
    assert rows["total"] == "121,626,624"


TWO_INPUTS = """
import torch
from torch import nn

class Two(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.a = nn.Linear(4, width)
        self.b = nn.Linear(5, width)

    def forward(self, x, y):
        return self.a(x) + self.b(y)

def build(width=3):
    return Two(width)

def broken():
    raise RuntimeError("cannot build this one\\nsecond line")

def not_a_model():
    return 42
"""


@pytest.fixture
def models_file(tmp_path):
    path = tmp_path / "cli_models.py"
    path.write_text(TWO_INPUTS)
    return path


def test_file_callable_with_kwargs_and_several_inputs(capsys, models_file):
    status, out, _ = run(capsys, f"{models_file}:build", "--kwargs", '{"width": 7}',
                         "--input-size", "2,4", "--input-size", "2,5", "--format", "csv")
    assert status == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(out))}
    # a: 2 rows x 4 x 7 = 56 MACs; b: 2 x 5 x 7 = 70; params 4*7+7 = 35 and 5*7+7 = 42
    assert (rows["a"]["macs"], rows["b"]["macs"], rows["total"]["macs"]) == ("56", "70", "126")
    assert rows["total"]["params"] == "77"


def test_package_module_callable(capsys):
    status, out, _ = run(capsys, "torchvision.models:resnet18", "--kwargs", '{"num_classes": 10}',
                         "--format", "json", "--device", "cpu")
    assert status == 0
    fc = [r for r in json.loads(out)["records"] if r["name"] == "fc"]
    assert fc[0]["macs"] == 512 * 10
    assert json.loads(out)["device"] == "cpu"


def test_output_file(capsys, tmp_path):
    target = tmp_path / "report.json"
    status, out, _ = run(capsys, "googlenet", "--format", "json", "--output", str(target))
    assert (status, out) == (0, "")
    assert round(json.loads(target.read_text())["total"]["macs"] / 1e9, 3) == published("googlenet")["_ops"]


def test_list(capsys):
    status, out, _ = run(capsys, "--list")
    names = out.split()
    assert status == 0
    assert names == torchvision.models.list_models()
    assert "googlenet" in names


@pytest.mark.parametrize("argv, message", [
    (["resnt50"], "unknown model 'resnt50'; did you mean resnet50"),
    (["resnet18", "--input-size", "1,3,x"], "malformed --input-size '1,3,x'"),
    (["resnet18", "--input-size", "1,3,8"], "ResNet failed on input 1x3x8: RuntimeError: "),
    (["resnet18", "--format", "yaml"], "argument --format: invalid choice: 'yaml'"),
    (["resnet18", "--dtype", "float33"], "unknown --dtype 'float33'"),
    (["resnet18", "--kwargs", "{num_classes: 3}"], "--kwargs is not valid JSON"),
    (["resnet18", "--kwargs", '{"num_clases": 3}'], "building resnet18(num_clases=3) failed: TypeError: "),
    (["resnet18", "--top", "0"], "--top must be >= 1, got 0"),
    (["googlenet", "--branches", "inception3x"], "no module named 'inception3x' in GoogLeNet; close matches"),
    (["googlenet", "--branches", "inception3a", "--format", "json"], "--branches prints a table"),
    ([], "give a MODEL"),
    (["no_such_module_xyz:build"], "cannot import 'no_such_module_xyz'"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("torchflops: error: ")
    assert message in err


def test_errors_of_the_users_own_code(capsys, models_file):
    status, _, err = run(capsys, f"{models_file}:broken")
    # its own message, first line only
    assert (status, err) == (2, f"torchflops: error: {models_file}:broken() failed: "
                                "RuntimeError: cannot build this one\n")
    status, _, err = run(capsys, f"{models_file}:not_a_model")
    assert (status, err) == (2, f"torchflops: error: {models_file}:not_a_model returned int, "
                                "not a torch.nn.Module\n")
    # a model that needs two inputs, given one
    status, _, err = run(capsys, f"{models_file}:build", "--input-size", "2,4")
    assert status == 2
    assert "Two failed on input 2x4: TypeError: " in err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception) as caught:
        main(["resnet18", "--input-size", "1,3,8", "--debug"])
    assert isinstance(caught.value.__cause__, RuntimeError)


def script(*argv):
    executable = Path(sys.executable).with_name("torchflops")
    return subprocess.run([str(executable), *argv], capture_output=True, text=True, timeout=300)


def test_installed_script(tmp_path):
    done = script("googlenet", "--top", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split()[:2] == ["total", "GoogLeNet"]
    done = script("resnt50")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("torchflops: error: unknown model 'resnt50'")
    assert "Traceback" not in done.stderr


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "torchflops", "resnet18", "--input-size", "1,3,8"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert textwrap.shorten(done.stderr, 60).startswith("torchflops: error: ResNet failed on input 1x3x8")


def readme_examples():
    """The ``$ torchflops ...`` commands of the README's "Command line" section and their output."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = section.split("\n```\n", 1)[1].split("\n```", 1)[0]
    examples = []
    for chunk in ("\n" + block).split("\n$ ")[1:]:
        command, _, output = chunk.partition("\n")
        examples.append((command.split()[1:], output.rstrip("\n")))
    return examples


@pytest.mark.parametrize("argv, expected", readme_examples())
def test_readme_examples_are_real_output(capsys, argv, expected):
    status, out, err = run(capsys, *argv)
    assert (out + err).rstrip("\n") == expected
    assert status == (2 if err else 0)


def test_a_module_file_that_fails_to_load(capsys, tmp_path):
    path = tmp_path / "bad_module.py"
    path.write_text("raise ImportError('needs a package that is not installed')\n")
    status, _, err = run(capsys, f"{path}:build")
    assert (status, err) == (2, f"torchflops: error: loading {path} failed: "
                                "ImportError: needs a package that is not installed\n")
    status, _, err = run(capsys, f"{tmp_path / 'missing.py'}:build")
    assert status == 2 and "no such file" in err
