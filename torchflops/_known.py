"""What torchflops knows about work it has no formula for, at the level where it all arrives: ATen.

Functions without a formula are not judged by name: the ATen operations they run are. An
operation in ``COSTLY_OPS`` (matmul-like work, LAPACK, FFT, fused kernels) or of a namespace other
than ATen's and the free ones below (a user's ``torch.library`` op) that no formula counts is
reported in ``Profile.unsupported``; every other ATen operation (elementwise arithmetic,
reductions, reshapes, copies, creation) costs nothing torchflops counts.
"""
from __future__ import annotations

import torch

__all__ = ["COSTLY_OPS", "op_is_costly"]

_aten = torch.ops.aten

# Compute cost and no formula: reported in ``Profile.unsupported`` by their ATen name when they
# run outside every function-level record.
COSTLY_OPS = frozenset(getattr(_aten, name) for name in """
_trilinear conv_tbc _grouped_mm _scaled_mm _scaled_grouped_mm _int_mm _weight_int8pack_mm _weight_int4pack_mm
_cdist_forward _sparse_addmm _sparse_mm _sparse_sparse_matmul _sparse_mm_reduce_impl sspaddmm
hspmm fractional_max_pool2d fractional_max_pool3d _native_multi_head_attention
_transformer_encoder_layer_fwd _thnn_fused_lstm_cell _thnn_fused_gru_cell mkldnn_rnn_layer
_cudnn_rnn miopen_rnn mkldnn_convolution _fft_r2c _fft_c2r _fft_c2c
_linalg_solve_ex linalg_solve_triangular _linalg_svd _linalg_eigh linalg_eig _linalg_det
_linalg_slogdet linalg_lu_factor_ex linalg_lu linalg_lu_solve linalg_qr linalg_cholesky_ex
linalg_inv_ex linalg_ldl_factor_ex linalg_ldl_solve linalg_lstsq linalg_householder_product
_linalg_eigvals linalg_matrix_exp cholesky cholesky_solve cholesky_inverse triangular_solve
geqrf ormqr
""".split() if hasattr(_aten, name))

# Namespaces whose operations do no arithmetic torchflops counts: decompositions, TorchScript's
# attribute reads (``prim::device``, seen under FakeTensorMode and autocast), the profiler's
# markers, collectives, FSDP2's copies in and out of its collectives' buffers, and torchvision's
# detection helpers (but ``deform_conv2d``). Operations of any other namespace (a user's
# ``torch.library`` op) are reported unless a formula counts them.
_FREE_NAMESPACES = frozenset({"prims", "prim", "profiler", "_c10d_functional", "c10d",
                              "c10d_functional", "_dtensor", "fsdp", "torchvision"})
_COSTLY_QUALIFIED = frozenset({"torchvision::deform_conv2d"})


def op_is_costly(func: torch._ops.OpOverload) -> bool:
    """Whether an ATen-level operation has compute cost that only a formula can count."""
    packet = func.overloadpacket
    if packet in COSTLY_OPS:
        return True
    namespace = func.namespace
    if namespace == "aten":
        return False
    return namespace not in _FREE_NAMESPACES or packet._qualified_op_name in _COSTLY_QUALIFIED
