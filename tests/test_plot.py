"""Charts: PNG files of sensible size, folded rows, argument checks, the optional matplotlib extra."""
import struct
import sys

import pytest
import torchvision
from torch import nn

import torchflops as tf
from blocks import InceptionBlock
from torchflops import _plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, which always follows the 8-byte signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def googlenet():
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    return tf.count(model, input_size=(1, 3, 224, 224))


@pytest.fixture(scope="module")
def reduced():
    return tf.count(InceptionBlock(), input_size=(1, 256, 28, 28))


def test_plot_writes_a_png_whose_height_follows_the_bar_count(googlenet, tmp_path):
    googlenet.plot(tmp_path / "top5.png", top=5)
    googlenet.plot(tmp_path / "top15.png")
    small, large = png_size(tmp_path / "top5.png"), png_size(tmp_path / "top15.png")
    # 10 x (1.4 + 0.34 x bars) inches at 100 dpi: 6 bars (5 + the folded rest) and 16
    assert small == (1000, 344)
    assert large == (1000, 684)


def test_a_hundred_rows_fold_into_top_plus_one_bar(googlenet):
    assert len(googlenet.records) > 100
    bars, folded = _plot._bars(googlenet, None, 15, "macs")
    assert len(bars) == 16
    assert bars[-1][0] == f"({folded} more modules)"
    # every counted MAC is on the chart exactly once: the kept bars plus the folded one
    assert sum(value for _, value in bars) == googlenet.total.macs
    values = [value for _, value in bars[:-1]]
    assert values == sorted(values, reverse=True)


def test_bars_at_depth_one_are_the_top_level_modules(googlenet):
    bars, folded = _plot._bars(googlenet, 1, 3, "macs")
    assert folded > 0
    assert [label for label, _ in bars[:3]] == [
        "conv3  (BasicConv2d)", "inception3b  (Inception)", "inception4e  (Inception)"]
    assert bars[0][1] == googlenet.module("conv3").macs


def test_bars_leave_out_modules_without_the_metric(googlenet):
    bars, folded = _plot._bars(googlenet, None, 100, "comparisons")
    # GoogLeNet's max-pools: four between stages and one in each of the nine Inception blocks
    assert (len(bars), folded) == (13, 0)
    assert all("MaxPool2d" in label for label, _ in bars)


def test_long_names_keep_both_ends():
    name = "encoder.layers.11.attention.self_attention.query_key_value.projection"
    short = _plot._shorten(name)
    assert len(short) == _plot._NAME_WIDTH
    assert short.startswith("encoder.layers.11.") and short.endswith(".projection")
    assert _plot._shorten("conv1") == "conv1"


def test_long_names_do_not_widen_the_chart(tmp_path):
    model = nn.Linear(8, 8)
    for level in range(6):
        outer = nn.Sequential()
        outer.add_module(f"residual_stage_{level}_with_a_long_name", model)
        model = outer
    prof = tf.count(model, input_size=(1, 8))
    assert max(len(r.name) for r in prof.records) > 2 * _plot._NAME_WIDTH
    prof.plot(tmp_path / "deep.png")
    assert png_size(tmp_path / "deep.png")[0] == 1000


def test_plot_with_nothing_counted_for_the_metric(tmp_path):
    prof = tf.count(nn.Linear(4, 4), input_size=(1, 4))
    prof.plot(tmp_path / "none.png", metric="comparisons")
    assert png_size(tmp_path / "none.png")[0] == 1000


def test_plot_branches_of_a_block_and_of_a_whole_model(reduced, googlenet, tmp_path):
    reduced.plot_branches(tmp_path / "block.png", "")
    googlenet.plot_branches(tmp_path / "inception3a.png", "inception3a")
    googlenet.plot_branches(str(tmp_path / "model.png"), "")
    width, height = png_size(tmp_path / "block.png")
    assert width == 1100 and 400 < height < 900
    # the whole model has 18 parts, 12 of which do matmul work: a taller chart than a block's 4
    assert png_size(tmp_path / "model.png")[1] > png_size(tmp_path / "inception3a.png")[1]


@pytest.mark.parametrize("kwargs, error, words", [
    ({"metric": "gflops"}, ValueError, "unknown metric 'gflops'"),
    ({"metric": "backward"}, ValueError, "backward_flops"),
    ({"top": 0}, ValueError, "top must be an integer >= 1"),
    ({"top": True}, ValueError, "top must be an integer >= 1"),
    ({"top": None}, ValueError, "top must be an integer >= 1"),
    ({"depth": -1}, ValueError, "depth must be an integer >= 0"),
])
def test_plot_rejects_bad_arguments_before_writing(reduced, tmp_path, kwargs, error, words):
    with pytest.raises(error, match=words):
        reduced.plot(tmp_path / "bad.png", **kwargs)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("path", [123, None, b"chart.png"])
def test_plot_rejects_a_path_that_is_not_a_path(reduced, path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        reduced.plot(path)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        reduced.plot_branches(path, "")


def test_plot_branches_rejects_unknown_and_leaf_modules(reduced, tmp_path):
    with pytest.raises(KeyError, match="branch2"):
        reduced.plot_branches(tmp_path / "x.png", "branch22")
    with pytest.raises(ValueError, match="no children"):
        reduced.plot_branches(tmp_path / "x.png", "branch1.conv")
    with pytest.raises(TypeError, match="qualified module name"):
        reduced.plot_branches(tmp_path / "x.png", 1)
    assert not (tmp_path / "x.png").exists()


def test_without_matplotlib_the_error_names_the_extra(reduced, tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install torchflops\[plot\]"):
        reduced.plot(tmp_path / "a.png")
    with pytest.raises(ImportError, match=r"pip install torchflops\[plot\]"):
        reduced.plot_branches(tmp_path / "b.png", "")
    with pytest.raises(ImportError, match=r"pip install torchflops\[plot\]"):
        tf.compare_plot({"reduced": reduced}, tmp_path / "c.png")


def test_charts_leave_pyplot_and_the_backend_alone(reduced, tmp_path):
    import matplotlib
    backend = matplotlib.rcParams._get_backend_or_none()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    reduced.plot(tmp_path / "a.png")
    reduced.plot_branches(tmp_path / "b.png", "")
    assert matplotlib.rcParams._get_backend_or_none() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


class PoolInForward(nn.Module):
    """Calls F.max_pool2d itself, as torchvision's Inception v3 blocks do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, kernel_size=1)

    def forward(self, x):
        return nn.functional.max_pool2d(self.conv(x), kernel_size=2)


def test_plot_branches_shows_a_blocks_own_functional_calls(tmp_path):
    prof = tf.count(nn.Sequential(PoolInForward()), input_size=(1, 2, 4, 4))
    assert _plot._parts(prof, "0") == [("conv", "0.conv"), ("(own calls)", "")]
    # 2 channels x 2x2 windows x (4 - 1) comparisons
    assert _plot._own(prof, "0").comparisons == 24
    prof.plot_branches(tmp_path / "own.png", "0")
    assert png_size(tmp_path / "own.png")[0] == 1100
