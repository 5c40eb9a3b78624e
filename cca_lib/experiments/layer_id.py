"""Chapter: does the measure find the matching layer? (Kornblith et al. 2019, Sec. 6.1, Table 2;
the scorecard's cross-check K1, not a claim of the paper we rerun).

We train ``n_nets`` networks of one architecture that differ only in their seed (the 11-layer
``arch="paper"`` net of :func:`cca_lib.models.make_cnn` at a small width, whose layers come in
blocks of equal width) and record every conv layer on the same training images (logits
excluded; each channel averaged over space). For every ordered pair of networks ``(a, b)`` and
every layer ``i`` of ``a``, each measure names the layer of ``b`` most similar to it; the
measure *identifies* layer ``i`` if that is layer ``i`` of ``b``. When ``k`` layers of ``b`` tie
for the highest similarity (within :data:`TIE_TOL`), the identification counts ``1/k`` if layer
``i`` is among them and 0 otherwise. Accuracy is the mean over pairs and layers.

Measures: mean CCA, SVCCA (``svcca_keep`` of the variance), PWCCA symmetrized (the mean of both
directions), linear CKA (all from :func:`cca_lib.compare`) and RBF CKA
(:func:`cca_lib.rbf_cka_matrix`, bandwidth ``rbf_sigma_frac`` of the median distance), all on
float64 activations. The same is repeated on the first ``n`` probe images for ``n`` = each of
``sweep_ratios`` times the widest layer's width, and the similarity of unrelated
representations (the widest layer of one net against the same layer of another with its rows
shuffled) is recorded at every ``n`` as the sampling floor.

Intervals: 95% bootstrap over *networks* (networks resampled with replacement, every ordered
pair of distinct resampled networks scored again), never over pairs as if independent.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cca_lib import _checks, analysis, capture, compare, models, plotting, stats, training
from cca_lib._validation import FewSamplesWarning
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
    param,
    rule,
)
from cca_lib.kernel_cka import rbf_cka_matrix

#: The measures compared, in the order of the tables and figures.
MEASURES = ("mean CCA", "SVCCA", "PWCCA", "linear CKA", "RBF CKA")
#: The CCA family (invariant to invertible linear maps, or nearly so).
CCA_FAMILY = ("mean CCA", "SVCCA", "PWCCA")
#: Kornblith et al. (2019), Table 2: their accuracies (Tiny-10 CNNs on CIFAR-10). Shown only
#: as the paper's, beside ours; nothing is computed from them.
PAPER_ACCURACY = {"mean CCA": 0.014, "SVCCA": 0.099, "PWCCA": 0.111, "linear CKA": 0.993,
                  "RBF CKA": 0.991}
PAPER_LABEL = "Kornblith et al. (2019), Table 2 (Tiny-10 CNNs, CIFAR-10)"
#: Architecture of the chapter's nets (see :func:`cca_lib.models.make_cnn`).
ARCH = "paper"
_FROM_COMPARE = {"mean CCA": "mean CCA", "SVCCA": "SVCCA", "PWCCA": "PWCCA (symmetric)",
                 "linear CKA": "linear CKA"}


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Layer-identification parameters. Defaults are the quick profile."""

    n_nets: int = param(5, "networks of one architecture, differing only in their seed (the "
                        "network bootstrap needs at least 3)", "10",
                        check=rule(_checks.integer, ge=3, le=_checks.MAX_COUNT))
    width: int = param(8, "channels of conv1 of the 11-layer net (w, w, 2w, 2w, 2w, 4w, 4w, 4w, "
                       "8w, 8w, 8w channels)", "Tiny-10, 16 to 64 channels",
                       check=rule(_checks.integer, ge=1, le=_checks.MAX_UNITS))
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (a '
                         "170 MB download)", "CIFAR-10", check=IMAGES)
    train_size: int = param(4000, "training images, the first ones of the training split",
                            "all 50k CIFAR-10 images", check=SAMPLES)
    epochs: float = param(3.0, "training epochs, SGD + momentum with a cosine schedule",
                          check=EPOCHS)
    batch_size: int = param(128, "minibatch size", check=BATCH)
    lr: float = param(0.05, "peak SGD learning rate (cosine schedule)", check=POSITIVE)
    probe_size: int = param(1280, "probe images (the first ones of the training split): the "
                            "main comparison", "training data", check=SAMPLES)
    sweep_ratios: tuple[int, ...] = param(
        (2, 4, 8), "the comparison is repeated on the first n probe images, for n each of "
        "these times the channels of the widest layer (8w); not in the paper",
        check=rule(_checks.ints, ge=1, le=_checks.MAX_SAMPLES, distinct=True))
    svcca_keep: float = param(0.99, "SVCCA: fraction of variance kept per layer", "0.99",
                              check=rule(_checks.real, gt=0, le=1))
    rbf_sigma_frac: float = param(0.4, "RBF CKA: bandwidth as a fraction of the median "
                                  "distance between probe images' activations", "0.4",
                                  check=POSITIVE)
    n_boot: int = param(2000, "bootstrap resamples of the networks for the 95% intervals",
                        "not stated", check=POSITIVE_COUNT)
    seed: int = param(0, "nets use seeds seed .. seed + n_nets - 1; also seeds the bootstrap "
                      "and the floor's shuffle", check=SEED)

    def _validate(self) -> None:
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")
        big = [r for r in self.sweep_ratios if r * self.widest >= self.probe_size]
        if big:
            raise ValueError(
                f"sweep_ratios {big} x the widest layer ({self.widest} channels) must stay below "
                f"probe_size={self.probe_size} (the main comparison uses all probe images)")
        _checks.allocation("probe_size x channels of all layers x n_nets",
                           self.probe_size * sum(self.layer_widths.values()) * self.n_nets)

    @property
    def layer_widths(self) -> dict[str, int]:
        """Channels of every compared layer (the conv layers; logits excluded)."""
        return {name: c for name, c in models.cnn_layer_widths(self.width, arch=ARCH).items()
                if name != "logits"}

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_widths)

    @property
    def widest(self) -> int:
        return max(self.layer_widths.values())

    @property
    def probe_counts(self) -> tuple[int, ...]:
        """Every number of probe images compared: the sweep's, then ``probe_size``."""
        return tuple(sorted(r * self.widest for r in self.sweep_ratios)) + (self.probe_size,)

    def train_config(self, seed: int) -> training.CNNTrainConfig:
        base = training.CNNTrainConfig(
            dataset=self.dataset, arch=ARCH, width=self.width, train_size=self.train_size,
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed)
        # one history row at 80% of training: the "trained" rule compares it with the end
        tail = round(TRAINED_TAIL_START * training.total_steps(base))
        return dataclasses.replace(base, checkpoints=(tail,))


