"""Chapter: RNN training dynamics, do LSTM layers converge bottom-up? (paper Fig. 6, A8;
claims C8, C2).

One multi-layer LSTM language model is trained with checkpoints (log-spaced, plus a finer grid
over the last part of training, plus the final step ``T``). Every checkpoint is run on the same
fixed probe set (``probe_seqs`` validation sequences of ``probe_len`` tokens, each from a zero
state); every (sequence, timestep) position is one sample, so a layer gives an
``(probe_seqs * probe_len, hidden)`` matrix. For every layer and checkpoint ``t`` we compare the
layer at ``t`` with the same layer at ``T``:

* PWCCA distance, weights from the final representation: ``distance(L(T), L(t), "pwcca")``;
* mean CCA distance ``1 - mean(rho)``;
* cosine and Euclidean distance of the same neurons (controls, paper Fig. A8)
  (the four are :func:`cca_lib.analysis.reference_distances`);
* the sorted CCA coefficients ``rho`` themselves (paper Fig. 1b/c).

:func:`lm_config` builds the engine's :class:`~cca_lib.training.LMTrainConfig`; the timesteps
chapter (:mod:`cca_lib.experiments.rnn_timesteps`) calls it with the same values, so it reuses the
cached run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cca_lib import _checks
from cca_lib import analysis as _analysis
from cca_lib import capture as _capture
from cca_lib import data as _data
from cca_lib import training as _training
from cca_lib.claims import Claim, Criterion, status, yes_no
from cca_lib.experiments._params import (
    BATCH,
    COUNT,
    EPOCHS,
    FRACTION,
    LR_FRAC,
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    TEXT,
    UNITS,
    ChapterConfig,
    param,
    rule,
)

MEASURES = _analysis.REFERENCE_MEASURES


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Training and analysis parameters. Defaults are the quick profile.

    The fields in :data:`RUN_FIELDS` define the trained LSTM (its cached run); the timesteps
    chapter uses the same run."""

    corpus: str = param("tinyshakespeare", 'training text: "tinyshakespeare" (characters), '
                        '"ptb" or "wikitext-2" (words)', "PTB and WikiText-2, word level",
                        check=TEXT)
    n_layers: int = param(3, "LSTM layers (at least 2 to compare layers)",
                          "3; also a 5-layer model",
                          check=rule(_checks.integer, ge=2, le=64))
    hidden_size: int = param(64, "units per layer", "1150, awd-lstm-lm", check=UNITS)
    embed_dim: int = param(32, "token embedding size", "400", check=UNITS)
    dropout: float = param(0.0, "dropout between layers", check=rule(_checks.real, ge=0, lt=1))
    lr: float = param(3e-3, "Adam learning rate", "SGD/ASGD, awd-lstm-lm", check=POSITIVE)
    schedule: str = param("cosine", '"cosine" (to lr * final_lr_frac) or "constant"',
                          check=rule(_checks.text, choices=("cosine", "constant")))
    final_lr_frac: float = param(0.1, "learning rate at the end, as a fraction of lr (0: decays "
                                 "to zero)", check=LR_FRAC)
    batch_size: int = param(64, "windows per step", check=BATCH)
    seq_len: int = param(64, "tokens per window (BPTT length)", check=SAMPLES)
    epochs: float = param(6.0, "passes over the training text", "500 on PTB", check=EPOCHS)
    train_tokens: int | None = param(None, "train on the first train_tokens tokens (None: all)",
                                     check=rule(_checks.integer, ge=2, le=10**10, none=True))
    log_checkpoints: int = param(12, "log-spaced checkpoints, plus T/2 and the final step T",
                                 check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    tail_checkpoints: int = param(6, "extra checkpoints evenly spread over the last tail_frac "
                                  "of training", check=COUNT)
    tail_frac: float = param(0.3, "part of training covered by the fine grid near the end",
                             check=FRACTION)
    eval_points: int = param(20, "validation evaluations over training (perplexity curve)",
                             check=POSITIVE_COUNT)
    probe_seqs: int = param(200, "probe sequences from the validation text (samples: all "
                            "positions)", check=SAMPLES)
    probe_len: int = param(50, "tokens per probe sequence", check=SAMPLES)
    threshold: float = param(0.1, '"converged": distance to the final step below this',
                             check=FRACTION)
    seed: int = param(0, "initial weights and minibatch order", check=SEED)
    threads: int | None = param(None, "torch threads for training (speed only; None: torch's "
                                "default)", check=rule(_checks.integer, ge=1, le=4096,
                                                        none=True))

    def _validate(self) -> None:
        n = self.probe_seqs * self.probe_len
        if n < 10 * self.hidden_size:
            raise ValueError(
                f"probe_seqs * probe_len = {n} samples is fewer than 10 x hidden_size = "
                f"{10 * self.hidden_size}: CCA distances would sit on the sampling floor")
        _checks.allocation("probe_seqs x probe_len x hidden_size", n * self.hidden_size)
        lm_config(self)  # the engine's own checks of the run


#: The fields of :class:`Config` that define the trained LSTM run (:func:`lm_config`); the
#: timesteps chapter takes exactly these from its parameters, so both chapters share one run.
RUN_FIELDS = ("corpus", "n_layers", "hidden_size", "embed_dim", "dropout", "lr", "schedule",
              "final_lr_frac", "batch_size", "seq_len", "epochs", "train_tokens",
              "log_checkpoints", "tail_checkpoints", "tail_frac", "eval_points", "seed",
              "threads")


def lm_config(config: Config, total_steps: int | None = None) -> _training.LMTrainConfig:
    """The engine config of ``config``'s run. ``total_steps`` (the run's ``T``) adds the
    evaluation grid and the fine checkpoint grid over the tail; without it, a config with
    neither (used only to validate and to count steps)."""
    extra: tuple[int, ...] = ()
    eval_every = None
    if total_steps is not None:
        start = int(round((1 - config.tail_frac) * total_steps))
        tail = np.linspace(start, total_steps, config.tail_checkpoints + 2)[1:-1]
        extra = tuple(sorted({int(round(s)) for s in tail} - {0, total_steps}))
        eval_every = max(1, total_steps // config.eval_points)
    return _training.LMTrainConfig(
        corpus=config.corpus, embed_dim=config.embed_dim, hidden_size=config.hidden_size,
        n_layers=config.n_layers, dropout=config.dropout, seed=config.seed, lr=config.lr,
        schedule=config.schedule, final_lr_frac=config.final_lr_frac,
        batch_size=config.batch_size, seq_len=config.seq_len, epochs=config.epochs,
        train_tokens=config.train_tokens, checkpoints=extra,
        log_checkpoints=config.log_checkpoints, eval_every=eval_every, threads=config.threads)


def total_steps(config: Config, *, progress: bool = False) -> int:
    """Training steps ``T`` of ``config``'s run (:func:`cca_lib.training.total_steps`)."""
    return _training.total_steps(lm_config(config), progress=progress)


def train(config: Config, *, progress: bool = True) -> _training.TrainResult:
    """Train (or load from the cache) the LSTM of ``config``, with its checkpoint grid."""
    return _training.train(lm_config(config, total_steps(config, progress=progress)),
                           progress=progress)


def probe_ids(config: Config, *, progress: bool = False):
    """The fixed probe set: int64 ``(probe_seqs, probe_len)`` consecutive windows of the
    validation split, starting at its beginning."""
    corpus = _data.load_text(config.corpus, progress=progress)
    return _data.windows(corpus.valid, config.probe_len, config.probe_seqs)


@dataclass(frozen=True)
class Result:
    """Distances of every layer at every checkpoint to its final representation."""

    config: Config
    #: long format: step, epoch, layer (1-based int), measure, distance
    distances: pd.DataFrame
    #: sorted CCA coefficients: step, layer, index, rho
    spectra: pd.DataFrame
    #: validation perplexity over training: step, epoch, valid_ppl, valid_loss, train_loss
    history: pd.DataFrame
    steps: tuple[int, ...]  #: checkpointed steps (0 .. T)
    steps_per_epoch: float
    metrics: dict  #: the run's final metrics (valid_ppl, unigram_valid_ppl, ...)
    n_samples: int  #: probe positions used as samples
    train_seconds: float  #: training time of the run (of the original run if cached)

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances (one row per step, layer and measure), for seaborn."""
        return self.distances.copy()

    def table(self, measure: str) -> pd.DataFrame:
        """Distances of one measure: rows = steps, columns = layers."""
        sub = self.distances[self.distances["measure"] == measure]
        return sub.pivot(index="step", columns="layer", values="distance")

    def intermediate(self, measure: str) -> pd.DataFrame:
        """:meth:`table` without step 0 and the final step."""
        t = self.table(measure)
        return t.loc[(t.index > 0) & (t.index < t.index.max())]

    def ordered_fraction(self, measure: str) -> float:
        """Fraction of intermediate checkpoints at which distance is non-decreasing with depth
        (layer 1 <= layer 2 <= ... <= layer K)."""
        t = self.intermediate(measure).to_numpy()
        return float(np.mean(np.all(np.diff(t, axis=1) >= 0, axis=1)))

    def area(self, measure: str) -> pd.Series:
        """Per layer: the mean distance over intermediate checkpoints, taken as the area under
        the curve against log(step), divided by the log-step range (a time-average on the
        paper's log axis; :func:`cca_lib.analysis.log_step_area`)."""
        t = self.intermediate(measure)
        area = _analysis.log_step_area(t.index.to_numpy(), t.to_numpy(), mean=True)
        return pd.Series(area, index=t.columns, name=measure)

    def separation(self, measure: str) -> float:
        """Separation index: (area of the top layer - area of the bottom layer) / mean area.

        Scale-free, so PWCCA and mean CCA (which live on different scales) can be compared:
        0 means the layers' curves coincide on average, larger means the layers are further
        apart relative to the distances themselves. Negative when the order is reversed."""
        a = self.area(measure)
        return float((a.iloc[-1] - a.iloc[0]) / a.mean())

    def first_below(self, measure: str, threshold: float | None = None) -> pd.Series:
        """Per layer: the first checkpoint from which the distance stays below ``threshold``
        (default ``config.threshold``) until the end."""
        threshold = self.config.threshold if threshold is None else threshold
        t = self.table(measure)
        out = {}
        for layer in t.columns:
            above = t.index[t[layer].to_numpy() >= threshold]
            later = t.index[t.index > above.max()] if len(above) else t.index
            out[layer] = int(later.min())
        return pd.Series(out, name=measure)


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train (cached), capture every checkpoint on the probe set (cached), compare each layer
    with its final representation."""
    from cca_lib._progress import bar as tqdm_bar
    from cca_lib.similarity import cca

    res = train(config, progress=progress)
    probe = probe_ids(config)
    n_steps = res.final_step
    per_epoch = (n_steps / res.config.epochs) if res.config.steps is None else float(n_steps)
    final = _capture.flatten_timesteps(_capture.capture_run(res, n_steps, probe))
    names = list(final)
    rows, spectra = [], []
    for step in tqdm_bar(res.steps, desc="checkpoints", progress=progress):
        acts = final if step == n_steps else _capture.flatten_timesteps(
            _capture.capture_run(res, step, probe))
        for li, name in enumerate(names, start=1):
            for measure, value in _analysis.reference_distances(final[name],
                                                                acts[name]).items():
                rows.append({"step": step, "epoch": step / per_epoch, "layer": li,
                             "measure": measure, "distance": value})
            rho = np.sort(cca(acts[name].astype(np.float64), final[name].astype(np.float64),
                              variates=False).rho)[::-1]
            spectra.extend({"step": step, "layer": li, "index": i, "rho": float(r)}
                           for i, r in enumerate(rho))
    hist = res.history[["step", "epoch", "valid_ppl", "valid_loss", "train_loss"]].copy()
    return Result(config=config, distances=pd.DataFrame(rows), spectra=pd.DataFrame(spectra),
                  history=hist.reset_index(drop=True), steps=tuple(res.steps),
                  steps_per_epoch=per_epoch, metrics=dict(res.metrics),
                  n_samples=int(probe.numel()), train_seconds=float(res.seconds))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def plot_distances(result: Result):
    """The paper's Fig. 6 and A8: distance to the final representation vs training step, one
    line per layer, one panel per measure (log step axis; step 0 left out)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = result.to_frame()
    frame = frame[frame["step"] > 0]
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(14, 3.6), constrained_layout=True)
    palette = sns.color_palette("viridis_r", frame["layer"].nunique())
    for ax, measure in zip(axes, MEASURES, strict=True):
        sub = frame[frame["measure"] == measure]
        sns.lineplot(data=sub, x="step", y="distance", hue="layer", palette=palette,
                     marker="o", markersize=4, ax=ax, legend=ax is axes[0])
        ax.set_xscale("log")
        ax.set(title=measure, xlabel="training step (log)",
               ylabel="distance to final step" if ax is axes[0] else "")
    axes[0].legend(title="layer", fontsize="small")
    return fig


def plot_spectra(result: Result, steps: tuple[int, ...] | None = None):
    """The paper's Fig. 1b/c: sorted CCA coefficients between each layer at step t and at the
    final step, one panel per layer, one line per checkpoint."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    spec = result.spectra
    all_steps = sorted(set(spec["step"]) - {0})
    if steps is None:
        idx = np.unique(np.linspace(0, len(all_steps) - 1, 6).round().astype(int))
        steps = tuple(all_steps[i] for i in idx)
    spec = spec[spec["step"].isin(steps)]
    layers = sorted(spec["layer"].unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6),
                             constrained_layout=True, sharey=True)
    for ax, layer in zip(np.atleast_1d(axes), layers, strict=True):
        sub = spec[spec["layer"] == layer]
        sns.lineplot(data=sub, x="index", y="rho", hue="step", palette="magma_r",
                     hue_norm=matplotlib_lognorm(min(steps), max(steps)), ax=ax,
                     legend=layer == layers[-1])
        ax.set(title=f"layer {layer}", xlabel="CCA direction (sorted)",
               ylabel=r"$\rho_i$ with the final step", ylim=(0, 1.02))
    np.atleast_1d(axes)[-1].legend(title="step", fontsize="small", loc="center left",
                                   bbox_to_anchor=(1.02, 0.5))
    return fig


def matplotlib_lognorm(lo: float, hi: float):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=max(lo, 1), vmax=max(hi, 2))


def plot_perplexity(result: Result):
    """Validation perplexity over training (log step axis)."""
    import matplotlib.pyplot as plt

    h = result.history[result.history["step"] > 0]
    fig, ax = plt.subplots(figsize=(5.5, 3.4), constrained_layout=True)
    ax.plot(h["step"], h["valid_ppl"], marker="o", ms=4, color="black", label="validation")
    ax.axhline(result.metrics.get("unigram_valid_ppl", np.nan), ls=":", color="grey",
               label="unigram model")
    ax.set(xscale="log", xlabel="training step (log)", ylabel="perplexity",
           title="Validation perplexity")
    ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claims C8 and C2)
# ---------------------------------------------------------------------------------------------

#: C8 holds only if the layers are ordered bottom-up at at least this share of the intermediate
#: checkpoints (besides on average); the average order alone is "partly".
ORDERED_FRACTION_MIN = 0.8
#: C2: validation perplexity has converged once it is within this factor of the final one.
PPL_CONVERGED_RATIO = 1.05
#: C2: a CCA coefficient with the final step below this counts as unconverged.
RHO_LEVEL = 0.9
#: C2 holds if some layer has at least this share of unconverged coefficients then.
C2_SHARE_BELOW = 0.25


def _slashed(values) -> str:
    return "/".join(f"{v:.3f}" for v in values)


def _increasing(values: pd.Series) -> bool:
    return bool(np.all(np.diff(values.to_numpy()) > 0))


def check(result: Result) -> list[Claim]:
    """Claims C8 and C2, on the intermediate checkpoints (step 0 and ``T`` excluded).

    C8: the time-averaged PWCCA distance to the final step (:meth:`Result.area`) increases with
    depth; the layers are ordered at ``ORDERED_FRACTION_MIN`` of the checkpoints; and PWCCA's
    separation index exceeds mean CCA's. Holds if all three pass, partly if the average order
    does. Mean CCA's order, the threshold crossings and the cosine and Euclidean controls are
    reported, not judged.

    C2: at the first checkpoint whose validation perplexity is within ``PPL_CONVERGED_RATIO``
    of the final one, the share of coefficients below ``RHO_LEVEL`` per layer. Holds if some
    layer has at least ``C2_SHARE_BELOW``; there is no "partly"."""
    cfg = result.config
    area = {m: result.area(m) for m in MEASURES}
    ordered = {m: _increasing(area[m]) for m in MEASURES}
    frac = result.ordered_fraction("PWCCA")
    s_pw, s_mean = result.separation("PWCCA"), result.separation("mean CCA")
    crossings = result.first_below("PWCCA")
    c8_rows = (
        Criterion("time-averaged PWCCA distance to the final step, layers 1 to K",
                  "increasing with depth", _slashed(area["PWCCA"]), ordered["PWCCA"]),
        Criterion("share of intermediate checkpoints with PWCCA distance ordered by depth",
                  f"at least {ORDERED_FRACTION_MIN:g}", frac, bool(frac >= ORDERED_FRACTION_MIN)),
        Criterion("separation index of PWCCA", f"above mean CCA's ({s_mean:.3f})", s_pw,
                  bool(s_pw > s_mean)),
        Criterion("time-averaged mean CCA distance, layers 1 to K", "increasing with depth",
                  _slashed(area["mean CCA"]), None),
        Criterion(f"first checkpoint from which PWCCA distance stays below {cfg.threshold:g}, "
                  "layers 1 to K", "not decreasing with depth",
                  "/".join(str(v) for v in crossings),
                  None),
        *(Criterion(f"time-averaged {m} distance, layers 1 to K", "increasing with depth",
                    _slashed(area[m]), None) for m in ("cosine", "Euclidean")),
    )
    c8_status = status(all(c.passed for c in c8_rows[:3]), ordered["PWCCA"])
    final_ppl = result.metrics["valid_ppl"]
    c8_evidence = (
        f"{cfg.corpus} LSTM {cfg.n_layers}x{cfg.hidden_size}, {result.steps[-1]} steps, "
        f"validation perplexity {final_ppl:.2f}: time-averaged distance to the final step, "
        f"layers 1 to K, PWCCA {_slashed(area['PWCCA'])}, mean CCA {_slashed(area['mean CCA'])}; "
        f"PWCCA ordered at {frac:.0%} of intermediate checkpoints; separation index PWCCA "
        f"{s_pw:.2f} against mean CCA {s_mean:.2f}; ordered bottom-up by cosine distance: "
        f"{yes_no(ordered['cosine'])}, by Euclidean distance: {yes_no(ordered['Euclidean'])}")

    h = result.history
    t_conv = int(h.loc[h["valid_ppl"] <= PPL_CONVERGED_RATIO * final_ppl, "step"].min())
    t_spec = min(s for s in result.steps if s >= t_conv)
    spec = result.spectra[result.spectra["step"] == t_spec]
    unconverged = spec.groupby("layer")["rho"].apply(lambda r: float(np.mean(r < RHO_LEVEL)))
    c2_rows = tuple(
        Criterion(f"share of coefficients below {RHO_LEVEL:g} at step {t_spec} (layer {layer})",
                  f"at least {C2_SHARE_BELOW:g} in some layer", share,
                  bool(share >= C2_SHARE_BELOW)) for layer, share in unconverged.items())
    c2_evidence = (f"at step {t_spec} (validation perplexity within "
                   f"{PPL_CONVERGED_RATIO - 1:.0%} of the final one from step {t_conv}) share "
                   f"of CCA coefficients below {RHO_LEVEL:g} with the final step, per layer: "
                   f"{_slashed(unconverged)}")
    return [
        Claim(id="C8", figure="Figure 2", status=c8_status, evidence=c8_evidence,
              criteria=c8_rows),
        Claim(id="C2", figure="Figure 3", status=status(bool(unconverged.max() >= C2_SHARE_BELOW)),
              evidence=c2_evidence, criteria=c2_rows),
    ]


__all__ = ["MEASURES", "Config", "Result", "check", "lm_config", "plot_distances",
           "plot_perplexity", "plot_spectra", "probe_ids", "run", "total_steps", "train"]
