"""Elementwise work: ``elementwise_flops``, by a per-operation convention, never part of ``flops``.

Per output element unless said otherwise (the README's table):

- 1: arithmetic (``+ - * /``, ``pow``, ``neg``, ``abs``, ``clamp``, ``maximum``...), one-function
  activations (ReLU, ReLU6, LeakyReLU, PReLU, ELU, CELU, SELU, Hardtanh, Threshold, Sigmoid, Tanh,
  Softplus, Hardsigmoid, ...), ``exp``/``log``/``sqrt``/``rsqrt``/``erf``... (as ptflops counts ReLU);
  ``sum``/``mean``: 1 per *input* element.
- 2: an activation times its input or a second function (GELU, SiLU, Hardswish, GLU, Tanhshrink),
  ``addcmul``, ``addcdiv``, ``lerp``; 3: Mish (``x tanh(softplus(x))``).
- 5: softmax, log-softmax (max, subtract, exp, sum, divide).
- Normalisation, as fvcore counts it: layer, group and instance norm and batch norm in training
  5 with an affine transform, 4 without; batch norm in eval (running statistics) 2 with affine, 1
  without; RMS norm 4 with a weight, 3 without.
- Average pooling: per output, the input elements its window reads (padding is never read), as
  adds and one divide; adaptive average pooling the same over its adaptive window.
- Upsampling: per output, the input taps it interpolates, as fvcore counts bilinear (4): nearest
  1, linear 2, bilinear 4, trilinear 8, bicubic 16, area as adaptive average pooling.
- Copies, reshapes, padding, dropout, embeddings, concatenation: 0.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._call import Call, TensorInfo
from .._counts import ZERO, Counts
from .._registry import register
from .pooling import adaptive_max_pool_comparisons, as_tuple, max_pool_comparisons

__all__ = ["module_elementwise"]


def _outputs(value: Any) -> int:
    """Elements of every tensor in an output (0 for anything else, such as ``NotImplemented``)."""
    if isinstance(value, TensorInfo):
        return value.numel
    if isinstance(value, (tuple, list)):
        return sum(_outputs(v) for v in value)
    return 0


def _first(value: Any) -> Optional[TensorInfo]:
    if isinstance(value, TensorInfo):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first(value[0])
    return None


def _counts(flops: int) -> Counts:
    return Counts(elementwise_flops=flops) if flops else ZERO


# -- rules shared by modules and functions ---------------------------------------------------------
def norm(elements: int, affine: bool, training: bool = True) -> int:
    """fvcore's count: 5 per element with an affine transform, 4 without; 2 / 1 for batch norm in eval."""
    if training:
        return elements * (5 if affine else 4)
    return elements * (2 if affine else 1)


def avg_pool(x: TensorInfo, y: TensorInfo, kernel, stride, padding) -> int:
    """The input elements each window reads (adds, and one divide), summed over outputs."""
    dims = len(kernel)
    return max_pool_comparisons(x, y, kernel, stride, padding, (1,) * dims) + y.numel


def adaptive_avg_pool(x: TensorInfo, y: TensorInfo, dims: int) -> int:
    return adaptive_max_pool_comparisons(x, y, dims) + y.numel


_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 4, "trilinear": 8, "bicubic": 16}


def upsample(x: TensorInfo, y: TensorInfo, mode: str) -> int:
    if mode == "area":
        return adaptive_avg_pool(x, y, len(y.shape) - 2)
    return y.numel * _TAPS.get(mode, 1)


# -- modules -----------------------------------------------------------------------------------
_PER_ELEMENT = {
    1: ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "Hardtanh", "Threshold",
        "Hardshrink", "Softshrink", "Sigmoid", "Tanh", "Softplus", "Softsign", "LogSigmoid", "Hardsigmoid"),
    2: ("GELU", "SiLU", "Hardswish", "GLU", "Tanhshrink"),
    3: ("Mish",),
    5: ("Softmax", "Softmin", "LogSoftmax", "Softmax2d"),
}
_MODULE_RATE = {getattr(nn, name): rate for rate, names in _PER_ELEMENT.items() for name in names
                if hasattr(nn, name)}


def module_elementwise(module: nn.Module, call: Call) -> int:
    """Elementwise FLOPs of one call of a module without matmul-like work (0 if not in the table)."""
    x, y = _first(call.args), _first(call.output)
    if x is None or y is None:
        return 0
    for klass in type(module).__mro__:
        if klass in _MODULE_RATE:
            return _MODULE_RATE[klass] * y.numel
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        stats = module.running_mean is not None and not module.training
        return norm(x.numel, module.affine, training=not stats)
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return norm(x.numel, module.weight is not None)
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return norm(x.numel, module.affine)
    if isinstance(module, nn.RMSNorm):
        return x.numel * (4 if module.weight is not None else 3)
    if isinstance(module, nn.modules.pooling._AvgPoolNd):
        dims = len(y.shape) - 2 if len(x.shape) == len(y.shape) else 0
        dims = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}.get(type(module), dims)
        kernel = as_tuple(module.kernel_size, dims)
        stride = as_tuple(module.stride if module.stride is not None else module.kernel_size, dims)
        return avg_pool(x, y, kernel, stride, as_tuple(module.padding, dims))
    adaptive = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}
    for klass, dims in adaptive.items():
        if isinstance(module, klass):
            return adaptive_avg_pool(x, y, dims)
    if isinstance(module, nn.Upsample):
        return upsample(x, y, module.mode)
    return 0


