"""Chapter: training dynamics of a CNN, signal and noise (the paper's Fig. 1, claims C2, C3).

``n_seeds`` CNNs (:func:`cca_lib.models.make_cnn`), identical but for their seed, are trained
with many checkpoints: log-spaced steps, ``T/2``, the final step ``T`` and ``n_linear`` evenly
spaced steps. The default schedule, ``"step_half"``, does its decay by ``T/2`` and then holds
the learning rate, so that a long stretch of training follows the point where test accuracy
converged, as in the paper's Fig. 1 (converged at 45k of 80k steps; the paper does not state its
schedule): under a cosine decay to ``T`` test accuracy keeps improving to the end, leaving no
training "after accuracy converged". Every layer
is recorded at every checkpoint on a fixed probe set (the first ``n_probe`` test images,
channels averaged over space, batch-norm statistics recomputed by
:func:`cca_lib.capture.capture_run`) and enters the measures in float64. Per seed:

* **accuracy convergence**: ``conv_step`` is the first evaluated step from which the test
  accuracy (on ``eval_size`` test images, a trailing mean over :data:`ACC_WINDOW` evaluations)
  stays within :data:`ACC_TOL` of its final value; ``conv_ckpt`` is the first checkpoint at or
  after it (before ``T``), and ``after_frac = (T - conv_ckpt) / T`` the share of training that
  comes after it;
* **spectra** (Fig. 1a): the sorted CCA coefficients between ``L(t)`` and ``L(T)`` for every
  layer and checkpoint; at ``conv_ckpt``, the share of them below :data:`RHO_LEVEL` with its
  bootstrap interval over probe images (rows of ``L(conv_ckpt)`` and ``L(T)`` resampled
  together, :func:`cca_lib.stats.bootstrap_measure`);
* **signal and noise** (Fig. 1d-f), on a held-out split: the probe images are split in two
  halves (a permutation fixed by the net's seed). On the *fit* half, CCA between ``L(t_early)``
  and ``L(T/2)`` gives canonical directions of ``L(T/2)`` sorted by their coefficient; ``S`` are
  the first ``k`` (converged at ``t_early``), ``B`` the last ``k``, ``k = round(sb_fraction *
  width)``. Their variates on the *held-out* half are tracked against ``L(t)`` (held-out rows)
  at every checkpoint, by mean CCA and by linear CKA (relative to its value at ``T/2``), so the
  selection does not decide the test; the check uses only the checkpoints after ``T/2``;
* **distance to the final representation** per layer (bottom-up convergence): PWCCA (symmetric,
  the mean of both directions), mean CCA and linear CKA distances, one pass
  (:func:`cca_lib.compare`), with each measure's sampling floor (rows of ``L(T/2)`` permuted
  against ``L(T)``, :func:`cca_lib.stats.permutation_null`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from cca_lib import _checks, analysis, capture, data, models, stats, training
from cca_lib.claims import NOT_TESTABLE, Claim, Criterion, status
from cca_lib.claims import majority as _majority
from cca_lib.experiments._params import (
    COUNT,
    EPOCHS,
    IMAGES,
    LR_FRAC,
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    arch_param,
    optimizer_param,
    param,
    rule,
)
from cca_lib.similarity import cca, compare, linear_cka, mean_cca

#: Distances to the final representation: name -> the key of :func:`cca_lib.compare`.
_COMPARE_KEY = {"PWCCA": "PWCCA (symmetric)", "mean CCA": "mean CCA", "linear CKA": "linear CKA"}
MEASURES = tuple(_COMPARE_KEY)
#: Similarities of S and B with the layer: mean CCA (the paper's) and linear CKA.
SB_MEASURES = ("mean CCA", "linear CKA")
_SB_FUNCS = {"mean CCA": mean_cca, "linear CKA": linear_cka}


#: Minibatch size of the network's SGD.
BATCH_SIZE = 128


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Parameters of the experiment. Defaults are the quick profile."""

    width: int = param(16, "CNN width multiplier: channels w, 2w, 2w, 4w", "a CIFAR-10 ResNet",
                       check=UNITS)
    train_size: int = param(10_000, "training images, the first ones of the training split",
                            "all", check=SAMPLES)
    epochs: float = param(12.0, "epochs of SGD with momentum 0.9", "80k steps", check=EPOCHS)
    lr: float = param(0.05, "peak learning rate", "not stated for this figure", check=POSITIVE)
    schedule: str = param(
        "step_half", '"step_half" (cosine decay to lr * final_lr_frac by T/2, then '
        'constant) or "cosine" (decay to it at T)', "not stated",
        check=rule(_checks.text, choices=("step_half", "cosine")))
    final_lr_frac: float = param(
        0.05, "the schedule ends at lr * final_lr_frac; > 0 keeps the weights moving after "
        "T/2 (annealing to 0 freezes every layer by construction); at 0.1 or more the test "
        "accuracy of this net jitters by more than 0.5 points at the held rate, so it never "
        "counts as trained", "not stated",
        check=LR_FRAC)
    seed: int = param(0, "initialization and minibatch order of the first net; the nets use "
                      "seeds seed .. seed + n_seeds - 1", check=SEED)
    n_seeds: int = param(3, "networks, differing only in seed; C2 and C3 are judged per net, "
                         "the verdict by majority", "one network", check=POSITIVE_COUNT)
    log_checkpoints: int = param(14, "log-spaced checkpoints, plus T/2 and T",
                                 "every few thousand steps", check=COUNT)
    n_linear: int = param(12, "evenly spaced extra checkpoints", check=COUNT)
    eval_every: int = param(39, "steps between test-accuracy evaluations", check=SAMPLES)
    eval_size: int = param(5000, "test images for the accuracy curve", check=SAMPLES)
    n_probe: int = param(2000, "probe images, the first ones of the test split (S and B are "
                         "chosen on one half and tracked on the other)",
                         check=rule(_checks.integer, ge=4, le=_checks.MAX_SAMPLES))
    early_frac: float = param(0.1, "t_early is the first checkpoint at or after early_frac * T "
                              "(before T/2)", check=rule(_checks.real, gt=0, lt=0.5))
    sb_fraction: float = param(0.25, "S and B each hold this fraction of a layer's width (they "
                               "must not overlap)", "100 of 512+ neurons",
                               check=rule(_checks.real, gt=0, le=0.5))
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)
    arch: str = arch_param("a CIFAR-10 ResNet")
    optimizer: str = optimizer_param("not stated")

    def _validate(self) -> None:
        if self.train_size < BATCH_SIZE:
            raise ValueError(f"train_size must be >= the batch size {BATCH_SIZE}, got "
                             f"{self.train_size!r}")
        widest = max(models.cnn_layer_widths(self.width, arch=self.arch).values())
        if self.n_probe // 2 <= 2 * widest:
            raise ValueError(f"n_probe must exceed {4 * widest} (each half more than twice the "
                             f"widest layer, {widest} neurons, for a CCA of two checkpoints) "
                             f"with width={self.width}, got {self.n_probe!r}")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The nets' seeds, ``seed .. seed + n_seeds - 1``."""
        return tuple(range(self.seed, self.seed + self.n_seeds))

    def _base_config(self, seed: int) -> training.CNNTrainConfig:
        return training.CNNTrainConfig(
            dataset=self.dataset, width=self.width, train_size=self.train_size, seed=seed,
            lr=self.lr, schedule=self.schedule, final_lr_frac=self.final_lr_frac,
            epochs=self.epochs, batch_size=BATCH_SIZE, log_checkpoints=self.log_checkpoints,
            eval_every=self.eval_every, eval_size=self.eval_size, arch=self.arch,
            optimizer=self.optimizer)

    def train_config(self, seed: int | None = None) -> training.CNNTrainConfig:
        """The engine config of the net with ``seed`` (default: ``self.seed``), cached by the
        engine: ``n_linear`` evenly spaced checkpoints over its
        :func:`~cca_lib.training.total_steps`."""
        base = self._base_config(self.seed if seed is None else _checks.seed("seed", seed))
        total = training.total_steps(base)
        linear = tuple(int(s) for s in np.linspace(0, total, self.n_linear + 2)[1:-1])
        return dataclasses.replace(base, checkpoints=linear)


