"""cca_lib.stats: known answers, coverage, exact against brute force, the fast measure null
against the public functions, determinism per seed, and clear errors on bad input."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats

from cca_lib import FewSamplesWarning, compare, linear_cka, mean_cca, pwcca, stats, svcca


def clustered(seed: int, sizes=(4, 4), sep: float = 3.0):
    """A distance matrix between networks drawn around one center per group."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    pts = rng.standard_normal((labels.size, 3)) + sep * labels[:, None]
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1), labels


def random_dist(seed: int, m: int):
    pts = np.random.default_rng(seed).standard_normal((m, 4))
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1)


def layers(seed: int, n: int = 240, d1: int = 10, d2: int = 7, shared: int = 3):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, shared))
    x = z @ rng.standard_normal((shared, d1)) + rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((shared, d2)) + rng.standard_normal((n, d2))
    return x, y


# ----------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_coverage_on_normal_data(method):
    """About 95% of intervals over 200 seeded samples of n=30 cover the true mean."""
    rng = np.random.default_rng(0)
    covered = 0
    for rep in range(200):
        iv = stats.bootstrap_ci(rng.normal(1.0, 2.0, 30), n_boot=1000, seed=rep, method=method)
        assert iv.low <= iv.estimate <= iv.high
        covered += iv.low <= 1.0 <= iv.high
    assert 0.88 <= covered / 200 <= 0.99, covered


def test_bootstrap_ci_width_matches_standard_error():
    v = np.random.default_rng(1).normal(size=400)
    iv = stats.bootstrap_ci(v, seed=0, n_boot=4000)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert iv.estimate == pytest.approx(v.mean())


def test_bootstrap_ci_vectorized_equals_looped_statistic():
    v = np.random.default_rng(2).normal(size=40)
    groups = np.repeat(np.arange(8), 5)
    for kw in ({}, {"groups": groups}, {"method": "bca"}, {"groups": groups, "method": "bca"}):
        fast = stats.bootstrap_ci(v, seed=3, n_boot=300, **kw)
        slow = stats.bootstrap_ci(v, seed=3, n_boot=300, statistic=lambda a: float(np.mean(a)),
                                  **kw)
        assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12), kw
    med = stats.bootstrap_ci(v, seed=3, n_boot=300, statistic=np.median)
    med_slow = stats.bootstrap_ci(v, seed=3, n_boot=300, statistic=lambda a: np.median(a))
    assert (med.low, med.high) == (med_slow.low, med_slow.high)


def test_bootstrap_ci_groups_resample_clusters():
    """Values sharing a strong cluster effect: resampling clusters gives the honest (wider)
    interval; resampling values as if independent is too narrow."""
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(10), 20)
    v = rng.normal(size=10)[groups] + 0.1 * rng.normal(size=groups.size)
    naive = stats.bootstrap_ci(v, seed=0)
    clustered_iv = stats.bootstrap_ci(v, seed=0, groups=groups)
    assert (clustered_iv.high - clustered_iv.low) > 3 * (naive.high - naive.low)


def test_bootstrap_ci_is_deterministic_per_seed_and_frozen():
    v = np.random.default_rng(5).normal(size=25)
    a, b = stats.bootstrap_ci(v, seed=7), stats.bootstrap_ci(v, seed=7)
    assert a == b
    assert stats.bootstrap_ci(v, seed=8) != a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.low = 0.0  # type: ignore[misc]


def test_bootstrap_diff_ci_paired_and_unpaired():
    rng = np.random.default_rng(6)
    base = rng.normal(size=20) * 5  # large unit-to-unit spread, shared by a and b
    a = base + 0.5 + 0.1 * rng.normal(size=20)
    b = base + 0.1 * rng.normal(size=20)
    paired = stats.bootstrap_diff_ci(a, b, paired=True, seed=0)
    unpaired = stats.bootstrap_diff_ci(a, b, seed=0)
    assert paired.estimate == pytest.approx(0.5, abs=0.1)
    assert stats.excludes_zero(paired)  # pairing removes the shared spread
    assert not stats.excludes_zero(unpaired)
    bca = stats.bootstrap_diff_ci(a, b, paired=True, seed=0, method="bca")
    assert stats.excludes_zero(bca)


