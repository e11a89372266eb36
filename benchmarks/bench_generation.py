"""Time to count generating 4,096 new tokens with Llama-7B shape-only (target: under 5 s).

    python benchmarks/bench_generation.py [--repeats 3] [--prompt 2048] [--new 4096]

The model is the scale benchmark's (``benchmarks/_llama.py``: 6.74 B parameters, built on the meta
device). ``tf.generation`` counts the prefill and a few decode steps shape-only and sums the rest in
closed form, so its time hardly depends on the number of new tokens; the first run includes the
meta kernels' warm-up and is reported apart from the median of the others.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import torchflops as tf

import _llama

TARGET_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--new", type=int, default=4096)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    model = _llama.build()
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        gen = tf.generation(model, args.prompt, args.new)
        times.append(time.perf_counter() - start)
    first, median = times[0], statistics.median(times[1:] or times)
    print(f"Llama-7B (benchmarks/_llama.py), prompt {args.prompt:,}, {args.new:,} new tokens, shape-only; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(gen.summary())
    print(f"first run {first:.2f} s; median of {len(times) - 1 or 1} more {median:.2f} s "
          f"(target < {TARGET_SECONDS:.0f} s: {'yes' if max(first, median) < TARGET_SECONDS else 'NO'})")


if __name__ == "__main__":
    main()
