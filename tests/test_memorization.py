"""Chapter 'memorization': config checks and a tiny end-to-end run on the synthetic mirror."""

import numpy as np
import pytest

from cca_lib.experiments import memorization
from tests._engine_data import N_TEST, N_TRAIN, activate


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(width=2, n_nets=2, train_size=N_TRAIN, epochs=3.0, batch_size=32,
                probe_train=N_TRAIN, probe_test=N_TEST, target_train_acc=0.05)
    base.update(kw)
    return memorization.Config(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="n_nets"):
        memorization.Config(n_nets=1)
    with pytest.raises(ValueError, match="probe_train"):
        memorization.Config(train_size=1000, probe_train=2000)
    with pytest.raises(ValueError, match="method"):
        memorization.Config(method="cosine")
    with pytest.raises(ValueError, match="labels"):
        memorization.Config().train_config("noisy", 0)


def test_groups_differ_only_in_labels_and_seed():
    cfg = memorization.Config(n_nets=3, label_seed=7, seed=10)
    true = [cfg.train_config("true", i) for i in range(3)]
    rand = [cfg.train_config("random", i) for i in range(3)]
    seeds = [c.seed for c in true + rand]
    assert len(set(seeds)) == 6  # every net its own initialization
    assert {c.label_seed for c in true} == {None} and {c.label_seed for c in rand} == {7}
    def strip(c):
        return {k: v for k, v in vars(c).items() if k not in ("seed", "label_seed")}

    assert all(strip(c) == strip(true[0]) for c in true + rand)


def test_run_tiny(env):
    cfg = tiny()
    res = memorization.run(cfg, progress=False)
    assert len(res.nets) == 4 and set(res.nets["group"]) == {"generalizing", "memorizing"}
    frame = res.to_frame()
    n_layers = len(res.layers)
    # per layer and probe: 1 generalizing pair, 1 memorizing pair, 4 inter pairs
    assert len(frame) == 2 * n_layers * 6
    assert set(frame["pair"]) == set(memorization.PAIRS)
    assert np.isfinite(frame["distance"]).all()
    assert frame["distance"].between(-1e-9, 1 + 1e-9).all()
    means = res.means("train")
    assert list(means.index) == list(res.layers) and list(means.columns) == list(memorization.PAIRS)
    again = memorization.run(cfg, progress=False)  # cached nets, same numbers
    assert again.to_frame().equals(frame)
    fig = memorization.plot_distances(res)
    assert len(fig.axes) == 2
