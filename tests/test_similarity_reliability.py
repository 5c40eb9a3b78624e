"""Regression tests for the similarity numerics of issue 13: a rank rule invariant to neuron
scales, no over- or underflow for any finite input, masked arrays refused, CKA at few samples,
and error messages that say what happened."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cca_lib import FewSamplesWarning, cca, compare, distance, linear_cka, mean_cca, pwcca, svcca

MEASURES = ("mean CCA", "SVCCA", "PWCCA", "PWCCA (symmetric)", "linear CKA")


def related(seed: int, n: int = 1500, d1: int = 10, d2: int = 7):
    """Two layers sharing three latent dimensions, neurons correlated within each layer."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, d1)) + rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((3, d2)) + rng.standard_normal((n, d2))
    return x, y


def every_measure(x, y):
    """compare() plus each function on its own, debiased CKA and the coefficients."""
    out = {f"compare {k}": v for k, v in compare(x, y).items()}
    out.update({"mean_cca": mean_cca(x, y), "pwcca": pwcca(x, y), "svcca": svcca(x, y),
                "pwcca sym": pwcca(x, y, symmetric=True), "cka": linear_cka(x, y),
                "cka debiased": linear_cka(x, y, debiased=True),
                "pwcca svd": pwcca(x, y, method="svd")})
    out.update({f"rho{i}": r for i, r in enumerate(cca(x, y, variates=False).rho)})
    return out


# ------------------------------------------------------------------ row 1: per-neuron scales


