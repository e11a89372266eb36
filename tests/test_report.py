"""Profile queries and views: module(), table(), branches(), to_dict/json/csv."""
import csv
import io
import json

import pytest
import torchvision

import torchflops as tf
from torchflops._render import human, rows
from blocks import InceptionBlock


@pytest.fixture(scope="module")
def googlenet():
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    return tf.count(model, input_size=(1, 3, 224, 224))


@pytest.mark.parametrize("depth", [None, 0, 1, 2, 3])
def test_rows_add_up_to_the_total(googlenet, depth):
    body = rows(googlenet, depth)
    for field in ("macs", "flops", "muls", "adds", "comparisons", "grad_input_flops", "grad_weight_flops"):
        assert sum(getattr(r.counts, field) for r in body) == getattr(googlenet.total, field)
    if depth is not None:
        assert all(r.name.count(".") < depth or depth == 0 for r in body if r.name)


def test_module_is_a_subtree_sum(googlenet):
    block = googlenet.module("inception3a")
    parts = [googlenet.module(f"inception3a.branch{i}") for i in range(1, 5)]
    assert block.macs == sum(p.macs for p in parts)
    assert block.comparisons == sum(p.comparisons for p in parts)
    assert block.params == sum(p.params for p in parts)
    assert googlenet.module("") == googlenet.total


def test_unknown_module_name_lists_close_matches(googlenet):
    with pytest.raises(KeyError, match="inception3a"):
        googlenet.module("inception3x")
    with pytest.raises(TypeError):
        googlenet.module(3)


def test_table_depth_and_top(googlenet):
    text = googlenet.table(depth=1)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["module", "type"]
    assert any(line.startswith("inception4e ") and "Inception" in line for line in lines)
    assert not any(line.startswith("inception4e.") for line in lines)
    assert lines[-1].startswith("total") and "1.50 G" in lines[-1]
    top = googlenet.table(depth=1, top=3).splitlines()
    # header, rule, 3 rows, the folded rest, total
    assert len(top) == 2 + 3 + 1 + 1
    assert top[2].startswith("conv3")          # 346.82 M MACs, the most expensive
    assert "more rows" in top[-2]


def test_table_formats(googlenet):
    assert googlenet.table(depth=1, fmt="markdown").splitlines()[1].startswith("|--")
    with pytest.raises(ValueError, match="unknown fmt 'html5'"):
        googlenet.table(fmt="html5")
    with pytest.raises(ValueError, match="depth"):
        googlenet.table(depth=-1)
    with pytest.raises(ValueError, match="top"):
        googlenet.table(top=0)


def test_branches_of_the_reduced_block():
    prof = tf.count(InceptionBlock(), input_size=(1, 256, 28, 28))
    lines = prof.branches("").splitlines()
    assert lines[2].split() == ["branch1", "BasicConv2d", "25,690,112", "9.5%"]
    assert lines[3].split() == ["branch2", "Sequential", "99,549,184", "36.7%"]
    assert lines[-1].split() == ["total", "InceptionBlock", "271,351,808", "100.0%"]
    nested = prof.branches("branch2").splitlines()
    assert nested[2].split() == ["0", "BasicConv2d", "12,845,056", "12.9%"]


def test_to_dict_json_csv_hold_exact_integers(googlenet):
    data = json.loads(googlenet.to_json())
    assert data["total"]["macs"] == 1_498_376_192
    assert data["total"] == googlenet.to_dict()["total"]
    assert data["unsupported"] == {}
    assert len(data["records"]) == len(googlenet.records)
    assert sum(r["macs"] for r in data["records"]) == data["total"]["macs"]
    assert data["records"][0]["input_shapes"] == [[1, 3, 224, 224]]
    table = list(csv.DictReader(io.StringIO(googlenet.to_csv())))
    assert table[-1]["name"] == "total" and int(table[-1]["macs"]) == 1_498_376_192
    assert sum(int(r["comparisons"]) for r in table[:-1]) == googlenet.total.comparisons


def test_human_units():
    assert human(1_498_376_192) == "1.50 G"
    assert human(999) == "999"
    assert human(1_000) == "1.00 K"
    assert human(27_062_589_194_240) == "27.06 T"


def test_records_carry_shapes_and_needs_grad(googlenet):
    first = googlenet.records[0]
    assert (first.name, first.type) == ("conv1.conv", "Conv2d")
    assert first.output_shapes == ((1, 64, 112, 112),)
    assert first.input_needs_grad == (False,)
    assert googlenet.records[3].input_needs_grad == (True,)
