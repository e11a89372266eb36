"""Time to count a 4-layer bidirectional LSTM shape-only versus one real CPU forward of it.

    python benchmarks/bench_recurrent.py [--count-repeats 3] [--forward-repeats 1]

The shape-only pass answers the fused LSTM kernel from shapes (torchflops._shortcuts) instead of
letting ATen unroll it step by step on the meta device, so its cost depends on neither sequence
length, batch size nor hidden width; the real forward pays for every multiply.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

import torchflops as tf

LAYERS, INPUT, HIDDEN, SEQ, BATCH = 4, 1024, 1024, 512, 64


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-repeats", type=int, default=3)
    parser.add_argument("--forward-repeats", type=int, default=1)
    args = parser.parse_args()

    model = nn.LSTM(INPUT, HIDDEN, num_layers=LAYERS, bidirectional=True).eval()
    size = (SEQ, BATCH, INPUT)
    prof = tf.count(model, input_size=size)          # also warms up the meta kernels
    counting = median_seconds(lambda: tf.count(model, input_size=size), args.count_repeats)

    x = torch.randn(size)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    real = median_seconds(forward, args.forward_repeats)
    total = prof.total
    print(f"nn.LSTM({INPUT}, {HIDDEN}, num_layers={LAYERS}, bidirectional=True), input {SEQ}x{BATCH}x{INPUT}: "
          f"{total.macs:,} MACs, {total.flops:,} FLOPs, {total.backward_flops:,} backward FLOPs, "
          f"{total.params:,} params; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = [("tf.count, shape-only (meta)", args.count_repeats, counting),
            ("real CPU forward (no_grad)", args.forward_repeats, real)]
    print(f"{'what':<30} {'runs':>5} {'median ms':>12}")
    for what, runs, seconds in rows:
        print(f"{what:<30} {runs:>5} {seconds * 1e3:>12,.1f}")
    print(f"shape-only is {real / counting:.0f}x faster than running the model")


if __name__ == "__main__":
    main()