def test_bootstrap_diff_ci_equal_groups_rarely_exclude_zero():
    rng = np.random.default_rng(7)
    hits = sum(stats.excludes_zero(stats.bootstrap_diff_ci(rng.normal(size=15),
                                                           rng.normal(size=12), n_boot=500,
                                                           seed=s))
               for s in range(40))
    assert hits <= 6


def test_bootstrap_measure_interval_and_groups():
    x, y = layers(8, n=400)
    iv = stats.bootstrap_measure(x, y, "linear CKA", n_boot=60, seed=0)
    assert iv.estimate == pytest.approx(linear_cka(x, y))
    assert iv.low < iv.estimate < iv.high
    groups = np.repeat(np.arange(80), 5)
    gi = stats.bootstrap_measure(x, y, "PWCCA", n_boot=30, seed=0, groups=groups)
    same = stats.bootstrap_measure(x, y, lambda a, b: pwcca(a, b), n_boot=30, seed=0,
                                   groups=groups)
    assert (gi.low, gi.high) == pytest.approx((same.low, same.high), abs=1e-12)


# ----------------------------------------------------------------------------- permutation tests


def test_permutation_test_separated_groups_exact():
    rng = np.random.default_rng(9)
    v = np.r_[rng.normal(3, 0.1, 5), rng.normal(0, 0.1, 5)]
    labels = ["a"] * 5 + ["b"] * 5
    res = stats.permutation_test(v, labels, seed=0)
    assert res.exact and res.n_perm == math.comb(10, 5)
    assert res.p_value == pytest.approx(2 / 252)  # only the observed split and its mirror
    assert stats.permutation_test(v, labels, seed=0, alternative="greater").p_value == 1 / 252
    assert stats.permutation_test(v, labels, seed=0, alternative="less").p_value == 1.0


def test_permutation_test_matches_scipy_exact():
    rng = np.random.default_rng(10)
    a, b = rng.normal(0.8, 1, 6), rng.normal(0, 1, 5)
    ours = stats.permutation_test(np.r_[a, b], [0] * 6 + [1] * 5, seed=0, alternative="greater")
    ref = scipy.stats.permutation_test((a, b), lambda p, q: np.mean(p) - np.mean(q),
                                       n_resamples=np.inf, alternative="greater")
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert ours.statistic == pytest.approx(ref.statistic)


def test_permutation_test_exchangeable_p_values_are_not_all_small():
    rng = np.random.default_rng(11)
    ps = np.array([stats.permutation_test(rng.normal(size=30), np.repeat([0, 1], 15),
                                          n_perm=499, seed=s).p_value for s in range(40)])
    assert (ps < 0.05).mean() <= 0.15
    assert 0.3 < ps.mean() < 0.7  # about uniform


def test_permutation_test_monte_carlo_and_custom_statistic():
    rng = np.random.default_rng(12)
    v = np.r_[rng.normal(1, 1, 20), rng.normal(0, 1, 20)]
    labels = np.repeat([0, 1], 20)
    res = stats.permutation_test(v, labels, n_perm=999, seed=0)
    assert not res.exact and res.n_perm == 999
    assert res.p_value >= 1 / 1000  # the +1 correction: never 0
    same = stats.permutation_test(v, labels, n_perm=999, seed=0,
                                  statistic=lambda a, lab: a[lab == 0].mean() - a[lab == 1].mean())
    np.testing.assert_allclose(same.null, res.null, atol=1e-12)
    assert same.p_value == res.p_value
    assert not np.array_equal(stats.permutation_test(v, labels, n_perm=999, seed=1).null,
                              res.null)


def test_group_distance_test_clusters_and_no_clusters():
    dist, labels = clustered(13)
    res = stats.group_distance_test(dist, labels, seed=0)
    assert res.exact and res.n_perm == math.comb(8, 4)
    assert res.statistic > 0 and res.p_value == pytest.approx(2 / 70)  # the split and its mirror
    ps = [stats.group_distance_test(random_dist(s, 10), np.repeat([0, 1], 5), n_perm=199,
                                    seed=s).p_value for s in range(20)]
    assert np.mean(np.array(ps) < 0.05) <= 0.2 and np.mean(ps) > 0.25


