"""Mixtral-8x7B (46.7 B parameters, 8 experts, top-2) counted shape-only at 2,048 tokens.

    python benchmarks/bench_moe.py [--repeats 3]

The model is built under ``torch.device("meta")`` and counted in a fresh interpreter, so the peak
RSS it reports (``VmHWM``, see ``_llama.py``) is the import, the build and the count alone. The
experts never run: transformers 5's experts modules (4.57's expert blocks) are counted from shapes.
Targets: under 3 s and 1.5 GB peak RSS.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

TOKENS = 2048
SECONDS, MB = 3.0, 1536


def build():
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_local_experts=8,
                           num_experts_per_tok=2, num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        return MixtralForCausalLM(config).eval()


def child(repeats: int) -> None:
    warnings.simplefilter("ignore")
    import transformers

    import torchflops as tf
    from _llama import _peak_mb

    model = build()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        prof = tf.count(model, input_size=(1, TOKENS), dtype=torch.long)
        times.append(time.perf_counter() - start)
    json.dump({"transformers": transformers.__version__, "first_s": times[0], "median_s": sorted(times)[len(times) // 2],
               "peak_mb": _peak_mb(), "flops": prof.total.flops, "params": prof.total.params,
               "active_params": prof.active_params, "device": prof.meta["device"],
               "unsupported": prof.unsupported}, sys.stdout)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeats)
        return
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--repeats", str(args.repeats)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the child process failed (exit {done.returncode}):\n{done.stderr.strip()}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"Mixtral-8x7B on meta, transformers {r['transformers']}, torch {torch.__version__}: "
          f"{r['params']:,} parameters, {r['active_params']:,} active; {TOKENS} tokens: {r['flops']:,} FLOPs "
          f"(path: {r['device']}; unsupported: {r['unsupported'] or 'none'})")
    rows = [("tf.count s, first in a fresh process", f"{r['first_s']:.2f}", f"< {SECONDS:.0f}"),
            (f"tf.count s, median of {args.repeats}", f"{r['median_s']:.2f}", f"< {SECONDS:.0f}"),
            ("peak RSS MB (VmHWM: imports, build, counts)", f"{r['peak_mb']:,.0f}", f"< {MB:,}")]
    print(f"{'figure':<45} {'value':>8} {'target':>8}")
    for figure, value, target in rows:
        print(f"{figure:<45} {value:>8} {target:>8}")
    met = r["first_s"] < SECONDS and r["peak_mb"] < MB and not r["unsupported"]
    print("targets met" if met else "TARGETS MISSED")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
