"""The scale benchmark's model: a 6.7 B-parameter Llama decoder built without storage.

Run as a script, this is the fresh child process whose peak RSS the benchmark reports: it imports,
builds the model, counts it once and prints one JSON line.

Peak RSS is read from ``VmHWM`` in ``/proc/self/status``, the high-water mark of this process's own
address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` is reported as well but cannot be trusted in a
child: Linux carries the parent's high-water mark across fork and exec into it, so a child spawned
by a 2.7 GB benchmark process reports at least 2.7 GB.
"""
from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
import warnings

import torch
from torch import nn

TOKENS = 2048
SHAPE = (1, TOKENS)


def build(attention: str = "sdpa") -> nn.Module:
    """``LlamaForCausalLM`` as in the issue, on the meta device; ``attention`` picks transformers'
    implementation ("sdpa" is its default, "eager" spells the attention out as matmuls)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, vocab_size=32000)
    config._attn_implementation = attention
    with torch.device("meta"):
        return LlamaForCausalLM(config).eval()


def count(model: nn.Module):
    import torchflops as tf

    return tf.count(model, input_size=SHAPE, dtype=torch.long)


def bare_forward(model: nn.Module, fake: bool):
    """One forward without torchflops, on the path its count took: meta tensors, or fake CPU
    stand-ins under FakeTensorMode where the model needs a real device type (transformers 4.x's
    rotary embedding calls ``torch.autocast(device_type=x.device.type)``, which meta refuses)."""
    if not fake:
        ids = torch.zeros(SHAPE, dtype=torch.long, device="meta")
        return lambda: model(ids)
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        standins = {name: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype) for name, t in tensors.items()}
        ids = torch.zeros(SHAPE, dtype=torch.long)

    def run() -> object:
        with mode:
            return torch.func.functional_call(model, standins, (ids,))
    return run


def flop_counter_fake(model: nn.Module) -> int:
    """PyTorch's FlopCounterMode under FakeTensorMode: fake CPU stand-ins for every parameter and
    buffer, token ids as input (the issue's oracle)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        standins = {name: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype) for name, t in tensors.items()}
        ids = torch.zeros(SHAPE, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            torch.func.functional_call(model, standins, (ids,))
    return counter.get_total_flops()


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024      # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS is measured on Linux only")


def main() -> None:
    warnings.simplefilter("ignore")
    import torchflops  # noqa: F401 - imported before the baseline, like any user's script
    import transformers  # noqa: F401

    imported = _peak_mb()
    model = build()
    built = _peak_mb()
    start = time.perf_counter()
    prof = count(model)
    seconds = time.perf_counter() - start
    counted_mb = _peak_mb()
    start = time.perf_counter()
    memory = prof.memory("adamw")       # a training step replayed on stand-ins
    memory_seconds = time.perf_counter() - start
    json.dump({"seconds": seconds, "peak_mb_imported": imported, "peak_mb_built": built, "peak_mb": counted_mb,
               "memory_seconds": memory_seconds, "peak_mb_with_memory": _peak_mb(),
               "memory": dataclasses.asdict(memory),
               "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,   # Linux: KiB
               "flops": prof.total.flops, "device": prof.meta["device"]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
