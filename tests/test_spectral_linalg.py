"""FFTs by the nominal 5 N log2 N convention; dense linear algebra by LAPACK's standard counts."""
import pytest
import torch
from torch import nn

import torchflops as tf

from test_functional import Call  # noqa: E402


def _one(fn, *inputs, device="meta"):
    prof = tf.count(Call(fn), *inputs, device=device, strict=True)
    assert len(prof.records) == 1
    return prof.records[0]


FFTS = {
    # complex transform of N points: 5 N log2 N FLOPs; M points in all over axes of N_1..N_k:
    # 5 M log2(N_1...N_k); real data: half. macs = flops / 2.
    # 2 x 3 transforms of 16 points: M = 96, 5 x 96 x 4 = 1920
    "fft": (torch.fft.fft, (2, 3, 16), 1920, "fft_fft (5 N log2 N)"),
    "ifft-n": (lambda x: torch.fft.ifft(x, n=32), (2, 3, 16), 5 * 192 * 5, "fft_ifft (5 N log2 N)"),
    # over axes 1, 2 (8 x 16): M = 2 x 128, 5 x 256 x log2(128) = 8960
    "fft2": (torch.fft.fft2, (2, 8, 16), 8960, "fft_fft2 (5 N log2 N)"),
    "fftn-dim": (lambda x: torch.fft.fftn(x, dim=(0, 2)), (2, 8, 16), 5 * 256 * 5, "fft_fftn (5 N log2 N)"),
    "fftn-all": (torch.fft.fftn, (2, 8, 16), 5 * 256 * 8, "fft_fftn (5 N log2 N)"),
    "fftn-s": (lambda x: torch.fft.fftn(x, s=(4,)), (2, 8, 16), 5 * 64 * 2, "fft_fftn (5 N log2 N)"),
    "fft-axis": (lambda x: torch.fft.fft(x, axis=1), (2, 8, 16), 5 * 256 * 3, "fft_fft (5 N log2 N)"),
    # real: 2 x 3 signals of 16 real points: 2.5 x 96 x 4 = 960 (the 9 complex outputs do not count)
    "rfft": (torch.fft.rfft, (2, 3, 16), 960, "fft_rfft (2.5 N log2 N)"),
    "rfft-n": (lambda x: torch.fft.rfft(x, n=8), (2, 3, 16), 2.5 * 48 * 3, "fft_rfft (2.5 N log2 N)"),
    "rfft2": (torch.fft.rfft2, (2, 8, 16), 2.5 * 256 * 7, "fft_rfft2 (2.5 N log2 N)"),
    # irfft of 9 complex points to n = 2 x (9 - 1) = 16 real ones: as rfft
    "irfft": (torch.fft.irfft, (2, 3, 9), 960, "fft_irfft (2.5 N log2 N)"),
    "irfftn-s": (lambda x: torch.fft.irfftn(x, s=(8, 16)), (2, 8, 9), 2.5 * 256 * 7, "fft_irfftn (2.5 N log2 N)"),
    "hfft": (torch.fft.hfft, (2, 3, 9), 960, "fft_hfft (2.5 N log2 N)"),
    "ihfft": (torch.fft.ihfft, (2, 3, 16), 960, "fft_ihfft (2.5 N log2 N)"),
}


@pytest.mark.parametrize("name", FFTS)
def test_fft_counts_by_the_stated_convention(name):
    fn, shape, flops, kind = FFTS[name]
    dtype = torch.complex64 if name.startswith(("irfft", "hfft")) else torch.float32
    record = _one(fn, torch.empty(shape, dtype=dtype, device="meta"))
    assert record.type == kind
    assert record.counts.macs == round(flops / 2) and record.counts.flops == flops
    real = _one(fn, torch.zeros(shape, dtype=dtype), device="cpu")
    assert real.counts == record.counts


def test_fft_backward_is_a_transform_of_the_same_size():
    x = torch.empty(2, 3, 16, requires_grad=True)
    assert _one(torch.fft.fft, x).counts.grad_input_flops == 1920


def test_fnet_counts_with_nothing_unsupported():
    transformers = pytest.importorskip("transformers")
    config = transformers.FNetConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                                     vocab_size=100, max_position_embeddings=64)
    with torch.device("meta"):
        model = transformers.FNetModel(config).eval()
    prof = tf.count(model, kwargs={"input_ids": torch.zeros(1, 16, dtype=torch.long)}, strict=True)
    assert prof.unsupported == {}
    ffts = [r for r in prof.records if r.type.startswith("fft_")]
    # each layer: fftn over 16 tokens x 32 features: 5 x 512 x log2(512) = 23,040 FLOPs
    assert [r.counts.flops for r in ffts] == [23040, 23040]
    assert [r.name for r in ffts] == ["encoder.layer.0.fourier.self", "encoder.layer.1.fourier.self"]


