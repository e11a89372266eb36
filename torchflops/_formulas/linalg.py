"""Dense linear algebra (``torch.linalg.*`` and its ``torch``/``Tensor`` aliases), by LAPACK's
standard operation counts.

Counts are the leading terms of the real floating-point operation counts in LAPACK Working Note 41
(Blackford & Dongarra, "Installation Guide for LAPACK", appendix: operation counts of the LAPACK
routines) for the factorisations, and Golub & Van Loan, *Matrix Computations* (4th ed., section
8.6, "Computing the SVD", and section 8.3, the symmetric QR algorithm) for the iterative
decompositions, per matrix of a batch; ``macs`` is half of that (rounded), so ``flops = 2 x macs``.
NB: leading terms only (lower-order terms of LAPACK's exact counts are left out), for real
matrices; SVD and symmetric eigendecompositions iterate, and their standard counts are the
textbook's estimates. Backward is not counted.
"""
from __future__ import annotations

from fractions import Fraction
import torch

from .._call import Call, TensorInfo
from .._counts import Counts
from .._registry import register


def _counts(flops: Fraction, matrix: TensorInfo, rows: int, cols: int) -> Counts:
    """``flops`` for each of the batch's matrices of ``rows x cols``."""
    batch = matrix.numel // (rows * cols) if rows * cols else 0
    return Counts(macs=round(batch * flops / 2))


def _matrix(call: Call) -> TensorInfo:
    """The matrix argument: ``A`` in ``torch.linalg``, ``input`` in the ``torch`` aliases."""
    return call.args[0] if call.args else call.kwargs.get("A", call.kwargs.get("input"))


def _square(call: Call) -> tuple[TensorInfo, int]:
    a = _matrix(call)
    return a, a.shape[-1]


def getrf(n: int) -> Fraction:
    """LU factorisation with partial pivoting of an ``n x n`` matrix (xGETRF): ``2n^3/3``."""
    return Fraction(2 * n ** 3, 3)


def geqrf(m: int, n: int) -> Fraction:
    """Householder QR of ``m x n`` (xGEQRF), ``k = min(m, n)``: ``4mnk - 2(m+n)k^2 + 4k^3/3``
    (``2mn^2 - 2n^3/3`` for ``m >= n``)."""
    k = min(m, n)
    return 4 * m * n * k - 2 * (m + n) * k * k + Fraction(4 * k ** 3, 3)


@register(torch.linalg.solve, torch.linalg.solve_ex)
def solve(call: Call) -> Counts:
    """``A X = B`` (xGESV): LU of ``A`` then two triangular solves per right-hand side,
    ``2n^3/3 + 2n^2 k`` for ``k`` right-hand sides."""
    a, b, x = call.arg(0, "A"), call.arg(1, "B"), call.output
    x = x[0] if isinstance(x, (tuple, list)) else x
    n = a.shape[-1]
    vector = len(b.shape) == 1 or tuple(b.shape) == tuple(a.shape[:-1])
    k = 1 if vector else (b.shape[-1] if call.kwargs.get("left", True) else b.shape[-2])
    return _counts(getrf(n) + 2 * n * n * k, x, n, k)


@register(torch.linalg.inv, torch.linalg.inv_ex, torch.inverse, torch.Tensor.inverse)
def inv(call: Call) -> Counts:
    """Inverse (xGETRF + xGETRI): ``2n^3/3 + 4n^3/3 = 2n^3``."""
    a, n = _square(call)
    return _counts(Fraction(2 * n ** 3), a, n, n)


@register(torch.linalg.det, torch.det, torch.Tensor.det, torch.linalg.slogdet, torch.slogdet,
          torch.Tensor.slogdet, torch.logdet, torch.Tensor.logdet)
def det(call: Call) -> Counts:
    """Determinant from the LU factorisation (xGETRF): ``2n^3/3`` (the diagonal's product is lower order)."""
    a, n = _square(call)
    return _counts(getrf(n), a, n, n)


