"""The learning-rate chapter: its config, the analysis of a distance matrix (Mantel and
node-label tests, the cut, the intervals) on synthetic matrices, and a tiny sweep (the cluster
statistics themselves are in test_analysis.py)."""

import numpy as np
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib import analysis
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


def _blocks(n_lrs=4, n_seeds=3, gap_slope=0.05, noise=0.01, seed=0):
    """Distances that grow with the log-LR gap (blocks per LR) plus symmetric noise."""
    lrs = np.repeat(10.0 ** -np.arange(n_lrs), n_seeds)
    logs = np.log10(lrs)
    d = 0.1 + gap_slope * np.abs(logs[:, None] - logs[None, :])
    e = np.random.default_rng(seed).normal(0, noise, d.shape)
    d = d + (e + e.T) / 2
    np.fill_diagonal(d, 0.0)
    return d, lrs


def test_analyze_finds_an_ordered_block_matrix():
    d, lrs = _blocks()
    a = lr_exp.analyze(d, lrs, measure="PWCCA", max_clusters=6, min_cluster_size=2, seed=3,
                       n_perm=999, n_boot=300)
    assert a.mantel_r > 0.8 and a.mantel_p < 0.01
    assert a.mantel_ci.low > 0.5 and a.mantel_ci.low <= a.mantel_r <= a.mantel_ci.high
    assert a.contrast_p < 0.01 and a.contrast_ci.low > 0
    assert a.between > a.within
    assert a.lr_consistent == 1.0 and a.lr_contiguous
    assert a.silhouette == pytest.approx(analysis.silhouette(d, a.clusters))
    assert lr_exp.verdict(a) == "holds"
    b = lr_exp.analyze(d, lrs, measure="PWCCA", max_clusters=6, min_cluster_size=2, seed=3,
                       n_perm=999, n_boot=300)
    assert (a.mantel_p, a.contrast_ci, a.silhouette_ci) == (b.mantel_p, b.contrast_ci,
                                                           b.silhouette_ci)


def test_analyze_finds_nothing_in_unstructured_distances():
    # no learning-rate structure: the tests reject at about their 5% level, no more
    rejections, covered = 0, 0
    for seed in range(20):
        d, lrs = _blocks(gap_slope=0.0, noise=0.02, seed=seed)
        a = lr_exp.analyze(d, lrs, measure="PWCCA", max_clusters=6, min_cluster_size=2,
                           seed=seed, n_perm=499, n_boot=200)
        rejections += (a.mantel_p < 0.05) + (a.contrast_p < 0.05)
        covered += a.mantel_ci.low < 0 < a.mantel_ci.high
    assert rejections <= 6  # of 40 tests; 2 expected
    assert covered >= 15


def test_analyze_rejects_too_few_nets():
    with pytest.raises(ValueError, match="at least 4 nets"):
        lr_exp.analyze(np.zeros((3, 3)), np.array([0.1, 0.1, 0.2]), measure="PWCCA",
                       max_clusters=2, min_cluster_size=1, seed=0)


def test_silhouette_nan_matches_the_silhouette_and_skips_missing_pairs():
    d, lrs = _blocks(seed=2)
    labels = np.repeat([1, 2, 2, 3], 3)
    full = d.copy()
    np.fill_diagonal(full, np.nan)
    assert lr_exp.silhouette_nan(full, labels) == pytest.approx(analysis.silhouette(d, labels))
    # a resample holding net 0 twice: the two copies' pair is missing, not zero
    idx = np.array([0, 0, 3, 4, 6, 9])
    sub = d[np.ix_(idx, idx)]
    sub[idx[:, None] == idx[None, :]] = np.nan
    s = lr_exp.silhouette_nan(sub, labels[idx])
    assert np.isfinite(s) and -1 <= s <= 1
    assert np.isnan(lr_exp.silhouette_nan(full, np.ones(12)))


def test_tiny_sweep_is_deterministic(env):
    cfg = lr_exp.Config(learning_rates=(0.01, 0.1, 0.5), n_seeds=2, width=2, train_size=N_TRAIN,
                        epochs=2.0, layer="conv4", probe_split="train", probe_size=100,
                        max_clusters=4, seed=7)
    a = lr_exp.run(cfg, progress=False)
    b = lr_exp.run(cfg, progress=False)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.cka_distances, b.cka_distances)
    for d in (a.distances, a.cka_distances):
        assert d.shape == (6, 6)
        np.testing.assert_allclose(d, d.T)
        assert np.all(np.diag(d) == 0)
    assert set(a.floors) == {"PWCCA", "linear CKA"} and len(a.floor_pairs) == 2
    for measure in ("PWCCA", "linear CKA"):
        np.testing.assert_array_equal(a.floors[measure], b.floors[measure])
        assert np.all((0 < a.floors[measure]) & (a.floors[measure] <= 1))
    all_nets = a.analyses[("PWCCA", "all nets")]
    assert 2 <= all_nets.n_clusters <= 4 and all_nets.n_clusters in all_nets.silhouettes
    assert all_nets.mantel_p == b.analyses[("PWCCA", "all nets")].mantel_p
    assert len(a.to_frame()) == 15
    assert list(a.lr_table().index) == [0.01, 0.1, 0.5]
    assert set(a.nets["judged"]) <= {True, False} and a.nets["trained"].dtype == bool
    assert a.testable == (len(a.judged_lrs) >= lr_exp.MIN_LRS)
    assert ("PWCCA", "similar accuracy") in a.analyses or len(a.judged_lrs) < 2
    (claim,) = lr_exp.check(a)
    assert claim.evidence and claim.setup
    assert "sampling floor" in lr_exp.summary_markdown(a)
    from cca_lib import plotting

    for fig in (lr_exp.plot_clustermap(a, "PWCCA"), lr_exp.plot_clustermap(a, "linear CKA"),
                lr_exp.plot_continuum(a)):
        # no wider than the book's column, no text under plotting.MIN_FONT_PX there
        assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN + 1e-9
        points, text = plotting.smallest_text(fig)
        assert points * fig.dpi / 72 >= plotting.MIN_FONT_PX, (points, text)


def test_page_prose_states_no_result_and_no_private_references():
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "learning_rate.ipynb")
                    .read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for word in ("prototype", "feasibility", "thread", "earlier build", "shared/",
                 "quick profile)"):
        assert word not in text.lower(), word
    # results are generated from the run, never written into the page's prose
    assert not re.search(r"reproduces here|the clearest structure|in short:", text, re.I)
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "Markdown(lr_exp.summary_markdown(result))" in code
    assert not re.search(r"^\s*(if .*:\s*)?assert ", code, re.M)  # no verdict asserted
