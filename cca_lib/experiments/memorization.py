"""Chapter: generalization vs memorization (the paper's Fig. 3 and A10, claim C4).

Two groups of CNNs (:func:`cca_lib.models.make_cnn`) that differ only in their random seed:

* the **generalizing** group trains on the true labels of the first ``train_size`` training
  images;
* the **memorizing** group trains on the same images with ONE fixed random labelling
  (:func:`cca_lib.data.random_labels` with ``label_seed``, shared by the whole group), which
  it can only fit by memorizing.

Every network gets its own initialization seed (``seed + i`` for the generalizing nets,
``seed + n_nets + i`` for the memorizing ones), so no pair across the groups shares its
initial weights. Both groups use the same hyperparameters.

We record every layer on two probe sets of the same size (so both panels share one sampling
floor), the same inputs for all networks: the first ``probe_size`` images of the training
subset (inputs both groups were trained on) and the first ``probe_size`` test images. Captures
go through :func:`cca_lib.capture.capture_run` (batch-norm statistics recomputed on training
batches) and enter the measures in float64. For each layer and probe, one pass of
:func:`cca_lib.compare` per pair of networks gives the symmetric PWCCA distance (mean of both
directions; or ``method``'s measure) and the linear CKA distance ``1 - CKA``, between every pair
within each group and across the groups ("inter"). The sampling floor of each layer is the
measure on two networks' activations with the rows of one shuffled
(:func:`cca_lib.stats.permutation_null`).

:func:`check` judges the claim with node-label permutation tests and network bootstraps
(:mod:`cca_lib.stats`), never with a p-value over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from cca_lib import _checks, analysis, data, executors, stats, training
from cca_lib.claims import Claim, Criterion, status, yes_no
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE,
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

#: Names of the three kinds of pairs, in plotting order.
PAIRS = ("generalizing", "memorizing", "inter")
PAIR_COLORS = {"generalizing": "#2ca02c", "memorizing": "#d62728", "inter": "#7f7f7f"}
PROBES = ("train", "test")
_GROUP = {"true": "generalizing", "random": "memorizing"}
#: Test images behind each net's per-epoch history: the learning curve and the "trained" rule
#: of the generalizing nets (test accuracy over the last 20% of training; 1000 images resolve
#: 0.1 points, well below the rule's 0.5). History evaluation does not change the weights.
_HISTORY_EVAL_SIZE = 1000
#: The distance columns of :attr:`Result.distances` and what they measure with the default
#: ``method`` (:meth:`Result.measure_names` gives the names for the run's ``method``).
MEASURE_COLUMNS = {"distance": "PWCCA", "cka": "linear CKA"}
#: ``method`` -> the :func:`cca_lib.compare` similarity its distance is 1 minus.
_COMPARE_KEY = {"pwcca": "PWCCA (symmetric)", "mean_cca": "mean CCA", "svcca": "SVCCA",
                "cka": "linear CKA"}
_METHOD_LABEL = {"pwcca": "PWCCA", "mean_cca": "mean CCA", "svcca": "SVCCA", "cka": "linear CKA"}
#: Row permutations behind each sampling floor.
FLOOR_PERMUTATIONS = 100


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Parameters of the experiment. Defaults are the quick profile."""

    width: int = param(16, "CNN width multiplier: channels w, 2w, 2w, 4w",
                       "11-layer CNN, 64..512 filters", check=UNITS)
    n_nets: int = param(4, "networks per group (4 is the smallest group for which a "
                        "node-label permutation test can reach p < 0.05: 70 labelings)", "5",
                        check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    train_size: int = param(1000, "training images, the first ones of the training split",
                            "all of CIFAR-10", check=SAMPLES)
    epochs: float = param(60.0, "epochs of SGD over the training subset, cosine schedule",
                          "trained to near-zero training loss", check=EPOCHS)
    lr: float = param(0.05, "peak learning rate (cosine schedule to 0); higher ones stall on "
                      "random labels", "not stated", check=POSITIVE)
    batch_size: int = param(128, "minibatch size", check=BATCH)
    label_seed: int = param(0, "the ONE random labelling shared by the memorizing group",
                            check=SEED)
    seed: int = param(0, "first initialization seed; every net has its own (see the module "
                      "doc)", check=SEED)
    probe_size: int = param(1000, "probe images per panel: the first ones of the training "
                            "subset and the first ones of the test split (one size, one "
                            "sampling floor)", "training data (Fig. 3), test data (Fig. A10)",
                            check=SAMPLES)
    target_train_acc: float = param(0.99, "the engine flags a net as not converged below this "
                                    "training accuracy on its own labels",
                                    check=rule(_checks.real, gt=0, le=1))
    method: str = param("pwcca", "distance measure (cca_lib.similarity.distance); linear CKA "
                        "is always reported beside it", "PWCCA",
                        check=rule(_checks.text, choices=("pwcca", "mean_cca", "svcca", "cka")))
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)
    arch: str = arch_param("11-layer CNN")
    optimizer: str = optimizer_param("Adam")
    scheduler: str | None = scheduler_param()

    def _validate(self) -> None:
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be an int >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")
        if self.probe_size > self.train_size:
            raise ValueError(f"probe_size must be an int in [1, train_size={self.train_size}] "
                             "(the training probe comes from the training subset), got "
                             f"{self.probe_size!r}")

    def train_config(self, labels: str, i: int) -> training.CNNTrainConfig:
        """The training config of net ``i`` of group ``labels`` ("true" or "random")."""
        if labels not in _GROUP:
            raise ValueError(f"labels must be 'true' or 'random', got {labels!r}")
        offset = 0 if labels == "true" else self.n_nets
        return training.CNNTrainConfig(
            dataset=self.dataset, width=self.width, train_size=self.train_size,
            label_seed=self.label_seed if labels == "random" else None,
            seed=self.seed + offset + i, lr=self.lr, schedule="cosine", epochs=self.epochs,
            batch_size=self.batch_size, eval_size=_HISTORY_EVAL_SIZE,
            target_train_acc=self.target_train_acc, arch=self.arch, optimizer=self.optimizer)


