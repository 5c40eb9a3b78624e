"""Chapter: RNN training dynamics, do LSTM layers converge bottom-up? (paper Fig. 6, A8;
claims C8, C2).

``n_seeds`` multi-layer LSTM language models (seeds ``seed, seed + 1, ...``, otherwise the same
run) are trained with checkpoints (log-spaced, plus a finer grid over the last part of training,
plus the final step ``T``). Every checkpoint is run on the same fixed probe set (``probe_seqs``
validation sequences of ``probe_len`` tokens, each from a zero state); every (sequence,
timestep) position is one sample, so a layer gives an ``(probe_seqs * probe_len, hidden)``
matrix, analysed in float64. For every seed, layer and checkpoint ``t`` we compare the layer at
``t`` with the same layer at ``T``:

* PWCCA distance, weights from the final representation (``1 - compare(L(T), L(t))["PWCCA"]``);
* mean CCA distance ``1 - mean(rho)`` and linear CKA distance ``1 - CKA`` (same single pass);
* cosine and Euclidean distance of the same neurons (controls, paper Fig. A8);
* the sorted CCA coefficients ``rho`` themselves (paper Fig. 1b/c).

The sampling floor of each measure is the distance between ``L(T)`` and itself with whole
probe sequences shuffled (:func:`cca_lib.stats.permutation_null`): what unrelated inputs give
at the same ``n`` and ``d``.

:func:`lm_config` builds the engine's :class:`~cca_lib.training.LMTrainConfig` of one seed; the
timesteps chapter (:mod:`cca_lib.experiments.rnn_timesteps`) calls it with the same values, so
it reuses the cached runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cca_lib import _checks
from cca_lib import analysis as _analysis
from cca_lib import capture as _capture
from cca_lib import data as _data
from cca_lib import stats as _stats
from cca_lib import training as _training
from cca_lib.claims import NOT_TESTABLE, Claim, Criterion, majority, status
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

#: The measures, in plotting order: the CCA family and linear CKA, then the neuron-wise controls.
MEASURES = ("PWCCA", "mean CCA", "linear CKA", "cosine", "Euclidean")
#: Measures whose distance is ``1 - similarity`` of a :func:`cca_lib.compare` measure.
_SIMILARITIES = ("PWCCA", "mean CCA", "linear CKA")


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Training and analysis parameters. Defaults are the quick profile.

    The fields in :data:`RUN_FIELDS` define the trained LSTMs (their cached runs); the timesteps
    chapter uses the same runs."""

    corpus: str = param("tinyshakespeare", 'training text: "tinyshakespeare" (characters), '
                        '"ptb" or "wikitext-2" (words)', "PTB and WikiText-2, word level",
                        check=TEXT)
    n_layers: int = param(3, "LSTM layers (at least 2 to compare layers)",
                          "3; also a 5-layer model",
                          check=rule(_checks.integer, ge=2, le=64))
    hidden_size: int = param(64, "units per layer", "1150, awd-lstm-lm", check=UNITS)
    embed_dim: int = param(32, "token embedding size", "not stated", check=UNITS)
    dropout: float = param(0.0, "dropout between layers", check=rule(_checks.real, ge=0, lt=1))
    lr: float = param(6e-3, "Adam learning rate", "not stated", check=POSITIVE)
    schedule: str = param("step_half", '"step_half" (cosine decay to lr * final_lr_frac over '
                          'the first half, then constant), "cosine" (over all of training) or '
                          '"constant"', "not stated",
                          check=rule(_checks.text, choices=("step_half", "cosine", "constant")))
    final_lr_frac: float = param(0.1, "learning rate at the end of the decay, as a fraction of "
                                 "lr (0: decays to zero)", check=LR_FRAC)
    batch_size: int = param(32, "windows per step", check=BATCH)
    seq_len: int = param(32, "tokens per window (BPTT length)", check=SAMPLES)
    epochs: float = param(1.5, "passes over the training text", "500 on PTB", check=EPOCHS)
    train_tokens: int | None = param(None, "train on the first train_tokens tokens (None: all)",
                                     check=rule(_checks.integer, ge=2, le=10**10, none=True))
    log_checkpoints: int = param(12, "log-spaced checkpoints, plus T/2 and the final step T",
                                 check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    tail_checkpoints: int = param(6, "extra checkpoints evenly spread over the last tail_frac "
                                  "of training", check=COUNT)
    tail_frac: float = param(0.6, "part of training covered by the fine grid near the end",
                             check=FRACTION)
    eval_points: int = param(20, "validation evaluations over training (perplexity curve)",
                             check=POSITIVE_COUNT)
    n_seeds: int = param(3, "networks, seeds seed, seed + 1, ... (the chapter's verdict is the "
                         "majority of theirs)", "one network per model",
                         check=rule(_checks.integer, ge=1, le=100))
    probe_seqs: int = param(200, "probe sequences from the validation text (samples: all "
                            "positions)", check=SAMPLES)
    probe_len: int = param(50, "tokens per probe sequence", check=SAMPLES)
    threshold: float = param(0.1, '"converged": distance to the final step below this',
                             check=FRACTION)
    seed: int = param(0, "initial weights and minibatch order of the first network",
                      check=SEED)
    threads: int | None = param(None, "torch threads for training (speed only; None: torch's "
                                "default)", check=rule(_checks.integer, ge=1, le=4096,
                                                        none=True))

    def _validate(self) -> None:
        n = self.probe_seqs * self.probe_len
        if n < 10 * self.hidden_size:
            raise ValueError(
                f"probe_seqs * probe_len = {n} samples is fewer than 10 x hidden_size = "
                f"{10 * self.hidden_size}: CCA distances would sit on the sampling floor")
        if self.seed + self.n_seeds - 1 > _checks.MAX_SEED:
            raise ValueError(f"seed={self.seed} + n_seeds={self.n_seeds} - 1 exceeds the "
                             f"largest seed {_checks.MAX_SEED}")
        _checks.allocation("probe_seqs x probe_len x hidden_size", n * self.hidden_size)
        lm_config(self)  # the engine's own checks of the run


#: The fields of :class:`Config` that define the trained LSTM runs (:func:`lm_configs`); the
#: timesteps chapter takes exactly these from its parameters, so both chapters share the runs.
RUN_FIELDS = ("corpus", "n_layers", "hidden_size", "embed_dim", "dropout", "lr", "schedule",
              "final_lr_frac", "batch_size", "seq_len", "epochs", "train_tokens",
              "log_checkpoints", "tail_checkpoints", "tail_frac", "eval_points", "n_seeds",
              "seed", "threads")


def seeds(config: Config) -> tuple[int, ...]:
    """The training seeds of ``config``'s networks: ``seed, seed + 1, ...`` (``n_seeds``)."""
    return tuple(config.seed + i for i in range(config.n_seeds))


def lm_config(config: Config, total_steps: int | None = None, *, seed: int | None = None
              ) -> _training.LMTrainConfig:
    """The engine config of one of ``config``'s runs (``seed``; default ``config.seed``).
    ``total_steps`` (the run's ``T``) adds the evaluation grid and the fine checkpoint grid over
    the tail; without it, a config with neither (used only to validate and to count steps)."""
    seed = config.seed if seed is None else seed
    if seed not in seeds(config):
        raise ValueError(f"seed={seed!r} is not one of the chapter's seeds {seeds(config)}")
    extra: tuple[int, ...] = ()
    eval_every = None
    if total_steps is not None:
        start = int(round((1 - config.tail_frac) * total_steps))
        tail = np.linspace(start, total_steps, config.tail_checkpoints + 2)[1:-1]
        extra = tuple(sorted({int(round(s)) for s in tail} - {0, total_steps}))
        eval_every = max(1, total_steps // config.eval_points)
    return _training.LMTrainConfig(
        corpus=config.corpus, embed_dim=config.embed_dim, hidden_size=config.hidden_size,
        n_layers=config.n_layers, dropout=config.dropout, seed=seed, lr=config.lr,
        schedule=config.schedule, final_lr_frac=config.final_lr_frac,
        batch_size=config.batch_size, seq_len=config.seq_len, epochs=config.epochs,
        train_tokens=config.train_tokens, checkpoints=extra,
        log_checkpoints=config.log_checkpoints, eval_every=eval_every, threads=config.threads)


def lm_configs(config: Config, total_steps: int | None = None
               ) -> tuple[_training.LMTrainConfig, ...]:
    """:func:`lm_config` of every seed, in the order of :func:`seeds`."""
    return tuple(lm_config(config, total_steps, seed=s) for s in seeds(config))


def total_steps(config: Config, *, progress: bool = False) -> int:
    """Training steps ``T`` of ``config``'s runs (:func:`cca_lib.training.total_steps`; the
    same for every seed)."""
    return _training.total_steps(lm_config(config), progress=progress)


def train(config: Config, *, seed: int | None = None, progress: bool = True
          ) -> _training.TrainResult:
    """Train (or load from the cache) one LSTM of ``config`` (``seed``; default
    ``config.seed``), with its checkpoint grid."""
    return _training.train(lm_config(config, total_steps(config, progress=progress), seed=seed),
                           progress=progress)


def train_all(config: Config, *, progress: bool = True) -> list[_training.TrainResult]:
    """Train (or load) every seed's LSTM, in the order of :func:`seeds`."""
    return [train(config, seed=s, progress=progress) for s in seeds(config)]


def probe_ids(config: Config, *, progress: bool = False):
    """The fixed probe set: int64 ``(probe_seqs, probe_len)`` consecutive windows of the
    validation split, starting at its beginning."""
    corpus = _data.load_text(config.corpus, progress=progress)
    return _data.windows(corpus.valid, config.probe_len, config.probe_seqs)


def nets_table(runs) -> pd.DataFrame:
    """One row per run: seed, final validation perplexity, the unigram model's, whether it
    counts as trained (:func:`cca_lib.analysis.trained`: validation loss fell by less than 1%
    over the last 20% of training) and why, and its training time."""
    rows = []
    for r in runs:
        ok, why = _analysis.trained(r)
        rows.append({"seed": r.config.seed, "valid_ppl": r.metrics.get("valid_ppl", np.nan),
                     "unigram_valid_ppl": r.metrics.get("unigram_valid_ppl", np.nan),
                     "trained": ok, "why": why, "train_seconds": float(r.seconds)})
    return pd.DataFrame(rows, columns=["seed", "valid_ppl", "unigram_valid_ppl", "trained",
                                       "why", "train_seconds"])


#: Column headings of :func:`nets_table` in words (:func:`nets_view`).
NETS_HEADINGS = {"valid_ppl": "validation perplexity", "unigram_valid_ppl": "unigram perplexity",
                 "trained": "trained", "why": "why", "train_seconds": "training seconds"}


def nets_view(nets: pd.DataFrame) -> pd.DataFrame:
    """:func:`nets_table` for the reader: indexed by seed, headings in words
    (:data:`NETS_HEADINGS`), numbers rounded to two decimals."""
    missing = sorted((set(NETS_HEADINGS) | {"seed"}) - set(nets.columns))
    if missing:
        raise ValueError(f"nets lacks the columns {missing} of nets_table")
    return nets.set_index("seed").rename(columns=NETS_HEADINGS).round(2)


def _distances(ref: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Every measure's distance of ``x`` to ``ref`` (float64, same neurons and inputs)."""
    from cca_lib.similarity import compare

    sims = compare(ref, x)
    out = {m: 1.0 - float(sims[m]) for m in _SIMILARITIES}
    out["cosine"] = _analysis.cosine_distance(x, ref)
    out["Euclidean"] = _analysis.euclidean_distance(x, ref)
    return out


#: Permutations per sampling floor (whole probe sequences shuffled).
FLOOR_PERMUTATIONS = 20


def floor_distances(ref: np.ndarray, groups: np.ndarray, seed: int) -> dict[str, float]:
    """The sampling floor of every measure: the mean distance of ``ref`` to itself with whole
    probe sequences shuffled (``groups``: the sequence of each row), at the same ``n`` and
    ``d`` (:func:`cca_lib.stats.permutation_null`, :data:`FLOOR_PERMUTATIONS` permutations).

    :class:`cca_lib.FewSamplesWarning` (fewer than 5 groups per unit) is not raised here: the
    floor is the measurement of that bias that the warning recommends."""
    import warnings

    from cca_lib import FewSamplesWarning

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        for m in _SIMILARITIES:
            null = _stats.permutation_null(ref, ref, m, n_perm=FLOOR_PERMUTATIONS, seed=seed,
                                           groups=groups)
            out[m] = 1.0 - null.floor
        for m, f in (("cosine", _analysis.cosine_distance),
                     ("Euclidean", _analysis.euclidean_distance)):
            null = _stats.permutation_null(ref, ref, f, n_perm=FLOOR_PERMUTATIONS, seed=seed,
                                           groups=groups, alternative="less")
            out[m] = null.floor
    return out


@dataclass(frozen=True)
class Result:
    """Distances of every layer at every checkpoint to its final representation, per seed."""

    config: Config
    #: long format: seed, step, epoch, layer (1-based int), measure, distance
    distances: pd.DataFrame
    #: sorted CCA coefficients with the final step: seed, step, layer, index, rho
    spectra: pd.DataFrame
    #: validation loss over training: seed, step, epoch, lr, valid_ppl, valid_loss, train_loss
    history: pd.DataFrame
    #: sampling floor of each distance: seed, layer, measure, distance
    floors: pd.DataFrame
    #: one row per network (:func:`nets_table`)
    nets: pd.DataFrame
    steps: tuple[int, ...]  #: checkpointed steps (0 .. T), the same for every seed
    steps_per_epoch: float
    #: seed -> the run's final metrics (valid_ppl, valid_loss, unigram_valid_loss, ...)
    metrics: dict
    n_samples: int  #: probe positions used as samples

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.distances["seed"].unique()))

    def to_frame(self) -> pd.DataFrame:
        """Long-format distances (one row per seed, step, layer and measure), for seaborn."""
        return self.distances.copy()

    def table(self, measure: str, seed: int) -> pd.DataFrame:
        """Distances of one measure and seed: rows = steps, columns = layers."""
        d = self.distances
        sub = d[(d["measure"] == measure) & (d["seed"] == seed)]
        if sub.empty:
            raise ValueError(f"no distances for measure={measure!r}, seed={seed!r}")
        return sub.pivot(index="step", columns="layer", values="distance")

    def _history(self, seed: int) -> pd.DataFrame:
        h = self.history[self.history["seed"] == seed].sort_values("step")
        if h.empty:
            raise ValueError(f"no history for seed={seed!r}")
        return h

    def learning_start(self, seed: int) -> int | None:
        """The first evaluated step at which the validation loss has fallen below the unigram
        model's by :data:`LEARNING_DROP` of the way from there to the final loss (the model
        uses context from there on); None if it never does."""
        h = self._history(seed)
        unigram = float(self.metrics[seed]["unigram_valid_loss"])
        final = float(h["valid_loss"].iloc[-1])
        if not final < unigram:
            return None
        level = unigram - LEARNING_DROP * (unigram - final)
        below = h.loc[h["valid_loss"] <= level, "step"]
        return int(below.min()) if len(below) else None

    def learning_steps(self, seed: int) -> tuple[int, ...]:
        """The checkpoints where the model is learning: from :meth:`learning_start` on,
        the final step ``T`` excluded."""
        start = self.learning_start(seed)
        if start is None:
            return ()
        return tuple(s for s in self.steps if start <= s < self.steps[-1])

    def learning(self, measure: str, seed: int) -> pd.DataFrame:
        """:meth:`table` at the :meth:`learning_steps`."""
        return self.table(measure, seed).loc[list(self.learning_steps(seed))]

    def ordered_fraction(self, measure: str, seed: int) -> float:
        """Share of the learning checkpoints at which the distance strictly increases with
        depth (layer 1 < layer 2 < ... < layer K; a tie does not count as ordered); NaN if there
        are none."""
        t = self.learning(measure, seed).to_numpy()
        if not len(t):
            return float("nan")
        return float(np.mean(np.all(np.diff(t, axis=1) > 0, axis=1)))

    def area(self, measure: str, seed: int) -> pd.Series:
        """Per layer: the mean distance over the learning checkpoints, on the paper's log step
        axis (:func:`cca_lib.analysis.log_step_area` divided by the log-step range; the plain
        mean if there is one checkpoint, NaN if none)."""
        t = self.learning(measure, seed)
        if len(t) >= 2:
            values = _analysis.log_step_area(t.index.to_numpy(), t.to_numpy(), mean=True)
        elif len(t) == 1:
            values = t.to_numpy()[0]
        else:
            values = np.full(self.config.n_layers, np.nan)
        return pd.Series(values, index=t.columns if len(t) else
                         range(1, self.config.n_layers + 1), name=measure)

    def separation(self, measure: str, seed: int) -> float:
        """Separation index: (area of the top layer - area of the bottom layer) / mean area.

        Scale-free, so PWCCA and mean CCA (which live on different scales) can be compared:
        0 means the layers' curves coincide on average, larger means the layers are further
        apart relative to the distances themselves. Negative when the order is reversed."""
        a = self.area(measure, seed)
        return float((a.iloc[-1] - a.iloc[0]) / a.mean())

    def first_below(self, measure: str, seed: int, threshold: float | None = None
                    ) -> pd.Series:
        """Per layer: the first checkpoint from which the distance stays below ``threshold``
        (default ``config.threshold``) until the end."""
        threshold = self.config.threshold if threshold is None else threshold
        t = self.table(measure, seed)
        out = {}
        for layer in t.columns:
            above = t.index[t[layer].to_numpy() >= threshold]
            later = t.index[t.index > above.max()] if len(above) else t.index
            out[layer] = int(later.min())
        return pd.Series(out, name=measure)

    def floor(self, measure: str, seed: int) -> pd.Series:
        """Per layer: the sampling floor of ``measure``'s distance."""
        f = self.floors[(self.floors["measure"] == measure) & (self.floors["seed"] == seed)]
        return f.set_index("layer")["distance"]

    def converged_step(self, seed: int) -> int:
        """The first evaluated step from which the validation loss stays within
        :data:`C2_LOSS_TOL` (relative) of its final value."""
        h = self._history(seed)
        loss = h["valid_loss"].to_numpy()
        final = loss[-1]
        ok = np.abs(loss - final) <= C2_LOSS_TOL * abs(final)
        i = len(ok) - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        return int(h["step"].iloc[i])

    def after_converged_fraction(self, seed: int) -> float:
        """The share of training that comes after :meth:`converged_step`."""
        return 1.0 - self.converged_step(seed) / self.steps[-1]

    def unconverged(self, seed: int, step: int) -> pd.Series:
        """Per layer: the share of CCA coefficients with the final step below
        :data:`RHO_LEVEL` at checkpoint ``step``."""
        sp = self.spectra[(self.spectra["seed"] == seed) & (self.spectra["step"] == step)]
        if sp.empty:
            raise ValueError(f"no spectrum at seed={seed!r}, step={step!r}")
        return sp.groupby("layer")["rho"].apply(lambda r: float(np.mean(r < RHO_LEVEL)))


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train (cached) every seed's LSTM, capture every checkpoint on the probe set (cached),
    compare each layer with its final representation, and compute the sampling floors."""
    from cca_lib._progress import bar as tqdm_bar
    from cca_lib.similarity import cca

    runs = train_all(config, progress=progress)
    probe = probe_ids(config)
    groups = np.repeat(np.arange(probe.shape[0]), probe.shape[1])
    rows, spectra, hist, floors = [], [], [], []
    metrics = {}
    steps = tuple(runs[0].steps)
    for res in runs:
        seed = res.config.seed
        if tuple(res.steps) != steps:
            raise ValueError(f"seed {seed} has checkpoints {res.steps}, seed "
                             f"{runs[0].config.seed} {steps}: the runs must share one grid")
        n_steps = res.final_step
        per_epoch = (n_steps / res.config.epochs) if res.config.steps is None else float(n_steps)

        def acts_at(step: int, res=res) -> dict[str, np.ndarray]:
            acts = _capture.flatten_timesteps(_capture.capture_run(res, step, probe))
            return {k: v.astype(np.float64) for k, v in acts.items()}

        final = acts_at(n_steps)
        names = list(final)
        for li, name in enumerate(names, start=1):
            for measure, value in floor_distances(final[name], groups, seed).items():
                floors.append({"seed": seed, "layer": li, "measure": measure,
                               "distance": value})
        for step in tqdm_bar(res.steps, desc=f"checkpoints (seed {seed})", progress=progress):
            acts = final if step == n_steps else acts_at(step)
            for li, name in enumerate(names, start=1):
                for measure, value in _distances(final[name], acts[name]).items():
                    rows.append({"seed": seed, "step": step, "epoch": step / per_epoch,
                                 "layer": li, "measure": measure, "distance": value})
                rho = np.sort(cca(acts[name], final[name], variates=False).rho)[::-1]
                spectra.extend({"seed": seed, "step": step, "layer": li, "index": i,
                                "rho": float(r)} for i, r in enumerate(rho))
        h = res.history[["step", "epoch", "lr", "valid_ppl", "valid_loss", "train_loss"]].copy()
        h.insert(0, "seed", seed)
        hist.append(h)
        metrics[seed] = dict(res.metrics)
    return Result(config=config, distances=pd.DataFrame(rows), spectra=pd.DataFrame(spectra),
                  history=pd.concat(hist, ignore_index=True), floors=pd.DataFrame(floors),
                  nets=nets_table(runs), steps=steps, steps_per_epoch=per_epoch,
                  metrics=metrics, n_samples=int(probe.numel()))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def distance_table(result: Result, measures: tuple[str, ...] = ("PWCCA", "linear CKA")
                   ) -> pd.DataFrame:
    """The distances to the final step of ``measures``, mean over seeds: one row per checkpoint
    after step 0, one column per measure and layer (narrow enough for the book's column)."""
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise ValueError(f"measures must be among {MEASURES}, got {unknown}")
    frame = result.to_frame()
    frame = frame[(frame["step"] > 0) & frame["measure"].isin(measures)]
    table = frame.pivot_table(index="step", columns=["measure", "layer"], values="distance")
    return table[list(measures)]


def summary_table(result: Result) -> pd.DataFrame:
    """The numbers behind the C8 check, one row per seed and measure: the time-averaged
    distance of each layer over the learning checkpoints (:meth:`Result.area`), the share of
    them at which the layers are strictly ordered (:meth:`Result.ordered_fraction`) and the
    separation index (:meth:`Result.separation`)."""
    rows = {}
    for seed in result.seeds:
        for m in MEASURES:
            row = {("time-averaged distance", f"layer {k}"): v
                   for k, v in result.area(m, seed).items()}
            row[("ordered share", "")] = result.ordered_fraction(m, seed)
            row[("separation S", "")] = result.separation(m, seed)
            rows[(seed, m)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["seed", "measure"]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def _range(values):
    return float(np.min(values)), float(np.max(values))


#: The part of viridis the layer colours are taken from (dark blue for layer 1 to green for the
#: top layer): its last, yellow shades are left out, as they are hard to see on white.
LAYER_CMAP_SPAN = (0.0, 0.8)
#: The part of magma the checkpoint colours of the spectra are taken from (light red for the
#: earliest shown step to near-black for the last); its near-white end is left out.
STEP_CMAP_SPAN = (0.75, 0.05)
#: Panel size (inches) of the chapter's multi-panel figures, two panels to a row: two of them
#: fill the book's text column (:data:`cca_lib.plotting.COLUMN_WIDTH_IN`).
PANEL = (3.45, 2.7)


def layer_palette(layers) -> dict:
    """One colour per layer, from a truncated viridis (:data:`LAYER_CMAP_SPAN`): no shade of it
    is near white."""
    import matplotlib.pyplot as plt

    layers = list(layers)
    colors = plt.get_cmap("viridis")(np.linspace(*LAYER_CMAP_SPAN, len(layers)))
    return {layer: tuple(c) for layer, c in zip(layers, colors, strict=True)}


def step_palette(steps) -> dict:
    """One colour per checkpoint, light red (early) to near black (late), evenly spaced in the
    order of the steps, from a truncated magma (:data:`STEP_CMAP_SPAN`)."""
    import matplotlib.pyplot as plt

    steps = sorted(steps)
    colors = plt.get_cmap("magma")(np.linspace(*STEP_CMAP_SPAN, len(steps)))
    return {step: tuple(c) for step, c in zip(steps, colors, strict=True)}


def panel_legend(fig, handles, labels, title: str) -> None:
    """The figure's one legend: in the grid's spare panel if it has one (a
    :func:`cca_lib.plotting.grid` with fewer panels than places), otherwise below the panels."""
    spare = [ax for ax in fig.axes if not ax.get_visible()]
    if spare:
        ax = spare[0]
        ax.set_visible(True)
        ax.set_axis_off()
        ax.xaxis.set_visible(False)
        ax.yaxis.set_visible(False)
        ax.legend(handles, labels, title=title, loc="center", frameon=False)
    else:
        fig.legend(handles, labels, title=title, loc="outside lower center",
                   ncols=min(len(labels), 4))


def _first_legend(axes):
    """Handles and labels of the first panel's legend, which is then removed."""
    legend = axes[0].get_legend()
    handles, labels = axes[0].get_legend_handles_labels()
    if legend is not None:
        legend.remove()
    return handles, labels


def floor_handle():
    """A legend entry for the dashed sampling-floor lines."""
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="--", lw=1, color="0.35")


def plot_distances(result: Result):
    """The paper's Fig. 6 and A8: distance to the final representation vs training step, one
    line per layer (mean over seeds, band: across-seed range), one panel per measure (log step
    axis; step 0 left out), two panels to a row. Dashed: each layer's sampling floor (mean over
    seeds); grey: the checkpoints before the model learns (before the earliest
    :meth:`Result.learning_start`)."""
    import seaborn as sns
    from matplotlib.patches import Patch

    from cca_lib import plotting

    frame = result.to_frame()
    frame = frame[frame["step"] > 0]
    fig, axes = plotting.grid(len(MEASURES), ncols=2, panel=PANEL)
    layers = sorted(frame["layer"].unique())
    palette = layer_palette(layers)
    starts = [s for s in (result.learning_start(seed) for seed in result.seeds) if s]
    for i, (ax, measure) in enumerate(zip(axes, MEASURES, strict=True)):
        sub = frame[frame["measure"] == measure]
        sns.lineplot(data=sub, x="step", y="distance", hue="layer", palette=palette,
                     marker="o", markersize=4, errorbar=_range, ax=ax, legend=i == 0)
        fl = result.floors[result.floors["measure"] == measure].groupby("layer")["distance"]
        for layer, val in fl.mean().items():
            ax.axhline(val, ls="--", lw=1, color=palette[layer])
        if starts:
            ax.axvspan(max(1, sub["step"].min()), min(starts), color="0.85", zorder=0)
        ax.set_xscale("log")
        ax.set(title=measure, xlabel="training step (log)",
               ylabel="distance to final step" if i % 2 == 0 else "")
    handles, labels = _first_legend(axes)
    handles, labels = handles + [floor_handle()], labels + ["sampling floor"]
    if starts:
        handles.append(Patch(color="0.85"))
        labels.append("before learning")
    panel_legend(fig, handles, labels, "layer")
    return fig


def plot_spectra(result: Result, steps: tuple[int, ...] | None = None,
                 seed: int | None = None):
    """The paper's Fig. 1b/c: sorted CCA coefficients between each layer at step t and at the
    final step, one panel per layer (two to a row), one line per checkpoint (one seed, default
    the first; colours from :func:`step_palette`, darker = later)."""
    import seaborn as sns

    from cca_lib import plotting

    seed = result.seeds[0] if seed is None else seed
    spec = result.spectra[result.spectra["seed"] == seed]
    all_steps = sorted(set(spec["step"]) - {0})
    if steps is None:
        idx = np.unique(np.linspace(0, len(all_steps) - 1, 6).round().astype(int))
        steps = tuple(all_steps[i] for i in idx)
    spec = spec[spec["step"].isin(steps)]
    layers = sorted(spec["layer"].unique())
    palette = step_palette(steps)
    fig, axes = plotting.grid(len(layers), ncols=2, panel=PANEL, sharey=True)
    for i, (ax, layer) in enumerate(zip(axes, layers, strict=True)):
        sub = spec[spec["layer"] == layer]
        sns.lineplot(data=sub, x="index", y="rho", hue="step", palette=palette, ax=ax,
                     legend=i == 0)
        ax.axhline(RHO_LEVEL, ls=":", color="grey", lw=1)
        ax.set(title=f"layer {layer} (seed {seed})", xlabel="CCA direction (sorted)",
               ylabel=r"$\rho_i$ with the final step" if i % 2 == 0 else "", ylim=(0, 1.02))
    handles, labels = _first_legend(axes)
    panel_legend(fig, handles, labels, "step")
    return fig


def plot_perplexity(result: Result):
    """Validation perplexity over training (log step axis), one line per seed, with the
    unigram model (dashed) and each seed's converged step (:meth:`Result.converged_step`,
    dotted)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), constrained_layout=True)
    for i, seed in enumerate(result.seeds):
        h = result._history(seed)
        h = h[h["step"] > 0]
        line, = ax.plot(h["step"], h["valid_ppl"], marker="o", ms=3, label=f"seed {seed}")
        ax.axvline(result.converged_step(seed), ls=":", color=line.get_color(), lw=1)
        if i == 0:
            ax.axhline(np.exp(result.metrics[seed]["unigram_valid_loss"]), ls="--",
                       color="grey", label="unigram model")
    ax.set(xscale="log", xlabel="training step (log)", ylabel="perplexity",
           title="Validation perplexity")
    ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claims C8 and C2)
# ---------------------------------------------------------------------------------------------

#: C8 is judged where the model learns: from the first evaluation at which the validation loss
#: is below the unigram model's by this share of the way to the final loss (before it, the net
#: predicts token frequencies at best and every layer sits on the untrained plateau).
LEARNING_DROP = 0.1
#: C8 holds only if the layers are strictly ordered bottom-up at at least this share of the
#: learning checkpoints (besides on average); the average order alone is "partly".
ORDERED_FRACTION_MIN = 0.8
#: C2: the validation loss has converged from the first evaluation where it stays within this
#: (relative) of its final value: the trained rule's tolerance (cca_lib.analysis).
C2_LOSS_TOL = _analysis.TRAINED_LOSS_DROP
#: C2 is testable only if at least this share of training comes after convergence (the paper:
#: accuracy converged at 45k of 80k steps, 44% after).
C2_MIN_AFTER = 0.4
#: C2: a CCA coefficient with the final step below this counts as unconverged.
RHO_LEVEL = 0.9
#: C2: a layer keeps an unconverged part if at least this share of its coefficients is below
#: RHO_LEVEL at the first checkpoint after convergence.
C2_SHARE_BELOW = 0.25
#: C2 holds (per network) if at least this share of the layers keeps one (partly: one layer).
C2_LAYER_FRACTION = 0.5
#: A distance at or above this share of its sampling floor counts as "at the floor".
NEAR_FLOOR = 0.9


def _slashed(values) -> str:
    return "/".join(f"{v:.3f}" for v in values)


def _increasing(values: pd.Series) -> bool:
    v = values.to_numpy()
    return bool(np.all(np.isfinite(v)) and np.all(np.diff(v) > 0))


def _order_word(values: pd.Series) -> str:
    v = values.to_numpy()
    if _increasing(values):
        return "bottom-up"
    if np.all(np.isfinite(v)) and np.all(np.diff(v) < 0):
        return "reversed (top-down)"
    return "not ordered"


def _spread(values, fmt: str = "{:.2f}") -> str:
    """Mean with the across-seed range: "0.50 (seeds 0.40 to 0.60)"."""
    v = np.asarray(list(values), dtype=float)
    if len(v) == 1:
        return fmt.format(v[0])
    return (f"{fmt.format(np.mean(v))} (seeds {fmt.format(np.min(v))} to "
            f"{fmt.format(np.max(v))})")


def _c8_seed(result: Result, seed: int, measure: str) -> tuple[str, dict]:
    """One network's C8 verdict with ``measure`` (PWCCA, or linear CKA for the agreement)."""
    area = {m: result.area(m, seed) for m in MEASURES}
    frac = result.ordered_fraction(measure, seed)
    s_main, s_mean = result.separation(measure, seed), result.separation("mean CCA", seed)
    facts = {
        "area": area[measure], "ordered": _increasing(area[measure]), "fraction": frac,
        "often": bool(frac >= ORDERED_FRACTION_MIN), "separation": s_main,
        "separation_mean": s_mean, "clearer": bool(s_main > s_mean),
        "controls": {m: _order_word(area[m]) for m in ("cosine", "Euclidean")},
        "n_learning": len(result.learning_steps(seed)),
    }
    facts["controls_ok"] = all(w == "bottom-up" for w in facts["controls"].values())
    # reported beside the verdict, not deciding it: the other reading of "more clearly"
    # (the ordered share of PWCCA against mean CCA's) and the order before learning
    facts["fraction_mean"] = result.ordered_fraction("mean CCA", seed)
    facts["share_clearer"] = bool(frac > facts["fraction_mean"])
    first = result.table(measure, seed).loc[result.steps[0]]
    facts["first_step"] = int(result.steps[0])
    facts["first"] = first
    facts["first_ordered"] = _increasing(first)
    verdict = status(facts["ordered"] and facts["often"] and facts["clearer"]
                     and facts["controls_ok"], facts["ordered"])
    return verdict, facts


def _seed_list(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def _clearer_text(c8: dict) -> str:
    """C8 evidence: the ordered share of PWCCA against mean CCA per seed, beside the
    separation index that decides "more clearly", and where the two readings disagree."""
    pairs = "; ".join(f"seed {s} {f['fraction']:.2f} against {f['fraction_mean']:.2f}"
                      for s, (_, f) in c8.items())
    by_share = sum(f["share_clearer"] for _, f in c8.values())
    by_sep = sum(f["clearer"] for _, f in c8.values())
    text = (f"share of learning checkpoints strictly ordered, PWCCA against mean CCA: {pairs} "
            f"(PWCCA higher in {by_share} of {len(c8)} seeds, its separation index higher in "
            f"{by_sep} of {len(c8)})")
    differ = [s for s, (_, f) in c8.items() if f["share_clearer"] != f["clearer"]]
    if differ:
        text += (f"; the two readings of \"more clearly\" disagree in seed(s) "
                 f"{_seed_list(differ)} (the verdict uses the separation index)")
    return text


def _first_text(c8: dict) -> str:
    """C8 evidence: whether the PWCCA distances are already ordered bottom-up at the first
    checkpoint, before the model learns (reported, not deciding)."""
    ordered = [s for s, (_, f) in c8.items() if f["first_ordered"]]
    step = next(iter(c8.values()))[1]["first_step"]
    text = (f"at the first checkpoint (step {step}, before learning) the PWCCA distances are "
            f"already ordered bottom-up in {len(ordered)} of {len(c8)} seeds")
    if ordered:
        text += " (an order that predates learning)"
    return text


def _c2_seed(result: Result, seed: int) -> tuple[str, dict]:
    t_conv = result.converged_step(seed)
    after = result.after_converged_fraction(seed)
    later = [s for s in result.steps if s >= t_conv and s < result.steps[-1]]
    facts = {"t_conv": t_conv, "after": after, "testable": bool(after >= C2_MIN_AFTER and later)}
    if not later:
        return NOT_TESTABLE, {**facts, "t_star": None, "shares": None, "mean_after": None}
    t_star = later[0]
    shares = result.unconverged(seed, t_star)
    mean_after = pd.concat([result.unconverged(seed, s) for s in later], axis=1).mean(axis=1)
    n_keep = int((shares >= C2_SHARE_BELOW).sum())
    facts.update(t_star=t_star, shares=shares, mean_after=mean_after, n_keep=n_keep)
    if not facts["testable"]:
        return NOT_TESTABLE, facts
    return status(n_keep >= C2_LAYER_FRACTION * len(shares), n_keep > 0), facts


#: The learning-rate schedules in plain words (for the scorecard).
SCHEDULE_WORDS = {"step_half": "decayed over the first half, then constant",
                  "cosine": "cosine decay", "constant": "constant"}


def training_words(config: Config) -> str:
    """The optimizer and schedule of ``config``'s runs, in plain words."""
    return (f"Adam, lr {config.lr:g}, {SCHEDULE_WORDS[config.schedule]}"
            + ("" if config.schedule == "constant" else f" (to {config.final_lr_frac:g} of it)"))


def _setup(result: Result, t_steps: int) -> tuple[tuple[str, str, str], ...]:
    cfg = result.config
    return (
        ("dataset", "PTB and WikiText-2, word level", f"{cfg.corpus}, "
         f"{'character' if cfg.corpus == 'tinyshakespeare' else 'word'} level"),
        ("architecture", "3-layer LSTM language model, 1150 units (awd-lstm-lm)",
         f"{cfg.n_layers}-layer LSTM, {cfg.hidden_size} units, embedding {cfg.embed_dim}"),
        ("nets and seeds", "one network", f"{len(result.seeds)} networks (seeds "
         f"{', '.join(str(s) for s in result.seeds)})"),
        ("training", "PTB 500 epochs, WikiText-2 750 epochs",
         f"{training_words(cfg)}, {t_steps} steps ({cfg.epochs:g} epochs)"),
        ("probe inputs", "validation sequences (not stated in detail)",
         f"{cfg.probe_seqs} validation sequences of {cfg.probe_len} tokens "
         f"({result.n_samples} positions)"),
    )


def _undertrained(result: Result) -> str:
    missed = result.nets.loc[~result.nets["trained"].astype(bool), "seed"].tolist()
    if not missed:
        return ""
    return (f"; tested on under-trained nets: seed(s) {', '.join(str(s) for s in missed)} "
            f"missed the trained rule (validation loss fell by 1% or more over the last 20%)")


def check(result: Result) -> list[Claim]:
    """Claims C8 and C2, per network (seed); each chapter verdict is the :func:`majority`.

    C8, on the checkpoints where the model learns (:meth:`Result.learning_steps`): (1) the
    time-averaged PWCCA distance to the final step (:meth:`Result.area`) strictly increases
    with depth; (2) the layers are strictly ordered at ``ORDERED_FRACTION_MIN`` of those
    checkpoints; (3) PWCCA's separation index exceeds mean CCA's; (4) the paper's controls,
    cosine and Euclidean distance, show the same bottom-up order on average (the paper: with
    far more noise). A network holds if all four pass, partly if (1) does. Reported beside them,
    deciding nothing: the ordered share of PWCCA against mean CCA's (the other reading of "more
    clearly"; the evidence says where it disagrees with the separation index) and whether the
    PWCCA distances are already ordered at the first checkpoint, before learning. CKA agrees if the
    same rules with linear CKA in place of PWCCA give the same chapter verdict.

    C2: the validation loss has converged at the first evaluation from which it stays within
    ``C2_LOSS_TOL`` of its final value; the claim is testable on a network only if at least
    ``C2_MIN_AFTER`` of training comes after that. At the first checkpoint ``t*`` from there,
    per layer, the share of coefficients with the final step below ``RHO_LEVEL``; a network
    holds if at least ``C2_LAYER_FRACTION`` of its layers have ``C2_SHARE_BELOW`` or more,
    partly if one does. A network where it is not testable counts as not holding; if at most
    half the networks are testable, the claim is "not testable" and the evidence says so."""
    cfg = result.config
    seeds_ = result.seeds
    t_steps = result.steps[-1]
    setup = _setup(result, t_steps)
    under = _undertrained(result)

    c8 = {s: _c8_seed(result, s, "PWCCA") for s in seeds_}
    c8_cka = {s: _c8_seed(result, s, "linear CKA")[0] for s in seeds_}
    c8_status = majority(v for v, _ in c8.values())
    rows = []
    for s, (verdict, f) in c8.items():
        rows += [
            Criterion(f"seed {s}: time-averaged PWCCA distance over the {f['n_learning']} "
                      "learning checkpoints, layers 1 to K", "strictly increasing with depth",
                      _slashed(f["area"]), f["ordered"]),
            Criterion(f"seed {s}: share of learning checkpoints with PWCCA distance strictly "
                      "ordered by depth", f"at least {ORDERED_FRACTION_MIN:g}",
                      f["fraction"], f["often"]),
            Criterion(f"seed {s}: separation index of PWCCA",
                      f"above mean CCA's ({f['separation_mean']:.3f})", f["separation"],
                      f["clearer"]),
            Criterion(f"seed {s}: share of learning checkpoints strictly ordered, PWCCA "
                      "against mean CCA", "reported beside the separation index",
                      f"{f['fraction']:.3f} against {f['fraction_mean']:.3f}", None),
            Criterion(f"seed {s}: PWCCA distance at the first checkpoint (step "
                      f"{f['first_step']}, before learning), layers 1 to K", "reported",
                      f"{_slashed(f['first'])} ({_order_word(f['first'])})", None),
            Criterion(f"seed {s}: order of the time-averaged cosine and Euclidean distances",
                      "bottom-up for both", " and ".join(f["controls"].values()),
                      f["controls_ok"]),
            Criterion(f"seed {s}: verdict", "holds if all four rows above pass, partly if the "
                      "first does", verdict, None),
        ]
    for s in seeds_:
        crossings = result.first_below("PWCCA", s)
        rows.append(Criterion(f"seed {s}: first checkpoint from which PWCCA distance stays "
                              f"below {cfg.threshold:g}, layers 1 to K",
                              "not decreasing with depth",
                              "/".join(str(v) for v in crossings), None))
    fractions = [f["fraction"] for _, f in c8.values()]
    controls = {m: [f["controls"][m] for _, f in c8.values()] for m in ("cosine", "Euclidean")}
    reversed_ = [m for m, words in controls.items()
                 if sum(w != "bottom-up" for w in words) > len(seeds_) / 2]
    control_text = ("the paper's controls (cosine and Euclidean distance, bottom-up with more "
                    "noise in the paper) are bottom-up here too" if not reversed_ else
                    f"unlike the paper, {' and '.join(reversed_)} distance do not show the "
                    f"bottom-up order in most networks (orders: " + "; ".join(
                        f"{m} {', '.join(w)}" for m, w in controls.items()) + ")")
    c8_evidence = (
        f"{len(seeds_)} {cfg.corpus} LSTMs {cfg.n_layers}x{cfg.hidden_size}, {t_steps} steps; "
        f"per-seed verdicts {', '.join(v for v, _ in c8.values())}: on the checkpoints where "
        f"the model learns, PWCCA distances strictly ordered bottom-up at "
        f"{_spread(fractions)} of them (needs {ORDERED_FRACTION_MIN:g}); separation index "
        f"PWCCA {_spread(f['separation'] for _, f in c8.values())} against mean CCA "
        f"{_spread(f['separation_mean'] for _, f in c8.values())}; {_clearer_text(c8)}; "
        f"{_first_text(c8)}; {control_text}; linear "
        f"CKA in place of PWCCA gives {majority(c8_cka.values())}{under}")
    c8_claim = Claim(
        id="C8", figure="fig-rnn-dynamics-distances", status=c8_status, evidence=c8_evidence,
        criteria=tuple(rows), paper_value="layers converge bottom-up (no number stated)",
        ours=f"ordered at {_spread(fractions)} of learning checkpoints",
        cka_agrees=majority(c8_cka.values()) == c8_status, setup=setup)

    c2 = {s: _c2_seed(result, s) for s in seeds_}
    c2_status = majority(v for v, _ in c2.values())
    rows = []
    for s, (verdict, f) in c2.items():
        rows.append(Criterion(
            f"seed {s}: share of training after the validation loss converged (step "
            f"{f['t_conv']} of {t_steps})", f"at least {C2_MIN_AFTER:g} to be testable",
            f["after"], f["testable"]))
        if f["shares"] is not None:
            rows.append(Criterion(
                f"seed {s}: share of coefficients below {RHO_LEVEL:g} at step {f['t_star']}, "
                "layers 1 to K", f"at least {C2_SHARE_BELOW:g} in at least "
                f"{C2_LAYER_FRACTION:.0%} of the layers", _slashed(f["shares"]),
                bool(f["n_keep"] >= C2_LAYER_FRACTION * len(f["shares"]))))
            rows.append(Criterion(
                f"seed {s}: mean share below {RHO_LEVEL:g} over the checkpoints from step "
                f"{f['t_star']} to the last before {t_steps}, layers 1 to K",
                "reported", _slashed(f["mean_after"]), None))
        rows.append(Criterion(f"seed {s}: verdict", "holds if enough layers keep an "
                              "unconverged part, partly if one does", verdict,
                              None))
    afters = [f["after"] for _, f in c2.values()]
    shares_all = [float(f["shares"].mean()) for _, f in c2.values() if f["shares"] is not None]
    n_testable = sum(f["testable"] for _, f in c2.values())
    share_text = (f"share of coefficients below {RHO_LEVEL:g} at the first checkpoint after "
                  f"convergence, mean over layers, {_spread(shares_all)}"
                  if shares_all else "no checkpoint between convergence and the last step")
    base = (f"validation loss within {C2_LOSS_TOL:.0%} of its final value for the last "
            f"{_spread(afters, '{:.0%}')} of training in {len(seeds_)} networks (needs "
            f"{C2_MIN_AFTER:.0%})")
    if c2_status == NOT_TESTABLE:
        c2_evidence = (f"Not testable at this scale: {base}, so most networks converge too late "
                       f"to watch their coefficients afterwards; {share_text}{under}")
    else:
        c2_evidence = (f"{base}, testable in {n_testable} of {len(seeds_)}; per-seed verdicts "
                       f"{', '.join(v for v, _ in c2.values())}; {share_text}{under}")
    c2_claim = Claim(
        id="C2", part="RNN", figure="fig-rnn-dynamics-spectra",
        status=c2_status, evidence=c2_evidence,
        criteria=tuple(rows),
        paper_value="accuracy converged at 45k of 80k steps; many coefficients below 1 after",
        ours=(f"{_spread(shares_all)} of coefficients below {RHO_LEVEL:g} after convergence; "
              f"{_spread(afters, '{:.0%}')} of training after it") if shares_all else
             f"{_spread(afters, '{:.0%}')} of training after convergence",
        cka_agrees=None, setup=setup)
    return [c8_claim, c2_claim]


def floor_note(result: Result, measure: str = "PWCCA") -> str:
    """A sentence, from the numbers, on where ``measure``'s distances sit at the sampling floor
    (at least :data:`NEAR_FLOOR` of it): per layer, the latest such checkpoint after step 0
    over all seeds, or that none does."""
    parts = []
    for layer in range(1, result.config.n_layers + 1):
        last = []
        for seed in result.seeds:
            t = result.table(measure, seed)[layer]
            near = t.index[(t.index > 0) & (t.to_numpy() >= NEAR_FLOOR
                                            * result.floor(measure, seed)[layer])]
            if len(near):
                last.append(int(near.max()))
        parts.append(f"layer {layer}: up to step {max(last)}" if last else
                     f"layer {layer}: at no checkpoint after step 0")
    floors = result.floors[result.floors["measure"] == measure]["distance"]
    return (f"The {measure} sampling floor (whole probe sequences shuffled) is a distance of "
            f"{floors.min():.3f} to {floors.max():.3f} over layers and seeds. Distances at or "
            f"above {NEAR_FLOOR:.0%} of it, i.e. no more related to the final representation "
            f"than unrelated inputs: " + "; ".join(parts) + ".")


__all__ = ["MEASURES", "NETS_HEADINGS", "RUN_FIELDS", "Config", "Result", "check",
           "distance_table", "floor_distances", "floor_note", "layer_palette", "lm_config",
           "lm_configs", "majority", "nets_table", "nets_view", "panel_legend", "plot_distances",
           "plot_perplexity", "plot_spectra", "probe_ids", "run", "seeds", "step_palette",
           "summary_table", "total_steps", "train", "train_all"]
