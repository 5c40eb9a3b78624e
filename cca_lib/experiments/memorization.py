"""Chapter: generalization vs memorization (the paper's Fig. 3 and A10, claim C4).

Two groups of CNNs (:func:`cca_lib.models.make_cnn`) that differ only in their random seed:

* the **generalizing** group trains on the true labels of the first ``train_size`` training
  images;
* the **memorizing** group trains on the same images with ONE fixed random labelling
  (:func:`cca_lib.data.random_labels` with ``label_seed``, shared by the whole group), which
  it can only fit by memorizing.

Every network gets its own initialization seed (``seed + i`` for the generalizing nets,
``seed + n_nets + i`` for the memorizing ones), so no pair across the groups shares its
initial weights. Both groups use the same hyperparameters and are trained long enough for the
memorizing group to fit its training set (checked with the engine's ``target_train_acc``).

We record every layer on two probe sets, the same inputs for all networks: the first
``probe_train`` images of the training subset (inputs both groups were trained on) and the first
``probe_test`` test images. For each layer and probe we compute the symmetric PWCCA distance
(mean of both directions) between every pair of networks within each group and across the
groups ("inter"), with :func:`cca_lib.analysis.group_distances`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cca_lib import _checks, analysis, data, executors, models, training
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
    param,
    rule,
)

#: Names of the three kinds of pairs, in plotting order.
PAIRS = ("generalizing", "memorizing", "inter")
PAIR_COLORS = {"generalizing": "#2ca02c", "memorizing": "#d62728", "inter": "#7f7f7f"}
PROBES = ("train", "test")
_GROUP = {"true": "generalizing", "random": "memorizing"}
#: Test images behind each net's per-epoch history (a learning curve only; the reported train
#: and test accuracies use the whole training subset and test split). Small because the
#: engine evaluates after every epoch, and an epoch over a small training subset is short.
_HISTORY_EVAL_SIZE = 200


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Parameters of the experiment. Defaults are the quick profile."""

    width: int = param(16, "CNN width multiplier: channels w, 2w, 2w, 4w",
                       "11-layer CNN, 64..512 filters", check=UNITS)
    n_nets: int = param(3, "networks per group (at least two: pairs within a group)", "5",
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
    probe_train: int = param(1000, "probe images from the training subset", "training data "
                             "(Fig. 3)", check=SAMPLES)
    probe_test: int = param(2000, "probe images from the test split", "test data (Fig. A10)",
                            check=SAMPLES)
    target_train_acc: float = param(0.99, "a net counts as converged if it fits this fraction "
                                    "of its labels", check=rule(_checks.real, gt=0, le=1))
    method: str = param("pwcca", "distance measure (cca_lib.similarity.distance)", "PWCCA",
                        check=rule(_checks.text, choices=("pwcca", "mean_cca", "svcca", "cka")))
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)
    arch: str = param("small", 'CNN layout (cca_lib.models.make_cnn): "small" (4 conv layers), '
                      '"paper" (the paper\'s 11 conv layers, w..8w channels) or "resnet" '
                      "(ResNet-20)", '11-layer CNN',
                      check=rule(_checks.text, choices=models.CNN_LAYOUTS))
    optimizer: str = param("sgd", '"sgd" (with momentum 0.9) or "adam"', "Adam",
                           check=rule(_checks.text, choices=("sgd", "adam")))
    scheduler: str | None = param(None, executors.SCHEDULER_HELP,
                                  check=executors.check_scheduler)

    def _validate(self) -> None:
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be an int >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")
        if self.probe_train > self.train_size:
            raise ValueError(f"probe_train must be an int in [1, train_size={self.train_size}] "
                             f"(probes come from the training subset), got {self.probe_train!r}")

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
    """Per-net training outcome and per-layer pairwise distances."""

    config: Config
    layers: tuple[str, ...]
    #: one row per net: group, seed, test_acc, train_acc (on its own labels), converged, reason
    #: (:func:`cca_lib.analysis.nets_frame`)
    nets: pd.DataFrame
    #: one row per pair of nets, layer and probe: layer, depth, probe, pair, i, j, distance
    distances: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances (one row per pair, layer and probe), for seaborn."""
        return self.distances.copy()

    def summary(self) -> pd.DataFrame:
        """Mean and std of the distance per probe, layer and kind of pair."""
        table = (self.distances.groupby(["probe", "depth", "layer", "pair"])["distance"]
                 .agg(["mean", "std", "count"]).reset_index())
        return table.sort_values(["probe", "depth", "pair"]).reset_index(drop=True)

    def means(self, probe: str) -> pd.DataFrame:
        """Mean distance per layer (rows, in depth order) and kind of pair (columns)."""
        sub = self.distances[self.distances["probe"] == probe]
        table = sub.pivot_table(index="layer", columns="pair", values="distance", aggfunc="mean")
        return table.loc[list(self.layers), list(PAIRS)]


def _pair_kind(row: pd.Series) -> str:
    if row["group_a"] == row["group_b"]:
        return str(row["group_a"])
    return "inter"


def run(config: Config = Config(), *, progress: bool = True, executor=None) -> Result:
    """Train both groups (cached), capture every layer on both probes, compute the distances.
    Training and capture run on ``executor`` (default: ``config.scheduler``'s, see
    :mod:`cca_lib.executors`); the numbers do not depend on it."""
    with executors.session(executor, config.scheduler) as ex:
        return _run(config, progress, ex)


def _run(config: Config, progress: bool, executor) -> Result:
    from cca_lib._progress import bar as tqdm_bar

    runs = {labels: training.train_many(
                [config.train_config(labels, i) for i in range(config.n_nets)],
                progress=progress, desc=f"{_GROUP[labels]} nets", executor=executor)
            for labels in _GROUP}
    nets = analysis.nets_frame(
        [r for results in runs.values() for r in results],
        group=[_GROUP[labels] for labels, results in runs.items() for _ in results])

    probes = {
        "train": data.load_images(config.dataset, "train", config.probe_train,
                                  progress=progress).images,
        "test": data.load_images(config.dataset, "test", config.probe_test,
                                 progress=progress).images,
    }
    layers = tuple(runs["true"][0].build_model().layer_names)
    parts = []
    jobs = [(p, layer) for p in PROBES for layer in layers]
    acts = {p: {labels: executors.capture_many(results, None, probes[p], executor=executor,
                                               progress=False)
                for labels, results in runs.items()} for p in PROBES}
    for probe, layer in tqdm_bar(jobs, desc="pairwise distances", progress=progress):
        groups = {_GROUP[labels]: [a[layer] for a in acts[probe][labels]] for labels in _GROUP}
        frame = analysis.group_distances(groups, method=config.method)
        frame["pair"] = frame.apply(_pair_kind, axis=1)
        frame.insert(0, "probe", probe)
        frame.insert(0, "depth", layers.index(layer) + 1)
        frame.insert(0, "layer", layer)
        parts.append(frame.drop(columns=["group_a", "group_b"]))
    distances = pd.concat(parts, ignore_index=True)
    return Result(config=config, layers=layers, nets=nets, distances=distances)


def plot_distances(result: Result):
    """Per-layer distance within and across groups, mean ± std over pairs; one panel per probe
    (training inputs left, test inputs right), as the paper's Fig. 3 and A10."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = result.to_frame()
    label = {"pwcca": "PWCCA", "mean_cca": "mean CCA", "svcca": "SVCCA", "cka": "linear CKA"}
    ylabel = f"{label[result.config.method]} distance"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, constrained_layout=True)
    for ax, probe in zip(axes, PROBES, strict=True):
        sub = frame[frame["probe"] == probe]
        n = result.config.probe_train if probe == "train" else result.config.probe_test
        sns.pointplot(data=sub, x="layer", y="distance", hue="pair", hue_order=list(PAIRS),
                      order=list(result.layers), palette=PAIR_COLORS, errorbar="sd",
                      dodge=0.25, capsize=0.08, markersize=5, linewidth=1.5, ax=ax)
        ax.set(xlabel="layer", ylabel=ylabel, ylim=(0, None),
               title=f"{'Training' if probe == 'train' else 'Test'} inputs ({n} images)")
        ax.legend(title="pairs", fontsize="small", loc="upper left")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C4)
