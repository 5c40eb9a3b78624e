"""Chapter: training dynamics of a CNN, signal and noise (the paper's Fig. 1, claims C2, C3).

One CNN (:func:`cca_lib.models.make_cnn`) is trained with many checkpoints: log-spaced steps,
``T/2``, the final step ``T`` and ``n_linear`` evenly spaced steps (so that a checkpoint lies
close to the step where test accuracy converged). Every layer is recorded at every checkpoint on
a fixed probe set (the first ``n_probe`` test images, channels averaged over space). Then:

* **spectra** (Fig. 1a): the sorted CCA coefficients between ``L(t)`` and ``L(T)`` for every
  layer and checkpoint;
* **accuracy convergence**: ``conv_step`` is the first evaluated step from which the test
  accuracy (on ``eval_size`` test images, a trailing mean over ``acc_window`` evaluations to
  damp sampling noise) stays within ``acc_tol`` of its final value;
  ``conv_ckpt`` is the first checkpoint at or after it (before ``T``);
* **signal and noise** (Fig. 1d-f): CCA between ``L(t_early)`` and ``L(T/2)`` gives canonical
  variates of ``L(T/2)``, ``H = [h_1 .. h_c]`` (an ``(n_probe, c)`` matrix, columns sorted by
  their coefficient with ``L(t_early)``). ``S`` = its first ``k`` columns (the directions that
  had already converged at ``t_early``), ``B`` = its last ``k`` columns, with
  ``k = round(sb_fraction * width of the layer)``. We track the mean CCA similarity of ``S`` and
  of ``B`` with ``L(t)`` at every checkpoint;
* **distance to the final representation** per layer (bottom-up convergence), with PWCCA
  (symmetric: the mean of both directions) and with mean CCA.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cca_lib import _checks, capture, data, training
from cca_lib.claims import Claim, Criterion, status
from cca_lib.experiments._params import (
    COUNT,
    EPOCHS,
    FRACTION,
    IMAGES,
    LR_FRAC,
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    param,
    rule,
)
from cca_lib.similarity import cca, distance, mean_cca

MEASURES = ("PWCCA", "mean CCA")
_METHOD = {"PWCCA": "pwcca", "mean CCA": "mean_cca"}


#: Minibatch size of the network's SGD.
BATCH_SIZE = 128


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Parameters of the experiment. Defaults are the quick profile."""

    width: int = param(16, "CNN width multiplier: channels w, 2w, 2w, 4w", "a CIFAR-10 ResNet",
                       check=UNITS)
    train_size: int = param(10_000, "training images, the first ones of the training split",
                            "all", check=SAMPLES)
    epochs: float = param(12.0, "epochs of SGD with momentum 0.9, cosine schedule",
                          "80k steps", check=EPOCHS)
    lr: float = param(0.05, "peak learning rate", "not stated for this figure", check=POSITIVE)
    final_lr_frac: float = param(
        0.2, "the cosine schedule ends at lr * final_lr_frac; > 0 keeps the weights moving at "
        "the end, as in the paper's long runs (annealing to 0 freezes every layer by "
        "construction)", check=LR_FRAC)
    seed: int = param(0, "initialization and minibatch order", check=SEED)
    log_checkpoints: int = param(14, "log-spaced checkpoints, plus T/2 and T",
                                 "every few thousand steps", check=COUNT)
    n_linear: int = param(12, "evenly spaced extra checkpoints", check=COUNT)
    eval_every: int = param(39, "steps between test-accuracy evaluations", check=SAMPLES)
    eval_size: int = param(5000, "test images for the accuracy curve", check=SAMPLES)
    acc_tol: float = param(0.01, '"accuracy converged": within this of the final accuracy',
                           check=FRACTION)
    acc_window: int = param(3, "test accuracy is averaged over this many consecutive "
                            "evaluations", check=POSITIVE_COUNT)
    n_probe: int = param(2000, "probe images, the first ones of the test split",
                         check=rule(_checks.integer, ge=2, le=_checks.MAX_SAMPLES))
    early_frac: float = param(0.1, "t_early is the first checkpoint at or after early_frac * T "
                              "(before T/2)", check=rule(_checks.real, gt=0, lt=0.5))
    sb_fraction: float = param(0.25, "S and B each hold this fraction of a layer's width (they "
                               "must not overlap)", "100 of 512+ neurons",
                               check=rule(_checks.real, gt=0, le=0.5))
    rho_level: float = param(0.9, 'a CCA coefficient below this counts as "not converged"',
                             check=FRACTION)
    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (the '
                         "paper's data; a 170 MB download)", "CIFAR-10", check=IMAGES)

    def _validate(self) -> None:
        if self.train_size < BATCH_SIZE:
            raise ValueError(f"train_size must be >= the batch size {BATCH_SIZE}, got "
                             f"{self.train_size!r}")

    def _base_config(self) -> training.CNNTrainConfig:
        return training.CNNTrainConfig(
            dataset=self.dataset, width=self.width, train_size=self.train_size, seed=self.seed,
            lr=self.lr, schedule="cosine", final_lr_frac=self.final_lr_frac, epochs=self.epochs,
            batch_size=BATCH_SIZE, log_checkpoints=self.log_checkpoints,
            eval_every=self.eval_every, eval_size=self.eval_size)

    def train_config(self) -> training.CNNTrainConfig:
        """The engine config of the one network (cached by the engine): ``n_linear`` evenly
        spaced checkpoints over its :func:`~cca_lib.training.total_steps`."""
        base = self._base_config()
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


