"""The learning-rate chapter: cluster statistics against known answers, and a tiny sweep."""

import numpy as np
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib.experiments import learning_rate as lr_exp


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_adjusted_rand_index_known_values():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert lr_exp.adjusted_rand_index(a, a) == pytest.approx(1.0)
    assert lr_exp.adjusted_rand_index(a, np.array([5, 5, 7, 7, 9, 9])) == pytest.approx(1.0)
    # a textbook example: ARI of these two partitions is 0.24242...
    x = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([0, 0, 1, 1, 2, 2])
    assert lr_exp.adjusted_rand_index(x, y) == pytest.approx(0.2424242424)
    rng = np.random.default_rng(0)
    vals = [lr_exp.adjusted_rand_index(rng.integers(0, 4, 200), rng.integers(0, 4, 200))
            for _ in range(20)]
    assert abs(np.mean(vals)) < 0.02
    with pytest.raises(ValueError):
        lr_exp.adjusted_rand_index(a, a[:-1])


def test_silhouette_matches_hand_computation():
    pts = np.array([0.0, 1.0, 10.0, 11.0, 12.0])
    dist = np.abs(pts[:, None] - pts[None, :])
    labels = np.array([1, 1, 2, 2, 2])
    # point 0: a = 1, b = mean(10, 11, 12) = 11 -> 10/11
    s = [(11 - 1) / 11, (10 - 1) / 10, (9.5 - 1.5) / 9.5, (10.5 - 1) / 10.5, (11.5 - 1.5) / 11.5]
    assert lr_exp.silhouette(dist, labels) == pytest.approx(np.mean(s))
    # a singleton cluster scores 0 for its point
    s2 = [0.0, -8 / 9, -7.5 / 9, 4.5 / 5.5, 5.5 / 6.5]
    assert lr_exp.silhouette(dist, np.array([1, 2, 2, 3, 3])) == pytest.approx(np.mean(s2))
    with pytest.raises(ValueError, match="clusters"):
        lr_exp.silhouette(dist, np.ones(5))


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
