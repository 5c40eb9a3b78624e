"""Chapter 1's experiment: the toy construction and its result."""

import numpy as np
import pytest

from cca_lib.experiments import signal_noise


def test_config_validation():
    with pytest.raises(ValueError, match="signal_dims"):
        signal_noise.Config(n_neurons=10, signal_dims=(11,))
    with pytest.raises(ValueError, match="n_points"):
        signal_noise.Config(n_neurons=100, n_points=150, signal_dims=(10,), spectrum_dims=(10,))
    with pytest.raises(ValueError, match="spectrum_dims"):
        signal_noise.Config(signal_dims=(20,), spectrum_dims=(50,))


def test_pair_shares_exactly_k_dims():
    cfg = signal_noise.Config(n_neurons=30, n_points=600, signal_dims=(7,), spectrum_dims=(7,))
    x, y = signal_noise.make_pair(7, cfg, np.random.default_rng(1))
    assert x.shape == y.shape == (600, 30)
    np.testing.assert_array_equal(x[:, 7:].std(0) < 0.2, True)


def test_run_small_config_is_deterministic_and_separates_measures():
    cfg = signal_noise.Config(n_neurons=30, n_points=900, signal_dims=(3, 27), n_repeats=2,
                              spectrum_dims=(3,), noise_sweep=(0.003, 1.0), seed=5)
    a = signal_noise.run(cfg, progress=False)
    b = signal_noise.run(cfg, progress=False)
    assert a.to_frame().equals(b.to_frame())
    assert a.ones == {3: 3.0, 27: 27.0}
    means = a.summary()
    assert list(means.columns) == list(signal_noise.MEASURES)
    low = means.index.min()
    # mean CCA tracks the signal fraction; PWCCA stays above it
    assert means.loc[low, "mean CCA"] < 0.35
    assert means.loc[low, "PWCCA"] > means.loc[low, "mean CCA"] + 0.05
    assert len(a.spectra) == 2 * 30
    # PWCCA's robustness depends on the noise level: near 1 for very weak noise
    noise = a.noise[a.noise.measure == "PWCCA"].groupby("noise_std")["similarity"].mean()
    assert noise[0.003] > 0.9 > noise[1.0]


def test_every_k_is_drawn_under_both_readings_of_the_noise():
    assert signal_noise.Config().noise_stds == pytest.approx((0.1, 0.1 ** 0.5))
    cfg = signal_noise.Config(n_neurons=30, n_points=900, signal_dims=(3, 27), n_repeats=2,
                              spectrum_dims=(3,), noise_stds=(0.1, 0.5), noise_sweep=(1.0,),
                              seed=2)
    a = signal_noise.run(cfg, progress=False)
    assert set(a.similarities["noise_std"]) == {0.1, 0.5}
    assert len(a.similarities) == 2 * 2 * 2 * len(signal_noise.MEASURES)
    low = 3 / 30
    # stronger noise gives the noise directions more weight: PWCCA lower at the smallest k
    assert a.summary(0.5).loc[low, "PWCCA"] < a.summary(0.1).loc[low, "PWCCA"]
    assert set(a.noise["noise_std"]) == {0.1, 0.5, 1.0}
    floors = a.floors.set_index(["noise_std", "signal_dims", "measure"])["floor"]
    assert set(a.floors["signal_dims"]) == {3, 27}
    assert 0 < floors[(0.1, 3, "mean CCA")] < a.summary(0.1).loc[low, "mean CCA"]
    assert 0 < floors[(0.1, 3, "linear CKA")] < 0.5
    mean, lo, hi = signal_noise.interval(a.draws(0.1, "PWCCA").loc[low], seed=0)
    assert lo <= mean <= hi
    with pytest.raises(ValueError, match="noise_sweep repeats"):
        signal_noise.Config(noise_sweep=(0.1,))


def test_signal_weight_is_pwccas_weight_on_the_unit_coefficients():
    cfg = signal_noise.Config(n_neurons=30, n_points=900, signal_dims=(3, 27), n_repeats=2,
                              spectrum_dims=(3,), noise_stds=(0.1, 0.5), noise_sweep=(0.003,),
                              seed=4)
    x, y = signal_noise.make_pair(3, cfg, np.random.default_rng(0), 0.1)
    w = signal_noise.signal_weight(x, y)
    # PWCCA = w * 1 + (1 - w) * (weighted noise coefficients), which lie in [0, 1)
    from cca_lib import pwcca
    assert w <= pwcca(x, y) <= 1
    assert 0 < w < 1
    a = signal_noise.run(cfg, progress=False)
    share = a.weights.groupby("noise_std")["signal_weight"].mean()
    assert set(share.index) == {0.003, 0.1, 0.5}
    # more noise, less weight on the signal; very weak noise leaves the signal nearly all of it
    assert share[0.5] < share[0.1] < share[0.003] and share[0.003] > 0.9
    # the scorecard's number gives mean CCA and the floor beside PWCCA
    (claim,) = signal_noise.check(a)
    assert "mean CCA" in claim.ours and "floor" in claim.ours and "PWCCA" in claim.ours
