"""Modules whose work is elementwise, a lookup or a reshape: no matmul work, no comparisons.

They are *free*, which is different from *unsupported*: we know they cost nothing in ``macs`` or
``comparisons``. What they do elementwise goes to ``elementwise_flops`` only.
"""
from __future__ import annotations

from torch import nn

from .._call import Call
from .._counts import ZERO, Counts
from .._registry import register
from .elementwise import module_elementwise

_FREE_NAMES = (
    # activations
    "CELU", "ELU", "GELU", "GLU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU",
    "LogSigmoid", "LogSoftmax", "Mish", "PReLU", "RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid",
    "Softmax", "Softmax2d", "Softmin", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink",
    "Threshold",
    # normalisation (elementwise and reductions)
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
    "GroupNorm", "LayerNorm", "RMSNorm", "LocalResponseNorm", "CrossMapLRN2d",
    "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    # regularisation and reshaping
    "AlphaDropout", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout",
    "Flatten", "Unflatten", "Identity", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle",
    "Fold", "Unfold",
    # lookups
    "Embedding", "EmbeddingBag",
    # averaging and resampling
    "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d", "LPPool1d", "LPPool2d", "LPPool3d", "Upsample", "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    # padding
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d",
    "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "ZeroPad1d",
    "ZeroPad2d", "ZeroPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
)

FREE_MODULES = tuple(getattr(nn, name) for name in _FREE_NAMES if hasattr(nn, name))


@register(*FREE_MODULES)
def free(module: nn.Module, call: Call) -> Counts:
    """No matmul-like work and no comparisons; elementwise work by the README's convention table."""
    flops = module_elementwise(module, call)
    return Counts(elementwise_flops=flops) if flops else ZERO