def test_group_distance_test_label_pair_contrast_matches_brute_force():
    dist, labels = clustered(14, sizes=(3, 4), sep=1.0)
    names = np.array(["gen", "mem"])[labels]
    contrast = (("mem", "mem"), ("gen", "gen"))
    res = stats.group_distance_test(dist, names, contrast=contrast, seed=0,
                                    alternative="less")
    iu = np.triu_indices(7, 1)

    def stat(lab):
        mm = [dist[i, j] for i, j in zip(*iu, strict=True) if lab[i] == lab[j] == "mem"]
        gg = [dist[i, j] for i, j in zip(*iu, strict=True) if lab[i] == lab[j] == "gen"]
        return np.mean(mm) - np.mean(gg)

    null = sorted(stat(np.array(["gen" if k in c else "mem" for k in range(7)]))
                  for c in itertools.combinations(range(7), 3))
    np.testing.assert_allclose(np.sort(res.null), null, atol=1e-12)
    assert res.statistic == pytest.approx(stat(names))
    assert res.p_value == pytest.approx(np.mean(np.array(null) <= res.statistic + 1e-12))


def test_group_distance_ci_and_bootstrap_pairs():
    dist, labels = clustered(15, sizes=(6, 6))
    iv = stats.group_distance_ci(dist, labels, seed=0, n_boot=400)
    assert stats.excludes_zero(iv) and iv.low > 0
    flat = np.ones((6, 6)) * 2.0
    const = stats.bootstrap_pairs(flat, seed=0, n_boot=200)
    assert (const.estimate, const.low, const.high) == (2.0, 2.0, 2.0)
    d = random_dist(16, 12)
    pm = stats.bootstrap_pairs(d, seed=0, n_boot=300)
    assert pm.estimate == pytest.approx(d[np.triu_indices(12, 1)].mean())
    assert pm.low < pm.estimate < pm.high
    assert stats.bootstrap_pairs(d, seed=0, n_boot=300) == pm


def test_bootstrap_pairs_never_uses_a_network_against_itself():
    dist = random_dist(17, 5)
    seen = []

    def statistic(d, idx):
        same = idx[:, None] == idx[None, :]
        assert np.isnan(d[same]).all() and np.isfinite(d[~same]).all()
        seen.append(idx)
        return stats.pair_mean(d, idx)

    stats.bootstrap_pairs(dist, statistic, seed=0, n_boot=50)
    assert any(len(set(i.tolist())) < 5 for i in seen)  # duplicates happened and were masked


def test_mantel_identical_independent_and_exact():
    d = random_dist(18, 9)
    same = stats.mantel(d, d, seed=0, n_perm=999)
    assert same.statistic == pytest.approx(1.0)
    assert same.p_value == pytest.approx(2 / 1000) and not same.exact
    ps = [stats.mantel(random_dist(s, 9), random_dist(100 + s, 9), n_perm=199, seed=s).p_value
          for s in range(20)]
    assert np.mean(np.array(ps) < 0.05) <= 0.2 and np.mean(ps) > 0.25
    small = stats.mantel(random_dist(19, 6), random_dist(20, 6), seed=0, method="pearson")
    assert small.exact and small.n_perm == math.factorial(6)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_mantel_null_matches_brute_force(method):
    a, b = random_dist(21, 5), random_dist(22, 5)
    res = stats.mantel(a, b, method=method, seed=0)
    iu = np.triu_indices(5, 1)
    corr = scipy.stats.spearmanr if method == "spearman" else scipy.stats.pearsonr
    null = [corr(a[iu], b[np.ix_(p, p)][iu])[0] for p in itertools.permutations(range(5))]
    np.testing.assert_allclose(res.null, null, atol=1e-12)
    assert res.statistic == pytest.approx(corr(a[iu], b[iu])[0])


# ----------------------------------------------------------------------------- measure nulls

PUBLIC = {
    "mean CCA": mean_cca,
    "SVCCA": svcca,
    "PWCCA": pwcca,
    "PWCCA (symmetric)": lambda x, y: pwcca(x, y, symmetric=True),
    "linear CKA": linear_cka,
}


