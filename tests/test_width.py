"""The width chapter's experiment: config checks and a tiny run on the synthetic mirror."""

import numpy as np
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib.experiments import width


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(widths=(2, 3, 4), n_seeds=2, layers=("conv4", "logits"), n_features=4,
                n_subsets=2, train_size=N_TRAIN, epochs=2.0, probe_split="train",
                probe_size=100, seed=3)
    base.update(kw)
    return width.Config(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="widths"):
        width.Config(widths=(8, 16))
    with pytest.raises(ValueError, match="n_seeds"):
        width.Config(n_seeds=1)
    with pytest.raises(ValueError, match="exceeds"):
        width.Config(widths=(4, 8, 16), layers=("conv3",), n_features=16)
    with pytest.raises(ValueError, match="layers"):
        width.Config(layers=("fc7",))
    with pytest.raises(ValueError, match="probe_size"):
        width.Config(probe_size=100)
    with pytest.raises(ValueError, match="probe_split"):
        width.Config(probe_split="valid")
    assert width.Config().features_compared("logits") == 10


def test_tiny_run_is_deterministic_and_complete(env):
    cfg = tiny()
    a = width.run(cfg, progress=False)
    b = width.run(cfg, progress=False)
    pd_equal = a.to_frame().equals(b.to_frame())
    assert pd_equal
    frame = a.to_frame()
    # one pair per width (2 seeds), 2 layers, 2 states
    assert len(frame) == 3 * 1 * 2 * 2
    assert set(frame["state"]) == {"trained", "init"}
    assert np.all((frame["distance"] >= 0) & (frame["distance"] <= 1))
    assert len(a.nets) == 6 and a.nets["test_acc"].between(0, 1).all()
    summary = a.summary()
    assert list(summary.index) == [2, 3, 4]
    assert {"test acc", "conv4 trained", "conv4 init", "logits trained"} <= set(summary.columns)
    trend = a.trend()
    assert trend.shape[0] == 4 and trend["p"].between(0, 1).all()


def test_subset_seeds_are_fixed_per_net_and_draw():
    cfg = width.Config()
    s = width._subset_seed(cfg, 8, 0, 1, 0)
    assert s == width._subset_seed(cfg, 8, 0, 1, 0)
    assert len({width._subset_seed(cfg, 8, 0, n, r) for n in range(3) for r in range(3)}) == 9
