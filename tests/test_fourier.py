"""Fourier CCA of conv layers (cca_lib.fourier) against the full and the per-position CCA."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cca_lib import FewSamplesWarning, capture, cca
from cca_lib.fourier import fourier_cca, fourier_mean_cca


def _flat(a):
    return a.reshape(a.shape[0], -1)


def _positions(a):
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _shift_closed(m=60, c0=2, h=4, w=4, seed=0):
    """x, y float64 (m*h*w, C, h, w): every circular shift of m random images, through
    circularly padded convolutions and pointwise nonlinearities: the sample covariances are
    exactly invariant to circular translation."""
    torch.manual_seed(seed)
    base = torch.randn(m, c0, h, w, dtype=torch.float64)
    images = torch.cat([torch.roll(base, (dy, dx), (2, 3)) for dy in range(h) for dx in range(w)])
    f = nn.Sequential(nn.Conv2d(c0, 3, 3, padding=1, padding_mode="circular"), nn.ReLU()).double()
    g = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.Tanh()).double()
    with torch.no_grad():
        x = f(images)
        y = g(x)
    return x.numpy(), y.numpy()


def test_translation_invariant_data_gives_the_full_cca_exactly():
    x, y = _shift_closed()
    full = cca(_flat(x), _flat(y), variates=False)
    got = fourier_cca(x, y)
    assert got.rho.shape == full.rho.shape == (4 * 4 * 3,)
    # Exact in exact arithmetic (the cross-frequency covariances are exactly 0 on a
    # shift-closed sample); float64 FFT and CCA rounding is ~1e-13 at these condition numbers,
    # so 1e-9 is a wide margin, while the same method on data that is not translation invariant
    # is off by > 0.05 (next test).
    np.testing.assert_allclose(got.rho, full.rho, atol=1e-9)
    assert got.mean == pytest.approx(full.mean, abs=1e-9)
    assert fourier_mean_cca(x, y) == got.mean
    assert got.size == (4, 4) and got.n_samples == x.shape[0]
    # 4x4 grid: 6 conjugate pairs + 4 self-conjugate frequencies (0 and Nyquist per axis)
    assert len(got.frequencies) == len(got.rho_by_frequency) == 10
    sizes = sorted(len(r) for r in got.rho_by_frequency)
    assert sizes == [3] * 4 + [6] * 6
    # symmetric, and the same answer in float32 to float32 accuracy
    np.testing.assert_allclose(fourier_cca(y, x).rho, got.rho, atol=1e-9)
    np.testing.assert_allclose(fourier_cca(x.astype(np.float32), y.astype(np.float32)).rho,
                               got.rho, atol=1e-4)


_GAINS = {"ramp": np.linspace(0.2, 3.0, 16).reshape(1, 1, 4, 4),  # grows across the image
          "half": np.repeat([[0.0, 0.0, 1.0, 1.0]], 4, 0).reshape(1, 1, 4, 4)}  # left half off


@pytest.mark.parametrize("gain,sign", [("ramp", -1), ("half", 1)])
def test_data_that_is_not_translation_invariant_differs_from_the_full_cca(gain, sign):
    # x: every circular shift of random images (translation invariant); y: x times a gain that
    # depends on position, plus noise: y's statistics depend on position, so frequencies mix
    x, _ = _shift_closed(seed=1)
    y = x * _GAINS[gain] + 0.1 * np.random.default_rng(0).standard_normal(x.shape)
    full = cca(_flat(x), _flat(y), variates=False)
    got = fourier_cca(x, y)
    assert got.rho.shape == full.rho.shape
    # every coefficient is the correlation of two linear combinations of the units: the largest
    # cannot exceed the full CCA's largest
    assert got.rho[0] <= full.rho[0] + 1e-12
    # the cross-frequency covariances the method ignores are large here: coefficients move by
    # more than 0.1 (0.19 and 0.33 on these data), and the mean either way (0.80 vs 0.89 for
    # the ramp, 0.58 vs 0.52 for the half mask)
    assert np.abs(full.rho - got.rho).max() > 0.1
    assert sign * (got.mean - full.mean) > 0.03


def test_agrees_with_positions_only_when_positions_are_uncorrelated():
    # every (input, position) drawn independently from one distribution: translation invariant
    # with flat spectra, so every frequency's CCA estimates the same correlations as the
    # per-position CCA (the positions' covariances are the frequencies' mean, by Parseval)
    rng = np.random.default_rng(0)
    n, h, w = 4000, 4, 4
    z = rng.standard_normal((n, 2, h, w))
    mix = lambda a, m: np.einsum("dc,nchw->ndhw", m, a)  # noqa: E731
    x = mix(z, rng.standard_normal((3, 2))) + 0.5 * rng.standard_normal((n, 3, h, w))
    y = mix(z, rng.standard_normal((3, 2))) + 0.8 * rng.standard_normal((n, 3, h, w))
    pos = cca(_positions(x), _positions(y), variates=False)
    got = fourier_cca(x, y)
    # Sampling error: each block has 4000 samples of <= 6 features (mean CCA's upward bias
    # ~d/n ~ 0.002, spread of each coefficient ~ 1/sqrt(n) ~ 0.016, averaged over 16 frequencies);
    # positions has 64000 samples. 0.02 is > 5 standard errors of the mean.
    assert got.mean == pytest.approx(pos.mean, abs=0.02)
    for r in got.rho_by_frequency:  # each block: the positions' coefficients (pairs twice)
        k = len(r) // 3
        np.testing.assert_allclose(np.sort(r)[::-1], np.repeat(pos.rho, k), atol=0.06)
    # a circular shift by one pixel is a per-frequency phase: 1 at every frequency (the full
    # comparison agrees), yet near 0 position by position
    xs = np.roll(x, 1, axis=3)
    assert fourier_cca(x, xs).mean == pytest.approx(1.0, abs=1e-9)
    assert cca(_flat(x), _flat(xs), variates=False).mean == pytest.approx(1.0, abs=1e-9)
    assert cca(_positions(x), _positions(xs), variates=False).mean < 0.05


def _upsampler(small, large):
    """Real (large x small) matrix of band-limited interpolation: zero-pad the DFT (the
    smaller grid's Nyquist coefficient split between +-small/2) and invert."""
    u = np.zeros((large, small))
    for j in range(small):
        e = np.zeros(small)
        e[j] = 1
        spec = np.fft.fft(e)
        z = np.zeros(large, complex)
        for idx, f in enumerate(np.rint(np.fft.fftfreq(small, 1 / small)).astype(int)):
            if small % 2 == 0 and f == -small // 2:
                z[f % large] += spec[idx] / 2
                z[-f % large] += spec[idx] / 2
            else:
                z[f % large] = spec[idx]
        col = np.fft.ifft(z) * large / small
        assert np.abs(col.imag).max() < 1e-12
        u[:, j] = col.real
    return u


@pytest.mark.parametrize("small,large", [((4, 4), (8, 8)), ((5, 3), (9, 7)), ((4, 5), (6, 8))])
def test_layers_of_different_size_compare_the_frequencies_both_have(small, large):
    # a layer interpolated to a larger grid holds exactly the smaller one's frequencies: cropping
    # its spectrum back must give the same coefficients as comparing the smaller layer itself
    rng = np.random.default_rng(1)
    n = 600
    xs = rng.standard_normal((n, 3, *small))
    y = 0.7 * xs[:, :2] + rng.standard_normal((n, 2, *small))
    uh, uw = _upsampler(small[0], large[0]), _upsampler(small[1], large[1])
    xl = np.einsum("Hh,nchw,Ww->ncHW", uh, xs, uw)
    np.testing.assert_allclose(np.einsum("hH,ncHW,wW->nchw", np.linalg.pinv(uh), xl,
                                         np.linalg.pinv(uw)), xs, atol=1e-10)
    ref = fourier_cca(xs, y)
    for a, b in ((xl, y), (y, xl)):
        got = fourier_cca(a, b)
        assert got.size == small and got.frequencies == ref.frequencies
        np.testing.assert_allclose(got.rho, ref.rho, atol=1e-8)
    # a larger layer with real high frequencies still gives a coefficient set of the small grid
    noisy = xl + 0.5 * rng.standard_normal(xl.shape)
    got = fourier_cca(noisy, y)
    assert got.rho.shape == ref.rho.shape and got.mean < ref.mean


def test_conv_net_layers_through_capture_raw():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2,
                                                                           padding=1), nn.ReLU())
    acts = capture.capture(net, torch.randn(300, 1, 8, 8), ["1", "3"], mode="raw")
    assert acts["1"].shape == (300, 4, 8, 8) and acts["3"].shape == (300, 6, 4, 4)
    got = fourier_cca(acts["1"], acts["3"])
    # h * w * min(C1, C2) = 64 coefficients, plus some at the 4x4 grid's Nyquist frequencies,
    # where the 8x8 layer has two aliases of each coefficient (see the module doc)
    assert got.size == (4, 4) and got.rho.shape == (sum(map(len, got.rho_by_frequency)),)
    assert got.rho.shape[0] > 4 * 4 * 4
    assert 0 < got.mean < 1


