"""What one call saw, reduced to shapes and flags: the only input formulas get besides the module."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, Iterator

__all__ = ["TensorInfo", "PackedInfo", "ObjectInfo", "Call"]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor's shape, whether autograd would need its gradient, and whether it is a parameter.

    ``parameter`` tells a weight from an activation among the operands of a functional product
    (``x @ self.weight``); it is set for parameters of the counted model and views of them.
    """

    shape: tuple[int, ...]
    needs_grad: bool
    parameter: bool = False

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True, slots=True)
class PackedInfo:
    """A ``PackedSequence``: its data tensor and its (real, host-side) batch sizes."""

    data: TensorInfo
    batch_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Any other object (a key-value cache, a config): its type's name. The object itself is not
    kept, nor the tensors it holds, which would otherwise live as long as the profile."""

    type: str


@dataclass(frozen=True, slots=True)
class Call:
    """The described arguments and output of one call.

    Tensors are ``TensorInfo``, packed sequences ``PackedInfo``; tuples, lists and dicts keep
    their structure; plain values (None, numbers, strings, dtypes, devices, enums, slices) are
    kept as they were, any other object is an ``ObjectInfo``.
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """Positional argument ``index``, or keyword ``name``, or ``default``."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    def input_tensors(self) -> list[TensorInfo]:
        return list(_tensors(self.args)) + list(_tensors(tuple(self.kwargs.values())))

    def output_tensors(self) -> list[TensorInfo]:
        return list(_tensors(self.output))


def _tensors(value: Any) -> Iterator[TensorInfo]:
    if isinstance(value, TensorInfo):
        yield value
    elif isinstance(value, PackedInfo):
        yield value.data
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
