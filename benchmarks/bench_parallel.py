"""Time to count one rank of Llama-7B under FSDP over 64 ranks and tensor parallel over 8
(a 64 x 8 mesh of 512 fake ranks), shape-only, with its memory (target: under 10 s).

    python benchmarks/bench_parallel.py [--repeats 3] [--tokens 4096] [--fsdp 64] [--tp 8]

The model is the scale benchmark's (``benchmarks/_llama.py``: 6.74 B parameters, built on the meta
device). ``tf.parallel`` sets up torch's fake process group and puts the standard plan on a meta
copy (``fully_shard`` per decoder layer, Megatron column/row layers for attention and MLP); the
count and the memory replay run on it. The first run includes the meta kernels' warm-up and
DTensor's sharding-propagation caches and is reported apart from the median of the others.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import torchflops as tf

import _llama

TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--fsdp", type=int, default=64)
    parser.add_argument("--tp", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    model = _llama.build()
    times, counts = [], []
    with tf.parallel(tp=args.tp, fsdp=args.fsdp) as plan:
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            profile = plan.count(model, input_size=(1, args.tokens), dtype=torch.long)
            counted = time.perf_counter()
            memory = profile.memory("adamw")
            times.append(time.perf_counter() - start)
            counts.append(counted - start)
        first, median = times[0], statistics.median(times[1:] or times)
    rank = profile.rank_total
    print(f"Llama-7B (benchmarks/_llama.py), {args.tokens:,} tokens per rank, FSDP {args.fsdp} x TP {args.tp}, "
          f"shape-only; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"whole model: {profile.total.flops:,} FLOPs forward; one rank: {rank.flops:,} forward, "
          f"{rank.backward_flops:,} backward, {rank.params:,} parameters")
    kinds: dict[tuple[str, str], list[int]] = {}
    for c in profile.step_collectives():      # the training step memory() replayed
        entry = kinds.setdefault((c.phase, c.kind), [0, 0])
        entry[0] += 1
        entry[1] += c.bytes
    print("collectives of a training step: " + ", ".join(
        f"{phase} {n} {kind} ({sent:,} bytes sent)" for (phase, kind), (n, sent) in kinds.items()))
    print(f"memory per rank (AdamW): params {memory.params:,}, gradients {memory.gradients:,}, optimizer "
          f"{memory.optimizer_state:,}, peak training {memory.peak_training:,} bytes")
    print(f"first run {first:.2f} s; median of {len(times) - 1 or 1} more {median:.2f} s "
          f"(target < {TARGET_SECONDS:.0f} s: {'yes' if max(first, median) < TARGET_SECONDS else 'NO'}); "
          f"of which planning and counting (FLOPs, the forward's collectives) "
          f"{statistics.median(counts[1:] or counts):.2f} s, the training step's replay the rest")


if __name__ == "__main__":
    main()
