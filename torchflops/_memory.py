"""Memory: the bytes a model needs, from the storages a pass recorded (``_storages``).

An accounting stage: it reads what capture recorded (saved storages, live bytes over the pass,
the storages of a training step) and the model's own tensors, and turns them into one ``Memory``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ._profile import ProfileData
from ._sharded import fsdp_states, local, padded_bytes
from ._storages import storage_of

__all__ = ["Memory", "memory", "OPTIMIZERS"]


@dataclass(frozen=True)
class Memory:
    """Exact byte counts of one model, its inputs and an optimizer."""

    params: int             # distinct storages of the parameters (tied once)
    buffers: int            # distinct storages of the buffers
    gradients: int          # ``.grad`` of every parameter that requires it
    optimizer_state: int    # the optimizer's state for those parameters
    activations: int        # distinct storages autograd saves in the forward (parameters, buffers excluded)
    peak_inference: int     # most bytes alive over a forward without autograd
    peak_training: int      # most bytes alive over forward, backward and optimizer step


# optimizer name -> (how it is made over the trainable parameters, state buffers per parameter,
# whether it keeps a step counter per parameter)
OPTIMIZERS: dict[str, tuple[Callable[[list], torch.optim.Optimizer], int, bool]] = {
    "sgd": (partial(torch.optim.SGD, lr=0.01), 0, False),
    "momentum": (partial(torch.optim.SGD, lr=0.01, momentum=0.9), 1, False),
    "adam": (torch.optim.Adam, 2, True),
    "adamw": (torch.optim.AdamW, 2, True),
}
_CLASSES = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}


def optimizer_name(optimizer: Union[None, str, type]) -> Optional[str]:
    """The known name of ``optimizer`` (a name or a ``torch.optim`` class), None for no optimizer."""
    known = ", ".join(list(OPTIMIZERS) + [f"torch.optim.{c.__name__}" for c in _CLASSES])
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected None or one of: {known}")
        return optimizer.lower()
    if isinstance(optimizer, type) and optimizer in _CLASSES:
        return _CLASSES[optimizer]
    raise ValueError(f"unknown optimizer {optimizer!r}; expected None or one of: {known}")


def _distinct_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = storage_of(t)
        if storage is not None:
            seen[id(storage)] = storage.nbytes()
    return sum(seen.values())


def _bytes(t: torch.Tensor) -> int:
    """What this rank holds of ``t``: a DTensor's local shard."""
    t = local(t)
    return t.numel() * t.element_size()


def _step_counter_bytes() -> int:
    """PyTorch keeps Adam's step as a float32 scalar (float64 when that is the default dtype)."""
    return 8 if torch.get_default_dtype() == torch.float64 else 4


def memory(profile: ProfileData, optimizer: Union[None, str, type] = None) -> Memory:
    """The ``Memory`` of ``profile`` trained with ``optimizer`` (made once per optimizer)."""
    name = optimizer_name(optimizer)
    found = profile._memory.get(name)
    if found is not None:
        return found
    model: nn.Module = profile._model
    trainable = [p for p in model.parameters() if p.requires_grad]
    # FSDP reduce-scatters gradients into its padded shards; an optimizer's state is made like the
    # parameter, the local shard unpadded
    padded = padded_bytes(fsdp_states(profile._modules.values()))
    gradients = sum(padded.get(id(p)) or _bytes(p) for p in trainable)
    make, per_parameter, counters = OPTIMIZERS[name] if name is not None else (None, 0, False)
    state = per_parameter * sum(_bytes(p) for p in trainable) + (
        _step_counter_bytes() * len(trainable) if counters else 0)
    storages = profile._storages
    activations, peak_inference, peak_training = storages.saved, storages.peak, storages.peak
    if profile._replay is not None:
        step, profile._step_collectives = profile._replay(make, train=True)
        peak_training = step.peak
        if not profile._forward_exact:
            activations = step.saved
            peak_inference = profile._replay(None, train=False).storages.peak
    found = profile._memory[name] = Memory(
        params=_distinct_bytes(model.parameters()), buffers=_distinct_bytes(model.buffers()),
        gradients=gradients, optimizer_state=state, activations=activations,
        peak_inference=peak_inference, peak_training=peak_training)
    return found
