"""Chapter 1: signal vs noise on toy data (the paper's Fig. 2, claim C1).

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
from cca_lib.experiments._params import (
    POSITIVE,
    POSITIVE_COUNT,
    SAMPLES,
    SEED,
    UNITS,
    ChapterConfig,
    check,
    param,
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
        check=check(_checks.ints, ge=1, le=_checks.MAX_UNITS, distinct=True))
    noise_std: float = param(0.1, "standard deviation of the noise neurons", "N(0, 0.1)",
                             check=POSITIVE)
    noise_sweep: tuple[float, ...] = param(
        (0.01, 0.03, 0.1, 0.3, 1.0),
        "noise standard deviations tried at the smallest k (not in the paper)",
        check=check(_checks.reals, gt=0))
    n_repeats: int = param(3, "independent draws per k", "not stated", check=POSITIVE_COUNT)
    svcca_keep: float = param(0.99, "SVCCA: fraction of variance kept per layer",
                              "0.99 in Raghu et al.", check=check(_checks.real, gt=0, le=1))
    spectrum_dims: tuple[int, ...] = param(
        (20, 199), "values of k whose sorted CCA coefficients are kept (each in signal_dims)",
        check=check(_checks.ints, ge=1, le=_checks.MAX_UNITS, distinct=True))
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