@pytest.mark.filterwarnings("ignore::cca_lib.FewSamplesWarning")  # groups: few inputs
@pytest.mark.parametrize("name", stats.MEASURES)
def test_permutation_null_fast_path_equals_public_functions(name):
    """The fast path (fixed x'x, y'y; only x'y recomputed) against the public function on the
    permuted data, permutation by permutation."""
    x, y = layers(23)
    fast = stats.permutation_null(x, y, name, n_perm=40, seed=1)
    slow = stats.permutation_null(x, y, PUBLIC[name], n_perm=40, seed=1)
    np.testing.assert_allclose(fast.null, slow.null, rtol=0, atol=1e-10)
    assert fast.statistic == pytest.approx(compare(x, y)[name], abs=1e-12)
    groups = np.repeat(np.arange(48), 5)
    gfast = stats.permutation_null(x, y, name, n_perm=30, seed=2, groups=groups)
    gslow = stats.permutation_null(x, y, PUBLIC[name], n_perm=30, seed=2, groups=groups)
    np.testing.assert_allclose(gfast.null, gslow.null, rtol=0, atol=1e-10)


def test_permutation_null_fast_path_rank_deficient_and_svcca_int_keep():
    x, y = layers(24, d1=8)
    x = np.c_[x, x[:, :2] + x[:, 2:4], np.full(len(x), 3.0)]  # two dependent, one dead neuron
    for name, f in (("PWCCA (symmetric)", PUBLIC["PWCCA (symmetric)"]),
                    ("mean CCA", mean_cca)):
        fast = stats.permutation_null(x, y, name, n_perm=20, seed=0)
        slow = stats.permutation_null(x, y, f, n_perm=20, seed=0)
        np.testing.assert_allclose(fast.null, slow.null, rtol=0, atol=1e-10)
    fast = stats.permutation_null(x, y, "SVCCA", keep=4, n_perm=20, seed=0)
    slow = stats.permutation_null(x, y, lambda a, b: svcca(a, b, 4), n_perm=20, seed=0)
    np.testing.assert_allclose(fast.null, slow.null, rtol=0, atol=1e-10)


def test_permutation_null_float32_inputs_follow_the_public_functions():
    x, y = (a.astype(np.float32) for a in layers(28))
    for name in ("PWCCA", "SVCCA", "linear CKA"):
        fast = stats.permutation_null(x, y, name, n_perm=20, seed=0)
        slow = stats.permutation_null(x, y, PUBLIC[name], n_perm=20, seed=0)
        np.testing.assert_allclose(fast.null, slow.null, rtol=0, atol=1e-5)


def test_permutation_null_related_and_unrelated():
    x, y = layers(25)
    res = stats.permutation_null(x, y, "PWCCA", n_perm=199, seed=0)
    assert res.p_value == pytest.approx(1 / 200) and res.floor < res.statistic
    rng = np.random.default_rng(26)
    ps = [stats.permutation_null(rng.standard_normal((150, 5)), rng.standard_normal((150, 4)),
                                 "mean CCA", n_perm=99, seed=s).p_value for s in range(20)]
    assert np.mean(np.array(ps) < 0.05) <= 0.2 and np.mean(ps) > 0.25


@pytest.mark.filterwarnings("ignore::cca_lib.FewSamplesWarning")  # groups: few inputs
def test_permutation_null_exact_over_few_groups():
    x, y = layers(27, n=250)
    groups = np.repeat(np.arange(5), 50)  # 5 inputs of 50 rows each: 5! = 120 orderings
    res = stats.permutation_null(x, y, "linear CKA", n_perm=200, seed=0, groups=groups,
                                 allow_few_samples=True)
    assert res.exact and res.n_perm == 120
    assert res.null.max() == pytest.approx(res.statistic)  # the identity is among them
    assert res.p_value == pytest.approx(1 / 120)


