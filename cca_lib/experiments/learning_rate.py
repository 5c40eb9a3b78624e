"""Chapter: networks trained with different learning rates (the paper's Fig. 5, claim C7).

A sweep of identical CNNs (:func:`cca_lib.models.make_cnn`) over learning rates x seeds. Every
network gets its OWN seed (weights and minibatch order): with one seed shared across learning
rates, the nets that share a seed resemble each other in the early layers and the distance
matrix clusters by seed rather than by learning rate. We then

1. capture one layer of every net on the same probe images (each channel averaged over space);
2. compute the symmetric PWCCA distance between every pair of nets;
3. cluster the nets hierarchically (average linkage) and cut the tree into the number of
   clusters with the largest mean silhouette;
4. compare the clusters with the learning rates (adjusted Rand index), and measure the
   "continuum" view: does the distance between two nets grow with the gap between their
   log learning rates (Spearman correlation over pairs)?

The silhouette and the adjusted Rand index are :func:`cca_lib.analysis.silhouette` and
:func:`cca_lib.analysis.adjusted_rand_index` (numpy, no scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from cca_lib import _checks, analysis, executors, models, plotting, training
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    param,
    rule,
)
from cca_lib.scorecard import Claim, Criterion, status, yes_no

#: Layers of the default (4-conv) net that can be compared (:func:`cca_lib.models.make_cnn`).
LAYERS = tuple(models.cnn_layer_widths())
#: Layers of every CNN layout, the names ``layer`` may hold (checked against ``arch``).
ALL_LAYERS = tuple(dict.fromkeys(name for arch in models.CNN_LAYOUTS
                                 for name in models.cnn_layer_widths(1, arch=arch)))


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Learning-rate sweep parameters. Defaults are the quick profile."""

    learning_rates: tuple[float, ...] = param(
        (0.005, 0.015, 0.05, 0.15, 0.5), "peak SGD learning rates", '"various", values not given',
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
    seed: int = param(0, "net i of the sweep (learning-rate major) gets seed + i", check=SEED)
    arch: str = param("small", 'CNN layout (cca_lib.models.make_cnn): "small" (4 conv layers), '
                      '"paper" (the paper\'s 11 conv layers, w..8w channels) or "resnet" '
                      "(ResNet-20)", 'an 11-layer net',
                      check=rule(_checks.text, choices=models.CNN_LAYOUTS))
    optimizer: str = param("sgd", '"sgd" (with momentum 0.9) or "adam"', "Adam",
                           check=rule(_checks.text, choices=("sgd", "adam")))
    scheduler: str | None = param(None, executors.SCHEDULER_HELP,
                                  check=executors.check_scheduler)

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
# Experiment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """Distances, clustering and summary numbers of one learning-rate sweep."""

    config: Config
    #: one row per net: net, lr, seed, test_acc, train_acc, converged, reason
    #: (:func:`cca_lib.analysis.nets_frame`), cluster
    nets: pd.DataFrame
    distances: np.ndarray  #: (k, k) symmetric PWCCA distances at config.layer
    linkage: np.ndarray  #: scipy average-linkage matrix
    silhouettes: dict[int, float]  #: number of clusters -> mean silhouette
    n_clusters: int  #: the number with the largest silhouette
    ari: float  #: adjusted Rand index between the clusters and the learning rates
    ari_at_n_lrs: float  #: the same when the tree is cut into len(learning_rates) clusters
    spearman: float  #: Spearman rho of pair distance vs |log10 lr_i - log10 lr_j|
    spearman_p: float
    lr_consistent: float  #: fraction of learning rates whose nets all share one cluster
    lr_contiguous: bool  #: every cluster covers a contiguous range of learning rates
    eligible: tuple[int, ...]  #: cluster counts whose cut has no cluster below min_cluster_size
    within_lr: float  #: mean distance between nets of the same learning rate
    between_lr: float  #: mean distance between nets of different learning rates

    def to_frame(self) -> pd.DataFrame:
        """One row per pair of nets (i < j): lr_i, lr_j, log-LR gap, same_lr, distance."""
        rows = []
        lrs = self.nets["lr"].to_numpy()
        for i, j in combinations(range(len(lrs)), 2):
            rows.append({"i": i, "j": j, "lr_i": lrs[i], "lr_j": lrs[j],
                         "log_lr_gap": abs(np.log10(lrs[i]) - np.log10(lrs[j])),
                         "same_lr": bool(lrs[i] == lrs[j]),
                         "distance": self.distances[i, j]})
        return pd.DataFrame(rows)

    def cluster_table(self) -> pd.DataFrame:
        """Per cluster: its nets' learning rates, size and test accuracy (mean, min, max)."""
        rows = []
        for c, g in self.nets.groupby("cluster"):
            counts = g["lr"].value_counts().sort_index()
            rows.append({"cluster": int(c), "nets": len(g),
                         "learning rates (nets)": ", ".join(f"{lr:g} ({n})"
                                                            for lr, n in counts.items()),
                         "test acc (mean)": g["test_acc"].mean(),
                         "test acc (min)": g["test_acc"].min(),
                         "test acc (max)": g["test_acc"].max()})
        return pd.DataFrame(rows).set_index("cluster")

    def lr_table(self) -> pd.DataFrame:
        """Per learning rate: test accuracy (mean, sd) and mean within-LR distance."""
        rows = []
        lrs = self.nets["lr"].to_numpy()
        for lr, g in self.nets.groupby("lr"):
            idx = np.flatnonzero(lrs == lr)
            within = [self.distances[i, j] for i, j in combinations(idx, 2)]
            rows.append({"lr": lr, "test acc (mean)": g["test_acc"].mean(),
                         "test acc (sd)": g["test_acc"].std(ddof=1),
                         "train acc (mean)": g["train_acc"].mean(),
                         "within-LR distance": float(np.mean(within)),
                         "clusters": ", ".join(str(c) for c in sorted(set(g["cluster"])))})
        return pd.DataFrame(rows).set_index("lr")


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train (or load) the sweep, compare ``config.layer`` across all nets and cluster them.
    Training, capture and the pair distances run on ``executor`` (default:
    ``config.scheduler``'s, see :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    cfgs = config.train_configs()
    runs = training.train_many(cfgs, progress=progress, desc="learning-rate sweep",
                               executor=executor)
    probe = analysis.probe_images(config.dataset, config.probe_split, config.probe_size)
    acts = [a[config.layer] for a in executors.capture_many(
        runs, None, probe.images, [config.layer], executor=executor, progress=progress)]
    if executor is None:
        dist = analysis.pairwise_distances(acts, method="pwcca")
    else:
        dist = executors.pairwise_distances(acts, "pwcca", executor=executor, progress=progress)
    lrs = np.array([c.lr for c in cfgs])
    lr_codes = np.unique(lrs, return_inverse=True)[1]

    link = hierarchy.linkage(squareform(dist, checks=False), method="average")
    sil, eligible = {}, []
    for k in range(2, config.max_clusters + 1):
        labels = hierarchy.fcluster(link, k, criterion="maxclust")
        n_found = len(np.unique(labels))
        if n_found != k:  # ties in the tree: this many clusters cannot be cut
            continue
        sil[k] = analysis.silhouette(dist, labels)
        if np.bincount(labels)[1:].min() >= config.min_cluster_size:  # labels are 1 .. k
            eligible.append(k)
    best = max(eligible or list(sil), key=lambda k: (sil[k], -k))
    clusters = hierarchy.fcluster(link, best, criterion="maxclust")
    at_n_lrs = hierarchy.fcluster(link, len(config.learning_rates), criterion="maxclust")

    iu = np.triu_indices(len(lrs), 1)
    gap = np.abs(np.log10(lrs)[:, None] - np.log10(lrs)[None, :])[iu]
    rho, p = stats.spearmanr(gap, dist[iu])
    same = (lrs[:, None] == lrs[None, :])[iu]

    order = np.argsort(lrs, kind="stable")
    runs_of = [clusters[order][0]]
    for c in clusters[order][1:]:
        if c != runs_of[-1]:
            runs_of.append(c)
    nets = analysis.nets_frame(runs, net=range(len(runs)), lr=lrs)
    nets["cluster"] = clusters
    return Result(
        config=config, nets=nets, distances=dist, linkage=link, silhouettes=sil,
        n_clusters=int(len(np.unique(clusters))),
        ari=analysis.adjusted_rand_index(clusters, lr_codes),
        ari_at_n_lrs=analysis.adjusted_rand_index(at_n_lrs, lr_codes),
        lr_consistent=float(np.mean([len(set(clusters[lrs == lr])) == 1
                                     for lr in config.learning_rates])),
        lr_contiguous=len(runs_of) == len(set(runs_of)), eligible=tuple(eligible),
        spearman=float(rho), spearman_p=float(p),
        within_lr=float(dist[iu][same].mean()), between_lr=float(dist[iu][~same].mean()))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def lr_palette(learning_rates: tuple[float, ...]) -> dict[float, tuple]:
    """One colour per learning rate, dark (small) to light (large)."""
    import seaborn as sns

    colors = sns.color_palette("viridis", len(learning_rates))
    return dict(zip(sorted(learning_rates), colors, strict=True))


def plot_clustermap(result: Result) -> plt.Figure:
    """The distance matrix ordered by the average-linkage tree (paper Fig. 5), rows and
    columns coloured by learning rate and by cluster, labelled with each net's LR."""
    import seaborn as sns
    from matplotlib.patches import Patch

    nets = result.nets
    names = [f"lr {lr:g} · #{n}" for lr, n in zip(nets["lr"], nets["net"], strict=True)]
    frame = pd.DataFrame(result.distances, index=names, columns=names)
    pal = lr_palette(result.config.learning_rates)
    cl_pal = dict(zip(sorted(set(nets["cluster"])),
                      sns.color_palette("Set2", nets["cluster"].nunique()), strict=True))
    colors = pd.DataFrame({"learning rate": [pal[lr] for lr in nets["lr"]],
                           "cluster": [cl_pal[c] for c in nets["cluster"]]}, index=names)
    grid = sns.clustermap(frame, row_linkage=result.linkage, col_linkage=result.linkage,
                          row_colors=colors, col_colors=colors, cmap="rocket_r",
                          figsize=(9, 8.5), dendrogram_ratio=0.12, colors_ratio=0.025,
                          cbar_pos=(1.0, 0.25, 0.025, 0.45),
                          cbar_kws={"label": f"PWCCA distance ({result.config.layer})"},
                          xticklabels=True, yticklabels=True)
    grid.ax_heatmap.tick_params(labelsize=7)
    handles = [Patch(color=c, label=f"lr {lr:g}") for lr, c in pal.items()]
    handles += [Patch(color=c, label=f"cluster {k}") for k, c in cl_pal.items()]
    grid.ax_col_dendrogram.legend(handles=handles, ncol=min(7, len(handles)), loc="center",
                                  bbox_to_anchor=(0.5, 1.25), fontsize="x-small", frameon=False)
    grid.figure.suptitle("Pairwise distances, ordered by average-linkage clustering",
                         y=1.04, fontweight="bold")
    return grid.figure


def plot_continuum(result: Result) -> plt.Figure:
    """Left: pair distance vs the gap in log10 learning rate. Middle: test accuracy per LR.
    Right: mean silhouette vs number of clusters (the cut criterion)."""
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), constrained_layout=True)
    pairs = result.to_frame()
    pairs["LR gap (decades)"] = pairs["log_lr_gap"].round(1)
    color = plotting.MEASURE_COLORS["PWCCA"]
    sns.stripplot(data=pairs, x="LR gap (decades)", y="distance", color=color, alpha=0.35,
                  size=3, ax=axes[0], native_scale=True, jitter=0.04)
    means = pairs.groupby("LR gap (decades)")["distance"].mean()
    axes[0].plot(means.index, means.to_numpy(), "o-", color="black", lw=1.5, label="mean")
    axes[0].set(xlabel=r"$|\log_{10} \mathrm{lr}_i - \log_{10} \mathrm{lr}_j|$",
                ylabel=f"PWCCA distance ({result.config.layer})",
                title=f"Distance vs LR gap (Spearman {result.spearman:.2f})")
    axes[0].legend(fontsize="small")

    nets = result.nets
    pal = lr_palette(result.config.learning_rates)
    sns.stripplot(data=nets, x="lr", y="test_acc", hue="lr", palette=pal, legend=False,
                  size=6, ax=axes[1])
    axes[1].set(xlabel="learning rate", ylabel="test accuracy", title="Accuracy per LR")

    ks = sorted(result.silhouettes)
    axes[2].plot(ks, [result.silhouettes[k] for k in ks], "o-", color=color)
    axes[2].axvline(result.n_clusters, ls=":", color="black", lw=1)
    axes[2].axhline(0.25, ls="--", color="grey", lw=1, label="0.25: weak structure")
    axes[2].set(xlabel="number of clusters", ylabel="mean silhouette",
                title=f"Cut: {result.n_clusters} clusters")
    axes[2].legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C7)