@dataclass(frozen=True)
class Result:
    """Similarity matrices of every pair of nets at every probe count, the floor, the nets."""

    config: Config
    #: one row per net (:func:`cca_lib.analysis.nets_frame`) plus ``acc_at_80`` (test accuracy
    #: at 80% of training) and ``trained`` (the chapter's rule, see :data:`TRAINED_MAX_CHANGE`)
    nets: pd.DataFrame
    #: n -> measure -> ``(N, N, L, L)`` array: ``[a, b, i, j]`` the similarity of layer ``i``
    #: of net ``a`` and layer ``j`` of net ``b`` on the first ``n`` probe images (NaN for a = b)
    similarity: dict[int, dict[str, np.ndarray]]
    #: one row per n and measure: similarity of the widest layer of net 0 and the same layer
    #: of net 1 with its rows shuffled (unrelated representations of the same shape)
    floor: pd.DataFrame

    @property
    def n_main(self) -> int:
        return self.config.probe_size

    def credits(self, n: int | None = None, measure: str = "linear CKA") -> np.ndarray:
        """``(N, N, L, L)``: the credit layer ``i`` of net ``a`` gives layer ``j`` of net ``b``
        (``1/k`` for each of the ``k`` layers tied at the highest similarity, else 0)."""
        s = self.similarity[self.n_main if n is None else n][measure]
        s = np.where(np.isnan(s), -np.inf, s)  # a net against itself: no credit counted
        tied = s >= s.max(axis=3, keepdims=True) - TIE_TOL
        return tied / tied.sum(axis=3, keepdims=True)

    def pair_accuracy(self, n: int | None = None, measure: str = "linear CKA") -> np.ndarray:
        """``(N, N)``: accuracy of each ordered pair ``(a, b)`` over ``a``'s layers (NaN on the
        diagonal)."""
        c = self.credits(n, measure)
        acc = np.einsum("abii->ab", c) / c.shape[2]
        np.fill_diagonal(acc, np.nan)
        return acc

    def bootstrap(self, n: int | None = None) -> pd.DataFrame:
        """Per measure: accuracy over all ordered pairs and its 95% network-bootstrap interval
        (columns accuracy, low, high); the same resamples for every measure."""
        rows = []
        for m in MEASURES:
            ci = _network_interval(self.pair_accuracy(n, m), self.config.n_boot,
                                   self.config.seed)
            rows.append({"measure": m, "accuracy": ci.estimate, "low": ci.low,
                         "high": ci.high})
        return pd.DataFrame(rows).set_index("measure")

    def difference(self, better: str, worse: str, n: int | None = None) -> tuple[float, float,
                                                                                  float]:
        """Accuracy of ``better`` minus ``worse`` and its 95% network-bootstrap interval."""
        diff = self.pair_accuracy(n, better) - self.pair_accuracy(n, worse)
        ci = _network_interval(diff, self.config.n_boot, self.config.seed)
        return ci.estimate, ci.low, ci.high

    def accuracy_table(self) -> pd.DataFrame:
        """Our accuracies (main probe count) with intervals beside the paper's."""
        table = self.bootstrap().rename(columns={"accuracy": "ours", "low": "95% low",
                                                 "high": "95% high"})
        table[PAPER_LABEL] = [PAPER_ACCURACY[m] for m in table.index]
        return table

    def sweep_table(self) -> pd.DataFrame:
        """Accuracy (and interval) per probe count and measure, with n / widest layer."""
        frames = []
        for n in self.config.probe_counts:
            t = self.bootstrap(n).reset_index()
            t.insert(0, "n / d", n / self.config.widest)
            t.insert(0, "n", n)
            frames.append(t)
        return pd.concat(frames, ignore_index=True)

    def where_credit_goes(self, n: int | None = None) -> pd.DataFrame:
        """Per measure: the share of all credit given to the same layer, to another layer of
        the same width, to a wider and to a narrower layer."""
        widths = np.array(list(self.config.layer_widths.values()))
        same_layer = np.eye(len(widths), dtype=bool)
        same_width = (widths[:, None] == widths[None, :]) & ~same_layer
        wider, narrower = widths[None, :] > widths[:, None], widths[None, :] < widths[:, None]
        rows = []
        for m in MEASURES:
            c = self.credits(n, m)
            valid = ~np.eye(c.shape[0], dtype=bool)
            total = c[valid].sum(axis=0)  # (L, L) summed over ordered pairs
            share = {name: float(total[mask].sum() / total.sum()) for name, mask in
                     (("same layer", same_layer), ("same width, other layer", same_width),
                      ("wider layer", wider), ("narrower layer", narrower))}
            rows.append({"measure": m, **share})
        return pd.DataFrame(rows).set_index("measure")