def test_permutation_nulls_share_permutations_fast_and_chunked():
    """Every name of NULL_MEASURES under the same permutations: the one-setup fast path equals
    each public function on the permuted data, and the chunked accumulator path (memory
    independent of n) equals the fast path, also over groups."""
    x, y = layers(33, n=300)
    public = {**PUBLIC, "PWCCA (reverse)": lambda a, b: pwcca(b, a),
              "debiased CKA": lambda a, b: linear_cka(a, b, debiased=True)}
    fast = stats.permutation_nulls(x, y, n_perm=12, seed=4)
    assert tuple(fast) == stats.NULL_MEASURES
    chunked = stats.permutation_nulls(x, y, n_perm=12, seed=4, chunk_rows=37)
    for name in stats.NULL_MEASURES:
        slow = stats.permutation_null(x, y, public[name], n_perm=12, seed=4)
        np.testing.assert_allclose(fast[name].null, slow.null, rtol=0, atol=1e-10)
        np.testing.assert_allclose(chunked[name].null, slow.null, rtol=0, atol=1e-10)
        assert fast[name].statistic == pytest.approx(slow.statistic, abs=1e-12)
        assert chunked[name].statistic == pytest.approx(slow.statistic, abs=1e-10)
        one = stats.permutation_null(x, y, name, n_perm=12, seed=4)
        np.testing.assert_allclose(one.null, fast[name].null, rtol=0, atol=1e-12)
    groups = np.repeat(np.arange(60), 5)
    g1 = stats.permutation_nulls(x, y, ("SVCCA", "debiased CKA"), n_perm=6, seed=1,
                                 groups=groups)
    g2 = stats.permutation_nulls(x, y, ("SVCCA", "debiased CKA"), n_perm=6, seed=1,
                                 groups=groups, chunk_rows=64)
    for name in g1:
        np.testing.assert_allclose(g1[name].null, g2[name].null, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="measures must be names in"):
        stats.permutation_nulls(x, y, ("CKA",), seed=0)
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        stats.permutation_nulls(x, y, seed=0, chunk_rows=0)


def test_fast_path_takes_the_rank_rule_from_similarity():
    """A neuron 1e-7 times the others' scale carries the signal: similarity's rank rule decides
    on the correlation matrix and keeps it; a cut on the covariance's eigenvalues would drop it
    (variance 1e-14 of the largest, below rtol**2 = 1e-12). The fast null must follow the
    public functions."""
    x, y = layers(31, d1=6)
    x = x.copy()
    x[:, 0] *= 1e-7
    x[:, 0] += 1e-7 * y[:, 0]  # the tiny neuron is the related one
    for name in ("mean CCA", "PWCCA", "SVCCA"):
        fast = stats.permutation_null(x, y, name, n_perm=15, seed=3)
        slow = stats.permutation_null(x, y, PUBLIC[name], n_perm=15, seed=3)
        np.testing.assert_allclose(fast.null, slow.null, rtol=0, atol=1e-10)
    # no second copy of similarity's private code
    for copy in ("_eig_whitener", "_kept", "_DEFAULT_RTOL_F64", "_DEFAULT_RTOL_F32"):
        assert not hasattr(stats, copy), copy


def test_few_samples_warning_reports_the_floor_of_unrelated_data():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 100)), rng.standard_normal((300, 120))
    with pytest.warns(FewSamplesWarning) as seen:
        mean_cca(x, y)
    msg = str(seen[0].message)
    assert "only 300 samples for 120 features" in msg and "biased upward" in msg
    assert "with n=300 samples and d1=100, d2=120, unrelated Gaussian data" in msg
    for name in ("mean CCA", "PWCCA", "SVCCA", "linear CKA"):
        assert f"{name} ~ {stats.expected_null(300, 100, 120, measure=name):.2f}" in msg, name
    assert seen[0].filename == __file__  # points at the caller
    with pytest.warns(FewSamplesWarning, match=r"n=200 <= d1 \+ d2 = 220 samples.*exactly 1"):
        mean_cca(x[:200], y[:200], allow_few_samples=True)


def test_groups_count_inputs_for_the_few_samples_warning():
    x, y = layers(32, n=600, d1=8, d2=6)
    groups = np.repeat(np.arange(30), 20)  # 30 inputs of 20 rows: < 5 per feature
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewSamplesWarning)
        stats.permutation_null(x, y, "mean CCA", n_perm=5, seed=0)  # 600 rows: no warning
    for call in (lambda: stats.permutation_null(x, y, "mean CCA", n_perm=5, seed=0,
                                                groups=groups),
                 lambda: stats.bootstrap_measure(x, y, "mean CCA", n_boot=3, seed=0,
                                                 groups=groups)):
        with pytest.warns(FewSamplesWarning,
                          match=r"only 30 independent inputs \(600 rows\).*with n=30 samples") as w:
            call()
        assert w[0].filename == __file__


# ----------------------------------------------------------------------------- closed-form floors


