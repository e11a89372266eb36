"""The numbers one counted call (or a whole model) costs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Counts"]


@dataclass(frozen=True)
class Counts:
    """Exact integer costs; ``flops`` and ``backward_flops`` are derived, never set.

    ``macs``: forward multiply-accumulates of matmul-like work (bias excluded).
    ``flops``: ``2 * macs`` (PyTorch's FlopCounterMode convention).
    ``muls`` / ``adds``: the exact scalar multiplications and additions of that work.
    ``comparisons``: max-pooling comparisons (valid window elements minus one per output).
    ``grad_input_flops`` / ``grad_weight_flops``: backward matmul FLOPs for the input and the
    weight gradients; ``backward_flops`` is their sum.
    ``params``: parameters (a record: its module's own; a total: unique parameters).
    ``elementwise_flops``: elementwise work (norms, activations, softmax, adds) by the README's
    per-operation convention; never part of ``flops``.
    ``bytes_read`` / ``bytes_written``: bytes the call's ATen operations read (each distinct
    storage once per operation, a view by the bytes it spans) and write (their outputs).
    """

    macs: int = 0
    muls: int = 0
    adds: int = 0
    comparisons: int = 0
    grad_input_flops: int = 0
    grad_weight_flops: int = 0
    params: int = 0
    elementwise_flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    flops: int = field(init=False)
    backward_flops: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flops", 2 * self.macs)
        object.__setattr__(self, "backward_flops", self.grad_input_flops + self.grad_weight_flops)

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts(**{name: getattr(self, name) + getattr(other, name) for name in SUMMED})

    def __radd__(self, other: object) -> Counts:
        # sum() starts from 0
        if other == 0:
            return self
        return NotImplemented

    def replace(self, **changes: int) -> Counts:
        """A copy with some fields changed (the derived ones follow)."""
        values = {name: getattr(self, name) for name in SUMMED}
        values.update(changes)
        return Counts(**values)

    def as_dict(self) -> dict[str, int]:
        """Every field, derived ones included, in a fixed order."""
        return {name: getattr(self, name) for name in FIELDS}


SUMMED = tuple(f.name for f in dataclasses.fields(Counts) if f.init)

FIELDS = (
    "macs", "flops", "muls", "adds", "comparisons",
    "grad_input_flops", "grad_weight_flops", "backward_flops", "params",
    "elementwise_flops", "bytes_read", "bytes_written",
)
ZERO = Counts()