@dataclass(frozen=True)
class Result:
    """Everything the chapter plots and checks."""

    config: Config
    layers: tuple[str, ...]
    widths: dict[str, int]  #: neurons per layer
    steps: tuple[int, ...]  #: checkpointed steps
    history: pd.DataFrame  #: the engine's history (step, train/test loss and accuracy)
    final_acc: float  #: test accuracy at T (eval_size images, averaged over acc_window evals)
    conv_step: int  #: first evaluated step from which (averaged) test accuracy stays within acc_tol
    conv_ckpt: int  #: first checkpoint >= conv_step (and < T when possible)
    early_step: int  #: t_early
    half_step: int  #: T/2
    spectra: pd.DataFrame  #: layer, step, index, rho of CCA(L(step), L(T))
    sb: pd.DataFrame  #: layer, step, subset ("S"/"B"), k, similarity
    convergence: pd.DataFrame  #: layer, depth, step, measure, distance to L(T)

    @property
    def final_step(self) -> int:
        return self.steps[-1]

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances to the final representation, for seaborn."""
        return self.convergence.copy()

    def unconverged(self, step: int | None = None) -> pd.DataFrame:
        """Per layer at checkpoint ``step`` (default ``conv_ckpt``): mean CCA with ``L(T)``,
        the fraction of coefficients below ``rho_level``, and the number of coefficients."""
        step = self.conv_ckpt if step is None else step
        sub = self.spectra[self.spectra["step"] == step]
        level = self.config.rho_level
        table = sub.groupby("layer")["rho"].agg(
            mean_rho="mean", frac_below=lambda r: float(np.mean(r < level)), n="count")
        return table.loc[list(self.layers)]

    def sb_summary(self) -> pd.DataFrame:
        """Per layer and subset: k, minimum, mean and final (at T) similarity with ``L(t)``
        over the checkpoints from ``t_early`` on, ``T/2`` itself excluded (it is 1 there by
        construction)."""
        sub = self.sb[(self.sb["step"] >= self.early_step) & (self.sb["step"] != self.half_step)]
        table = sub.groupby(["layer", "subset"]).agg(
            k=("k", "first"), min=("similarity", "min"), mean=("similarity", "mean"))
        at_t = sub[sub["step"] == self.final_step].set_index(["layer", "subset"])["similarity"]
        table["at_T"] = at_t
        return table.loc[list(self.layers)]


def _conv_step(history: pd.DataFrame, tol: float, window: int) -> tuple[int, float]:
    """First evaluated step from which the test accuracy, averaged over ``window`` consecutive
    evaluations (trailing), stays within ``tol`` of its final averaged value; and that value."""
    h = history.dropna(subset=["test_acc"]).sort_values("step")
    smooth = h["test_acc"].rolling(window, min_periods=1).mean()
    final = float(smooth.iloc[-1])
    outside = h["step"][(smooth - final).abs() > tol]
    last_bad = int(outside.max()) if len(outside) else -1
    return int(h["step"][h["step"] > last_bad].min()), final


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train (cached), capture every checkpoint, and compute spectra, S/B tracking and
    distances to the final representation."""
    from cca_lib._progress import bar as tqdm_bar

    run_ = training.train(config.train_config(), progress=progress)
    steps = run_.steps
    total = steps[-1]
    probe = data.load_images(config.dataset, "test", config.n_probe, progress=progress).images
    acts = {s: capture.capture_run(run_, s, probe)
            for s in tqdm_bar(steps, desc="capture checkpoints", progress=progress)}
    layers = tuple(run_.build_model().layer_names)
    final = acts[total]
    widths = {layer: int(final[layer].shape[1]) for layer in layers}

    conv_step, final_acc = _conv_step(run_.history, config.acc_tol, config.acc_window)
    after = [s for s in steps if s >= conv_step and s < total]
    conv_ckpt = after[0] if after else total
    half = max(1, total // 2)
    early = min(s for s in steps if s >= config.early_frac * total)

    spectra, sb, conv = [], [], []
    for depth, layer in enumerate(tqdm_bar(layers, desc="layers", progress=progress), start=1):
        rho_e, h = canonical_variates(acts[early][layer], acts[half][layer])
        k = max(1, min(int(round(config.sb_fraction * widths[layer])), len(rho_e) // 2))
        subsets = {"S": h[:, :k], "B": h[:, -k:]}
        for s in steps:
            a = acts[s][layer]
            rho = cca(a, final[layer]).rho
            spectra.extend({"layer": layer, "step": s, "index": i, "rho": float(r)}
                           for i, r in enumerate(rho))
            for name, sub in subsets.items():
                sb.append({"layer": layer, "step": s, "subset": name, "k": k,
                           "similarity": mean_cca(sub, a)})
            for measure, method in _METHOD.items():
                kw = {"symmetric": True} if method == "pwcca" else {}
                conv.append({"layer": layer, "depth": depth, "step": s, "measure": measure,
                             "distance": distance(a, final[layer], method=method, **kw)})
    return Result(config=config, layers=layers, widths=widths, steps=steps,
                  history=run_.history, final_acc=final_acc, conv_step=conv_step,
                  conv_ckpt=conv_ckpt, early_step=early, half_step=half,
                  spectra=pd.DataFrame(spectra), sb=pd.DataFrame(sb),
                  convergence=pd.DataFrame(conv))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _mark(ax, result: Result, *, label: bool = True) -> None:
    ax.axvline(result.conv_step, color="black", ls="--", lw=1,
               label="test accuracy converged" if label else None)


def plot_accuracy(result: Result):
    """Test and train accuracy over training, the convergence step marked."""
    import matplotlib.pyplot as plt

    h = result.history.dropna(subset=["test_acc"])
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    ax.plot(h["step"], h["test_acc"], marker=".", label="test accuracy")
    ax.plot(h["step"], h["train_acc"], marker=".", alpha=0.6, label="train accuracy (running)")
    ax.axhspan(result.final_acc - result.config.acc_tol, result.final_acc + result.config.acc_tol,
               color="grey", alpha=0.15, label=f"final ± {result.config.acc_tol:.0%}")
    _mark(ax, result)
    ax.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1), title="Accuracy over training")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_spectra(result: Result, n_curves: int = 7):
    """Sorted CCA coefficients of each layer at several steps t against ``L(T)`` (Fig. 1a);
    the first checkpoint after accuracy converged drawn in black."""
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    steps = [s for s in result.steps if s < result.final_step]
    picks = sorted({steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, n_curves)}
                   | {result.conv_ckpt} - {result.final_step})
    norm = colors.LogNorm(vmin=max(1, picks[0]), vmax=result.final_step)
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(result.layers), figsize=(3.0 * len(result.layers), 3.4),
                             sharey=True, constrained_layout=True)
    for ax, layer in zip(np.atleast_1d(axes), result.layers, strict=True):
        sub = result.spectra[result.spectra["layer"] == layer]
        for s in picks:
            rho = sub[sub["step"] == s].sort_values("index")
            x = (rho["index"] + 0.5) / len(rho)
            if s == result.conv_ckpt:
                ax.plot(x, rho["rho"], color="black", lw=2.2, label=f"t={s} (accuracy converged)")
            else:
                ax.plot(x, rho["rho"], color=cmap(norm(max(s, 1))), lw=1.3)
        ax.axhline(result.config.rho_level, color="grey", ls=":", lw=1)
        ax.set(title=f"{layer} ({result.widths[layer]} neurons)", ylim=(0, 1.02),
               xlabel="sorted CCA direction (fraction)")
    first = np.atleast_1d(axes)[0]
    first.set_ylabel(r"CCA coefficient $\rho_i$ of $L(t)$ vs $L(T)$")
    if first.get_legend_handles_labels()[0]:  # the converged step may be T itself
        first.legend(fontsize="x-small", loc="lower left")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="step t", shrink=0.9)
    return fig