@pytest.mark.filterwarnings("ignore::cca_lib.FewSamplesWarning")
@pytest.mark.parametrize("n,d1,d2", [(200, 10, 10), (400, 20, 40), (500, 100, 100),
                                     (300, 100, 150)])
def test_expected_null_matches_simulated_gaussian_nulls(n, d1, d2):
    """The closed form against the mean over 4 independent Gaussian pairs of each one's
    permutation null (40 permutations): within 3% for every measure."""
    rng = np.random.default_rng(n + d1 + d2)
    sims = {name: [] for name in stats.MEASURES}
    for rep in range(4):
        x, y = rng.standard_normal((n, d1)), rng.standard_normal((n, d2))
        for name in stats.MEASURES:
            sims[name].append(stats.permutation_null(x, y, name, n_perm=40, seed=rep).floor)
    expected = stats.expected_floors(n, d1, d2)
    for name in stats.MEASURES:
        assert expected[name] == pytest.approx(np.mean(sims[name]), rel=0.03), name


def test_expected_null_needs_only_one_gaussian_input():
    """mean CCA and PWCCA of a skewed, anisotropic x against independent Gaussian y: the same
    closed form (y's law is invariant under rotations of the sample space)."""
    rng = np.random.default_rng(30)
    x = rng.exponential(size=(400, 15)) ** 2 * np.geomspace(0.1, 10, 15)
    got = {"mean CCA": [], "PWCCA": []}
    for rep in range(6):
        y = rng.standard_normal((400, 25)) @ rng.standard_normal((25, 25))
        for name in got:
            got[name].append(stats.permutation_null(x, y, name, n_perm=20, seed=rep).floor)
    for name, vals in got.items():
        assert np.mean(vals) == pytest.approx(stats.expected_null(400, 15, 25), rel=0.03), name


def test_expected_null_known_values():
    # E[rho^2] = q/m exactly, so q/m = E[rho^2] < E[rho] < sqrt(E[rho^2]) (Jensen)
    val = stats.expected_null(1001, 50, 50)
    assert 50 / 1000 < val < math.sqrt(50 / 1000)
    assert stats.expected_null(1001, 50, 50, measure="linear CKA") == pytest.approx(50 / 1051)
    assert stats.expected_null(300, 10, 20) > stats.expected_null(3000, 10, 20)
    assert stats.expected_null(300, 10, 20) == stats.expected_null(300, 20, 10)
    assert stats.expected_null(300, 30, 30, measure="SVCCA", keep=5) == stats.expected_null(
        300, 5, 5)


# ----------------------------------------------------------------------------- bad input


def test_seed_is_required_and_checked():
    v = np.arange(5.0)
    d = random_dist(0, 5)
    x, y = layers(0)
    calls = [
        lambda s: stats.bootstrap_ci(v, seed=s),
        lambda s: stats.bootstrap_diff_ci(v, v, seed=s),
        lambda s: stats.bootstrap_pairs(d, seed=s),
        lambda s: stats.group_distance_test(d, [0, 0, 1, 1, 1], seed=s),
        lambda s: stats.group_distance_ci(d, [0, 0, 1, 1, 1], seed=s),
        lambda s: stats.permutation_test(v, [0, 0, 1, 1, 1], seed=s),
        lambda s: stats.mantel(d, d, seed=s),
        lambda s: stats.permutation_null(x, y, "PWCCA", seed=s),
        lambda s: stats.bootstrap_measure(x, y, "PWCCA", seed=s),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="seed must be an int.*None"):
            call(None)
        with pytest.raises(TypeError, match="seed"):
            call(1.5)
        with pytest.raises(TypeError, match="seed"):
            call(True)
        with pytest.raises(ValueError, match="seed must be >= 0"):
            call(-1)


