"""Properties of cca_lib.similarity: invariances, known answers, two implementations agreeing,
rank deficiency, torch inputs, and clear errors on bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import cca_lib
from cca_lib import (
    FewSamplesWarning,
    cca,
    compare,
    distance,
    linear_cka,
    mean_cca,
    pwcca,
    svcca,
)

CCA_FAMILY = {
    "mean_cca": mean_cca,
    "svcca": svcca,
    "pwcca": pwcca,
    "pwcca_sym": lambda x, y: pwcca(x, y, symmetric=True),
}


def pair(seed: int, n: int = 600, d1: int = 12, d2: int = 9, shared: int = 5):
    """Two layers sharing ``shared`` latent dims plus independent noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, shared))
    x = z @ rng.standard_normal((shared, d1)) + 0.7 * rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((shared, d2)) + 0.7 * rng.standard_normal((n, d2))
    return x, y


seeds = st.integers(0, 2**31 - 1)
fast = settings(max_examples=15, deadline=None)


# ----------------------------------------------------------------------------- invariances


@fast
@given(seeds)
def test_permutation_scaling_translation_invariance(seed):
    x, y = pair(seed)
    rng = np.random.default_rng(seed + 1)
    px, py = rng.permutation(x.shape[1]), rng.permutation(y.shape[1])
    scale, shift = rng.uniform(0.1, 10), rng.normal(0, 5, size=x.shape[1])
    x2 = scale * x[:, px] + shift
    y2 = 3.0 * y[:, py] - 2.0
    for name, f in {**CCA_FAMILY, "cka": linear_cka}.items():
        assert f(x2, y2) == pytest.approx(f(x, y), abs=1e-9), name
    np.testing.assert_allclose(cca(x2, y2).rho, cca(x, y).rho, atol=1e-10)


@fast
@given(seeds)
def test_rotation_invariance(seed):
    """rho, mean CCA, SVCCA and CKA ignore rotations of either input; PWCCA ignores rotations
    of y (any invertible map of y), and its symmetric variant does not."""
    x, y = pair(seed)
    qx = ortho_group.rvs(x.shape[1], random_state=seed % 2**32)
    qy = ortho_group.rvs(y.shape[1], random_state=(seed + 7) % 2**32)
    np.testing.assert_allclose(cca(x @ qx, y @ qy).rho, cca(x, y).rho, atol=1e-10)
    for f in (mean_cca, svcca, linear_cka):
        assert f(x @ qx, y @ qy) == pytest.approx(f(x, y), abs=1e-9)
    assert pwcca(x, y @ qy) == pytest.approx(pwcca(x, y), abs=1e-10)


def test_pwcca_depends_on_the_neuron_basis_of_x():
    """The paper's weights sum |<h_i, z_j>| over x's neurons: rotating x changes them."""
    x, y = pair(3)
    q = ortho_group.rvs(x.shape[1], random_state=4)
    assert abs(pwcca(x @ q, y) - pwcca(x, y)) > 1e-4
    assert mean_cca(x @ q, y) == pytest.approx(mean_cca(x, y), abs=1e-12)


def test_cca_invariant_to_invertible_maps_but_cka_and_svcca_are_not():
    x, y = pair(5)
    m = np.random.default_rng(6).standard_normal((y.shape[1], y.shape[1])) + 2 * np.eye(y.shape[1])
    assert mean_cca(x, y @ m) == pytest.approx(mean_cca(x, y), abs=1e-10)
    assert pwcca(x, y @ m) == pytest.approx(pwcca(x, y), abs=1e-10)
    assert abs(linear_cka(x, y @ m) - linear_cka(x, y)) > 1e-3


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_self_similarity_is_one(dtype):
    x, _ = pair(0)
    x = x.astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    for name, f in {**CCA_FAMILY, "cka": linear_cka}.items():
        assert f(x, x) == pytest.approx(1.0, abs=tol), name
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=tol)


