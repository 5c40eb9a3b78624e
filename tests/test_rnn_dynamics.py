"""The RNN training-dynamics chapter's experiment, on tiny LSTMs and the synthetic mirror."""

import numpy as np
import pandas as pd
import pytest
from _engine_data import activate

from cca_lib.experiments import rnn_dynamics


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(n_layers=2, hidden_size=8, embed_dim=8, batch_size=8, seq_len=12, epochs=3.0,
                lr=1e-2, log_checkpoints=4, tail_checkpoints=2, eval_points=4, probe_seqs=10,
                probe_len=20, threads=1, n_seeds=2)
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
    with pytest.raises(ValueError, match="n_seeds"):
        rnn_dynamics.Config(n_seeds=0)


def test_lm_config_adds_a_tail_grid():
    cfg = rnn_dynamics.lm_config(tiny(tail_checkpoints=3, tail_frac=0.5), 100)
    assert cfg.checkpoints == (62, 75, 88)
    assert cfg.hidden_size == 8 and cfg.n_layers == 2 and cfg.eval_every == 25


def test_one_run_per_seed_differing_only_in_the_seed():
    import dataclasses

    cfg = tiny(seed=5, n_seeds=3)
    assert rnn_dynamics.seeds(cfg) == (5, 6, 7)
    runs = rnn_dynamics.lm_configs(cfg, 100)
    assert [r.seed for r in runs] == [5, 6, 7]
    assert {dataclasses.replace(r, seed=0) for r in runs} == {dataclasses.replace(runs[0],
                                                                                  seed=0)}
    with pytest.raises(ValueError, match="seed=8"):
        rnn_dynamics.lm_config(cfg, 100, seed=8)


def test_run_is_deterministic_and_complete(env):
    cfg = tiny()
    a = rnn_dynamics.run(cfg, progress=False)
    b = rnn_dynamics.run(cfg, progress=False)  # from the cache
    assert a.to_frame().equals(b.to_frame())
    frame = a.to_frame()
    assert set(frame["measure"]) == set(rnn_dynamics.MEASURES)
    assert sorted(frame["layer"].unique()) == [1, 2]
    assert a.seeds == (0, 1)
    assert a.n_samples == 200
    final = frame[frame["step"] == a.steps[-1]]
    np.testing.assert_allclose(final["distance"], 0.0, atol=1e-6)
    t0, t1 = a.table("PWCCA", 0), a.table("PWCCA", 1)
    assert not np.allclose(t0.to_numpy(), t1.to_numpy())  # two networks, not one twice
    assert list(t0.index) == list(a.steps) and ((t0 >= -1e-9) & (t0 <= 1 + 1e-9)).all().all()
    assert set(a.first_below("PWCCA", 0, 0.5).index) == {1, 2}
    assert len(a.spectra) == len(a.steps) * 2 * 8 * 2
    assert {"seed", "step", "valid_loss", "lr"} <= set(a.history.columns)
    assert set(a.floors["measure"]) == set(rnn_dynamics.MEASURES)
    assert ((a.floors["distance"] > 0) & np.isfinite(a.floors["distance"])).all()
    assert list(a.nets["seed"]) == [0, 1] and a.nets["trained"].dtype == bool
    assert a.converged_step(0) in set(a.history["step"])
    assert 0.0 <= a.after_converged_fraction(0) <= 1.0
    claims = rnn_dynamics.check(a)
    assert [c.id for c in claims] == ["C8", "C2"] and claims[1].part == "RNN"
    assert "sampling floor" in rnn_dynamics.floor_note(a)


def _constructed(distances, history, unigram=3.0):
    rows = []
    steps = (0, 1, 10, 100, 1000)
    for layer, values in distances.items():
        for step, d in zip(steps, values, strict=True):
            rows.append({"seed": 0, "step": step, "epoch": 0.0, "layer": layer,
                         "measure": "PWCCA", "distance": d})
    return rnn_dynamics.Result(
        config=rnn_dynamics.Config(), distances=pd.DataFrame(rows), spectra=pd.DataFrame(),
        history=history, floors=pd.DataFrame(), nets=pd.DataFrame(), steps=steps,
        steps_per_epoch=1.0, metrics={0: {"unigram_valid_loss": unigram}}, n_samples=0)