# ---------------------------------------------------------------------------------------------

#: Ordered: the Spearman correlation of pair distance with the log-learning-rate gap is at
#: least this ...
SPEARMAN_MIN = 0.5
#: ... with a p-value below this.
SPEARMAN_P_MAX = 0.01
#: Discrete clusters: the chosen cut's mean silhouette is at least this ("weak" structure or
#: better, Rousseeuw's reading) ...
SILHOUETTE_MIN = 0.25
#: ... with at least this many clusters.
MIN_CLUSTERS = 2


def check(result: Result) -> list[Claim]:
    """Claim C7, in two parts. Ordered (the continuum): Spearman of pair distance with the
    log-learning-rate gap at least ``SPEARMAN_MIN`` with p below ``SPEARMAN_P_MAX``, and nets of
    the same learning rate closer on average than nets of different ones. Discrete clusters
    that follow the learning rate: the chosen cut has a silhouette of at least
    ``SILHOUETTE_MIN`` and at least ``MIN_CLUSTERS`` clusters, every learning rate's nets share
    one cluster, and every cluster covers a contiguous range of learning rates. Holds if both
    parts pass, partly if one does. The clusters' accuracy spread is reported, not judged."""
    r = result
    sil = r.silhouettes[r.n_clusters]
    ordered_rows = (
        Criterion("Spearman correlation of pair distance with the log learning-rate gap",
                  f"at least {SPEARMAN_MIN:g}", r.spearman, bool(r.spearman >= SPEARMAN_MIN)),
        Criterion("p-value of that correlation", f"below {SPEARMAN_P_MAX:g}", r.spearman_p,
                  bool(r.spearman_p < SPEARMAN_P_MAX)),
        Criterion("mean distance between nets of the same learning rate",
                  f"below that between different learning rates ({r.between_lr:.3f})",
                  r.within_lr, bool(r.within_lr < r.between_lr)),
    )
    discrete_rows = (
        Criterion("mean silhouette of the chosen cut", f"at least {SILHOUETTE_MIN:g}", sil,
                  bool(sil >= SILHOUETTE_MIN)),
        Criterion("clusters in the chosen cut", f"at least {MIN_CLUSTERS}", r.n_clusters,
                  bool(r.n_clusters >= MIN_CLUSTERS)),
        Criterion("share of learning rates whose nets all share one cluster", "all (1.000)",
                  r.lr_consistent, bool(r.lr_consistent == 1.0)),
        Criterion("every cluster a contiguous range of learning rates", "yes",
                  yes_no(r.lr_contiguous), bool(r.lr_contiguous)),
    )
    acc = r.cluster_table()["test acc (mean)"]
    spread = acc.max() - acc.min()
    report = Criterion("spread of the clusters' mean test accuracy", "similar accuracy (paper)",
                       spread, None)
    ordered = all(c.passed for c in ordered_rows)
    discrete = all(c.passed for c in discrete_rows)
    cfg = r.config
    n_lrs = len(cfg.learning_rates)
    evidence = (f"{len(r.nets)} nets ({n_lrs} learning rates x {cfg.n_seeds} seeds), "
                f"{cfg.layer}: Spearman correlation of distance with the log learning-rate gap "
                f"{r.spearman:.2f}, within/between learning rate {r.within_lr:.3f}/"
                f"{r.between_lr:.3f}; best cut {r.n_clusters} clusters, silhouette {sil:.3f}, "
                f"adjusted Rand index {r.ari:.2f} (of the {n_lrs}-cluster cut "
                f"{r.ari_at_n_lrs:.2f}); cluster accuracy spread {spread:.3f}")
    return [Claim(id="C7", status=status(ordered and discrete, ordered or discrete),
                  figure="distance matrix", evidence=evidence,
                  criteria=(*ordered_rows, *discrete_rows, report))]