def plot_sb(result: Result):
    """Mean CCA similarity of S (top-k) and B (bottom-k) with ``L(t)`` through training
    (Fig. 1d-f), one panel per layer."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result.layers), figsize=(3.0 * len(result.layers), 3.4),
                             sharey=True, constrained_layout=True)
    styles = {"S": ("#1f77b4", "-", "S (top-k)"), "B": ("#ff7f0e", "--", "B (bottom-k)")}
    for n, (ax, layer) in enumerate(zip(np.atleast_1d(axes), result.layers, strict=True)):
        sub = result.sb[(result.sb["layer"] == layer) & (result.sb["step"] > 0)]
        for name, (color, ls, label) in styles.items():
            part = sub[sub["subset"] == name].sort_values("step")
            ax.plot(part["step"], part["similarity"], color=color, ls=ls, marker=".",
                    label=label)
        ax.axvline(result.early_step, color="grey", lw=1, ls=":",
                   label=r"$t_{early}$ and $T/2$" if n == 0 else None)
        ax.axvline(result.half_step, color="grey", lw=1, ls=":")
        _mark(ax, result, label=n == 0)
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="step t",
               title=f"{layer} (k={int(sub['k'].iloc[0])})")
    first = np.atleast_1d(axes)[0]
    first.set_ylabel(r"mean CCA of S or B with $L(t)$")
    first.legend(fontsize="x-small", loc="lower left")
    return fig


def plot_convergence(result: Result):
    """Distance of each layer to its final representation over training, PWCCA (left) and
    mean CCA (right)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = result.convergence[result.convergence["step"] > 0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, constrained_layout=True)
    for n, (ax, measure) in enumerate(zip(axes, MEASURES, strict=True)):
        sns.lineplot(data=frame[frame["measure"] == measure], x="step", y="distance",
                     hue="layer", hue_order=list(result.layers), palette="viridis", marker=".",
                     ax=ax, legend=n == 1)
        _mark(ax, result, label=False)
        label = "PWCCA distance (symmetric)" if measure == "PWCCA" else "mean CCA distance"
        ax.set(xscale="log", xlabel="step t", ylabel=f"{label} to $L(T)$", title=measure)
    axes[1].legend(title="layer", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claims C2 and C3)
