"""How close the roofline comes to measured time on this CPU (issue 12).

Calibrates this machine (``tf.calibrate()``: matmul peak per dtype, copy bandwidth), then for each
model and batch size measures the forward with ``tf.time`` and estimates it with
``Profile.estimate_time``, and prints, as markdown:

- per model: measured and estimated whole-pass seconds and the relative error;
- per layer (every counted record that takes at least ``--floor`` seconds): median and worst
  absolute relative error, and Spearman's rank correlation between estimated and measured times;
- the same with two efficiencies, one for compute-bound and one for memory-bound records, fitted
  on the even-numbered rows and reported on the odd-numbered ones (held out).

Run: ``python benchmarks/time_accuracy.py`` (about 5 minutes on 2 cores; ``--quick``: 3 models).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torchflops as tf  # noqa: E402
from torchflops._roofline import seconds as roofline  # noqa: E402

VISION = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
          "vgg11", "squeezenet1_0", "shufflenet_v2_x1_0", "regnet_x_400mf", "googlenet", "alexnet")
QUICK = ("resnet18", "mobilenet_v2", "squeezenet1_0")


@dataclass
class Run:
    label: str
    measured: float                         # whole forward, median seconds
    layers: list[tuple[float, float, float]]   # per record: measured s, compute s, memory s (efficiency 1)

    def estimate(self, compute: float = 1.0, memory: float = 1.0) -> float:
        return sum(max(c / compute, m / memory) for _, c, m in self.layers)


def vision(name: str) -> torch.nn.Module:
    import torchvision
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    config = GPT2Config(n_layer=4, attn_implementation="eager")
    return GPT2LMHeadModel(config).eval()


def measure(label: str, model: torch.nn.Module, hardware: tf.Hardware, repeats: int, **inputs) -> Run:
    prof = tf.time(model, repeats=repeats, warmup=1, **inputs)
    peak = hardware.peak(torch.float32)
    layers = []
    for r in prof.records:
        c, _ = roofline(r.counts.replace(bytes_read=0, bytes_written=0), peak, hardware.bandwidth)
        m, _ = roofline(r.counts.replace(macs=0), peak, hardware.bandwidth)
        layers.append((r.latency, c, m))
    return Run(label, prof.latency, layers)


def relative(estimate: float, measured: float) -> float:
    return abs(estimate - measured) / measured


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def fit(runs: list[Run]) -> tuple[float, float]:
    """Compute and memory efficiencies minimising the median whole-model error (grid search)."""
    grid = [i / 100 for i in range(2, 101)]
    best = min(((statistics.median(relative(r.estimate(c, m), r.measured) for r in runs), c, m)
                for c in grid for m in grid))
    return best[1], best[2]


def report(runs: list[Run], floor: float, compute: float = 1.0, memory: float = 1.0) -> list[str]:
    lines = ["| model | measured | estimated | error | layers | layer median err | layer worst err | rank corr |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        kept = [(t, max(c / compute, m / memory)) for t, c, m in r.layers if t >= floor]
        errors = [relative(e, t) for t, e in kept]
        rho = spearman([t for t, _ in kept], [e for _, e in kept]) if len(kept) > 2 else float("nan")
        lines.append(f"| {r.label} | {r.measured * 1e3:.2f} ms | {r.estimate(compute, memory) * 1e3:.2f} ms | "
                     f"{100 * relative(r.estimate(compute, memory), r.measured):.0f}% | {len(kept)} | "
                     f"{100 * statistics.median(errors):.0f}% | {100 * max(errors):.0f}% | {rho:.2f} |")
    whole = [relative(r.estimate(compute, memory), r.measured) for r in runs]
    layer = [relative(max(c / compute, m / memory), t) for r in runs for t, c, m in r.layers if t >= floor]
    rhos = [spearman([t for t, _, _ in r.layers if t >= floor],
                     [max(c / compute, m / memory) for t, c, m in r.layers if t >= floor]) for r in runs]
    lines.append(f"\nwhole model: median error {100 * statistics.median(whole):.0f}%, worst "
                 f"{100 * max(whole):.0f}%; per layer: median {100 * statistics.median(layer):.0f}%, worst "
                 f"{100 * max(layer):.0f}%; median rank correlation {statistics.median(rhos):.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three models, three repeats")
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    parser.add_argument("--floor", type=float, default=20e-6, help="layers faster than this are left out")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    repeats = 3 if args.quick else 7

    hardware = tf.calibrate()
    print(f"calibrated: {hardware} ({hardware.notes}); torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    runs = []
    for name in QUICK if args.quick else VISION:
        model = vision(name)
        for batch in batches:
            runs.append(measure(f"{name} {batch}x3x{args.size}x{args.size}", model, hardware, repeats,
                                input_size=(batch, 3, args.size, args.size)))
            print(f"measured {runs[-1].label}", file=sys.stderr)
    if not args.quick:
        model = gpt2()
        for batch in batches:
            runs.append(measure(f"gpt2 (4 layers) {batch}x128", model, hardware, repeats,
                                input_size=(batch, 128), dtype=torch.long))
            print(f"measured {runs[-1].label}", file=sys.stderr)

    print(f"load average after measuring: {os.getloadavg()[0]:.2f}\n")
    print("## Roofline with the calibrated peak and bandwidth (efficiency 1)\n")
    print("\n".join(report(runs, args.floor)))
    # rows come model by model, one per batch size: fit on every other model, report the rest
    fitted = [r for i, r in enumerate(runs) if (i // len(batches)) % 2 == 0]
    held = [r for i, r in enumerate(runs) if (i // len(batches)) % 2 == 1]
    compute, memory = fit(fitted)
    print(f"\n## Two efficiencies fitted on {len(fitted)} rows: compute {compute:.2f}, memory {memory:.2f}; "
          f"the {len(held)} held-out rows\n")
    print("\n".join(report(held, args.floor, compute, memory)))


if __name__ == "__main__":
    main()