def test_bad_inputs_name_the_argument():
    d = random_dist(0, 5)
    x, y = layers(0)
    cases = [
        (ValueError, "values must be 1-D", lambda: stats.bootstrap_ci(np.ones((3, 2)), seed=0)),
        (ValueError, "values contains NaN", lambda: stats.bootstrap_ci([1.0, np.nan], seed=0)),
        (TypeError, "values must hold real", lambda: stats.bootstrap_ci([True, False], seed=0)),
        (ValueError, "at least 2 values", lambda: stats.bootstrap_ci([1.0], seed=0)),
        (ValueError, "level must be in", lambda: stats.bootstrap_ci([1.0, 2], level=95,
                                                                   seed=0)),
        (ValueError, "n_boot must be >= 2", lambda: stats.bootstrap_ci([1.0, 2], n_boot=1,
                                                                      seed=0)),
        (ValueError, "method must be one of", lambda: stats.bootstrap_ci([1.0, 2], seed=0,
                                                                        method="basic")),
        (ValueError, "groups must be 1-D", lambda: stats.bootstrap_ci([1.0, 2, 3], seed=0,
                                                                     groups=[0, 1])),
        (TypeError, "statistic must be callable", lambda: stats.bootstrap_ci(
            [1.0, 2], statistic="mean", seed=0)),
        (TypeError, "statistic must return a real scalar", lambda: stats.bootstrap_ci(
            [1.0, 2], statistic=lambda a: a, seed=0)),
        (ValueError, "equal length", lambda: stats.bootstrap_diff_ci([1.0, 2], [1.0, 2, 3],
                                                                    paired=True, seed=0)),
        (ValueError, "labels must be 1-D", lambda: stats.permutation_test([1.0, 2, 3], [0, 1],
                                                                         seed=0)),
        (ValueError, "exactly 2 groups", lambda: stats.permutation_test([1.0, 2, 3], [0, 1, 2],
                                                                       seed=0)),
        (ValueError, "alternative must be one of", lambda: stats.permutation_test(
            [1.0, 2], [0, 1], seed=0, alternative="two_sided")),
        (ValueError, "n_perm must be >= 1", lambda: stats.permutation_test([1.0, 2], [0, 1],
                                                                          n_perm=0, seed=0)),
        (ValueError, "statistic is nan on dist itself", lambda: stats.bootstrap_pairs(
            d, lambda m, i: float("nan"), seed=0)),
        (ValueError, "dist must be a square", lambda: stats.bootstrap_pairs(np.ones((3, 4)),
                                                                           seed=0)),
        (ValueError, "dist must be symmetric", lambda: stats.group_distance_test(
            d + np.triu(np.ones((5, 5)), 1), [0, 0, 1, 1, 1], seed=0)),
        (ValueError, "contrast label 'x' is not among", lambda: stats.group_distance_test(
            d, [0, 0, 1, 1, 1], contrast=(("x", "x"), "within"), seed=0)),
        (ValueError, "d1 and d2 must be over the same nodes", lambda: stats.mantel(
            d, random_dist(1, 6), seed=0)),
        (ValueError, "d2 is constant", lambda: stats.mantel(d, np.ones((5, 5)), seed=0)),
        (ValueError, "method must be one of", lambda: stats.mantel(d, d, method="kendall",
                                                                  seed=0)),
        (ValueError, "measure must be a callable", lambda: stats.permutation_null(
            x, y, "pwcca", seed=0)),
        (ValueError, "x has 240 rows but y has 239", lambda: stats.permutation_null(
            x, y[1:], "PWCCA", seed=0)),
        (ValueError, "groups of equal size", lambda: stats.permutation_null(
            x, y, "PWCCA", seed=0, groups=np.r_[np.zeros(100), np.ones(140)])),
        (ValueError, "n=30 <= d1 \\+ d2", lambda: stats.expected_null(30, 20, 10)),
        (ValueError, "measure must be one of", lambda: stats.expected_null(300, 20, 10,
                                                                          measure="CKA")),
        (TypeError, "n must be an int", lambda: stats.expected_null(300.0, 20, 10)),
        (TypeError, "interval must be an Interval", lambda: stats.excludes_zero((0.1, 0.2))),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match):
            call()


def test_stats_imports_neither_torch_nor_pandas():
    import subprocess
    import sys

    code = ("import sys, cca_lib.stats; "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_permutation_null_on_torch_tensors():
    torch = pytest.importorskip("torch")
    x, y = layers(29)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    ref = stats.permutation_null(x, y, "PWCCA", n_perm=10, seed=0)
    fast = stats.permutation_null(tx, ty, "PWCCA", n_perm=10, seed=0)
    slow = stats.permutation_null(tx, ty, lambda a, b: pwcca(a, b), n_perm=10, seed=0)
    np.testing.assert_allclose(fast.null, ref.null, atol=1e-12)
    np.testing.assert_allclose(slow.null, ref.null, atol=1e-10)
