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
    with pytest.raises(ValueError, match="n_seeds"):
        cnn_dynamics.Config(n_seeds=0)
    with pytest.raises(ValueError, match="schedule"):
        cnn_dynamics.Config(schedule="step")
    with pytest.raises(ValueError, match="n_probe must exceed 256"):
        cnn_dynamics.Config(n_probe=256)  # halves of 128 rows; conv4 has 64 neurons
    assert cnn_dynamics.Config(n_seeds=2, seed=5).seeds == (5, 6)


def test_convergence_tolerance_is_the_trained_rule():
    from cca_lib import analysis

    assert cnn_dynamics.ACC_TOL == analysis.TRAINED_ACC_CHANGE


def test_probe_split_is_disjoint_complete_and_fixed_by_seed():
    fit, held = cnn_dynamics.probe_split(11, seed=3)
    assert len(fit) == 5 and len(held) == 6
    assert sorted(np.concatenate([fit, held])) == list(range(11))
    again = cnn_dynamics.probe_split(11, seed=3)
    np.testing.assert_array_equal(fit, again[0])
    assert not np.array_equal(fit, cnn_dynamics.probe_split(11, seed=4)[0])


def test_sb_contrast_is_the_loss_of_b_minus_three_times_that_of_s():
    rng = np.random.default_rng(0)
    half = rng.standard_normal((400, 6))
    s, b = half[:, :2], half[:, 4:]
    # at T: S's columns kept, B's replaced by noise
    final = np.hstack([half[:, :4], rng.standard_normal((400, 2))])
    x = np.hstack([s, b, half])
    got = cnn_dynamics._sb_contrast(x, final, k=2, measure="mean CCA")
    want = (1 - similarity.mean_cca(b, final)) - 3 * (1 - similarity.mean_cca(s, final))
    assert got == pytest.approx(want) and got > 0.7
    assert cnn_dynamics._sb_contrast(x, half, k=2, measure="linear CKA") == pytest.approx(0)


def test_majority_over_nets():
    m = cnn_dynamics.majority
    assert m(["holds", "holds", "does not hold"]) == "holds"
    assert m(["holds", "partly", "does not hold"]) == "partly"
    assert m(["holds", "does not hold", "does not hold"]) == "does not hold"
    assert m(["holds", "holds"]) == "partly"  # fewer than MIN_SEEDS nets


def test_run_tiny(env):
    cfg = cnn_dynamics.Config(width=2, train_size=N_TRAIN, epochs=8.0, log_checkpoints=4,
                              n_linear=3, eval_every=2, eval_size=N_TEST, n_probe=N_TEST,
                              early_frac=0.2, n_seeds=2)
    res = cnn_dynamics.run(cfg, progress=False)
    T = res.final_step
    assert res.steps[0] == 0 and T == 16 and res.half_step == 8 and res.seeds == (0, 1)
    assert res.early_step in res.steps
    for _, net in res.nets.iterrows():
        assert net["conv_ckpt"] in res.steps
        assert net["conv_step"] <= net["conv_ckpt"] or net["conv_ckpt"] == T
        assert net["after_frac"] == pytest.approx((T - net["conv_ckpt"]) / T)
    # CCA of L(T) with itself: all coefficients 1, distance 0 (float64 analysis)
    fin = res.spectra[res.spectra["step"] == T]
    np.testing.assert_allclose(fin["rho"], 1, atol=1e-8)
    conv = res.to_frame()
    assert set(conv["measure"]) == set(cnn_dynamics.MEASURES)
    np.testing.assert_allclose(conv[conv["step"] == T]["distance"], 0, atol=1e-8)
    # S and B are linear functions of L(T/2) on the held-out rows too: similarity 1 there
    half = res.sb[res.sb["step"] == res.half_step]
    np.testing.assert_allclose(half["similarity"], 1, atol=1e-8)
    assert set(res.sb["measure"]) == set(cnn_dynamics.SB_MEASURES)
    tests = res.sb_tests
    assert len(tests) == 2 * len(res.layers) * len(cnn_dynamics.SB_MEASURES)
    assert (tests["low"] <= tests["contrast"]).all() and (tests["contrast"] <= tests["high"]).all()
    assert set(res.sb_summary().index.get_level_values("subset")) == {"S", "B"}
    assert list(res.unconverged(1).index) == list(res.layers)
    # the share below 0.9 at t*, with its bootstrap interval over probe images
    table = res.unconverged_all()
    assert len(res.shares) == 2 * len(res.layers)
    np.testing.assert_allclose(res.shares.set_index(["seed", "layer"])["share"]
                               .loc[table.index], table["frac_below"], atol=1e-12)
    assert ((0 <= table["frac_low"]) & (table["frac_low"] <= table["frac_high"])
            & (table["frac_high"] <= 1)).all()
    floors = res.floors.set_index(["layer", "measure"])["floor"]
    assert len(floors) == len(res.layers) * 3 and ((floors > 0) & (floors < 1)).all()
    for section in ("accuracy", "spectra", "sb", "convergence"):
        assert cnn_dynamics.describe(res, section)
    for plot in (cnn_dynamics.plot_accuracy, cnn_dynamics.plot_spectra, cnn_dynamics.plot_sb,
                 cnn_dynamics.plot_convergence):
        fig = plot(res)
        assert fig.axes
        assert_fits_the_column(fig)
    assert_figures_name_their_measures_and_layers(res)
    claims = cnn_dynamics.check(res)
    assert [c.id for c in claims] == ["C2", "C3"] and claims[0].part == "CNN"