# ---------------------------------------------------------------------------------------------

#: "Later layers": the last this many hidden layers (the logits are judged on their own).
LATER_LAYERS = 2
#: Memorizing pairs are "as far as inter pairs" if |mem - inter| is below this fraction of the
#: gap mem - gen.
MEM_INTER_FRACTION = 0.5
#: Early layers are similar for all if the three kinds of pairs differ by less than this in
#: the first layer ...
EARLY_SPREAD_MAX = 0.05
#: ... and by less than this fraction of the gen-mem gap in the last hidden layer.
EARLY_GAP_FRACTION = 0.2
#: At the logits a group "agrees" if its pairs' distance is below this fraction of the inter
#: distance.
LOGIT_AGREE_FRACTION = 0.5


def check(result: Result) -> list[Claim]:
    """Claim C4, on the per-pair distances (mean and standard deviation over pairs):

    1. generalizing pairs closer: in every later layer and on both probes, the mean + sd of the
       generalizing pairs is below the mean - sd of the memorizing pairs;
    2. memorizing as far as inter: ``|mem - inter| < MEM_INTER_FRACTION * (mem - gen)`` in every
       later layer, judged per probe;
    3. early layers similar for all: the three means differ by less than ``EARLY_SPREAD_MAX``
       in the first layer and by less than ``EARLY_GAP_FRACTION`` of the last hidden layer's gap;
    4. logits: on training inputs the memorizing pairs agree (below ``LOGIT_AGREE_FRACTION`` of
       the inter distance), on test inputs they do not; the generalizing pairs agree on both.

    Holds if every net fit its labels and 1-4 pass; partly if the nets fit and 1 passes."""
    hidden = [layer for layer in result.layers if layer != "logits"]
    later, first = hidden[-LATER_LAYERS:], hidden[0]
    summ = result.summary().set_index(["probe", "layer", "pair"])

    def mean(p, layer, kind):
        return summ.loc[(p, layer, kind), "mean"]

    def sd(p, layer, kind):
        return summ.loc[(p, layer, kind), "std"]

    nets = result.nets
    all_fit = bool(nets["converged"].all())
    rows = [Criterion("nets that fit their training labels",
                      f"all {len(nets)} (training accuracy at least "
                      f"{result.config.target_train_acc:g})",
                      int(nets["converged"].sum()), all_fit)]
    gen_closer, mem_as_inter = [], {p: [] for p in PROBES}
    for p in PROBES:
        for layer in later:
            g, m = mean(p, layer, "generalizing"), mean(p, layer, "memorizing")
            upper, lower = g + sd(p, layer, "generalizing"), m - sd(p, layer, "memorizing")
            rows.append(Criterion(f"generalizing pairs' mean + sd ({p} inputs, {layer})",
                                  f"below the memorizing pairs' mean - sd ({lower:.3f})",
                                  upper, bool(upper < lower)))
            gen_closer.append(rows[-1].passed)
    for p in PROBES:
        for layer in later:
            g, m, i = (mean(p, layer, k) for k in PAIRS)
            rows.append(Criterion(
                f"memorizing minus inter distance, absolute ({p} inputs, {layer})",
                f"below {MEM_INTER_FRACTION:g} x the memorizing-generalizing gap "
                f"({MEM_INTER_FRACTION * (m - g):.3f})",
                abs(m - i), bool(abs(m - i) < MEM_INTER_FRACTION * (m - g))))
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

    lg = {p: {k: mean(p, "logits", k) for k in PAIRS} for p in PROBES}
    half = {p: LOGIT_AGREE_FRACTION * lg[p]["inter"] for p in PROBES}
    logits = (Criterion("memorizing pairs at the logits (train inputs)",
                        f"below {LOGIT_AGREE_FRACTION:g} x inter ({half['train']:.3f})",
                        lg["train"]["memorizing"], bool(lg["train"]["memorizing"] < half["train"])),
              Criterion("memorizing pairs at the logits (test inputs)",
                        f"at least {LOGIT_AGREE_FRACTION:g} x inter ({half['test']:.3f})",
                        lg["test"]["memorizing"], bool(lg["test"]["memorizing"] >= half["test"])),
              *(Criterion(f"generalizing pairs at the logits ({p} inputs)",
                          f"below {LOGIT_AGREE_FRACTION:g} x inter ({half[p]:.3f})",
                          lg[p]["generalizing"], bool(lg[p]["generalizing"] < half[p]))
                for p in lg))
    rows.extend(logits)
    ok_logits = all(c.passed for c in logits)

    parts = [ok_gen, ok_inter["train"], ok_inter["test"], ok_early, ok_logits]
    cfg = result.config
    evidence = "; ".join(
        f"{p} {layer}: gen {mean(p, layer, 'generalizing'):.2f}, mem "
        f"{mean(p, layer, 'memorizing'):.2f}, inter {mean(p, layer, 'inter'):.2f}"
        for p in PROBES for layer in later)
    evidence += (
        f"; logits mem train/test {lg['train']['memorizing']:.2f}/"
        f"{lg['test']['memorizing']:.2f} (inter {lg['train']['inter']:.2f}/"
        f"{lg['test']['inter']:.2f}); {first} spread {early_spread:.3f} (similar for all: "
        f"{yes_no(ok_early)}); logits agree on training inputs only for memorizing pairs: "
        f"{yes_no(ok_logits)}; memorizing as far as inter pairs on train inputs: "
        f"{yes_no(ok_inter['train'])}, on test inputs: {yes_no(ok_inter['test'])} "
        f"({cfg.n_nets}+{cfg.n_nets} nets, width {cfg.width}, {cfg.train_size} images, "
        f"lowest train accuracy {nets['train_acc'].min():.3f})")
    return [Claim(id="C4", figure="Figure 1", evidence=evidence, criteria=tuple(rows),
                  status=status(all(parts) and all_fit, ok_gen and all_fit))]


__all__ = ["PAIRS", "PAIR_COLORS", "PROBES", "Config", "Result", "check", "plot_distances",
           "run"]
