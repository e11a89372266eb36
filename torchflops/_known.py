"""What torchflops knows about functions it has no formula for.

``UNCOUNTED_FUNCTIONS`` have matmul-like work or comparisons and no built-in formula: called
outside a claimed module with no formula given, they are reported in ``Profile.unsupported``,
never counted as 0. ``is_free`` recognises the calls that cost nothing torchflops counts:
elementwise arithmetic, reductions, reshapes, conversions, creation, attribute reads. A module
with parameters and no formula whose own calls were all free is not unsupported (transformers'
``LlamaRMSNorm``); one that made any other call is.
"""
from __future__ import annotations

import types
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["UNCOUNTED_FUNCTIONS", "is_free"]

# The fused transformer kernels are listed in case a model reaches them despite the function mode
# (which makes nn.MultiheadAttention and nn.TransformerEncoderLayer take their regular path).
UNCOUNTED_FUNCTIONS = frozenset({
    torch.tensordot, torch.chain_matmul, torch.linalg.multi_dot, torch.addbmm, torch.inner,
    torch.outer, torch.ger, torch.addr, torch.kron, torch.bilinear, torch.conv_tbc, torch.cdist,
    F.fractional_max_pool2d, F.fractional_max_pool3d,
    F.fractional_max_pool2d_with_indices, F.fractional_max_pool3d_with_indices,
    torch._native_multi_head_attention, torch._transformer_encoder_layer_fwd,
})

_ELEMENTWISE = """
abs absolute acos acosh add addcdiv addcmul angle asin asinh atan atan2 atanh bitwise_and
bitwise_not bitwise_or bitwise_xor ceil clamp clamp_max clamp_min clip copysign cos cosh deg2rad
div divide eq erf erfc erfinv exp exp2 expm1 fix float_power floor floor_divide fmax fmin fmod
frac ge greater greater_equal gt heaviside hypot isclose isfinite isinf isnan isneginf isposinf
le less less_equal lerp lgamma log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not
logical_or logical_xor logit lt masked_fill maximum minimum mul multiply nan_to_num ne neg
negative not_equal polar positive pow rad2deg real reciprocal relu remainder round rsqrt sgn
sigmoid sign signbit sin sinc sinh sqrt square sub subtract tan tanh true_divide trunc where
xlogy
""".split()

_REDUCTIONS = """
all amax amin aminmax any argmax argmin count_nonzero cummax cummin cumprod cumsum logcumsumexp
logsumexp max mean median min nanmean nansum norm prod softmax log_softmax std std_mean sum
var var_mean
""".split()

_SHAPES = """
T H mT as_strided broadcast_to cat chunk clone column_stack concat concatenate contiguous
detach diag_embed diagonal dsplit dstack expand expand_as flatten flip fliplr flipud gather
hsplit hstack index_add index_copy index_fill index_put index_select masked_scatter movedim
moveaxis narrow permute repeat repeat_interleave reshape reshape_as roll rot90 scatter
scatter_add scatter_reduce select slice_scatter split split_with_sizes squeeze stack swapaxes
swapdims t take take_along_dim tensor_split tile transpose tril triu unbind unflatten unfold
unsqueeze view view_as vsplit vstack
bfloat16 bool byte char cpu cuda double float half int long short to type type_as
dim element_size is_complex is_contiguous is_floating_point is_inference is_nonzero
is_same_size nelement numel size stride storage_offset data_ptr _assert
copy_ fill_ zero_ requires_grad_ retain_grad
new_empty new_full new_ones new_tensor new_zeros
""".split()

_CREATION = """
arange as_tensor device empty empty_like empty_strided eye full full_like linspace logspace meshgrid ones
ones_like rand rand_like randint randint_like randn randn_like randperm scalar_tensor tensor
tril_indices triu_indices zeros zeros_like
""".split()

_FUNCTIONAL = """
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d affine_grid alpha_dropout avg_pool1d avg_pool2d
avg_pool3d batch_norm celu dropout dropout1d dropout2d dropout3d elu embedding
feature_alpha_dropout fold gelu glu grid_sample group_norm hardshrink hardsigmoid hardswish hardtanh
instance_norm interpolate layer_norm leaky_relu local_response_norm log_softmax logsigmoid mish
normalize one_hot pad pixel_shuffle pixel_unshuffle prelu relu relu6 rms_norm rrelu selu
sigmoid silu softmax softmin softplus softshrink softsign tanh tanhshrink threshold unfold upsample
""".split()

_DUNDERS = """
__abs__ __add__ __and__ __array__ __bool__ __contains__ __deepcopy__ __eq__ __float__ __floordiv__
__format__ __ge__ __getitem__ __gt__ __hash__ __iadd__ __iand__ __idiv__ __ifloordiv__ __imul__
__index__ __int__ __invert__ __ior__ __ipow__ __isub__ __iter__ __itruediv__ __ixor__ __le__
__len__ __lt__ __mod__ __mul__ __ne__ __neg__ __or__ __pos__ __pow__ __radd__ __rand__ __rdiv__
__reduce_ex__ __repr__ __reversed__ __rfloordiv__ __rmod__ __rmul__ __ror__ __rpow__ __rsub__
__rtruediv__ __rxor__ __setitem__ __setstate__ __sub__ __truediv__ __xor__
""".split()


def _collect() -> frozenset:
    found = set()
    for name in _ELEMENTWISE + _REDUCTIONS + _SHAPES + _DUNDERS:
        for namespace in (torch, torch.Tensor):
            for variant in (name, name + "_"):          # in-place forms
                value = getattr(namespace, variant, None)
                if callable(value):
                    found.add(value)
    for name in _CREATION:
        value = getattr(torch, name, None)
        if callable(value):
            found.add(value)
    for name in _FUNCTIONAL + _ELEMENTWISE:
        value = getattr(F, name, None)
        if callable(value):
            found.add(value)
    found.add(torch._C._set_grad_enabled)       # ``torch.no_grad()`` entered inside a forward
    return frozenset(found)


_FREE = _collect()


def is_free(func: Callable) -> bool:
    """Whether a call of ``func`` costs nothing torchflops counts."""
    if func in _FREE:
        return True
    # the profiler's markers (``record_function``, which ``nn.DataParallel`` enters) are operators
    if isinstance(func, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)):
        name = getattr(func, "_qualified_op_name", None) or func._schema.name
        return name.startswith("profiler::")
    # attribute reads (``x.shape``, ``x.dtype``) arrive as a fresh bound ``__get__`` each time
    return isinstance(getattr(func, "__self__", None), (types.GetSetDescriptorType, property))
