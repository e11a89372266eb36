"""What real kernels reject and their meta kernels let through, raised on shape-only passes.

On the meta device ``nn.Linear`` accepts a float64 input with float32 weights, a transposed
convolution accepts any channel count, and a convolution fed the wrong channels says only
"Invalid channel dimensions". A real pass raises, so a shape-only pass must too, and it says what
the layer expected next to what it got. Real tensors are left to the real kernels.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

from ._sharded import is_dtensor

__all__ = ["check_module", "check_function"]

_CONV = nn.modules.conv._ConvNd
_WEIGHTED = (nn.Linear, nn.Bilinear, _CONV)

# products whose first two tensor arguments must share a dtype on a real device
_PRODUCTS: frozenset[Callable] = frozenset({
    F.linear, F.bilinear, torch.matmul, torch.Tensor.matmul, torch.mm, torch.Tensor.mm, torch.bmm,
    torch.Tensor.bmm, torch.mv, torch.Tensor.mv, torch.conv1d, torch.conv2d, torch.conv3d,
    torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
})


def _shape_only(tensor: torch.Tensor) -> bool:
    return tensor.is_meta or isinstance(tensor, FakeTensor)


def _autocast() -> bool:
    """Under autocast the kernels cast their inputs: mixed dtypes are legal."""
    return any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def check_module(module: nn.Module, args: tuple) -> None:
    """Raise ``RuntimeError`` where the real kernel of a linear or convolution layer would."""
    if not isinstance(module, _WEIGHTED) or not args or not isinstance(args[0], torch.Tensor):
        return
    x = args[0]
    if not _shape_only(x):
        return
    kind = type(module).__name__
    weight = module.weight
    if is_dtensor(weight):
        # a parallelised layer: its own pre-forward hooks, after this check, redistribute the input
        # (tensor parallel) or put the unsharded weight in place, cast as the input was (FSDP)
        return
    if x.dtype != weight.dtype and not _autocast():
        raise RuntimeError(f"{kind} expected an input of dtype {_dtype(weight)} (its weight's), got "
                           f"{_dtype(x)} (input of shape {_shape(x)}); a real pass raises here too")
    if isinstance(module, _CONV):
        batched = x.dim() == len(module.kernel_size) + 2
        got = x.shape[1 if batched else 0] if x.dim() else 0
        if got != module.in_channels:
            raise RuntimeError(f"{kind} expected an input with {module.in_channels} channels (in_channels), "
                               f"got {got} channels (input of shape {_shape(x)})")
    elif isinstance(module, nn.Linear) and (x.shape[-1] if x.dim() else 0) != module.in_features:
        raise RuntimeError(f"Linear expected an input whose last dimension is {module.in_features} "
                           f"(in_features), got {_shape(x)}")


def check_function(func: Callable, args: tuple) -> None:
    """Raise ``RuntimeError`` for a product of two tensors of different dtypes, as a real kernel does."""
    if func not in _PRODUCTS:
        return
    a, b = (args + (None, None))[:2]
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dtype == b.dtype:
        return
    if (_shape_only(a) or _shape_only(b)) and not _autocast():
        raise RuntimeError(f"{getattr(func, '__name__', func)} expected operands of one dtype, got "
                           f"{_dtype(a)} ({_shape(a)}) and {_dtype(b)} ({_shape(b)}); a real pass raises here too")