def test_issue_example_small_neuron_is_kept_in_float32():
    """The issue's case: one neuron scaled by 1e-3 was dropped in float32 (rho 0.059)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 10))
    y = x[:, :1] + 0.3 * rng.standard_normal((2000, 1))
    x[:, 0] *= 1e-3
    want = cca(x, y).rho
    assert want[0] > 0.9
    for method in ("gram", "svd"):
        r = cca(x.astype(np.float32), y.astype(np.float32), method=method)
        assert r.dropped_x == 0 and r.dropped_y == 0, method
        np.testing.assert_allclose(r.rho, want, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pattern", ["spread", "one small", "one large", "all but one small"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invertible_diagonal_maps_change_nothing(dtype, pattern, seed):
    """CCA is invariant to invertible maps of either input: per-neuron scales from 1e-4 to 1e4
    (in any arrangement) change neither rho nor the dropped counts, in float32 or float64,
    for both methods; PWCCA ignores them on y."""
    x, y = related(seed)
    rng = np.random.default_rng(seed + 100)
    d1, d2 = x.shape[1], y.shape[1]
    scales = {"spread": rng.permutation(np.geomspace(1e-4, 1e4, d1)),
              "one small": np.where(np.arange(d1) == seed, 1e-4, 1.0),
              "one large": np.where(np.arange(d1) == seed, 1e4, 1.0),
              "all but one small": np.where(np.arange(d1) == seed, 1.0, 1e-4)}[pattern]
    y_scales = rng.permutation(np.geomspace(1e-4, 1e4, d2))
    ref = cca(x, y)  # float64, unscaled
    xs, ys = (x * scales).astype(dtype), (y * y_scales).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for method in ("gram", "svd"):
        r = cca(xs, ys, method=method)
        assert (r.dropped_x, r.dropped_y) == (0, 0), method
        np.testing.assert_allclose(r.rho, ref.rho, atol=tol)
        # the weights absorb the scales: the variates are those of the unscaled data
        signs = np.sign((r.x_variates * ref.x_variates).sum(axis=0))
        np.testing.assert_allclose(r.x_variates, ref.x_variates * signs, atol=100 * tol)
    assert pwcca(x.astype(dtype), ys) == pytest.approx(pwcca(x, y), abs=tol)
    assert mean_cca(xs, ys) == pytest.approx(mean_cca(x, y), abs=tol)


@pytest.mark.parametrize("seed", range(6))
def test_float32_and_float64_drop_the_same(seed):
    """Same data in float32 and float64: the same dropped counts when the correlation matrix
    of the live neurons is well-conditioned (here below ~1e3, the documented limit is 11111),
    with dead neurons (constant, and varying below the rounding of their mean in both dtypes),
    exact duplicates and linear combinations, each at its own scale."""
    rng = np.random.default_rng(seed)
    x, y = related(seed, n=3000, d1=8, d2=6)
    n = x.shape[0]
    noise = rng.standard_normal(n)
    extra = np.column_stack([
        np.full(n, 7.0),                      # constant
        1.0 + 5e-17 * noise,                  # varies by about one float64 ulp of its mean
        np.zeros(n),                          # all zero
        3e3 * x[:, 1],                        # duplicate, rescaled
        1e-3 * (x[:, 2] - 2.0 * x[:, 3]),     # linear combination, tiny scale
    ])
    big = np.hstack([x, extra]) * rng.choice([1e-4, 1e-2, 1.0, 1e2, 1e4], size=x.shape[1] + 5)
    big = big[:, rng.permutation(big.shape[1])]
    r64 = cca(big, y)
    assert (r64.dropped_x, r64.dropped_y) == (5, 0)
    for method in ("gram", "svd"):
        r32 = cca(big.astype(np.float32), y.astype(np.float32), method=method)
        assert (r32.dropped_x, r32.dropped_y) == (r64.dropped_x, r64.dropped_y), method
        assert cca(big, y, method=method).dropped_x == 5
        np.testing.assert_allclose(r32.rho, r64.rho, atol=1e-4)
        np.testing.assert_allclose(r64.rho, cca(x, y).rho, atol=1e-8)


def test_dead_neuron_rule_both_methods_and_torch():
    """A neuron whose spread is below the rounding of its mean is dead (dropped, counted);
    one just above it is kept; the gram and svd methods and torch tensors agree."""
    torch = pytest.importorskip("torch")
    x, y = related(7, d1=5)
    n = x.shape[0]
    rng = np.random.default_rng(8)
    ulp_noise = 1e3 + 3e-14 * rng.standard_normal(n)   # std 3e-14 < eps * 1e3 = 2.2e-13
    above = 1e3 + 1e-11 * x[:, 0] + 1e-11 * rng.standard_normal(n)  # std 1.4e-11 > 2.2e-13
    xd = np.column_stack([x, ulp_noise, above])
    for method in ("gram", "svd"):
        assert cca(xd, y, method=method).dropped_x == 1, method
    assert cca(torch.from_numpy(xd), torch.from_numpy(y)).dropped_x == 1
    # float32: the same neuron at 1e3 + 3e-5 noise (below float32's rounding 1.2e-4) is dead
    x32 = np.column_stack([x, 1e3 + 3e-5 * rng.standard_normal(n)]).astype(np.float32)
    for method in ("gram", "svd"):
        assert cca(x32, y.astype(np.float32), method=method).dropped_x == 1, method


def test_cholesky_shortcut_is_taken_for_badly_scaled_but_independent_neurons():
    """The shortcut's condition bound is on the correlation matrix, so neuron scales 1e-4..1e4
    do not send a well-conditioned input to the eigendecomposition, and both agree."""
    import cca_lib.similarity as sim

    x, y = related(9)
    x = (x * np.geomspace(1e-4, 1e4, x.shape[1])).astype(np.float32)
    g = sim._grams(x, y.astype(np.float32), None)
    w = sim._fast_whitener(g.sxx, g.rtol_x, "x", g.dead_x)
    assert np.all(np.tril(w, -1) == 0)  # upper triangular: the Cholesky route
    np.testing.assert_allclose(w.T @ g.sxx @ w, np.eye(x.shape[1]), atol=1e-10)
    slow = sim._whitener(g.sxx, g.rtol_x, "x", g.dead_x)
    assert slow.shape == w.shape


# ------------------------------------------------- rows 2, 3, 13: scale of the whole input

SCALES = {np.float32: [2.0**-120, 1e-35, 1e-25, 1e-22, 1e-8, 1e8, 1e20, 1e30, 1e35],
          np.float64: [2.0**-1000, 1e-300, 1e-200, 1e-100, 1e-25, 1e80, 1e152, 1e160, 1e300]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaling_an_input_changes_no_measure(dtype):
    """Every measure is invariant to scaling an input; from float32's 1e-35 to 1e35 and
    float64's 1e-300 to 1e300 (also both inputs at once) the answers are the unscaled ones,
    with no overflow or underflow warning: no product over- or underflows."""
    x, y = related(3)
    x, y = x.astype(dtype), y.astype(dtype)
    want = every_measure(x, y)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in SCALES[dtype]:
            s = dtype(s)
            for a, b in ((x * s, y), (x, y * s), (x * s, y * s)):
                got = every_measure(a, b)
                for k in want:
                    assert got[k] == pytest.approx(want[k], abs=tol), (s, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_of_two_scales_give_identical_numbers(dtype):
    """Scaling by a power of two is exact, and so is the internal rescaling: the results are
    bit for bit those of the unscaled inputs."""
    x, y = related(4)
    x, y = x.astype(dtype), y.astype(dtype)
    want = compare(x, y)
    for k in (-90, -31, 17, 60):
        assert compare(np.ldexp(x, k), y) == want
        r, r0 = cca(np.ldexp(x, k), y), cca(x, y)
        np.testing.assert_array_equal(r.rho, r0.rho)
        np.testing.assert_array_equal(r.x_variates, r0.x_variates)
        np.testing.assert_array_equal(r.x_weights, np.ldexp(r0.x_weights, -k))


def test_issue_examples_underflow_and_overflow():
    """The issue's cases: float32 z * 1e-25 against an independent w read as 1.0 everywhere;
    float64 linear CKA went to 0 at 1e80 (debiased at 1e60), NaN in compare at 1e152, and
    compare's CKA was 1.0 at 1e-100 while linear_cka raised."""
    rng = np.random.default_rng(5)
    z, w = (rng.standard_normal((1000, 6)).astype(np.float32) for _ in range(2))
    small = compare(z * np.float32(1e-25), w)
    for k, v in compare(z, w).items():
        assert small[k] == pytest.approx(v, abs=1e-5), k
        assert small[k] < 0.2, k
    x = rng.standard_normal((1000, 5))
    y = x + rng.standard_normal((1000, 5))
    truth = linear_cka(x, y)
    assert 0.4 < truth < 0.6
    assert linear_cka(x * 1e80, y) == pytest.approx(truth, abs=1e-12)
    assert linear_cka(x * 1e60, y * 1e60, debiased=True) == pytest.approx(
        linear_cka(x, y, debiased=True), abs=1e-12)
    assert compare(x * 1e152, y)["linear CKA"] == pytest.approx(truth, abs=1e-12)
    assert compare(x * 1e-100, y)["linear CKA"] == pytest.approx(truth, abs=1e-12)
    assert linear_cka(x * 1e-100, y) == pytest.approx(truth, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compare_has_the_checks_and_values_of_the_single_functions(dtype):
    x, y = related(6)
    x, y = x.astype(dtype), y.astype(dtype)
    for s in (dtype(1e-30), dtype(1.0), dtype(1e30)):
        c = compare(x * s, y)
        assert c["linear CKA"] == linear_cka(x * s, y)
        assert c["mean CCA"] == pytest.approx(mean_cca(x * s, y), abs=1e-12)
        assert c["SVCCA"] == pytest.approx(svcca(x * s, y), abs=1e-12)
        assert c["PWCCA"] == pytest.approx(pwcca(x * s, y), abs=1e-12)
    for f in (compare, linear_cka, lambda a, b: linear_cka(a, b, debiased=True), cca, svcca):
        with pytest.raises(ValueError, match="x has no variance: every neuron is constant"):
            f(np.zeros_like(x), y)
        with pytest.raises(ValueError, match="y has no variance: every neuron is constant"):
            f(x, np.full_like(y, 3.0))


def test_messages_say_what_happened():
    """Tiny float64 inputs are not 'constant'; huge ones get no float32 hint (both simply give
    the answer now); bad values are named as such."""
    x, y = related(10)
    for s in (1e-200, 1e-300, 1e300):
        assert mean_cca(x * s, y) == pytest.approx(mean_cca(x, y), abs=1e-12)
        assert linear_cka(x * s, y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    with pytest.raises(ValueError, match=r"x contains NaN or inf values \(shape \(1500, 10\)\)"):
        cca(np.where(x > 3, np.inf, x), y)
    with pytest.raises(ValueError, match="y has no variance"):
        pwcca(x, np.full_like(y, 1e-300))


def test_torch_inputs_are_rescaled_too(monkeypatch):
    """The device branch (run on CPU tensors declared device tensors) rescales as well."""
    torch = pytest.importorskip("torch")
    import cca_lib._validation as validation
    import cca_lib.similarity as sim

    monkeypatch.setattr(sim, "on_cuda", sim.is_torch)
    monkeypatch.setattr(validation, "on_cuda", validation.is_torch)
    x, y = related(11)
    want = compare(x, y)
    for dtype, s, tol in ((torch.float64, 1e-250, 1e-10), (torch.float64, 1e250, 1e-10),
                          (torch.float32, 1e-30, 1e-5), (torch.float32, 1e30, 1e-5)):
        tx, ty = torch.from_numpy(x).to(dtype) * s, torch.from_numpy(y).to(dtype)
        assert compare(tx, ty) == pytest.approx(want, abs=tol), (dtype, s)
        assert linear_cka(tx, ty, debiased=True) == pytest.approx(
            linear_cka(x, y, debiased=True), abs=tol)
        r = cca(tx, ty)
        np.testing.assert_allclose(r.x_variates.T @ r.x_variates, np.eye(r.rho.size), atol=tol)


# ------------------------------------------------------------------ row 4: masked arrays


@pytest.mark.parametrize("which", ["x", "y"])
def test_masked_arrays_are_refused_naming_the_argument(which):
    x, y = related(12)
    mask = np.zeros(x.shape if which == "x" else y.shape, bool)
    mask[3, 1] = True
    raw = (x if which == "x" else y).copy()
    raw[3, 1] = np.nan  # NaN under the mask: must not be reported as an overflow
    masked = np.ma.masked_array(raw, mask=mask)
    args = (masked, y) if which == "x" else (x, masked)
    fns = (cca, mean_cca, pwcca, svcca, linear_cka, compare, distance,
           lambda a, b: linear_cka(a, b, debiased=True), lambda a, b: cca(a, b, method="svd"))
    for f in fns:
        with pytest.raises(TypeError, match=f"^{which} is a numpy masked array") as info:
            f(*args)
        assert "overflow" not in str(info.value)
    # a mask with nothing masked is refused too: the caller must say what the mask means
    with pytest.raises(TypeError, match="masked array"):
        cca(np.ma.masked_array(x), y)


def test_other_ndarray_subclasses_still_work(tmp_path):
    x, y = related(13)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap)
    assert pwcca(mm, y) == pwcca(x, y)


# ------------------------------------------------------------- row 5: CKA with few samples


def _explicit_cka(x, y, debiased):
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, m = xc @ xc.T, yc @ yc.T
    if not debiased:
        return np.sum(k * m) / (np.linalg.norm(k) * np.linalg.norm(m))

    def hsic(a, b):
        a, b = a.copy(), b.copy()
        np.fill_diagonal(a, 0)
        np.fill_diagonal(b, 0)
        one = np.ones(n)
        return (np.trace(a @ b) + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ a @ b @ one) / (n * (n - 3))

    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


@pytest.mark.parametrize("n", [4, 8, 17, 30])
def test_linear_cka_is_defined_at_few_samples(n):
    """n_samples <= d1 + d2 (here d1 + d2 = 35): CKA is defined and matches the kernel
    formula; the plain estimate warns (biased upward), the debiased one does not."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 20))
    y = x[:, :15] + rng.standard_normal((n, 15))
    with pytest.warns(FewSamplesWarning, match="biased upward"):
        plain = linear_cka(x, y)
    assert plain == pytest.approx(_explicit_cka(x, y, False), abs=1e-12)
    with pytest.warns(FewSamplesWarning):
        assert distance(x, y, "cka") == pytest.approx(1 - plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deb = linear_cka(x, y, debiased=True)
    assert deb == pytest.approx(float(np.clip(_explicit_cka(x, y, True), 0, 1)), abs=1e-10)
    # the CCA family still refuses, and so does compare, which includes it
    for f in (cca, mean_cca, pwcca, svcca, compare):
        with pytest.raises(ValueError, match="trivially 1"):
            f(x, y)


def test_debiased_cka_needs_four_samples():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="debiased CKA needs at least 4 samples, got 3"):
        linear_cka(x, y, debiased=True)
    with pytest.warns(FewSamplesWarning):
        assert 0 <= linear_cka(x, y) <= 1
