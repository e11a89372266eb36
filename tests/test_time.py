"""Time: hardware specs, the roofline arithmetic on hand-made figures, measured passes (positive,
additive, the model left as it was) and the CLI's time options."""
import json
import math
import statistics
import time as stdlib_time

import pytest
import torch
import torchvision
from torch import nn

import torchflops as tf
from torchflops import _cli, _time
from torchflops._counts import Counts
from torchflops._profile import Record
from torchflops._roofline import seconds
from torchflops._render import Profile

# Children of a module, timed in the same pass, add up to it within this fraction of the
# parent: the rest is the parent's own uncounted work (residual adds, reshapes) and what the
# overhead subtraction misses.
ADD_UP = 0.25


@pytest.fixture
def one_thread():
    # the test machine is shared: one thread keeps a pass from waiting on a preempted sibling
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- hardware ----------------------------------------------------------------------------------------
def test_builtin_table_covers_the_named_accelerators_with_their_datasheet_figures():
    for name in ("a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "t4", "v100",
                 "rtx-4090", "mi300x"):
        spec = tf.hardware(name)
        assert spec.peak(torch.float32) > 0 and spec.bandwidth > 0
    # NVIDIA A100 datasheet: 312 TFLOPS bf16 dense, 19.5 fp32, 2,039 GB/s (80GB SXM), 1,555 (40GB)
    assert tf.hardware("a100-80gb").peak(torch.bfloat16) == 312e12
    assert tf.hardware("a100-80gb").bandwidth == 2039e9
    assert tf.hardware("a100-40gb").bandwidth == 1555e9
    # H100 SXM datasheet: 1,979 TFLOPS bf16 and 3,958 fp8 with sparsity, half of each dense
    h100 = tf.hardware("H100 SXM")
    assert h100 is tf.hardware("h100-sxm") is tf.hardware("h100")
    assert h100.peak(torch.bfloat16) == 989.4e12
    assert h100.peak(torch.float8_e4m3fn) == 1978.9e12
    # Turing has no bf16
    with pytest.raises(ValueError, match=r"t4 has no peak FLOP/s for bfloat16; it has: float32, float16"):
        tf.hardware("t4").peak(torch.bfloat16)


def test_unknown_hardware_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown hardware 'h1000'; close matches: .*h100.*known: a100-40gb"):
        tf.hardware("h1000")
    with pytest.raises(TypeError, match="hardware name must be a str"):
        tf.hardware(100)


def test_hardware_checks_its_fields():
    with pytest.raises(TypeError, match="keys must be torch dtypes"):
        tf.Hardware("x", {"fp32": 1e12}, 1e9)
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        tf.Hardware("x", {torch.float32: 1e12}, 0)
    with pytest.raises(ValueError, match=r"peak_flops\[float32\] must be a positive"):
        tf.Hardware("x", {torch.float32: -1.0}, 1e9)
    spec = tf.Hardware("x", {torch.float32: 1e12}, 1e9)
    with pytest.raises(TypeError):
        spec.peak_flops[torch.float16] = 1.0    # frozen, its peaks too


def test_calibrate_measures_this_cpu():
    spec = tf.calibrate(repeats=1, dtypes=(torch.float32,))
    assert spec.name == "cpu" and set(spec.peak_flops) == {torch.float32}
    # a 2-GFLOP product and a 64 MiB copy take far longer than a nanosecond and far less than a minute
    assert 2e9 / 60 < spec.peak(torch.float32) < 2e9 / 1e-9
    assert 2 * 64 * 2**20 / 60 < spec.bandwidth < 2 * 64 * 2**20 / 1e-9


# -- the roofline on hand-made figures ------------------------------------------------------------
TOY = tf.Hardware("toy", {torch.float32: 1e12, torch.bfloat16: 4e12}, bandwidth=1e11)


def hand_made_profile():
    model = nn.Linear(2, 2)
    profile = Profile(model, [], [])
    profile.records = [
        # 1e9 FLOPs / 1e12 = 1 ms; 1e7 bytes / 1e11 = 0.1 ms: compute-bound, 1 ms
        Record("a", "Conv2d", (), (), (), Counts(macs=5 * 10**8, bytes_read=6 * 10**6, bytes_written=4 * 10**6)),
        # 2e6 FLOPs: 2 us; 4e8 bytes: 4 ms: memory-bound, 4 ms
        Record("b", "ReLU", (), (), (), Counts(macs=10**6, bytes_read=2 * 10**8, bytes_written=2 * 10**8)),
        # nothing to do: zero seconds
        Record("c", "Dropout", (), (), (), Counts()),
    ]
    return profile


