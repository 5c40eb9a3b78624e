"""Chapter 'cnn_dynamics': canonical variates, config checks and a tiny end-to-end run."""

import numpy as np
import pandas as pd
import pytest

from cca_lib import similarity
from cca_lib.experiments import cnn_dynamics
from tests._engine_data import N_TEST, N_TRAIN, activate


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_canonical_variates_match_cca():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 3))
    x = np.hstack([z, rng.standard_normal((500, 5))]) @ rng.standard_normal((8, 8))
    y = np.hstack([z @ rng.standard_normal((3, 3)), rng.standard_normal((500, 3))])
    rho, h = cnn_dynamics.canonical_variates(x, y)
    np.testing.assert_allclose(rho, similarity.cca(x, y).rho, atol=1e-8)
    np.testing.assert_allclose(h.T @ h, np.eye(h.shape[1]), atol=1e-10)
    np.testing.assert_allclose(h.mean(0), 0, atol=1e-12)
    # the top-3 variates are the shared signal: perfectly correlated with x
    assert similarity.mean_cca(h[:, :3], x) > 1 - 1e-8
    assert similarity.mean_cca(h[:, -2:], x) < 0.3


def test_canonical_variates_drop_dead_neurons():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 4))
    y = np.hstack([x[:, :2], np.ones((200, 1)), x[:, :1]])  # a dead and a duplicate neuron
    rho, h = cnn_dynamics.canonical_variates(x, y)
    assert h.shape == (200, 2) and np.isfinite(rho).all()
    np.testing.assert_allclose(rho, 1, atol=1e-10)


def test_conv_step_is_robust_to_one_late_dip():
    hist = pd.DataFrame({"step": [0, 1, 2, 3, 4, 5, 6],
                         "test_acc": [0.1, 0.5, 0.8, 0.85, 0.85, 0.83, 0.85]})
    assert cnn_dynamics._conv_step(hist, 0.01, 1) == (6, 0.85)
    step, final = cnn_dynamics._conv_step(hist, 0.015, 3)
    assert step == 4 and abs(final - (0.85 + 0.83 + 0.85) / 3) < 1e-12


def test_config_validation():
    with pytest.raises(ValueError, match="early_frac"):
        cnn_dynamics.Config(early_frac=0.6)
    with pytest.raises(ValueError, match="sb_fraction"):
        cnn_dynamics.Config(sb_fraction=0.7)
    with pytest.raises(ValueError, match="acc_window"):
        cnn_dynamics.Config(acc_window=0)


def test_run_tiny(env):
    cfg = cnn_dynamics.Config(width=2, train_size=N_TRAIN, epochs=8.0, log_checkpoints=4,
                              n_linear=3, eval_every=2, eval_size=N_TEST, n_probe=N_TEST,
                              early_frac=0.2)
    res = cnn_dynamics.run(cfg, progress=False)
    T = res.final_step
    assert res.steps[0] == 0 and T == 16 and res.half_step == 8
    assert res.early_step in res.steps and res.conv_ckpt in res.steps
    assert res.conv_step <= res.conv_ckpt or res.conv_ckpt == T
    # CCA of L(T) with itself: all coefficients 1, distance 0
    fin = res.spectra[res.spectra["step"] == T]
    np.testing.assert_allclose(fin["rho"], 1, atol=1e-3)  # float32 activations of a tiny net
    conv = res.to_frame()
    np.testing.assert_allclose(conv[conv["step"] == T]["distance"], 0, atol=1e-3)
    # S and B are linear functions of L(T/2): similarity 1 there
    half = res.sb[res.sb["step"] == res.half_step]
    np.testing.assert_allclose(half["similarity"], 1, atol=1e-3)
    assert set(res.sb_summary().index.get_level_values("subset")) == {"S", "B"}
    assert list(res.unconverged().index) == list(res.layers)
    for plot in (cnn_dynamics.plot_accuracy, cnn_dynamics.plot_spectra, cnn_dynamics.plot_sb,
                 cnn_dynamics.plot_convergence):
        assert plot(res).axes


def test_linear_checkpoints_follow_the_engine_step_count(env):
    from cca_lib import training

    cfg = cnn_dynamics.Config(width=2, train_size=N_TRAIN, epochs=3.0, n_linear=4,
                              eval_size=N_TEST, n_probe=N_TEST)
    tc = cfg.train_config()
    total = training.total_steps(tc)
    assert total == int(np.ceil(3.0 * (N_TRAIN // cnn_dynamics.BATCH_SIZE)))
    assert tc.checkpoints == tuple(int(s) for s in np.linspace(0, total, 6)[1:-1])
    assert tc.batch_size == cnn_dynamics.BATCH_SIZE