def _spd(n):
    a = torch.randn(3, n, n, generator=torch.Generator().manual_seed(0))
    return a @ a.mT + n * torch.eye(n)


# LAPACK Working Note 41 (factorisations) and Golub & Van Loan (SVD, symmetric eigen) leading
# terms, per matrix, for a batch of 3; macs = round(flops / 2).
N, K, M = 5, 2, 7   # square n x n, k right-hand sides, tall M x N' matrices with N' = 4
LINALG = {
    # xGESV: 2n^3/3 + 2n^2 k
    "solve": (lambda a, b: torch.linalg.solve(a, b), 3 * (2 * N**3 / 3 + 2 * N * N * K)),
    "solve-vector": (lambda a, b: torch.linalg.solve(a, b[..., 0]), 3 * (2 * N**3 / 3 + 2 * N * N)),
    # xGETRF + xGETRI: 2n^3
    "inv": (lambda a, b: torch.linalg.inv(a), 3 * 2 * N**3),
    "Tensor.inverse": (lambda a, b: a.inverse(), 3 * 2 * N**3),
    # xGETRF: 2n^3/3
    "det": (lambda a, b: torch.linalg.det(a), 3 * 2 * N**3 / 3),
    "Tensor.det": (lambda a, b: a.det(), 3 * 2 * N**3 / 3),
    "slogdet": (lambda a, b: torch.linalg.slogdet(a), 3 * 2 * N**3 / 3),
    # xPOTRF: n^3/3
    "cholesky": (lambda a, b: torch.linalg.cholesky(a), 3 * N**3 / 3),
    # eigenvalues 4n^3/3; with eigenvectors 9n^3
    "eigvalsh": (lambda a, b: torch.linalg.eigvalsh(a), 3 * 4 * N**3 / 3),
    "eigh": (lambda a, b: torch.linalg.eigh(a), 3 * 9 * N**3),
    # xGELS, m = n = 5, p = 5: (2mn^2 - 2n^3/3) + 4mnk - p^2 k
    "lstsq": (lambda a, b: torch.linalg.lstsq(a, b), 3 * (2 * N**3 - 2 * N**3 / 3 + 4 * N * N * K - N * N * K)),
    # singular values of a square matrix: 4mn^2 - 4n^3/3
    "svdvals": (lambda a, b: torch.linalg.svdvals(a), 3 * (4 * N**3 - 4 * N**3 / 3)),
}
TALL = {
    # xGEQRF 2mn^2 - 2n^3/3 (m = 7, n = 4), + xORGQR for the reduced Q: 2mn^2 - 2n^3/3
    "qr": (lambda r: torch.linalg.qr(r), 2 * (2 * M * 16 - 2 * 64 / 3)),
    "qr-r": (lambda r: torch.linalg.qr(r, mode="r"), 2 * M * 16 - 2 * 64 / 3),
    # complete Q: 4m^2 n - 4mn^2 + 4n^3/3
    "qr-complete": (lambda r: torch.linalg.qr(r, mode="complete"),
                    2 * M * 16 - 2 * 64 / 3 + 4 * M * M * 4 - 4 * M * 16 + 4 * 64 / 3),
    # full U (7 x 7) and V: 4m^2 n + 8mn^2 + 9n^3; thin: 14mn^2 + 8n^3
    "svd": (lambda r: torch.linalg.svd(r), 4 * M * M * 4 + 8 * M * 16 + 9 * 64),
    "svd-thin": (lambda r: torch.linalg.svd(r, full_matrices=False), 14 * M * 16 + 8 * 64),
    "svd-wide": (lambda r: torch.linalg.svd(r.mT, full_matrices=False), 14 * M * 16 + 8 * 64),
}


@pytest.mark.parametrize("name", LINALG)
def test_dense_linear_algebra_by_lapack_counts(name):
    fn, flops = LINALG[name]
    record = _one(fn, _spd(N), torch.ones(3, N, K), device="cpu")      # lstsq has no meta kernel
    assert record.counts.macs == round(flops / 2)
    assert record.counts.flops == 2 * round(flops / 2)


@pytest.mark.parametrize("name", TALL)
def test_qr_and_svd_of_a_tall_matrix(name):
    fn, flops = TALL[name]
    record = _one(fn, torch.randn(M, 4, generator=torch.Generator().manual_seed(0)), device="cpu")
    assert record.counts.macs == round(flops / 2)


def test_solve_next_to_a_linear_is_counted_shape_only():
    class Solver(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, a):
            return torch.linalg.solve(a, self.fc(a))

    prof = tf.count(Solver(), input_size=(3, 5, 5), strict=True)
    # Linear: 75 outputs x 5 products = 375 MACs; solve: 3 x (2 x 125 / 3 + 2 x 25 x 5) / 2 = 500
    assert [(r.type, r.counts.macs) for r in prof.records] == [("Linear", 375), ("linalg_solve", 500)]
