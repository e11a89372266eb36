"""A notebook run headless (nbclient): what a cell ending in a profile, a table or a comparison shows."""
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    """import torch
from torch import nn
import torchflops as tf
# stem: bias-free conv 3->8, 3x3 on 8x8 -> 8x6x6 = 288 outputs x 27 products = 7,776 MACs
# head: linear 288 -> 10: 2,880 MACs; params 216 + 2,890 = 3,106
model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))
prof = tf.count(model, input_size=(1, 3, 8, 8))""",
    "prof",
    "prof.table()",
    "tf.compare({'one': prof, 'two': tf.count(model, input_size=(2, 3, 8, 8))}, metrics=('macs',))",
]


@pytest.fixture(scope="module")
def outputs():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    # the kernel ("python3": this interpreter, through ipykernel) imports this checkout, as the tests do
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        client.execute()
    return [cell.outputs for cell in notebook.cells]


def result(cell_outputs):
    (out,) = [o for o in cell_outputs if o.output_type == "execute_result"]
    return out.data


@pytest.mark.slow
def test_a_profile_shows_its_totals_and_table(outputs):
    data = result(outputs[1])
    assert data["text/plain"].splitlines()[0] == "Sequential: 10.66 K MACs, 3.11 K params"
    assert "<li>MACs: 10,656</li>" in data["text/html"]              # 7,776 + 2,880
    assert '<td title="7,776">7.78 K</td>' in data["text/html"]
    assert "- params: 3,106 (3,106 trainable, 0 frozen)" in data["text/markdown"]


@pytest.mark.slow
def test_a_table_shows_as_itself_not_as_an_escaped_string(outputs):
    data = result(outputs[2])
    plain = data["text/plain"]
    assert not plain.startswith("'") and "\\n" not in plain
    assert plain.splitlines()[0].split()[:2] == ["module", "type"]
    assert "<table>" in data["text/html"]


@pytest.mark.slow
def test_compare_shows_an_html_table(outputs):
    data = result(outputs[3])
    # batch 2 doubles the MACs: 21,312, ratio 2.000
    assert data["text/plain"].splitlines()[2].split() == ["macs", "10,656", "21,312", "2.000"]
    assert "<td>macs</td><td>10,656</td><td>21,312</td><td>2.000</td>" in data["text/html"]
