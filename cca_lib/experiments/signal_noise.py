"""Chapter: signal vs noise on toy data (the paper's Fig. 2, claim C1).

Two "layers" share ``k`` signal dimensions and differ in the rest, which is independent noise:

* ``x = [S, Nx]``: ``S`` is ``(n_points, k)`` iid N(0, 1) signal, ``Nx`` is ``(n_points, d - k)``
  iid N(0, noise_std**2) noise;
* ``y = [S Q, Ny]``: the same signal under a random orthogonal ``k x k`` map ``Q``, and fresh
  noise ``Ny``.

CCA finds ``k`` coefficients equal to 1 (the shared signal, whatever ``Q`` is) and ``d - k``
small chance correlations between the noise blocks. The unweighted mean of all ``d`` coefficients
is therefore close to the signal fraction ``k / d``, while projection weighting (PWCCA) weights
each canonical direction by how much of ``x``'s activity it accounts for. How much weight the
noise directions still get depends on the noise level, so :func:`run` also sweeps ``noise_std``
at the smallest ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cca_lib import _checks, cca, compare
from cca_lib.claims import Claim, Criterion, status, yes_no
from cca_lib.experiments._params import (
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    param,
    rule,
)

#: The paper's signal dimensionalities (out of 200 neurons).
PAPER_SIGNAL_DIMS = (20, 50, 70, 80, 100, 120, 140, 160, 180, 199)

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
    noise_std: float = param(0.1, "standard deviation of the noise neurons", "N(0, 0.1)",
                             check=POSITIVE)
    noise_sweep: tuple[float, ...] = param(
        (0.01, 0.03, 0.1, 0.3, 1.0),
        "noise standard deviations tried at the smallest k (not in the paper)",
        check=rule(_checks.reals, gt=0))
    n_repeats: int = param(3, "independent draws per k", "not stated", check=POSITIVE_COUNT)
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


def make_pair(k: int, config: Config, rng: np.random.Generator, noise_std: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """One toy pair ``(x, y)``, each ``(n_points, n_neurons)`` float64, sharing ``k`` dims, with
    noise of standard deviation ``noise_std`` (default: ``config.noise_std``)."""
    n, d = config.n_points, config.n_neurons
    sigma = config.noise_std if noise_std is None else noise_std
    signal = rng.standard_normal((n, k))
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    q *= np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
    x = np.hstack([signal, sigma * rng.standard_normal((n, d - k))])
    y = np.hstack([signal @ q, sigma * rng.standard_normal((n, d - k))])
    return x, y


@dataclass(frozen=True)
class Result:
    """Similarities per (k, repeat, measure), and sorted CCA coefficients for a few k."""

    config: Config
    #: columns: signal_dims, signal_fraction, repeat, measure, similarity
    similarities: pd.DataFrame
    spectra: pd.DataFrame  #: columns: signal_dims, repeat, index, rho
    #: at k = min(signal_dims): columns noise_std, repeat, measure, similarity
    noise: pd.DataFrame = field(default_factory=pd.DataFrame)
    ones: dict[int, float] = field(default_factory=dict)  #: k -> mean number of rho > 0.999

    def to_frame(self) -> pd.DataFrame:
        """Long-format similarities (one row per k, repeat and measure), for seaborn."""
        return self.similarities.copy()

    def summary(self) -> pd.DataFrame:
        """Mean similarity per signal fraction (rows) and measure (columns)."""
        table = self.similarities.pivot_table(index="signal_fraction", columns="measure",
                                              values="similarity", aggfunc="mean")
        return table[list(MEASURES)]


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Compute every measure for every ``k`` in ``config.signal_dims`` and every repeat."""
    from cca_lib._progress import bar as tqdm_bar

    rng = np.random.default_rng(config.seed)
    rows, spectra, noise_rows = [], [], []
    ones: dict[int, list[int]] = {}
    k_min = min(config.signal_dims)
    jobs = [(k, r, None) for k in config.signal_dims for r in range(config.n_repeats)]
    jobs += [(k_min, r, s) for s in config.noise_sweep for r in range(config.n_repeats)]
    for k, repeat, sigma in tqdm_bar(jobs, desc="toy pairs", progress=progress):
        x, y = make_pair(k, config, rng, sigma)
        values = compare(x, y, keep=config.svcca_keep)
        if sigma is not None:
            noise_rows.extend({"noise_std": sigma, "repeat": repeat, "measure": m,
                               "similarity": values[m]} for m in MEASURES)
            continue
        rho = cca(x, y, variates=False).rho
        ones.setdefault(k, []).append(int(np.sum(rho > 0.999)))
        rows.extend({"signal_dims": k, "signal_fraction": k / config.n_neurons,
                     "repeat": repeat, "measure": m, "similarity": values[m]} for m in MEASURES)
        if k in config.spectrum_dims:
            spectra.extend({"signal_dims": k, "repeat": repeat, "index": i, "rho": float(v)}
                           for i, v in enumerate(rho))
    return Result(
        config=config,
        similarities=pd.DataFrame(rows),
        spectra=pd.DataFrame(spectra, columns=["signal_dims", "repeat", "index", "rho"]),
        ones={k: float(np.mean(v)) for k, v in ones.items()},
        noise=pd.DataFrame(noise_rows, columns=["noise_std", "repeat", "measure", "similarity"]),
    )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def plot_signal_noise(result: Result):
    """Similarity vs signal fraction (left), sorted CCA coefficients (middle), similarity vs
    noise level at the smallest signal fraction (right, if the noise sweep has rows); mean ± sd
    over repeats. Returns the ``Figure``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from cca_lib.plotting import MEASURE_COLORS

    frame, spectra, noise = result.to_frame(), result.spectra, result.noise
    panels = 3 if len(noise) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), constrained_layout=True)
    ax, ax2 = axes[0], axes[1]
    measures = [m for m in MEASURE_COLORS if m in set(frame["measure"])]
    sns.lineplot(data=frame, x="signal_fraction", y="similarity", hue="measure",
                 hue_order=measures, palette=MEASURE_COLORS, marker="o", errorbar="sd", ax=ax)
    ax.plot([0, 1], [0, 1], ls=":", color="black", lw=1, label="signal fraction k/d")
    ax.set(xlabel="signal fraction k / d", ylabel="similarity", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Similarity vs shared signal")
    ax.legend(loc="lower right", fontsize="small")
    if len(spectra):
        sns.lineplot(data=spectra, x="index", y="rho", hue="signal_dims", palette="viridis",
                     errorbar=None, ax=ax2)
        ax2.set(xlabel="canonical direction (sorted)", ylabel=r"CCA coefficient $\rho_i$",
                ylim=(0, 1.02), title="Sorted CCA coefficients")
        ax2.legend(title="signal dims k", fontsize="small")
    else:
        ax2.set_visible(False)
    if panels == 3:
        ax3 = axes[2]
        sns.lineplot(data=noise, x="noise_std", y="similarity", hue="measure",
                     hue_order=measures, palette=MEASURE_COLORS, marker="o", errorbar="sd",
                     ax=ax3, legend=False)
        ax3.set(xscale="log", xlabel="noise standard deviation", ylabel="similarity",
                ylim=(0, 1.02), title="Smallest signal fraction, varying noise")
    return fig



# ---------------------------------------------------------------------------------------------
# Check (claim C1)
# ---------------------------------------------------------------------------------------------

#: Mean CCA tracks k/d: over the range of k it must fall by more than this fraction of the range
#: of k/d (it would fall by the whole range if it were exactly k/d).
MEAN_FALL_FRACTION = 0.5
#: ... and rise monotonically with k/d: its Spearman correlation with k/d must exceed this.
MEAN_SPEARMAN_MIN = 0.9
#: PWCCA is robust if its drop over the range of k is less than this fraction of mean CCA's ...
ROBUST_DROP_RATIO = 0.25
#: ... and it stays above this value at every k (the claim is "remains robust", not "falls less").
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


def check(result: Result) -> list[Claim]:
    """Claim C1 on the means over draws: (a) mean CCA falls with the signal fraction and tracks
    it; (b) PWCCA is robust (its drop less than ``ROBUST_DROP_RATIO`` of mean CCA's, and above
    ``ROBUST_MIN`` throughout). Holds if (a) and (b); partly if (a) and PWCCA is above mean CCA
    at every ``k < d``; does not hold otherwise."""
    cfg = result.config
    means = result.summary()
    lo, hi = means.index.min(), means.index.max()
    drop = {m: means.loc[hi, m] - means.loc[lo, m] for m in means.columns}
    spearman = means.reset_index().corr(method="spearman").loc["signal_fraction"]
    fall_needed = MEAN_FALL_FRACTION * (hi - lo)
    below_d = means.index < 1
    gaps = means.loc[below_d, "PWCCA"] - means.loc[below_d, "mean CCA"]
    pwcca_above = bool((means.loc[below_d, "PWCCA"] > means.loc[below_d, "mean CCA"]).all())
    robust_drop = ROBUST_DROP_RATIO * drop["mean CCA"]
    criteria = (
        Criterion("mean CCA's drop from the largest to the smallest k/d",
                  f"more than {MEAN_FALL_FRACTION:g} x the range of k/d ({fall_needed:.3f})",
                  drop["mean CCA"], bool(drop["mean CCA"] > fall_needed)),
        Criterion("Spearman correlation of mean CCA with k/d",
                  f"above {MEAN_SPEARMAN_MIN:g}", spearman["mean CCA"],
                  bool(spearman["mean CCA"] > MEAN_SPEARMAN_MIN)),
        Criterion("PWCCA minus mean CCA, smallest over k < d", "above 0 at every k < d",
                  float(gaps.min()) if len(gaps) else "no k < d", pwcca_above),
        Criterion("PWCCA's drop from the largest to the smallest k/d",
                  f"less than {ROBUST_DROP_RATIO:g} x mean CCA's drop ({robust_drop:.3f})",
                  drop["PWCCA"], bool(drop["PWCCA"] < robust_drop)),
        Criterion("PWCCA's lowest mean over k", f"above {ROBUST_MIN:g}",
                  means["PWCCA"].min(), bool(means["PWCCA"].min() > ROBUST_MIN)),
    )
    mean_falls = criteria[0].passed and criteria[1].passed
    pwcca_robust = criteria[3].passed and criteria[4].passed
    noise = result.noise.groupby(["noise_std", "measure"])["similarity"].mean().unstack()
    sweep = (f"; PWCCA at k = {min(cfg.signal_dims)} by noise std: " + ", ".join(
        f"{s:g}: {v:.3f}" for s, v in noise["PWCCA"].items())) if len(noise) else ""

    def span(m: str) -> str:
        return f"{m} {means.loc[lo, m]:.3f} to {means.loc[hi, m]:.3f}"

    evidence = (f"k/d from {lo:.2f} to {hi:.3f}: {span('mean CCA')}, {span('PWCCA')}, "
                f"{span('SVCCA')} (d = {cfg.n_neurons}, n = {cfg.n_points}, {cfg.n_repeats} "
                f"draws, noise std {cfg.noise_std:g}); PWCCA above mean CCA at every k: "
                f"{yes_no(pwcca_above)}; robust (drop under {ROBUST_DROP_RATIO:g} of mean CCA's, "
                f"minimum above {ROBUST_MIN:g}): {yes_no(pwcca_robust)}{sweep}")
    return [Claim(id="C1", figure="Figure 1", evidence=evidence, criteria=criteria,
                  status=status(mean_falls and pwcca_robust, mean_falls and pwcca_above))]
