"""The width chapter's experiment: config checks and a tiny run on the synthetic mirror."""

import numpy as np
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib.experiments import width


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def assert_fits_the_column(fig):
    """Drawn no wider than the book's column, with no text under plotting.MIN_FONT_PX there."""
    from cca_lib import plotting

    assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN + 1e-9
    points, text = plotting.smallest_text(fig)
    assert points * fig.dpi / 72 >= plotting.MIN_FONT_PX, (points, text)


def tiny(**kw):
    base = dict(widths=(2, 3, 4), n_seeds=3, layers=("conv4", "logits"), n_features=4,
                n_subsets=2, train_size=N_TRAIN, epochs=2.0, probe_split="train",
                probe_size=100, seed=3)
    base.update(kw)
    return width.Config(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="widths"):
        width.Config(widths=(8, 16))
    # the quick profile spans at least 4x, the full one at least 8x
    assert max(width.Config().widths) / min(width.Config().widths) >= 4
    from pathlib import Path

    from cca_lib import book

    full = width.Config.from_params(book.load_params(Path(__file__).parents[1], "full", "width"))
    assert max(full.widths) / min(full.widths) >= 8
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
    # three pairs per width (3 seeds), 2 layers, 2 states
    assert len(frame) == 3 * 3 * 2 * 2
    assert set(frame["state"]) == {"trained", "init"}
    assert np.all((frame["distance"] >= 0) & (frame["distance"] <= 1))
    assert np.all((frame["cka"] >= 0) & (frame["cka"] <= 1))
    assert len(a.nets) == 9 and a.nets["test_acc"].between(0, 1).all()
    assert set(a.nets.columns) >= {"trained", "trained_rule"}
    assert len(a.floors) == 2 * 2 and a.floors["floor"].between(0, 1).all()
    summary = a.summary()
    assert list(summary.index) == [2, 3, 4]
    assert {"test acc", "conv4 trained", "conv4 init", "logits trained"} <= set(summary.columns)
    trend = a.trend()
    assert list(trend.index) == ["conv4", "logits"] and trend["p"].between(0, 1).all()
    for name in ("trained slope", "init slope", "slope difference", "r"):
        assert (trend[f"{name} low"] <= trend[f"{name} high"]).all()
    claims = width.check(a)
    assert [c.id for c in claims] == ["C5", "C6"]
    figures = [width.plot_width(a), width.plot_accuracy(a)]
    assert len(figures[0].axes) == 4 and len(figures[1].axes) == 2
    for fig in figures:
        assert_fits_the_column(fig)
    assert width.describe(a)


def test_step0_control_is_captured_through_capture_run(env, monkeypatch):
    """The initialization control goes through capture_run (batch-norm statistics recomputed on
    training batches), for every net, and enters the measures in float64."""
    from cca_lib import capture

    calls = []
    orig = capture.capture_run

    def spy(run, step, *a, **kw):
        out = orig(run, step, *a, **kw)
        calls.append((run.config.width, run.config.seed, step))
        assert all(v.dtype == np.float32 for v in out.values())
        return out

    monkeypatch.setattr(capture, "capture_run", spy)
    dtypes = []
    real = width.compare

    def compare_spy(x, y, **kw):
        dtypes.append((x.dtype, y.dtype))
        return real(x, y, **kw)

    monkeypatch.setattr(width, "compare", compare_spy)
    cfg = tiny()
    width.run(cfg, progress=False)
    nets = {(w, cfg.seed + s) for w in cfg.widths for s in range(cfg.n_seeds)}
    assert {(w, s) for w, s, step in calls if step == 0} == nets
    assert {(w, s) for w, s, step in calls if step is None} == nets
    assert dtypes and all(a == np.float64 and b == np.float64 for a, b in dtypes)


def test_subset_seeds_are_fixed_per_net_and_draw():
    cfg = width.Config()
    s = width._subset_seed(cfg, 8, 0, 1, 0)
    assert s == width._subset_seed(cfg, 8, 0, 1, 0)
    assert len({width._subset_seed(cfg, 8, 0, n, r) for n in range(3) for r in range(3)}) == 9


def test_history_has_a_row_at_80_percent_for_the_trained_rule():
    cfg = width.Config()
    tc = cfg.train_config(cfg.widths[0], 0)
    total = int(cfg.epochs * (cfg.train_size // cfg.batch_size))
    last_before_tail = (0.8 * total // tc.eval_every) * tc.eval_every
    assert 0.75 * total <= last_before_tail <= 0.8 * total
