"""The RNN training-dynamics chapter's experiment, on a tiny LSTM and the synthetic mirror."""

import numpy as np
import pytest
from _engine_data import activate

from cca_lib.experiments import rnn_dynamics


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(n_layers=2, hidden_size=8, embed_dim=8, batch_size=8, seq_len=12, epochs=3.0,
                lr=1e-2, log_checkpoints=4, tail_checkpoints=2, eval_points=4, probe_seqs=10,
                probe_len=20, threads=1)
    base.update(kw)
    return rnn_dynamics.Config(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="10 x hidden_size"):
        rnn_dynamics.Config(hidden_size=64, probe_seqs=10, probe_len=10)
    with pytest.raises(ValueError, match="n_layers"):
        rnn_dynamics.Config(n_layers=1)
    with pytest.raises(ValueError, match="tail_frac"):
        rnn_dynamics.Config(tail_frac=1.5)
    with pytest.raises(ValueError, match="schedule"):
        rnn_dynamics.Config(schedule="step")


def test_lm_config_adds_a_tail_grid():
    cfg = rnn_dynamics.lm_config(tiny(tail_checkpoints=3, tail_frac=0.5), 100)
    assert cfg.checkpoints == (62, 75, 88)
    assert cfg.hidden_size == 8 and cfg.n_layers == 2 and cfg.eval_every == 25


def test_run_is_deterministic_and_complete(env):
    cfg = tiny()
    a = rnn_dynamics.run(cfg, progress=False)
    b = rnn_dynamics.run(cfg, progress=False)  # from the cache
    assert a.to_frame().equals(b.to_frame())
    frame = a.to_frame()
    assert set(frame["measure"]) == set(rnn_dynamics.MEASURES)
    assert sorted(frame["layer"].unique()) == [1, 2]
    assert a.n_samples == 200
    final = frame[frame["step"] == a.steps[-1]]
    np.testing.assert_allclose(final["distance"], 0.0, atol=1e-6)
    t = a.table("PWCCA")
    assert list(t.index) == list(a.steps) and ((t >= -1e-9) & (t <= 1 + 1e-9)).all().all()
    assert a.intermediate("PWCCA").index.min() > 0
    assert 0.0 <= a.ordered_fraction("PWCCA") <= 1.0
    assert np.isfinite(a.separation("PWCCA"))
    assert set(a.first_below("PWCCA", 0.5).index) == {1, 2}
    assert len(a.spectra) == len(a.steps) * 2 * 8
    assert {"step", "valid_ppl"} <= set(a.history.columns)


def test_separation_index_on_a_constructed_result():
    import pandas as pd

    rows = []
    for step in (0, 1, 10, 100, 1000):
        for layer, scale in ((1, 0.5), (2, 1.0), (3, 1.5)):
            d = 0.0 if step == 1000 else scale * 0.2
            rows.append({"step": step, "epoch": 0.0, "layer": layer, "measure": "PWCCA",
                         "distance": d})
    r = rnn_dynamics.Result(config=rnn_dynamics.Config(), distances=pd.DataFrame(rows),
                            spectra=pd.DataFrame(), history=pd.DataFrame(),
                            steps=(0, 1, 10, 100, 1000), steps_per_epoch=1.0, metrics={},
                            n_samples=0, train_seconds=0.0)
    np.testing.assert_allclose(r.area("PWCCA").to_numpy(), [0.1, 0.2, 0.3])
    assert r.separation("PWCCA") == pytest.approx(1.0)
    assert r.ordered_fraction("PWCCA") == 1.0
    assert r.first_below("PWCCA", 0.15).to_dict() == {1: 0, 2: 1000, 3: 1000}


def test_total_steps_is_the_engine_count(env):
    from cca_lib import training

    cfg = tiny()
    assert rnn_dynamics.total_steps(cfg) == training.total_steps(rnn_dynamics.lm_config(cfg))
    assert rnn_dynamics.train(cfg, progress=False).final_step == rnn_dynamics.total_steps(cfg)
