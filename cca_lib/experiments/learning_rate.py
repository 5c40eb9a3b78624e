"""Chapter: networks trained with different learning rates (the paper's Fig. 5, claim C7).

A sweep of identical CNNs (:func:`cca_lib.models.make_cnn`) over learning rates x seeds. Every
network gets its OWN seed (weights and minibatch order): with one seed shared across learning
rates, the nets that share a seed resemble each other in the early layers and the distance
matrix clusters by seed rather than by learning rate. We then

1. capture one layer of every net on the same probe images (each channel averaged over space,
   float64), and judge each net by :func:`cca_lib.analysis.trained`;
2. compute the symmetric PWCCA distance and the linear-CKA distance (``1 - CKA``) between every
   pair of nets, in one pass per pair (:func:`cca_lib.compare`), and the sampling floor of
   both (:func:`cca_lib.stats.permutation_null`: one net's layer against another's with the
   probe rows shuffled);
3. keep the nets of *similar accuracy* (the paper's claim: within :data:`ACC_WINDOW` of the best
   net's test accuracy; a learning rate stays if at least :data:`MIN_NETS_PER_LR` of its nets
   do) and analyse their distance matrix, and the whole sweep's for comparison
   (:func:`analyze`):

   * the continuum: a Mantel test (:func:`cca_lib.stats.mantel`) of the distance matrix against
     ``|log10 lr_i - log10 lr_j|``, with a bootstrap interval over networks
     (:func:`cca_lib.stats.bootstrap_pairs`);
   * the clusters: average-linkage clustering cut into the number of clusters with the largest
     mean silhouette among the valid cuts (no cluster smaller than ``min_cluster_size``; there
     may be none), a node-label permutation test that nets of one learning rate are closer
     than nets of different ones (:func:`cca_lib.stats.group_distance_test`, with its interval
     from :func:`cca_lib.stats.group_distance_ci`), the adjusted Rand index of the clusters
     with the learning rates, and whether each learning rate's nets share one cluster and each
     cluster covers a contiguous range of learning rates.

Only the discrete clusters decide C7 (the paper's claim, :func:`verdict`); the continuum is
reported beside them.

The silhouette and the adjusted Rand index are :func:`cca_lib.analysis.silhouette` and
:func:`cca_lib.analysis.adjusted_rand_index` (numpy, no scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from cca_lib import _checks, analysis, executors, models, plotting, stats, training
from cca_lib.claims import NOT_TESTABLE, Claim, Criterion, status, yes_no
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    arch_param,
    optimizer_param,
    param,
    rule,
    scheduler_param,
)
from cca_lib.similarity import compare

#: Layers of the default (4-conv) net that can be compared (:func:`cca_lib.models.make_cnn`).
LAYERS = tuple(models.cnn_layer_widths())
#: The two distances compared: (name, key of :func:`cca_lib.compare`); distance = 1 - similarity.
MEASURES = (("PWCCA", "PWCCA (symmetric)"), ("linear CKA", "linear CKA"))
#: The two sets of nets analysed: the nets of similar accuracy (judged) and the whole sweep.
NET_SETS = ("similar accuracy", "all nets")
#: Layers of every CNN layout, the names ``layer`` may hold (checked against ``arch``).
ALL_LAYERS = tuple(dict.fromkeys(name for arch in models.CNN_LAYOUTS
                                 for name in models.cnn_layer_widths(1, arch=arch)))


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Learning-rate sweep parameters. Defaults are the quick profile."""

    learning_rates: tuple[float, ...] = param(
        (0.015, 0.05, 0.15, 0.4, 1.0), "peak SGD learning rates", '"various", values not given',
        check=rule(_checks.reals, gt=0, min_len=2, distinct=True))
    n_seeds: int = param(4, "networks per learning rate, each with its own seed (at least two "
                         "to form a group)", "200 nets in all",
                         check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    width: int = param(8, "channels of conv1; the net has w, 2w, 2w, 4w",
                       "an 11-layer net, 64..512 filters", check=UNITS)
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)
    train_size: int = param(10_000, "training images, the first ones of the training split",
                            "all 50k CIFAR-10 images", check=SAMPLES)
    epochs: float = param(4.0, "training epochs, SGD + momentum, cosine schedule", "not stated",
                          check=EPOCHS)
    batch_size: int = param(128, "minibatch size", check=BATCH)
    layer: str = param("conv4", "the compared layer", "layer 8 of 11",
                       check=rule(_checks.text, choices=ALL_LAYERS))
    probe_split: str = param("test", 'images the distances are computed on: "train" or "test"',
                             "not stated", check=rule(_checks.text, choices=("train", "test")))
    probe_size: int = param(2000, "number of probe images (the first ones of that split)",
                            check=SAMPLES)
    max_clusters: int = param(8, "the silhouette search tries 2 .. max_clusters clusters",
                              check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    min_cluster_size: int = param(2, "a cut that leaves a cluster smaller than this (an outlier "
                                  "net) is not a candidate", check=POSITIVE_COUNT)
    seed: int = param(0, "net i of the sweep (learning-rate major) gets seed + i; the "
                      "permutation tests and bootstraps derive their seeds from it", check=SEED)
    arch: str = arch_param("an 11-layer net")
    optimizer: str = optimizer_param("Adam")
    scheduler: str | None = scheduler_param()

    def _validate(self) -> None:
        known = models.cnn_layer_widths(1, arch=self.arch)
        if self.layer not in known:
            raise ValueError(f"layer={self.layer!r} is not a layer of arch={self.arch!r}: "
                             f"{list(known)}")
        n_feat = self.n_features
        if self.probe_size < 10 * n_feat:
            raise ValueError(f"probe_size must be an int >= 10 x the {n_feat} features of "
                             f"{self.layer} (the CCA sampling floor), got {self.probe_size!r}")
        n_nets = len(self.learning_rates) * self.n_seeds
        if not 2 <= self.max_clusters < n_nets:
            raise ValueError(f"max_clusters must be an int in [2, {n_nets - 1}] for {n_nets} "
                             f"nets, got {self.max_clusters!r}")
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")

    @property
    def n_features(self) -> int:
        """Features of the compared layer (channels, or 10 classes for the logits)."""
        return models.cnn_layer_widths(self.width, arch=self.arch)[self.layer]

    def train_configs(self) -> list[training.CNNTrainConfig]:
        """One training config per net, learning-rate major; net i has seed ``seed + i``."""
        out = []
        for i, (lr, _) in enumerate((lr, s) for lr in self.learning_rates
                                    for s in range(self.n_seeds)):
            out.append(training.CNNTrainConfig(
                dataset=self.dataset, width=self.width, train_size=self.train_size,
                epochs=self.epochs, batch_size=self.batch_size, lr=lr, seed=self.seed + i,
                arch=self.arch, optimizer=self.optimizer))
        return out


# ---------------------------------------------------------------------------------------------
# Criteria (claim C7), fixed before the run
# ---------------------------------------------------------------------------------------------

#: Similar accuracy (the paper's claim): a net counts if its test accuracy is within this of
#: the best net's (2 points) ...
ACC_WINDOW = 0.02
#: ... and a learning rate stays in the judged set if at least this many of its nets do (a
#: group needs two nets to have a within-group distance).
MIN_NETS_PER_LR = 2
#: Fewer learning rates left than this: the claim cannot be tested on nets of similar accuracy
#: (two learning rates make one gap, not an ordering nor a set of clusters).
MIN_LRS = 3
#: The continuum, reported beside the verdict (it does not decide C7): an ordering is strong
#: when the Mantel correlation (Spearman) of the distance matrix with the log-learning-rate gap
#: is at least this, with its permutation p-value below ``P_MAX``.
MANTEL_MIN = 0.5
#: Every permutation test's p-value must be below this (the issue's directional rule).
P_MAX = 0.05
#: Discrete clusters (these decide C7, :func:`verdict`): the node-label permutation test that
#: nets of one learning rate are closer than nets of different ones, p below ``P_MAX``; a
#: valid cut exists (at least ``MIN_CLUSTERS`` clusters, none smaller than
#: ``Config.min_cluster_size``); and the three cut criteria on it: mean silhouette at least
#: ``SILHOUETTE_MIN`` ("weak" structure or better, Rousseeuw's reading), every learning rate's
#: nets in one cluster, every cluster a contiguous range of learning rates.
SILHOUETTE_MIN = 0.25
MIN_CLUSTERS = 2
#: C7 holds if every discrete-cluster criterion passes; partly if the node-label test passes,
#: a valid cut exists and at least this many of the three cut criteria pass; does not hold
#: otherwise.
PARTLY_MIN_CUT_CRITERIA = 1
#: Permutations of the Mantel and node-label tests, and node-bootstrap resamples of the
#: intervals (95%).
N_PERM = 9999
N_BOOT = 2000
LEVEL = 0.95
#: Row permutations of each sampling-floor estimate (one net's layer against another's).
FLOOR_PERMS = 200
#: A pair distance counts as near the sampling floor when it is at least this share of it.
NEAR_FLOOR = 0.9


def _seed(config: Config, *stream: int) -> int:
    """An int seed for one statistical stream, derived from ``config.seed``."""
    return analysis.derived_seed(config.seed, *stream)


# ---------------------------------------------------------------------------------------------
# Analysis of one distance matrix
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """The continuum and cluster statistics of one distance matrix over a set of nets."""

    measure: str  #: "PWCCA" or "linear CKA"
    nets: tuple[int, ...]  #: the analysed nets (rows of Result.nets)
    lrs: np.ndarray  #: their learning rates
    distances: np.ndarray  #: (m, m) distances between them
    linkage: np.ndarray  #: scipy average-linkage matrix
    silhouettes: dict[int, float]  #: number of clusters -> mean silhouette
    eligible: tuple[int, ...]  #: cluster counts whose cut has no cluster below min_cluster_size
    #: the eligible number with the largest silhouette; 1 when no cut is eligible (no valid cut:
    #: every net in one cluster)
    n_clusters: int
    clusters: np.ndarray  #: (m,) cluster of each analysed net (1 .. n_clusters)
    #: that cut's silhouette, networks resampled (NaN without a valid cut)
    silhouette_ci: stats.Interval
    ari: float  #: adjusted Rand index between the clusters and the learning rates (NaN: no cut)
    ari_at_n_lrs: float  #: the same when the tree is cut into as many clusters as rates
    #: fraction of learning rates whose nets all share one cluster (NaN without a valid cut)
    lr_consistent: float
    lr_contiguous: bool  #: every cluster covers a contiguous range of rates (False: no cut)
    mantel_r: float  #: Mantel (Spearman) correlation with |log10 lr_i - log10 lr_j|
    mantel_p: float  #: its permutation p-value (nets relabelled; one-sided, r > 0)
    mantel_ci: stats.Interval  #: its interval, networks resampled
    within: float  #: mean distance between nets of the same learning rate
    between: float  #: mean distance between nets of different learning rates
    contrast_p: float  #: node-label permutation p-value of between - within > 0
    contrast_ci: stats.Interval  #: interval of between - within, nets resampled per rate

    @property
    def n_lrs(self) -> int:
        return int(np.unique(self.lrs).size)

    @property
    def valid_cut(self) -> bool:
        """Whether the chosen cut is a candidate: at least ``MIN_CLUSTERS`` clusters, none
        smaller than ``min_cluster_size`` (the cut counts in ``eligible``)."""
        return self.n_clusters >= MIN_CLUSTERS and self.n_clusters in self.eligible

    @property
    def silhouette(self) -> float:
        """The chosen cut's mean silhouette (NaN without a valid cut)."""
        return float(self.silhouettes[self.n_clusters]) if self.valid_cut else float("nan")


def _gap(lrs: np.ndarray) -> np.ndarray:
    logs = np.log10(np.asarray(lrs, dtype=np.float64))
    return np.abs(logs[:, None] - logs[None, :])


def _rank_corr(d: np.ndarray, g: np.ndarray) -> float:
    """Spearman correlation of the finite upper-triangle entries of ``d`` with ``g``'s (NaN when
    either is constant there)."""
    iu = np.triu_indices(d.shape[0], 1)
    v, w = d[iu], g[iu]
    ok = np.isfinite(v)
    v, w = v[ok], w[ok]
    if v.size < 3 or np.ptp(v) == 0 or np.ptp(w) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(v), rankdata(w))[0, 1])


