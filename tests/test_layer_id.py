"""The layer-identification chapter: config rules, a tiny run on the synthetic mirror, the tie
rule, the network bootstrap, and check() on hand-built results that pass, partly pass and fail.
"""

import re

import numpy as np
import pandas as pd
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib import book, compare, rbf_cka
from cca_lib.experiments import layer_id

L = 11  # conv layers of the paper-style net


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny(**kw):
    base = dict(n_nets=3, width=2, train_size=N_TRAIN, epochs=1.0, batch_size=64,
                probe_size=100, sweep_ratios=(2, 4), n_boot=200, seed=5)
    base.update(kw)
    return layer_id.Config(**base)


def test_config_rules():
    cfg = layer_id.Config()
    assert cfg.layers == tuple(f"conv{i}" for i in range(1, L + 1))
    assert cfg.widest == 8 * cfg.width
    assert cfg.probe_counts == tuple(r * cfg.widest for r in cfg.sweep_ratios) + (cfg.probe_size,)
    with pytest.raises(ValueError, match="n_nets"):
        layer_id.Config(n_nets=2)
    with pytest.raises(ValueError, match=r"sweep_ratios \[20\] x the widest layer"):
        layer_id.Config(sweep_ratios=(2, 20))
    with pytest.raises(ValueError, match="train_size"):
        layer_id.Config(train_size=100)
    with pytest.raises(ValueError, match="rbf_sigma_frac"):
        layer_id.Config(rbf_sigma_frac=0.0)


def test_tiny_run_is_deterministic_and_matches_the_library(env):
    cfg = tiny()
    a = layer_id.run(cfg, progress=False)
    b = layer_id.run(cfg, progress=False)
    assert set(a.similarity) == {32, 64, 100}
    for n in a.similarity:
        for m in layer_id.MEASURES:
            s = a.similarity[n][m]
            assert s.shape == (3, 3, L, L)
            np.testing.assert_array_equal(s, b.similarity[n][m])
            off = s[~np.eye(3, dtype=bool)]
            assert np.all((off >= 0) & (off <= 1))
            assert np.isnan(s[0, 0]).all()
            # symmetric measures: (a, b, i, j) is (b, a, j, i)
            np.testing.assert_allclose(s[0, 1], s[1, 0].T)
    pd.testing.assert_frame_equal(a.accuracy_table(), b.accuracy_table())
    assert len(a.nets) == 3 and a.nets["test_acc"].between(0, 1).all()
    assert a.nets["trained"].dtype == bool
    # the stored numbers are the library's, on float64 activations of the probe
    from cca_lib import analysis, capture, training

    runs = training.train_many([cfg.train_config(cfg.seed + k) for k in range(3)],
                               progress=False)
    probe = analysis.probe_images(cfg.dataset, "train", cfg.probe_size)
    x = capture.capture_run(runs[0], None, probe.images, ["conv4"])["conv4"].astype(np.float64)
    y = capture.capture_run(runs[2], None, probe.images, ["conv9"])["conv9"].astype(np.float64)
    v = compare(x, y)
    assert a.similarity[100]["PWCCA"][0, 2, 3, 8] == pytest.approx(v["PWCCA (symmetric)"],
                                                                    abs=1e-12)
    assert a.similarity[100]["mean CCA"][2, 0, 8, 3] == pytest.approx(v["mean CCA"], abs=1e-12)
    assert a.similarity[100]["RBF CKA"][0, 2, 3, 8] == pytest.approx(rbf_cka(x, y), abs=1e-10)
    assert set(a.floor["n"]) == {32, 64, 100} and len(a.floor) == 3 * len(layer_id.MEASURES)
    claims = layer_id.check(a)
    assert [c.id for c in claims] == ["K1"]
    _plain(claims)


# ---------------------------------------------------------------------------------------------
# Hand-built results
# ---------------------------------------------------------------------------------------------

