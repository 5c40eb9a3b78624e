"""Chapter: wider networks converge to more similar solutions (the paper's Fig. 4, C5 and C6).

For every width ``w`` (channels of conv1; the net has ``w, 2w, 2w, 4w`` channels, see
:func:`cca_lib.models.make_cnn`) we train a group of networks that differ only in their seed,
and measure the symmetric PWCCA distance between every pair within the group:

* at each compared layer, on a fixed-size random subset of ``n_features`` of its features (the
  paper: 128 final-layer filters), so that a wide layer is not favoured merely for having more
  neurons to match; each pair is scored on ``n_subsets`` independent subset draws, averaged;
  the logits (10 classes, the same for every width) are compared whole;
* after training and, as the control, at initialization (step 0), on the same probe images and
  the same subsets;
* against each group's mean test accuracy (Pearson r and p across widths, as in Fig. 4b).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from cca_lib import _checks, analysis, executors, models, plotting, training
from cca_lib.claims import Claim, Criterion, status
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    ChapterConfig,
    param,
    rule,
)
from cca_lib.similarity import distance

#: Conv layers of the chapter's net (:func:`cca_lib.models.make_cnn`, default layout) and their
#: channel multipliers (channels = multiplier x width); the logits have 10 classes.
LAYER_MULT = {name: n for name, n in models.cnn_layer_widths(1).items() if name != "logits"}
#: Layers of every CNN layout, the names ``layers`` may hold (checked against ``arch``).
ALL_LAYERS = tuple(dict.fromkeys(name for arch in models.CNN_LAYOUTS
                                 for name in models.cnn_layer_widths(1, arch=arch)))
STATES = ("trained", "init")


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Width experiment parameters. Defaults are the quick profile."""

    widths: tuple[int, ...] = param(
        (8, 10, 12, 16, 20), "channels of conv1 (at least 3 distinct: a correlation across "
        "widths needs them); the net has w, 2w, 2w, 4w",
        "13 multipliers 0.25x..7x of an 11-layer net",
        check=rule(_checks.ints, ge=1, le=_checks.MAX_UNITS, min_len=3, distinct=True))
    n_seeds: int = param(3, "networks per width, differing only in seed (a group needs a pair)",
                         "5", check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    layers: tuple[str, ...] = param(
        ("conv4", "logits"), "compared layers", "the last conv layer",
        check=rule(_checks.texts, choices=ALL_LAYERS, distinct=True))
    n_features: int = param(32, "random subset of each conv layer's channels per comparison",
                            "128 filters", check=rule(_checks.integer, ge=2,
                                                       le=_checks.MAX_UNITS))
    n_subsets: int = param(3, "independent subset draws per pair, averaged", "not stated",
                           check=POSITIVE_COUNT)
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)
    train_size: int = param(10_000, "training images, the first ones of the training split",
                            "all 50k CIFAR-10 images", check=SAMPLES)
    epochs: float = param(3.0, "training epochs, SGD + momentum with a cosine schedule",
                          "100, Adam", check=EPOCHS)
    batch_size: int = param(128, "minibatch size", check=BATCH)
    lr: float = param(0.05, "peak SGD learning rate (cosine schedule)", "1e-3 with Adam",
                      check=POSITIVE)
    probe_split: str = param("train", 'images the distances are computed on: "train" or "test"',
                             "training data",
                             check=rule(_checks.text, choices=("train", "test")))
    probe_size: int = param(2000, "number of probe images (the first ones of that split)",
                            "not stated", check=SAMPLES)
    seed: int = param(0, "nets of each width use seeds seed .. seed + n_seeds - 1", check=SEED)
    arch: str = param("small", 'CNN layout (cca_lib.models.make_cnn): "small" (4 conv layers), '
                      '"paper" (the paper\'s 11 conv layers, w..8w channels) or "resnet" '
                      "(ResNet-20)", 'the 11-layer net',
                      check=rule(_checks.text, choices=models.CNN_LAYOUTS))
    optimizer: str = param("sgd", '"sgd" (with momentum 0.9) or "adam"', "Adam",
                           check=rule(_checks.text, choices=("sgd", "adam")))
    scheduler: str | None = param(None, executors.SCHEDULER_HELP,
                                  check=executors.check_scheduler)

    def _validate(self) -> None:
        mult = models.cnn_layer_widths(1, arch=self.arch)
        for name in self.layers:
            if name not in mult:
                raise ValueError(f"layers holds {name!r}, not a layer of arch={self.arch!r}: "
                                 f"{list(mult)}")
            if name != "logits" and mult[name] * min(self.widths) < self.n_features:
                raise ValueError(
                    f"n_features={self.n_features} exceeds the "
                    f"{mult[name] * min(self.widths)} channels of {name} at the smallest "
                    f"width {min(self.widths)}: every width must have that many features")
        if self.probe_size < 10 * self.n_features:
            raise ValueError(f"probe_size must be an int >= 10 x n_features={self.n_features} "
                             f"(the CCA sampling floor), got {self.probe_size!r}")
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")

    def train_config(self, width: int, seed: int) -> training.CNNTrainConfig:
        return training.CNNTrainConfig(
            dataset=self.dataset, width=width, train_size=self.train_size, epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, seed=seed, arch=self.arch,
            optimizer=self.optimizer)

    def features_compared(self, layer: str) -> int:
        """Features of ``layer`` that enter each comparison."""
        return 10 if layer == "logits" else self.n_features