def test_estimate_is_the_slower_of_compute_and_memory_per_record():
    result = hand_made_profile().estimate_time(TOY)
    assert [tuple(r) for r in result.records] == [("a", 1e-3, "compute"), ("b", 4e-3, "memory"),
                                                  ("c", 0.0, "compute")]
    assert result.total_s == pytest.approx(5e-3, rel=1e-12)
    assert result.dtype is torch.float32     # the model's parameters
    # efficiency scales both ceilings: twice the time at half
    half = hand_made_profile().estimate_time(TOY, efficiency=0.5)
    assert [r.seconds for r in half.records] == pytest.approx([2e-3, 8e-3, 0.0], rel=1e-12)
    # each ceiling on its own: compute at 0.5 doubles a's 1 ms, memory at 0.25 makes b's 4 ms 16 ms
    split = hand_made_profile().estimate_time(TOY, efficiency={"compute": 0.5, "memory": 0.25})
    assert [r.seconds for r in split.records] == pytest.approx([2e-3, 16e-3, 0.0], rel=1e-12)
    # bf16 peak 4x: record a becomes 0.25 ms of compute, still above its 0.1 ms of memory
    fast = hand_made_profile().estimate_time(TOY, dtype=torch.bfloat16)
    assert fast.records[0].seconds == pytest.approx(2.5e-4, rel=1e-12) and fast.records[0].bound == "compute"
    assert seconds(Counts(macs=1, bytes_read=10), 1.0, 1.0) == (10.0, "memory")


def test_estimate_rejects_bad_arguments():
    profile = hand_made_profile()
    with pytest.raises(ValueError, match="toy has no peak FLOP/s for float16; it has: float32, bfloat16"):
        profile.estimate_time(TOY, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"efficiency must be a number in \(0, 1\]"):
        profile.estimate_time(TOY, efficiency=0)
    with pytest.raises(ValueError, match=r"or \{'compute': a, 'memory': b\}"):
        profile.estimate_time(TOY, efficiency={"compute": 0.5})
    with pytest.raises(TypeError, match="hardware must be a torchflops.Hardware"):
        profile.estimate_time("h100")


def test_plot_roofline_writes_a_png(tmp_path):
    target = tmp_path / "roofline.png"
    hand_made_profile().plot_roofline(target, TOY)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- measured passes ---------------------------------------------------------------------------------
