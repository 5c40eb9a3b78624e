"""RBF CKA: the blocked computation against a direct n x n one, invariances and input checks."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from cca_lib import linear_cka, rbf_cka, rbf_cka_matrix
from cca_lib.kernel_cka import MAX_SAMPLES


def _direct(x, y, sigma_frac=0.4):
    """RBF CKA with full n x n kernels, distances by scipy (independent of the blocked code)."""
    def centred_kernel(a):
        d = pdist(np.asarray(a, dtype=np.float64))
        sigma = sigma_frac * np.median(d)
        k = np.exp(-squareform(d) ** 2 / (2 * sigma**2))
        h = np.eye(len(a)) - 1.0 / len(a)
        return h @ k @ h

    kx, ky = centred_kernel(x), centred_kernel(y)
    return float(np.sum(kx * ky) / (np.linalg.norm(kx) * np.linalg.norm(ky)))


def _pair(n=60, d1=5, d2=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1))
    y = np.tanh(x @ rng.standard_normal((d1, d2))) + 0.3 * rng.standard_normal((n, d2))
    return x, y


@pytest.mark.parametrize("block", [None, 1, 7, 60, 1000])
@pytest.mark.parametrize("sigma_frac", [0.2, 0.4, 1.0])
def test_blocked_equals_direct(block, sigma_frac):
    x, y = _pair()
    assert rbf_cka(x, y, sigma_frac=sigma_frac, block=block) == pytest.approx(
        _direct(x, y, sigma_frac), abs=1e-12)


def test_odd_sizes_and_float32_and_torch():
    x, y = _pair(n=37, d1=1, d2=12, seed=3)
    ref = _direct(x, y)
    assert rbf_cka(x, y, block=5) == pytest.approx(ref, abs=1e-12)
    assert rbf_cka(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(ref, abs=1e-5)
    torch = pytest.importorskip("torch")
    assert rbf_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(ref, abs=1e-12)


def test_matrix_matches_pairs_and_is_symmetric():
    x, y = _pair(seed=1)
    z = np.random.default_rng(9).standard_normal((60, 3))
    m = rbf_cka_matrix([x, y, z], block=8)
    assert m.shape == (3, 3) and np.allclose(m, m.T) and np.all(np.diag(m) == 1.0)
    for (i, a), (j, b) in [((0, x), (1, y)), ((0, x), (2, z)), ((1, y), (2, z))]:
        assert m[i, j] == pytest.approx(_direct(a, b), abs=1e-12)


def test_identity_invariances_and_related_beats_unrelated():
    x, y = _pair(n=80, seed=2)
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((7, 7)))
    base = rbf_cka(x, y)
    assert rbf_cka(3.5 * x + 2.0, y @ q - 1.0) == pytest.approx(base, abs=1e-10)
    assert rbf_cka(y, x) == pytest.approx(base, abs=1e-12)
    unrelated = rbf_cka(x, np.random.default_rng(5).standard_normal((80, 7)))
    assert base > unrelated + 0.1
    # not invariant to a general invertible map (unlike CCA)
    stretch = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 30.0])
    assert abs(rbf_cka(x, y @ stretch) - base) > 1e-3


def test_wide_bandwidth_approaches_linear_cka():
    x, y = _pair(n=50, seed=6)
    assert rbf_cka(x, y, sigma_frac=1e3) == pytest.approx(linear_cka(x, y), abs=1e-5)


def test_few_samples_allowed_without_warning():
    x, y = _pair(n=6, d1=10, d2=10, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rbf_cka(x, y) == pytest.approx(_direct(x, y), abs=1e-12)


@pytest.mark.parametrize(("x", "y", "error", "match"), [
    (np.ones((10, 3), dtype=int), np.ones((10, 3)), TypeError, "x must have dtype float"),
    (np.zeros((10, 3)), np.zeros((9, 3)), ValueError, "x has 10 samples but y has 9"),
    (np.zeros(10), np.zeros((10, 3)), ValueError, r"x must be 2-D .* got shape \(10,\)"),
    (np.zeros((10, 3)), np.full((10, 3), np.nan), ValueError, "y contains NaN"),
    ([[1.0, 2.0]], np.zeros((1, 2)), TypeError, "x must be a numpy array"),
    (np.zeros((1, 3)), np.zeros((1, 3)), ValueError, "at least 2 samples"),
])
def test_bad_inputs_are_refused_with_the_usual_messages(x, y, error, match):
    with pytest.raises(error, match=match):
        rbf_cka(x, y)


def test_constant_input_and_bad_options_are_refused():
    x, _ = _pair()
    with pytest.raises(ValueError, match="y has no spread"):
        rbf_cka(x, np.ones((60, 4)))
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma_frac must be a finite number > 0"):
            rbf_cka(x, x, sigma_frac=bad)
    with pytest.raises(TypeError, match="sigma_frac"):
        rbf_cka(x, x, sigma_frac="0.4")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="block must be None or an int >= 1"):
            rbf_cka(x, x, block=bad)
    with pytest.raises(TypeError, match="reps must be a sequence"):
        rbf_cka_matrix(x)
    with pytest.raises(ValueError, match="at least one"):
        rbf_cka_matrix([])
    with pytest.raises(ValueError, match=r"reps\[1\] has 59 samples but reps\[0\] has 60"):
        rbf_cka_matrix([x, x[:59]])
    with pytest.raises(TypeError, match=r"reps\[0\] must have dtype float"):
        rbf_cka_matrix([x.astype(int)])
    big = np.zeros((MAX_SAMPLES + 1, 1))
    big[:, 0] = np.arange(MAX_SAMPLES + 1)
    with pytest.raises(ValueError, match="exceeds MAX_SAMPLES"):
        rbf_cka(big, big)
