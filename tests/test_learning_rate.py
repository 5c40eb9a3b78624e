"""The learning-rate chapter: its config, and a tiny sweep (the cluster statistics are in
test_analysis.py)."""

import numpy as np
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib.experiments import learning_rate as lr_exp


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_config_validation_and_own_seeds():
    with pytest.raises(ValueError, match="learning_rates"):
        lr_exp.Config(learning_rates=(0.1,))
    with pytest.raises(ValueError, match="learning_rates"):
        lr_exp.Config(learning_rates=(0.1, 0.1))
    with pytest.raises(ValueError, match="n_seeds"):
        lr_exp.Config(n_seeds=1)
    with pytest.raises(ValueError, match="layer"):
        lr_exp.Config(layer="fc")
    with pytest.raises(ValueError, match="max_clusters"):
        lr_exp.Config(learning_rates=(0.1, 0.2), n_seeds=2, max_clusters=4)
    cfgs = lr_exp.Config().train_configs()
    assert len({c.seed for c in cfgs}) == len(cfgs)  # every net its own seed


def test_tiny_sweep_is_deterministic(env):
    cfg = lr_exp.Config(learning_rates=(0.01, 0.1, 0.5), n_seeds=2, width=2, train_size=N_TRAIN,
                        epochs=2.0, layer="conv4", probe_split="train", probe_size=100,
                        max_clusters=4, seed=7)
    a = lr_exp.run(cfg, progress=False)
    b = lr_exp.run(cfg, progress=False)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert a.distances.shape == (6, 6)
    np.testing.assert_allclose(a.distances, a.distances.T)
    assert np.all(np.diag(a.distances) == 0)
    assert 2 <= a.n_clusters <= 4 and a.n_clusters in a.silhouettes
    assert len(a.to_frame()) == 15
    assert a.cluster_table()["nets"].sum() == 6
    assert list(a.lr_table().index) == [0.01, 0.1, 0.5]
    assert -1 <= a.spearman <= 1 and 0 <= a.lr_consistent <= 1