class Attention(nn.Module):
    """Hand-written attention: its matmuls are functional calls of this module."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim=256, heads=4):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def own_records(profile, name):
    """Per pass: the seconds of the functional calls module ``name`` made itself."""
    kind = profile.module_type(name)
    mine = [r for r in profile.records if r.name == name and r.type != kind]
    return [0.0] * profile.repeats if not mine else [sum(x) for x in zip(*(r.latencies for r in mine))]


def assert_children_add_up(profile, name, backward=False):
    """Pass by pass, the children's seconds over the parent's: the median ratio within ``ADD_UP``
    of 1 (the median, because another process taking the core mid-pass lands in one pass)."""
    parent = profile.module_times(name, backward)
    parts = [profile.module_times(c, backward) for c in profile.timed_children(name)]
    if not backward:
        parts.append(own_records(profile, name))
    assert all(whole > 0 and math.isfinite(whole) for whole in parent)
    ratios = [sum(p[i] for p in parts) / whole for i, whole in enumerate(parent)]
    assert abs(statistics.median(ratios) - 1) <= ADD_UP, (name, ratios)


@pytest.mark.parametrize("backward", [False, True])
def test_resnet50_children_add_up_to_their_parent(one_thread, backward):
    model = torchvision.models.resnet50().eval()
    prof = tf.time(model, input_size=(1, 3, 64, 64), repeats=5, warmup=1, backward=backward)
    for name in ("", "layer1", "layer3", "layer2.0", "layer4.2"):
        assert_children_add_up(prof, name, backward)
    assert all(r.latency > 0 and math.isfinite(r.latency) and r.latency_min <= r.latency <= r.latency_max
               for r in prof.records)
    assert prof.latency > 0 and prof.achieved_flops == prof.total.flops / prof.latency
    # the counts are count()'s, from the same capture
    counted = tf.count(model, input_size=(1, 3, 64, 64))
    assert [(r.name, r.type, r.counts) for r in prof.records] == [(r.name, r.type, r.counts) for r in counted.records]
    if backward:
        assert prof.backward_latency > 0
        assert all(r.backward_latency is not None and r.backward_latency >= 0 for r in prof.records)


@pytest.mark.parametrize("backward", [False, True])
def test_transformer_block_children_add_up_to_their_parent(one_thread, backward):
    # head width 256: the softmax and scaling attn does itself (uncounted) stay small beside its matmuls
    prof = tf.time(Block(512, heads=2), torch.randn(2, 64, 512), repeats=5, warmup=1, backward=backward)
    # backward: attn's own matmuls and softmax are its own work, timed only as part of it
    for name in ("", "mlp") if backward else ("", "attn", "mlp"):
        assert_children_add_up(prof, name, backward)
    matmuls = [r for r in prof.records if r.name == "attn" and r.type in ("matmul", "__matmul__")]
    assert len(matmuls) == 2 and all(r.latency > 0 for r in matmuls)
    assert all(r.backward_latency is None for r in matmuls)     # inside attn's backward


def test_time_leaves_the_model_as_it_was(one_thread):
    model = torchvision.models.resnet18().train()
    model.layer1.eval()
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grad = torch.ones_like(model.conv1.weight)
    model.conv1.weight.grad = grad
    handles = model.layer2.register_forward_hook(lambda *a: None)
    modes = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    prof = tf.time(model, x, repeats=1, warmup=1, backward=True)
    assert prof.backward_latency > 0
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # BatchNorm statistics
    assert model.conv1.weight.grad is grad and torch.equal(grad, torch.ones_like(grad))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "conv1.weight")
    assert x.grad is None
    assert not model.fc.weight.requires_grad and model.fc.bias.requires_grad
    assert len(model.layer2._forward_hooks) == 1
    handles.remove()
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks


def test_time_needs_real_tensors():
    with torch.device("meta"):
        model = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="tf.time runs the model and needs real tensors, but weight is on the meta"):
        tf.time(model, input_size=(1, 4))
    with pytest.raises(ValueError, match="needs real tensors; an input is on the meta device"):
        tf.time(nn.Linear(4, 4), torch.empty(1, 4, device="meta"))
    with pytest.raises(ValueError, match="device='meta' is shape-only"):
        tf.time(nn.Linear(4, 4), input_size=(1, 4), device="meta")
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        tf.time(nn.Linear(4, 4), input_size=(1, 4), repeats=0)
    with pytest.raises(ValueError, match="backward=True: no floating output of the model needs a gradient"):
        tf.time(nn.Linear(4, 4).requires_grad_(False), input_size=(1, 4), backward=True)


def test_timed_profile_carries_the_figures_in_json_and_csv():
    prof = tf.time(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), input_size=(4, 8), repeats=2, warmup=0)
    data = json.loads(prof.to_json())
    assert [r["latency_s"] for r in data["records"]] == [r.latency for r in prof.records]
    assert data["latency_s"] == prof.latency and data["repeats"] == 2
    lines = prof.to_csv().splitlines()
    assert lines[0].endswith(",latency_s,latency_min_s,latency_max_s,backward_latency_s")
    assert float(lines[1].split(",")[-4]) == prof.records[0].latency
    assert lines[-1].split(",")[-4:] == [repr(prof.latency), repr(prof.latency_min), repr(prof.latency_max), ""]
    assert prof.mfu(TOY) == prof.achieved_flops / 1e12


class FakeEvent:
    """Stands in for torch.cuda.Event: records the host clock, answers elapsed_time in ms."""

    def __init__(self, enable_timing):
        assert enable_timing

    def record(self):
        self.at = stdlib_time.perf_counter()

    def elapsed_time(self, end):
        return (end.at - self.at) * 1e3


def test_cuda_clock_uses_events_and_one_synchronisation(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: synced.append(1))
    clock = _time._Clock(torch.device("cuda"))
    start = clock.mark()
    stdlib_time.sleep(0.01)
    end = clock.mark()
    clock.sync()
    assert isinstance(start, FakeEvent) and synced == [1]
    assert 0.01 <= clock.seconds(start, end) < 1.0


# -- command line -----------------------------------------------------------------------------------
def test_cli_time_and_hardware(capsys):
    assert _cli.main(["resnet18", "--hardware", "h100", "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "estimated (h100-sxm)" in text and "compute" in text
    assert _cli.main(["resnet18", "--time", "--repeats", "1", "--input-size", "1,3,32,32",
                      "--hardware", "a100-80gb", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latency_s"] > 0 and data["estimate"]["hardware"] == "a100-80gb"
    # one estimate per record, and one for the bytes no record holds (residual adds)
    assert [e["name"] for e in data["estimate"]["records"]] == [r["name"] for r in data["records"]] + [
        "(outside counted calls)"]
    assert _cli.main(["resnet18", "--hardware", "t4", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(",estimated_s,bound")
    assert _cli.main(["resnet18", "--hardware", "h1000"]) == 2
    assert "unknown hardware 'h1000'; close matches" in capsys.readouterr().err


def test_cli_calibrate(capsys):
    assert _cli.main(["--calibrate"]) == 0
    assert capsys.readouterr().out.startswith("cpu: float32 ")


def test_the_estimate_covers_work_no_record_holds():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 64, bias=False)

        def forward(self, x):
            return self.fc(x) + x

    prof = tf.count(Residual(), input_size=(16, 64))
    spec = tf.Hardware("made-up", peak_flops={torch.float32: 1e12}, bandwidth=1e9)
    estimate = prof.estimate_time(spec)
    # the add reads two 16x64 float32 tensors (8,192 bytes) and writes one (4,096): 12,288 bytes
    # at 1e9 B/s; no record holds it, so the estimate lists it apart
    assert [e.name for e in estimate.records] == ["fc", "(outside counted calls)"]
    assert estimate.records[1].seconds == pytest.approx(12_288 / 1e9)
    assert estimate.records[1].bound == "memory"
    assert estimate.total_s == pytest.approx(sum(e.seconds for e in estimate.records))
