"""Where users look at a profile: notebook display, pandas, CSV rows, table footers."""
import csv
import io
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

import torchflops as tf
from torchflops._counts import FIELDS
from blocks import InceptionBlock


def stem_head():
    # stem: bias-free conv 3->8, 3x3 on 8x8 -> 8x6x6 = 288 outputs x 27 products = 7,776 MACs, 216 params
    # head: linear 288 -> 10: 2,880 MACs, 2,880 + 10 = 2,890 params
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, 8, 3, bias=False), act=nn.ReLU(), flat=nn.Flatten(), head=nn.Linear(288, 10)))


class Tied(nn.Module):
    """One Linear(4, 4) called twice (16 MACs a call, 20 params once), a token never used in a call."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(3))
        self.shared = nn.Linear(4, 4)

    def forward(self, x):
        return self.shared(self.shared(x))


@pytest.fixture(scope="module")
def prof():
    return tf.count(stem_head(), input_size=(1, 3, 8, 8))


def test_repr_is_one_readable_line(prof):
    assert repr(prof) == "<Profile Sequential: 10.66 K MACs, 3.11 K params, 4 records>"


def test_html_and_markdown_hold_the_exact_totals_and_rows(prof):
    page = prof._repr_html_()
    assert "10,656" in page                                # 7,776 + 2,880 MACs
    assert "3,106 (3,106 trainable, 0 frozen)" in page     # 216 + 2,890 params
    assert re.search(r'<td title="7,776">7.78 K</td>', page)
    markdown = prof._repr_markdown_()
    assert "| stem " in markdown and "- MACs: 10,656" in markdown


def test_pretty_printing_shows_the_table_not_an_escaped_string(prof):
    pytest.importorskip("IPython")
    from IPython.lib.pretty import pretty
    text = pretty(prof)
    assert text.splitlines()[0] == "Sequential: 10.66 K MACs, 3.11 K params"
    assert any(line.startswith("head ") for line in text.splitlines())
    # a table is still a str, shown as itself
    table = prof.table()
    assert isinstance(table, str) and pretty(table) == str(table)
    assert "\\n" not in pretty(table)
    assert "<table>" in table._repr_html_()


def test_compare_is_a_str_with_an_html_table():
    one, two = tf.count(stem_head(), input_size=(1, 3, 8, 8)), tf.count(stem_head(), input_size=(2, 3, 8, 8))
    shown = tf.compare({"one": one, "two": two}, metrics=("macs",))
    assert isinstance(shown, str)
    assert shown.splitlines()[2].split() == ["macs", "10,656", "21,312", "2.000"]
    assert "<td>21,312</td><td>2.000</td>" in shown._repr_html_()


def test_depth_0_has_only_the_total_row(prof):
    lines = prof.table(depth=0).splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["total"]


def test_one_more_row_is_singular(prof):
    # 4 rows, top 3: one left over
    assert prof.table(top=3).splitlines()[-2].startswith("(1 more row) ")
    assert prof.table(top=2).splitlines()[-2].startswith("(2 more rows) ")


def test_trainable_and_frozen_parameters():
    model = stem_head()
    assert tf.count(model, input_size=(1, 3, 8, 8)).trainable_params == 3_106
    assert "frozen" not in tf.count(model, input_size=(1, 3, 8, 8)).table()
    model.stem.requires_grad_(False)
    prof = tf.count(model, input_size=(1, 3, 8, 8))
    assert prof.trainable_params == 2_890 and prof.total.params == 3_106
    assert prof.table().splitlines()[-1] == "frozen params: 216 of 3.11 K (2.89 K trainable)"
    assert "3,106 (2,890 trainable, 216 frozen)" in prof._repr_html_()
    # a tied parameter counts once
    assert tf.count(Tied(), input_size=(1, 4)).trainable_params == 3 + 20


def test_csv_marks_the_total_row_so_records_sum_to_it():
    prof = tf.count(InceptionBlock(), input_size=(1, 256, 28, 28))
    table = list(csv.DictReader(io.StringIO(prof.to_csv())))
    # the block's own concatenation moves bytes that no record holds: the "other" row
    assert [r["row"] for r in table] == ["record"] * len(prof.records) + ["other", "total"]
    for field in FIELDS:
        if field != "params":
            assert sum(int(r[field]) for r in table if r["row"] != "total") == getattr(prof.total, field)
    assert int(table[-2]["macs"]) == 0 and int(table[-2]["bytes_read"]) > 0
    assert int(table[-1]["macs"]) == 271_351_808


@pytest.mark.parametrize("depth", [None, 0, 1, 2])
def test_to_pandas_columns_are_typed_and_sum_to_the_total(depth):
    pd = pytest.importorskip("pandas")
    prof = tf.count(InceptionBlock(), input_size=(1, 256, 28, 28))
    frame = prof.to_pandas(depth=depth)
    for field in FIELDS:
        assert frame[field].dtype == "int64"
        assert int(frame[field].sum()) == getattr(prof.total, field), field
    assert frame["name"].dtype == pd.StringDtype()
    # the block's own concatenation moves bytes no record holds: one more row holds them
    assert frame["name"].iloc[-1] == "(outside counted calls)" and frame["macs"].iloc[-1] == 0
    if depth is None:
        assert len(frame) == len(prof.records) + 1
        assert list(frame["module_params"])[:-1] == [r.counts.params for r in prof.records]
    if depth == 1:
        assert list(frame["name"]) == ["branch1", "branch2", "branch3", "branch4", "(outside counted calls)"]


def test_to_pandas_credits_a_tied_module_once_and_keeps_unused_parameters():
    pytest.importorskip("pandas")
    from torchflops._frame import OTHER
    frame = tf.count(Tied(), input_size=(1, 4)).to_pandas()
    # two calls of the shared Linear: 16 MACs each; its 20 params on the first; the token apart
    assert list(frame["name"]) == ["shared", "shared", OTHER]
    assert list(frame["macs"]) == [16, 16, 0]
    assert list(frame["params"]) == [20, 0, 3]
    assert list(frame["module_params"]) == [20, 20, 0]


def test_to_pandas_without_pandas_says_how_to_install(monkeypatch, prof):
    import builtins
    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'torchflops\[pandas\]'"):
        prof.to_pandas()


def test_token_ids_given_as_floats_get_advice():
    model = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 2))
    with pytest.raises(RuntimeError) as caught:
        tf.count(model, input_size=(1, 5))
    assert ("torchflops: the input feeds an nn.Embedding, which takes token ids: pass dtype=torch.long "
            "with input_size") in caught.value.__notes__
    # 5 tokens x 8 x 2 = 80 MACs
    assert tf.count(model, input_size=(1, 5), dtype=torch.long).total.macs == 80