def test_independent_gaussians_give_small_values():
    """For independent inputs E[sum(rho^2)] ~ d1 d2 / n (each of the d1 d2 entries of the
    whitened cross-covariance is ~N(0, 1/n)), so by Jensen mean rho <= sqrt(mean rho^2) ~
    sqrt(d/n) (here ~0.09): 3 sqrt(d/n) leaves a wide margin for sampling noise, and a broken
    implementation (e.g. no whitening, or rho not clipped) overshoots it."""
    rng = np.random.default_rng(11)
    n, d = 5000, 40
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    bound = 3 * np.sqrt(d / n)
    assert mean_cca(x, y) < bound
    assert pwcca(x, y) < bound
    assert cca(x, y).rho[0] < 0.2
    assert linear_cka(x, y) < 0.05
    assert 0.0 <= linear_cka(x, y, debiased=True) < 0.01  # may dip below 0 before clipping


@pytest.mark.parametrize("k", [1, 4, 9])
def test_k_shared_dims_give_k_unit_coefficients(k):
    rng = np.random.default_rng(k)
    n, d = 3000, 12
    s = rng.standard_normal((n, k))
    x = np.hstack([s, rng.standard_normal((n, d - k))]) @ ortho_group.rvs(d, random_state=k)
    y = np.hstack([s @ ortho_group.rvs(k, random_state=k + 1) if k > 1 else -2 * s,
                   rng.standard_normal((n, d - k))])
    rho = cca(x, y).rho
    np.testing.assert_allclose(rho[:k], 1.0, atol=1e-10)
    assert np.all(rho[k:] < 0.2)


def test_matches_the_paper_formula_computed_naively():
    """Explicit Sigma^-1/2 (scipy), SVD, Gram-Schmidt (QR) and sum of |<h_i, z_j>|."""
    from scipy.linalg import fractional_matrix_power

    x, y = pair(21, n=400, d1=7, d2=10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ixx = np.real(fractional_matrix_power(xc.T @ xc, -0.5))
    iyy = np.real(fractional_matrix_power(yc.T @ yc, -0.5))
    u, rho, _ = np.linalg.svd(ixx @ xc.T @ yc @ iyy)
    c = min(x.shape[1], y.shape[1])
    h, _ = np.linalg.qr(xc @ ixx @ u[:, :c])
    alpha = np.abs(h.T @ xc).sum(axis=1)
    expected = float(np.sum(alpha / alpha.sum() * rho[:c]))
    np.testing.assert_allclose(cca(x, y).rho, rho[:c], atol=1e-10)
    assert pwcca(x, y) == pytest.approx(expected, abs=1e-10)


def test_debiased_cka_matches_explicit_kernels():
    x, y = pair(8, n=80, d1=5, d2=6)
    n = x.shape[0]

    def hsic_u(k, m):
        k, m = k.copy(), m.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(m, 0)
        one = np.ones(n)
        return (np.trace(k @ m) + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ m @ one) / (n * (n - 3))

    xc, yc = x - x.mean(0), y - y.mean(0)
    k, m = xc @ xc.T, yc @ yc.T
    expected = hsic_u(k, m) / np.sqrt(hsic_u(k, k) * hsic_u(m, m))
    assert linear_cka(x, y, debiased=True, allow_few_samples=True) == pytest.approx(expected,
                                                                                   abs=1e-10)
    plain = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(k) * np.linalg.norm(m))
    assert linear_cka(x, y, allow_few_samples=True) == pytest.approx(plain, abs=1e-12)


# ----------------------------------------------------------------------------- implementations


@fast
@given(seeds, st.integers(2, 15), st.integers(2, 15))
def test_gram_and_svd_implementations_agree(seed, d1, d2):
    x, y = pair(seed, n=500, d1=d1, d2=d2, shared=min(d1, d2, 3))
    a, b = cca(x, y), cca(x, y, method="svd")
    np.testing.assert_allclose(a.rho, b.rho, atol=1e-8)
    np.testing.assert_allclose(np.abs(a.x_variates.T @ b.x_variates).diagonal()[a.rho > 0.5],
                               1.0, atol=1e-6)
    for sym in (False, True):
        assert pwcca(x, y, symmetric=sym) == pytest.approx(
            pwcca(x, y, symmetric=sym, method="svd"), abs=1e-8)


def test_variates_are_orthonormal_and_correlate_by_rho():
    x, y = pair(2)
    r = cca(x, y)
    c = r.rho.size
    np.testing.assert_allclose(r.x_variates.T @ r.x_variates, np.eye(c), atol=1e-10)
    np.testing.assert_allclose(r.y_variates.T @ r.y_variates, np.eye(c), atol=1e-10)
    np.testing.assert_allclose(np.diag(r.x_variates.T @ r.y_variates), r.rho, atol=1e-10)
    assert r.x_weights.shape == (x.shape[1], c) and r.y_weights.shape == (y.shape[1], c)
    assert cca(x, y, variates=False).x_variates is None