def _network_interval(acc: np.ndarray, n_boot: int, seed: int) -> stats.Interval:
    """Mean of ``acc`` ``(N, N)`` over ordered pairs of distinct networks and its 95%
    network-bootstrap interval, by :func:`cca_lib.stats.bootstrap_pairs`: networks drawn with
    replacement, pairs of two copies of one network left out. The mean over ordered pairs is
    the mean over unordered pairs of ``(acc + acc.T) / 2``, the symmetric matrix that
    ``bootstrap_pairs`` takes. The draws depend only on ``seed``, ``N`` and ``n_boot``, so every
    measure (and a difference of two measures' matrices: a paired interval) sees the same
    resamples."""
    return stats.bootstrap_pairs((acc + acc.T) / 2, n_boot=n_boot, level=0.95, seed=seed)


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train (or load) the nets, record their conv layers, compare every pair of nets."""
    from cca_lib._progress import bar as tqdm_bar

    seeds = [config.seed + k for k in range(config.n_nets)]
    runs = training.train_many([config.train_config(s) for s in seeds], progress=progress,
                               desc="networks")
    probe = analysis.probe_images(config.dataset, "train", config.probe_size)
    acts = []
    for r in runs:
        layers = capture.capture_run(r, None, probe.images, list(config.layers))
        acts.append([np.asarray(layers[name], dtype=np.float64) for name in config.layers])
    n_nets, n_layers = config.n_nets, len(config.layers)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 23]))
    shuffle = rng.permutation(config.probe_size)
    similarity, floor = {}, []
    jobs = config.probe_counts
    for n in tqdm_bar(jobs, desc="probe counts", progress=progress):
        sims = {m: np.full((n_nets, n_nets, n_layers, n_layers), np.nan) for m in MEASURES}
        with warnings.catch_warnings():
            # below 5 samples per feature (the sweep's smallest n): the point of the sweep
            warnings.simplefilter("ignore", FewSamplesWarning)
            for a in range(n_nets):
                for b in range(a + 1, n_nets):
                    for i in range(n_layers):
                        for j in range(n_layers):
                            v = compare(acts[a][i][:n], acts[b][j][:n],
                                        keep=config.svcca_keep, allow_few_samples=True)
                            for m, key in _FROM_COMPARE.items():
                                sims[m][a, b, i, j] = sims[m][b, a, j, i] = v[key]
            rbf = rbf_cka_matrix([layer[:n] for net in acts for layer in net],
                                 sigma_frac=config.rbf_sigma_frac)
            rbf = rbf.reshape(n_nets, n_layers, n_nets, n_layers).transpose(0, 2, 1, 3)
            sims["RBF CKA"] = rbf.copy()
            for a in range(n_nets):
                sims["RBF CKA"][a, a] = np.nan
            # the floor: the widest (last) layer against a row-shuffled copy of net 1's
            x = acts[0][-1][:n]
            y = acts[1][-1][shuffle[shuffle < n]]
            v = compare(x, y, keep=config.svcca_keep, allow_few_samples=True)
            values = {m: v[key] for m, key in _FROM_COMPARE.items()}
            values["RBF CKA"] = float(rbf_cka_matrix([x, y],
                                                     sigma_frac=config.rbf_sigma_frac)[0, 1])
        similarity[n] = sims
        floor.extend({"n": n, "n / d": n / config.widest, "measure": m, "similarity": values[m]}
                     for m in MEASURES)
    nets = analysis.nets_frame(runs)
    nets["acc_at_80"] = [_acc_at(r, r.config.checkpoints[0]) for r in runs]
    nets["trained"] = (nets["test_acc"] - nets["acc_at_80"]).abs() < TRAINED_MAX_CHANGE
    return Result(config=config, nets=nets, similarity=similarity, floor=pd.DataFrame(floor))


def _acc_at(run, step: int) -> float:
    """Test accuracy of ``run``'s history row at ``step`` (NaN if there is none)."""
    rows = run.history[run.history["step"] == step]
    return float(rows["test_acc"].iloc[-1]) if len(rows) else float("nan")


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

