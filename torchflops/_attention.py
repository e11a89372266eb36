"""Capture: ``scaled_dot_product_attention`` on meta tensors, run as the CPU runs it.

The operator picks its kernel inside ATen, where no mode sees the choice: on the CPU it runs the
fused flash kernel whenever that kernel fits (``_scaled_dot_product_flash_attention_for_cpu``;
autograd saves query, key, value, output and logsumexp), on the meta device always the math path
(matmuls and a softmax; autograd saves the attention matrix). A shape-only pass would then save,
allocate and move what no CPU pass does (ViT-B/16 at 32 px: 13% more activations).

While a session runs (``CpuAttention``), the operator on meta tensors of the session's thread is
answered by the kernel the CPU would pick. The CPU's own choice function decides, asked on CPU
stand-ins with the same sizes, dtypes, last strides and ``requires_grad`` (all it reads, along with
the global backend switches and ``sdpa_kernel``): what it answers, and every later change to it,
holds here too. The answer sits in autograd's slot of the meta device, so autograd records the
kernel it calls, as on the CPU; anything else takes PyTorch's own composite path, unchanged.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import torch

__all__ = ["CpuAttention"]

_aten = torch.ops.aten
_SDPA = _aten.scaled_dot_product_attention.default
_CHOICE = _aten._fused_sdp_choice.default
# absent from older PyTorch, whose CPU ran the math path too
_FLASH = getattr(getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None), "default", None)
_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
_FLASH_CHOICE = 1           # ``torch.nn.attention.SDPBackend.FLASH_ATTENTION``
_PLAIN = (torch.Tensor, torch.nn.Parameter)

_lock = threading.Lock()
_open: dict[int, int] = {}  # thread id -> sessions open in it
_library: Optional[torch.library.Library] = None


def _cpu_standin(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor the choice cannot tell from ``t``: the same sizes, dtype, ``requires_grad``
    and whether the last stride is 1, on one row of storage (the other strides are 0). Made below
    every mode: nothing the session follows."""
    strides = [0] * t.dim()
    if strides and t.stride(-1) == 1:
        strides[-1] = 1
    out = _aten.empty_strided.default.redispatch(_CPU, list(t.shape), strides, dtype=t.dtype,
                                                 device=torch.device("cpu"))
    return out.requires_grad_() if t.requires_grad else out


def _flash_on_cpu(tensors: list[torch.Tensor], args: tuple, kwargs: dict, named: dict) -> bool:
    """Whether the CPU would run the flash kernel for these arguments."""
    mask = named.get("attn_mask")
    # a mask with causal masking, or of another dtype than bool, float32 or the query's: the
    # operator refuses them before it chooses, and so does the composite path, with the same error
    if mask is not None and (named.get("is_causal")
                             or mask.dtype not in (torch.bool, torch.float32, args[0].dtype)):
        return False
    standins = {id(t): _cpu_standin(t) for t in tensors}
    args = tuple(standins.get(id(a), a) if isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: standins.get(id(v), v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return _CHOICE.redispatch(_CPU, *args, **kwargs) == _FLASH_CHOICE


def _attention(*args: Any, **kwargs: Any) -> torch.Tensor:
    """``scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, *,
    scale, enable_gqa)`` in autograd's slot of the meta device."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    named = dict(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"), args), **kwargs)
    if (len(args) < 3 or threading.get_ident() not in _open
            or not all(type(t) in _PLAIN and t.is_meta and not t.is_nested for t in tensors)
            or not _flash_on_cpu(tensors, args, kwargs, named)):
        return _SDPA.decompose(*args, **kwargs)
    query, mask = args[0], named.get("attn_mask")
    if mask is not None and mask.dtype == torch.bool:
        # the CPU turns a boolean mask into an additive one of the query's dtype first
        mask = torch.where(mask.logical_not(), -float("inf"),
                           torch.scalar_tensor(0.0, dtype=query.dtype, device=mask.device))
    return _FLASH(query, args[1], args[2], named.get("dropout_p", 0.0), named.get("is_causal", False),
                  attn_mask=mask, scale=named.get("scale"))[0]


class CpuAttention:
    """While entered, attention on meta tensors of this thread runs the CPU's kernel. Nested and
    concurrent sessions share one registration, made by the first and removed by the last."""

    def __enter__(self) -> CpuAttention:
        global _library
        if _FLASH is None:
            return self
        me = threading.get_ident()
        with _lock:
            if _library is None:
                _library = torch.library.Library("aten", "IMPL")
                _library.impl("scaled_dot_product_attention", _attention, "AutogradMeta")
            _open[me] = _open.get(me, 0) + 1
        return self

    def __exit__(self, *exc_info: Any) -> None:
        global _library
        if _FLASH is None:
            return
        me = threading.get_ident()
        with _lock:
            if _open.get(me, 0) > 1:
                _open[me] -= 1
            else:
                _open.pop(me, None)
            if not _open and _library is not None:
                _library._destroy()
                _library = None