@pytest.mark.parametrize("d1,d2", [(15, 4), (4, 15)])
def test_any_widths_and_symmetric_pwcca(d1, d2):
    x, y = pair(9, d1=d1, d2=d2)
    r = cca(x, y)
    assert r.rho.size == min(d1, d2)
    fwd, bwd = pwcca(x, y), pwcca(y, x)
    assert 0 <= fwd <= 1 and 0 <= bwd <= 1 and abs(fwd - bwd) > 1e-3
    assert pwcca(x, y, symmetric=True) == pytest.approx((fwd + bwd) / 2, abs=1e-12)
    c = compare(x, y)
    assert c["PWCCA"] == pytest.approx(fwd) and c["PWCCA (symmetric)"] == pytest.approx(
        (fwd + bwd) / 2)
    assert c["mean CCA"] == pytest.approx(mean_cca(x, y))
    assert c["SVCCA"] == pytest.approx(svcca(x, y))
    assert c["linear CKA"] == pytest.approx(linear_cka(x, y))


# ----------------------------------------------------------------------------- rank deficiency


def test_dead_and_duplicate_neurons_are_dropped_not_nan():
    x, y = pair(4)
    n = x.shape[0]
    bad = np.hstack([x, np.full((n, 2), 7.0), x[:, :3], 2 * x[:, :1]])
    for method in ("gram", "svd"):
        r = cca(bad, y, method=method)
        assert r.dropped_x == 6 and r.dropped_y == 0
        assert np.all(np.isfinite(r.rho))
        np.testing.assert_allclose(r.rho, cca(x, y).rho, atol=1e-8)
        assert np.isfinite(pwcca(bad, y, method=method))
        assert np.isfinite(pwcca(y, bad, method=method))
    # dead neurons carry no variance, so SVCCA's cut is unchanged; duplicates add variance
    # along their direction and may legitimately move it
    dead = np.hstack([x, np.full((n, 2), 7.0)])
    assert svcca(dead, y) == pytest.approx(svcca(x, y), abs=1e-8)
    assert np.isfinite(svcca(bad, y))
    assert np.isfinite(linear_cka(bad, y))


def test_rank_deficient_input_and_float32():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((1000, 3))
    x = z @ rng.standard_normal((3, 10))  # rank 3 in 10 neurons
    y = z @ rng.standard_normal((3, 8)) + 0.1 * rng.standard_normal((1000, 8))
    for dtype in (np.float64, np.float32):
        r = cca(x.astype(dtype), y.astype(dtype))
        assert r.dropped_x == 7 and r.rho.size == 3
        assert np.all(r.rho > 0.9)


def test_constant_input_is_an_error():
    x, y = pair(0)
    with pytest.raises(ValueError, match="x has no variance"):
        pwcca(np.ones_like(x), y)
    with pytest.raises(ValueError, match="y has no variance"):
        cca(x, np.zeros_like(y), method="svd")


def test_coefficients_are_clipped_to_unit_interval():
    x, _ = pair(12)
    rho = cca(x, x.copy()).rho
    assert rho.max() <= 1.0 and rho.min() >= 0.0


# ----------------------------------------------------------------------------- svcca