MEASURE_COLORS = {**plotting.MEASURE_COLORS, "RBF CKA": "#000000"}


def _layer_labels(config: Config) -> list[str]:
    return [f"{name[4:]} ({c})" for name, c in config.layer_widths.items()]


def plot_similarity(result: Result, a: int = 0, b: int = 1) -> plt.Figure:
    """Similarity of every layer of net ``a`` (rows) with every layer of net ``b`` (columns),
    one panel per measure, two panels to a row in the book's column, on all probe images; a
    dot marks each row's most similar layer(s)."""
    cfg = result.config
    labels = _layer_labels(cfg)
    fig, axes = plotting.grid(len(MEASURES), ncols=2, panel=(3.45, 3.2))
    for i, (ax, m) in enumerate(zip(axes, MEASURES, strict=True)):
        s = result.similarity[result.n_main][m][a, b]
        im = ax.imshow(s, cmap="magma", vmin=float(np.min(s)), vmax=1.0)
        tied = result.credits(None, m)[a, b] > 0
        rows, cols = np.nonzero(tied)
        ax.scatter(cols, rows, s=18, c="#2ca02c", marker="o", edgecolors="white",
                   linewidths=0.5)
        ax.set_title(m)
        left = i % 2 == 0
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize="x-small")
        ax.set_yticks(range(len(labels)), labels if left else [], fontsize="x-small")
        ax.set_xlabel(f"layer of net {b} (channels)", fontsize="small")
        if left:
            ax.set_ylabel(f"layer of net {a} (channels)", fontsize="small")
        ax.grid(False)
        bar = fig.colorbar(im, ax=ax, shrink=0.85)
        bar.ax.tick_params(labelsize="x-small")
    return fig


