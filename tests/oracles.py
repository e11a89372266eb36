"""Independent oracles the tests compare against: PyTorch's FlopCounterMode and brute-force counts."""
from __future__ import annotations

import copy
import itertools
from math import prod
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flop_counter(module: nn.Module, shapes: Sequence[Sequence[int]], *, input_grad: bool = False,
                 backward: bool = True, device: str = "meta") -> tuple[int, int]:
    """(forward FLOPs, backward FLOPs) as PyTorch's FlopCounterMode counts them on ``device``.

    Backward runs a real ``.backward()`` inside the mode; parameters keep their requires_grad.
    """
    module = copy.deepcopy(module).to(device)
    inputs = [torch.zeros(s, device=device).requires_grad_(input_grad) for s in shapes]
    with FlopCounterMode(display=False) as mode:
        out = module(*inputs)
        forward = mode.get_total_flops()
        out = out[0] if isinstance(out, (tuple, list)) else out
        if backward and out.requires_grad:
            out.sum().backward()
    return forward, mode.get_total_flops() - forward



def conv_products(module: nn.Module, x_shape: Sequence[int]) -> torch.Tensor:
    """Products each output element of a convolution sums, padded taps included: pad a tensor of
    ones with ones (not zeros), then convolve it with a kernel of ones and no padding."""
    dims = len(x_shape) - 2
    padded = F.pad(torch.ones(tuple(x_shape), dtype=torch.float64), module._reversed_padding_repeated_twice,
                   value=1.0)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    return fn(padded, torch.ones(module.weight.shape, dtype=torch.float64), None, module.stride, 0,
              module.dilation, module.groups)


def conv_transpose_products(x_shape, weight_shape, *, stride, padding, output_padding, groups,
                            dilation) -> torch.Tensor:
    dims = len(x_shape) - 2
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    return fn(torch.ones(x_shape, dtype=torch.float64), torch.ones(weight_shape, dtype=torch.float64),
              None, stride, padding, output_padding, groups, dilation)


def exact_muls_adds(products: torch.Tensor, bias: bool) -> tuple[int, int]:
    """Muls and adds of outputs that each sum ``products[i]`` products (+ one bias each)."""
    p = products.to(torch.int64)
    muls = int(p.sum())
    adds = int((p - 1).clamp(min=0).sum()) + (p.numel() if bias else 0)
    return muls, adds


def max_pool_comparisons_loop(in_spatial: Sequence[int], out_spatial: Sequence[int], channels: int,
                              kernel, stride, padding, dilation) -> int:
    """Visit every output window and count the taps inside the input: valid elements - 1 each."""
    total = 0
    for out_pos in itertools.product(*(range(o) for o in out_spatial)):
        valid = 1
        for axis, o in enumerate(out_pos):
            start = o * stride[axis] - padding[axis]
            valid *= sum(1 for k in range(kernel[axis])
                         if 0 <= start + k * dilation[axis] < in_spatial[axis])
        total += max(valid - 1, 0)   # a window entirely in padding compares nothing
    return total * channels


def window_taps_one_hot(pool, spatial) -> int:
    """Sum over output windows of the input elements each reads, from PyTorch's own pooling.

    Pool a batch of one-hot inputs (one per input position): the outputs that see the hot element
    are positive (max-pooling never picks padding, which it reads as -inf; averaging divides a
    positive value), so the positives over the batch count every (window, element read) pair.
    """
    n = prod(spatial)
    one_hot = torch.eye(n, dtype=torch.float64).reshape(n, 1, *spatial)
    out = pool(one_hot)
    out = out[0] if isinstance(out, tuple) else out
    return int((out > 0).sum())


def max_pool_comparisons_sum_pool(x_shape: Sequence[int], kernel, stride, padding, ceil_mode) -> int:
    """Sum-pool a tensor of ones (padding reads as zero): each window's sum is its valid count."""
    ones = torch.ones(x_shape, dtype=torch.float64)
    sums = F.avg_pool2d(ones, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=True,
                        divisor_override=1)
    return int(sums.sum()) - sums.numel()


def numel(shape: Sequence[int]) -> int:
    return prod(shape)


def work(counts):
    """The arithmetic of ``counts`` without the bytes moved, which follow the kernels a pass ran
    (an LSTM answered from shapes moves what one fused kernel would)."""
    return counts.replace(bytes_read=0, bytes_written=0)


def saved_bytes(model: nn.Module, *inputs, **kwargs) -> int:
    """Bytes of the distinct storages autograd saves in one real forward of ``model``, parameters
    and buffers excluded: what ``saved_tensors_hooks`` sees (each storage kept, so ids stay unique).
    Nothing is kept for a backward: a pack hook that returns the tensor itself makes a reference
    cycle through autograd's graph (an output saved by its own node) that no collector breaks."""
    persistent = {id(t.untyped_storage()) for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if id(storage) not in persistent:
            seen.setdefault(id(storage), storage)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*inputs, **kwargs)
    return sum(s.nbytes() for s in seen.values())


def memtracker_peak(model: nn.Module, *inputs, optimizer=None, train: bool = True) -> int:
    """PyTorch's MemTracker peak over one steady-state step on real tensors: the optimizer's state
    made by a step before; then forward, backward of the first floating output's sum and
    ``optimizer.step()`` (``train``), or a forward under ``no_grad``. Trains a deep copy."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = copy.deepcopy(model)

    def loss(out):
        out = out.logits if hasattr(out, "logits") else out
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.sum()

    opt = optimizer([p for p in model.parameters() if p.requires_grad]) if optimizer else None
    if opt is not None:
        loss(model(*inputs)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    tracker = MemTracker()
    tracker.track_external(model, *([opt] if opt else []), *inputs)
    with tracker:
        if train:
            loss(model(*inputs)).backward()
            if opt is not None:
                opt.step()
        else:
            with torch.no_grad():
                model(*inputs)
    return tracker.get_tracker_snapshot("peak")[inputs[0].device]["Total"]


def brute_force_bytes(model: nn.Module, *inputs: torch.Tensor) -> tuple[int, int]:
    """(read, written) bytes of a real forward, element by element: for every ATen operation,
    each distinct storage among its tensor arguments once, from the lowest to the highest byte
    any of their elements occupies there (every index enumerated); its outputs the same way. A
    view (``func.is_view``) moves nothing, and neither does an allocation without values."""
    from torch.utils._python_dispatch import TorchDispatchMode

    def tensors(values):
        for value in values:
            if isinstance(value, torch.Tensor):
                yield value
            elif isinstance(value, (tuple, list)):
                yield from tensors(value)

    def moved(ts):
        spans: dict[int, tuple[int, int]] = {}
        for t in ts:
            if t.numel() == 0:
                continue
            offsets = [t.storage_offset() + sum(i * s for i, s in zip(index, t.stride()))
                       for index in itertools.product(*(range(n) for n in t.shape))]
            low, high = min(offsets) * t.element_size(), (max(offsets) + 1) * t.element_size()
            key = t.untyped_storage().data_ptr()
            old = spans.get(key, (low, high))
            spans[key] = (min(old[0], low), max(old[1], high))
        return sum(high - low for low, high in spans.values())

    totals = [0, 0]
    empty = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default,
             torch.ops.aten.empty_like.default}

    class Bytes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view and func not in empty:
                totals[0] += moved(list(tensors(list(args) + list((kwargs or {}).values()))))
                totals[1] += moved(list(tensors([out])))
            return out

    with Bytes():
        model(*inputs)
    return totals[0], totals[1]
