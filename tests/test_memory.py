"""Memory: activations against the saved-tensors oracle on a real CPU pass, peaks against MemTracker."""
from __future__ import annotations

import csv
import io
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.checkpoint import checkpoint

import torchflops as tf
from oracles import memtracker_peak, saved_bytes

torchvision = pytest.importorskip("torchvision")


def _check(model: nn.Module, *inputs: torch.Tensor, optimizer=None, peaks: bool = True,
           tolerance: float = 0.0) -> tf.Memory:
    """The shape-only figures equal the oracles' on a real CPU pass: activations exactly, both peaks
    within ``tolerance`` (exact by default: MemTracker follows storages as torchflops does, op by op)."""
    memory = tf.count(model, *inputs).memory(optimizer)
    assert memory.activations == saved_bytes(model, *inputs)
    if peaks:
        make = {None: None, "adamw": torch.optim.AdamW, "momentum": lambda p: torch.optim.SGD(
            p, lr=0.01, momentum=0.9)}[optimizer]
        assert memory.peak_inference == pytest.approx(memtracker_peak(model, *inputs, train=False), rel=tolerance)
        assert memory.peak_training == pytest.approx(memtracker_peak(model, *inputs, optimizer=make), rel=tolerance)
    return memory


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_models_match_the_oracles(name):
    model = torchvision.models.get_model(name)
    _check(model, torch.randn(2, 3, 64, 64), optimizer="adamw")


def test_categories_are_the_models_tensors_and_the_optimizers_state():
    model = torchvision.models.resnet18()
    memory = tf.count(model, input_size=(2, 3, 32, 32)).memory("adamw")
    params = sum(p.numel() for p in model.parameters()) * 4
    assert memory.params == memory.gradients == params
    assert memory.buffers == sum(b.numel() * b.element_size() for b in model.buffers())
    # AdamW: exp_avg and exp_avg_sq per parameter, plus a float32 step counter per tensor
    opt = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    real = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    assert memory.optimizer_state == real == 2 * params + 4 * len(list(model.parameters()))
    assert tf.count(model, input_size=(2, 3, 32, 32)).memory(torch.optim.AdamW) == memory
    assert all(p.grad is not None for p in model.parameters())   # untouched by memory(): ours only


def test_memory_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tf.count(model, input_size=(4, 8)).memory("adamw")
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_momentum_keeps_one_buffer_and_sgd_none():
    model = nn.Linear(10, 5)
    profile = tf.count(model, input_size=(3, 10))
    assert profile.memory("momentum").optimizer_state == (50 + 5) * 4
    assert profile.memory("sgd").optimizer_state == profile.memory().optimizer_state == 0
    _check(model, torch.randn(3, 10), optimizer="momentum")


def test_unknown_optimizer_lists_the_known_ones():
    profile = tf.count(nn.Linear(2, 2), input_size=(1, 2))
    with pytest.raises(ValueError, match="adamw.*torch.optim.AdamW"):
        profile.memory("lion")
    with pytest.raises(ValueError, match="unknown optimizer"):
        profile.memory(torch.optim.RMSprop)


def test_frozen_and_partly_frozen_models_save_less():
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 32, 32)
    full = _check(model, x)
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    partly = _check(model, x, peaks=False)   # MemTracker cannot hook frozen parameters
    assert 0 < partly.activations < full.activations
    model.requires_grad_(False)
    assert _check(model, x, peaks=False).activations == 0


def test_data_and_grad_inputs():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    model.requires_grad_(False)
    data = torch.randn(8, 16)
    assert _check(model, data, peaks=False).activations == 0
    # with the input needing a gradient, linear saves nothing of its input (the weight is frozen),
    # relu saves its output (8 x 16 float32), the last linear its input (the same storage)
    needing = _check(model, torch.randn(8, 16, requires_grad=True), peaks=False)
    assert needing.activations == 8 * 16 * 4


class _Product(nn.Module):
    def forward(self, a, b):
        return a * b


def test_an_input_given_twice_is_one_tensor():
    x = torch.randn(8, 16, requires_grad=True)
    # mul saves both operands: one storage of 8 x 16 float32 when both are x
    assert _check(_Product(), x, x, peaks=False).activations == 8 * 16 * 4
    assert _check(_Product(), x, x.clone(), peaks=False).activations == 2 * 8 * 16 * 4