def test_svcca_keep_variants():
    x, y = pair(13, d1=9, d2=9)
    assert svcca(x, y, keep=1.0) == pytest.approx(mean_cca(x, y), abs=1e-10)
    assert svcca(x, y, keep=x.shape[1]) == pytest.approx(mean_cca(x, y), abs=1e-10)
    assert 0 < svcca(x, y, keep=3) <= 1
    with pytest.raises(ValueError, match="exceeds"):
        svcca(x, y, keep=50)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        svcca(x, y, keep=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        svcca(x, y, keep=0)
    with pytest.raises(TypeError, match="keep"):
        svcca(x, y, keep=True)


# ----------------------------------------------------------------------------- torch


def test_torch_inputs_match_numpy():
    torch = pytest.importorskip("torch")
    x, y = pair(14)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert pwcca(tx, ty) == pytest.approx(pwcca(x, y), abs=1e-12)
    np.testing.assert_allclose(cca(tx, ty).rho, cca(x, y).rho, atol=1e-12)
    assert isinstance(cca(tx, ty).rho, np.ndarray)
    assert linear_cka(tx, ty, debiased=True) == pytest.approx(linear_cka(x, y, debiased=True))
    # float32 on the tensor's device: agrees with float64 to ~1e-5
    f32 = pwcca(tx.float(), ty.float())
    assert isinstance(f32, float) and f32 == pytest.approx(pwcca(x, y), abs=1e-4)
    np.testing.assert_allclose(cca(tx.float(), ty.float()).rho, cca(x, y).rho, atol=1e-4)
    assert mean_cca(tx, y) == pytest.approx(mean_cca(x, y))  # a numpy/torch mix works


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    x, y = pair(0)
    with pytest.raises(ValueError, match="x has 600 samples but y has 599"):
        pwcca(x, y[:-1])
    with pytest.raises(ValueError, match=r"x must be 2-D .* shape \(600,\)"):
        mean_cca(x[:, 0], y)
    with pytest.raises(ValueError, match="y contains NaN"):
        y2 = y.copy()
        y2[3, 1] = np.nan
        cca(x, y2)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        x2 = x.copy()
        x2[0, 0] = np.inf
        linear_cka(x2, y)
    with pytest.raises(ValueError, match="at least 2 samples"):
        cca(x[:1], y[:1], allow_few_samples=True)
    with pytest.raises(ValueError, match="no features"):
        cca(x[:, :0], y)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        cca(x.tolist(), y)
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        cca(x.astype(np.int64), y)
    with pytest.raises(ValueError, match="method must be one of"):
        cca(x, y, method="qr")
    with pytest.raises(ValueError, match="rtol"):
        pwcca(x, y, rtol=2.0)
    with pytest.raises(ValueError, match="method must be one of"):
        distance(x, y, method="cosine")


@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 1e20), (np.float64, 1e160)])
def test_large_inputs_do_not_overflow(dtype, scale):
    """Finite inputs whose squares would overflow: each input is rescaled by a power of two
    before any product, so the answers are those of the unscaled inputs (no "no variance",
    LinAlgError, NaN or overflow error, and no stray overflow warning)."""
    x, y = pair(25)
    x, y = x.astype(dtype), y.astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (pwcca, mean_cca, svcca, linear_cka):
            assert f(x, y * dtype(scale)) == pytest.approx(f(x, y), abs=tol)
        np.testing.assert_allclose(cca(x, y * dtype(scale)).rho, cca(x, y).rho, atol=tol)


def test_few_samples_raise_unless_allowed_and_warn():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 20)), rng.standard_normal((30, 15))
    with pytest.raises(ValueError, match="trivially 1"):
        mean_cca(x, y)
    with pytest.warns(FewSamplesWarning):
        assert mean_cca(x, y, allow_few_samples=True) > 0.5  # the upward bias, visible
    x, y = rng.standard_normal((90, 20)), rng.standard_normal((90, 15))
    with pytest.warns(FewSamplesWarning, match="biased upward"):
        pwcca(x, y)
    x, y = rng.standard_normal((200, 20)), rng.standard_normal((200, 15))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pwcca(x, y)
    assert issubclass(FewSamplesWarning, UserWarning)


def test_distance_is_one_minus_similarity():
    x, y = pair(15)
    assert distance(x, y) == pytest.approx(1 - pwcca(x, y))
    assert distance(x, y, "pwcca", symmetric=True) == pytest.approx(
        1 - pwcca(x, y, symmetric=True))
    assert distance(x, y, "mean_cca") == pytest.approx(1 - mean_cca(x, y))
    assert distance(x, y, "svcca", keep=4) == pytest.approx(1 - svcca(x, y, keep=4))
    assert distance(x, y, "cka") == pytest.approx(1 - linear_cka(x, y))
    assert distance(x, y, "cka_debiased") == pytest.approx(1 - linear_cka(x, y, debiased=True))


def test_import_does_not_need_torch():
    import subprocess
    import sys

    code = "import sys, cca_lib; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert cca_lib.__all__


