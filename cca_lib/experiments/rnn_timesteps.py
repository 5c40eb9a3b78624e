"""Chapter: across timesteps, are an LSTM's hidden states linearly similar over time? (paper
App. A.3, Figs. A2-A4; claim C9).

The trained LSTM language models of :mod:`cca_lib.experiments.rnn_dynamics` (one per seed, same
config, so the cached runs are reused) are unrolled over a long probe text in consecutive
windows of ``window`` tokens. ``O_j`` is a layer's output at position ``j`` of every window (one
row per window, float64); each ``O_j`` is compared with the last one, ``O_{window-1}``, by PWCCA
(weights from ``O_{window-1}``), mean CCA, linear CKA, and the cosine and Euclidean distance of
the same neurons.

Controls that make the curves readable:

* a toy RNN ``h' = W h + a * sigmoid(V h) + b`` with ``W`` orthogonal and no input: for
  ``a = 0`` every ``h_j`` is an invertible affine map of ``h_{19}``, so CCA must call all
  timesteps equivalent (distance 0), while cosine and Euclidean distance need not be small;
  ``a > 0`` blends in a nonlinearity;
* repeated-input probes: the same token ``window`` times, after a short (early) or a long
  (late) context;
* the sampling floor: the distance between ``O_{window-1}`` and itself with its rows shuffled
  (:func:`cca_lib.stats.permutation_null`; unrelated rows, same ``n`` and ``d``), and between
  the first and second half of the windows;
* the untrained network (step 0 of each run) through the same analysis: the verdict compares
  the trained pattern with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cca_lib import _checks
from cca_lib import capture as _capture
from cca_lib import data as _data
from cca_lib import stats as _stats
from cca_lib.claims import Claim, Criterion, status
from cca_lib.experiments import rnn_dynamics
from cca_lib.experiments._params import SAMPLES, SEED, UNITS, ChapterConfig, param, rule

MEASURES = rnn_dynamics.MEASURES


def _lstm_run(name: str, value):
    if not isinstance(value, rnn_dynamics.Config):
        raise TypeError(f"{name} must be an rnn_dynamics.Config, got {value!r} "
                        f"({type(value).__name__})")
    return value


#: Chapters whose parameters this one takes, and which: the LSTM run of the dynamics chapter
#: (the book builder gives this chapter those parameters of the other chapter's profile).
PARAMS_FROM = {"rnn_dynamics": rnn_dynamics.RUN_FIELDS}


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Parameters. ``training`` is the LSTM run (the dynamics chapter's config: the same values
    reuse its cached run). Defaults are the quick profile.

    The papermill parameters (:meth:`parameters`) are the fields of the run
    (:data:`cca_lib.experiments.rnn_dynamics.RUN_FIELDS`) and the analysis fields below; one
    ``seed`` is the run's and the analysis' seed."""

    training: rnn_dynamics.Config = param(
        help="the LSTM run (an rnn_dynamics.Config)", default_factory=rnn_dynamics.Config,
        check=_lstm_run)
    window: int = param(20, "unrolled steps per window (at least 2)", "20",
                        check=rule(_checks.integer, ge=2, le=_checks.MAX_SAMPLES))
    n_windows: int | None = param(None, "windows of the validation text (None: all that fit)",
                                  check=rule(_checks.integer, ge=1, le=_checks.MAX_SAMPLES,
                                              none=True))
    carry_state: bool = param(True, "carry the state from window to window (False: each from "
                              "zero)", check=rule(_checks.boolean))
    n_streams: int = param(50, "parallel streams when carrying state", check=SAMPLES)
    toy_dim: int = param(64, "toy RNN state size", check=UNITS)
    toy_samples: int = param(2000, "toy RNN initial states h_0 ~ N(0, I) (rows)",
                             check=SAMPLES)
    toy_blend: tuple[float, ...] = param((0.0, 0.5, 1.0, 2.0), "nonlinearity weight a of the "
                                         "toy RNN (must include 0: the linear toy)",
                                         check=rule(_checks.reals, ge=0, distinct=True))
    repeat_contexts: int = param(2000, "contexts for the repeated-input probes (rows)",
                                 check=SAMPLES)
    early_prefix: int = param(3, 'context tokens before the repeats, "early"', check=SAMPLES)
    late_prefix: int = param(200, 'context tokens before the repeats, "late"', check=SAMPLES)
    repeat_token: str | None = param(None, "the repeated token (None: the corpus' most "
                                     "frequent)", check=rule(_checks.text, none=True))
    seed: int = param(0, "the first LSTM's initial weights and minibatch order, and the seed "
                      "of the toy weights, context positions and row permutations", check=SEED)

    def _validate(self) -> None:
        if self.late_prefix <= self.early_prefix:
            raise ValueError(f"late_prefix={self.late_prefix} must exceed "
                             f"early_prefix={self.early_prefix}")
        if 0.0 not in self.toy_blend:
            raise ValueError("toy_blend must include a = 0 (the linear toy, the exact control)")
        if self.toy_samples < 10 * self.toy_dim:
            raise ValueError(f"toy_samples={self.toy_samples} must be >= 10 x toy_dim="
                             f"{10 * self.toy_dim} (sampling floor)")
        _checks.allocation("toy_samples x window x toy_dim",
                           self.toy_samples * self.window * self.toy_dim)
        hidden = self.training.hidden_size
        if self.repeat_contexts < 10 * hidden:
            raise ValueError(f"repeat_contexts={self.repeat_contexts} must be >= 10 x "
                             f"hidden_size={10 * hidden} (sampling floor)")
        _checks.allocation("repeat_contexts x (late_prefix + window)",
                           self.repeat_contexts * (self.late_prefix + self.window))

    @classmethod
    def parameters(cls) -> dict:
        """The run's fields (:data:`~cca_lib.experiments.rnn_dynamics.RUN_FIELDS`, ``seed``
        declared here), then the analysis fields."""
        run = rnn_dynamics.Config.parameters()
        own = {f.name: f for f in dataclasses.fields(cls) if f.name != "training"}
        out = {name: own["seed"] if name == "seed" else run[name]
               for name in rnn_dynamics.RUN_FIELDS}
        out.update((name, f) for name, f in own.items() if name != "seed")
        return out

    @classmethod
    def from_params(cls, mapping):
        """The config of papermill parameters (see :meth:`parameters`; conversions as in
        :meth:`ChapterConfig.from_params`): the run's go to ``training``, ``seed`` to both."""
        values = cls._convert(mapping)
        run = {k: v for k, v in values.items() if k in rnn_dynamics.RUN_FIELDS}
        own = {k: v for k, v in values.items() if k not in run or k == "seed"}
        # the run's probe fields are rnn_dynamics' analysis, unused here: large enough for
        # the run's own check at any hidden_size (the defaults at the default size)
        hidden = run.get("hidden_size", rnn_dynamics.Config.defaults()["hidden_size"])
        probe = rnn_dynamics.Config.defaults()
        seqs = max(probe["probe_seqs"], -(-10 * hidden // probe["probe_len"]))
        return cls(training=rnn_dynamics.Config(**run, probe_seqs=seqs), **own)


def _curve_rows(acts: np.ndarray, **labels) -> list[dict]:
    """acts ``(n, window, d)`` float64 -> rows of the distances of every O_j to O_last."""
    ref = acts[:, -1]
    rows = []
    for j in range(acts.shape[1]):
        for measure, value in rnn_dynamics._distances(ref, acts[:, j]).items():
            rows.append({**labels, "j": j, "measure": measure, "distance": value})
    return rows


#: The measures given a sampling floor (those whose distance is 1 - a similarity).
FLOOR_MEASURES = ("PWCCA", "mean CCA", "linear CKA")
#: Permutations per permuted-rows floor.
FLOOR_PERMUTATIONS = 20


def _floor_rows(o_last: np.ndarray, perm_seed: int, **labels) -> list[dict]:
    """The floors of ``o_last`` ``(n, d)``: against itself with rows shuffled (the mean over
    :data:`FLOOR_PERMUTATIONS` permutations), and its first half of rows against the second."""
    from cca_lib.similarity import compare

    half = len(o_last) // 2
    halves = compare(o_last[:half], o_last[half:2 * half])
    rows = []
    for measure in FLOOR_MEASURES:
        null = _stats.permutation_null(o_last, o_last, measure, n_perm=FLOOR_PERMUTATIONS,
                                       seed=perm_seed)
        rows.append({**labels, "floor": "permuted rows", "measure": measure, "n": len(o_last),
                     "distance": 1.0 - null.floor})
        rows.append({**labels, "floor": "disjoint halves", "measure": measure, "n": half,
                     "distance": 1.0 - float(halves[measure])})
    return rows


def toy_states(dim: int, n: int, steps: int, a: float, seed: int) -> np.ndarray:
    """The toy RNN ``h_{t+1} = W h_t + a * sigmoid(V h_t) + b`` (no input) from ``n`` random
    initial states: float64 ``(n, steps, dim)``. ``W`` is a random orthogonal matrix, ``V`` has
    iid N(0, 1/dim) entries, ``b`` iid N(0, 1); all three depend on ``seed`` only, not on ``a``.
    ``h_0 ~ N(0, I)``. Returned are ``h_1 .. h_steps``."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    w = q * np.sign(np.diag(r))
    v = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    b = rng.standard_normal(dim)
    h = rng.standard_normal((n, dim))
    out = np.empty((n, steps, dim))
    for t in range(steps):
        h = h @ w.T + a * (1.0 / (1.0 + np.exp(-(h @ v.T)))) + b
        out[:, t] = h
    return out


def repeated_probes(config: Config, valid: torch.Tensor, token: int, prefix: int
                    ) -> torch.Tensor:
    """``repeat_contexts`` rows of ``prefix`` consecutive validation tokens (random, seeded
    start positions) followed by ``window`` copies of ``token``: int64 ``(m, prefix + window)``.
    """
    rng = np.random.default_rng(config.seed + 1)
    hi = len(valid) - config.late_prefix - 1
    if hi < config.repeat_contexts:
        raise ValueError(f"the validation text ({len(valid)} tokens) is too short for "
                         f"{config.repeat_contexts} contexts of {config.late_prefix} tokens")
    starts = rng.choice(hi, config.repeat_contexts, replace=False)
    ctx = torch.stack([valid[s:s + prefix] for s in starts])
    rep = torch.full((config.repeat_contexts, config.window), token, dtype=torch.int64)
    return torch.cat([ctx, rep], dim=1)


@dataclass(frozen=True)
class Result:
    """Distance curves of O_j to the last timestep, with controls, per seed."""

    config: Config
    #: trained and untrained LSTMs: seed, model ("trained"/"untrained"), layer, j, measure,
    #: distance
    curves: pd.DataFrame
    #: sampling floor: seed, model, layer, floor ("permuted rows"/"disjoint halves"), measure,
    #: n, distance
    floors: pd.DataFrame
    #: toy RNN: a, j, measure, distance
    toy: pd.DataFrame
    #: repeated input (trained models): seed, context ("early"/"late"), layer, j, measure,
    #: distance
    repeats: pd.DataFrame
    repeat_floors: pd.DataFrame  #: seed, context, layer, floor, measure, n, distance
    n_windows: int
    hidden_size: int
    repeat_token: str
    #: one row per network (:func:`cca_lib.experiments.rnn_dynamics.nets_table`)
    nets: pd.DataFrame

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(self.curves["seed"].unique()))

    def to_frame(self) -> pd.DataFrame:
        """The LSTM curves in long format (one row per seed, model, layer, j and measure)."""
        return self.curves.copy()

    def curve(self, measure: str = "PWCCA", model: str = "trained", seed: int | None = None
              ) -> pd.DataFrame:
        """Rows = j, columns = layers (one seed, default the first)."""
        seed = self.seeds[0] if seed is None else seed
        c = self.curves[(self.curves["measure"] == measure) & (self.curves["model"] == model)
                        & (self.curves["seed"] == seed)]
        if c.empty:
            raise ValueError(f"no curve for measure={measure!r}, model={model!r}, seed={seed!r}")
        return c.pivot(index="j", columns="layer", values="distance")

    def floor(self, measure: str = "PWCCA", model: str = "trained",
              kind: str = "permuted rows", seed: int | None = None) -> pd.Series:
        """Per layer: the sampling floor (distance of unrelated rows)."""
        seed = self.seeds[0] if seed is None else seed
        f = self.floors[(self.floors["measure"] == measure) & (self.floors["model"] == model)
                        & (self.floors["floor"] == kind) & (self.floors["seed"] == seed)]
        return f.set_index("layer")["distance"]

    def onset(self, measure: str = "PWCCA", model: str = "trained",
              frac: float | None = None, seed: int | None = None) -> pd.Series:
        """Per layer: the first j from which the distance stays below ``frac`` (default
        :data:`ONSET_FLOOR_FRACTION`) x the permuted floor up to the last step (the start of
        measurable linear similarity)."""
        frac = ONSET_FLOOR_FRACTION if frac is None else frac
        c = self.curve(measure, model, seed)
        fl = self.floor(measure, model, seed=seed)
        out = {}
        for layer in c.columns:
            above = c.index[c[layer].to_numpy() >= frac * fl[layer]]
            out[layer] = int(above.max() + 1) if len(above) else 0
        return pd.Series(out, name="onset")

    def toy_curve(self, measure: str) -> pd.DataFrame:
        """Toy RNN: rows = j, columns = a."""
        t = self.toy[self.toy["measure"] == measure]
        return t.pivot(index="j", columns="a", values="distance")

    def repeat_curve(self, measure: str = "PWCCA", context: str = "early",
                     seed: int | None = None) -> pd.DataFrame:
        """Repeated input: rows = j, columns = layers (one seed, default the first)."""
        seed = self.seeds[0] if seed is None else seed
        r = self.repeats[(self.repeats["measure"] == measure)
                         & (self.repeats["context"] == context) & (self.repeats["seed"] == seed)]
        return r.pivot(index="j", columns="layer", values="distance")


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Unroll every seed's trained (cached) and untrained LSTM over the validation text in
    windows, compute the O_j-vs-O_last curves and floors, the toy RNN and the repeated-input
    probes."""
    from cca_lib._progress import bar as tqdm_bar

    tcfg = config.training
    runs = rnn_dynamics.train_all(tcfg, progress=progress)
    corpus = _data.load_text(tcfg.corpus, progress=progress)
    valid = corpus.valid
    windowed = {"window": config.window, "carry_state": config.carry_state,
                "n_streams": config.n_streams, "n_windows": config.n_windows}
    if config.repeat_token is None:
        token = int(torch.bincount(corpus.train).argmax())
    else:
        if config.repeat_token not in corpus.vocab.stoi:
            raise ValueError(f"repeat_token {config.repeat_token!r} is not in the vocabulary")
        token = corpus.vocab.stoi[config.repeat_token]
    probes = {context: (prefix, repeated_probes(config, valid, token, prefix))
              for context, prefix in (("early", config.early_prefix),
                                      ("late", config.late_prefix))}

    curves, floors, repeats, repeat_floors = [], [], [], []
    n_windows = 0
    jobs = [(res, model, step) for res in runs
            for model, step in (("trained", res.final_step), ("untrained", 0))]
    for res, model, step in tqdm_bar(jobs, desc="unrolled models", progress=progress):
        seed = res.config.seed
        acts = _capture.capture_run(res, step, valid, windowed=windowed)
        for li, name in enumerate(acts, start=1):
            a = acts[name].astype(np.float64)
            n_windows = a.shape[0]
            curves.extend(_curve_rows(a, seed=seed, model=model, layer=li))
            floors.extend(_floor_rows(a[:, -1], config.seed + li, seed=seed, model=model,
                                      layer=li))
        if model != "trained":
            continue
        net = res.load(step)
        for context, (prefix, ids) in probes.items():
            acts = _capture.capture(net, ids)
            for li, name in enumerate(acts, start=1):
                a = acts[name][:, prefix:].astype(np.float64)
                repeats.extend(_curve_rows(a, seed=seed, context=context, layer=li))
                repeat_floors.extend(_floor_rows(a[:, -1], config.seed + li, seed=seed,
                                                 context=context, layer=li))

    toy = []
    for a in tqdm_bar(config.toy_blend, desc="toy RNN", progress=progress):
        states = toy_states(config.toy_dim, config.toy_samples, config.window, a, config.seed)
        toy.extend(_curve_rows(states, a=a))

    return Result(config=config, curves=pd.DataFrame(curves), floors=pd.DataFrame(floors),
                  toy=pd.DataFrame(toy), repeats=pd.DataFrame(repeats),
                  repeat_floors=pd.DataFrame(repeat_floors), n_windows=n_windows,
                  hidden_size=tcfg.hidden_size, repeat_token=corpus.vocab.itos[token],
                  nets=rnn_dynamics.nets_table(runs))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def curve_table(result: Result, model: str = "trained",
                measures: tuple[str, ...] = ("PWCCA", "linear CKA")) -> pd.DataFrame:
    """The curves of :meth:`Result.curve` of ``model`` for ``measures``, mean over seeds: one
    row per timestep ``j = 0 .. window - 1``, then the two sampling floors (mean over seeds);
    one column per measure and layer. Narrow enough for the book's column."""
    unknown = sorted(set(measures) - set(FLOOR_MEASURES))
    if unknown:
        raise ValueError(f"measures must be among {FLOOR_MEASURES} (those with a floor), got "
                         f"{unknown}")
    c = result.curves[(result.curves["model"] == model)
                      & result.curves["measure"].isin(measures)]
    if c.empty:
        raise ValueError(f"no curves for model={model!r}")
    table = c.pivot_table(index="j", columns=["measure", "layer"], values="distance")
    table.index = [f"j = {j}" for j in table.index]
    f = result.floors[(result.floors["model"] == model)
                      & result.floors["measure"].isin(measures)]
    floors = f.pivot_table(index="floor", columns=["measure", "layer"], values="distance")
    floors.index = [f"floor: {k}" for k in floors.index]
    out = pd.concat([table, floors])
    out.columns = out.columns.set_names(["measure", "layer"])
    return out[list(measures)]


#: The part of plasma the toy RNN's blend colours are taken from (dark blue for a = 0 to orange
#: for the largest a): its near-white yellow end is left out.
BLEND_CMAP_SPAN = (0.0, 0.8)


def blend_palette(blends) -> dict:
    """One colour per toy blend ``a``, from a truncated plasma (:data:`BLEND_CMAP_SPAN`)."""
    import matplotlib.pyplot as plt

    blends = sorted(blends)
    colors = plt.get_cmap("plasma")(np.linspace(*BLEND_CMAP_SPAN, len(blends)))
    return {a: tuple(c) for a, c in zip(blends, colors, strict=True)}


def _legend_of_first(axes, extra=()):
    """The first panel's legend entries (its legend removed), with ``extra`` (handle, label)s."""
    handles, labels = axes[0].get_legend_handles_labels()
    if axes[0].get_legend() is not None:
        axes[0].get_legend().remove()
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    return handles, labels


def plot_curves(result: Result, model: str = "trained"):
    """The paper's Figs. A2/A3: distance of O_j to the last step vs j, one line per layer (mean
    over seeds, band: across-seed range), one panel per measure, two to a row; the CCA and CKA
    panels show the permuted-rows sampling floor (dashed, mean over seeds)."""
    import seaborn as sns

    from cca_lib import plotting

    c = result.curves[result.curves["model"] == model]
    layers = sorted(c["layer"].unique())
    palette = rnn_dynamics.layer_palette(layers)
    fig, axes = plotting.grid(len(MEASURES), ncols=2, panel=rnn_dynamics.PANEL)
    f = result.floors[(result.floors["model"] == model)
                      & (result.floors["floor"] == "permuted rows")]
    for i, (ax, measure) in enumerate(zip(axes, MEASURES, strict=True)):
        sub = c[c["measure"] == measure]
        sns.lineplot(data=sub, x="j", y="distance", hue="layer", palette=palette, marker="o",
                     markersize=4, errorbar=rnn_dynamics._range, ax=ax, legend=i == 0)
        if measure in FLOOR_MEASURES:
            for layer, val in f[f["measure"] == measure].groupby("layer")["distance"].mean(
                    ).items():
                ax.axhline(val, ls="--", lw=1, color=palette[layer])
        ax.set(title=measure, xlabel="timestep j in the window",
               ylabel=f"distance to O_{result.config.window - 1}" if i % 2 == 0 else "")
    handles, labels = _legend_of_first(axes, [(rnn_dynamics.floor_handle(), "sampling floor")])
    rnn_dynamics.panel_legend(fig, handles, labels, "layer")
    return fig


def plot_toy(result: Result):
    """Toy RNN (paper Fig. A4): distance of h_j to the last state for each blend a, one panel
    per measure, two to a row."""
    import seaborn as sns

    from cca_lib import plotting

    palette = blend_palette(result.toy["a"].unique())
    fig, axes = plotting.grid(len(MEASURES), ncols=2, panel=rnn_dynamics.PANEL)
    for i, (ax, measure) in enumerate(zip(axes, MEASURES, strict=True)):
        sub = result.toy[result.toy["measure"] == measure]
        sns.lineplot(data=sub, x="j", y="distance", hue="a", palette=palette, marker="o",
                     markersize=4, ax=ax, legend=i == 0)
        ax.set(title=measure, xlabel="timestep j",
               ylabel=f"distance to h_{result.config.window - 1}" if i % 2 == 0 else "")
    handles, labels = _legend_of_first(axes)
    rnn_dynamics.panel_legend(fig, handles, labels, "blend a")
    return fig


def plot_repeats(result: Result, measure: str = "PWCCA"):
    """Repeated input: distance of O_j to the last repeat, early vs late context, one panel per
    layer, two to a row (mean over seeds, band: across-seed range; dashed: sampling floor;
    dotted: the similarity :data:`REPEAT_SIMILARITY_MIN`)."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    from cca_lib import plotting

    r = result.repeats[result.repeats["measure"] == measure]
    layers = sorted(r["layer"].unique())
    fig, axes = plotting.grid(len(layers), ncols=2, panel=rnn_dynamics.PANEL, sharey=True)
    f = result.repeat_floors
    colors = dict(zip(["early", "late"], sns.color_palette()[:2], strict=True))
    for i, (ax, layer) in enumerate(zip(axes, layers, strict=True)):
        sub = r[r["layer"] == layer]
        sns.lineplot(data=sub, x="j", y="distance", hue="context", marker="o", markersize=4,
                     hue_order=["early", "late"], palette=colors, errorbar=rnn_dynamics._range,
                     ax=ax, legend=i == 0)
        for context, color in colors.items():
            val = f[(f["layer"] == layer) & (f["context"] == context) & (f["measure"] == measure)
                    & (f["floor"] == "permuted rows")]["distance"].mean()
            ax.axhline(val, ls="--", lw=1, color=color)
        ax.axhline(1 - REPEAT_SIMILARITY_MIN, ls=":", lw=1, color="black")
        ax.set(title=f"layer {layer}", xlabel="repeat j", ylabel="")
    handles, labels = _legend_of_first(axes, [
        (rnn_dynamics.floor_handle(), "sampling floor"),
        (Line2D([], [], ls=":", lw=1, color="black"),
         f"similarity {REPEAT_SIMILARITY_MIN:g}")])
    rnn_dynamics.panel_legend(fig, handles, labels, "context")
    fig.supylabel(f"{measure} distance to the last repeat", fontsize="medium")
    fig.suptitle(f"The token {result.repeat_token!r} repeated {result.config.window} times",
                 fontsize="medium")
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C9)
# ---------------------------------------------------------------------------------------------

#: Toy control, a = 0: the CCA distances are 0 at every j to within this (float64 round-off).
TOY_CCA_TOL = 1e-6
#: Toy control, a = 0: cosine and Euclidean distance exceed this at every j < w - 1 (they
#: compare coordinates, which the orthogonal map moves).
TOY_COORD_MIN = 0.05
#: Toy control, largest a: the PWCCA distance at j = 0 exceeds this (the nonlinearity shows).
TOY_NONLINEAR_MIN = 1e-4
#: The onset of linear similarity: the first j from which the PWCCA distance stays below this
#: fraction of the sampling floor.
ONSET_FLOOR_FRACTION = 0.9
#: "Not similar until late": every layer's onset is at or after this fraction of the window.
LATE_ONSET_FRACTION = 0.5
#: "Highly similar" early repeats: the mean PWCCA similarity (1 - distance) of the repeated
#: steps to the last repeat is at least this, in every layer.
REPEAT_SIMILARITY_MIN = 0.9
#: The untrained network's late onset counts as mostly architectural (reported in the prose,
#: not deciding the verdict) when its mean onset over layers and seeds is at least this
#: fraction of the trained one's.
ARCHITECTURAL_ONSET_FRACTION = 0.8


def sanity_checks(result: Result) -> tuple[Criterion, ...]:
    """The toy RNN behaves as theory says: for ``a = 0`` both CCA distances are 0 at every
    ``j`` and cosine and Euclidean distance are not; for the largest ``a`` the CCA distance at
    ``j = 0`` is above 0."""
    toy_cca = max(result.toy_curve(m)[0.0].abs().max() for m in ("PWCCA", "mean CCA"))
    a_max = max(result.config.toy_blend)
    nonlin = result.toy_curve("PWCCA")[a_max].iloc[0]
    rows = [Criterion("toy RNN with a = 0: largest PWCCA or mean CCA distance over j",
                      f"below {TOY_CCA_TOL:g}", toy_cca, bool(toy_cca < TOY_CCA_TOL))]
    for m in ("cosine", "Euclidean"):
        low = result.toy_curve(m)[0.0].iloc[:-1].min()
        rows.append(Criterion(f"toy RNN with a = 0: smallest {m} distance over j before the last",
                              f"above {TOY_COORD_MIN:g}", low, bool(low > TOY_COORD_MIN)))
    rows.append(Criterion(f"toy RNN with a = {a_max:g}: PWCCA distance at j = 0",
                          f"above {TOY_NONLINEAR_MIN:g}", nonlin,
                          bool(nonlin > TOY_NONLINEAR_MIN)))
    return tuple(rows)


def _seed_facts(result: Result, seed: int, measure: str) -> dict:
    """One network's C9 numbers and verdict with ``measure`` (PWCCA; linear CKA for the
    agreement)."""
    w = result.config.window
    late_from = int(LATE_ONSET_FRACTION * w)
    curve = result.curve(measure, seed=seed)
    fl = result.floor(measure, seed=seed)
    onset = result.onset(measure, seed=seed)
    untrained = result.onset(measure, "untrained", seed=seed)
    rep = {c: result.repeat_curve(measure, c, seed).iloc[:-1].mean() for c in ("early", "late")}
    early_sim = 1.0 - rep["early"]
    f = {"onset": onset, "untrained": untrained, "late_from": late_from,
         "at_end": curve.loc[w - 2], "floor": fl, "rep": rep, "early_sim": early_sim}
    f["late_only"] = bool((onset >= late_from).all() and (curve.loc[w - 2] < fl).all())
    f["from_training"] = bool(onset.mean() > untrained.mean())
    f["high"] = bool((early_sim >= REPEAT_SIMILARITY_MIN).all())
    f["early_lower"] = bool((rep["early"] < rep["late"]).all())
    f["repeats"] = f["high"] and f["early_lower"]
    f["status"] = status(f["late_only"] and f["from_training"] and f["repeats"],
                         f["late_only"] or f["repeats"])
    return f


def _fmt(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _ints(values) -> str:
    return "/".join(str(int(v)) for v in values)


def _onset_difference(diffs) -> str:
    """The trained-minus-untrained mean onset: the mean with the across-seed range (few seeds,
    so no bootstrap interval), and in how many seeds it is above 0."""
    d = np.asarray(list(diffs), dtype=float)
    if len(d) == 1:
        return f"{d[0]:+.1f} (one seed)"
    return (f"{d.mean():+.1f} (seeds {d.min():+.1f} to {d.max():+.1f}; above 0 in "
            f"{int((d > 0).sum())} of {len(d)})")


def onset_note(result: Result, measure: str = "PWCCA") -> str:
    """A sentence, from the numbers, comparing the trained and untrained networks' mean
    onset of linear similarity (over layers and seeds); when the untrained onset is at least
    :data:`ARCHITECTURAL_ONSET_FRACTION` of the trained one, it says that much of the late
    onset comes from the architecture and the inputs, not from training."""
    trained = np.array([result.onset(measure, seed=s).mean() for s in result.seeds])
    untrained = np.array([result.onset(measure, "untrained", seed=s).mean()
                          for s in result.seeds])
    diff = _onset_difference(trained - untrained)
    text = (f"With {measure}, the mean onset of linear similarity (over layers and seeds) is "
            f"j = {trained.mean():.1f} after training and j = {untrained.mean():.1f} in the "
            f"untrained networks; after training minus untrained: {diff}.")
    if untrained.mean() >= ARCHITECTURAL_ONSET_FRACTION * trained.mean():
        text += (f" The untrained onset is at least {ARCHITECTURAL_ONSET_FRACTION:.0%} of the "
                 "one after training, so much of the late onset is there before any training: it "
                 "comes from the architecture and the inputs, not from what the network "
                 "learned.")
    else:
        text += (f" The untrained onset is below {ARCHITECTURAL_ONSET_FRACTION:.0%} of the "
                 "one after training, so training moves the onset later.")
    return text


def check(result: Result) -> list[Claim]:
    """Claim C9, per network (seed); the chapter verdict is the majority
    (:func:`cca_lib.experiments.rnn_dynamics.majority`).

    Per network: (a) not similar until late: every layer's onset (:meth:`Result.onset`) is at
    or after ``LATE_ONSET_FRACTION`` of the window and the PWCCA distance at ``j = w - 2`` is
    below the floor in every layer; (b) that pattern comes from training: the trained onsets
    are later than the untrained network's (mean over layers; a tie is not later); (c) early
    repeats highly similar: the mean PWCCA similarity of the repeated steps to the last repeat
    after the short context is at least ``REPEAT_SIMILARITY_MIN`` in every layer, and the
    distance is smaller than after the long context in every layer. Holds if (a), (b) and (c),
    partly if (a) or (c). CKA agrees if the same rules with linear CKA give the same chapter
    verdict."""
    w = result.config.window
    seeds = result.seeds
    facts = {s: _seed_facts(result, s, "PWCCA") for s in seeds}
    cka = {s: _seed_facts(result, s, "linear CKA")["status"] for s in seeds}
    verdict = rnn_dynamics.majority(f["status"] for f in facts.values())
    cka_verdict = rnn_dynamics.majority(cka.values())
    rows = []
    for s, f in facts.items():
        rows += [
            Criterion(f"seed {s}: onset of linear similarity, first j, layers 1 to K",
                      f"at least {f['late_from']} in every layer", _ints(f["onset"]),
                      bool((f["onset"] >= f["late_from"]).all())),
            Criterion(f"seed {s}: PWCCA distance at j = {w - 2}, layers 1 to K",
                      f"below the sampling floor ({_fmt(f['floor'])})", _fmt(f["at_end"]),
                      bool((f["at_end"] < f["floor"]).all())),
            Criterion(f"seed {s}: mean onset over layers, after training against untrained",
                      f"later than the untrained network's ({f['untrained'].mean():.2f})",
                      float(f["onset"].mean()), f["from_training"]),
            Criterion(f"seed {s}: repeated input after a short context, mean PWCCA similarity "
                      "to the last repeat, layers 1 to K",
                      f"at least {REPEAT_SIMILARITY_MIN:g} in every layer",
                      _fmt(f["early_sim"]), f["high"]),
            Criterion(f"seed {s}: repeated input, mean PWCCA distance after a short context, "
                      "layers 1 to K",
                      f"below that after a long context ({_fmt(f['rep']['late'])})",
                      _fmt(f["rep"]["early"]), f["early_lower"]),
            Criterion(f"seed {s}: verdict", "holds if all rows above pass, partly if the first "
                      "two or the last two do", f["status"], None),
        ]
    onsets = [float(f["onset"].mean()) for f in facts.values()]
    untrained = [float(f["untrained"].mean()) for f in facts.values()]
    diffs = [a - b for a, b in zip(onsets, untrained, strict=True)]
    rows.append(Criterion("mean onset over layers, after training minus untrained, across seeds",
                          "reported (the per-seed rows compare point estimates)",
                          _onset_difference(diffs), None))
    same = sum(not f["from_training"] for f in facts.values())
    cfg = result.config.training
    nets = result.nets
    missed = nets.loc[~nets["trained"].astype(bool), "seed"].tolist()
    under = (f"; tested on under-trained nets: seed(s) {', '.join(str(s) for s in missed)} "
             "missed the trained rule" if missed else "")
    evidence = (
        f"{len(seeds)} {cfg.corpus} LSTMs {cfg.n_layers}x{cfg.hidden_size}, {result.n_windows} "
        f"windows of {w}; per-seed verdicts {', '.join(f['status'] for f in facts.values())}: "
        f"onset of linear similarity (mean over layers) j = "
        f"{rnn_dynamics._spread(onsets, '{:.1f}')} after training against "
        f"{rnn_dynamics._spread(untrained, '{:.1f}')} untrained, the untrained network as late "
        f"or later in {same} of {len(seeds)} seeds; after-training minus untrained onset "
        f"{_onset_difference(diffs)}; early repeated input, mean PWCCA "
        f"similarity {rnn_dynamics._spread(float(f['early_sim'].mean()) for f in facts.values())}"
        f" (needs {REPEAT_SIMILARITY_MIN:g}); linear CKA in place of PWCCA gives "
        f"{cka_verdict}{under}")
    setup = (
        ("dataset", "PTB and WikiText-2, word level", f"{cfg.corpus}"),
        ("architecture", "3-layer LSTM language model (awd-lstm-lm)",
         f"{cfg.n_layers}-layer LSTM, {cfg.hidden_size} units"),
        ("nets and seeds", "one network", f"{len(seeds)} networks, and each one untrained"),
        ("training", "PTB 500 epochs, WikiText-2 750 epochs",
         f"{rnn_dynamics.training_words(cfg)}, {cfg.epochs:g} epochs"),
        ("probe inputs", "windows of 20 timesteps",
         f"{result.n_windows} windows of {w} validation tokens; repeated token "
         f"{result.repeat_token!r} after {result.config.early_prefix} or "
         f"{result.config.late_prefix} tokens"),
    )
    return [Claim(id="C9", figure="fig-rnn-timesteps-trained, fig-rnn-timesteps-untrained, "
                                  "fig-rnn-timesteps-repeats",
                  evidence=evidence, criteria=tuple(rows),
                  status=verdict,
                  paper_value="not linearly similar until late in the sequence (no number "
                              "stated)",
                  ours=f"onset j = {rnn_dynamics._spread(onsets, '{:.1f}')} of {w} (untrained "
                       f"{rnn_dynamics._spread(untrained, '{:.1f}')})",
                  cka_agrees=cka_verdict == verdict, setup=setup)]


__all__ = ["FLOOR_MEASURES", "MEASURES", "Config", "Result", "blend_palette", "check",
           "curve_table", "onset_note", "plot_curves", "plot_repeats", "plot_toy",
           "repeated_probes", "run", "sanity_checks", "toy_states"]
