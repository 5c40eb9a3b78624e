"""Chapter 'memorization': config checks and a tiny end-to-end run on the synthetic mirror."""

import numpy as np
import pandas as pd
import pytest

from cca_lib.experiments import memorization
from tests._engine_data import N_TEST, N_TRAIN, activate


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(width=2, n_nets=2, train_size=N_TRAIN, epochs=3.0, batch_size=32,
                probe_size=N_TEST, target_train_acc=0.05)
    base.update(kw)
    return memorization.Config(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="n_nets"):
        memorization.Config(n_nets=1)
    with pytest.raises(ValueError, match="probe_size"):
        memorization.Config(train_size=1000, probe_size=2000)
    with pytest.raises(TypeError):  # one probe size for both panels, not two
        memorization.Config(probe_train=1000, probe_test=2000)
    with pytest.raises(ValueError, match="method"):
        memorization.Config(method="cosine")
    with pytest.raises(ValueError, match="labels"):
        memorization.Config().train_config("noisy", 0)


def test_measure_names_follow_the_method():
    def result(method):
        return memorization.Result(config=memorization.Config(method=method), layers=(),
                                   nets=pd.DataFrame(), distances=pd.DataFrame(),
                                   floors=pd.DataFrame())

    assert result("pwcca").measure_names() == memorization.MEASURE_COLUMNS
    assert result("mean_cca").measure_names() == {"distance": "mean CCA", "cka": "linear CKA"}


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
    assert list(means.index) == list(res.layers)
    assert list(means.columns) == [*memorization.PAIRS, "floor"]
    again = memorization.run(cfg, progress=False)  # cached nets, same numbers
    assert again.to_frame().equals(frame)
    assert frame["cka"].between(-1e-9, 1 + 1e-9).all() and not frame["cka"].equals(
        frame["distance"])
    # both panels at one n: one floor per probe, layer and measure, and the floors of a layer
    # are those of its shape
    assert len(res.floors) == 2 * n_layers * 2
    assert res.floors["floor"].between(0, 1).all()
    assert (res.floors["low"] <= res.floors["floor"]).all()
    assert (res.floors["floor"] <= res.floors["high"]).all()
    assert "floor" in means.columns
    d, labels = res.matrix("test", res.layers[-1])
    assert d.shape == (4, 4) and np.allclose(d, d.T) and list(labels).count("memorizing") == 2
    assert set(res.nets.columns) >= {"trained", "trained_rule"}
    fig = memorization.plot_distances(res)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4
    assert_fits_the_column(fig)
    # one legend for the figure (not one per panel hiding the points)
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)


def assert_fits_the_column(fig):
    """The figure is drawn at most the book's column wide with every text legible there."""
    import matplotlib.pyplot as plt

    from cca_lib import plotting

    width = fig.get_size_inches()[0]
    points, text = plotting.smallest_text(fig)
    plt.close(fig)
    assert width <= plotting.COLUMN_WIDTH_IN + 1e-9, f"{width} in wide"
    assert points * 100 / 72 >= plotting.MIN_FONT_PX, f"{text!r} at {points} pt"


def test_run_captures_through_capture_run_in_float64(env, monkeypatch):
    from cca_lib import capture, similarity

    seen = []
    real = similarity.compare

    def spy(x, y, **kw):
        seen.append((x.dtype, y.dtype))
        return real(x, y, **kw)

    monkeypatch.setattr(memorization, "compare", spy)
    calls = []
    orig = capture.capture_run

    def capture_spy(run, step, inputs, *a, **kw):
        calls.append((run.config.seed, step, tuple(inputs.shape)))
        return orig(run, step, inputs, *a, **kw)

    monkeypatch.setattr(capture, "capture_run", capture_spy)
    memorization.run(tiny(), progress=False)
    assert seen and all(dx == np.float64 and dy == np.float64 for dx, dy in seen)
    # 4 nets x 2 probes, both probes of the same size
    assert len(calls) == 8 and len({shape for _, _, shape in calls}) == 1
