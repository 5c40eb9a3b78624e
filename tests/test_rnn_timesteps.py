"""The across-timesteps chapter's experiment: the toy RNN (exact), and a tiny LSTM run."""

import numpy as np
import pytest
from _engine_data import activate

from cca_lib import analysis
from cca_lib.experiments import rnn_dynamics, rnn_timesteps
from cca_lib.similarity import distance


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_config_validation():
    with pytest.raises(ValueError, match="a = 0"):
        rnn_timesteps.Config(toy_blend=(1.0,))
    with pytest.raises(ValueError, match="late_prefix"):
        rnn_timesteps.Config(early_prefix=10, late_prefix=5)
    with pytest.raises(ValueError, match="toy_samples"):
        rnn_timesteps.Config(toy_dim=64, toy_samples=100)
    with pytest.raises(TypeError, match="training must be an rnn_dynamics.Config"):
        rnn_timesteps.Config(training={"hidden_size": 8})


def test_linear_toy_rnn_is_equivalent_at_every_step_for_cca_only():
    h = rnn_timesteps.toy_states(16, 400, 10, 0.0, seed=3)
    assert h.shape == (400, 10, 16)
    for j in range(9):
        assert distance(h[:, -1], h[:, j], method="pwcca") < 1e-8
        assert distance(h[:, -1], h[:, j], method="mean_cca") < 1e-8
    cos = analysis.reference_distances(h[:, -1], h[:, 0])["cosine"]
    assert cos > 0.1
    blended = rnn_timesteps.toy_states(16, 400, 10, 2.0, seed=3)
    assert distance(blended[:, -1], blended[:, 0], method="pwcca") > 1e-4


def test_repeated_probes_shape_and_content():
    import torch

    cfg = rnn_timesteps.Config(training=rnn_dynamics.Config(hidden_size=8, probe_seqs=10,
                                                            probe_len=10),
                               window=5, repeat_contexts=100, early_prefix=2, late_prefix=7)
    valid = torch.arange(500)
    ids = rnn_timesteps.repeated_probes(cfg, valid, token=9, prefix=7)
    assert ids.shape == (100, 12)
    assert (ids[:, 7:] == 9).all()
    assert (ids[:, 1:7] - ids[:, :6] == 1).all()  # consecutive text before the repeats


def test_run_tiny_lstm(env):
    training = rnn_dynamics.Config(n_layers=2, hidden_size=8, embed_dim=8, batch_size=8,
                                   seq_len=12, epochs=2.0, lr=1e-2, log_checkpoints=3,
                                   tail_checkpoints=1, eval_points=2, probe_seqs=10,
                                   probe_len=20, threads=1, n_seeds=2)
    cfg = rnn_timesteps.Config(training=training, window=5, n_streams=1, toy_dim=4,
                               toy_samples=100, toy_blend=(0.0, 1.0), repeat_contexts=100,
                               early_prefix=2, late_prefix=20)
    a = rnn_timesteps.run(cfg, progress=False)
    b = rnn_timesteps.run(cfg, progress=False)
    assert a.to_frame().equals(b.to_frame())
    assert a.seeds == (0, 1)
    pw = a.curve("PWCCA", seed=1)
    assert pw.shape == (5, 2)
    np.testing.assert_allclose(pw.loc[4], 0.0, atol=1e-6)
    assert not np.allclose(a.curve("PWCCA", seed=0).to_numpy(), pw.to_numpy())
    assert set(a.curves["measure"]) == set(rnn_timesteps.MEASURES)
    assert a.toy_curve("PWCCA")[0.0].abs().max() < 1e-8
    assert set(a.floors["floor"]) == {"permuted rows", "disjoint halves"}
    assert set(a.floors["measure"]) == set(rnn_timesteps.FLOOR_MEASURES)
    assert a.floor("PWCCA", seed=1).between(0, 1).all()
    assert set(a.onset(seed=1).index) == {1, 2}
    assert set(a.repeats["context"]) == {"early", "late"}
    assert set(a.repeats["seed"]) == {0, 1}
    assert list(a.nets["seed"]) == [0, 1]
    (claim,) = rnn_timesteps.check(a)
    assert claim.id == "C9" and claim.cka_agrees in (True, False)


def test_timesteps_reuse_the_dynamics_runs(env):
    """The timesteps chapter trains nothing of its own: it loads the dynamics chapter's runs."""
    from cca_lib import training as engine

    training = rnn_dynamics.Config(n_layers=2, hidden_size=8, embed_dim=8, batch_size=8,
                                   seq_len=12, epochs=1.0, lr=1e-2, log_checkpoints=2,
                                   tail_checkpoints=0, eval_points=2, probe_seqs=10,
                                   probe_len=20, threads=1, n_seeds=2)
    runs = rnn_dynamics.train_all(training, progress=False)
    keys = {r.key for r in runs}
    assert len(keys) == 2
    seen = []
    original = engine.train

    def spy(config, **kw):
        result = original(config, **kw)
        seen.append((engine.run_key(config), result.seconds))
        return result

    import cca_lib.training
    cca_lib.training.train = spy
    try:
        again = rnn_dynamics.train_all(training, progress=False)
    finally:
        cca_lib.training.train = original
    assert {k for k, _ in seen} == keys
    assert [r.seconds for r in again] == [r.seconds for r in runs]  # loaded, not retrained


def _tiny_run():
    training = rnn_dynamics.Config(n_layers=3, hidden_size=8, embed_dim=8, batch_size=8,
                                   seq_len=12, epochs=2.0, lr=1e-2, log_checkpoints=3,
                                   tail_checkpoints=1, eval_points=2, probe_seqs=10,
                                   probe_len=20, threads=1, n_seeds=2)
    cfg = rnn_timesteps.Config(training=training, window=5, n_streams=1, toy_dim=4,
                               toy_samples=100, toy_blend=(0.0, 0.5, 1.0, 2.0),
                               repeat_contexts=100, early_prefix=2, late_prefix=20)
    return rnn_timesteps.run(cfg, progress=False)


def test_figures_fit_the_column_and_have_no_near_white_lines(env):
    from test_rnn_dynamics import assert_fits_the_column

    a = _tiny_run()
    for fig in (rnn_timesteps.plot_toy(a), rnn_timesteps.plot_curves(a, "trained"),
                rnn_timesteps.plot_curves(a, "untrained"), rnn_timesteps.plot_repeats(a)):
        assert_fits_the_column(fig)
    # the linear toy (a = 0) has the darkest line, not a near-white one
    blends = rnn_timesteps.blend_palette([2.0, 0.0, 1.0, 0.5])
    assert list(blends) == [0.0, 0.5, 1.0, 2.0] and len(set(blends.values())) == 4


def test_curve_table_fits_the_column_and_is_complete(env):
    a = _tiny_run()
    t = rnn_timesteps.curve_table(a, "untrained")
    assert list(t.index) == [f"j = {j}" for j in range(5)] + [
        "floor: disjoint halves", "floor: permuted rows"]
    assert t.shape[1] == 2 * 3 and list(t.columns.get_level_values(0)[:3]) == ["PWCCA"] * 3
    mean = np.mean([a.curve("PWCCA", "untrained", seed=s).loc[1, 2] for s in a.seeds])
    assert t.loc["j = 1", ("PWCCA", 2)] == pytest.approx(mean)
    floor = np.mean([a.floor("linear CKA", "untrained", seed=s)[3] for s in a.seeds])
    assert t.loc["floor: permuted rows", ("linear CKA", 3)] == pytest.approx(floor)
    with pytest.raises(ValueError, match="measures"):
        rnn_timesteps.curve_table(a, measures=("cosine",))
