"""torchflops: what a PyTorch model costs, layer by layer.

Counting conventions (fixed):

- ``macs``: forward multiply-accumulates of matmul-like work (convolutions, transposed
  convolutions, linear layers, recurrent gate and projection matmuls, attention, ``matmul``/
  ``bmm``/``einsum``); bias excluded. torchvision publishes this as "GFLOPS" (``meta["_ops"]``).
- ``flops`` = 2 x ``macs``, PyTorch's ``FlopCounterMode`` convention.
- ``muls`` / ``adds``: the exact scalar operations of that work: per output element, the products
  it sums, and products - 1 additions (when there is at least one) plus one per bias added.
- ``comparisons``: max-pooling comparisons, valid window elements minus one per output element
  (padding is never read); never folded into ``flops``.
- ``grad_input_flops`` / ``grad_weight_flops`` / ``backward_flops``: matmul FLOPs autograd's
  backward would spend (2 per MAC) for the gradients it needs: none for an input that needs no
  gradient, none for frozen weights.
- ``params``: parameters; a shared (tied) parameter counts once in totals.
- ``elementwise_flops``: elementwise work (norms, activations, softmax, adds, average pooling,
  upsampling) by the README's per-operation table; never part of ``flops``.
- ``bytes_read`` / ``bytes_written``: per ATen operation of the pass, each distinct input storage
  once (a view by the bytes it spans) and the outputs; views move nothing.

The package imports its parts lazily, so ``import torchflops`` (and the pytest plugin) does not
import torch until a name that needs it is used.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> private module that defines it
_EXPORTS = {
    "count": "_api",
    "profile": "_api",
    "ShapeOnlyError": "_api",
    "Profile": "_render",
    "compare": "_compare",
    "compare_plot": "_compare",
    "Record": "_profile",
    "UnsupportedError": "_profile",
    "UnsupportedWarning": "_profile",
    "Counts": "_counts",
    "MoE": "_moe",
    "register": "_registry",
    "Call": "_call",
    "TensorInfo": "_call",
    "PackedInfo": "_call",
    "assert_budget": "_budget",
    "BudgetExceeded": "_budget",
    "generation": "_generation",
    "Generation": "_generation",
    "time": "_time",
    "Hardware": "_hardware",
    "hardware": "_hardware",
    "calibrate": "_hardware",
    "Estimate": "_roofline",
    "Memory": "_memory",
    "parallel": "_parallel",
    "Parallel": "_parallel",
    "Collective": "_ranks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'torchflops' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    if module_name in ("_api", "_render", "_registry", "_generation", "_time", "_parallel"):
        importlib.import_module("._formulas", __name__)   # registers the built-in formulas
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from ._api import ShapeOnlyError, count, profile
    from ._budget import BudgetExceeded, assert_budget
    from ._call import Call, PackedInfo, TensorInfo
    from ._compare import compare, compare_plot
    from ._counts import Counts
    from ._generation import Generation, generation
    from ._hardware import Hardware, calibrate, hardware
    from ._moe import MoE
    from ._memory import Memory
    from ._parallel import Parallel, parallel
    from ._profile import Record, UnsupportedError, UnsupportedWarning
    from ._registry import register
    from ._render import Profile
    from ._roofline import Estimate
    from ._time import time