def plot_accuracy(result: Result) -> plt.Figure:
    """Accuracy of each measure with its 95% network-bootstrap interval (bars), the paper's
    value (diamonds, labelled as the paper's) and chance (one layer in L, dotted), as wide as
    the book's column."""
    table = result.accuracy_table()
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH_IN, 3.8), constrained_layout=True)
    x = np.arange(len(MEASURES))
    ours = table["ours"].to_numpy()
    err = np.vstack([ours - table["95% low"].to_numpy(), table["95% high"].to_numpy() - ours])
    ax.bar(x, ours, yerr=err, capsize=4, color=[MEASURE_COLORS[m] for m in MEASURES],
           alpha=0.85, label=f"ours ({result.config.n_nets} nets, 95% interval over networks)")
    ax.scatter(x, [PAPER_ACCURACY[m] for m in MEASURES], marker="D", s=45, color="#ff7f0e",
               zorder=3, label=PAPER_LABEL)
    ax.axhline(1 / len(result.config.layers), ls=":", color="black", lw=1,
               label=f"chance (1 in {len(result.config.layers)} layers)")
    ax.set_xticks(x, MEASURES)
    ax.set(ylabel="layers identified", ylim=(0, 1.05),
           title=f"Which layer of another net is most similar? (n = {result.n_main} images)")
    # below the axes: inside it would hide the paper's diamonds near 1
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small",
               frameon=False)
    return fig


def plot_sweep(result: Result) -> plt.Figure:
    """Top: accuracy against n / d (d: the widest layer's channels) with 95% intervals; bottom:
    the similarity of unrelated representations (the widest layer against a row-shuffled copy)
    at the same n, the sampling floor; one legend for both, below them, in the book's
    column."""
    sweep = result.sweep_table()
    floor = result.floor
    fig, (top, bottom) = plotting.grid(2, ncols=1, panel=(plotting.COLUMN_WIDTH_IN, 3.0),
                                       sharex=True)
    for m in MEASURES:
        g = sweep[sweep["measure"] == m]
        top.errorbar(g["n / d"], g["accuracy"],
                     yerr=[g["accuracy"] - g["low"], g["high"] - g["accuracy"]], capsize=3,
                     marker="o", color=MEASURE_COLORS[m], label=m)
        f = floor[floor["measure"] == m]
        bottom.plot(f["n / d"], f["similarity"], marker="o", color=MEASURE_COLORS[m], label=m)
    top.axhline(1 / len(result.config.layers), ls=":", color="black", lw=1, label="chance")
    ratios = [n / result.config.widest for n in result.config.probe_counts]
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(ratios, [f"{r:g}" for r in ratios])
    bottom.minorticks_off()
    bottom.set_xlabel(f"n / d  (n probe images, d = {result.config.widest} channels of the "
                      "widest layer)")
    top.set(ylabel="layers identified", ylim=(0, 1.05), title="Accuracy against n / d")
    bottom.set(ylabel="similarity", ylim=(0, 1.05),
               title="Floor: widest layer vs. a row-shuffled copy")
    fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               fontsize="small", frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Check (cross-check K1)
# ---------------------------------------------------------------------------------------------

#: Similarities within this of a row's highest count as tied (every tied layer gets 1/k): CCA
#: gives 1 up to rounding (~1e-8 in the covariance route) when n <= d1 + d2.
TIE_TOL = 1e-6
#: Linear CKA "reliably identifies" layers: at least this accuracy (9 layers in 10; the paper
#: found 0.993).
RELIABLE_ACC = 0.9
#: Linear CKA is better than a CCA-family measure when the lower end of the 95% network-
#: bootstrap interval of the accuracy difference is above this (the interval excludes 0).
DIFF_MIN = 0.0
#: A net counts as trained when the last 20% of its training changed its test accuracy by less
#: than this (half a point) ...
TRAINED_MAX_CHANGE = 0.005
#: ... measured from this fraction of training to the end.
TRAINED_TAIL_START = 0.8


