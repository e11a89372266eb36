"""tf.compare: metrics side by side with ratios to the first profile; argument checks."""
import struct

import pytest
from torch import nn

import torchflops as tf
from blocks import InceptionBlock, InceptionBlockV2, NaiveBlock


@pytest.fixture(scope="module")
def blocks():
    return {label: tf.count(block(), input_size=(1, 256, 28, 28))
            for label, block in (("naive", NaiveBlock), ("reduced", InceptionBlock), ("v2", InceptionBlockV2))}


def cells(text):
    """{metric: [cells after the metric name]} of a simple-format table."""
    lines = text.splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[2:]}


def test_the_notebook_blocks_side_by_side(blocks):
    text = tf.compare(blocks, metrics=("macs", "params"))
    assert text.splitlines()[0].split() == ["metric", "naive", "reduced", "reduced/naive", "v2", "v2/naive"]
    # the seed's totals (derived in test_seeds.py); 271,351,808 / 854,196,224 = 0.3177;
    # 259,309,568 / 854,196,224 = 0.3036
    assert cells(text)["macs"] == ["854,196,224", "271,351,808", "0.318", "259,309,568", "0.304"]
    # params: naive 128x256 + 192x256x9 + 96x256x25 weights + 416 biases = 1,089,952;
    # reduced (no biases) 256x128 + 256x64 + 64x192x9 + 256x64 + 64x96x25 + 256x64 = 346,112
    assert cells(text)["params"] == ["1,089,952", "346,112", "0.318", "332,160", "0.305"]


def test_default_metrics_and_ratios_match_the_totals(blocks):
    rows = cells(tf.compare(blocks))
    assert list(rows) == ["macs", "flops", "backward_flops", "comparisons", "params"]
    for metric, row in rows.items():
        values = [getattr(p.total, metric) for p in blocks.values()]
        assert [int(c.replace(",", "")) for c in row[:1] + row[1::2]] == values
        assert [float(c) for c in row[2::2]] == [round(v / values[0], 3) for v in values[1:]]


def test_a_zero_reference_has_no_ratio():
    linear = tf.count(nn.Linear(4, 4), input_size=(1, 4))
    pooled = tf.count(nn.Sequential(nn.Linear(4, 4), nn.MaxPool1d(2)), input_size=(1, 1, 4))
    rows = cells(tf.compare({"linear": linear, "pooled": pooled}, metrics=("comparisons",)))
    # pooled: 2 windows of 2 elements on a 1x4 map: 1 comparison each
    assert rows["comparisons"] == ["0", "2", "-"]
    rows = cells(tf.compare({"a": linear, "b": linear}, metrics=("comparisons",)))
    assert rows["comparisons"] == ["0", "0", "1.000"]


def test_one_profile_and_other_formats(blocks):
    assert cells(tf.compare({"naive": blocks["naive"]}, metrics=("macs",)))["macs"] == ["854,196,224"]
    markdown = tf.compare(blocks, metrics=("macs",), fmt="markdown")
    assert markdown.splitlines()[2].startswith("| macs ")


@pytest.mark.parametrize("profiles, metrics, error, words", [
    ({}, ("macs",), ValueError, "profiles is empty"),
    ([1], ("macs",), TypeError, "dict of label -> Profile, got list"),
    ({"a": 3}, ("macs",), TypeError, r"profiles\['a'\] must be a Profile"),
    ({1: None}, ("macs",), TypeError, "labels must be str"),
    (None, ("gflops",), TypeError, "dict of label"),
])
def test_bad_profiles(profiles, metrics, error, words):
    with pytest.raises(error, match=words):
        tf.compare(profiles, metrics=metrics)


@pytest.mark.parametrize("metrics, error, words", [
    (("macs", "gflops"), ValueError, "unknown metric.*'gflops'.*backward_flops"),
    ((), ValueError, "non-empty"),
    ("macs", TypeError, r"write \('macs',\)"),
])
def test_bad_metrics(blocks, metrics, error, words):
    with pytest.raises(error, match=words):
        tf.compare(blocks, metrics=metrics)


def test_bad_format(blocks):
    with pytest.raises(ValueError, match="unknown fmt 'excel'"):
        tf.compare(blocks, fmt="excel")


def test_compare_plot_writes_a_png(blocks, tmp_path):
    tf.compare_plot(blocks, tmp_path / "blocks.png", metrics=("macs", "params"))
    data = (tmp_path / "blocks.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # 4.2 in per metric x (1.5 + 0.45 x 3 profiles) in at 100 dpi
    assert struct.unpack(">II", data[16:24]) == (840, 285)


def test_compare_plot_checks_before_drawing(blocks, tmp_path):
    with pytest.raises(ValueError, match="unknown metric"):
        tf.compare_plot(blocks, tmp_path / "x.png", metrics=("speed",))
    with pytest.raises(TypeError, match="path must be"):
        tf.compare_plot(blocks, 5)
    assert not (tmp_path / "x.png").exists()


def test_compare_is_public():
    assert {"compare", "compare_plot"} <= set(tf.__all__)