def assert_fits_the_column(fig):
    """The figure is drawn at most the book's column wide with every text legible there."""
    import matplotlib.pyplot as plt

    from cca_lib import plotting

    width = fig.get_size_inches()[0]
    points, text = plotting.smallest_text(fig)
    plt.close(fig)
    assert width <= plotting.COLUMN_WIDTH_IN + 1e-9, f"{width} in wide"
    assert points * 100 / 72 >= plotting.MIN_FONT_PX, f"{text!r} at {points} pt"


def assert_figures_name_their_measures_and_layers(res):
    """Each panel of the convergence figure names its own measure on its axis; every layer has
    its own colour, the same in the convergence lines and on the per-layer panels."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    colors = cnn_dynamics.layer_colors(res)
    assert list(colors) == list(res.layers) and len(set(colors.values())) == len(res.layers)
    fig = cnn_dynamics.plot_convergence(res)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in panels] == list(cnn_dynamics.MEASURES)
    for ax, measure in zip(panels, cnn_dynamics.MEASURES, strict=True):
        assert ax.get_ylabel().startswith(measure), (measure, ax.get_ylabel())
        drawn = {to_hex(line.get_color()) for line in ax.get_lines()}
        assert {c.lower() for c in colors.values()} <= drawn
    plt.close(fig)
    for plot in (cnn_dynamics.plot_spectra, cnn_dynamics.plot_sb):
        fig = plot(res)
        tops = [to_hex(ax.spines["top"].get_edgecolor()) for ax in fig.axes
                if ax.get_visible() and ax.axison and ax.get_title()]
        assert tops == [c.lower() for c in colors.values()]
        plt.close(fig)


def test_held_out_split_removes_the_selection_bias():
    """B chosen as the least correlated directions of pure noise: on the rows it was chosen on,
    its correlation is biased low; on the held-out rows it is what noise gives."""
    rng = np.random.default_rng(0)
    early, half = rng.standard_normal((2, 600, 20))
    fit, held = cnn_dynamics.probe_split(600, seed=0)
    res = similarity.cca(early[fit], half[fit], variates=False)
    h = (half - half[fit].mean(0)) @ res.y_weights
    top = similarity.mean_cca(h[fit, :5], early[fit])
    top_held = similarity.mean_cca(h[held, :5], early[held])
    assert top > top_held + 0.1  # the selection inflates S on its own rows only


def test_linear_checkpoints_follow_the_engine_step_count(env):
    from cca_lib import training

    cfg = cnn_dynamics.Config(width=2, train_size=N_TRAIN, epochs=3.0, n_linear=4,
                              eval_size=N_TEST, n_probe=N_TEST)
    tc = cfg.train_config()
    total = training.total_steps(tc)
    assert total == int(np.ceil(3.0 * (N_TRAIN // cnn_dynamics.BATCH_SIZE)))
    assert tc.checkpoints == tuple(int(s) for s in np.linspace(0, total, 6)[1:-1])
    assert tc.batch_size == cnn_dynamics.BATCH_SIZE
    assert tc.schedule == "step_half" and cfg.train_config(7).seed == 7


def test_notebook_markdown_states_no_result_and_no_build_history():
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "cnn_dynamics.ipynb").read_text())
    text = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for word in ("prototype", "feasibility", "thread", "build", "our quick", "our full"):
        assert not re.search(word, text, re.I), word


def test_arch_and_optimizer_reach_the_engine_config(env):
    small = dict(width=2, train_size=N_TRAIN, eval_size=N_TEST, n_probe=N_TEST)
    tc = cnn_dynamics.Config(arch="resnet", optimizer="adam", **small).train_config(0)
    assert (tc.arch, tc.optimizer) == ("resnet", "adam")
    assert cnn_dynamics.Config(**small).train_config(0).arch == "small"
    with pytest.raises(ValueError, match="n_probe"):  # the ResNet's widest layer is 4w = 64
        cnn_dynamics.Config(arch="resnet", width=16, n_probe=200)


def test_share_below_counts_the_coefficients_under_the_level():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4))
    y = np.hstack([x[:, :3], rng.standard_normal((400, 1))])  # 3 shared directions, 1 noise
    assert cnn_dynamics._share_below(x, y) == pytest.approx(0.25)
    assert cnn_dynamics._share_below(x, x) == 0.0


def test_schedule_text_claims_nothing_the_paper_does_not_state():
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "cnn_dynamics.ipynb").read_text())
    text = " ".join("".join(c["source"]) for c in nb["cells"])
    meta = {f.name: f.metadata for f in cnn_dynamics.Config.__dataclass_fields__.values()}
    texts = [text, cnn_dynamics.__doc__, *(str(m.get("help", "")) + str(m.get("paper", ""))
                                           for m in meta.values())]
    for t in texts:
        assert "long runs" not in t and "decayed by about" not in t
    assert "paper: not stated" in text