# ----------------------------------------------------------------------------- blocked pass


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_covariance_matches_one_block(monkeypatch, dtype):
    """The covariances are accumulated over blocks of rows; many uneven blocks must give the
    same answer as one (and the SVD implementation)."""
    import cca_lib.similarity as sim

    x, y = pair(16, n=2500, d1=11, d2=7)
    x, y = (x + 50.0).astype(dtype), (y - 20.0).astype(dtype)  # means far from 0
    one_block = cca(x, y)
    monkeypatch.setattr(sim, "_BLOCK_VALUES", 18)
    monkeypatch.setattr(sim, "_MIN_BLOCK_ROWS", 1000)  # blocks of 1000, 1000 and 500 rows
    blocked = cca(x, y)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(blocked.rho, one_block.rho, atol=tol)
    np.testing.assert_allclose(blocked.rho, cca(x, y, method="svd").rho, atol=10 * tol)
    assert pwcca(x, y) == pytest.approx(pwcca(x, y, method="svd"), abs=10 * tol)


def test_mean_cca_coefficients_only_path():
    x, y = pair(17, d1=10, d2=6)
    for method in ("gram", "svd"):
        assert mean_cca(x, y, method=method) == pytest.approx(cca(x, y).mean, abs=1e-12)


def test_non_contiguous_and_fortran_inputs():
    x, y = pair(18, d1=16, d2=8)
    ref = cca(x[:, ::2].copy(), y).rho
    np.testing.assert_allclose(cca(x[:, ::2], y).rho, ref, atol=1e-12)
    np.testing.assert_allclose(cca(np.asfortranarray(x[:, ::2]), y).rho, ref, atol=1e-12)


def test_torch_dead_duplicate_neurons_float32_and_grad():
    torch = pytest.importorskip("torch")
    x, y = pair(19)
    n = x.shape[0]
    bad = np.hstack([x, np.full((n, 2), 3.0), x[:, :2]])
    for dtype in (torch.float64, torch.float32):
        tb = torch.tensor(bad, dtype=dtype, requires_grad=True)
        r = cca(tb, torch.tensor(y, dtype=dtype))
        assert r.dropped_x == 4 and r.dropped_y == 0
        tol = 1e-8 if dtype == torch.float64 else 1e-4
        np.testing.assert_allclose(r.rho, cca(x, y).rho, atol=tol)
        assert r.x_variates.dtype == np.float64 and np.isfinite(pwcca(tb, y))
    assert cca(bad.astype(np.float32), y.astype(np.float32)).dropped_x == 4


def test_torch_nan_and_inf_are_refused():
    torch = pytest.importorskip("torch")
    x, y = pair(20)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y.T.copy()).T  # non-contiguous view
    assert np.isfinite(pwcca(tx, ty))
    bad = ty.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        pwcca(tx, bad)
    inf_row = torch.tensor(x, dtype=torch.float32).index_fill(0, torch.tensor([0]), float("inf"))
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        mean_cca(inf_row, y.astype(np.float32))


