"""Chapter: wider networks converge to more similar solutions (the paper's Fig. 4, C5 and C6).

For every width ``w`` (channels of conv1; the net has ``w, 2w, 2w, 4w`` channels, see
:func:`cca_lib.models.make_cnn`) we train a group of networks that differ only in their seed,
and measure two distances between every pair within the group, from one pass of
:func:`cca_lib.compare`: the symmetric PWCCA distance (mean of both directions) and the linear
CKA distance ``1 - CKA``:

* at each compared hidden layer, on a fixed-size random subset of ``n_features`` of its
  features (the paper: 128 final-layer filters), so that a wide layer is not favoured merely
  for having more neurons to match; each pair is scored on ``n_subsets`` independent subset
  draws, averaged; the logits (10 classes, the same for every width) are compared whole and
  reported apart (near-circular: two more accurate nets agree more on class scores by
  construction);
* after training and, as the control, at initialization (step 0), on the same probe images and
  the same subsets. Every capture goes through :func:`cca_lib.capture.capture_run`, which
  recomputes batch-norm statistics on training batches first, so the step-0 control is the
  network that trains; activations enter the measures in float64;
* the sampling floor of each layer: the measure on two nets' subsets with the rows of one
  shuffled (:func:`cca_lib.stats.permutation_null`).

:func:`check` compares trends with their uncertainty: the slope of the group-mean distance
against log2 width, with a bootstrap interval that resamples nets within each width
(:func:`cca_lib.stats.bootstrap_pairs`), trained against initialization; and the correlation
of accuracy with distance, with its interval and a permutation test over widths, trained
against the same correlation with the distances at initialization.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cca_lib import _checks, analysis, executors, models, plotting, stats, training
from cca_lib.claims import Claim, Criterion, status, yes_no
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    ChapterConfig,
    arch_param,
    optimizer_param,
    param,
    rule,
    scheduler_param,
)
from cca_lib.similarity import compare

#: Conv layers of the chapter's net (:func:`cca_lib.models.make_cnn`, default layout) and their
#: channel multipliers (channels = multiplier x width); the logits have 10 classes.
LAYER_MULT = {name: n for name, n in models.cnn_layer_widths(1).items() if name != "logits"}
#: Layers of every CNN layout, the names ``layers`` may hold (checked against ``arch``).
ALL_LAYERS = tuple(dict.fromkeys(name for arch in models.CNN_LAYOUTS
                                 for name in models.cnn_layer_widths(1, arch=arch)))
STATES = ("trained", "init")
#: History rows per run besides epoch ends (every fifth of training: the last is at or just
#: before 80%, where :func:`cca_lib.analysis.trained` starts its tail).
_HISTORY_POINTS = 5


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Width experiment parameters. Defaults are the quick profile."""

    widths: tuple[int, ...] = param(
        (6, 8, 12, 16, 24), "channels of conv1 (at least 3 distinct: a correlation across "
        "widths needs them); the net has w, 2w, 2w, 4w; the quick profile spans 4x",
        "13 multipliers 0.25x..7x of an 11-layer net",
        check=rule(_checks.ints, ge=1, le=_checks.MAX_UNITS, min_len=3, distinct=True))
    n_seeds: int = param(3, "networks per width, differing only in seed (a group needs a pair)",
                         "5", check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    layers: tuple[str, ...] = param(
        ("conv4", "logits"), "compared layers (hidden layers decide the verdict; the logits "
        "are reported apart)", "the last conv layer",
        check=rule(_checks.texts, choices=ALL_LAYERS, distinct=True))
    n_features: int = param(24, "random subset of each conv layer's channels per comparison",
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
    arch: str = arch_param("the 11-layer net")
    optimizer: str = optimizer_param("Adam")
    scheduler: str | None = scheduler_param()

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
        """The training config of one net: history evaluated every fifth of training (besides
        epoch ends), so the "trained" rule has a row at 80% of training."""
        steps = math.ceil(self.epochs * (self.train_size // self.batch_size))
        return training.CNNTrainConfig(
            dataset=self.dataset, width=width, train_size=self.train_size, epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, seed=seed, arch=self.arch,
            optimizer=self.optimizer, eval_every=max(1, steps // _HISTORY_POINTS))

    def features_compared(self, layer: str) -> int:
        """Features of ``layer`` that enter each comparison."""
        return 10 if layer == "logits" else self.n_features


#: The distance columns of :attr:`Result.distances` and what they measure.
MEASURE_COLUMNS = {"distance": "PWCCA", "cka": "linear CKA"}
#: Row permutations behind each sampling floor.
FLOOR_PERMUTATIONS = 100


@dataclass(frozen=True)
class Result:
    """Within-group distances per width, layer and state, each net's accuracy, and the
    sampling floors."""

    config: Config
    #: one row per net: width, seed, test_acc, train_acc, converged, reason
    #: (:func:`cca_lib.analysis.nets_frame`), then ``trained`` and ``trained_rule``
    #: (:func:`cca_lib.analysis.trained`)
    nets: pd.DataFrame
    #: one row per pair: width, layer, state ("trained"/"init"), i, j (the nets' indices within
    #: their width), distance (symmetric PWCCA), cka (1 - linear CKA)
    distances: pd.DataFrame
    #: one row per layer and distance column: layer, measure ("distance" or "cka"), floor (the
    #: distance of unrelated representations of this shape: 1 minus the mean similarity under
    #: row permutations), low and high (its 2.5% and 97.5% quantiles)
    floors: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The pair distances (long format, for seaborn)."""
        return self.distances.copy()

    def summary(self, column: str = "distance") -> pd.DataFrame:
        """Per width: mean test accuracy and, per layer and state, the mean pair ``column``."""
        _check_column(column)
        table = self.distances.pivot_table(index="width", columns=["layer", "state"],
                                           values=column, aggfunc="mean")
        table.columns = [f"{layer} {state}" for layer, state in table.columns]
        acc = self.nets.groupby("width")["test_acc"].mean().rename("test acc")
        return pd.concat([acc, table], axis=1)

    def trend(self, column: str = "distance") -> pd.DataFrame:
        """Per layer: the slope of the group-mean ``column`` against log2 width, trained and at
        initialization, and their difference, each with its 95% network-bootstrap interval;
        Pearson r of group-mean test accuracy against the trained distance across widths, with
        its interval and its permutation p-value over widths (one-sided: r below 0); the same r
        against the distance at initialization ("init r") and the trained minus init r
        ("r difference"), with their intervals."""
        rows = []
        for layer, t in _trends(self, column).items():
            row = {"layer": layer}
            for name in ("trained slope", "init slope", "slope difference", "r", "init r",
                         "r difference"):
                iv = t[name]
                row.update({name: iv.estimate, f"{name} low": iv.low, f"{name} high": iv.high})
            row["p"] = t["p"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("layer")


def _check_column(column: str) -> None:
    if column not in MEASURE_COLUMNS:
        raise ValueError(f"column must be one of {sorted(MEASURE_COLUMNS)}, got {column!r}")


def _seed(config: Config, *parts: int) -> int:
    return analysis.derived_seed(config.seed, *parts)


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train (or load) every group, then measure within-group distances trained and at init,
    and each layer's sampling floor. Training and capture run on ``executor`` (default:
    ``config.scheduler``'s, see :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    from cca_lib._progress import bar as tqdm_bar

    jobs = [(w, config.seed + s) for w in config.widths for s in range(config.n_seeds)]
    runs = training.train_many([config.train_config(w, s) for w, s in jobs], progress=progress,
                               desc="width groups", executor=executor)
    probe = analysis.probe_images(config.dataset, config.probe_split, config.probe_size)
    rows, floor_rows = [], []
    for w in tqdm_bar(config.widths, desc="distances", progress=progress):
        members = [r for (width, _), r in zip(jobs, runs, strict=True) if width == w]
        for state, step in (("trained", None), ("init", 0)):
            acts = [{k: v.astype(np.float64) for k, v in a.items()}
                    for a in executors.capture_many(members, step, probe.images,
                                                    list(config.layers), executor=executor,
                                                    progress=False)]
            for li, layer in enumerate(config.layers):
                def views(net: int, rep: int, layer=layer, li=li, acts=acts, w=w) -> np.ndarray:
                    if layer == "logits":
                        return acts[net][layer]
                    return analysis.feature_subset(acts[net][layer], config.n_features,
                                                   _subset_seed(config, w, li, net, rep))
                reps = 1 if layer == "logits" else config.n_subsets
                for i, j in combinations(range(len(members)), 2):
                    sims = [compare(views(i, rep), views(j, rep)) for rep in range(reps)]
                    rows.append({"width": w, "layer": layer, "state": state, "i": i, "j": j,
                                 "distance": 1 - float(np.mean(
                                     [s["PWCCA (symmetric)"] for s in sims])),
                                 "cka": 1 - float(np.mean([s["linear CKA"] for s in sims]))})
                if state == "trained" and w == config.widths[0]:
                    for mi, (column, measure) in enumerate((("distance", "PWCCA (symmetric)"),
                                                            ("cka", "linear CKA"))):
                        null = stats.permutation_null(
                            views(0, 0), views(1, 0), measure, n_perm=FLOOR_PERMUTATIONS,
                            seed=_seed(config, 5, li, mi)).null
                        floor_rows.append({"layer": layer, "measure": column,
                                           "floor": 1 - float(np.mean(null)),
                                           "low": 1 - float(np.quantile(null, 0.975)),
                                           "high": 1 - float(np.quantile(null, 0.025))})
    nets = analysis.nets_frame(runs, width=[w for w, _ in jobs])
    verdicts = [analysis.trained(r) for r in runs]
    nets["trained"] = [ok for ok, _ in verdicts]
    nets["trained_rule"] = [why for _, why in verdicts]
    return Result(config=config, nets=nets, distances=pd.DataFrame(rows),
                  floors=pd.DataFrame(floor_rows))


def _subset_seed(config: Config, width: int, layer: int, net: int, rep: int) -> int:
    """One fixed subset per (width, layer, net, draw), the same after training and at init."""
    return analysis.derived_seed(config.seed, width, layer, net, rep)


# ---------------------------------------------------------------------------------------------
# Trends with their uncertainty
# ---------------------------------------------------------------------------------------------

#: Network-bootstrap replicates behind each interval, and permutations of the widths for the
#: correlation test (enumerated exactly when there are fewer orderings).
N_BOOT, N_PERM = 1000, 9999


def _slope(log_w: np.ndarray, means: np.ndarray) -> float:
    """Least-squares slope of ``means`` on ``log_w`` over the finite means (NaN below 2)."""
    ok = np.isfinite(means)
    if ok.sum() < 2:
        return np.nan
    x, y = log_w[ok] - log_w[ok].mean(), means[ok] - means[ok].mean()
    return float(x @ y / (x @ x))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r, 0 where either side is constant (no linear association to measure)."""
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / norm) if norm > 0 else 0.0


def _trends(result: Result, column: str = "distance") -> dict[str, dict]:
    """Per layer: Intervals of the trained slope, init slope, their difference, Pearson r of
    accuracy with the trained distance, the same r with the distance at initialization and the
    trained-minus-initialization difference of r; and the permutation p-value of r over
    widths."""
    _check_column(column)
    cfg = result.config
    widths = np.array(sorted(cfg.widths))
    k = cfg.n_seeds
    m = widths.size * k  # node a = width index * k + seed index
    acc = np.full(m, np.nan)
    for row in result.nets.itertuples():
        seeds = result.nets[result.nets["width"] == row.width]["seed"].tolist()
        acc[list(widths).index(row.width) * k + seeds.index(row.seed)] = row.test_acc
    out = {}
    for li, layer in enumerate(cfg.layers):
        mats = {}
        for state in STATES:
            d = np.zeros((m, m))
            sub = result.distances[(result.distances["layer"] == layer)
                                   & (result.distances["state"] == state)]
            for row in sub.itertuples():
                base = list(widths).index(row.width) * k
                d[base + row.i, base + row.j] = d[base + row.j, base + row.i] = \
                    getattr(row, column)
            mats[state] = d

        out[layer] = _layer_trend(mats, acc, widths, k, _seed(cfg, 7, li), _seed(cfg, 8, li))
    return out


def _layer_trend(mats: dict, acc: np.ndarray, widths: np.ndarray, k: int, boot_seed: int,
                 perm_seed: int) -> dict:
    """The intervals and the permutation p-value of :func:`_trends` for one layer. Nodes are
    ordered by width (``k`` nets each), which the stratified node bootstrap keeps: the drawn
    nets of width ``n`` fill positions ``n k .. n k + k - 1``."""
    log_w = np.log2(widths)
    n_w = widths.size
    width_of = np.repeat(np.arange(n_w), k)
    iu, ju = np.triu_indices(k, 1)
    rows = np.arange(n_w)

    def group_means(d: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if not np.array_equal(width_of[idx], width_of):
            raise RuntimeError("the node bootstrap must keep the nets of a width together")
        sub = d[np.ix_(idx, idx)]
        sub[idx[:, None] == idx[None, :]] = np.nan  # a net never pairs with its copy
        blocks = sub.reshape(n_w, k, n_w, k)[rows, :, rows, :]  # (n_w, k, k)
        vals = blocks[:, iu, ju]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(vals, axis=1)

    def acc_means(idx: np.ndarray) -> np.ndarray:
        return acc[idx].reshape(n_w, k).mean(axis=1)

    def trained_slope(_d, idx):
        return _slope(log_w, group_means(mats["trained"], idx))

    def init_slope(_d, idx):
        return _slope(log_w, group_means(mats["init"], idx))

    def difference(_d, idx):
        return trained_slope(_d, idx) - init_slope(_d, idx)

    def correlation(_d, idx, state="trained"):
        dm, am = group_means(mats[state], idx), acc_means(idx)
        ok = np.isfinite(dm)
        return _pearson(am[ok], dm[ok]) if ok.sum() >= 3 else np.nan

    def init_correlation(_d, idx):
        return correlation(_d, idx, "init")

    def r_difference(_d, idx):
        return correlation(_d, idx) - init_correlation(_d, idx)

    t = {}
    for name, f in (("trained slope", trained_slope), ("init slope", init_slope),
                    ("slope difference", difference), ("r", correlation),
                    ("init r", init_correlation), ("r difference", r_difference)):
        # one seed for all: the same resampled nets behind every interval
        t[name] = stats.bootstrap_pairs(mats["trained"], f, n_boot=N_BOOT, seed=boot_seed,
                                        strata=width_of)
    every = np.arange(n_w * k)
    dm, am = group_means(mats["trained"], every), acc_means(every)
    test = stats.permutation_test(
        am, np.arange(n_w), alternative="less", n_perm=N_PERM, seed=perm_seed,
        statistic=lambda v, order: _pearson(v, dm[order]))
    t["p"] = test.p_value
    t["permutations"] = test.n_perm
    return t


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

STATE_STYLE = {"trained": {"color": plotting.MEASURE_COLORS["PWCCA"], "marker": "o"},
               "init": {"color": "#7f7f7f", "marker": "s"}}


def _layer_note(result: Result, layer: str) -> str:
    if layer == "logits":
        return "(reported apart)"
    return f"({result.config.features_compared(layer)} features)"


def plot_width(result: Result) -> plt.Figure:
    """Fig. 4a: within-group distance vs width, trained and at initialization (mean ± standard
    error over pairs), with the sampling floor (dashed, in its grey band); one row per layer,
    one column per measure (PWCCA, linear CKA), the book's column wide
    (:data:`cca_lib.plotting.COLUMN_WIDTH_IN`), one legend for all panels below them."""
    frame = result.to_frame()
    layers = result.config.layers
    fig, axes = plotting.grid(len(layers) * len(MEASURE_COLUMNS), ncols=len(MEASURE_COLUMNS),
                              panel=(plotting.COLUMN_WIDTH_IN / 2, 2.9), sharex=True)
    panels = iter(axes)
    for layer in layers:
        for column, label in MEASURE_COLUMNS.items():
            ax = next(panels)
            fl = result.floors[(result.floors["layer"] == layer)
                               & (result.floors["measure"] == column)].iloc[0]
            # the floor's band can be thinner than a grid line: its estimate is drawn dashed
            ax.axhspan(fl["low"], fl["high"], color="#888888", alpha=0.45, lw=0)
            ax.axhline(fl["floor"], color="#555555", ls="--", lw=1.2, label="sampling floor")
            for state in STATES:
                g = frame[(frame["layer"] == layer) & (frame["state"] == state)]
                agg = g.groupby("width")[column].agg(["mean", "sem"])
                ax.errorbar(agg.index, agg["mean"], yerr=agg["sem"], capsize=3, lw=1.6,
                            label="trained" if state == "trained" else "initialization "
                            "(control)", **STATE_STYLE[state])
            ax.set_xscale("log", base=2)
            ax.set_xticks(result.config.widths, [str(w) for w in result.config.widths])
            ax.minorticks_off()
            ax.set(ylabel=f"{label} distance", ylim=(0, 1.05),
                   title=f"{layer}, {label} {_layer_note(result, layer)}")
            ax.title.set_fontsize("small")
    for ax in axes[-len(MEASURE_COLUMNS):]:
        ax.set_xlabel("width (channels of conv1)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small",
               frameon=False)
    return fig


def plot_accuracy(result: Result) -> plt.Figure:
    """Fig. 4b: mean test accuracy vs mean within-group PWCCA distance, one point per width,
    with Pearson r, its bootstrap interval and its permutation p-value over widths, one panel
    per layer (two to a row, no wider than the book's column)."""
    means = result.summary()
    trend = result.trend()
    layers = result.config.layers
    fig, axes = plotting.grid(len(layers), ncols=2, panel=(plotting.COLUMN_WIDTH_IN / 2, 3.3))
    for ax, layer in zip(axes, layers, strict=True):
        x = means[f"{layer} trained"]
        ax.scatter(x, means["test acc"], s=50, zorder=3, **STATE_STYLE["trained"])
        for w, xi, yi in zip(means.index, x, means["test acc"], strict=True):
            ax.annotate(f"w={w}", (xi, yi), textcoords="offset points", xytext=(5, 4),
                        fontsize="small")
        slope, icpt = np.polyfit(x, means["test acc"], 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, slope * xs + icpt, ls="--", color="black", lw=1)
        ax.margins(x=0.15, y=0.12)  # room for the width labels
        t = trend.loc[layer]
        note = " (near-circular)" if layer == "logits" else ""
        ax.set(xlabel=f"PWCCA distance ({layer}, trained)", ylabel="mean test accuracy",
               title=f"{layer}{note}\nr = {t['r']:.2f} [{t['r low']:.2f}, {t['r high']:.2f}], "
                     f"p = {t['p']:.3f}")
        ax.title.set_fontsize("small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claims C5 and C6)
# ---------------------------------------------------------------------------------------------

#: A trend is directional when its 95% interval excludes 0 (the issue's rule); C6's correlation
#: needs its permutation p-value (over widths) below this.
ALPHA = 0.05
#: C6: accuracy is "strongly" anti-correlated with distance: the upper end of the 95% interval
#: of Pearson r (the whole interval) at most this.
PEARSON_MAX = -0.8
#: C6's control: the trained correlation must be stronger than the same correlation of accuracy
#: with the distances at initialization (width alone can drive both accuracy and distance): the
#: 95% interval of trained minus initialization r lies below this.
R_DIFFERENCE_MAX = 0.0
#: C6: distances at initialization "barely change with width" when the 95% interval of the init
#: slope lies within +- this many distance units per doubling of width (the paper's: 0.67 to
#: 0.63 over a 28x range, about 0.008 per doubling).
INIT_SLOPE_MARGIN = 0.01


def _judge(result: Result, column: str) -> dict:
    """Per layer the C5 and C6 criteria on one distance column; the statuses they give (decided
    on hidden layers; the logits' rows are reported only)."""
    cfg = result.config
    trends = _trends(result, column)
    what = MEASURE_COLUMNS[column]
    c5_rows, c6_rows, c5, c6, c6_corr = [], [], {}, {}, {}
    for layer in cfg.layers:
        t = trends[layer]
        hidden = layer != "logits"
        tag = layer if hidden else "logits, near-circular, reported only"

        def iv(x):
            return f"{x.estimate:+.4f} [{x.low:+.4f}, {x.high:+.4f}]"

        falls = Criterion(
            f"slope of the trained {what} distance per doubling of width ({tag}): "
            f"{iv(t['trained slope'])}; upper end of its interval",
            "below 0", t["trained slope"].high,
            bool(t["trained slope"].high < 0) if hidden else None)
        control = Criterion(
            f"trained minus initialization slope ({tag}): {iv(t['slope difference'])}; upper "
            "end of its interval", "below 0 (falls faster than the control)",
            t["slope difference"].high,
            bool(t["slope difference"].high < 0) if hidden else None)
        r, r0, dr = t["r"], t["init r"], t["r difference"]
        corr = Criterion(
            f"Pearson r of accuracy with the trained {what} distance across widths ({tag}): "
            f"{r.estimate:+.2f} [{r.low:+.2f}, {r.high:+.2f}]; upper end of its interval",
            f"at most {PEARSON_MAX:g}", r.high,
            bool(r.high <= PEARSON_MAX) if hidden else None)
        p_value = Criterion(f"permutation p-value of that correlation over widths ({tag})",
                            f"below {ALPHA:g} ({t['permutations']} orderings)", t["p"],
                            bool(t["p"] < ALPHA) if hidden else None)
        stronger = Criterion(
            f"trained minus initialization r (accuracy with the {what} distance at "
            f"initialization: r = {r0.estimate:+.2f} [{r0.low:+.2f}, {r0.high:+.2f}]) "
            f"({tag}): {dr.estimate:+.2f} [{dr.low:+.2f}, {dr.high:+.2f}]; upper end of its "
            "interval", f"below {R_DIFFERENCE_MAX:g} (stronger than the control)", dr.high,
            bool(dr.high < R_DIFFERENCE_MAX) if hidden else None)
        init = t["init slope"]
        flat = Criterion(
            f"slope of the {what} distance at initialization per doubling of width ({tag}): "
            f"{iv(init)}; larger end of its interval, absolute",
            f"below {INIT_SLOPE_MARGIN:g}", max(abs(init.low), abs(init.high)),
            bool(max(abs(init.low), abs(init.high)) < INIT_SLOPE_MARGIN) if hidden else None)
        c5_rows.extend((falls, control))
        c6_rows.extend((corr, p_value, stronger, flat))
        if hidden:
            c5[layer] = falls.passed and control.passed
            c6_corr[layer] = corr.passed and p_value.passed and stronger.passed
            c6[layer] = c6_corr[layer] and flat.passed
    trained_all = bool(result.nets["trained"].all())
    return {"trends": trends, "c5_rows": c5_rows, "c6_rows": c6_rows, "c5": c5, "c6": c6,
            "trained": trained_all,
            "c5_status": status(all(c5.values()) and trained_all, any(c5.values())),
            "c6_status": status(all(c6.values()) and trained_all, any(c6_corr.values()))}


def check(result: Result) -> list[Claim]:
    """Claims C5 and C6, decided on the compared hidden layers (the logits' rows are reported
    only: two more accurate nets agree more on class scores by construction).

    C5 at a hidden layer: the 95% network-bootstrap interval of the slope of the trained
    group-mean distance against log2 width lies below 0, and so does the interval of the
    trained-minus-initialization slope (the fall is training's work, not the architecture's).
    C6 at a hidden layer, its correlation part: the whole 95% network-bootstrap interval of
    Pearson r of group-mean accuracy with the trained distance across widths at most
    ``PEARSON_MAX``, a permutation p-value over widths below ``ALPHA``, and the control: the
    interval of the trained r minus the r of accuracy with the distance at initialization (the
    same resampled nets) below ``R_DIFFERENCE_MAX``, so the trained correlation is stronger
    than one that width alone gives untrained nets; and its second part, the initialization
    slope's interval within +- ``INIT_SLOPE_MARGIN``. A claim holds if every hidden layer
    passes and every net counts as trained (:func:`cca_lib.analysis.trained`); partly if some
    hidden layer passes (C6: its correlation part); linear CKA gets the same rules and is
    reported as agreeing or not."""
    cfg = result.config
    pw, ck = _judge(result, "distance"), _judge(result, "cka")
    hidden = [layer for layer in cfg.layers if layer != "logits"]
    n_trained = int(result.nets["trained"].sum())
    widths = ", ".join(str(w) for w in cfg.widths)
    tail = (f"; {n_trained} of {len(result.nets)} nets count as trained"
            + ("" if pw["trained"] else ", so the claim was tested on under-trained nets"))

    def evidence(kind: str) -> str:
        parts = []
        for layer in cfg.layers:
            t = pw["trends"][layer]
            note = " (near-circular, reported only)" if layer == "logits" else ""
            if kind == "C5":
                a, b = t["trained slope"], t["slope difference"]
                parts.append(f"{layer}{note}: trained slope {a.estimate:+.4f} [{a.low:+.4f}, "
                             f"{a.high:+.4f}] per doubling, minus initialization "
                             f"{b.estimate:+.4f} [{b.low:+.4f}, {b.high:+.4f}]")
            else:
                r, i, r0, dr = t["r"], t["init slope"], t["init r"], t["r difference"]
                parts.append(f"{layer}{note}: r = {r.estimate:+.2f} [{r.low:+.2f}, "
                             f"{r.high:+.2f}], permutation p = {t['p']:.3f}, at initialization "
                             f"r = {r0.estimate:+.2f} [{r0.low:+.2f}, {r0.high:+.2f}], trained "
                             f"minus initialization r {dr.estimate:+.2f} [{dr.low:+.2f}, "
                             f"{dr.high:+.2f}], initialization slope {i.estimate:+.4f} "
                             f"[{i.low:+.4f}, {i.high:+.4f}]")
        verdicts = ", ".join(f"{layer} {yes_no(pw[kind.lower()][layer])}" for layer in hidden)
        return (f"widths {widths}, {cfg.n_seeds} seeds each: " + "; ".join(parts)
                + f"; hidden layers passing: {verdicts}" + tail)

    head = hidden[-1]
    t = pw["trends"][head]
    d, r = t["slope difference"], t["r"]
    setup = (("dataset", "CIFAR-10", cfg.dataset),
             ("architecture", "11-layer CNN, 13 width multipliers 0.25x to 7x",
              f"4-layer CNN, conv1 widths {widths} ({max(cfg.widths) / min(cfg.widths):g}x)"),
             ("nets and seeds", "5 nets per width", f"{cfg.n_seeds} nets per width"),
             ("training", "100 epochs, Adam", f"{cfg.epochs:g} epochs of SGD (cosine) on "
              f"{cfg.train_size} images"),
             ("probe inputs", "training data, 128 final-layer filters",
              f"{cfg.probe_size} {cfg.probe_split} images, {cfg.n_features} random channels "
              f"per hidden layer, {cfg.n_subsets} draws"))
    return [
        Claim(id="C5", status=pw["c5_status"], evidence=evidence("C5"),
              figure="fig-width-distance", criteria=tuple(pw["c5_rows"]),
              paper_value="distance 0.47 to 0.28 trained, 0.67 to 0.63 at initialization",
              ours=f"{head} trained minus initialization slope {d.estimate:+.4f} "
                   f"[{d.low:+.4f}, {d.high:+.4f}] per doubling",
              cka_agrees=ck["c5_status"] == pw["c5_status"], setup=setup),
        Claim(id="C6", status=pw["c6_status"], evidence=evidence("C6"),
              figure="fig-width-accuracy", criteria=tuple(pw["c6_rows"]),
              paper_value="r = -0.96",
              ours=f"{head} r = {r.estimate:+.2f} [{r.low:+.2f}, {r.high:+.2f}], permutation "
                   f"p = {t['p']:.3f}; at initialization r = {t['init r'].estimate:+.2f} "
                   f"[{t['init r'].low:+.2f}, {t['init r'].high:+.2f}]",
              cka_agrees=ck["c6_status"] == pw["c6_status"], setup=setup),
    ]


_PHRASE = {"holds": "holds", "partly": "holds partly", "does not hold": "does not hold"}


def describe(result: Result) -> str:
    """A paragraph (Markdown) on what the run shows, generated from its numbers."""
    cfg = result.config
    c5, c6 = check(result)
    pw = _judge(result, "distance")
    means = result.summary()
    text = [f"At this scale C5 **{_PHRASE[c5.status]}** and C6 **{_PHRASE[c6.status]}** "
            "(PWCCA; linear CKA "
            f"{'agrees' if c5.cka_agrees else 'differs'} on C5 and "
            f"{'agrees' if c6.cka_agrees else 'differs'} on C6)."]
    for layer in cfg.layers:
        t = pw["trends"][layer]
        fl = result.floors[(result.floors["layer"] == layer)
                           & (result.floors["measure"] == "distance")]["floor"].iloc[0]
        tr, init = means[f"{layer} trained"], means[f"{layer} init"]
        a, b, i = t["trained slope"], t["slope difference"], t["init slope"]
        note = (" These are the logits: they are near-circular (more accurate nets agree more "
                "on class scores by construction) and do not decide the verdict."
                if layer == "logits" else "")
        text.append(
            f"In {layer} the trained distance goes from {tr.iloc[0]:.3f} at width "
            f"{means.index[0]} to {tr.iloc[-1]:.3f} at width {means.index[-1]} (slope "
            f"{a.estimate:+.4f} [{a.low:+.4f}, {a.high:+.4f}] per doubling), at initialization "
            f"from {init.iloc[0]:.3f} to {init.iloc[-1]:.3f} (slope {i.estimate:+.4f} "
            f"[{i.low:+.4f}, {i.high:+.4f}]); trained minus initialization "
            f"{b.estimate:+.4f} [{b.low:+.4f}, {b.high:+.4f}]. The sampling floor is "
            f"{fl:.2f}, {'close to' if max(tr.max(), init.max()) > fl - 0.05 else 'well above'}"
            f" these distances.{note}")
    n_trained = int(result.nets["trained"].sum())
    text.append(f"{n_trained} of {len(result.nets)} nets count as trained (test accuracy "
                "changed by less than 0.5 points over the last 20% of training).")
    return " ".join(text)


__all__ = ["MEASURE_COLUMNS", "STATES", "Config", "Result", "check", "describe", "plot_accuracy",
           "plot_width", "run"]
