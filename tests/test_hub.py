"""`torchflops hf:PATH_OR_ID`: models built from a config.json on meta, fed the inputs their config
describes, against FlopCounterMode on the same model and hand derivations. No network: configs are
written to temporary folders or to a temporary Hugging Face cache."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from torchflops._cli import main

transformers = pytest.importorskip("transformers")

ROTARY_MATMUL = int(transformers.__version__.split(".")[0]) < 5   # see tests/test_generation.py
LLAMA = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=100, bos_token_id=0, eos_token_id=0)


def saved(config, folder):
    config.save_pretrained(folder)
    return str(folder)


def cli_json(capsys, *argv):
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def oracle(config, cls, **inputs):
    """FlopCounterMode on the same class, a real CPU pass with eager attention."""
    config._attn_implementation = "eager"
    model = cls(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops()


def test_a_llama_folder_counts_token_ids_and_prints_its_generation(tmp_path, capsys):
    folder = saved(transformers.LlamaConfig(**LLAMA), tmp_path)
    report = cli_json(capsys, f"hf:{folder}", "--seq-len", "16", "--batch", "2")
    # per token: 2 layers x 46,080 (q, o 64x64; k, v 64x32; MLP 3 x 64 x 176) + LM head 6,400;
    # attention 2 layers x 128 x 16 x 16 per sequence; on transformers 4 rotary angles 8 MACs per
    # position, once for the batch (its position ids are 1 x 16)
    macs = 2 * (16 * (2 * 46_080 + 6_400) + 2 * 128 * 16 * 16) + 8 * 16 * ROTARY_MATMUL
    ids = torch.zeros(2, 16, dtype=torch.long)
    assert report["total"]["flops"] == 2 * macs == oracle(transformers.LlamaConfig(**LLAMA),
                                                          transformers.LlamaForCausalLM, input_ids=ids)
    assert report["total"]["params"] == 105_280

    assert main([f"hf:{folder}", "--seq-len", "16", "--generate", "32"]) == 0
    out = capsys.readouterr().out
    # tests/test_generation.py derives these and checks them against generate() on CPU
    assert f"total FLOPs: {9_711_616 + 2 * 8 * 47 * ROTARY_MATMUL:,}" in out
    assert "KV cache at 47 tokens: 24,064 bytes" in out
    generation = cli_json(capsys, f"hf:{folder}", "--seq-len", "16", "--generate", "32")["generation"]
    assert generation["total"]["flops"] == 9_711_616 + 2 * 8 * 47 * ROTARY_MATMUL
    # 2 layers x (keys + values) x 2 KV heads x 47 tokens x 16 x 4 bytes
    assert generation["kv_cache_layers"] == [2 * 2 * 47 * 16 * 4] * 2
    assert generation["step"][0]["slope"]["flops"] == 512       # 2 layers x 2 x 4 heads x 16 x 2 per key


def test_a_vit_folder_is_fed_pixel_values(tmp_path, capsys):
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=128, num_labels=10)
    report = cli_json(capsys, f"hf:{saved(config, tmp_path)}")
    expected = oracle(config, transformers.ViTForImageClassification, pixel_values=torch.zeros(1, 3, 32, 32))
    # 16 patches + CLS = 17 tokens; patch embedding 16 x 64 x (3 x 8 x 8); per layer q, k, v, o 4 x 64^2 and
    # MLP 2 x 64 x 128 per token, attention 2 x 17 x 17 x 64; classifier 64 x 10 on the CLS token
    macs = 16 * 64 * 192 + 2 * (17 * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 17 * 17 * 64) + 64 * 10
    assert report["total"]["flops"] == 2 * macs == expected
    assert report["records"][0]["input_shapes"] == [[1, 3, 32, 32]]


def test_a_whisper_folder_is_fed_audio_features_and_decoder_ids(tmp_path, capsys):
    config = transformers.WhisperConfig(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                        num_mel_bins=80, max_source_positions=50, max_target_positions=32,
                                        vocab_size=100, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                        decoder_start_token_id=0)
    report = cli_json(capsys, f"hf:{saved(config, tmp_path)}", "--seq-len", "16")
    # 100 log-mel frames (two per encoder position), 16 decoder tokens
    expected = oracle(config, transformers.WhisperForConditionalGeneration,
                      input_features=torch.zeros(1, 80, 100), decoder_input_ids=torch.zeros(1, 16, dtype=torch.long))
    assert report["total"]["flops"] == expected > 0


def test_a_wav2vec2_folder_is_fed_raw_samples(tmp_path, capsys):
    config = transformers.Wav2Vec2Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=128, conv_dim=(32, 32), conv_stride=(5, 2),
                                         conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, vocab_size=32)
    report = cli_json(capsys, f"hf:{saved(config, tmp_path)}", "--seq-len", "1600")
    expected = oracle(config, transformers.Wav2Vec2Model, input_values=torch.zeros(1, 1600))
    assert report["total"]["flops"] == expected > 0
    assert report["records"][0]["input_shapes"] == [[1, 1, 1600]]    # the first conv: samples as one channel


@pytest.mark.slow
def test_a_hub_id_comes_from_the_local_cache_when_offline(tmp_path):
    """The cache's own layout (models--org--name/snapshots/<commit>), read by a fresh process: the
    Hugging Face libraries read HF_HUB_CACHE and HF_HUB_OFFLINE when they are imported."""
    repo = tmp_path / "models--someone--tiny-llama"
    commit = "0" * 40
    saved(transformers.LlamaConfig(**LLAMA), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    run = subprocess.run([sys.executable, "-m", "torchflops", "hf:someone/tiny-llama", "--seq-len", "16",
                          "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["total"]["params"] == 105_280
    missing = subprocess.run([sys.executable, "-m", "torchflops", "hf:someone/not-cached"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("torchflops: error: cannot load the config of 'someone/not-cached'")
    assert len(missing.stderr.strip().splitlines()) == 1


def _error(capsys, *argv):
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    return captured.err


def test_bad_configs_and_options_are_one_line_and_exit_2(tmp_path, capsys):
    assert "has no config.json" in _error(capsys, f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nonesuch", "hidden_size": 8}))
    assert "unknown model type 'nonesuch'" in _error(capsys, f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text("{not json")
    assert "cannot read" in _error(capsys, f"hf:{tmp_path}")
    assert "is not a model folder" in _error(capsys, f"hf:{tmp_path / 'absent'}")
    assert "give a folder or Hub id" in _error(capsys, "hf:")
    llama = saved(transformers.LlamaConfig(**LLAMA), tmp_path / "llama")
    assert "--seq-len must be >= 1" in _error(capsys, f"hf:{llama}", "--seq-len", "0")
    assert "shape-only" in _error(capsys, f"hf:{llama}", "--device", "cpu")
    vit = saved(transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, intermediate_size=128), tmp_path / "vit")
    assert "--generate needs a decoder model" in _error(capsys, f"hf:{vit}", "--generate", "8")
    assert "CSV" in _error(capsys, f"hf:{llama}", "--generate", "8", "--format", "csv")