class _Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.stem = nn.Linear(32, 64)
        self.block = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU())
        self.head = nn.Linear(64, 8)
        self.reentrant = reentrant

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = checkpoint(self.block, x, use_reentrant=self.reentrant)
        return self.head(x)


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointed_blocks_save_what_checkpointing_keeps(reentrant):
    x = torch.randn(4, 32, requires_grad=reentrant)
    plain = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64),
                          nn.GELU(), nn.Linear(64, 8))
    checkpointed = _check(_Checkpointed(reentrant), x, peaks=False)
    assert checkpointed.activations < _check(plain, x, peaks=False).activations


class _CheckpointedLayer(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return checkpoint(self.inner, x, use_reentrant=False)


def test_checkpointed_peaks_match_memtracker():
    # non-reentrant checkpointing stops each recomputation by raising an error through the
    # recomputed modules: nothing may keep that error (its frames hold the recomputed tensors)
    model = torchvision.models.resnet18()
    model.layer3 = _CheckpointedLayer(model.layer3)
    _check(model, torch.randn(2, 3, 64, 64), optimizer="adamw")
    _check(_Checkpointed(False), torch.randn(4, 32), optimizer="adamw")


class _Autocast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(32, 64), nn.Linear(64, 16)

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.b(torch.relu(self.a(x)))


def test_autocast_saves_the_dtypes_autocast_produces():
    memory = _check(_Autocast(), torch.randn(8, 32), peaks=False)
    # a saves its input cast to bf16 (8x32x2), not its weight (the input needs no gradient); relu
    # its bf16 output (8x64x2), which b saves too; b its weight cast to bf16 (16x64x2, a new storage)
    assert memory.activations == 8 * 32 * 2 + 8 * 64 * 2 + 16 * 64 * 2


class _Reused(nn.Module):
    def __init__(self, times: int) -> None:
        super().__init__()
        self.layer = nn.Linear(64, 64)
        self.times = times

    def forward(self, x):
        for _ in range(self.times):
            x = torch.tanh(self.layer(x))
        return x


def test_a_module_reused_n_times_saves_n_times():
    memory = _check(_Reused(100), torch.randn(32, 64), optimizer="adamw")
    # each step saves its input once (linear) and tanh its output, which is the next step's input:
    # 101 distinct 32x64 float32 tensors
    assert memory.activations == 101 * 32 * 64 * 4


class _Recurrent(nn.Module):
    def __init__(self, cell: type) -> None:
        super().__init__()
        self.rnn = cell(16, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_models(cell):
    _check(_Recurrent(cell), torch.randn(3, 7, 16), optimizer="adamw")


def test_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=500, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 500, (2, 16))
    # exact: the records keep no reference to the key-value cache the model returns, so it goes
    # with the output, as in a real step
    _check(model, ids, optimizer="adamw")


class _Cache:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _TakesACache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)

    def forward(self, x, cache):
        return self.layer(x) + cache.tensor


def test_records_keep_no_object_the_model_was_given():
    # a key-value cache passed to a module, kept by its record, would keep its tensors alive for
    # as long as the profile (and through a training step, on top of its peak)
    import weakref

    model, x = _TakesACache(), torch.randn(2, 4)
    cache = _Cache(torch.randn(2, 4))
    with tf.profile(model) as profile:
        model(x, cache=cache)
    gone = weakref.ref(cache.tensor)
    del cache
    assert gone() is None
    assert profile.records[0].counts.macs == 2 * 4 * 4


def test_llama_with_grouped_query_attention():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=500)
    # causal attention without dropout: the CPU's flash kernel, with key/value heads shared
    _check(transformers.LlamaForCausalLM(config), torch.randint(0, 500, (2, 32)), optimizer="adamw")


def test_records_carry_saved_and_output_bytes():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    profile = tf.count(model, torch.randn(8, 16, requires_grad=True))
    # the first linear saves its input (its weight is a parameter); relu its output, which the
    # second linear saves again (attributed to relu, which saved it first)
    assert [r.saved_bytes for r in profile.records] == [8 * 16 * 4, 8 * 32 * 4, 0]
    assert profile.memory().activations == 8 * 16 * 4 + 8 * 32 * 4
    assert [r.output_bytes for r in profile.records] == [8 * 32 * 4, 8 * 32 * 4, 8 * 4 * 4]


def test_inside_profile_the_real_pass_is_followed():
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 32, 32)
    with tf.profile(model) as profile:
        out = model(x)
    out.sum().backward()                 # the saved tensors were kept for the user's backward
    assert profile.memory().activations == saved_bytes(model, x)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.sampled_from(["conv", "pool", "bn", "relu"]), min_size=1, max_size=6),
       st.integers(2, 3), st.integers(4, 12), st.booleans())   # batch 2+: training BatchNorm on 1x1
