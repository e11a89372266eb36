"""Shape-only passes reject what real kernels reject, and errors say what was expected and given."""
import pytest
import torch
from torch import nn

import torchflops as tf


class KeywordOnly(nn.Module):
    def forward(self, input_ids, attention_mask=None):
        return input_ids @ attention_mask       # 1x16 @ 1x16: raises in this module's own forward


def test_the_note_lists_keyword_tensors_by_name():
    kwargs = {"input_ids": torch.zeros(1, 16, dtype=torch.long), "attention_mask": torch.zeros(1, 16)}
    for device in ("meta", "cpu"):
        with pytest.raises(RuntimeError) as caught:
            tf.count(KeywordOnly(), kwargs=kwargs, device=device)
        assert caught.value.__notes__[-1].endswith(
            "(KeywordOnly) called with input_ids=1x16 int64, attention_mask=1x16 float32")


def test_albert_called_with_keywords_names_them():
    transformers = pytest.importorskip("transformers")
    config = transformers.AlbertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, embedding_size=16, vocab_size=100)
    with torch.device("meta"):
        model = transformers.AlbertModel(config).eval()
    kwargs = {"input_ids": torch.zeros(1, 16, dtype=torch.long), "inputs_embeds": torch.zeros(1, 16, 16)}
    with pytest.raises(ValueError) as caught:     # both at once: its own forward refuses them
        tf.count(model, kwargs=kwargs)
    assert caught.value.__notes__[-1].endswith(
        "the model's own forward (AlbertModel) called with input_ids=1x16 int64, inputs_embeds=1x16x16 float32")


@pytest.mark.parametrize("layer, size", [
    (nn.Linear(4, 3), (2, 4)), (nn.Conv2d(3, 8, 3), (1, 3, 8, 8)),
    (nn.ConvTranspose2d(3, 8, 3), (1, 3, 8, 8)), (nn.Conv1d(3, 8, 3), (3, 8)),   # unbatched
])
def test_a_float64_input_into_a_float32_layer_is_rejected_as_on_a_real_pass(layer, size):
    model = nn.Sequential(layer)
    with pytest.raises(RuntimeError):
        tf.count(model, input_size=size, dtype=torch.float64, device="cpu")
    with pytest.raises(RuntimeError, match=f"{type(layer).__name__} expected an input of dtype float32 "
                                           r"\(its weight's\), got float64") as caught:
        tf.count(model, input_size=size, dtype=torch.float64)
    assert "module '0'" in caught.value.__notes__[-1]
    assert all(p.dtype == torch.float32 and not p.is_meta for p in model.parameters())


def test_a_float64_operand_of_a_functional_product_is_rejected():
    class Product(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(4, 3))

        def forward(self, x):
            return x @ self.w

    with pytest.raises(RuntimeError):
        tf.count(Product(), input_size=(2, 4), dtype=torch.float64, device="cpu")
    with pytest.raises(RuntimeError, match=r"matmul expected operands of one dtype, got float64 \(2x4\) "
                                           r"and float32 \(4x3\)"):
        tf.count(Product(), input_size=(2, 4), dtype=torch.float64)


def test_autocast_mixes_dtypes_legally():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.fc(x)

    # 2 x 3 outputs x 4 products, on real tensors and shape-only alike
    assert tf.count(Mixed(), input_size=(2, 4), dtype=torch.float16, device="cpu").total.macs == 24
    assert tf.count(Mixed(), input_size=(2, 4), dtype=torch.float16).total.macs == 24


@pytest.mark.parametrize("layer, size, expected", [
    (nn.Conv2d(3, 8, 3), (1, 4, 8, 8), "Conv2d expected an input with 3 channels (in_channels), got 4 channels "
                                        "(input of shape 1x4x8x8)"),
    (nn.ConvTranspose2d(3, 8, 3), (1, 4, 8, 8), "ConvTranspose2d expected an input with 3 channels"),
    (nn.Conv1d(3, 8, 3), (5, 8), "Conv1d expected an input with 3 channels (in_channels), got 5 channels"),
    (nn.Linear(4, 3), (2, 5), "Linear expected an input whose last dimension is 4 (in_features), got 2x5"),
])
def test_a_wrong_channel_count_says_what_the_layer_expected(layer, size, expected):
    with pytest.raises(RuntimeError):
        tf.count(layer, input_size=size, device="cpu")
    with pytest.raises(RuntimeError) as caught:
        tf.count(layer, input_size=size)
    assert str(caught.value).startswith(expected)