# ---------------------------------------------------------------------------------------------

#: C2: a layer keeps an unconverged part if at least this share of its coefficients with L(T)
#: is below ``rho_level`` at the first checkpoint after test accuracy converged.
C2_SHARE_BELOW = 0.25
#: C2 holds if at least this fraction of the layers keeps one (partly: at least one layer).
C2_LAYER_FRACTION = 0.5
#: C3 (i): S is stable if its similarity with L(t) never falls below this.
S_MIN = 0.85
#: C3 (ii): S's mean similarity must exceed B's by at least this margin.
SB_MARGIN = 0.1
#: C3 (iii): from T/2 to T, B must lose at least this many times as much similarity as S.
B_LOSS_RATIO = 3


def check(result: Result) -> list[Claim]:
    """Claims C2 and C3.

    C2, at the first checkpoint ``t*`` after test accuracy converged: per layer, the share of
    coefficients of ``L(t*)`` vs ``L(T)`` below ``rho_level``. Holds if at least
    ``C2_LAYER_FRACTION`` of the layers have ``C2_SHARE_BELOW`` or more; partly if one does.

    C3, over the checkpoints from ``t_early`` on (``T/2`` excluded), per layer: (i) S's
    similarity never below ``S_MIN``; (ii) S's mean above B's by ``SB_MARGIN``; (iii) B's loss
    at ``T`` at least ``B_LOSS_RATIO`` times S's. Holds if every layer meets all three; partly
    if one layer does."""
    cfg = result.config
    frac = result.unconverged()["frac_below"]
    c2 = [Criterion(f"share of coefficients below {cfg.rho_level:g} at t* ({layer})",
                    f"at least {C2_SHARE_BELOW:g}", frac[layer],
                    bool(frac[layer] >= C2_SHARE_BELOW)) for layer in result.layers]
    n_unconv = sum(c.passed for c in c2)
    n_layers = len(frac)
    c2_status = status(n_unconv >= C2_LAYER_FRACTION * n_layers, n_unconv > 0)
    c2_evidence = (
        f"at the first checkpoint after test accuracy converged (step {result.conv_ckpt} of "
        f"{result.final_step}), share of coefficients below {cfg.rho_level:g}: "
        + ", ".join(f"{k} {v:.0%}" for k, v in frac.items())
        + f" (width {cfg.width}, {cfg.train_size} images, {cfg.epochs:g} epochs, probe "
        f"{cfg.n_probe} test images)")

    sbs = result.sb_summary()
    c3, layer_ok = [], []
    for layer in result.layers:
        s, b = sbs.loc[(layer, "S")], sbs.loc[(layer, "B")]
        rows = (
            Criterion(f"lowest similarity of S ({layer})", f"at least {S_MIN:g}", s["min"],
                      bool(s["min"] >= S_MIN)),
            Criterion(f"mean similarity of S minus that of B ({layer})",
                      f"at least {SB_MARGIN:g}", s["mean"] - b["mean"],
                      bool(s["mean"] - b["mean"] >= SB_MARGIN)),
            Criterion(f"similarity B lost from T/2 to T ({layer})",
                      f"at least {B_LOSS_RATIO:g} x what S lost "
                      f"({B_LOSS_RATIO * (1 - s['at_T']):.3f})",
                      1 - b["at_T"], bool(1 - b["at_T"] >= B_LOSS_RATIO * (1 - s["at_T"]))),
        )
        c3.extend(rows)
        layer_ok.append(all(r.passed for r in rows))
    c3_evidence = "; ".join(
        f"{layer}: S lowest {sbs.loc[(layer, 'S'), 'min']:.2f}, B mean "
        f"{sbs.loc[(layer, 'B'), 'mean']:.2f} against S {sbs.loc[(layer, 'S'), 'mean']:.2f}, "
        f"at T B {sbs.loc[(layer, 'B'), 'at_T']:.2f}" for layer in result.layers)
    return [
        Claim(id="C2", status=c2_status, figure="Figure 2", evidence=c2_evidence,
              criteria=tuple(c2)),
        Claim(id="C3", status=status(all(layer_ok), any(layer_ok)), figure="Figure 3",
              evidence=c3_evidence, criteria=tuple(c3)),
    ]


__all__ = ["MEASURES", "Config", "Result", "canonical_variates", "check", "plot_accuracy",
           "plot_convergence", "plot_sb", "plot_spectra", "run"]