def test_bad_inputs():
    x, y = _shift_closed(m=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        fourier_cca(_flat(x), y)
    with pytest.raises(ValueError, match="same inputs"):
        fourier_cca(x, y[:-1])
    with pytest.raises(TypeError, match="float32 or float64"):
        fourier_cca(x.astype(np.float16), y)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fourier_cca(bad, y)
    with pytest.raises(ValueError, match="n_samples"):  # 10 inputs <= 6 + 8 block features
        fourier_cca(x[:10], y[:10])
    with warnings.catch_warnings(record=True) as seen:  # 32 inputs < 5 * 8: warned once
        warnings.simplefilter("always")
        fourier_cca(x, y)
    assert [w.category for w in seen] == [FewSamplesWarning]


def test_rounding_level_features_are_dropped_whatever_a_channel_s_scale():
    # the imaginary parts that an interpolated layer holds only to rounding must not become
    # features after the scale-free rank rule standardizes them; scaling one channel by 1e-6
    # (an invertible map) must change nothing
    rng = np.random.default_rng(3)
    n = 500
    xs = rng.standard_normal((n, 3, 4, 4))
    y = 0.7 * xs[:, :2] + rng.standard_normal((n, 2, 4, 4))
    uh = _upsampler(4, 8)
    xl = np.einsum("Hh,nchw,Ww->ncHW", uh, xs, uh)
    ref = fourier_cca(xs, y)
    scaled = xl.copy()
    scaled[:, 1] *= 1e-6
    for a in (xl, scaled):
        got = fourier_cca(a, y)
        np.testing.assert_allclose(got.rho, ref.rho, atol=1e-8)
        assert got.dropped_x > ref.dropped_x  # the rounding-level aliases, counted
