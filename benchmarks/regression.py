"""Quick guard for CI: how much ``tf.count`` costs over a bare shape-only forward of GoogLeNet.

    python benchmarks/regression.py [--pairs 5]

Prints the ratio (median of interleaved bare/count pairs) and the MACs the count made. It asserts
nothing about wall-clock time, which depends on the machine; ``tests/test_benchmark_guard.py``
checks that it ran and counted right.
"""
from __future__ import annotations

import argparse

import torchflops as tf

import _harness as h

MODEL = "googlenet"
SIZE = (1, 3, 224, 224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="bare/count pairs per median (default 5)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    h.quiet()
    model = h.vision_model(MODEL)
    prof = tf.count(model, input_size=SIZE)
    med = h.interleaved({"bare": h.bare_forward(model, SIZE), "count": lambda: tf.count(model, input_size=SIZE)},
                        args.pairs, warmup=1)
    size = "x".join(map(str, SIZE))
    print(f"{MODEL} {size} MACs: {prof.total.macs:,}")
    print(f"{MODEL} {size} ratio count/bare: {med['count'] / med['bare']:.2f} "
          f"(bare {h.ms(med['bare'])} ms, count {h.ms(med['count'])} ms; medians of {args.pairs} interleaved pairs; "
          f"{h.load()})")


if __name__ == "__main__":
    main()