def _history(losses, steps=(0, 1, 10, 100, 1000)):
    return pd.DataFrame({"seed": 0, "step": steps, "valid_loss": losses})


def test_learning_steps_skip_the_untrained_plateau():
    # the loss reaches the unigram level (3.0) at step 1 and learns context from step 10
    h = _history([4.0, 3.0, 2.5, 2.1, 2.0])
    r = _constructed({1: (1, .5, .2, .05, 0), 2: (1, .6, .3, .1, 0), 3: (1, .8, .5, .2, 0)}, h)
    assert r.learning_start(0) == 10  # 2.5 <= 3.0 - 0.1 * (3.0 - 2.0)
    assert r.learning_steps(0) == (10, 100)
    np.testing.assert_allclose(r.area("PWCCA", 0).to_numpy(),
                               [0.125, 0.2, 0.35])  # mean of the two on the log axis
    assert r.separation("PWCCA", 0) == pytest.approx((0.35 - 0.125) / np.mean([.125, .2, .35]))
    assert r.ordered_fraction("PWCCA", 0) == 1.0
    assert r.first_below("PWCCA", 0, 0.15).to_dict() == {1: 100, 2: 100, 3: 1000}
    # a loss never below the unigram model's: no learning checkpoints
    r = _constructed({1: (1, .5, .2, .05, 0)}, _history([4.0, 3.5, 3.2, 3.1, 3.05]))
    assert r.learning_start(0) is None and r.learning_steps(0) == ()


def test_a_tie_between_layers_is_not_ordered():
    h = _history([4.0, 3.0, 2.5, 2.1, 2.0])
    r = _constructed({1: (1, .5, .2, .1, 0), 2: (1, .6, .3, .1, 0)}, h)
    assert r.ordered_fraction("PWCCA", 0) == 0.5


def test_converged_step_is_where_the_loss_stays_within_one_percent():
    h = _history([4.0, 2.015, 2.05, 2.01, 2.0])  # 2.05 is 2.5% above the final loss
    r = _constructed({1: (1, .5, .2, .05, 0)}, h)
    assert rnn_dynamics.C2_LOSS_TOL == 0.01
    assert r.converged_step(0) == 100
    assert r.after_converged_fraction(0) == pytest.approx(0.9)


def test_majority():
    assert rnn_dynamics.majority(["holds", "holds", "partly"]) == "holds"
    assert rnn_dynamics.majority(["holds", "partly", "does not hold"]) == "partly"
    assert rnn_dynamics.majority(["holds", "does not hold", "does not hold"]) == "does not hold"
    assert rnn_dynamics.majority(["partly"]) == "partly"
    # untestable nets count as not holding; at most half testable: the claim is not testable
    assert rnn_dynamics.majority(["holds", "holds", "not testable"]) == "holds"
    assert rnn_dynamics.majority(["holds", "not testable", "not testable"]) == "not testable"
    assert rnn_dynamics.majority(["holds", "not testable"]) == "not testable"
    with pytest.raises(ValueError, match="statuses"):
        rnn_dynamics.majority(["maybe"])


def test_total_steps_is_the_engine_count(env):
    from cca_lib import training

    cfg = tiny(n_seeds=1)
    assert rnn_dynamics.total_steps(cfg) == training.total_steps(rnn_dynamics.lm_config(cfg))
    assert rnn_dynamics.train(cfg, progress=False).final_step == rnn_dynamics.total_steps(cfg)