def _interval(v: float, low: float, high: float, sign: bool = False) -> str:
    fmt = "+.3f" if sign else ".3f"
    return f"{v:{fmt}} (95% interval {low:{fmt}} to {high:{fmt}})"


def check(result: Result) -> list[Claim]:
    """Cross-check K1 (Kornblith et al. 2019, Table 2), at the main probe count.

    Criteria: linear CKA's accuracy is at least ``RELIABLE_ACC``; for each of mean CCA, SVCCA
    and PWCCA, the 95% network-bootstrap interval of linear CKA's accuracy minus that measure's
    lies above ``DIFF_MIN``. Holds if all four pass, partly if any passes, else does not hold.
    Reported beside them (deciding nothing): RBF CKA's accuracy, the CCA family's accuracy at
    the smallest n of the sweep, and how many nets met the trained rule."""
    cfg = result.config
    table = result.bootstrap()
    cka = table.loc["linear CKA"]
    reliable = Criterion("share of layers linear CKA identifies", f"at least {RELIABLE_ACC:g}",
                         float(cka["accuracy"]), bool(cka["accuracy"] >= RELIABLE_ACC))
    rows, better = [reliable], {}
    for m in CCA_FAMILY:
        d, low, high = result.difference("linear CKA", m)
        better[m] = bool(low > DIFF_MIN)
        rows.append(Criterion(f"linear CKA's accuracy minus {m}'s",
                              f"95% interval above {DIFF_MIN:g}",
                              _interval(d, low, high, sign=True), better[m]))
    rbf = table.loc["RBF CKA"]
    rows.append(Criterion("share of layers RBF CKA identifies", "reported only",
                          _interval(rbf["accuracy"], rbf["low"], rbf["high"]), None))
    n_small = cfg.probe_counts[0]
    small = result.bootstrap(n_small)
    for m in CCA_FAMILY:
        rows.append(Criterion(f"share of layers {m} identifies at n = {n_small} "
                              f"(n / d = {n_small / cfg.widest:g})", "reported only",
                              float(small.loc[m, "accuracy"]), None))
    n_trained = int(result.nets["trained"].sum())
    rows.append(Criterion("nets whose last 20% of training changed test accuracy by less than "
                          f"{100 * TRAINED_MAX_CHANGE:g} points", "reported only",
                          f"{n_trained} of {len(result.nets)}", None))
    holds = reliable.passed and all(better.values())
    partly = reliable.passed or any(better.values())
    accs = ", ".join(f"{m} " + _interval(*table.loc[m, ["accuracy", "low", "high"]])
                     for m in MEASURES)
    trained = ("" if n_trained == len(result.nets) else
               f"; tested on under-trained nets ({n_trained} of {len(result.nets)} met the "
               "trained rule)")
    evidence = (f"{cfg.n_nets} nets of one 11-layer CNN differing only in seed, "
                f"{len(cfg.layers)} conv layers, n = {cfg.probe_size} training images: share "
                f"of layers identified: {accs}; linear CKA better than every CCA-family "
                f"measure: {yes_no(all(better.values()))}{trained}")
    best = max(CCA_FAMILY, key=lambda m: table.loc[m, "accuracy"])
    ours = (f"layers identified: linear CKA {cka['accuracy']:.2f} [{cka['low']:.2f}, "
            f"{cka['high']:.2f}], best CCA-family ({best}) {table.loc[best, 'accuracy']:.2f} "
            f"[{table.loc[best, 'low']:.2f}, {table.loc[best, 'high']:.2f}]")
    return [Claim(id="K1", status=status(holds, partly), evidence=evidence, ours=ours,
                  paper_value="linear CKA identifies 0.993 of the layers, far more than the "
                  "CCA family (their Table 2)", figure="fig-layer-id-accuracy",
                  criteria=tuple(rows))]
