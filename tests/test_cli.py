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


TOKENS = """
import torch
from torch import nn

class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, ids):
        return self.head(self.embed(ids))

class Built(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.where = self.head.weight.device.type

    def forward(self, x):
        return self.head(x)

instance = Built()
"""


@pytest.fixture
def tokens_file(tmp_path, monkeypatch):
    (tmp_path / "cli_tokens.py").write_text(TOKENS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_tokens", raising=False)
    return tmp_path


def test_the_installed_script_imports_modules_from_the_working_directory(tokens_file):
    # `python -m` puts the working directory on the path; the console script must too
    executable = Path(sys.executable).with_name("torchflops")
    done = subprocess.run([str(executable), "cli_tokens:Built", "--input-size", "2,4", "--format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=tokens_file)
    assert done.returncode == 0, done.stderr
    assert total(done.stdout)["macs"] == 2 * 4 * 3


def test_token_ids_are_inferred_when_the_input_feeds_an_embedding(capsys, tokens_file):
    status, out, err = run(capsys, "cli_tokens:Tokens", "--input-size", "1,5", "--format", "json")
    assert status == 0
    assert err == "torchflops: warning: the input feeds an nn.Embedding: counted with token ids (--dtype int64)\n"
    # head: 5 tokens x 8 x 2 = 80 MACs
    assert total(out)["macs"] == 80
    # an explicit floating dtype is the user's choice, and gets the advice
    status, _, err = run(capsys, "cli_tokens:Tokens", "--input-size", "1,5", "--dtype", "float32")
    assert status == 2
    assert err.endswith("; the input feeds an nn.Embedding: pass --dtype int64 (token ids)\n")


def test_a_module_instance_is_counted_as_it_is(capsys, tokens_file):
    status, out, _ = run(capsys, "cli_tokens:instance", "--input-size", "2,4", "--format", "json")
    assert status == 0 and total(out)["macs"] == 24
    status, _, err = run(capsys, "cli_tokens:instance", "--kwargs", '{"a": 1}')
    assert status == 2 and "cli_tokens:instance is a module instance, not a constructor" in err


def test_a_callable_is_built_on_the_meta_device(capsys, tokens_file, monkeypatch):
    import cli_tokens
    seen = []
    monkeypatch.setattr(cli_tokens.Built, "forward",
                        lambda self, x: seen.append(self.where) or self.head(x))
    status, _, _ = run(capsys, "cli_tokens:Built", "--input-size", "2,4")
    assert (status, seen) == (0, ["meta"])
    # on the CPU a model is built for real
    status, _, _ = run(capsys, "cli_tokens:Built", "--input-size", "2,4", "--device", "cpu")
    assert (status, seen) == (0, ["meta", "cpu"])


def test_version(capsys):
    import torchflops
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"torchflops {torchflops.__version__}\n"


@pytest.mark.parametrize("argv, message", [
    (["googlenet", "--format", "json", "--top", "3"], "--format json holds every record with exact figures; "
                                                      "--top fold tables only"),
    (["googlenet", "--format", "csv", "--depth", "2"], "--format csv holds every record"),
    (["googlenet", "--output", "out.png"], "--output writes the text report, not a .png file; use --plot out.png"),
    (["googlenet", "--output", "out.html"], "use --html out.html"),
    (["googlenet", "--plot", "out.txt"], "--plot draws a PNG; give a path ending in .png"),
])
def test_options_that_would_be_ignored_or_misplaced_are_refused(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_plot_and_html_files(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    chart, page = tmp_path / "g.png", tmp_path / "g.html"
    status, out, _ = run(capsys, "googlenet", "--top", "3", "--plot", str(chart), "--html", str(page))
    assert status == 0 and out.splitlines()[-1].startswith("total ")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "\"macs\": 1498376192" in page.read_text()   # the exact total, in the embedded data


def test_a_model_that_cannot_run_shape_only_is_counted_on_the_cpu(capsys):
    # SSDlite's post-processing reads box scores; it is counted on real tensors, and says so
    status, out, err = run(capsys, "ssdlite320_mobilenet_v3_large", "--format", "json")
    assert status == 0
    assert err == "torchflops: warning: SSD cannot run shape-only; counted on real tensors (--device cpu)\n"
    assert json.loads(out)["device"] == "cpu"
    # asked for explicitly, shape-only is an error whose advice is a command-line flag
    status, _, err = run(capsys, "ssdlite320_mobilenet_v3_large", "--device", "meta")
    assert status == 2
    assert "--device cpu" in err and "device='cpu'" not in err


@pytest.mark.parametrize("name, sizes", [("vit_h_14", [[1, 3, 224, 224]]),
                                         ("raft_small", [[1, 3, 224, 224], [1, 3, 224, 224]])])
def test_defaults_follow_what_the_model_was_built_for(capsys, name, sizes):
    status, out, err = run(capsys, name, "--format", "json")
    assert (status, err) == (0, "")
    assert json.loads(out)["input_shapes"] == sizes


@pytest.mark.slow
def test_every_listed_model_runs_with_its_defaults(capsys):
    failed = {}
    for name in torchvision.models.list_models():
        status, out, err = run(capsys, name, "--format", "json")
        if status != 0 or total(out)["macs"] <= 0:
            failed[name] = err
    assert failed == {}