def canonical_variates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CCA of ``x`` and ``y`` (``(n_samples, n_features)`` each), returning ``(rho, h)``:
    the coefficients in decreasing order and ``y``'s canonical variates ``h`` (an
    ``(n_samples, c)`` matrix with orthonormal, centered columns; column ``i`` is the linear
    combination of ``y``'s neurons whose correlation with its partner in ``x`` is ``rho[i]``).
    Numerically dependent directions are dropped as :func:`cca_lib.cca` does."""
    res = cca(x, y)
    return res.rho, res.y_variates


def probe_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of ``n`` probe rows, ``(fit, held)``: sorted row indices of a random
    permutation fixed by ``seed`` (``fit`` the first ``n // 2``, ``held`` the rest)."""
    n = _checks.integer("n", n, ge=2)
    perm = np.random.default_rng(_checks.seed("seed", seed)).permutation(n)
    return np.sort(perm[:n // 2]), np.sort(perm[n // 2:])


@dataclass(frozen=True)
class Result:
    """Everything the chapter plots and checks (one row per seed in ``nets``; the other frames
    carry a ``seed`` column)."""

    config: Config
    layers: tuple[str, ...]
    widths: dict[str, int]  #: neurons per layer
    steps: tuple[int, ...]  #: checkpointed steps (the same for every net)
    early_step: int  #: t_early
    half_step: int  #: T/2
    #: per seed: final_acc (test accuracy at T, averaged over ACC_WINDOW evaluations),
    #: conv_step, conv_ckpt, after_frac, trained (the book's rule) and trained_why
    nets: pd.DataFrame
    history: pd.DataFrame  #: the engine's histories (seed, step, train/test loss and accuracy)
    spectra: pd.DataFrame  #: seed, layer, step, index, rho of CCA(L(step), L(T))
    #: seed, layer, step, subset ("S"/"B"), measure, k, similarity with L(t) on held-out rows
    sb: pd.DataFrame
    #: seed, layer, measure, loss_S, loss_B (similarity lost from T/2 to T), and the contrast
    #: loss_B - B_LOSS_RATIO * loss_S with its bootstrap interval over held-out rows (low, high)
    sb_tests: pd.DataFrame
    convergence: pd.DataFrame  #: seed, layer, depth, step, measure, distance to L(T)
    floors: pd.DataFrame  #: layer, measure, floor (distance of unrelated rows, first seed)
    #: seed, layer, step (conv_ckpt), share of the coefficients with L(T) below RHO_LEVEL and
    #: its bootstrap interval over probe images (low, high); None: no intervals
    shares: pd.DataFrame | None = None

    @property
    def final_step(self) -> int:
        return self.steps[-1]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.nets.index)

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances to the final representation, for seaborn."""
        return self.convergence.copy()

    def unconverged(self, seed: int | None = None) -> pd.DataFrame:
        """Per layer, for the net with ``seed`` (default: the first), at its ``conv_ckpt``:
        mean CCA with ``L(T)``, the share of coefficients below :data:`RHO_LEVEL`, the number of
        coefficients and, where :attr:`shares` holds them, the share's bootstrap interval over
        probe images (``frac_low``, ``frac_high``)."""
        seed = self.seeds[0] if seed is None else seed
        step = int(self.nets.loc[seed, "conv_ckpt"])
        sub = self.spectra[(self.spectra["seed"] == seed) & (self.spectra["step"] == step)]
        table = sub.groupby("layer")["rho"].agg(
            mean_rho="mean", frac_below=lambda r: float(np.mean(r < RHO_LEVEL)), n="count")
        table = table.loc[list(self.layers)]
        if self.shares is not None and not self.shares.empty:
            ci = self.shares[self.shares["seed"] == seed].set_index("layer")
            table["frac_low"] = ci["low"].reindex(table.index)
            table["frac_high"] = ci["high"].reindex(table.index)
        return table

    def unconverged_all(self) -> pd.DataFrame:
        """:meth:`unconverged` of every seed, indexed by (seed, layer)."""
        return pd.concat({s: self.unconverged(s) for s in self.seeds}, names=["seed", "layer"])

    def sb_summary(self, measure: str = "mean CCA") -> pd.DataFrame:
        """Per seed, layer and subset, over the checkpoints after ``T/2`` (the ones the check
        judges): k, the minimum and mean similarity with ``L(t)`` (held-out rows) and its value
        at ``T``."""
        sb = self.sb[(self.sb["measure"] == measure) & (self.sb["step"] > self.half_step)]
        table = sb.groupby(["seed", "layer", "subset"]).agg(
            k=("k", "first"), min=("similarity", "min"), mean=("similarity", "mean"))
        at_t = sb[sb["step"] == self.final_step].set_index(["seed", "layer", "subset"])
        table["at_T"] = at_t["similarity"]
        order = pd.MultiIndex.from_product([self.seeds, self.layers, ("S", "B")],
                                           names=["seed", "layer", "subset"])
        return table.loc[order]


def _conv_step(history: pd.DataFrame, tol: float, window: int) -> tuple[int, float]:
    """First evaluated step from which the test accuracy, averaged over ``window`` consecutive
    evaluations (trailing), stays within ``tol`` of its final averaged value; and that value."""
    h = history.dropna(subset=["test_acc"]).sort_values("step")
    smooth = h["test_acc"].rolling(window, min_periods=1).mean()
    final = float(smooth.iloc[-1])
    outside = h["step"][(smooth - final).abs() > tol]
    last_bad = int(outside.max()) if len(outside) else -1
    return int(h["step"][h["step"] > last_bad].min()), final


def _share_below(x: np.ndarray, y: np.ndarray) -> float:
    """The share of the CCA coefficients of ``x`` and ``y`` below :data:`RHO_LEVEL`."""
    return float(np.mean(cca(x, y, variates=False).rho < RHO_LEVEL))


def _sb_contrast(x: np.ndarray, y: np.ndarray, *, k: int, measure: str) -> float:
    """``loss_B - B_LOSS_RATIO * loss_S`` for ``x = [S | B | L(T/2)]`` (held-out rows) and
    ``y = L(T)``: each subset's similarity with ``L(T)`` relative to that with ``L(T/2)``."""
    f = _SB_FUNCS[measure]
    half = x[:, 2 * k:]

    def loss(sub: np.ndarray) -> float:
        return 1.0 - f(sub, y) / f(sub, half)

    return loss(x[:, k:2 * k]) - B_LOSS_RATIO * loss(x[:, :k])


def _one_net(config: Config, seed: int, probe, progress: bool) -> dict:
    """Train (cached) and capture the net with ``seed``; its rows of every frame."""
    from cca_lib._progress import bar as tqdm_bar

    run_ = training.train(config.train_config(seed), progress=progress)
    steps = run_.steps
    total = steps[-1]
    acts = {s: {layer: a.astype(np.float64)
                for layer, a in capture.capture_run(run_, s, probe).items()}
            for s in tqdm_bar(steps, desc=f"capture seed {seed}", progress=progress)}
    layers = tuple(run_.build_model().layer_names)
    final = acts[total]
    conv_step, final_acc = _conv_step(run_.history, ACC_TOL, ACC_WINDOW)
    after = [s for s in steps if conv_step <= s < total]
    conv_ckpt = after[0] if after else total
    half = max(1, total // 2)
    early = min(s for s in steps if s >= config.early_frac * total)
    ok, why = analysis.trained(run_)
    net = {"seed": seed, "final_acc": final_acc, "conv_step": conv_step, "conv_ckpt": conv_ckpt,
           "after_frac": (total - conv_ckpt) / total, "trained": ok, "trained_why": why}
    fit, held = probe_split(len(probe), seed)

    spectra, sb, tests, conv, shares = [], [], [], [], []
    for depth, layer in enumerate(layers, start=1):
        ci = stats.bootstrap_measure(
            acts[conv_ckpt][layer], final[layer], _share_below, n_boot=N_BOOT, level=LEVEL,
            seed=analysis.derived_seed(seed, depth, len(SB_MEASURES)))
        shares.append({"seed": seed, "layer": layer, "step": conv_ckpt, "share": ci.estimate,
                       "low": ci.low, "high": ci.high})
        for s in steps:
            a = acts[s][layer]
            spectra.extend({"seed": seed, "layer": layer, "step": s, "index": i, "rho": float(r)}
                           for i, r in enumerate(cca(a, final[layer], variates=False).rho))
            values = compare(a, final[layer])
            conv.extend({"seed": seed, "layer": layer, "depth": depth, "step": s,
                         "measure": m, "distance": 1.0 - values[key]}
                        for m, key in _COMPARE_KEY.items())
        # S and B: chosen on the fit half, tracked on the held-out half
        l_half = acts[half][layer]
        res = cca(acts[early][layer][fit], l_half[fit], variates=False)
        width = int(final[layer].shape[1])
        k = max(1, min(int(round(config.sb_fraction * width)), res.rho.size // 2))
        h = (l_half[held] - l_half[fit].mean(0)) @ res.y_weights
        subsets = {"S": h[:, :k], "B": h[:, -k:]}
        for measure, f in _SB_FUNCS.items():
            at_half = {name: f(sub, l_half[held]) for name, sub in subsets.items()}
            sims = {name: {s: f(sub, acts[s][layer][held]) / at_half[name] for s in steps}
                    for name, sub in subsets.items()}
            sb.extend({"seed": seed, "layer": layer, "step": s, "subset": name,
                       "measure": measure, "k": k, "similarity": v}
                      for name, by_step in sims.items() for s, v in by_step.items())
            ci = stats.bootstrap_measure(
                np.hstack([subsets["S"], subsets["B"], l_half[held]]), final[layer][held],
                partial(_sb_contrast, k=k, measure=measure), n_boot=N_BOOT, level=LEVEL,
                seed=analysis.derived_seed(seed, depth, SB_MEASURES.index(measure)))
            tests.append({"seed": seed, "layer": layer, "measure": measure,
                          "loss_S": 1.0 - sims["S"][total], "loss_B": 1.0 - sims["B"][total],
                          "contrast": ci.estimate, "low": ci.low, "high": ci.high})
    return {"run": run_, "acts": acts, "layers": layers, "net": net, "early": early,
            "half": half, "spectra": spectra, "sb": sb, "tests": tests, "conv": conv,
            "shares": shares}


def _floors(acts: dict, layers: tuple[str, ...], half: int, total: int, seed: int
            ) -> list[dict]:
    """Each measure's distance for unrelated representations of each layer's shape: ``L(T/2)``
    against ``L(T)`` with the rows of ``L(T)`` permuted (the mean over :data:`FLOOR_PERMS`)."""
    rows = []
    for depth, layer in enumerate(layers, start=1):
        for n, (measure, key) in enumerate(_COMPARE_KEY.items()):
            null = stats.permutation_null(acts[half][layer], acts[total][layer], key,
                                          n_perm=FLOOR_PERMS,
                                          seed=analysis.derived_seed(seed, depth, n))
            rows.append({"layer": layer, "measure": measure, "floor": 1.0 - null.floor})
    return rows


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train every seed's net (cached), capture every checkpoint, and compute spectra, S/B
    tracking on held-out probe rows, distances to the final representation and their floors."""
    probe = data.load_images(config.dataset, "test", config.n_probe, progress=progress).images
    per_seed = [_one_net(config, s, probe, progress) for s in config.seeds]
    first = per_seed[0]
    steps = first["run"].steps
    if any(p["run"].steps != steps for p in per_seed):
        raise RuntimeError("the nets of different seeds were checkpointed at different steps")
    final = first["acts"][steps[-1]]
    layers = first["layers"]
    history = pd.concat([p["run"].history.assign(seed=p["net"]["seed"]) for p in per_seed],
                        ignore_index=True)
    history = history[["seed", *[c for c in history.columns if c != "seed"]]]
    return Result(
        config=config, layers=layers,
        widths={layer: int(final[layer].shape[1]) for layer in layers}, steps=steps,
        early_step=first["early"], half_step=first["half"],
        nets=pd.DataFrame([p["net"] for p in per_seed]).set_index("seed"), history=history,
        spectra=pd.DataFrame([r for p in per_seed for r in p["spectra"]]),
        sb=pd.DataFrame([r for p in per_seed for r in p["sb"]]),
        sb_tests=pd.DataFrame([r for p in per_seed for r in p["tests"]]),
        convergence=pd.DataFrame([r for p in per_seed for r in p["conv"]]),
        floors=pd.DataFrame(_floors(first["acts"], layers, first["half"], steps[-1],
                                    config.seed)),
        shares=pd.DataFrame([r for p in per_seed for r in p["shares"]]))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

#: One colour per layer, the same in every figure of the chapter: the Okabe-Ito palette
#: (distinct in print and for the common colour-vision deficiencies), in depth order.
LAYER_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#000000", "#D55E00", "#56B4E9",
                 "#F0E442")
#: Width and height in inches of one per-layer panel: two panels fill the book's column.
_PANEL = (3.45, 2.7)


def layer_colors(result: Result) -> dict[str, str]:
    """Each layer's colour (:data:`LAYER_PALETTE` in depth order; it repeats beyond eight
    layers)."""
    return {layer: LAYER_PALETTE[i % len(LAYER_PALETTE)]
            for i, layer in enumerate(result.layers)}


def _seed_colors(result: Result) -> dict[int, tuple]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(result.seeds)}


def _layer_grid(result: Result):
    """A figure with one panel per layer, two to a row (:func:`cca_lib.plotting.grid`), each
    panel's top edge in the layer's colour (:func:`layer_colors`); with an odd number of layers
    the row's last slot is a spare panel for the legend. Returns ``(fig, axes, spare)`` with
    ``spare`` that panel (axis off) or None."""
    from cca_lib import plotting

    n = len(result.layers)
    fig, axes = plotting.grid(n + n % 2, ncols=2, panel=_PANEL, sharey=True)
    for ax, layer in zip(axes, result.layers, strict=False):
        ax.spines["top"].set(visible=True, color=layer_colors(result)[layer], linewidth=4)
    if n % 2:
        axes[-1].set_axis_off()
        return fig, axes[:n], axes[-1]
    return fig, axes, None


def plot_accuracy(result: Result):
    """Test accuracy of every net over training, each net's convergence step marked, and the
    step by which 40% of training remains (C2 is testable if accuracy converged by then)."""
    import matplotlib.pyplot as plt

    colors = _seed_colors(result)
    fig, ax = plt.subplots(figsize=(6.5, 3.6), constrained_layout=True)
    for seed, color in colors.items():
        h = result.history[result.history["seed"] == seed].dropna(subset=["test_acc"])
        ax.plot(h["step"], h["test_acc"], marker=".", ms=3, color=color,
                label=f"seed {seed}: test accuracy")
        ax.axvline(result.nets.loc[seed, "conv_ckpt"], color=color, ls="--", lw=1)
    ax.axvline((1 - C2_MIN_AFTER) * result.final_step, color="black", lw=1.2, ls=":",
               label=f"{1 - C2_MIN_AFTER:.0%} of training")
    accs = result.history["test_acc"].dropna()
    ax.set(xlabel="training step", ylabel="test accuracy",
           ylim=(max(0.0, float(accs.quantile(0.2)) - 0.05), min(1.0, float(accs.max()) + 0.02)),
           title="Test accuracy (dashed: converged within 0.5 points)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_spectra(result: Result, n_curves: int = 7, seed: int | None = None):
    """Sorted CCA coefficients of each layer at several steps t against ``L(T)`` (Fig. 1a) for
    the net with ``seed`` (default: the first), one panel per layer (titles in the layer's
    colour, :func:`layer_colors`), two to a row; its first checkpoint after accuracy converged
    drawn in black, the colour bar of the steps below the panels."""
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    seed = result.seeds[0] if seed is None else seed
    conv_ckpt = int(result.nets.loc[seed, "conv_ckpt"])
    steps = [s for s in result.steps if s < result.final_step]
    picks = sorted({steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, n_curves)}
                   | {conv_ckpt} - {result.final_step})
    norm = colors.LogNorm(vmin=max(1, picks[0]), vmax=result.final_step)
    # viridis without its yellow end, which is hard to see on white
    cmap = colors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 0.85, 256)))
    fig, axes, spare = _layer_grid(result)
    spectra = result.spectra[result.spectra["seed"] == seed]
    for ax, layer in zip(axes, result.layers, strict=True):
        sub = spectra[spectra["layer"] == layer]
        for s in picks:
            rho = sub[sub["step"] == s].sort_values("index")
            x = (rho["index"] + 0.5) / len(rho)
            if s == conv_ckpt:
                ax.plot(x, rho["rho"], color="black", lw=2.2,
                        label=f"t = {s} (accuracy converged)")
            else:
                ax.plot(x, rho["rho"], color=cmap(norm(max(s, 1))), lw=1.3)
        ax.axhline(RHO_LEVEL, color="grey", ls=":", lw=1, label=f"level {RHO_LEVEL:g}")
        ax.set(title=f"{layer} ({result.widths[layer]} neurons)", ylim=(0, 1.02),
               xlabel="sorted CCA direction (fraction)")
    for ax in axes[::2]:  # the left column; the panels of a row share their y axis
        ax.set_ylabel(r"$\rho_i$ of $L(t)$ vs $L(T)$")
    fig.suptitle(f"CCA coefficients against the final step (seed {seed})")
    bar = cm.ScalarMappable(norm=norm, cmap=cmap)
    handles, labels = axes[0].get_legend_handles_labels()
    if spare is not None:  # the legend and the colour bar of the steps in the spare panel
        spare.legend(handles, labels, loc="upper center", fontsize="small")
        fig.colorbar(bar, cax=spare.inset_axes([0.08, 0.3, 0.84, 0.08]), label="step t",
                     orientation="horizontal")
    else:
        axes[0].legend(fontsize="small", loc="lower left")
        fig.colorbar(bar, ax=axes, label="step t", orientation="horizontal", location="bottom",
                     shrink=0.6, aspect=40)
    return fig


def plot_sb(result: Result, measure: str = "mean CCA"):
    """Similarity of S (top-k) and B (bottom-k) with ``L(t)`` on the held-out probe rows
    through training (Fig. 1d-f), one panel per layer, two to a row, and one line per seed;
    the checkpoints after ``T/2`` (the ones judged) shaded; for mean CCA, the floor of
    unrelated data of B's shape (closed form) dotted."""
    fig, axes, spare = _layer_grid(result)
    styles = {"S": ("#0072B2", "-", "S (top-k)"), "B": ("#D55E00", "--", "B (bottom-k)")}
    sb = result.sb[(result.sb["measure"] == measure) & (result.sb["step"] > 0)]
    n_held = result.config.n_probe - result.config.n_probe // 2
    ylabel = ("mean CCA" if measure == "mean CCA" else "CKA / CKA at T/2")
    # CKA relative to T/2 can exceed 1: the axis shows every line from t_early on (earlier,
    # far above 1 for a few directions, the lines leave the panel)
    top = max(1.05, 1.03 * float(sb.loc[sb["step"] >= result.early_step, "similarity"].max()))
    for n, (ax, layer) in enumerate(zip(axes, result.layers, strict=True)):
        sub = sb[sb["layer"] == layer]
        for name, (color, ls, label) in styles.items():
            for i, seed in enumerate(result.seeds):
                part = sub[(sub["subset"] == name) & (sub["seed"] == seed)].sort_values("step")
                ax.plot(part["step"], part["similarity"], color=color, ls=ls, lw=1.2, alpha=0.8,
                        label=label if i == 0 else None)
        ax.axvspan(result.half_step, result.final_step, color="grey", alpha=0.12,
                   label="judged (after T/2)" if n == 0 else None)
        ax.axvline(result.early_step, color="grey", lw=1, ls=":",
                   label=r"$t_{early}$" if n == 0 else None)
        k = int(sub["k"].iloc[0])
        if measure == "mean CCA":
            floor = stats.expected_null(n_held, k, result.widths[layer], measure="mean CCA")
            ax.axhline(floor, color="black", lw=1, ls=":",
                       label="floor (unrelated data)" if n == 0 else None)
        ax.set(xscale="log", ylim=(0, top), xlabel="step t", title=f"{layer} (k={k})")
    for ax in axes[::2]:  # the left column; the panels of a row share their y axis
        ax.set_ylabel(f"{ylabel} with $L(t)$")
    fig.suptitle(f"S and B through training, by {measure} (one line per net)")
    handles, labels = axes[0].get_legend_handles_labels()
    if spare is not None:
        spare.legend(handles, labels, loc="center", fontsize="small")
    else:
        axes[0].legend(fontsize="small", loc="lower left")
    return fig


def plot_convergence(result: Result):
    """Distance of each layer to its final representation over training, one panel per measure
    (PWCCA, mean CCA, linear CKA; each panel's axis names its measure), two to a row (the line:
    mean over seeds, the band: their range; colours: :func:`layer_colors`), each layer's
    sampling floor dashed; the legend in the spare panel."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    from cca_lib import plotting

    frame = result.convergence[result.convergence["step"] > 0]
    palette = layer_colors(result)
    n = len(MEASURES)
    fig, axes = plotting.grid(n + n % 2, ncols=2, panel=(3.45, 2.9))
    for ax, measure in zip(axes, MEASURES, strict=False):
        sns.lineplot(data=frame[frame["measure"] == measure], x="step", y="distance",
                     hue="layer", hue_order=list(result.layers), palette=palette, marker=".",
                     errorbar=("pi", 100), ax=ax, legend=False)
        floors = result.floors[result.floors["measure"] == measure].set_index("layer")["floor"]
        for layer in result.layers:
            ax.axhline(floors[layer], color=palette[layer], ls="--", lw=0.9)
        label = "PWCCA (symmetric)" if measure == "PWCCA" else measure
        ax.set(xscale="log", xlabel="step t", ylabel=f"{label} distance to $L(T)$",
               ylim=(0, 1.02), title=measure)
    handles = [Line2D([], [], color=palette[layer], marker=".", lw=1.5)
               for layer in result.layers]
    handles.append(Line2D([], [], color="grey", ls="--", lw=0.9))
    names = [*result.layers, "floor (unrelated data)"]
    if len(axes) > n:  # the spare panel of the last row holds the legend
        axes[n].set_axis_off()
        axes[n].legend(handles, names, title="layer", loc="center", fontsize="small")
    else:
        axes[-1].legend(handles, names, title="layer", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Text built from the numbers
# ---------------------------------------------------------------------------------------------

def _range(values) -> str:
    v = np.asarray(list(values), dtype=float)
    return f"{v.mean():.2f} ({v.min():.2f} to {v.max():.2f})" if v.size > 1 else f"{v[0]:.2f}"


def _seeds_list(seeds) -> str:
    return ", ".join(str(s) for s in seeds) if len(seeds) else "none"


def _seeds_phrase(seeds) -> str:
    """``"seed 1"`` or ``"seeds 1, 2"``."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {_seeds_list(seeds)}"


def _two_rules(result: Result) -> str:
    """Which accuracy rule is which, and the nets on which they disagree (plain words)."""
    nets, T = result.nets, result.final_step
    tail = analysis.TRAINED_TAIL
    text = (f"Two rules read the test accuracy, with the same {ACC_TOL * 100:.1f}-point "
            f"tolerance: the convergence step t* uses the accuracy averaged over {ACC_WINDOW} "
            "consecutive evaluations (it must stay within the tolerance of its final average "
            "from t* on), while the book's rule for trained compares the unaveraged accuracy at "
            f"the start and at the end of the last {tail:.0%} of training; a net can meet one "
            "and miss the other")
    odd = []
    for seed, net in nets.iterrows():
        stable_tail = bool(net["conv_step"] <= (1 - tail) * T)
        if stable_tail and not net["trained"]:
            odd.append(f"seed {seed} converged by the first rule (from step "
                       f"{int(net['conv_step'])} on; t* = {int(net['conv_ckpt'])}) but missed "
                       f"the second, {net['trained_why']}")
        elif net["trained"] and not stable_tail:
            odd.append(f"seed {seed} converged by the first rule only at step "
                       f"{int(net['conv_step'])}, inside the last {tail:.0%}, but met the "
                       f"second, {net['trained_why']}")
    return text + (": " + "; ".join(odd) + "." if odd else
                   "; here they agree on every net.")


def log_step_areas(result: Result) -> pd.DataFrame:
    """Per measure and layer, the area under the distance curve over log10-step (steps > 0),
    the mean over seeds (smaller: converged earlier)."""
    conv = result.convergence[result.convergence["step"] > 0].sort_values("step")
    per_seed = (conv.groupby(["measure", "seed", "layer"])
                .apply(lambda g: analysis.log_step_area(g["step"], g["distance"], base=10),
                       include_groups=False))
    return per_seed.groupby(["measure", "layer"]).mean().unstack("layer")[list(result.layers)]


def describe(result: Result, section: str) -> str:
    """A paragraph (Markdown) stating what this run measured for ``section``: "accuracy",
    "spectra", "sb" or "convergence"."""
    nets = result.nets
    T = result.final_step
    if section == "accuracy":
        parts = [f"seed {s}: step {int(r.conv_ckpt)} ({r.after_frac:.0%} of training after)"
                 for s, r in nets.iterrows()]
        missed = [s for s in nets.index if not nets.loc[s, "trained"]]
        trained = ("every net met the book's rule for trained (test accuracy changed by less "
                   "than 0.5 points over the last 20% of training)" if not missed else
                   f"{_seeds_phrase(missed)} missed the book's rule for trained (test "
                   "accuracy changed by 0.5 points or more over the last 20% of training); "
                   "the claims are then tested on under-trained nets")
        return (f"Test accuracy (averaged over {ACC_WINDOW} evaluations) stayed within "
                f"{ACC_TOL * 100:.1f} points of its final value from the checkpoint at "
                + "; ".join(parts) + f", out of T = {T} steps; C2 is testable where at least "
                f"{C2_MIN_AFTER:.0%} of training comes after. Final test accuracy "
                f"{_range(nets['final_acc'])} (mean over the nets, range); {trained}. "
                + _two_rules(result))
    if section == "spectra":
        frac = result.unconverged_all()["frac_below"].unstack("layer")[list(result.layers)]
        rows = [f"{layer} {100 * frac[layer].mean():.0f}% ({100 * frac[layer].min():.0f} to "
                f"{100 * frac[layer].max():.0f}%)" for layer in result.layers]
        many = [layer for layer in result.layers
                if (frac[layer] >= C2_SHARE_BELOW).sum() > len(frac) / 2]
        return ("At each net's first checkpoint after accuracy converged, the share of "
                f"coefficients with L(T) below {RHO_LEVEL:g} (mean over seeds, range): "
                + ", ".join(rows) + ". Layers with at least a quarter of their coefficients "
                f"below the line in a majority of seeds: {', '.join(many) or 'none'}.")
    if section == "sb":
        summ = result.sb_summary()
        tests = result.sb_tests[result.sb_tests["measure"] == "mean CCA"].set_index(
            ["seed", "layer"])
        rows = []
        for layer in result.layers:
            s_min = [summ.loc[(s, layer, "S"), "min"] for s in result.seeds]
            loss_b = [tests.loc[(s, layer), "loss_B"] for s in result.seeds]
            loss_s = [tests.loc[(s, layer), "loss_S"] for s in result.seeds]
            rows.append(f"{layer}: S lowest {_range(s_min)}, S lost {_range(loss_s)}, "
                        f"B lost {_range(loss_b)}")
        return ("On the held-out half of the probe images, over the checkpoints after T/2 "
                "(mean over seeds, range): " + "; ".join(rows) + ".")
    if section == "convergence":
        areas = log_step_areas(result)
        texts = []
        for measure in MEASURES:
            order = list(areas.loc[measure].sort_values().index)
            conv_layers = [la for la in result.layers if la.startswith("conv")]
            in_order = [la for la in order if la in conv_layers] == conv_layers
            texts.append(f"{measure}: {' < '.join(order)} (conv layers "
                         f"{'in' if in_order else 'not in'} depth order)")
        conv = result.convergence[result.convergence["step"] > 0]
        floors = result.floors.set_index(["layer", "measure"])["floor"]
        ratio = conv.groupby(["layer", "measure"])["distance"].max() / floors
        near = ratio[ratio >= NEAR_FLOOR]
        floor_text = ("no curve comes within 10% of its floor (the closest: "
                      f"{ratio.idxmax()[0]} by {ratio.idxmax()[1]}, {ratio.max():.0%} of it)"
                      if near.empty else
                      "curves that reach at least 90% of their floor at the earliest "
                      "checkpoints (those distances say only that the layer is as unlike its "
                      "final form as unrelated data): "
                      + ", ".join(f"{la} by {m}" for la, m in near.index))
        return ("Ordering of the layers by area under the distance curve over log-step "
                "(smaller: closer to the final representation earlier), mean over seeds: "
                + "; ".join(texts) + f". Floors: {floor_text}.")
    raise ValueError(f"section must be one of 'accuracy', 'spectra', 'sb', 'convergence', "
                     f"got {section!r}")


# ---------------------------------------------------------------------------------------------
# Check (claims C2 and C3)
# ---------------------------------------------------------------------------------------------

#: Accuracy has converged once it stays within this of its final value: 0.5 points, the
#: tolerance of the book's rule for a trained net (analysis.TRAINED_ACC_CHANGE).
ACC_TOL = 0.005
#: Test accuracy is averaged over this many consecutive evaluations (trailing) before the
#: comparison with its final value, to damp the jitter between evaluations.
ACC_WINDOW = 3
#: C2 is testable only if at least this share of training comes after accuracy converged
#: (the paper: converged at 45k of 80k steps, 44% after).
C2_MIN_AFTER = 0.4
#: A CCA coefficient with L(T) below this counts as "not converged".
RHO_LEVEL = 0.9
#: C2: a layer keeps an unconverged part if at least this share of its coefficients with L(T)
#: is below RHO_LEVEL at the first checkpoint after test accuracy converged.
C2_SHARE_BELOW = 0.25
#: C2 holds for a net if at least this fraction of its layers keeps one (partly: one layer).
C2_LAYER_FRACTION = 0.5
#: C3 (i): S is stable if its similarity with L(t) never falls below this after T/2.
S_MIN = 0.85
#: C3 (ii): after T/2, S's mean similarity must exceed B's by at least this margin.
SB_MARGIN = 0.1
#: C3 (iii), the headline: from T/2 to T, B must lose at least this many times as much
#: similarity as S, the whole 95% bootstrap interval (held-out probe rows) of the contrast
#: loss_B - B_LOSS_RATIO * loss_S above 0.
B_LOSS_RATIO = 3
#: A claim judged per net holds only on a majority of at least this many nets (fewer: at most
#: partly).
MIN_SEEDS = 3
#: Bootstrap resamples of the held-out probe rows for C3 (iii), and of the probe rows for the
#: interval of C2's share of coefficients below RHO_LEVEL.
N_BOOT = 200
#: Interval level.
LEVEL = 0.95
#: Row permutations whose mean is a measure's sampling floor.
FLOOR_PERMS = 20
#: A distance at or above this fraction of its floor counts as "near the floor" in the text.
NEAR_FLOOR = 0.9


def majority(statuses: list[str]) -> str:
    """The verdict over nets (:func:`cca_lib.claims.majority`): "holds" needs more than half
    the nets to hold and at least :data:`MIN_SEEDS` nets."""
    return _majority(statuses, min_nets=MIN_SEEDS)


def _tally(statuses: dict[int, str]) -> str:
    return ", ".join(f"seed {s} {v}" for s, v in statuses.items())


def _setup(result: Result, claim: str) -> tuple[tuple[str, str, str], ...]:
    cfg = result.config
    probe = (f"the first {cfg.n_probe} test images" if claim == "C2" else
             f"the first {cfg.n_probe} test images, S and B chosen on one half and tracked on "
             "the other")
    return (
        ("dataset", "CIFAR-10", f"{cfg.dataset}, the first {cfg.train_size} training images"),
        ("architecture", "a ResNet", f"a 4-layer CNN with batch norm, width {cfg.width}"),
        ("nets and seeds", "one network", f"{len(result.seeds)} networks (seeds "
         f"{_seeds_list(result.seeds)})"),
        ("training", "80k steps; accuracy converged at about 45k",
         f"{result.final_step} steps ({cfg.epochs:g} epochs), SGD with momentum, cosine decay "
         f"to {cfg.final_lr_frac:g} of the peak rate "
         + ("by T/2, then constant" if cfg.schedule == "step_half" else "at T")),
        ("probe inputs", "test images (number not stated)", probe),
    )


def _c2(result: Result) -> Claim:
    nets = result.nets
    T = result.final_step
    criteria, per_seed, counts = [], {}, {}
    for seed in result.seeds:
        after = float(nets.loc[seed, "after_frac"])
        testable = bool(after >= C2_MIN_AFTER)
        criteria.append(Criterion(f"share of training after test accuracy converged (seed {seed})",
                                  f"at least {C2_MIN_AFTER:g}", after, testable))
        table = result.unconverged(seed)
        frac = table["frac_below"]
        rows = [Criterion(f"share of coefficients below {RHO_LEVEL:g} at t* ({layer}, seed "
                          f"{seed}{_share_interval(table, layer)})",
                          f"at least {C2_SHARE_BELOW:g}", frac[layer],
                          bool(frac[layer] >= C2_SHARE_BELOW)) for layer in result.layers]
        criteria.extend(rows)
        n_unconv = sum(c.passed for c in rows)
        counts[seed] = n_unconv
        per_seed[seed] = (status(n_unconv >= C2_LAYER_FRACTION * len(rows), n_unconv > 0)
                          if testable else NOT_TESTABLE)
    afters = nets["after_frac"]
    ci_text = _c2_intervals(result)
    after_text = (f"{afters.mean():.0%} of training came after test accuracy converged "
                  f"(range over seeds {afters.min():.0%} to {afters.max():.0%}; converged at "
                  f"steps {', '.join(str(int(c)) for c in nets['conv_ckpt'])} of {T})")
    missed = [s for s in result.seeds if not nets.loc[s, "trained"]]
    trained = ("" if not missed else
               f" Tested on under-trained nets: {_seeds_phrase(missed)} missed the book's "
               "rule for trained.") + " " + _two_rules(result)
    n_layers = len(result.layers)
    verdict = majority(per_seed.values())
    if verdict == NOT_TESTABLE:
        evidence = (f"Not testable at this scale: {after_text}, while the test needs at least "
                    f"{C2_MIN_AFTER:.0%} (the paper: 44%) in a majority of seeds; per seed: "
                    f"{_tally(per_seed)}." + trained)
    else:
        evidence = (f"{after_text}. At the first checkpoint after accuracy converged, layers "
                    f"with at least {C2_SHARE_BELOW:.0%} of their coefficients with the final "
                    f"step below {RHO_LEVEL:g}: "
                    + ", ".join(f"{counts[s]} of {n_layers} (seed {s})" for s in result.seeds)
                    + f"; a net holds with at least half of its layers, partly with one; "
                    f"per seed: {_tally(per_seed)}; the verdict is the majority of "
                    f"{len(per_seed)} nets." + ci_text + trained)
    n = np.array(list(counts.values()))
    ours = (f"{afters.mean():.0%} of training after convergence ({afters.min():.0%} to "
            f"{afters.max():.0%}); layers with {C2_SHARE_BELOW:.0%}+ unconverged: "
            f"{np.median(n):g} of {n_layers} ({n.min()} to {n.max()})")
    return Claim(id="C2", part="CNN", status=verdict, figure="fig-cnn-dynamics-spectra",
                 evidence=evidence,
                 criteria=tuple(criteria),
                 paper_value="accuracy converged at 45k of 80k steps (44% of training after), "
                             "with many coefficients still below 1",
                 ours=ours, cka_agrees=None, setup=_setup(result, "C2"))


def _share_interval(table: pd.DataFrame, layer: str) -> str:
    """``"; 95% interval [low, high]"`` of a layer's share below RHO_LEVEL, or ``""``."""
    if "frac_low" not in table or not np.isfinite(table.loc[layer, "frac_low"]):
        return ""
    return (f"; {LEVEL:.0%} interval over probe images [{table.loc[layer, 'frac_low']:.3f}, "
            f"{table.loc[layer, 'frac_high']:.3f}]")


def _c2_intervals(result: Result) -> str:
    """A sentence on the bootstrap intervals of the shares that met C2's level (or that the
    shares have no interval)."""
    table = result.unconverged_all()
    if "frac_low" not in table:
        return " The shares below the level have no interval in this result."
    met = table[table["frac_below"] >= C2_SHARE_BELOW]
    if met.empty:
        (seed, layer), r = next(table.sort_values("frac_below", ascending=False).iterrows())
        return (f" No share met the level {C2_SHARE_BELOW:g}; the largest, {layer} of seed "
                f"{seed}, is {r.frac_below:.3f} [{r.frac_low:.3f}, {r.frac_high:.3f}] "
                f"({LEVEL:.0%} bootstrap interval over probe images).")
    parts = [f"{layer} of seed {seed} {r.frac_below:.3f} [{r.frac_low:.3f}, "
             f"{r.frac_high:.3f}]" for (seed, layer), r in met.iterrows()]
    below = int((met["frac_low"] < C2_SHARE_BELOW).sum())
    return (f" The shares that met the level {C2_SHARE_BELOW:g}, with their {LEVEL:.0%} "
            "bootstrap intervals over probe images: " + ", ".join(parts)
            + f" ({below} of {len(met)} intervals reach below {C2_SHARE_BELOW:g}; the rule "
            "reads the share itself).")


def _c3_seed(result: Result, seed: int, measure: str) -> tuple[str, list[Criterion]]:
    """One net's C3 verdict by ``measure`` and its criteria rows (checkpoints after T/2)."""
    summ = result.sb_summary(measure)
    tests = result.sb_tests[(result.sb_tests["measure"] == measure)
                            & (result.sb_tests["seed"] == seed)].set_index("layer")
    rows, layer_ok = [], []
    for layer in result.layers:
        s, b = summ.loc[(seed, layer, "S")], summ.loc[(seed, layer, "B")]
        t = tests.loc[layer]
        tag = f"{layer}, seed {seed}" + ("" if measure == "mean CCA" else ", linear CKA")
        layer_rows = (
            Criterion(f"lowest similarity of S after T/2 ({tag})", f"at least {S_MIN:g}",
                      s["min"], bool(s["min"] >= S_MIN)),
            Criterion(f"mean similarity of S minus that of B after T/2 ({tag})",
                      f"at least {SB_MARGIN:g}", s["mean"] - b["mean"],
                      bool(s["mean"] - b["mean"] >= SB_MARGIN)),
            Criterion(f"similarity B lost from T/2 to T minus {B_LOSS_RATIO:g} x what S lost "
                      f"({tag}; B lost {t['loss_B']:.3f}, S {t['loss_S']:.3f})",
                      f"95% interval above 0 (interval [{t['low']:.3f}, {t['high']:.3f}])",
                      t["contrast"], bool(t["low"] > 0)),
        )
        rows.extend(layer_rows)
        layer_ok.append(all(r.passed for r in layer_rows))
    return status(all(layer_ok), any(layer_ok)), rows


def _c3_counts(result: Result) -> str:
    """How many layer-and-seed cells met each of C3's three criteria (mean CCA), with the
    extreme values, and what that says of the direction and of the size of the effect."""
    summ = result.sb_summary("mean CCA")
    tests = result.sb_tests[result.sb_tests["measure"] == "mean CCA"].set_index(
        ["seed", "layer"])
    cells = [(seed, layer) for seed in result.seeds for layer in result.layers]
    s_min = np.array([summ.loc[(*c, "S"), "min"] for c in cells])
    gap = np.array([summ.loc[(*c, "S"), "mean"] - summ.loc[(*c, "B"), "mean"] for c in cells])
    low = np.array([tests.loc[c, "low"] for c in cells])
    n = len(cells)
    n_s, n_gap, n_dir = (int(v.sum()) for v in (s_min >= S_MIN, gap >= SB_MARGIN, low > 0))
    text = (f"Of the {n} layer-and-seed cells, S stayed at {S_MIN:g} or above in {n_s} of {n} "
            f"(lowest {s_min.min():.3f}); S minus B reached the {SB_MARGIN:g} margin in {n_gap} "
            f"of {n} (gaps {gap.min():.3f} to {gap.max():.3f}); B's loss exceeded "
            f"{B_LOSS_RATIO:g} x S's (interval above 0) in {n_dir} of {n}.")
    if n_dir > n_gap:
        text += (f" So B decorrelates more than S, the direction the paper reports, in {n_dir} "
                 f"of {n} cells, while S stays less than {SB_MARGIN:g} above B in "
                 f"{n - n_gap} of {n}")
        text += (": the direction matches the paper everywhere, the size nowhere."
                 if n_dir == n and n_gap == 0 else ".")
    return text


def _c3(result: Result) -> Claim:
    per_seed, criteria = {}, []
    for seed in result.seeds:
        per_seed[seed], rows = _c3_seed(result, seed, "mean CCA")
        criteria.extend(rows)
    cka = {seed: _c3_seed(result, seed, "linear CKA")[0] for seed in result.seeds}
    verdict, cka_verdict = majority(list(per_seed.values())), majority(list(cka.values()))
    criteria.extend(Criterion(f"C3 by linear CKA, relative to its value at T/2 (seed {s})",
                              "the same three criteria", v, None) for s, v in cka.items())
    tests = result.sb_tests[result.sb_tests["measure"] == "mean CCA"]
    by_seed = tests.groupby("seed")[["loss_B", "loss_S"]].mean()
    missed = [s for s in result.seeds if not result.nets.loc[s, "trained"]]
    trained = ("" if not missed else
               f" Tested on under-trained nets: {_seeds_phrase(missed)} missed the book's "
               "rule for trained.")
    evidence = (f"After T/2, on held-out probe images: B lost {_range(by_seed['loss_B'])} of "
                f"its mean CCA with the layer by T, S {_range(by_seed['loss_S'])} (mean over "
                f"layers; mean over seeds and range). A net holds when every layer keeps S at "
                f"{S_MIN:g} or above, S at least {SB_MARGIN:g} above B, and B losing more than "
                f"{B_LOSS_RATIO:g} x S's loss (95% bootstrap interval above 0). "
                + _c3_counts(result) + f" Per seed: {_tally(per_seed)}; majority of "
                f"{len(per_seed)} nets. By linear CKA: {cka_verdict} ({_tally(cka)})."
                + trained)
    ours = (f"B lost {_range(by_seed['loss_B'])} after T/2, S {_range(by_seed['loss_S'])} "
            "(mean over layers; seed range)")
    return Claim(id="C3", status=verdict, figure="fig-cnn-dynamics-sb-cca", evidence=evidence,
                 criteria=tuple(criteria),
                 paper_value="no number: S stays near-constant through training, B "
                             "decorrelates away from T/2",
                 ours=ours, cka_agrees=bool(cka_verdict == verdict), setup=_setup(result, "C3"))


def check(result: Result) -> list[Claim]:
    """Claims C2 (its CNN part) and C3, judged per net and decided by :func:`majority`.

    C2, per net: testable if at least :data:`C2_MIN_AFTER` of training comes after its test
    accuracy converged (within :data:`ACC_TOL`); then, at that checkpoint ``t*``, per layer the
    share of coefficients of ``L(t*)`` vs ``L(T)`` below :data:`RHO_LEVEL`: the net holds if at
    least :data:`C2_LAYER_FRACTION` of its layers have :data:`C2_SHARE_BELOW` or more, partly if
    one does. An untestable net counts as not holding; if at most half the nets are testable,
    the claim is "not testable" and its evidence starts "Not testable at this scale".

    C3, per net, over the checkpoints after ``T/2`` (held-out probe rows), per layer: (i) S's
    similarity never below :data:`S_MIN`; (ii) S's mean above B's by :data:`SB_MARGIN`; (iii)
    the 95% bootstrap interval of B's loss at ``T`` minus :data:`B_LOSS_RATIO` times S's above
    0. A net holds if every layer meets all three, partly if one layer does. The same rules
    with linear CKA give ``cka_agrees``."""
    return [_c2(result), _c3(result)]


__all__ = ["MEASURES", "SB_MEASURES", "Config", "Result", "canonical_variates", "check",
           "describe", "log_step_areas", "majority", "plot_accuracy", "plot_convergence",
           "plot_sb", "plot_spectra", "probe_split", "run"]