def silhouette_nan(d: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (as :func:`cca_lib.analysis.silhouette`) of a distance matrix whose
    missing pairs are NaN (the diagonal, two copies of one net in a node bootstrap): means run
    over the finite entries, a net with no finite distance inside its cluster scores 0. NaN when
    fewer than 2 clusters are present."""
    labels = np.asarray(labels)
    names, codes = np.unique(labels, return_inverse=True)
    if names.size < 2:
        return float("nan")
    onehot = np.eye(names.size)[codes]
    finite = np.isfinite(d)
    sums = np.where(finite, d, 0.0) @ onehot
    counts = finite.astype(np.float64) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    rows = np.arange(labels.size)
    a = means[rows, codes]
    others = means.copy()
    others[rows, codes] = np.inf
    others[counts == 0] = np.inf
    b = others.min(axis=1)
    top = np.maximum(a, b)
    ok = (counts[rows, codes] > 0) & np.isfinite(b) & (top > 0)
    s = np.zeros(labels.size)
    s[ok] = (b[ok] - a[ok]) / top[ok]
    return float(s.mean())


def _cut(link: np.ndarray, dist: np.ndarray, max_clusters: int, min_cluster_size: int
         ) -> tuple[dict[int, float], list[int]]:
    sil, eligible = {}, []
    for k in range(2, max_clusters + 1):
        labels = hierarchy.fcluster(link, k, criterion="maxclust")
        if len(np.unique(labels)) != k:  # ties in the tree: this many clusters cannot be cut
            continue
        sil[k] = analysis.silhouette(dist, labels)
        if np.bincount(labels)[1:].min() >= min_cluster_size:  # labels are 1 .. k
            eligible.append(k)
    return sil, eligible


def analyze(dist: np.ndarray, lrs: np.ndarray, nets: tuple[int, ...] | None = None, *,
            measure: str, max_clusters: int, min_cluster_size: int, seed: int,
            n_perm: int = N_PERM, n_boot: int = N_BOOT) -> Analysis:
    """The continuum and cluster statistics of the ``(m, m)`` distance matrix ``dist`` between
    nets trained with learning rates ``lrs`` (at least 2 distinct, at least 4 nets). The cut
    search tries 2 .. ``min(max_clusters, m - 1)`` clusters; only a cut with no cluster smaller
    than ``min_cluster_size`` is a candidate, and with none the analysis has no valid cut (one
    cluster of every net; silhouette, adjusted Rand index and the share of rates in one cluster
    NaN, contiguous False). ``seed`` seeds the tests and bootstraps (one stream each)."""
    dist = np.asarray(dist, dtype=np.float64)
    lrs = np.asarray(lrs, dtype=np.float64)
    m = lrs.size
    if dist.shape != (m, m):
        raise ValueError(f"dist must be ({m}, {m}) for {m} learning rates, got {dist.shape}")
    if m < 4 or np.unique(lrs).size < 2:
        raise ValueError(f"analyze needs at least 4 nets of at least 2 learning rates, got lrs "
                         f"{lrs.tolist()}")
    nets = tuple(range(m)) if nets is None else tuple(int(i) for i in nets)
    seeds = np.random.SeedSequence(seed).generate_state(5)
    link = hierarchy.linkage(squareform(dist, checks=False), method="average")
    sil, eligible = _cut(link, dist, min(max_clusters, m - 1), min_cluster_size)
    if eligible:
        best = max(eligible, key=lambda k: (sil[k], -k))
        clusters = hierarchy.fcluster(link, best, criterion="maxclust")
    else:  # no valid cut: every net in one cluster
        clusters = np.ones(m, dtype=np.int32)
    uniq, lr_codes = np.unique(lrs, return_inverse=True)
    at_n_lrs = hierarchy.fcluster(link, min(uniq.size, m - 1), criterion="maxclust")
    order = np.argsort(lrs, kind="stable")
    runs_of = [clusters[order][0]]
    for c in clusters[order][1:]:
        if c != runs_of[-1]:
            runs_of.append(c)
    gap = _gap(lrs)
    mantel = stats.mantel(dist, gap, method="spearman", n_perm=n_perm, seed=int(seeds[0]),
                          alternative="greater")
    mantel_ci = stats.bootstrap_pairs(dist, lambda d, idx: _rank_corr(d, gap[np.ix_(idx, idx)]),
                                      n_boot=n_boot, level=LEVEL, seed=int(seeds[1]))
    contrast = stats.group_distance_test(dist, lrs, contrast=("between", "within"),
                                         n_perm=n_perm, seed=int(seeds[2]), alternative="greater")
    contrast_ci = stats.group_distance_ci(dist, lrs, contrast=("between", "within"),
                                          n_boot=n_boot, level=LEVEL, seed=int(seeds[3]))
    if eligible:
        sil_ci = stats.bootstrap_pairs(dist, lambda d, idx: silhouette_nan(d, clusters[idx]),
                                       n_boot=n_boot, level=LEVEL, seed=int(seeds[4]))
        ari = analysis.adjusted_rand_index(clusters, lr_codes)
        consistent = float(np.mean([np.unique(clusters[lrs == lr]).size == 1 for lr in uniq]))
        contiguous = len(runs_of) == len(set(runs_of))
    else:
        nan = float("nan")
        sil_ci = stats.Interval(nan, nan, nan, LEVEL, 0)
        ari, consistent, contiguous = nan, nan, False
    iu = np.triu_indices(m, 1)
    same = (lrs[:, None] == lrs[None, :])[iu]
    return Analysis(
        measure=measure, nets=nets, lrs=lrs, distances=dist, linkage=link, silhouettes=sil,
        eligible=tuple(eligible), n_clusters=int(np.unique(clusters).size), clusters=clusters,
        silhouette_ci=sil_ci, ari=ari,
        ari_at_n_lrs=analysis.adjusted_rand_index(at_n_lrs, lr_codes),
        lr_consistent=consistent, lr_contiguous=contiguous, mantel_r=float(mantel.statistic),
        mantel_p=float(mantel.p_value), mantel_ci=mantel_ci,
        within=float(dist[iu][same].mean()), between=float(dist[iu][~same].mean()),
        contrast_p=float(contrast.p_value), contrast_ci=contrast_ci)


# ---------------------------------------------------------------------------------------------
# Experiment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """Distances, floors, the nets of similar accuracy and their analyses for one sweep."""

    config: Config
    #: one row per net: net, lr, seed, test_acc, train_acc, converged, reason
    #: (:func:`cca_lib.analysis.nets_frame`), trained, trained_why
    #: (:func:`cca_lib.analysis.trained`), similar (within ACC_WINDOW of the best test
    #: accuracy), judged (similar, and its learning rate keeps MIN_NETS_PER_LR nets), cluster
    #: (in the PWCCA cut of all nets)
    nets: pd.DataFrame
    distances: np.ndarray  #: (k, k) symmetric PWCCA distances at config.layer, all nets
    cka_distances: np.ndarray  #: (k, k) linear-CKA distances (1 - CKA), all nets
    #: measure -> sampling-floor distance (1 - the mean similarity of FLOOR_PERMS row
    #: permutations), one per pair in floor_pairs
    floors: dict[str, np.ndarray]
    floor_pairs: tuple[tuple[int, int], ...]
    best_acc: float  #: the best net's test accuracy
    judged_lrs: tuple[float, ...]  #: learning rates left in the similar-accuracy set
    #: (measure, net set) -> Analysis, net set in NET_SETS; the similar-accuracy ones are
    #: absent when fewer than 2 learning rates are left
    analyses: dict[tuple[str, str], Analysis] = field(default_factory=dict)

    @property
    def testable(self) -> bool:
        """Whether at least MIN_LRS learning rates are left among nets of similar accuracy."""
        return len(self.judged_lrs) >= MIN_LRS

    def matrix(self, measure: str) -> np.ndarray:
        """The all-nets distance matrix of ``measure`` ("PWCCA" or "linear CKA")."""
        if measure not in dict(MEASURES):
            raise ValueError(f"measure must be one of {[m for m, _ in MEASURES]}, got "
                             f"{measure!r}")
        return self.distances if measure == "PWCCA" else self.cka_distances

    def floor(self, measure: str) -> float:
        """The mean sampling-floor distance of ``measure``."""
        return float(np.mean(self.floors[measure]))

    def to_frame(self) -> pd.DataFrame:
        """One row per pair of nets (i < j): lr_i, lr_j, log-LR gap, same_lr, judged (both nets
        in the similar-accuracy set), PWCCA distance, CKA distance."""
        rows = []
        lrs = self.nets["lr"].to_numpy()
        judged = self.nets["judged"].to_numpy()
        for i, j in combinations(range(len(lrs)), 2):
            rows.append({"i": i, "j": j, "lr_i": lrs[i], "lr_j": lrs[j],
                         "log_lr_gap": abs(np.log10(lrs[i]) - np.log10(lrs[j])),
                         "same_lr": bool(lrs[i] == lrs[j]),
                         "judged": bool(judged[i] and judged[j]),
                         "distance": self.distances[i, j],
                         "cka_distance": self.cka_distances[i, j]})
        return pd.DataFrame(rows)

    def trained_table(self) -> pd.DataFrame:
        """Per net: learning rate, seed, accuracies, whether it met the trained rule (and why),
        whether it is of similar accuracy and judged."""
        n = self.nets
        return pd.DataFrame({
            "lr": n["lr"], "seed": n["seed"], "test acc": n["test_acc"],
            "train acc": n["train_acc"], "trained": n["trained"].map(yes_no),
            "similar accuracy": n["similar"].map(yes_no), "judged": n["judged"].map(yes_no),
            "why (trained rule)": n["trained_why"]}).set_index(n["net"].rename("net"))

    def cluster_table(self, measure: str = "PWCCA", nets: str = "similar accuracy"
                      ) -> pd.DataFrame:
        """Per cluster of that analysis' cut: its nets' learning rates, size and test accuracy
        (mean, min, max)."""
        a = self.analyses[(measure, nets)]
        sub = self.nets.iloc[list(a.nets)].assign(cluster=a.clusters)
        rows = []
        for c, g in sub.groupby("cluster"):
            counts = g["lr"].value_counts().sort_index()
            rows.append({"cluster": int(c), "nets": len(g),
                         "learning rates (nets)": ", ".join(f"{lr:g} ({n})"
                                                            for lr, n in counts.items()),
                         "test acc (mean)": g["test_acc"].mean(),
                         "test acc (min)": g["test_acc"].min(),
                         "test acc (max)": g["test_acc"].max()})
        return pd.DataFrame(rows).set_index("cluster")

    def lr_table(self) -> pd.DataFrame:
        """Per learning rate: test accuracy (mean, sd), nets of similar accuracy, whether the
        rate is judged, mean within-LR PWCCA and CKA distance, and its nets' clusters in the
        all-nets PWCCA cut."""
        rows = []
        lrs = self.nets["lr"].to_numpy()
        for lr, g in self.nets.groupby("lr"):
            idx = np.flatnonzero(lrs == lr)
            pairs = list(combinations(idx, 2))
            rows.append({"lr": lr, "test acc (mean)": g["test_acc"].mean(),
                         "test acc (sd)": g["test_acc"].std(ddof=1),
                         "train acc (mean)": g["train_acc"].mean(),
                         "nets of similar accuracy": f"{int(g['similar'].sum())} of {len(g)}",
                         "judged": yes_no(bool(lr in self.judged_lrs)),
                         "within-LR PWCCA": float(np.mean([self.distances[i, j]
                                                           for i, j in pairs])),
                         "within-LR CKA": float(np.mean([self.cka_distances[i, j]
                                                         for i, j in pairs])),
                         "clusters (all nets)": ", ".join(str(c)
                                                          for c in sorted(set(g["cluster"])))})
        return pd.DataFrame(rows).set_index("lr")

    def distance_table(self) -> pd.DataFrame:
        """PWCCA beside linear CKA, for the nets of similar accuracy and for all nets: the
        Mantel test, the node-label test, the cut (``NO_CUT`` in its columns where no cut is
        valid), and the sampling floor."""
        rows = []
        for measure, _ in MEASURES:
            for nets in NET_SETS:
                a = self.analyses.get((measure, nets))
                if a is None:
                    continue
                rows.append({
                    "measure": measure, "nets": f"{nets} ({len(a.nets)})",
                    "Mantel r [95%]": _interval(a.mantel_ci, 2),
                    "Mantel p": a.mantel_p,
                    "between - within [95%]": _interval(a.contrast_ci, 3),
                    "node-label p": a.contrast_p,
                    "clusters": a.n_clusters if a.valid_cut else NO_CUT,
                    "silhouette [95%]": _interval(a.silhouette_ci, 2) if a.valid_cut
                    else NO_CUT,
                    "adjusted Rand index": a.ari if a.valid_cut else NO_CUT,
                    "rates in one cluster": a.lr_consistent if a.valid_cut else NO_CUT,
                    "contiguous": yes_no(a.lr_contiguous) if a.valid_cut else NO_CUT,
                    "largest distance": float(a.distances.max()),
                    "floor": self.floor(measure)})
        return pd.DataFrame(rows).set_index(["measure", "nets"])


#: What the cut columns of :meth:`Result.distance_table` say where no cut is valid.
NO_CUT = "no valid cut"


def _interval(ci: stats.Interval, digits: int) -> str:
    return f"{ci.estimate:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def _distance_matrices(acts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """measure -> (k, k) distance (1 - similarity) between every pair, one compare() per pair."""
    k = len(acts)
    out = {name: np.zeros((k, k)) for name, _ in MEASURES}
    for i, j in combinations(range(k), 2):
        sims = compare(acts[i], acts[j])
        for name, key in MEASURES:
            out[name][i, j] = out[name][j, i] = 1.0 - sims[key]
    return out


def _floor_pairs(lrs: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The first net of each learning rate against the first of the next one."""
    firsts = [int(np.flatnonzero(lrs == lr)[0]) for lr in np.unique(lrs)]
    return tuple(zip(firsts[:-1], firsts[1:], strict=True))


def judged_nets(nets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(similar, judged, judged_lrs)`` of a nets table (columns lr, test_acc): similar: test
    accuracy within ACC_WINDOW of the best; judged: similar, of a learning rate with at least
    MIN_NETS_PER_LR similar nets (those rates, sorted)."""
    acc = nets["test_acc"].to_numpy(dtype=np.float64)
    lrs = nets["lr"].to_numpy(dtype=np.float64)
    similar = acc >= np.nanmax(acc) - ACC_WINDOW - 1e-12
    kept = tuple(float(lr) for lr in np.unique(lrs)
                 if (similar & (lrs == lr)).sum() >= MIN_NETS_PER_LR)
    judged = similar & np.isin(lrs, kept)
    return similar, judged, kept


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train (or load) the sweep, compare ``config.layer`` across all nets with PWCCA and
    linear CKA, and analyse the nets of similar accuracy and the whole sweep. Training and
    capture run on ``executor`` (default: ``config.scheduler``'s, see
    :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    cfgs = config.train_configs()
    runs = training.train_many(cfgs, progress=progress, desc="learning-rate sweep",
                               executor=executor)
    probe = analysis.probe_images(config.dataset, config.probe_split, config.probe_size)
    acts = [a[config.layer].astype(np.float64) for a in executors.capture_many(
        runs, None, probe.images, [config.layer], executor=executor, progress=progress)]
    mats = _distance_matrices(acts)
    lrs = np.array([c.lr for c in cfgs], dtype=np.float64)

    pairs = _floor_pairs(lrs)
    floors = {name: np.array([1.0 - stats.permutation_null(
        acts[i], acts[j], key, n_perm=FLOOR_PERMS, seed=_seed(config, 1, n)).floor
        for n, (i, j) in enumerate(pairs)]) for name, key in MEASURES}

    nets = analysis.nets_frame(runs, net=range(len(runs)), lr=lrs)
    verdicts = [analysis.trained(r) for r in runs]
    nets["trained"] = [ok for ok, _ in verdicts]
    nets["trained_why"] = [why for _, why in verdicts]
    similar, judged, kept = judged_nets(nets)
    nets["similar"], nets["judged"] = similar, judged

    analyses = {}
    idx_sets = {"all nets": np.arange(len(lrs))}
    if len(kept) >= 2:
        idx_sets["similar accuracy"] = np.flatnonzero(judged)
    for m, (name, _) in enumerate(MEASURES):
        for s, set_name in enumerate(NET_SETS):
            if set_name not in idx_sets:
                continue
            idx = idx_sets[set_name]
            analyses[(name, set_name)] = analyze(
                mats[name][np.ix_(idx, idx)], lrs[idx], tuple(idx), measure=name,
                max_clusters=config.max_clusters, min_cluster_size=config.min_cluster_size,
                seed=_seed(config, 2, m, s))
    nets["cluster"] = analyses[("PWCCA", "all nets")].clusters
    return Result(config=config, nets=nets, distances=mats["PWCCA"],
                  cka_distances=mats["linear CKA"], floors=floors, floor_pairs=pairs,
                  best_acc=float(nets["test_acc"].max()), judged_lrs=kept, analyses=analyses)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def lr_palette(learning_rates: tuple[float, ...]) -> dict[float, tuple]:
    """One colour per learning rate, dark (small) to light (large); the light end of viridis
    (near-white yellow) is left out."""
    from matplotlib import colormaps

    colors = colormaps["viridis"](np.linspace(0.0, 0.82, len(learning_rates)))
    return dict(zip(sorted(learning_rates), map(tuple, colors), strict=True))


#: Strip colours of the clustermap: a judged net (of similar accuracy) and a left-out one.
JUDGED_COLORS = {True: (0.15, 0.15, 0.15), False: (0.68, 0.68, 0.68)}
#: Most tick labels drawn along the clustermap's rows (every k-th net beyond this many).
MAX_ROW_LABELS = 30


def plot_clustermap(result: Result, measure: str = "PWCCA") -> plt.Figure:
    """The distance matrix of all nets under ``measure`` ("PWCCA" or "linear CKA"), ordered by
    its average-linkage tree (paper Fig. 5); rows and columns coloured by learning rate, by
    whether the net is of similar accuracy (judged), and by cluster (the all-nets cut); rows
    labelled by learning rate and net (columns are in the same order), the title names the
    sampling floor. The figure is the book's column wide, its legend below the matrix."""
    import seaborn as sns
    from matplotlib.patches import Patch

    nets = result.nets
    a = result.analyses[(measure, "all nets")]
    names = [f"{lr:g} #{n}" for lr, n in zip(nets["lr"], nets["net"], strict=True)]
    frame = pd.DataFrame(result.matrix(measure), index=names, columns=names)
    pal = lr_palette(result.config.learning_rates)
    cl_pal = dict(zip(sorted(set(a.clusters)),
                      sns.color_palette("Set2", len(set(a.clusters))), strict=True))
    colors = pd.DataFrame({"learning rate": [pal[lr] for lr in nets["lr"]],
                           "judged": [JUDGED_COLORS[bool(j)] for j in nets["judged"]],
                           "cluster": [cl_pal[c] for c in a.clusters]}, index=names)
    handles = [Patch(color=c, label=f"lr {lr:g}") for lr, c in pal.items()]
    handles += [Patch(color=JUDGED_COLORS[True], label="judged"),
                Patch(color=JUDGED_COLORS[False], label="left out")]
    handles += [Patch(color=c, label=f"cluster {k}") for k, c in cl_pal.items()]
    ncol = 4
    legend_rows = -(-len(handles) // ncol)
    width = plotting.COLUMN_WIDTH_IN
    height = 6.4 + 0.22 * legend_rows
    grid = sns.clustermap(frame, row_linkage=a.linkage, col_linkage=a.linkage,
                          row_colors=colors, col_colors=colors, cmap="rocket_r",
                          figsize=(width, height), dendrogram_ratio=0.13, colors_ratio=0.03,
                          xticklabels=False,
                          yticklabels=max(1, math.ceil(len(names) / MAX_ROW_LABELS)))
    fig = grid.figure
    grid.ax_heatmap.tick_params(axis="y", labelsize=8)
    grid.ax_heatmap.set(xlabel="", ylabel="")
    grid.ax_col_colors.tick_params(axis="y", labelsize=9)
    grid.ax_row_colors.tick_params(axis="x", labelbottom=False)  # named at the column strips
    bottom = (0.3 + 0.22 * legend_rows) / height
    fig.subplots_adjust(top=1 - 0.75 / height, bottom=bottom)
    fig.legend(handles=handles, ncol=ncol, loc="lower center", fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.2)
    # the colour bar in the corner between the two trees
    row, col = grid.ax_row_dendrogram.get_position(), grid.ax_col_dendrogram.get_position()
    grid.ax_cbar.set_position((row.x0 + 0.1 * row.width, col.y0 + 0.1 * col.height,
                               0.15 * row.width, 0.8 * col.height))
    grid.ax_cbar.tick_params(labelsize=8)
    grid.ax_cbar.set_title("distance", fontsize=8, loc="left")
    fig.suptitle(f"{measure} distances ({result.config.layer}) between all nets, ordered by "
                 f"average-linkage\nclustering; the sampling floor is {result.floor(measure):.2f}",
                 y=1 - 0.08 / height, va="top", fontsize=11, fontweight="bold")
    return fig


def plot_continuum(result: Result) -> plt.Figure:
    """Top: pair distance (PWCCA and linear CKA) vs the gap in log10 learning rate, pairs of
    judged nets filled, pairs with a left-out net hollow, each measure's sampling floor dashed.
    Bottom left: test accuracy per learning rate, with the similar-accuracy window. Bottom right:
    mean silhouette vs number of clusters of the judged nets (all nets when none are judged),
    filled for candidate cuts, hollow for cuts that leave a cluster below the minimum size.
    The figure is the book's column wide."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplot_mosaic([["gap", "gap"], ["acc", "sil"]],
                                   figsize=(plotting.COLUMN_WIDTH_IN, 6.6),
                                   height_ratios=(1.0, 1.0), layout="constrained")
    pairs = result.to_frame()
    ax = axes["gap"]
    for k, (measure, column) in enumerate((("PWCCA", "distance"),
                                           ("linear CKA", "cka_distance"))):
        color = plotting.MEASURE_COLORS[measure]
        x = pairs["log_lr_gap"].to_numpy() + (k - 0.5) * 0.05
        j = pairs["judged"].to_numpy()
        ax.scatter(x[j], pairs[column][j], s=10, color=color, alpha=0.5,
                   label=f"{measure} (judged pairs)")
        ax.scatter(x[~j], pairs[column][~j], s=10, facecolors="none", edgecolors=color,
                   alpha=0.5, label=f"{measure} (a net left out)")
        means = pairs[j].groupby(pairs["log_lr_gap"][j].round(6))[column].mean()
        if len(means):
            ax.plot(means.index + (k - 0.5) * 0.05, means.to_numpy(), "o-", color=color, lw=1.5)
        ax.axhline(result.floor(measure), ls="--", color=color, lw=1)
    ax.set(xlabel=r"learning-rate gap $|\log_{10} \mathrm{lr}_i - \log_{10} \mathrm{lr}_j|$",
           ylabel=f"distance ({result.config.layer})", ylim=(0, 1.02),
           title="Distance vs learning-rate gap (dashed: sampling floors)")
    ax.legend(fontsize="small", loc="center right", ncol=2)

    nets = result.nets
    pal = lr_palette(result.config.learning_rates)
    ax = axes["acc"]
    order = {lr: i for i, lr in enumerate(sorted(result.config.learning_rates))}
    rng = np.random.default_rng(0)  # horizontal jitter of the markers only
    for judged, marker in ((True, "o"), (False, "x")):
        sub = nets[nets["judged"] == judged]
        x = sub["lr"].map(order).to_numpy() + rng.uniform(-0.15, 0.15, len(sub))
        ax.scatter(x, sub["test_acc"], c=[pal[lr] for lr in sub["lr"]], marker=marker, s=30)
    ax.axhspan(result.best_acc - ACC_WINDOW, result.best_acc, color="grey", alpha=0.2)
    handles = [Line2D([], [], ls="", marker="o", color="#444444", label="judged"),
               Line2D([], [], ls="", marker="x", color="#444444", label="left out"),
               Patch(color="grey", alpha=0.2,
                     label=f"within {100 * ACC_WINDOW:.0f} points\nof the best")]
    ax.set_xticks(range(len(order)), [f"{lr:g}" for lr in order])
    ax.tick_params(axis="x", labelrotation=45 if len(order) > 5 else 0)
    ax.set(xlabel="learning rate", ylabel="test accuracy", title="Accuracy per learning rate")
    ax.legend(handles=handles, fontsize="x-small", loc="lower right")

    ax = axes["sil"]
    net_set = "similar accuracy" if ("PWCCA", "similar accuracy") in result.analyses \
        else "all nets"
    for measure, _ in MEASURES:
        a = result.analyses[(measure, net_set)]
        ks = sorted(a.silhouettes)
        color = plotting.MEASURE_COLORS[measure]
        ax.plot(ks, [a.silhouettes[k] for k in ks], "-", color=color,
                label=f"{measure} (cut: {a.n_clusters if a.valid_cut else 'none valid'})")
        # filled: a candidate cut; hollow: a cut that leaves a cluster below the minimum size
        ok = [k in a.eligible for k in ks]
        ax.scatter([k for k, e in zip(ks, ok, strict=True) if e],
                   [a.silhouettes[k] for k, e in zip(ks, ok, strict=True) if e], color=color,
                   zorder=3)
        ax.scatter([k for k, e in zip(ks, ok, strict=True) if not e],
                   [a.silhouettes[k] for k, e in zip(ks, ok, strict=True) if not e],
                   facecolors="white", edgecolors=color, zorder=3)
    ax.axhline(SILHOUETTE_MIN, ls="--", color="black", lw=1,
               label=f"{SILHOUETTE_MIN:g}: weak structure")
    ax.set(xlabel="number of clusters", ylabel="mean silhouette",
           title="Cut of all nets" if net_set == "all nets"
           else "Cut of the judged nets")
    ax.legend(fontsize="x-small", loc="best")
    for ax in axes.values():
        ax.title.set_fontsize("medium")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C7)
# ---------------------------------------------------------------------------------------------


def ordered(a: Analysis) -> bool:
    """Whether the continuum is a strong ordering (reported, not deciding): Mantel r at least
    ``MANTEL_MIN`` with p below ``P_MAX``."""
    return bool(a.mantel_r >= MANTEL_MIN and a.mantel_p < P_MAX)


def _parts(a: Analysis) -> tuple[tuple[Criterion, ...], tuple[Criterion, ...],
                                 tuple[Criterion, ...]]:
    """The criteria of one analysis: the continuum rows (reported only), the node-label test
    and the valid-cut row, and the three cut criteria (all failed without a valid cut)."""
    m = a.measure
    continuum = (
        Criterion(f"Mantel correlation (Spearman) of the {m} distance with the log "
                  "learning-rate gap (the continuum, reported beside the verdict)",
                  f"reported (a strong ordering: at least {MANTEL_MIN:g})", a.mantel_r, None),
        Criterion("its Mantel permutation p-value (nets relabelled)",
                  f"reported (a strong ordering: below {P_MAX:g})", a.mantel_p, None),
    )
    cut_sizes = ("no valid cut" if not a.valid_cut else
                 f"{a.n_clusters} clusters of {', '.join(map(str, np.bincount(a.clusters)[1:]))}"
                 " nets")
    base = (
        Criterion("node-label permutation p-value: nets of one learning rate closer than nets "
                  "of different ones", f"below {P_MAX:g}", a.contrast_p,
                  bool(a.contrast_p < P_MAX)),
        Criterion(f"a valid cut ({m}): the cut with the largest mean silhouette among those with "
                  "no cluster smaller than the minimum cluster size",
                  f"exists, at least {MIN_CLUSTERS} clusters", cut_sizes, a.valid_cut),
    )
    v = a.valid_cut
    cut = (
        Criterion(f"mean silhouette of the chosen cut ({m})", f"at least {SILHOUETTE_MIN:g}",
                  a.silhouette if v else "no valid cut",
                  bool(v and a.silhouette >= SILHOUETTE_MIN)),
        Criterion("share of learning rates whose nets all share one cluster", "all (1.000)",
                  a.lr_consistent if v else "no valid cut", bool(v and a.lr_consistent == 1.0)),
        Criterion("every cluster a contiguous range of learning rates", "yes",
                  yes_no(a.lr_contiguous) if v else "no valid cut", bool(v and a.lr_contiguous)),
    )
    return continuum, base, cut


def verdict(a: Analysis) -> str:
    """The status C7's discrete-cluster criteria give one analysis (the continuum does not
    enter): holds if every one passes (the node-label test, a valid cut, and all three cut
    criteria); partly if the node-label test passes, a valid cut exists and at least
    ``PARTLY_MIN_CUT_CRITERIA`` of the cut criteria pass; does not hold otherwise."""
    _, base, cut = _parts(a)
    base_ok = all(c.passed for c in base)
    n_cut = sum(bool(c.passed) for c in cut)
    return status(base_ok and n_cut == len(cut),
                  base_ok and n_cut >= PARTLY_MIN_CUT_CRITERIA)


def _cut_text(a: Analysis) -> str:
    if not a.valid_cut:
        return "no valid cut (every cut leaves a cluster below the minimum size)"
    return (f"best valid cut {a.n_clusters} clusters, silhouette "
            f"{_interval(a.silhouette_ci, 2)}, adjusted Rand index {a.ari:.2f}")


def _numbers(a: Analysis) -> str:
    return (f"between minus within learning rate {_interval(a.contrast_ci, 3)} "
            f"(p {a.contrast_p:.2g}); {_cut_text(a)}; Mantel r {_interval(a.mantel_ci, 2)} "
            f"(p {a.mantel_p:.2g})")


def _lrs_text(lrs) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs) or "none"


def _setup(cfg: Config) -> tuple[tuple[str, str, str], ...]:
    widths = models.cnn_layer_widths(cfg.width)
    return (
        ("dataset", "CIFAR-10", f"{cfg.dataset}, first {cfg.train_size:,} training images"),
        ("architecture", "11-layer CNN, 64..512 filters",
         f"4 conv layers, {widths['conv1']}..{widths['conv4']} channels"),
        ("nets and seeds", "200 nets, various learning rates (values not given)",
         f"{len(cfg.learning_rates)} learning rates ({_lrs_text(cfg.learning_rates)}) x "
         f"{cfg.n_seeds} seeds, each net its own seed"),
        ("training", "not stated",
         f"{cfg.epochs:g} epochs, SGD + momentum, cosine schedule, batch {cfg.batch_size}"),
        ("probe inputs", "not stated (layer 8 of 11)",
         f"first {cfg.probe_size:,} {cfg.probe_split} images, {cfg.layer} "
         f"({cfg.n_features} channels averaged over space)"),
    )


def check(result: Result) -> list[Claim]:
    """Claim C7 on the nets of similar accuracy (test accuracy within ``ACC_WINDOW`` of the
    best net's; a learning rate stays if at least ``MIN_NETS_PER_LR`` of its nets do). With
    fewer than ``MIN_LRS`` learning rates left the claim is "not testable", the
    evidence starting "Not testable on nets of similar accuracy". Otherwise only the discrete
    clusters that follow the learning rate decide, on the PWCCA distances (:func:`verdict`):
    node-label permutation p below ``P_MAX`` for nets of one learning rate being closer than
    nets of different ones, a valid cut (at least ``MIN_CLUSTERS`` clusters, none smaller than
    ``min_cluster_size``), and on it a silhouette of at least ``SILHOUETTE_MIN``, every
    learning rate's nets in one cluster, every cluster a contiguous range of learning rates.
    Holds if all pass; partly if the node-label test passes, a valid cut exists and at least
    ``PARTLY_MIN_CUT_CRITERIA`` cut criteria pass. The continuum (a Mantel correlation with
    the log-learning-rate gap; strong at ``MANTEL_MIN`` with p below ``P_MAX``) is reported
    beside the verdict. ``cka_agrees``: the same rule on the linear-CKA distances gives the
    same status. The left-out nets, the all-nets numbers, the trained rule and the clusters'
    accuracy spread are reported, not judged."""
    r = result
    cfg = r.config
    nets = r.nets
    n_lrs = len(cfg.learning_rates)
    left_out = nets[~nets["judged"]]
    testable_row = Criterion(
        f"learning rates with at least {MIN_NETS_PER_LR} nets within {100 * ACC_WINDOW:g} "
        f"points of the best test accuracy ({r.best_acc:.3f})", f"at least {MIN_LRS}",
        len(r.judged_lrs), bool(r.testable))
    judged = nets[nets["judged"]]
    missed = int((~judged["trained"]).sum())
    trained_row = Criterion("judged nets that met the trained rule", "reported",
                            f"{len(judged) - missed} of {len(judged)}", None)
    out_text = ("none" if left_out.empty else
                "; ".join(f"lr {lr:g}: {len(g)} (test accuracy {g['test_acc'].min():.3f}-"
                          f"{g['test_acc'].max():.3f})" for lr, g in left_out.groupby("lr")))
    left_row = Criterion("nets left out (not of similar accuracy)", "reported", out_text, None)
    all_pw = r.analyses[("PWCCA", "all nets")]
    all_row = Criterion("over all nets (PWCCA, reported)", "reported", _numbers(all_pw), None)
    pw_max = float(r.distances[np.triu_indices(len(nets), 1)].max())
    floor_row = Criterion("largest PWCCA pair distance as a share of its sampling floor "
                          f"({r.floor('PWCCA'):.3f})", "reported", pw_max / r.floor("PWCCA"),
                          None)
    head = (f"{len(judged)} of {len(nets)} nets ({len(r.judged_lrs)} of {n_lrs} learning rates: "
            f"{_lrs_text(r.judged_lrs)}) within {100 * ACC_WINDOW:g} points of the best test "
            f"accuracy {r.best_acc:.3f}")
    common = dict(id="C7", figure="fig-learning-rate-pwcca",
                  paper_value="5 clusters among 200 nets, similar "
                  "accuracy", setup=_setup(cfg))
    if not r.testable:
        evidence = (f"Not testable on nets of similar accuracy: only {head} (at least {MIN_LRS} "
                    f"learning rates with {MIN_NETS_PER_LR} such nets are needed). Over all "
                    f"{len(nets)} nets, {cfg.layer}, reported and not judged: PWCCA "
                    f"{_numbers(all_pw)}")
        return [Claim(status=NOT_TESTABLE, evidence=evidence,
                      criteria=(testable_row, left_row, all_row, trained_row, floor_row),
                      ours=f"{len(r.judged_lrs)} of {n_lrs} learning rates at similar "
                           f"accuracy; all nets: Mantel r {_interval(all_pw.mantel_ci, 2)}",
                      cka_agrees=None, **common)]
    a = r.analyses[("PWCCA", "similar accuracy")]
    cka = r.analyses[("linear CKA", "similar accuracy")]
    continuum, base, cut = _parts(a)
    verdict_pw, verdict_cka = verdict(a), verdict(cka)
    sub = nets.iloc[list(a.nets)].assign(cluster=a.clusters)
    acc = sub.groupby("cluster")["test_acc"].mean()
    spread_row = Criterion("spread of the clusters' mean test accuracy", "reported",
                           float(acc.max() - acc.min()) if a.valid_cut else "no valid cut",
                           None)
    cka_row = Criterion("status with the linear-CKA distance (the same criteria)", "reported",
                        verdict_cka, None)
    if a.valid_cut:
        cut_text = (f"{a.lr_consistent:.0%} of the learning rates have all their nets in one "
                    f"cluster, clusters contiguous: {yes_no(a.lr_contiguous)}")
    else:
        cut_text = "without a valid cut the cut criteria fail"
    strong = "a strong ordering" if ordered(a) else "not a strong ordering"
    evidence = (f"{head}; left out: {out_text}. On these, PWCCA at {cfg.layer}: "
                f"{_numbers(a)}; {cut_text}. The continuum, reported beside the verdict: "
                f"{strong} (Mantel r at least {MANTEL_MIN:g} with p below {P_MAX:g}). Linear "
                f"CKA gives \"{verdict_cka}\" by the same rule ({_numbers(cka)})")
    if missed:
        evidence += (f". Tested on under-trained nets: {missed} of {len(judged)} judged nets "
                     "missed the trained rule")
    return [Claim(status=verdict_pw, evidence=evidence,
                  criteria=(testable_row, *base, *cut, *continuum, spread_row, left_row,
                            all_row, cka_row, trained_row, floor_row),
                  ours=(f"silhouette {_interval(a.silhouette_ci, 2)} ({a.n_clusters} clusters)"
                        if a.valid_cut else "no valid cut")
                       + f"; node-label p {a.contrast_p:.2g}; Mantel r "
                         f"{_interval(a.mantel_ci, 2)} (continuum, reported)",
                  cka_agrees=verdict_pw == verdict_cka, **common)]


# ---------------------------------------------------------------------------------------------
# Generated prose
# ---------------------------------------------------------------------------------------------


def summary_markdown(result: Result) -> str:
    """What the run found, in sentences built from its numbers (for the page)."""
    r = result
    nets = r.nets
    cfg = r.config
    judged = nets[nets["judged"]]
    n_trained = int(nets["trained"].sum())
    lines = [
        f"**This run.** {n_trained} of {len(nets)} nets met the trained rule (test accuracy "
        "changed by less than 0.5 points over the last 20% of training)"
        + ("." if n_trained == len(nets) else
           "; the others are under-trained, and the table above says which."),
        f"The best net reached test accuracy {r.best_acc:.3f}; {int(nets['similar'].sum())} "
        f"nets lie within {100 * ACC_WINDOW:g} points of it, and {len(judged)} nets of "
        f"{len(r.judged_lrs)} learning rates ({_lrs_text(r.judged_lrs)}) form the judged set "
        f"(a learning rate needs {MIN_NETS_PER_LR} such nets).",
    ]
    if not r.testable:
        lines.append(f"With fewer than {MIN_LRS} learning rates left, the claim cannot be "
                     "tested on nets of similar accuracy at this scale; the numbers over all "
                     "nets below mix accuracy with learning rate.")
    for net_set in NET_SETS:
        for measure, _ in MEASURES:
            a = r.analyses.get((measure, net_set))
            if a is None:
                continue
            lines.append(f"*{measure}, {net_set} ({len(a.nets)} nets):* {_numbers(a)}.")
    for measure, _ in MEASURES:
        iu = np.triu_indices(len(nets), 1)
        d = r.matrix(measure)[iu]
        floor = r.floor(measure)
        near = int((d >= NEAR_FLOOR * floor).sum())
        lines.append(
            f"The {measure} sampling floor (one net's {cfg.layer} against another's with the "
            f"probe images shuffled) is a distance of {floor:.3f} (range "
            f"{r.floors[measure].min():.3f}-{r.floors[measure].max():.3f} over "
            f"{len(r.floor_pairs)} pairs); the pair distances span {d.min():.3f}-{d.max():.3f}, "
            + (f"so every pair lies well below the floor (the largest is {d.max() / floor:.0%} "
               "of it)." if near == 0 else
               f"and {near} of {d.size} pairs lie within {100 * (1 - NEAR_FLOOR):.0f}% of the "
               "floor, where a distance says little."))
    return "\n\n".join(lines)