# -- functional calls ------------------------------------------------------------------------------
def _elementwise(formula: Callable[[Call], int]) -> Callable[[Call], Counts]:
    """A function formula for elementwise work; the profile keeps its records apart from ``records``."""
    def counted(call: Call) -> Counts:
        return _counts(formula(call))
    counted.elementwise = True
    counted.__name__ = counted.__qualname__ = formula.__name__
    counted.__module__ = formula.__module__
    counted.__doc__ = formula.__doc__
    return counted


def _targets(names: str, *, tensor: bool = True, functional: bool = False) -> list[Callable]:
    """``torch.<name>``, ``Tensor.<name>`` and ``Tensor.<name>_`` (in place), ``F.<name>``: those that exist."""
    found = []
    for name in names.split():
        spaces = [torch] + ([torch.Tensor] if tensor else []) + ([F] if functional else [])
        for space in spaces:
            for variant in (name, name + "_") if space is torch.Tensor else (name,):
                value = getattr(space, variant, None)
                if callable(value) and value not in found:
                    found.append(value)
    return found


_RATES = {
    1: _targets("add sub subtract mul multiply div divide true_divide rsub neg negative abs pow square "
                "reciprocal sqrt rsqrt exp exp2 expm1 log log2 log10 log1p sin cos tan erf erfc clamp "
                "clamp_min clamp_max clip maximum minimum sigmoid tanh relu", functional=True)
    + _targets("relu6 leaky_relu elu celu selu hardtanh threshold hardshrink softshrink softplus "
               "softsign logsigmoid hardsigmoid", tensor=False, functional=True)
    + [getattr(torch.Tensor, name) for name in (
        "__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__ "
        "__rtruediv__ __itruediv__ __neg__ __pow__ __rpow__ __ipow__ __abs__").split() if hasattr(torch.Tensor, name)],
    2: _targets("addcmul addcdiv lerp") + _targets("gelu silu hardswish glu tanhshrink", tensor=False,
                                                   functional=True),
    3: _targets("mish", tensor=False, functional=True),
    5: _targets("softmax log_softmax", functional=True) + [F.softmin],
}
for _rate, _functions in _RATES.items():
    def _per_output(call: Call, rate: int = _rate) -> int:
        return rate * _outputs(call.output)
    _per_output.__name__ = f"per_output_{_rate}"
    _per_output.__doc__ = f"{_rate} per output element."
    register(*_functions)(_elementwise(_per_output))


@register(*_targets("sum mean"))
@_elementwise
def reduction(call: Call) -> int:
    """1 per input element."""
    x = _first(call.args)
    return x.numel if x is not None else 0


@register(F.layer_norm, F.group_norm)
@_elementwise
def trailing_norm(call: Call) -> int:
    """5 per element with an affine weight, 4 without."""
    return norm(call.arg(0, "input").numel, call.arg(2, "weight") is not None)


@register(F.instance_norm)
@_elementwise
def instance_norm(call: Call) -> int:
    """5 per element with an affine weight, 4 without."""
    return norm(call.arg(0, "input").numel, call.arg(3, "weight") is not None)


@register(F.batch_norm)
@_elementwise
def batch_norm(call: Call) -> int:
    """Training: 5 / 4 per element (with / without affine); eval: 2 / 1."""
    training = call.arg(5, "training", False) or call.arg(1, "running_mean") is None
    return norm(call.arg(0, "input").numel, call.arg(3, "weight") is not None, training=training)


@register(F.rms_norm)
@_elementwise
def rms_norm(call: Call) -> int:
    """4 per element with a weight, 3 without."""
    return call.arg(0, "input").numel * (4 if call.arg(2, "weight") is not None else 3)


def _avg_pool(dims: int):
    @_elementwise
    def avg_pool_call(call: Call) -> int:
        """Per output, the input elements its window reads."""
        kernel = as_tuple(call.arg(1, "kernel_size"), dims)
        stride = call.arg(2, "stride")
        stride = as_tuple(stride, dims) if stride else kernel
        return avg_pool(call.arg(0, "input"), call.output, kernel, stride, as_tuple(call.arg(3, "padding", 0), dims))
    return avg_pool_call


def _adaptive_avg_pool(dims: int):
    @_elementwise
    def adaptive_avg_pool_call(call: Call) -> int:
        """Per output, the input elements of its adaptive window."""
        return adaptive_avg_pool(call.arg(0, "input"), call.output, dims)
    return adaptive_avg_pool_call


for _dims, (_avg, _adaptive) in {1: (F.avg_pool1d, F.adaptive_avg_pool1d), 2: (F.avg_pool2d, F.adaptive_avg_pool2d),
                                 3: (F.avg_pool3d, F.adaptive_avg_pool3d)}.items():
    register(_avg)(_avg_pool(_dims))
    register(_adaptive)(_adaptive_avg_pool(_dims))


@register(F.interpolate)
@_elementwise
def interpolate(call: Call) -> int:
    """Per output, the taps it interpolates: nearest 1, linear 2, bilinear 4, trilinear 8, bicubic 16."""
    return upsample(call.arg(0, "input"), call.output, call.arg(3, "mode", "nearest"))