@dataclass(frozen=True)
class Result:
    """Within-group distances per width, layer and state, and each net's accuracy."""

    config: Config
    #: one row per net: width, seed, test_acc, train_acc, converged, reason
    #: (:func:`cca_lib.analysis.nets_frame`)
    nets: pd.DataFrame
    #: one row per pair: width, layer, state ("trained"/"init"), i, j, distance
    distances: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The pair distances (long format, for seaborn)."""
        return self.distances.copy()

    def summary(self) -> pd.DataFrame:
        """Per width: mean test accuracy and, per layer and state, the mean pair distance."""
        table = self.distances.pivot_table(index="width", columns=["layer", "state"],
                                           values="distance", aggfunc="mean")
        table.columns = [f"{layer} {state}" for layer, state in table.columns]
        acc = self.nets.groupby("width")["test_acc"].mean().rename("test acc")
        return pd.concat([acc, table], axis=1)

    def trend(self) -> pd.DataFrame:
        """Per layer and state: distance at the smallest and largest width, the relative drop,
        Spearman rho of the group means with width, and (trained) Pearson r, p of the group
        means against mean test accuracy."""
        means = self.summary()
        widths = means.index.to_numpy()
        rows = []
        for layer in self.config.layers:
            for state in STATES:
                d = means[f"{layer} {state}"].to_numpy()
                r, p = stats.pearsonr(means["test acc"].to_numpy(), d)
                rows.append({"layer": layer, "state": state, "narrowest": d[0], "widest": d[-1],
                             "relative drop": (d[0] - d[-1]) / d[0],
                             "spearman vs width": stats.spearmanr(widths, d)[0],
                             "pearson r vs acc": r, "p": p})
        return pd.DataFrame(rows).set_index(["layer", "state"])


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train (or load) every group, then measure within-group distances trained and at init.
    Training and capture run on ``executor`` (default: ``config.scheduler``'s, see
    :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    from cca_lib._progress import bar as tqdm_bar

    jobs = [(w, config.seed + s) for w in config.widths for s in range(config.n_seeds)]
    runs = training.train_many([config.train_config(w, s) for w, s in jobs], progress=progress,
                               desc="width groups", executor=executor)
    probe = analysis.probe_images(config.dataset, config.probe_split, config.probe_size)
    rows = []
    for w in tqdm_bar(config.widths, desc="distances", progress=progress):
        members = [r for (width, _), r in zip(jobs, runs, strict=True) if width == w]
        for state, step in (("trained", None), ("init", 0)):
            acts = executors.capture_many(members, step, probe.images, list(config.layers),
                                          executor=executor, progress=False)
            for li, layer in enumerate(config.layers):
                for i, j in combinations(range(len(members)), 2):
                    if layer == "logits":
                        d = distance(acts[i][layer], acts[j][layer], method="pwcca",
                                     symmetric=True)
                    else:
                        d = float(np.mean([distance(
                            analysis.feature_subset(acts[i][layer], config.n_features,
                                                    _subset_seed(config, w, li, i, rep)),
                            analysis.feature_subset(acts[j][layer], config.n_features,
                                                    _subset_seed(config, w, li, j, rep)),
                            method="pwcca", symmetric=True) for rep in range(config.n_subsets)]))
                    rows.append({"width": w, "layer": layer, "state": state, "i": i, "j": j,
                                 "distance": float(d)})
    nets = analysis.nets_frame(runs, width=[w for w, _ in jobs])
    return Result(config=config, nets=nets, distances=pd.DataFrame(rows))


def _subset_seed(config: Config, width: int, layer: int, net: int, rep: int) -> int:
    """One fixed subset per (width, layer, net, draw), the same after training and at init."""
    return int(np.random.SeedSequence([config.seed, width, layer, net, rep]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

STATE_STYLE = {"trained": {"color": plotting.MEASURE_COLORS["PWCCA"], "marker": "o"},
               "init": {"color": "#7f7f7f", "marker": "s"}}


def plot_width(result: Result) -> plt.Figure:
    """Fig. 4a: within-group PWCCA distance vs width, trained and at initialization, one panel
    per layer (mean ± standard error over pairs)."""
    frame = result.to_frame()
    layers = result.config.layers
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 3.9),
                             constrained_layout=True, squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for state in STATES:
            g = frame[(frame["layer"] == layer) & (frame["state"] == state)]
            agg = g.groupby("width")["distance"].agg(["mean", "sem"])
            ax.errorbar(agg.index, agg["mean"], yerr=agg["sem"], capsize=3, lw=1.6,
                        label="trained" if state == "trained" else "initialization (control)",
                        **STATE_STYLE[state])
        ax.set_xscale("log", base=2)
        ax.set_xticks(result.config.widths, [str(w) for w in result.config.widths])
        ax.minorticks_off()
        n = result.config.features_compared(layer)
        ax.set(xlabel="width (channels of conv1)", ylabel="within-group PWCCA distance",
               title=f"{layer} ({n} features per net)", ylim=(0, None))
        ax.legend(fontsize="small")
    return fig


def plot_accuracy(result: Result) -> plt.Figure:
    """Fig. 4b: mean test accuracy vs mean within-group distance, one point per width, with
    Pearson r and p across widths, one panel per layer."""
    means = result.summary()
    trend = result.trend()
    layers = result.config.layers
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 3.9),
                             constrained_layout=True, squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        x = means[f"{layer} trained"]
        ax.scatter(x, means["test acc"], s=50, zorder=3, **{k: v for k, v in
                                                             STATE_STYLE["trained"].items()})
        for w, xi, yi in zip(means.index, x, means["test acc"], strict=True):
            ax.annotate(f"w={w}", (xi, yi), textcoords="offset points", xytext=(5, 4),
                        fontsize="small")
        slope, icpt = np.polyfit(x, means["test acc"], 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, slope * xs + icpt, ls="--", color="black", lw=1)
        r, p = trend.loc[(layer, "trained"), ["pearson r vs acc", "p"]]
        ax.set(xlabel=f"within-group PWCCA distance ({layer}, trained)",
               ylabel="mean test accuracy", title=f"{layer}: r = {r:.2f}, p = {p:.3f}")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claims C5 and C6)
# ---------------------------------------------------------------------------------------------

#: C5: the group-mean trained distance falls with width: Spearman correlation at most this.
SPEARMAN_MAX = -0.7
#: Control: the trained distance's relative drop must be positive and at least this many times
#: the drop at initialization (else the fall is not the work of training; the paper: 40% vs 6%).
CONTROL_RATIO = 2
#: C6: accuracy is strongly anti-correlated with distance: Pearson r at most this ...
PEARSON_MAX = -0.8
#: ... with a p-value below this (over the widths, at a layer that passes the control).
P_MAX = 0.05


def check(result: Result) -> list[Claim]:
    """Claims C5 and C6, per compared layer.

    C5: the Spearman correlation of the trained group-mean distance with width is at most
    ``SPEARMAN_MAX``, and the trained distance's relative drop is positive and at least
    ``CONTROL_RATIO`` times the drop at initialization (negative init drops count as 0). C6:
    Pearson r of accuracy against distance at most ``PEARSON_MAX`` with p below ``P_MAX``, at a
    layer that passes the same control. Each claim holds if every layer passes, partly if one
    does."""
    cfg = result.config
    trend = result.trend()
    c5_rows, c6_rows, c5, c6 = [], [], {}, {}
    for layer in cfg.layers:
        tr, init = trend.loc[(layer, "trained")], trend.loc[(layer, "init")]
        need = CONTROL_RATIO * max(init["relative drop"], 0)
        control = Criterion(
            f"relative drop of the trained distance over the widths ({layer})",
            f"above 0 and at least {CONTROL_RATIO:g} x the drop at initialization "
            f"({need:.3f})",
            tr["relative drop"], bool(tr["relative drop"] > 0 and tr["relative drop"] >= need))
        spearman = Criterion(f"Spearman correlation of the trained distance with width ({layer})",
                             f"at most {SPEARMAN_MAX:g}", tr["spearman vs width"],
                             bool(tr["spearman vs width"] <= SPEARMAN_MAX))
        pearson = Criterion(f"Pearson r of accuracy with the trained distance ({layer})",
                            f"at most {PEARSON_MAX:g}", tr["pearson r vs acc"],
                            bool(tr["pearson r vs acc"] <= PEARSON_MAX))
        p_value = Criterion(f"p-value of that correlation ({layer})", f"below {P_MAX:g}",
                            tr["p"], bool(tr["p"] < P_MAX))
        c5_rows.extend((spearman, control))
        c6_rows.extend((pearson, p_value, control))
        c5[layer] = spearman.passed and control.passed
        c6[layer] = pearson.passed and p_value.passed and control.passed

    def evidence(kind: str) -> str:
        parts = []
        for layer in cfg.layers:
            tr, init = trend.loc[(layer, "trained")], trend.loc[(layer, "init")]
            if kind == "C5":
                parts.append(f"{layer} ({cfg.features_compared(layer)} features): trained "
                             f"{tr['narrowest']:.3f} to {tr['widest']:.3f} (Spearman "
                             f"{tr['spearman vs width']:+.2f}), at initialization "
                             f"{init['narrowest']:.3f} to {init['widest']:.3f}")
            else:
                parts.append(f"{layer}: r = {tr['pearson r vs acc']:+.2f}, p = {tr['p']:.3f}, "
                             f"drop at initialization {init['relative drop']:.0%} against "
                             f"trained {tr['relative drop']:.0%}")
        widths = ", ".join(str(w) for w in cfg.widths)
        return f"widths {widths}, {cfg.n_seeds} seeds each: " + "; ".join(parts)

    return [
        Claim(id="C5", status=status(all(c5.values()), any(c5.values())), evidence=evidence("C5"),
              figure="distance vs width", criteria=tuple(c5_rows)),
        Claim(id="C6", status=status(all(c6.values()), any(c6.values())), evidence=evidence("C6"),
              figure="accuracy vs distance", criteria=tuple(c6_rows)),
    ]
