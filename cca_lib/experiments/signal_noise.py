"""Chapter: signal vs noise on toy data (the paper's Fig. 2, claim C1).

Two "layers" share ``k`` signal dimensions and differ in the rest, which is independent noise:

* ``x = [S, Nx]``: ``S`` is ``(n_points, k)`` iid N(0, 1) signal, ``Nx`` is ``(n_points, d - k)``
  iid N(0, sigma**2) noise;
* ``y = [S Q, Ny]``: the same signal under a random orthogonal ``k x k`` map ``Q``, and fresh
  noise ``Ny``.

CCA finds ``k`` coefficients equal to 1 (the shared signal, whatever ``Q`` is) and ``d - k``
chance correlations between the noise blocks. The unweighted mean of all ``d`` coefficients is
therefore the signal fraction ``k / d`` lifted by those chance correlations, while projection
weighting (PWCCA) weights each canonical direction by the sum of its absolute projections on
``x``'s neurons. How much weight the noise directions get depends on the noise level and on
``k / d`` (at small ``k`` the many noise neurons can give them most of it): :func:`run` records
the signal directions' share of PWCCA's weight at the smallest ``k``. The paper's
"N(0, 0.1)" can be read as a standard deviation of 0.1 or as a variance of 0.1 (standard
deviation 0.316): :func:`run` draws every ``k`` under each reading (``noise_stds``), and also
sweeps the noise level at the smallest ``k``. Each measure's sampling floor (unrelated inputs
of the same shape) comes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cca_lib import _checks, cca, compare
from cca_lib import stats as _stats
from cca_lib.claims import Claim, Criterion, status
from cca_lib.experiments._params import (
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    param,
    rule,
)

#: The paper's signal dimensionalities (out of 200 neurons).
PAPER_SIGNAL_DIMS = (20, 50, 70, 80, 100, 120, 140, 160, 180, 199)

#: The two readings of the paper's "N(0, 0.1)" noise: standard deviation 0.1, and variance 0.1.
PAPER_NOISE_READINGS = (0.1, 0.1 ** 0.5)

MEASURES = ("mean CCA", "SVCCA", "PWCCA", "linear CKA")


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Toy experiment parameters. Defaults are the quick profile (and the paper's sizes)."""

    n_neurons: int = param(200, "neurons per layer d", "200", check=UNITS)
    n_points: int = param(2000, "datapoints n", "2000", check=SAMPLES)
    signal_dims: tuple[int, ...] = param(
        PAPER_SIGNAL_DIMS, "shared (signal) dimensions k, one experiment each",
        "20, 50, 70, 80, 100, 120, 140, 160, 180, 199",
        check=rule(_checks.ints, ge=1, le=_checks.MAX_UNITS, distinct=True))
    noise_stds: tuple[float, ...] = param(
        PAPER_NOISE_READINGS, "standard deviations of the noise neurons, every k drawn under "
        "each: the paper's N(0, 0.1) read as standard deviation 0.1 and as variance 0.1",
        "N(0, 0.1)", check=rule(_checks.reals, gt=0, distinct=True))
    noise_sweep: tuple[float, ...] = param(
        (0.01, 0.03, 1.0),
        "further noise standard deviations tried at the smallest k (not in the paper)",
        check=rule(_checks.reals, gt=0))
    n_repeats: int = param(3, "independent draws per k and noise level (intervals over them)",
                           "not stated", check=rule(_checks.integer, ge=2, le=_checks.MAX_COUNT))
    svcca_keep: float = param(0.99, "SVCCA: fraction of variance kept per layer",
                              "0.99 in Raghu et al.", check=rule(_checks.real, gt=0, le=1))
    spectrum_dims: tuple[int, ...] = param(
        (20, 199), "values of k whose sorted CCA coefficients are kept (each in signal_dims)",
        check=rule(_checks.ints, ge=1, le=_checks.MAX_UNITS, distinct=True))
    seed: int = param(0, "seed of every random draw", check=SEED)

    def _validate(self) -> None:
        bad = [k for k in self.signal_dims if not 1 <= k <= self.n_neurons]
        if bad:
            raise ValueError(f"signal_dims must lie in [1, n_neurons={self.n_neurons}], got {bad}")
        if self.n_neurons < 2:
            raise ValueError(f"n_neurons must be at least 2, got {self.n_neurons}")
        if self.n_points <= 2 * self.n_neurons:
            raise ValueError(
                f"n_points={self.n_points} must exceed 2 * n_neurons={2 * self.n_neurons}: with "
                "fewer points the CCA coefficients are trivially 1")
        _checks.allocation("n_points x n_neurons", self.n_points * self.n_neurons)
        missing = sorted(set(self.spectrum_dims) - set(self.signal_dims))
        if missing:
            raise ValueError(f"spectrum_dims {missing} are not in signal_dims {self.signal_dims}")
        twice = sorted(set(self.noise_sweep) & set(self.noise_stds))
        if twice:
            raise ValueError(f"noise_sweep repeats the noise_stds {twice}: the smallest k is "
                             "drawn under every noise_stds value already")


