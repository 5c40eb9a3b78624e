"""The fast paths of the moment pass and the whitening give the numbers of the direct ones."""

import numpy as np
import pytest

import cca_lib.similarity as sim
from cca_lib import compare


@pytest.mark.parametrize("d", [1, 5, 63, 64, 65, 130, 257])
def test_lower_inverse_is_the_inverse_and_lower_triangular(d):
    rng = np.random.default_rng(d)
    low = np.linalg.cholesky(np.corrcoef(rng.standard_normal((3 * d + 3, d)).T).reshape(d, d))
    inv = sim._lower_inverse(low)
    assert not np.triu(inv, 1).any()
    np.testing.assert_allclose(inv @ low, np.eye(d), atol=1e-12)
    np.testing.assert_allclose(inv, np.linalg.inv(low), atol=1e-12 * np.abs(inv).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_match_a_direct_float64_computation(dtype):
    """One SYRK of the stacked [x - c, y - c, 1] and the sample-mean centre give the centered
    covariances of the scaled inputs and their means."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5000, 7)) * [1, 2, 3, 4, 5, 6, 7] + 40.0).astype(dtype)
    y = (x[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((5000, 4))).astype(dtype)
    g = sim._grams(x, y, None)
    xs = np.ldexp(x.astype(np.float64), -g.exp_x)
    ys = np.ldexp(y.astype(np.float64), -g.exp_y)
    xc, yc = xs - xs.mean(0), ys - ys.mean(0)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got, want in ((g.sxx, xc.T @ xc), (g.syy, yc.T @ yc), (g.sxy, xc.T @ yc)):
        np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max())
    # the column sums are float32 products (summed in float64 across blocks) for float32
    mtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(g.mean_x, xs.mean(0), rtol=mtol)
    np.testing.assert_allclose(g.mean_y, ys.mean(0), atol=mtol * np.abs(ys).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_large_row_the_sample_misses_repeats_the_pass_with_the_same_answer(dtype, monkeypatch):
    """A row far larger than every sampled row (beyond the products' headroom) makes the pass
    run again with the final exponents; the answers are those with that row sampled."""
    rng = np.random.default_rng(2)
    n = 4096  # every 4th row is sampled: row 1 is not
    x = rng.standard_normal((n, 6))
    y = x @ rng.standard_normal((6, 5)) + rng.standard_normal((n, 5))
    big = 2.0 ** (sim._PRODUCT_HEADROOM[np.dtype(dtype)] + 8)
    x[1] *= big
    x, y = x.astype(dtype), y.astype(dtype)
    calls = []
    original = sim._Moments._host_pass

    def spy(self, *args):
        calls.append(args[3])  # px
        return original(self, *args)

    monkeypatch.setattr(sim._Moments, "_host_pass", spy)
    got = compare(x, y)
    assert len(calls) == 2 and calls[1] > calls[0]
    order = np.r_[1, 0, 2:n]  # the large row first: sampled
    calls.clear()
    want = compare(x[order], y[order])
    assert len(calls) == 1
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=tol), k


def _layers(case, seed=3, n=4000, d1=40, d2=30):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, d1)) + rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((4, d2)) + rng.standard_normal((n, d2))
    if case in ("dead", "dead and duplicate"):
        x[:, 5] = 2.5  # a constant neuron
        x[:, 9] = 7.0 + 1e-17 * rng.standard_normal(n)  # dead by the rounding rule
    if case == "dead and duplicate":
        x[:, 1] = x[:, 2]  # the eigendecomposition route
    return x * np.geomspace(1e-3, 1e3, d1), y


@pytest.mark.parametrize("case", ["plain", "dead", "dead and duplicate"])
def test_whitening_product_is_the_covariance_times_the_whitening(case):
    """``Sigma W`` from the Cholesky factor (D^{1/2} L, dead rows by product) equals the
    product itself, on both routes, with the same whitening as _fast_whitener."""
    x, _ = _layers(case)
    g = sim._grams(x, x[:, :3], None)
    w, sw = sim._whitening(g.sxx, g.rtol_x, "x", g.dead_x, product=True)
    np.testing.assert_array_equal(w, sim._fast_whitener(g.sxx, g.rtol_x, "x", g.dead_x))
    want = g.sxx @ w
    np.testing.assert_allclose(sw, want, rtol=0, atol=1e-12 * np.abs(want).max())
    assert w.shape[1] == x.shape[1] - (2 if case == "dead" else 3 if case != "plain" else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["plain", "dead", "dead and duplicate"])
def test_pwcca_weights_from_the_factor_equal_those_from_the_canonical_weights(case, dtype):
    """_pwcca_from_grams (weights (Sigma W) A, no canonical weights) gives the numbers of the
    direct formula Sigma_xx @ x_weights, both directions."""
    x, y = (a.astype(dtype) for a in _layers(case))
    g = sim._grams(x, y, None)
    core = sim._cca_from_grams(g)
    rho, fwd, bwd = sim._pwcca_from_grams(g)
    np.testing.assert_allclose(rho, core.rho, rtol=0, atol=1e-12)
    assert fwd == pytest.approx(sim._pw_mean(core.rho, g.sxx @ core.x_weights), abs=1e-12)
    assert bwd == pytest.approx(sim._pw_mean(core.rho, g.syy @ core.y_weights), abs=1e-12)
    assert sim._pwcca_from_grams(g, backward=False) == (pytest.approx(rho), fwd, None)