def test_random_conv_linear_stacks(kinds, batch, size, frozen_first):
    layers: list[nn.Module] = []
    channels = 3
    for kind in kinds:
        if kind == "conv":
            layers.append(nn.Conv2d(channels, 8, 3, padding=1))
            channels = 8
        elif kind == "pool":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(channels))
        else:
            layers.append(nn.ReLU())
    layers += [nn.Flatten(), nn.LazyLinear(5)]
    model = nn.Sequential(*layers)
    x = torch.randn(batch, 3, size, size)
    model(x)                            # materialises the lazy linear
    if frozen_first:
        for p in model[0].parameters():
            p.requires_grad_(False)
    _check(model, x, optimizer="adamw", peaks=not frozen_first)   # MemTracker cannot hook frozen parameters


def test_reports_carry_the_memory_figures():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    profile = tf.count(model, torch.randn(8, 16, requires_grad=True))
    records = profile.to_dict()["records"]
    assert [r["saved_bytes"] for r in records] == [r.saved_bytes for r in profile.records]
    assert [r["output_bytes"] for r in records] == [8 * 32 * 4, 8 * 32 * 4, 8 * 4 * 4]
    rows = list(csv.DictReader(io.StringIO(profile.to_csv())))
    assert [int(r["saved_bytes"]) for r in rows] == [512, 1024, 0, 1536]     # the total row sums them
    assert profile.table() == tf.count(model, torch.randn(8, 16, requires_grad=True)).table()
    shown = profile.table(saved=True)
    assert "saved (binary)" in shown and "1.50 KiB" in shown and "saved" not in profile.table()


def test_budgets_hold_memory_limits():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    profile = tf.count(model, torch.randn(8, 16, requires_grad=True))
    memory = profile.memory("adamw")
    tf.assert_budget(profile, activations=memory.activations, peak_training=memory.peak_training,
                     optimizer="adamw")
    with pytest.raises(tf.BudgetExceeded, match="activations: 1,536") as caught:
        tf.assert_budget(profile, activations=1000, peak_inference=memory.peak_inference)
    assert caught.value.overruns[0].contributors == (("1", 1024), ("0", 512))   # relu, first linear
    with pytest.raises(tf.BudgetExceeded, match="peak_training"):
        tf.assert_budget(profile, peak_training=memory.peak_training - 1, optimizer="adamw")


def test_cli_prints_a_memory_summary(capsys):
    from torchflops._cli import main

    assert main(["resnet18", "--input-size", "2,3,32,32", "--memory", "--optimizer", "adamw"]) == 0
    out = capsys.readouterr().out
    memory = tf.count(torchvision.models.resnet18(), input_size=(2, 3, 32, 32)).memory("adamw")
    assert f"{memory.peak_training:,}" in out and "KiB = 1024 B" in out and "optimizer: adamw" in out
    assert main(["resnet18", "--memory", "--optimizer", "lion"]) == 2
    assert "adamw" in capsys.readouterr().err


def test_cli_says_why_activations_are_zero(tmp_path, capsys):
    from torchflops._cli import main

    path = tmp_path / "frozen.py"
    path.write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 4).requires_grad_(False)\n")
    assert main([f"{path}:build", "--input-size", "2,4", "--memory"]) == 0
    assert "activations are 0: nothing in the pass needs a gradient" in capsys.readouterr().out