def _luminance(color) -> float:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def assert_fits_the_column(fig):
    """``fig`` is at most the book's column wide, its text at least MIN_FONT_PX as displayed
    there, and none of its plotted lines is near white."""
    import matplotlib.pyplot as plt

    from cca_lib import plotting

    try:
        assert fig.get_figwidth() <= plotting.COLUMN_WIDTH_IN + 1e-9
        _, meta = plotting.figure_png(fig)
        report = meta[plotting.REPORT_KEY]
        # shown at most the column's 690 px wide (the PNG is cropped with a small margin)
        shown = min(report["width_px"], plotting.COLUMN_WIDTH_IN * 100)
        assert plotting.displayed_min_font(report, shown) >= plotting.MIN_FONT_PX, report
        lines = [line for ax in fig.axes for line in ax.get_lines()]
        assert lines
        assert all(_luminance(line.get_color()) < 0.8 for line in lines)
    finally:
        plt.close(fig)


def test_figures_fit_the_column_and_have_no_near_white_lines(env):
    a = rnn_dynamics.run(tiny(n_layers=3), progress=False)
    for plot in (rnn_dynamics.plot_distances, rnn_dynamics.plot_spectra,
                 rnn_dynamics.plot_perplexity):
        assert_fits_the_column(plot(a))
    # one legend for the whole figure, in the spare (sixth) panel of the five measures
    fig = rnn_dynamics.plot_distances(a)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1 and len(fig.axes) == 6
    assert [t.get_text() for t in legends[0].get_texts()][:3] == ["1", "2", "3"]


def test_palettes_leave_out_the_near_white_ends():
    layers = rnn_dynamics.layer_palette([1, 2, 3, 4, 5])
    steps = rnn_dynamics.step_palette([1, 10, 100, 1000, 10000, 20000])
    assert list(layers) == [1, 2, 3, 4, 5] and len(set(layers.values())) == 5
    assert len(set(steps.values())) == 6
    assert max(_luminance(c) for c in [*layers.values(), *steps.values()]) < 0.8
    # later checkpoints are darker
    lum = [_luminance(steps[s]) for s in sorted(steps)]
    assert lum == sorted(lum, reverse=True)


def test_tables_fit_the_column_and_are_complete(env):
    a = rnn_dynamics.run(tiny(), progress=False)
    t = rnn_dynamics.distance_table(a)
    assert list(t.index) == [s for s in a.steps if s > 0]
    assert list(t.columns) == [("PWCCA", 1), ("PWCCA", 2), ("linear CKA", 1), ("linear CKA", 2)]
    step = a.steps[1]
    mean = np.mean([a.table("PWCCA", s).loc[step, 2] for s in a.seeds])
    assert t.loc[step, ("PWCCA", 2)] == pytest.approx(mean)
    with pytest.raises(ValueError, match="measures"):
        rnn_dynamics.distance_table(a, ("CKA",))
    s = rnn_dynamics.summary_table(a)
    assert list(s.index) == [(seed, m) for seed in a.seeds for m in rnn_dynamics.MEASURES]
    assert s.shape[1] == 2 + 2
    assert s.loc[(1, "PWCCA"), ("separation S", "")] == pytest.approx(a.separation("PWCCA", 1),
                                                                      nan_ok=True)


def test_floor_distances_do_not_warn_about_the_groups_they_measure():
    import warnings

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 8))
    groups = np.repeat(np.arange(20), 10)  # 20 sequences for 8 units: < 5 per unit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        floors = rnn_dynamics.floor_distances(ref, groups, seed=0)
    assert set(floors) == set(rnn_dynamics.MEASURES)
    assert all(np.isfinite(v) and v > 0 for v in floors.values())


def test_nets_view_names_the_columns_in_words():
    nets = pd.DataFrame({"seed": [0, 1], "valid_ppl": [9.123, 8.0], "unigram_valid_ppl": 28.4,
                         "trained": [True, False], "why": ["a", "b"], "train_seconds": 3.0})
    view = rnn_dynamics.nets_view(nets)
    assert list(view.index) == [0, 1]
    assert list(view.columns) == ["validation perplexity", "unigram perplexity", "trained", "why",
                                  "training seconds"]
    assert view.loc[0, "validation perplexity"] == 9.12
    with pytest.raises(ValueError, match="why"):
        rnn_dynamics.nets_view(nets.drop(columns="why"))