def make_pair(k: int, config: Config, rng: np.random.Generator, noise_std: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """One toy pair ``(x, y)``, each ``(n_points, n_neurons)`` float64, sharing ``k`` dims, with
    noise of standard deviation ``noise_std`` (default: the first of ``config.noise_stds``)."""
    n, d = config.n_points, config.n_neurons
    sigma = config.noise_stds[0] if noise_std is None else noise_std
    signal = rng.standard_normal((n, k))
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    q *= np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
    x = np.hstack([signal, sigma * rng.standard_normal((n, d - k))])
    y = np.hstack([signal @ q, sigma * rng.standard_normal((n, d - k))])
    return x, y


#: Draws below which a spread is the range over draws rather than a bootstrap interval.
FEW_DRAWS = 10
#: Bootstrap replicates of an interval over draws.
N_BOOT = 2000
#: Permutations per sampling floor of SVCCA and linear CKA.
FLOOR_PERMUTATIONS = 10


def interval(values, seed: int) -> tuple[float, float, float]:
    """Mean of ``values`` (one per draw) with its spread: the 95% bootstrap interval over draws
    (:func:`cca_lib.stats.bootstrap_ci`), or the range over draws when there are fewer than
    :data:`FEW_DRAWS`. Returns ``(mean, low, high)``."""
    v = np.asarray(values, dtype=float)
    if len(v) < FEW_DRAWS:
        return float(v.mean()), float(v.min()), float(v.max())
    ci = _stats.bootstrap_ci(v, n_boot=N_BOOT, seed=seed)
    return ci.estimate, ci.low, ci.high


def spread_name(n_draws: int) -> str:
    """What :func:`interval` gives for ``n_draws`` draws, in words."""
    return ("range over draws" if n_draws < FEW_DRAWS else "95% bootstrap interval over draws")


@dataclass(frozen=True)
class Result:
    """Similarities per (noise level, k, repeat, measure), sorted CCA coefficients for a few k,
    the noise sweep at the smallest k and the sampling floors."""

    config: Config
    #: columns: noise_std, signal_dims, signal_fraction, repeat, measure, similarity
    similarities: pd.DataFrame
    spectra: pd.DataFrame  #: columns: noise_std, signal_dims, repeat, index, rho
    #: at k = min(signal_dims): columns noise_std, repeat, measure, similarity (the readings'
    #: draws and the sweep's)
    noise: pd.DataFrame = field(default_factory=pd.DataFrame)
    ones: dict[int, float] = field(default_factory=dict)  #: k -> mean number of rho > 0.999
    #: sampling floor (similarity of unrelated inputs of the same shape): noise_std,
    #: signal_dims, measure, floor
    floors: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: at k = min(signal_dims), every noise level of ``noise``: the share of PWCCA's weight
    #: (sum of alpha_i over the directions with rho_i > 0.999, the signal) per draw; columns
    #: noise_std, repeat, signal_weight
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_frame(self) -> pd.DataFrame:
        """Long-format similarities (one row per noise level, k, repeat and measure)."""
        return self.similarities.copy()

    def draws(self, noise_std: float, measure: str) -> pd.DataFrame:
        """Similarities under one noise level: rows = signal fraction, columns = repeats."""
        s = self.similarities
        sub = s[(s["noise_std"] == noise_std) & (s["measure"] == measure)]
        if sub.empty:
            raise ValueError(f"no draws for noise_std={noise_std!r}, measure={measure!r}")
        return sub.pivot(index="signal_fraction", columns="repeat", values="similarity")

    def summary(self, noise_std: float | None = None) -> pd.DataFrame:
        """Mean similarity per signal fraction (rows) and measure (columns) under one noise
        level (default: the first of ``noise_stds``)."""
        sigma = self.config.noise_stds[0] if noise_std is None else noise_std
        s = self.similarities[self.similarities["noise_std"] == sigma]
        table = s.pivot_table(index="signal_fraction", columns="measure", values="similarity",
                              aggfunc="mean")
        return table[list(MEASURES)]


def _floors(x: np.ndarray, y: np.ndarray, config: Config, seed: int) -> dict[str, float]:
    """Each measure's similarity for unrelated inputs of ``x``'s and ``y``'s shape: mean CCA and
    PWCCA in closed form (:func:`cca_lib.stats.expected_null`; exact in the large-n limit for
    rows of iid Gaussians, as here), SVCCA and linear CKA by shuffling the rows of ``y``
    (:func:`cca_lib.stats.permutation_null`)."""
    n, d = x.shape
    out = {m: _stats.expected_null(n, d, d, measure=m) for m in ("mean CCA", "PWCCA")}
    for m in ("SVCCA", "linear CKA"):
        out[m] = _stats.permutation_null(x, y, m, n_perm=FLOOR_PERMUTATIONS, seed=seed,
                                         keep=config.svcca_keep).floor
    return out


#: A CCA coefficient above this counts as a signal direction (the construction's check too).
SIGNAL_RHO = 0.999


def signal_weight(x: np.ndarray, y: np.ndarray) -> float:
    """The share of PWCCA's weight (:func:`cca_lib.pwcca` with weights from ``x``) on the
    directions whose CCA coefficient exceeds :data:`SIGNAL_RHO`: ``sum alpha_i`` over them, with
    ``alpha_i`` proportional to ``sum_j |<h_i, z_j>|`` (``h_i`` the canonical variates of ``x``,
    ``z_j`` its centered neurons)."""
    res = cca(x, y)
    alpha = np.abs((x - x.mean(axis=0)).T @ res.x_variates).sum(axis=0)
    return float(alpha[res.rho > SIGNAL_RHO].sum() / alpha.sum())


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Compute every measure for every noise level in ``noise_stds``, every ``k`` in
    ``signal_dims`` and every repeat; the noise sweep at the smallest ``k`` with the signal
    directions' share of PWCCA's weight there (:func:`signal_weight`); the floors at the
    smallest and largest ``k`` (first draw)."""
    from cca_lib._progress import bar as tqdm_bar

    rng = np.random.default_rng(config.seed)
    rows, spectra, noise_rows, floors, weight_rows = [], [], [], [], []
    ones: dict[int, list[int]] = {}
    k_min, k_max = min(config.signal_dims), max(config.signal_dims)
    jobs = [(sigma, k, r, True) for sigma in config.noise_stds for k in config.signal_dims
            for r in range(config.n_repeats)]
    jobs += [(s, k_min, r, False) for s in config.noise_sweep for r in range(config.n_repeats)]
    for sigma, k, repeat, main in tqdm_bar(jobs, desc="toy pairs", progress=progress):
        x, y = make_pair(k, config, rng, sigma)
        values = compare(x, y, keep=config.svcca_keep)
        if k == k_min:
            noise_rows.extend({"noise_std": sigma, "repeat": repeat, "measure": m,
                               "similarity": values[m]} for m in MEASURES)
            weight_rows.append({"noise_std": sigma, "repeat": repeat,
                                "signal_weight": signal_weight(x, y)})
        if not main:
            continue
        rows.extend({"noise_std": sigma, "signal_dims": k,
                     "signal_fraction": k / config.n_neurons, "repeat": repeat, "measure": m,
                     "similarity": values[m]} for m in MEASURES)
        if repeat == 0 and k in (k_min, k_max):
            fl = _floors(x, y, config, config.seed + k)
            floors.extend({"noise_std": sigma, "signal_dims": k, "measure": m, "floor": v}
                          for m, v in fl.items())
        if sigma != config.noise_stds[0]:
            continue
        rho = cca(x, y, variates=False).rho  # the construction's check and the spectra
        ones.setdefault(k, []).append(int(np.sum(rho > SIGNAL_RHO)))
        if k in config.spectrum_dims:
            spectra.extend({"noise_std": sigma, "signal_dims": k, "repeat": repeat, "index": i,
                            "rho": float(v)} for i, v in enumerate(rho))
    return Result(
        config=config,
        similarities=pd.DataFrame(rows),
        spectra=pd.DataFrame(spectra, columns=["noise_std", "signal_dims", "repeat", "index",
                                               "rho"]),
        ones={k: float(np.mean(v)) for k, v in ones.items()},
        noise=pd.DataFrame(noise_rows, columns=["noise_std", "repeat", "measure", "similarity"]),
        floors=pd.DataFrame(floors, columns=["noise_std", "signal_dims", "measure", "floor"]),
        weights=pd.DataFrame(weight_rows, columns=["noise_std", "repeat", "signal_weight"]),
    )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _errorbar(cfg: Config):
    """seaborn's spread over draws matching :func:`interval`: the range for few draws."""
    return ("pi", 100) if cfg.n_repeats < FEW_DRAWS else ("ci", 95)


def plot_signal_noise(result: Result):
    """Similarity vs signal fraction under each noise reading (solid: the first of
    ``noise_stds``, dashed: the others; band: the spread over draws; dotted: each measure's
    sampling floor at the smallest k; sparse dots: the diagonal k/d), one panel as wide as the
    book's column with the legend beside it. Returns the ``Figure``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from cca_lib.plotting import COLUMN_WIDTH_IN, MEASURE_COLORS

    cfg = result.config
    frame = result.to_frame()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 4.0), constrained_layout=True)
    measures = [m for m in MEASURE_COLORS if m in set(frame["measure"])]
    frame = frame.assign(noise=[f"std {s:.3g}" for s in frame["noise_std"]])
    styles = [f"std {s:.3g}" for s in cfg.noise_stds]
    sns.lineplot(data=frame, x="signal_fraction", y="similarity", hue="measure",
                 hue_order=measures, palette=MEASURE_COLORS, style="noise", style_order=styles,
                 marker="o", errorbar=_errorbar(cfg), ax=ax)
    k_min = min(cfg.signal_dims)
    if len(result.floors):
        fl = result.floors[result.floors["signal_dims"] == k_min]
        for m, v in fl.groupby("measure")["floor"].mean().items():
            ax.axhline(v, ls=":", lw=1.2, color=MEASURE_COLORS.get(m, "grey"))
    ax.plot([0, 1], [0, 1], ls=(0, (1, 3)), color="black", lw=1, label="signal fraction k/d")
    ax.set(xlabel="signal fraction k / d", ylabel="similarity", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Similarity vs shared signal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", frameon=False)
    return fig


#: Where the sorted coefficients' shades stop on the viridis map (its last tenth is too pale to
#: see on white).
SHADE_END = 0.8


def plot_coefficients(result: Result):
    """The sorted CCA coefficients for each k of ``spectrum_dims`` (first noise reading; shades
    of a viridis map cut short of its pale end), and, if the result has noise rows, each
    measure against the noise level at the smallest k (dashed: the readings of the paper's
    noise), side by side in the book's column. Returns the ``Figure``."""
    import matplotlib
    import seaborn as sns

    from cca_lib import plotting
    from cca_lib.plotting import MEASURE_COLORS

    cfg = result.config
    spectra, noise = result.spectra, result.noise
    kinds = [k for k, rows in (("spectra", spectra), ("noise", noise)) if len(rows)]
    if not kinds:
        raise ValueError("result has neither spectra nor noise rows to plot")
    fig, axes = plotting.grid(len(kinds), ncols=2, panel=(3.45, 3.4))
    panels = dict(zip(kinds, axes, strict=True))
    if "spectra" in panels:
        ax = panels["spectra"]
        dims = sorted(set(spectra["signal_dims"]))
        # a sequential map without its near-white end: every shade stays visible on white
        shades = matplotlib.colormaps["viridis"](np.linspace(0, SHADE_END, len(dims)))
        sns.lineplot(data=spectra, x="index", y="rho", hue="signal_dims", hue_order=dims,
                     palette=dict(zip(dims, shades, strict=True)), errorbar=None, ax=ax)
        ax.set(xlabel="canonical direction (sorted)", ylabel=r"CCA coefficient $\rho_i$",
               ylim=(0, 1.02), title="Sorted CCA coefficients")
        ax.legend(title=f"k (noise std {cfg.noise_stds[0]:.3g})", fontsize="small",
                  title_fontsize="small", loc="upper right")
    if "noise" in panels:
        ax = panels["noise"]
        measures = [m for m in MEASURE_COLORS if m in set(noise["measure"])]
        sns.lineplot(data=noise, x="noise_std", y="similarity", hue="measure",
                     hue_order=measures, palette=MEASURE_COLORS, marker="o",
                     errorbar=_errorbar(cfg), ax=ax)
        for s in cfg.noise_stds:
            ax.axvline(s, ls="--", lw=0.8, color="grey")
        ax.set(xscale="log", xlabel="noise standard deviation", ylabel="similarity",
               ylim=(0, 1.02), title=f"Smallest k = {min(cfg.signal_dims)}, varying noise")
        # below the panel: the lines fill the whole of it
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2,
                  frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Check (claim C1)
# ---------------------------------------------------------------------------------------------

#: Mean CCA tracks k/d: over the range of k it must fall by more than this fraction of the range
#: of k/d (it would fall by the whole range if it were exactly k/d), the low end of the drop's
#: spread over draws counted.
MEAN_FALL_FRACTION = 0.5
#: ... and rise monotonically with k/d: the Spearman correlation of its means with k/d must
#: exceed this.
MEAN_SPEARMAN_MIN = 0.9
#: PWCCA is robust if its drop over the range of k is less than this fraction of mean CCA's
#: (the high end of the drop's spread counted) ...
ROBUST_DROP_RATIO = 0.25
#: ... and it stays above this value at every k, the low end of its spread counted (the claim is
#: "remains robust", not "falls less").
ROBUST_MIN = 0.9
#: The construction is exact: CCA finds k coefficients equal to 1, on average over the draws,
#: to within this tolerance.
ONES_TOL = 1e-9


def sanity_checks(result: Result) -> tuple[Criterion, ...]:
    """What must hold for the toy to mean anything: CCA finds exactly ``k`` coefficients equal
    to 1 (above 0.999) for every ``k``."""
    off = max(abs(result.ones[k] - k) for k in result.config.signal_dims)
    return (Criterion("coefficients equal to 1 minus k, largest deviation over k",
                      f"below {ONES_TOL:g}", off, bool(off < ONES_TOL)),)


def combine(statuses) -> str:
    """One verdict over the readings of the noise: "holds" if it holds under every reading,
    "does not hold" if it holds under none, even partly; "partly" otherwise."""
    statuses = list(statuses)
    if all(s == "holds" for s in statuses):
        return "holds"
    return "does not hold" if all(s == "does not hold" for s in statuses) else "partly"


def _drop_spread(hi: np.ndarray, lo: np.ndarray, seed: int) -> tuple[float, float, float]:
    """The drop mean(hi) - mean(lo) over independent draws, with its spread: the 95% bootstrap
    interval of the difference, or (few draws) the widest difference of the ranges."""
    if min(len(hi), len(lo)) < FEW_DRAWS:
        return float(hi.mean() - lo.mean()), float(hi.min() - lo.max()), \
            float(hi.max() - lo.min())
    ci = _stats.bootstrap_diff_ci(hi, lo, n_boot=N_BOOT, seed=seed)
    return ci.estimate, ci.low, ci.high


def _reading(result: Result, sigma: float, robust: str) -> tuple[str, tuple[Criterion, ...],
                                                                  dict]:
    """Claim C1 under noise std ``sigma``, with ``robust`` (PWCCA, or linear CKA for the
    agreement) as the measure that should stay robust."""
    seed = result.config.seed
    mean_draws, rob_draws = result.draws(sigma, "mean CCA"), result.draws(sigma, robust)
    fracs = mean_draws.index.to_numpy()
    lo, hi = fracs.min(), fracs.max()
    means = mean_draws.mean(axis=1)
    spearman = float(pd.Series(fracs).corr(pd.Series(means.to_numpy()), method="spearman"))
    mean_drop = _drop_spread(mean_draws.loc[hi].to_numpy(), mean_draws.loc[lo].to_numpy(), seed)
    rob_drop = _drop_spread(rob_draws.loc[hi].to_numpy(), rob_draws.loc[lo].to_numpy(), seed)
    gaps = {f: interval(rob_draws.loc[f] - mean_draws.loc[f], seed) for f in fracs if f < 1}
    rob = {f: interval(rob_draws.loc[f], seed) for f in fracs}
    gap_low = min((g[1] for g in gaps.values()), default=float("nan"))
    rob_low = min(r[1] for r in rob.values())
    fall_needed = MEAN_FALL_FRACTION * (hi - lo)
    robust_drop = ROBUST_DROP_RATIO * mean_drop[0]
    s = f"noise std {sigma:.3g}: "
    criteria = (
        Criterion(s + "mean CCA's drop from the largest to the smallest k/d, low end of its "
                  "spread", f"more than {MEAN_FALL_FRACTION:g} x the range of k/d "
                  f"({fall_needed:.3f})", mean_drop[1], bool(mean_drop[1] > fall_needed)),
        Criterion(s + "Spearman correlation of mean CCA with k/d",
                  f"above {MEAN_SPEARMAN_MIN:g}", spearman, bool(spearman > MEAN_SPEARMAN_MIN)),
        Criterion(s + f"{robust} minus mean CCA, lowest low end of its spread over k < d",
                  "above 0 at every k < d", gap_low if gaps else "no k < d",
                  bool(gaps) and bool(gap_low > 0)),
        Criterion(s + f"{robust}'s drop from the largest to the smallest k/d, high end of its "
                  "spread", f"less than {ROBUST_DROP_RATIO:g} x mean CCA's drop "
                  f"({robust_drop:.3f})", rob_drop[2], bool(rob_drop[2] < robust_drop)),
        Criterion(s + f"{robust}'s lowest low end of its spread over k",
                  f"above {ROBUST_MIN:g}", rob_low, bool(rob_low > ROBUST_MIN)),
    )
    mean_falls = criteria[0].passed and criteria[1].passed
    robust_ok = criteria[3].passed and criteria[4].passed
    verdict = status(bool(mean_falls and robust_ok), bool(mean_falls and criteria[2].passed))
    facts = {"lo": lo, "hi": hi, "rob_lo": rob[lo], "rob_hi": rob[hi],
             "mean_lo": interval(mean_draws.loc[lo], seed), "robust": bool(robust_ok),
             "above": bool(criteria[2].passed), "status": verdict}
    return verdict, criteria, facts


def _fmt(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def check(result: Result) -> list[Claim]:
    """Claim C1, under each reading of the paper's noise (``noise_stds``), from the draws and
    their spread (:func:`interval`): (a) mean CCA falls with the signal fraction and tracks it;
    (b) PWCCA is robust (its drop less than ``ROBUST_DROP_RATIO`` of mean CCA's, and above
    ``ROBUST_MIN`` throughout). A reading holds if (a) and (b); partly if (a) and PWCCA is above
    mean CCA at every ``k < d``; does not hold otherwise. The claim's verdict is
    :func:`combine` over the readings: it holds only if it holds under every reading. CKA
    agrees if linear CKA in PWCCA's place gives the same verdict."""
    cfg = result.config
    readings = {s: _reading(result, s, "PWCCA") for s in cfg.noise_stds}
    cka = combine(_reading(result, s, "linear CKA")[0] for s in cfg.noise_stds)
    verdict = combine(v for v, _, _ in readings.values())
    criteria = tuple(c for _, rows, _ in readings.values() for c in rows) + tuple(
        Criterion(f"noise std {s:.3g}: verdict", "holds if the mean CCA rows and the robustness "
                  "rows pass, partly if the mean CCA rows and PWCCA above mean CCA do", v, None)
        for s, (v, _, _) in readings.items())
    spread = spread_name(cfg.n_repeats)
    parts = []
    for s, (v, _, f) in readings.items():
        parts.append(f"noise std {s:.3g}: {v}; at k/d = {f['lo']:.2f} PWCCA "
                     f"{_fmt(f['rob_lo'])} against mean CCA {_fmt(f['mean_lo'])}, at k/d = "
                     f"{f['hi']:.3f} PWCCA {_fmt(f['rob_hi'])}")
    noise = result.noise[result.noise["measure"] == "PWCCA"].groupby("noise_std")["similarity"]
    sweep = ", ".join(f"{s:.3g}: {v:.3f}" for s, v in noise.mean().items())
    floor = result.floors[result.floors["measure"] == "mean CCA"]["floor"]
    evidence = (f"d = {cfg.n_neurons}, n = {cfg.n_points}, {cfg.n_repeats} draws per k and noise "
                f"level (brackets: {spread}); " + "; ".join(parts)
                + f"; holds only if it holds under both readings of N(0, 0.1); PWCCA at "
                f"k = {min(cfg.signal_dims)} by noise std: {sweep}; mean CCA's sampling floor "
                f"{floor.mean():.3f}; linear CKA in place of PWCCA gives {cka}")
    k_floor = floor[result.floors["signal_dims"] == min(cfg.signal_dims)].mean()
    ours = (f"at k/d = {min(cfg.signal_dims) / cfg.n_neurons:.2f}: "
            + "; ".join(f"std {s:.3g}: PWCCA {_fmt(f['rob_lo'])}, mean CCA "
                        f"{f['mean_lo'][0]:.3f}" for s, (_, _, f) in readings.items())
            + f"; sampling floor {k_floor:.3f}")
    setup = (
        ("dataset", "synthetic: 200 neurons, 2000 points, N(0, 0.1) noise",
         f"synthetic: {cfg.n_neurons} neurons, {cfg.n_points} points, noise std "
         + " and ".join(f"{s:.3g}" for s in cfg.noise_stds)),
        ("architecture", "none (toy data)", "none (toy data)"),
        ("nets and seeds", "draws per k not stated",
         f"{cfg.n_repeats} draws per k and noise level"),
        ("training", "none", "none"),
        ("probe inputs", "2000 points", f"{cfg.n_points} points"),
    )
    return [Claim(id="C1", figure="fig-signal-noise-similarity",
                  evidence=evidence, criteria=criteria,
                  status=verdict, paper_value="PWCCA stays high as the signal fraction falls "
                  "while mean CCA falls (no number stated)", ours=ours,
                  cka_agrees=cka == verdict, setup=setup)]


def floor_note(result: Result) -> str:
    """A sentence, from the numbers, on where the measures sit relative to their sampling
    floors at the smallest signal fraction (first noise reading)."""
    cfg = result.config
    k = min(cfg.signal_dims)
    sigma = cfg.noise_stds[0]
    means = result.summary(sigma).loc[k / cfg.n_neurons]
    fl = result.floors[(result.floors["signal_dims"] == k)
                       & (result.floors["noise_std"] == sigma)].set_index("measure")["floor"]
    parts = [f"{m} {means[m]:.3f} against a floor of {fl[m]:.3f}" for m in MEASURES]
    return (f"At the smallest signal fraction (k = {k}, noise std {sigma:.3g}), each measure "
            f"against what unrelated inputs of the same shape give: " + "; ".join(parts) + ".")