@pytest.mark.skipif("not __import__('importlib').util.find_spec('torch') or "
                    "not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_cuda_tensors_stay_on_device():
    import torch

    x, y = pair(20)
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    assert pwcca(tx, ty) == pytest.approx(pwcca(x, y), abs=1e-10)
    assert pwcca(tx.float(), ty.float()) == pytest.approx(pwcca(x, y), abs=1e-4)
    assert mean_cca(tx, y) == pytest.approx(mean_cca(x, y), abs=1e-10)
    assert tx.device.type == "cuda"


def test_device_branch_matches_numpy(monkeypatch):
    """The branch CUDA tensors take (centering and products in torch on their device, the
    mixed numpy/torch case, torch NaN checks, variates and CKA's row norms in torch), run on
    CPU tensors by declaring every tensor a device tensor: it must agree with numpy. This
    checks the branch's arithmetic on machines without a GPU; the transfers themselves are
    checked by test_cuda_tensors_stay_on_device where CUDA exists."""
    torch = pytest.importorskip("torch")
    import cca_lib._validation as validation
    import cca_lib.similarity as sim

    taken = []

    def on_device(a):
        taken.append(sim.is_torch(a))
        return sim.is_torch(a)

    monkeypatch.setattr(sim, "on_cuda", on_device)
    monkeypatch.setattr(validation, "on_cuda", on_device)
    x, y = pair(24)
    x, y = x + 5.0, y - 3.0  # means far from 0, so a missing centering shows
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    want = compare(x, y)
    for got in (compare(tx, ty), compare(tx, y), compare(x, ty)):
        assert got == pytest.approx(want, abs=1e-10)
    # float32 tensor with a float64 array: computed in float64 (a mixed-dtype product would fail)
    assert compare(tx.float(), y) == pytest.approx(want, abs=1e-4)
    r, r0 = cca(tx, ty), cca(x, y)
    np.testing.assert_allclose(r.rho, r0.rho, atol=1e-12)
    for h, h0 in ((r.x_variates, r0.x_variates), (r.y_variates, r0.y_variates)):
        np.testing.assert_allclose(h.T @ h, np.eye(h.shape[1]), atol=1e-10)
        np.testing.assert_allclose(h, h0 * np.sign((h * h0).sum(axis=0)), atol=1e-8)
    assert linear_cka(tx, ty, debiased=True) == pytest.approx(linear_cka(x, y, debiased=True),
                                                              abs=1e-10)
    assert pwcca(tx.float(), ty.float()) == pytest.approx(pwcca(x, y), abs=1e-4)
    assert any(taken)  # the device branch was really used
    bad = tx.clone()
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        pwcca(bad, ty)


def test_few_samples_warning_points_at_the_caller():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((90, 20)), rng.standard_normal((90, 15))
    for f in (pwcca, mean_cca, svcca, linear_cka, compare, lambda a, b: cca(a, b)):
        with pytest.warns(FewSamplesWarning) as record:
            f(x, y)
        assert record[0].filename == __file__


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cholesky_shortcut_equals_eigendecomposition(monkeypatch, dtype):
    """Inputs with a well-conditioned correlation matrix are whitened by Cholesky; forcing the
    eigendecomposition must give the same coefficients, canonical directions and PWCCA. In
    float32 the neurons' scales span 1 to 3 (a covariance condition number ~300): the
    decision is on the correlation matrix, which the scales do not change, and its bound is
    below float32's limit 1 / (10 * 3e-3**2) = 11111, so still the shortcut."""
    import cca_lib.similarity as sim

    x, y = pair(22, d1=13, d2=8)
    if dtype == np.float32:
        x, y = (x * np.geomspace(1, 3, 13)).astype(dtype), y.astype(dtype)
    g = sim._grams(x, y, None)
    w = sim._fast_whitener(g.sxx, g.rtol_x, "x")
    assert np.all(np.tril(w, -1) == 0)  # the shortcut was taken: w = L^-T is upper triangular
    np.testing.assert_allclose(w.T @ g.sxx @ w, np.eye(13), atol=1e-10)
    fast, fast_pw = cca(x, y), pwcca(x, y)
    monkeypatch.setattr(sim, "_CHOLESKY_MARGIN", np.inf)  # never take the shortcut
    assert np.any(np.tril(sim._fast_whitener(g.sxx, g.rtol_x, "x"), -1) != 0)
    slow = cca(x, y)
    np.testing.assert_allclose(fast.rho, slow.rho, atol=1e-12)
    # the same canonical directions up to sign (both paths share the float64 covariances)
    for a, b in ((fast.x_weights, slow.x_weights), (fast.y_weights, slow.y_weights)):
        signs = np.sign((a * b).sum(axis=0))
        np.testing.assert_allclose(a, b * signs, atol=1e-8 * np.abs(b).max())
    assert fast_pw == pytest.approx(pwcca(x, y), abs=1e-12)


def test_nearly_dependent_neuron_is_dropped_at_the_tolerance():
    """A neuron equal to another up to noise of 1e-7 of its standard deviation has a
    singular-value ratio ~7e-8, below the float64 cut 1e-6: it is dropped (the Cholesky
    shortcut would have accepted it, its condition estimate sends it to the
    eigendecomposition); with rtol=1e-9 it is kept. (The ratio is well above the covariance
    method's resolution, ~1e-8: the eigenvalue of R it leaves, ~5e-15, is far above the
    float64 rounding of R, ~1e-16, so the decision does not rest on rounding.)"""
    x, y = pair(23)
    rng = np.random.default_rng(0)
    noise = 1e-7 * x[:, 0].std() * rng.standard_normal((x.shape[0], 1))
    near = np.hstack([x, x[:, :1] + noise])
    assert cca(near, y).dropped_x == 1
    np.testing.assert_allclose(cca(near, y).rho, cca(x, y).rho, atol=1e-8)
    assert cca(near, y, rtol=1e-9).dropped_x == 0