class _Attention(nn.Module):
    """A projection, then ``F.scaled_dot_product_attention`` with the given arguments."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.kwargs = kwargs

    def forward(self, q, k=None, v=None, mask=None):
        k, v = (q if t is None else t for t in (k, v))
        return F.scaled_dot_product_attention(self.proj(q), k, v, attn_mask=mask, **self.kwargs)


_MASKS = {"bool 2d": lambda: torch.rand(8, 8) > 0.5, "bool 4d": lambda: torch.rand(2, 1, 8, 8) > 0.5,
          "float 4d": lambda: torch.randn(2, 4, 8, 8), "float row": lambda: torch.randn(1, 8),
          "3d (math path)": lambda: torch.randn(4, 8, 8), "needs grad (math path)": lambda: torch.randn(
              8, 8, requires_grad=True)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mask", [None, *_MASKS])
def test_attention_saves_what_the_cpu_kernel_saves(dtype, mask):
    # the CPU runs its flash kernel wherever it fits (autograd saves q, k, v, output, logsumexp and
    # the additive mask), the math path elsewhere; the shape-only pass follows the same choice
    model = _Attention().to(dtype)
    q, k, v = (torch.randn(2, 4, 8, 16, dtype=dtype) for _ in range(3))
    args = (q, k.requires_grad_(), v) + ((_MASKS[mask](),) if mask else ())
    _check(model, *args, peaks=False)
    memory = tf.count(model, *args).memory()
    assert memory.peak_inference == memtracker_peak(model, *args, train=False)


@pytest.mark.parametrize("kwargs, kv_heads, length", [
    ({"is_causal": True}, 4, 8), ({"is_causal": True}, 4, 4), ({"dropout_p": 0.1}, 4, 8),
    ({"scale": 0.3}, 4, 8), ({"enable_gqa": True}, 2, 8)])
def test_attention_arguments_pick_the_cpu_kernel(kwargs, kv_heads, length):
    model = _Attention(**kwargs)
    q = torch.randn(2, 4, length, 16)
    k, v = torch.randn(2, kv_heads, 8, 16, requires_grad=True), torch.randn(2, kv_heads, 8, 16)
    _check(model, q, k, v, peaks=False)
    assert tf.count(model, q, k, v).memory().peak_inference == memtracker_peak(model, q, k, v, train=False)


def test_attention_follows_the_backend_the_user_picked():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, x = _Attention(), torch.randn(2, 4, 8, 16, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):
        math = _check(model, x, x, x, peaks=False)
    # both save x (key and value; the projection's input). The math path also saves the scaled
    # query and the scaled transposed key (2 x 4 x 8 x 16 float32 each) and the weights (2 x 4 x 8 x
    # 8); flash the query itself, the output (2 x 4 x 8 x 16 each) and logsumexp (2 x 4 x 8)
    flash = _check(model, x, x, x, peaks=False)
    assert math.activations == 4096 + 4096 + 4096 + 2048
    assert flash.activations == 4096 + 4096 + 4096 + 256


def test_attention_errors_are_the_real_ones():
    model, x = _Attention(is_causal=True), torch.randn(2, 4, 8, 16)
    for mask in (torch.randn(8, 8), torch.randn(8, 8, dtype=torch.float64)):
        with pytest.raises(RuntimeError) as real:
            model(x, x, x, mask)
        with pytest.raises(RuntimeError) as ours:
            tf.count(model, x, x, x, mask)
        assert str(ours.value).split("\n")[0] == str(real.value).split("\n")[0]


def test_attention_outside_the_session_is_pytorchs_own():
    def math_path() -> bool:
        q = torch.empty(1, 1, 4, 8, device="meta", requires_grad=True)
        return type(F.scaled_dot_product_attention(q, q, q).grad_fn).__name__ != (
            "ScaledDotProductFlashAttentionForCpuBackward0")

    elsewhere: list[bool] = []

    class Threaded(nn.Module):
        def forward(self, x):
            other = threading.Thread(target=lambda: elsewhere.append(math_path()))
            other.start()
            other.join()
            return x * 2

    tf.count(Threaded(), input_size=(2,))
    assert elsewhere == [True]          # another thread, while the session ran
    assert math_path()                   # after it
    with pytest.raises(ZeroDivisionError):
        tf.count(nn.Sequential(_Attention(), _Raises()), input_size=(2, 4, 8, 16))
    assert math_path()


class _Raises(nn.Module):
    def forward(self, x):
        raise ZeroDivisionError


def test_vision_transformer_matches_the_oracles():
    # nn.MultiheadAttention runs the flash kernel on the CPU (need_weights=False)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
    _check(model, torch.randn(2, 3, 32, 32), optimizer="adamw")


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_activations_of_every_torchvision_classifier(name):
    # small inputs where the architecture allows (batch 2: training BatchNorm needs two values)
    side = {"maxvit_t": 224, "vit_h_14": 28, "inception_v3": 75}.get(name, 32 if name.startswith("vit_") else 64)
    kwargs = {"image_size": side} if name.startswith("vit_") else {}
    if name == "inception_v3":
        kwargs = {"aux_logits": False, "init_weights": False}    # its auxiliary head needs 299x299
    model = torchvision.models.get_model(name, **kwargs)
    x = torch.randn(2, 3, side, side)
    assert tf.count(model, x).memory().activations == saved_bytes(model, x)