@dataclass(frozen=True)
class Result:
    """Per-net training outcome, per-layer pairwise distances and sampling floors."""

    config: Config
    layers: tuple[str, ...]
    #: one row per net: group, seed, test_acc, train_acc (on its own labels), converged,
    #: reason (:func:`cca_lib.analysis.nets_frame`), then ``trained`` and ``trained_rule``
    #: (:func:`cca_lib.analysis.trained`; ``memorizing=True`` for the memorizing group)
    nets: pd.DataFrame
    #: one row per pair of nets, layer and probe: layer, depth, probe, pair, i, j (indices within
    #: their groups), a, b (indices in :meth:`matrix`), distance (``method``), cka (1 - CKA)
    distances: pd.DataFrame
    #: one row per probe, layer and distance column: probe, layer, measure ("distance" or
    #: "cka"), floor (distance of unrelated representations of this shape: 1 minus the mean
    #: similarity under row permutations), low and high (its 2.5% and 97.5% quantiles)
    floors: pd.DataFrame

    def measure_names(self) -> dict[str, str]:
        """Each distance column and the measure it holds in this run: ``"distance"`` is
        ``method``'s (for example "mean CCA" with ``method="mean_cca"``), ``"cka"`` linear
        CKA."""
        return {"distance": _METHOD_LABEL[self.config.method], "cka": MEASURE_COLUMNS["cka"]}

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances (one row per pair, layer and probe), for seaborn."""
        return self.distances.copy()

    def summary(self, column: str = "distance") -> pd.DataFrame:
        """Mean and std of ``column`` per probe, layer and kind of pair."""
        _check_column(column)
        table = (self.distances.groupby(["probe", "depth", "layer", "pair"])[column]
                 .agg(["mean", "std", "count"]).reset_index())
        return table.sort_values(["probe", "depth", "pair"]).reset_index(drop=True)

    def means(self, probe: str, column: str = "distance") -> pd.DataFrame:
        """Mean ``column`` per layer (rows, in depth order) and kind of pair (columns), with
        the layer's sampling floor."""
        _check_column(column)
        sub = self.distances[self.distances["probe"] == probe]
        table = sub.pivot_table(index="layer", columns="pair", values=column, aggfunc="mean")
        table = table.loc[list(self.layers), list(PAIRS)]
        fl = self.floors[(self.floors["probe"] == probe) & (self.floors["measure"] == column)]
        table["floor"] = fl.set_index("layer")["floor"].reindex(table.index)
        return table

    def matrix(self, probe: str, layer: str, column: str = "distance"
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``(2 n_nets, 2 n_nets)`` matrix of ``column`` between all nets (generalizing
        first) at ``layer`` on ``probe``, and each net's group label."""
        _check_column(column)
        sub = self.distances[(self.distances["probe"] == probe)
                             & (self.distances["layer"] == layer)]
        if sub.empty:
            raise ValueError(f"no distances for probe={probe!r}, layer={layer!r}")
        m = int(max(sub["a"].max(), sub["b"].max())) + 1
        d = np.zeros((m, m))
        d[sub["a"], sub["b"]] = sub[column].to_numpy()
        d[sub["b"], sub["a"]] = sub[column].to_numpy()
        n = m // 2
        return d, np.array(["generalizing"] * n + ["memorizing"] * (m - n))


def _check_column(column: str) -> None:
    if column not in MEASURE_COLUMNS:
        raise ValueError(f"column must be one of {sorted(MEASURE_COLUMNS)}, got {column!r}")


def _pair_kind(ga: str, gb: str) -> str:
    return ga if ga == gb else "inter"


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train both groups (cached), capture every layer on both probes, compute the distances
    and the sampling floors. Training and capture run on ``executor`` (default:
    ``config.scheduler``'s, see :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    from cca_lib._progress import bar as tqdm_bar

    runs = {labels: training.train_many(
                [config.train_config(labels, i) for i in range(config.n_nets)],
                progress=progress, desc=f"{_GROUP[labels]} nets", executor=executor)
            for labels in _GROUP}
    all_runs = [r for results in runs.values() for r in results]
    groups = [_GROUP[labels] for labels, results in runs.items() for _ in results]
    nets = analysis.nets_frame(all_runs, group=groups)
    verdicts = [analysis.trained(r, memorizing=g == "memorizing")
                for r, g in zip(all_runs, groups, strict=True)]
    nets["trained"] = [ok for ok, _ in verdicts]
    nets["trained_rule"] = [why for _, why in verdicts]

    probes = {
        "train": data.load_images(config.dataset, "train", config.probe_size,
                                  progress=progress).images,
        "test": data.load_images(config.dataset, "test", config.probe_size,
                                 progress=progress).images,
    }
    layers = tuple(runs["true"][0].build_model().layer_names)
    acts = {p: [{k: v.astype(np.float64) for k, v in a.items()} for a in executors.capture_many(
        all_runs, None, probes[p], executor=executor, progress=False)] for p in PROBES}
    key = _COMPARE_KEY[config.method]
    idx = {g: [a for a, gg in enumerate(groups) if gg == g] for g in _GROUP.values()}
    rows, floor_rows = [], []
    jobs = [(p, layer) for p in PROBES for layer in layers]
    for p, layer in tqdm_bar(jobs, desc="pairwise distances", progress=progress):
        for a, b in combinations(range(len(all_runs)), 2):
            sims = compare(acts[p][a][layer], acts[p][b][layer])
            ga, gb = groups[a], groups[b]
            rows.append({"layer": layer, "depth": layers.index(layer) + 1, "probe": p,
                         "pair": _pair_kind(ga, gb), "i": idx[ga].index(a),
                         "j": idx[gb].index(b), "a": a, "b": b,
                         "distance": 1.0 - sims[key], "cka": 1.0 - sims["linear CKA"]})
        # floor: a generalizing and a memorizing net, rows of the second shuffled
        x, y = acts[p][idx["generalizing"][0]][layer], acts[p][idx["memorizing"][0]][layer]
        for li, (column, measure) in enumerate((("distance", key), ("cka", "linear CKA"))):
            seed = analysis.derived_seed(config.seed, PROBES.index(p), layers.index(layer), li)
            null = stats.permutation_null(x, y, measure, n_perm=FLOOR_PERMUTATIONS,
                                          seed=seed).null
            floor_rows.append({"probe": p, "layer": layer, "measure": column,
                               "floor": 1.0 - float(np.mean(null)),
                               "low": 1.0 - float(np.quantile(null, 0.975)),
                               "high": 1.0 - float(np.quantile(null, 0.025))})
    return Result(config=config, layers=layers, nets=nets, distances=pd.DataFrame(rows),
                  floors=pd.DataFrame(floor_rows))


def plot_distances(result: Result):
    """Per-layer distance within and across groups, mean ± std over pairs, with each layer's
    sampling floor (grey band: unrelated representations of the same shape); one column per
    probe (training inputs left, test inputs right, as the paper's Fig. 3 and A10), one row per
    measure (``method``'s distance, then linear CKA); one legend under the panels. The figure
    fits the book's text column (:func:`cca_lib.plotting.grid`)."""
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from cca_lib import plotting

    frame = result.to_frame()
    n = result.config.probe_size
    labels = {"distance": f"{_METHOD_LABEL[result.config.method]} distance",
              "cka": "linear CKA distance"}
    fig, axes = plotting.grid(2 * len(PROBES), ncols=len(PROBES), panel=(3.45, 2.9),
                              sharey="row")
    for r, column in enumerate(MEASURE_COLUMNS):
        for ax, probe in zip(axes[r * len(PROBES):(r + 1) * len(PROBES)], PROBES, strict=True):
            sub = frame[frame["probe"] == probe]
            fl = result.floors[(result.floors["probe"] == probe)
                               & (result.floors["measure"] == column)].set_index("layer")
            for x, layer in enumerate(result.layers):
                ax.fill_between([x - 0.4, x + 0.4], fl.loc[layer, "low"], fl.loc[layer, "high"],
                                color="#bbbbbb", alpha=0.6, lw=0,
                                label="sampling floor" if x == 0 else None)
                ax.hlines(fl.loc[layer, "floor"], x - 0.4, x + 0.4, color="#666666", lw=1)
            sns.pointplot(data=sub, x="layer", y=column, hue="pair", hue_order=list(PAIRS),
                          order=list(result.layers), palette=PAIR_COLORS, errorbar="sd",
                          dodge=0.25, capsize=0.08, markersize=5, linewidth=1.5, ax=ax,
                          legend=False)
            ax.set(xlabel="layer", ylabel=labels[column], ylim=(0, 1.05),
                   title=f"{'Training' if probe == 'train' else 'Test'} inputs ({n} images)")
            ax.tick_params(axis="x", labelsize="small")
    handles = [Line2D([], [], color=PAIR_COLORS[k], marker="o", markersize=5, lw=1.5)
               for k in PAIRS]
    handles.append(Patch(color="#bbbbbb", alpha=0.6, label="sampling floor"))
    fig.legend(handles, [f"{k} pairs" for k in PAIRS] + ["sampling floor (95% band)"],
               loc="outside lower center", ncols=2, fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C4)
# ---------------------------------------------------------------------------------------------

#: "Later layers": the last this many hidden layers (the logits are judged on their own).
LATER_LAYERS = 2
#: A directional comparison passes when its permutation p-value (node labels shuffled) is
#: below this.
ALPHA = 0.05
#: Memorizing pairs are "about as far as inter pairs" when the 95% network-bootstrap interval of
#: (inter - mem) lies within +- this fraction of the measured gap (mem - gen): the difference is
#: small next to the effect the claim is about (an equivalence test, not absence of evidence).
MEM_INTER_FRACTION = 0.5
#: Early layers are similar for all if the three kinds of pairs differ by less than this in
#: the first layer ...
EARLY_SPREAD_MAX = 0.05
#: ... and by less than this fraction of the gen-mem gap in the last hidden layer.
EARLY_GAP_FRACTION = 0.2
#: At the logits a group "converges" when its pairs' distance is below this fraction of the
#: inter distance and the interval of (inter - within) excludes 0; a group does not converge
#: when its distance is at least this fraction of the inter distance.
LOGIT_AGREE_FRACTION = 0.5
#: Network-bootstrap replicates behind each interval, and node-label permutations per test
#: (enumerated exactly when there are fewer labelings).
N_BOOT, N_PERM = 2000, 9999
#: A distance is "near the sampling floor" when it is within this of the floor.
NEAR_FLOOR = 0.05

_MEM, _GEN = ("memorizing", "memorizing"), ("generalizing", "generalizing")


def _seed(cfg: Config, *parts: int) -> int:
    return analysis.derived_seed(cfg.seed, 4, *parts)


def _judge(result: Result, column: str) -> tuple[list[Criterion], str, dict]:
    """The criteria of claim C4 on one distance column, the status they give, and the headline
    numbers."""
    cfg = result.config
    hidden = [layer for layer in result.layers if layer != "logits"]
    later, first = hidden[-LATER_LAYERS:], hidden[0]
    summ = result.summary(column).set_index(["probe", "layer", "pair"])
    what = MEASURE_COLUMNS[column] if column == "cka" else _METHOD_LABEL[cfg.method]

    def mean(p, layer, kind):
        return float(summ.loc[(p, layer, kind), "mean"])

    nets = result.nets
    mem = nets[nets["group"] == "memorizing"]
    gen = nets[nets["group"] == "generalizing"]
    mem_fit = bool(mem["trained"].all())
    gen_trained = bool(gen["trained"].all())
    rows = [Criterion("memorizing nets that fit their random labels",
                      f"all {len(mem)} (training accuracy at least "
                      f"{analysis.MEMORIZED_TRAIN_ACC:g})", int(mem["trained"].sum()), mem_fit),
            Criterion("generalizing nets that count as trained",
                      f"all {len(gen)} (test accuracy changed by less than "
                      f"{100 * analysis.TRAINED_ACC_CHANGE:g} points over the last 20% of "
                      "training)", int(gen["trained"].sum()), gen_trained)]
    ci = {}

    def interval(p, layer, contrast, k):
        d, lab = result.matrix(p, layer, column)
        return stats.group_distance_ci(d, lab, contrast=contrast, n_boot=N_BOOT,
                                       seed=_seed(cfg, PROBES.index(p),
                                                  result.layers.index(layer), k))

    gen_closer, mem_as_inter = [], {p: [] for p in PROBES}
    head, inter_diff = {}, {}
    for p in PROBES:
        for layer in later:
            d, lab = result.matrix(p, layer, column)
            test = stats.group_distance_test(d, lab, contrast=(_MEM, _GEN), n_perm=N_PERM,
                                             seed=_seed(cfg, PROBES.index(p),
                                                        result.layers.index(layer), 0),
                                             alternative="greater")
            gap = interval(p, layer, (_MEM, _GEN), 1)
            ci[(p, layer, "gap")] = gap
            rows.append(Criterion(
                f"memorizing minus generalizing distance ({p} inputs, {layer}): "
                f"{gap.estimate:.3f} [{gap.low:.3f}, {gap.high:.3f}]; permutation p-value",
                f"below {ALPHA:g} (network labels shuffled, {test.n_perm} labelings)",
                test.p_value, bool(test.p_value < ALPHA)))
            gen_closer.append(rows[-1].passed)
            head[(p, layer)] = (gap, test.p_value)
    for p in PROBES:
        for layer in later:
            diff = interval(p, layer, ("between", _MEM), 2)
            margin = MEM_INTER_FRACTION * ci[(p, layer, "gap")].estimate
            worst = max(abs(diff.low), abs(diff.high))
            inter_diff[(p, layer)] = (diff, margin)
            rows.append(Criterion(
                f"inter minus memorizing distance ({p} inputs, {layer}): {diff.estimate:.3f} "
                f"[{diff.low:.3f}, {diff.high:.3f}]; the interval's larger end, absolute",
                f"below {MEM_INTER_FRACTION:g} x the memorizing-generalizing gap "
                f"({margin:.3f})", worst, bool(margin > 0 and worst < margin)))
            mem_as_inter[p].append(rows[-1].passed)
    ok_gen = all(gen_closer)
    ok_inter = {p: all(v) for p, v in mem_as_inter.items()}

    early_spread = max(np.ptp([mean(p, first, k) for k in PAIRS]) for p in PROBES)
    late_gap = min(mean(p, hidden[-1], "memorizing") - mean(p, hidden[-1], "generalizing")
                   for p in PROBES)
    early = (Criterion(f"spread of the three kinds of pairs ({first}, larger over the probes)",
                       f"below {EARLY_SPREAD_MAX:g}", early_spread,
                       bool(early_spread < EARLY_SPREAD_MAX)),
             Criterion(f"spread of the three kinds of pairs ({first}) against the gap in "
                       f"{hidden[-1]}",
                       f"below {EARLY_GAP_FRACTION:g} x the smaller memorizing-generalizing "
                       f"gap in {hidden[-1]} ({EARLY_GAP_FRACTION * late_gap:.3f})",
                       early_spread, bool(early_spread < EARLY_GAP_FRACTION * late_gap)))
    rows.extend(early)
    ok_early = all(c.passed for c in early)

    logits = []
    for k, (p, group, converges) in enumerate((("train", "memorizing", True),
                                               ("train", "generalizing", True),
                                               ("test", "generalizing", True),
                                               ("test", "memorizing", False))):
        inter, within = mean(p, "logits", "inter"), mean(p, "logits", group)
        bound = LOGIT_AGREE_FRACTION * inter
        if converges:
            diff = interval(p, "logits", ("between", (group, group)), 3 + k)
            logits.append(Criterion(
                f"{group} pairs at the logits ({p} inputs): distance, with inter minus it "
                f"{diff.estimate:.3f} [{diff.low:.3f}, {diff.high:.3f}]",
                f"below {LOGIT_AGREE_FRACTION:g} x inter ({bound:.3f}) and that interval "
                "above 0", within, bool(within < bound and diff.low > 0)))
        else:
            logits.append(Criterion(f"{group} pairs at the logits ({p} inputs): distance",
                                    f"at least {LOGIT_AGREE_FRACTION:g} x inter ({bound:.3f})",
                                    within, bool(within >= bound)))
    rows.extend(logits)
    ok_logits = all(c.passed for c in logits)

    parts = (ok_gen, ok_inter["train"], ok_inter["test"], ok_early, ok_logits)
    verdict = status(mem_fit and gen_trained and all(parts), mem_fit and ok_gen)
    info = {"what": what, "head": head, "inter_diff": inter_diff,
            "ok": dict(gen=ok_gen, inter=ok_inter, early=ok_early, logits=ok_logits),
            "mem_fit": mem_fit, "gen_trained": gen_trained, "later": later,
            "early_spread": early_spread, "first": first}
    return rows, verdict, info


def check(result: Result) -> list[Claim]:
    """Claim C4 as the paper states it, on ``method``'s distance (linear CKA: the same rules,
    reported as whether it agrees):

    1. generalizing pairs closer than memorizing pairs: in every later layer and on both probes,
       the node-label permutation test of (mem - gen) has p below ``ALPHA``;
    2. memorizing pairs about as far as inter pairs: in every later layer, judged per probe, the
       network-bootstrap interval of (inter - mem) lies within ``MEM_INTER_FRACTION`` of the
       gap (mem - gen) either side of 0;
    3. early layers similar for all: the three means differ by less than ``EARLY_SPREAD_MAX``
       in the first layer and by less than ``EARLY_GAP_FRACTION`` of the last hidden layer's gap;
    4. softmax: on training inputs both groups converge at the logits (distance below
       ``LOGIT_AGREE_FRACTION`` x inter, interval of inter minus it above 0); on test inputs only
       the generalizing group does (the memorizing pairs at least that fraction of inter).

    Holds if every memorizing net fit its labels, every generalizing net counts as trained
    (:func:`cca_lib.analysis.trained`) and 1-4 pass; partly if the memorizing nets fit and 1
    passes (so also when 1-4 pass on under-trained generalizing nets)."""
    cfg = result.config
    rows, verdict, info = _judge(result, "distance")
    _, verdict_cka, info_cka = _judge(result, "cka")
    later, ok = info["later"], info["ok"]
    gap, p = info["head"][("train", later[-1])]
    lowest = result.nets.loc[result.nets["group"] == "memorizing", "train_acc"].min()
    fl = result.floors[result.floors["measure"] == "distance"].set_index(["probe", "layer"])
    inter = result.summary("distance").set_index(["probe", "layer", "pair"])["mean"]
    near = [f"{pr} {layer}" for pr in PROBES for layer in later
            if inter.loc[(pr, layer, "inter")] > fl.loc[(pr, layer), "floor"] - NEAR_FLOOR]
    evidence = "; ".join(
        f"{pr} {layer}: memorizing minus generalizing {g.estimate:.2f} [{g.low:.2f}, "
        f"{g.high:.2f}], p = {pv:.3f}" for (pr, layer), (g, pv) in info["head"].items())
    evidence += (
        f"; generalizing closer: {yes_no(ok['gen'])}; memorizing about as far as inter pairs "
        f"by the equivalence rule on training inputs: {yes_no(ok['inter']['train'])}, on test "
        f"inputs: {yes_no(ok['inter']['test'])} ({_inter_text(info['inter_diff'])}); early "
        f"layers similar for all: {yes_no(ok['early'])}; "
        f"softmax (both groups agree on training inputs, only generalizing on test inputs): "
        f"{yes_no(ok['logits'])}; inter distances near the sampling floor: "
        f"{', '.join(near) if near else 'none'} ({cfg.n_nets}+{cfg.n_nets} nets, width "
        f"{cfg.width}, {cfg.train_size} images, lowest memorizing training accuracy "
        f"{lowest:.3f})")
    if not info["gen_trained"]:
        evidence += "; tested on under-trained generalizing nets"
    if not info["mem_fit"]:
        evidence += "; a memorizing net did not fit its labels, so the comparison is not valid"
    setup = (("dataset", "CIFAR-10", cfg.dataset),
             ("architecture", "11-layer CNN, 64 to 512 filters",
              f"4-layer CNN, channels {cfg.width}, {2 * cfg.width}, {2 * cfg.width}, "
              f"{4 * cfg.width}"),
             ("nets and seeds", "2 groups of 5 nets", f"2 groups of {cfg.n_nets} nets"),
             ("training", "to near-zero training loss, all of CIFAR-10",
              f"{cfg.epochs:g} epochs of SGD (cosine) on {cfg.train_size} images"),
             ("probe inputs", "training data (Fig. 3), test data (Fig. A10)",
              f"{cfg.probe_size} training and {cfg.probe_size} test images"))
    return [Claim(id="C4", figure="fig-memorization-distances",
                  evidence=evidence, criteria=tuple(rows),
                  status=verdict,
                  paper_value="generalizing pairs much closer than memorizing pairs in later "
                              "layers; memorizing as far as inter",
                  ours=f"memorizing minus generalizing ({later[-1]}, training inputs) "
                       f"{gap.estimate:.3f} [{gap.low:.3f}, {gap.high:.3f}], p = {p:.3f}",
                  cka_agrees=verdict_cka == verdict, setup=setup)]


def _inter_text(inter_diff: dict) -> str:
    """Per probe and later layer, inter minus memorizing distance with its interval beside the
    equivalence margin; then where memorizing pairs are measurably closer than inter pairs."""
    parts = [f"{p} {layer}: inter minus memorizing {d.estimate:.3f} [{d.low:.3f}, "
             f"{d.high:.3f}], margin {margin:.3f}"
             for (p, layer), (d, margin) in inter_diff.items()]
    closer = [(f"{p} {layer}", margin > 0 and max(abs(d.low), abs(d.high)) < margin)
              for (p, layer), (d, margin) in inter_diff.items() if d.low > 0]
    text = "; ".join(parts)
    if closer:
        text += ("; memorizing pairs are closer to each other than inter pairs (interval above "
                 "0) in " + ", ".join(f"{cell} ({'within' if inside else 'beyond'} the margin)"
                                      for cell, inside in closer))
        if any(inside for _, inside in closer):
            text += (": within the margin, 'about as far' means a difference small next to "
                     "the gap, not equal distances")
    return text


_PHRASE = {"holds": "holds", "partly": "holds partly", "does not hold": "does not hold"}


def describe(result: Result) -> str:
    """A paragraph (Markdown) on what the run shows, generated from its numbers."""
    cfg = result.config
    (claim,) = check(result)
    _, _, info = _judge(result, "distance")
    ok = info["ok"]
    first, later = info["first"], info["later"]
    fl = result.floors[result.floors["measure"] == "distance"].set_index(["probe", "layer"])
    mean = result.summary("distance").set_index(["probe", "layer", "pair"])["mean"]
    text = [f"At this scale the claim **{_PHRASE[claim.status]}** ({info['what']}; linear CKA "
            f"{'agrees' if claim.cka_agrees else 'gives a different verdict'})."]
    text.append(f"In the first layer ({first}) the three kinds of pairs lie within "
                f"{info['early_spread']:.3f} of each other, so early layers "
                f"{'are' if ok['early'] else 'are not'} similar for all by our rule.")
    for p in PROBES:
        layer = later[-1]
        g, m, i = (mean.loc[(p, layer, k)] for k in PAIRS)
        gap, pv = info["head"][(p, layer)]
        diff, margin = info["inter_diff"][(p, layer)]
        floor = fl.loc[(p, layer), "floor"]
        where = ("close to" if i > floor - NEAR_FLOOR else "well below")
        closer = ""
        if m < i:
            closer = (f" Measured, memorizing pairs are closer to each other than inter pairs "
                      f"({m:.2f} against {i:.2f}"
                      + (", the interval of the difference above 0" if diff.low > 0 else "")
                      + ")" + (": the rule counts them as about as far apart only because the "
                               "difference is small next to the gap." if ok["inter"][p] else
                               "."))
        text.append(
            f"On {'training' if p == 'train' else 'test'} inputs, in {layer}, generalizing "
            f"pairs sit at {g:.2f}, memorizing pairs at {m:.2f} and inter pairs at {i:.2f} "
            f"(sampling floor {floor:.2f}, so the inter pairs are {where} it); the gap "
            f"memorizing minus generalizing is {gap.estimate:.3f} [{gap.low:.3f}, "
            f"{gap.high:.3f}] with permutation p = {pv:.3f}. Inter minus memorizing is "
            f"{diff.estimate:.3f} [{diff.low:.3f}, {diff.high:.3f}], against the equivalence "
            f"margin of {margin:.3f} either side of 0 ({MEM_INTER_FRACTION:g} x the gap); by "
            f"that rule, over the later layers ({', '.join(later)}), memorizing pairs "
            f"{'count' if ok['inter'][p] else 'do not count'} as about as far apart as inter "
            f"pairs.{closer}")
    lg = {p: {k: mean.loc[(p, "logits", k)] for k in PAIRS} for p in PROBES}
    text.append(
        f"At the logits the memorizing pairs are at {lg['train']['memorizing']:.2f} on training "
        f"inputs and {lg['test']['memorizing']:.2f} on test inputs (inter "
        f"{lg['train']['inter']:.2f} / {lg['test']['inter']:.2f}; generalizing "
        f"{lg['train']['generalizing']:.2f} / {lg['test']['generalizing']:.2f}): the softmax "
        f"statement {'holds' if ok['logits'] else 'does not hold'} by our rule.")
    n_gen = int(result.nets.loc[result.nets["group"] == "generalizing", "trained"].sum())
    text.append(f"{n_gen} of {cfg.n_nets} generalizing nets count as trained and "
                f"{int(result.nets.loc[result.nets['group'] == 'memorizing', 'trained'].sum())}"
                f" of {cfg.n_nets} memorizing nets fit their random labels.")
    return " ".join(text)


__all__ = ["MEASURE_COLUMNS", "PAIRS", "PAIR_COLORS", "PROBES", "Config", "Result", "check",
           "describe", "plot_distances", "run"]