@register(torch.linalg.cholesky, torch.linalg.cholesky_ex, torch.cholesky, torch.Tensor.cholesky)
def cholesky(call: Call) -> Counts:
    """Cholesky factorisation (xPOTRF): ``n^3/3``."""
    a, n = _square(call)
    return _counts(Fraction(n ** 3, 3), a, n, n)


@register(torch.linalg.qr, torch.qr, torch.Tensor.qr)
def qr(call: Call) -> Counts:
    """QR (xGEQRF), and forming ``Q`` (xORGQR): ``2mk^2 - 2k^3/3`` more for the reduced ``m x k``
    ``Q``, ``4m^2 k - 4mk^2 + 4k^3/3`` for the complete ``m x m`` one, none for ``mode='r'``."""
    a = _matrix(call)
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    mode = call.arg(1, "mode", "reduced")
    if mode is True or mode is False:       # torch.qr(input, some=True)
        mode = "reduced" if mode else "complete"
    form = {"r": 0, "reduced": 2 * m * k * k - Fraction(2 * k ** 3, 3),
            "complete": 4 * m * m * k - 4 * m * k * k + Fraction(4 * k ** 3, 3)}[mode]
    return _counts(geqrf(m, n) + form, a, m, n)


@register(torch.linalg.svd, torch.linalg.svdvals, torch.svd, torch.Tensor.svd)
def svd(call: Call) -> Counts:
    """Golub-Reinsch SVD of ``m x n`` (``m >= n``, else transposed), Golub & Van Loan's counts:
    singular values only ``4mn^2 - 4n^3/3``; with thin ``U`` and ``V`` ``14mn^2 + 8n^3``; with
    the full ``m x m`` factor (``full_matrices=True`` on a non-square matrix) ``4m^2 n + 8mn^2 + 9n^3``."""
    a = _matrix(call)
    rows, cols = a.shape[-2], a.shape[-1]
    m, n = max(rows, cols), min(rows, cols)
    if not isinstance(call.output, (tuple, list)):          # svdvals
        flops = 4 * m * n * n - Fraction(4 * n ** 3, 3)
    elif m != n and all(f.shape[-1] == f.shape[-2] for f in (call.output[0], call.output[2])):
        flops = Fraction(4 * m * m * n + 8 * m * n * n + 9 * n ** 3)
    else:
        flops = Fraction(14 * m * n * n + 8 * n ** 3)
    return _counts(flops, a, rows, cols)


@register(torch.linalg.eigh, torch.linalg.eigvalsh)
def eigh(call: Call) -> Counts:
    """Symmetric eigendecomposition (tridiagonal reduction and the symmetric QR algorithm),
    Golub & Van Loan's counts: eigenvalues only ``4n^3/3``, with eigenvectors ``9n^3``."""
    a, n = _square(call)
    vectors = isinstance(call.output, (tuple, list))
    return _counts(Fraction(9 * n ** 3) if vectors else Fraction(4 * n ** 3, 3), a, n, n)


@register(torch.linalg.lstsq)
def lstsq(call: Call) -> Counts:
    """Least squares by QR (xGELS; LQ when ``m < n``), ``k`` right-hand sides, ``p = min(m, n)``:
    the factorisation (xGEQRF), applying ``Q^T`` (xORMQR, ``4mnk - 2p^2 k``) and the triangular
    solve (``p^2 k``). NB: on CPU torch's default driver is xGELSY (QR with column pivoting),
    counted as xGELS, the driver it uses on CUDA."""
    a, b = call.arg(0, "A"), call.arg(1, "B")
    m, n = a.shape[-2], a.shape[-1]
    k = 1 if len(b.shape) == len(a.shape) - 1 else b.shape[-1]
    p = min(m, n)
    return _counts(geqrf(m, n) + 4 * m * n * k - p * p * k, a, m, n)