def _sims(n_nets, right, seed=0):
    """(N, N, L, L) similarities whose row maximum is on the diagonal for the layers in
    ``right`` (a list of layer sets, one per measure call) and one step off it elsewhere."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.1, 0.5, size=(n_nets, n_nets, L, L))
    for i in range(L):
        j = i if i in right else (i + 1) % L
        s[:, :, i, j] = 0.9
    for a in range(n_nets):
        s[a, a] = np.nan
    return s


def _result(right_by_measure, n_nets=4, trained=True):
    cfg = layer_id.Config(n_nets=n_nets, width=2, probe_size=200, sweep_ratios=(2,),
                          n_boot=300)
    sims = {n: {m: _sims(n_nets, right_by_measure[m], seed=k)
                for k, m in enumerate(layer_id.MEASURES)} for n in cfg.probe_counts}
    nets = pd.DataFrame({"seed": range(n_nets), "test_acc": 0.8, "train_acc": 0.85,
                         "converged": True, "reason": "", "acc_at_80": 0.8,
                         "trained": trained})
    floor = pd.DataFrame([{"n": n, "n / d": n / cfg.widest, "measure": m, "similarity": 0.1}
                          for n in cfg.probe_counts for m in layer_id.MEASURES])
    return layer_id.Result(config=cfg, nets=nets, similarity=sims, floor=floor)


ALL, NONE = set(range(L)), set()


def _plain(claims):
    for claim in claims:
        texts = [claim.evidence] + [t for c in claim.criteria for t in (c.name, c.threshold)]
        texts += [c.measured for c in claim.criteria if isinstance(c.measured, str)]
        for text in texts:
            assert not re.search(r"\b(True|False|None|nan)\b", text), text
            assert "_" not in text, text
        assert set(book.evidence_table(claims)["met"]) <= {"yes", "no", "reported only"}
    return claims


def _status(result):
    (claim,) = _plain(layer_id.check(result))
    return claim


def test_check_holds_when_cka_identifies_every_layer_and_cca_none():
    claim = _status(_result({"mean CCA": NONE, "SVCCA": NONE, "PWCCA": NONE,
                             "linear CKA": ALL, "RBF CKA": ALL}))
    assert claim.status == "holds"
    rows = {c.name: c for c in claim.criteria}
    assert rows["share of layers linear CKA identifies"].measured == pytest.approx(1.0)
    assert rows["linear CKA's accuracy minus PWCCA's"].measured.startswith("+1.000")
    assert "under-trained" not in claim.evidence


def test_check_partly_when_cka_is_better_but_not_reliable():
    half = set(range(5))  # 5 of 11 layers: 0.45 < RELIABLE_ACC
    claim = _status(_result({"mean CCA": NONE, "SVCCA": NONE, "PWCCA": NONE,
                             "linear CKA": half, "RBF CKA": half}, trained=False))
    assert claim.status == "partly"
    assert [c.passed for c in claim.criteria[:4]] == [False, True, True, True]
    assert "under-trained" in claim.evidence


def test_check_fails_when_cka_is_no_better_than_cca():
    same = set(range(3))
    claim = _status(_result({m: same for m in layer_id.MEASURES}))
    assert claim.status == "does not hold"
    assert [c.passed for c in claim.criteria[:4]] == [False, False, False, False]
    assert all(c.passed is None for c in claim.criteria[4:])


def test_one_cca_measure_as_good_as_cka_makes_it_partly():
    claim = _status(_result({"mean CCA": NONE, "SVCCA": NONE, "PWCCA": ALL,
                             "linear CKA": ALL, "RBF CKA": ALL}))
    assert claim.status == "partly"
    assert [c.passed for c in claim.criteria[:4]] == [True, True, True, False]


def test_ties_count_one_over_k():
    res = _result({m: ALL for m in layer_id.MEASURES})
    s = res.similarity[res.n_main]["mean CCA"]
    s[0, 1, 0, :] = 1.0  # layer 0 of net 0: every layer of net 1 ties
    s[0, 1, 1, :] = 0.2
    s[0, 1, 1, [1, 5]] = 1.0 - layer_id.TIE_TOL / 2  # two tie within the tolerance
    s[0, 1, 2, :] = 0.2
    s[0, 1, 2, [2, 3]] = [0.9, 0.9 + 10 * layer_id.TIE_TOL]  # a clear winner, the wrong one
    acc = res.pair_accuracy(None, "mean CCA")
    assert acc[0, 1] == pytest.approx((1 / L + 1 / 2 + 0 + (L - 3)) / L)
    assert np.isnan(acc[0, 0]) and acc[1, 0] == pytest.approx(1.0)


def test_network_bootstrap_resamples_networks_and_is_seeded():
    n = 5
    acc = np.full((n, n), 0.5)
    acc[4, :] = acc[:, 4] = 0.0  # one bad network drags every pair it is in
    acc[0, 1] = 0.7  # ordered pairs need not be symmetric
    np.fill_diagonal(acc, np.nan)
    a = layer_id._network_interval(acc, 500, seed=1)
    assert a == layer_id._network_interval(acc, 500, seed=1)  # seeded
    assert a.estimate == pytest.approx(np.nanmean(acc))  # the mean over ordered pairs
    assert a.low < a.estimate < a.high <= 0.6  # 0.6: the best pair, (0.7 + 0.5) / 2
    flat = np.full((n, n), 0.3)
    np.fill_diagonal(flat, np.nan)
    c = layer_id._network_interval(flat, 200, seed=2)
    # only pairs of distinct networks enter (a network against itself would score NaN)
    assert c.low == pytest.approx(0.3) and c.high == pytest.approx(0.3)


def test_where_credit_goes_sums_to_one():
    res = _result({"mean CCA": NONE, "SVCCA": NONE, "PWCCA": NONE, "linear CKA": ALL,
                   "RBF CKA": ALL})
    table = res.where_credit_goes()
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    assert table.loc["linear CKA", "same layer"] == pytest.approx(1.0)
    assert table.loc["mean CCA", "same layer"] == 0.0


def test_figures_fit_the_column_with_legible_text():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cca_lib import plotting

    plotting.set_theme()
    res = _result({"mean CCA": NONE, "SVCCA": NONE, "PWCCA": set(range(3)),
                   "linear CKA": ALL, "RBF CKA": ALL})
    for plot in (layer_id.plot_similarity, layer_id.plot_accuracy, layer_id.plot_sweep):
        fig = plot(res)
        png, meta = plotting.figure_png(fig)
        report = meta[plotting.REPORT_KEY]
        # drawn no wider than the column (a legend outside the axes may add a few pixels)
        assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN, plot.__name__
        assert plotting.displayed_min_font(report, min(report["width_px"], 690)) >= \
            plotting.MIN_FONT_PX, (plot.__name__, report)
        plt.close(fig)
    fig = layer_id.plot_similarity(res)
    panels = [ax for ax in fig.axes if ax.get_title() in layer_id.MEASURES]
    assert [ax.get_title() for ax in panels] == list(layer_id.MEASURES)
    # two panels to a row: three rows of heat maps
    assert len({round(ax.get_position().y0, 3) for ax in panels}) == 3
    plt.close(fig)
