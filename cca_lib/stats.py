r"""Uncertainty and nulls: bootstrap intervals, permutation tests, Mantel tests, sampling floors.

Every function is pure and seeded: it takes an explicit int ``seed`` (``None`` is an error), the
same arguments give the same numbers, and nothing global is touched. Only numpy and scipy are
needed. Resampling is vectorized where the statistic allows (means, the distance contrasts, the
Mantel correlation, the fast measure nulls); other statistics are called once per resample.

**Which tool when.**

* *A headline number with its spread* (a mean over independent units: seeds, or networks):
  :func:`bootstrap_ci` gives a percentile (or ``method="bca"``) interval. Units must be
  independent: when several values share a source (pairs sharing a network, rows from one
  image), pass ``groups`` so whole clusters are resampled.
* *A statistic of pairwise distances between networks* (the mean distance over pairs, the gap
  between within- and between-group distances): the pairs are not independent (each network
  is in many pairs), so :func:`bootstrap_pairs` resamples the *networks* (nodes) and
  recomputes the statistic on the distance matrix of the resampled networks (pairs of two
  copies of one network are left out); :func:`group_distance_ci` is the interval of a
  within/between contrast, resampling networks within each group.
* *"A is closer than B"* from two sets of independent values: :func:`bootstrap_diff_ci` gives
  the interval of ``mean(a) - mean(b)`` (``paired=True`` when ``a[i]`` and ``b[i]`` share a unit,
  e.g. one seed); the verdict is directional when :func:`excludes_zero`.
* *A group comparison as a test*: :func:`permutation_test` shuffles the group labels of
  independent units; :func:`group_distance_test` shuffles the *node* labels of a distance
  matrix and recomputes a contrast ("within-group distances smaller than between-group"). No
  p-value is ever computed over pairs as if they were independent.
* *Two distance matrices over the same networks* (e.g. distance against learning-rate gap):
  :func:`mantel` permutes the rows and columns of one matrix jointly.
* *How high unrelated data scores* for a measure at this ``n`` and ``d``:
  :func:`permutation_null` shuffles the rows of one input (whole inputs when ``groups`` says
  which rows come from one image or sequence) and returns the null distribution, its mean (the
  sampling floor) and the p-value of the observed value. For the library's measures it
  recomputes only ``x'y`` per permutation; :func:`permutation_nulls` gives every measure of
  :data:`NULL_MEASURES` under the same permutations at once (or, with ``chunk_rows``, through
  :class:`cca_lib.Accumulator` in chunks of rows, for data beyond memory).
  :func:`expected_null` gives the same floor for independent Gaussian data in closed form,
  without any CCA.
* *The sampling spread of a measure over inputs*: :func:`bootstrap_measure` resamples rows
  (or groups of rows) with replacement and recomputes the measure.

**p-values.** A Monte Carlo p-value counts the permutations at least as extreme as the
observed statistic, ``(1 + k) / (1 + n_perm)``, so it is never 0. When the number of distinct
relabelings (or permutations) is at most ``n_perm``, all of them are enumerated and the p-value
is exact (``k / count``, the observed labeling counted once among them); the result says which
(``exact``). ``alternative``: ``"greater"`` (large statistics are extreme), ``"less"``, or
``"two-sided"`` (twice the smaller one-sided p-value, at most 1). Statistics equal to the
observed one up to ``1e-10`` relative count as at least as extreme.

**Intervals.** Percentile intervals take the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles of the bootstrap replicates. BCa (``method="bca"``, in :func:`bootstrap_ci` and
:func:`bootstrap_diff_ci`) corrects them for bias and skew, with the acceleration from the
jackknife over the resampled units; with very few units (say fewer than 10) no bootstrap
interval is reliable, and the across-seed range is the honest summary.

**Sampling floors in closed form.** For independent Gaussian ``x`` ``(n, d1)`` and ``y``
``(n, d2)``, ``p = min(d1, d2)``, ``q = max(d1, d2)``, ``m = n - 1`` (one degree of freedom goes
to centering), the squared canonical correlations follow, as ``n`` grows with ``p/m`` and
``q/m`` fixed, the Wachter law (Wachter 1980) with density
:math:`\sqrt{(\lambda_+ - \lambda)(\lambda - \lambda_-)} / (2\pi c_1 \lambda (1 - \lambda))`
on :math:`[\lambda_-, \lambda_+]`, :math:`c_1 = p/m`, :math:`c_2 = q/m`,
:math:`\lambda_\pm = (\sqrt{c_2(1-c_1)} \pm \sqrt{c_1(1-c_2)})^2`. The expected mean CCA is the
mean of :math:`\sqrt\lambda` under it (this needs only one input to be Gaussian with independent
rows, any covariance: its distribution is then invariant under rotations of the sample space,
and so is its column space). PWCCA has the same expectation: with ``y`` rotation invariant in
that sense, ``x``'s canonical variates are a Haar-random rotation within ``x``'s column space,
independent of the correlations, so the weights are exchangeable and independent of the
``rho`` they weight. SVCCA is mean CCA on the directions it keeps, counted here for isotropic
data from the Marchenko-Pastur quantiles of the eigenvalues. Linear CKA's expectation follows
from the Wishart moments
:math:`E\,\mathrm{tr}(W^2) = m(m+1)d + m d^2` and :math:`E\|x^\top y\|_F^2 = m d_1 d_2`:
:math:`\sqrt{d_1 d_2 / ((n + d_1)(n + d_2))}` for isotropic data (for anisotropic data,
replace each ``d`` by the participation ratio :math:`(\mathrm{tr}\Sigma)^2/\mathrm{tr}\Sigma^2`).
On simulated nulls (``n`` from 60 to 1030, ``d`` from 5 to 512, also at few samples per
feature) these are within 3% of the simulated means (``tests/test_stats.py`` checks a few);
for ``d`` of 1 or 2 the limit law is coarser (up to 8%).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import integrate, special
from scipy.stats import rankdata

from cca_lib import similarity as _sim
from cca_lib._validation import (
    FewSamplesWarning,
    check_keep,
    check_pair,
    check_rtol,
    is_torch,
    warn_few_samples,
)
from cca_lib.similarity import linear_cka, mean_cca, pwcca, svcca

__all__ = [
    "MEASURES",
    "NULL_MEASURES",
    "Interval",
    "PermutationResult",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "bootstrap_measure",
    "bootstrap_pairs",
    "excludes_zero",
    "expected_floors",
    "expected_null",
    "group_distance_ci",
    "group_distance_test",
    "mantel",
    "pair_mean",
    "permutation_null",
    "permutation_nulls",
    "permutation_test",
]

#: The measures known by name (the keys of :func:`cca_lib.compare`).
MEASURES = ("mean CCA", "SVCCA", "PWCCA", "PWCCA (symmetric)", "linear CKA")
#: The names :func:`permutation_null` and :func:`permutation_nulls` take: :data:`MEASURES`
#: plus ``"PWCCA (reverse)"`` (``pwcca(y, x)``) and ``"debiased CKA"``, the keys of
#: :meth:`cca_lib.Accumulator.measures`, in its order.
NULL_MEASURES = ("mean CCA", "SVCCA", "PWCCA", "PWCCA (reverse)", "PWCCA (symmetric)",
                 "linear CKA", "debiased CKA")

_ALTERNATIVES = ("two-sided", "greater", "less")
_INTERVAL_METHODS = ("percentile", "bca")
#: Resamples are drawn in chunks of about this many values (memory bound, independent of n_boot).
_CHUNK_VALUES = 2**21
#: Relative tolerance under which a permuted statistic counts as equal to the observed one.
_TIE_RTOL = 1e-10
#: Statistics that accept ``axis=1`` and are then applied to all resamples at once.
_AXIS_AWARE = (np.mean, np.median, np.nanmean, np.nanmedian)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval: ``estimate`` (the statistic on the data), ``[low, high]`` at
    ``level``, from ``n_boot`` replicates by ``method`` (``"percentile"`` or ``"bca"``)."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    method: str = "percentile"

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside ``[low, high]``."""
        return not (self.low <= value <= self.high)

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}] ({self.level:.0%})"


@dataclass(frozen=True, eq=False)
class PermutationResult:
    """A permutation test: the observed ``statistic``, its ``p_value``, the ``null``
    distribution (one value per permutation; all distinct relabelings when ``exact``),
    ``n_perm`` (their number) and the ``alternative``. ``null_mean`` is the null's mean; for
    :func:`permutation_null` it is the sampling floor (also ``floor``)."""

    statistic: float
    p_value: float
    null: np.ndarray = field(repr=False)
    n_perm: int
    exact: bool
    alternative: str

    @property
    def null_mean(self) -> float:
        return float(np.mean(self.null))

    @property
    def floor(self) -> float:
        """The mean of the null: what unrelated data of this shape scores (same as
        ``null_mean``)."""
        return self.null_mean


def excludes_zero(interval: Interval) -> bool:
    """Whether the interval excludes 0 (a directional verdict for an interval of a
    difference)."""
    if not isinstance(interval, Interval):
        raise TypeError(f"interval must be an Interval, got {type(interval).__name__}")
    return interval.excludes(0.0)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if seed is None:
        raise TypeError("seed must be an int (an explicit seed makes the result reproducible), "
                        "got None")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating):
        raise TypeError(f"level must be a float in (0, 1), got {type(level).__name__}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    return float(level)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_callable(f: Any, name: str) -> None:
    if not callable(f):
        raise TypeError(f"{name} must be callable, got {type(f).__name__}")


def _as_values(values: Any, name: str, min_len: int = 2) -> np.ndarray:
    """A 1-D float64 array of finite real numbers (ints accepted; bool, complex, object not)."""
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per unit), got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.size}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values (shape {arr.shape})")
    return arr


def _codes(labels: Any, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``0..k-1`` of 1-D ``labels`` of length ``n``, and the sorted unique labels."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one label per unit ({n}), got shape "
                         f"{arr.shape}")
    if arr.dtype.kind in "fc":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf labels")
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.intp), uniq


def _check_distance_matrix(d: Any, name: str, min_nodes: int = 3) -> np.ndarray:
    arr = np.asarray(d)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square (n_nodes, n_nodes) matrix, got shape "
                         f"{arr.shape}")
    if arr.shape[0] < min_nodes:
        raise ValueError(f"{name} needs at least {min_nodes} nodes, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    iu = np.triu_indices(arr.shape[0], 1)
    if not (np.isfinite(arr[iu]).all() and np.isfinite(arr.T[iu]).all()):
        raise ValueError(f"{name} contains NaN or inf off the diagonal")
    scale = np.abs(arr[iu]).max()
    if not np.allclose(arr[iu], arr.T[iu], rtol=1e-10, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric (a distance or similarity between nodes); "
                         f"largest asymmetry {np.abs(arr - arr.T)[iu].max():.3g}")
    return arr


def _scalar(value: Any, name: str) -> float:
    arr = np.asarray(value)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must return a real scalar, got {type(value).__name__} of shape "
                        f"{arr.shape}")
    return float(arr)


# ---------------------------------------------------------------------------------------------
# Resampling machinery
# ---------------------------------------------------------------------------------------------


def _chunks(total: int, width: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` chunks of ``total`` resamples of ``width`` values each."""
    step = max(1, _CHUNK_VALUES // max(1, width))
    for start in range(0, total, step):
        yield start, min(step, total - start)


def _draw_with_replacement(rng: np.random.Generator, n_units: int, n_boot: int,
                           stat_rows: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``n_boot`` bootstrap replicates: ``stat_rows`` maps a ``(c, n_units)`` chunk of drawn unit
    indices to ``(c,)`` statistics. The draws depend only on ``rng``, ``n_units`` and
    ``n_boot``, so vectorized and looped statistics see the same resamples."""
    out = np.empty(n_boot)
    for start, size in _chunks(n_boot, n_units):
        out[start:start + size] = stat_rows(rng.integers(0, n_units, size=(size, n_units)))
    return out


def _permutations(rng: np.random.Generator, base: np.ndarray,
                  n_perm: int) -> Iterator[tuple[int, np.ndarray]]:
    """Chunks ``(start, rows)`` of ``n_perm`` independent random orderings of ``base``."""
    for start, size in _chunks(n_perm, base.size):
        yield start, rng.permuted(np.tile(base, (size, 1)), axis=1)


def _labelings(codes: np.ndarray) -> np.ndarray:
    """Every distinct assignment of the multiset of ``codes`` to positions, ``(count, n)``."""
    n = codes.size
    sizes = np.bincount(codes)
    rows = [np.full(n, -1, dtype=np.intp)]
    for g, size in enumerate(sizes[:-1]):
        new = []
        for row in rows:
            free = np.flatnonzero(row < 0)
            for chosen in itertools.combinations(free, int(size)):
                r = row.copy()
                r[list(chosen)] = g
                new.append(r)
        rows = new
    out = np.array(rows)
    out[out < 0] = sizes.size - 1
    return out


def _n_labelings(codes: np.ndarray, cap: int) -> int:
    """The number of distinct labelings (multinomial coefficient), or ``cap + 1`` when it is
    clearly above ``cap`` (checked on its logarithm first, so large ``n`` costs nothing)."""
    sizes = np.bincount(codes)
    log_count = math.lgamma(codes.size + 1) - sum(math.lgamma(int(s) + 1) for s in sizes)
    if log_count > math.log(cap) + 1.0:
        return cap + 1
    return math.factorial(codes.size) // math.prod(math.factorial(int(s)) for s in sizes)


def _p_value(null: np.ndarray, observed: float, alternative: str, exact: bool) -> float:
    tol = _TIE_RTOL * max(abs(observed), float(np.abs(null).max()), 1e-300)
    k_ge = int(np.count_nonzero(null >= observed - tol))
    k_le = int(np.count_nonzero(null <= observed + tol))
    if exact:  # the observed labeling is one of the enumerated ones
        p_ge, p_le = k_ge / null.size, k_le / null.size
    else:
        p_ge, p_le = (k_ge + 1) / (null.size + 1), (k_le + 1) / (null.size + 1)
    if alternative == "greater":
        return p_ge
    if alternative == "less":
        return p_le
    return min(1.0, 2.0 * min(p_ge, p_le))


def _interval(estimate: float, reps: np.ndarray, level: float, method: str,
              jack: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile or BCa limits from bootstrap replicates ``reps`` (and jackknife values)."""
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    spread = float(reps.max() - reps.min())
    if method == "bca" and spread > _TIE_RTOL * max(abs(estimate), 1e-300):
        b = reps.size
        prop = (np.count_nonzero(reps < estimate) + 0.5 * np.count_nonzero(reps == estimate)) / b
        z0 = special.ndtri(min(max(prop, 0.5 / b), 1 - 0.5 / b))
        u = jack.mean() - jack
        den = float(np.sum(u * u)) ** 1.5
        accel = float(np.sum(u ** 3)) / (6.0 * den) if den > 0 else 0.0
        qs = []
        for q in (lo_q, hi_q):
            z = special.ndtri(q)
            qs.append(float(special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))))
        lo_q, hi_q = qs
    low, high = np.quantile(reps, [lo_q, hi_q])
    return float(low), float(high)


def _check_reps(reps: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(reps)
    if bad.any():
        raise ValueError(f"{what} returned NaN or inf on {int(bad.sum())} of {reps.size} "
                         "resamples; make it defined on every resample")


# ---------------------------------------------------------------------------------------------
# Bootstrap over independent units
# ---------------------------------------------------------------------------------------------


class _UnitStat:
    """A statistic of 1-D values evaluated on resampled units (elements or whole groups)."""

    def __init__(self, values: np.ndarray, statistic: Callable, codes: np.ndarray | None):
        self.values, self.statistic, self.codes = values, statistic, codes
        self.axis_aware = any(statistic is f for f in _AXIS_AWARE)
        if codes is None:
            self.n_units = values.size
        else:
            order = np.argsort(codes, kind="stable")
            sizes = np.bincount(codes)
            self.n_units = sizes.size
            self.sizes = sizes.astype(np.float64)
            self.sums = np.bincount(codes, weights=values)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self.members = [order[s:s + k] for s, k in zip(starts, sizes, strict=True)]

    def value(self, v: np.ndarray) -> float:
        return _scalar(self.statistic(v), "statistic")

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Statistics of the resamples whose unit indices are the rows of ``idx``."""
        if self.codes is None:
            if self.axis_aware:
                return self.statistic(self.values[idx], axis=1)
            return np.array([self.value(self.values[i]) for i in idx])
        if self.statistic is np.mean:
            return self.sums[idx].sum(axis=1) / self.sizes[idx].sum(axis=1)
        return np.array([self.value(self.values[np.concatenate([self.members[g] for g in i])])
                         for i in idx])

    def jackknife(self) -> np.ndarray:
        """The statistic with each unit left out in turn."""
        if self.codes is None:
            if self.statistic is np.mean:
                return (self.values.sum() - self.values) / (self.values.size - 1)
            return np.array([self.value(np.delete(self.values, i))
                             for i in range(self.values.size)])
        return np.array([self.value(self.values[self.codes != g]) for g in range(self.n_units)])


def bootstrap_ci(values: Any, *, statistic: Callable = np.mean, n_boot: int = 2000,
                 level: float = 0.95, seed: int, groups: Any = None,
                 method: str = "percentile") -> Interval:
    """Bootstrap interval of ``statistic(values)`` over independent units.

    ``values``: 1-D, one value per unit (a seed, a network, a pair of independent networks).
    ``statistic``: a function of a 1-D array returning a float (``np.mean``, ``np.median`` are
    vectorized over resamples). ``groups``: optional labels, one per value; whole groups are
    resampled with replacement (clusters of dependent values, e.g. the values of one seed),
    at least 2 groups. ``method``: ``"percentile"`` or ``"bca"`` (bias-corrected and
    accelerated; the acceleration from the jackknife over units or groups). Returns an
    :class:`Interval`. Needs at least 2 units; with fewer than about 10 the interval is rough.
    """
    seed = _check_seed(seed)
    v = _as_values(values, "values")
    _check_callable(statistic, "statistic")
    n_boot = _check_count(n_boot, "n_boot", 2)
    level = _check_level(level)
    method = _check_choice(method, "method", _INTERVAL_METHODS)
    codes = None
    if groups is not None:
        codes, uniq = _codes(groups, v.size, "groups")
        if uniq.size < 2:
            raise ValueError(f"groups must hold at least 2 distinct groups, got {uniq.size}")
    unit = _UnitStat(v, statistic, codes)
    estimate = unit.value(v)
    reps = _draw_with_replacement(np.random.default_rng(seed), unit.n_units, n_boot, unit.rows)
    _check_reps(reps, "statistic")
    jack = unit.jackknife() if method == "bca" else None
    low, high = _interval(estimate, reps, level, method, jack)
    return Interval(estimate, low, high, level, n_boot, method)


def bootstrap_diff_ci(a: Any, b: Any, *, paired: bool = False, statistic: Callable = np.mean,
                      n_boot: int = 2000, level: float = 0.95, seed: int,
                      method: str = "percentile") -> Interval:
    """Bootstrap interval of ``statistic(a) - statistic(b)`` (default: the difference of means),
    for verdicts like "A is closer than B" (directional when :func:`excludes_zero`).

    ``a``, ``b``: 1-D values over independent units. ``paired=False``: ``a`` and ``b`` are
    resampled independently (two separate sets of units, sizes may differ). ``paired=True``:
    ``a[i]`` and ``b[i]`` come from the same unit (e.g. one seed) and the same indices are
    drawn for both (equal lengths required). ``method``: ``"percentile"`` or ``"bca"``.
    """
    seed = _check_seed(seed)
    a, b = _as_values(a, "a"), _as_values(b, "b")
    if not isinstance(paired, bool):
        raise TypeError(f"paired must be a bool, got {type(paired).__name__}")
    _check_callable(statistic, "statistic")
    n_boot = _check_count(n_boot, "n_boot", 2)
    level = _check_level(level)
    method = _check_choice(method, "method", _INTERVAL_METHODS)
    ua, ub = _UnitStat(a, statistic, None), _UnitStat(b, statistic, None)
    estimate = ua.value(a) - ub.value(b)
    rng = np.random.default_rng(seed)
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired=True needs a and b of equal length, got {a.size} and "
                             f"{b.size}")
        reps = _draw_with_replacement(rng, a.size, n_boot, lambda i: ua.rows(i) - ub.rows(i))
        jack = (ua.jackknife() - ub.jackknife()) if method == "bca" else None
    else:
        reps = (_draw_with_replacement(rng, a.size, n_boot, ua.rows)
                - _draw_with_replacement(rng, b.size, n_boot, ub.rows))
        jack = None
        if method == "bca":  # leave one unit of either sample out
            jack = np.concatenate([ua.jackknife() - ub.value(b), ua.value(a) - ub.jackknife()])
    _check_reps(reps, "statistic")
    low, high = _interval(estimate, reps, level, method, jack)
    return Interval(estimate, low, high, level, n_boot, method)


# ---------------------------------------------------------------------------------------------
# Distance matrices: node bootstrap, node-label permutation, Mantel
# ---------------------------------------------------------------------------------------------


def pair_mean(d: np.ndarray, idx: np.ndarray) -> float:
    """Mean of ``d`` over distinct pairs of nodes (the upper triangle, NaN entries skipped): the
    default statistic of :func:`bootstrap_pairs`."""
    iu = np.triu_indices(d.shape[0], 1)
    return float(np.nanmean(d[iu]))


def _resampled_matrix(dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    sub = dist[np.ix_(idx, idx)]
    sub[idx[:, None] == idx[None, :]] = np.nan
    return sub


def bootstrap_pairs(dist: Any, statistic: Callable | None = None, *, n_boot: int = 2000,
                    level: float = 0.95, seed: int, strata: Any = None) -> Interval:
    """Bootstrap interval of a statistic of a pairwise matrix, resampling the *nodes*.

    ``dist``: ``(m, m)`` symmetric matrix between ``m`` networks (distances or similarities;
    the diagonal is ignored). Pairs sharing a network are not independent, so the networks are
    resampled with replacement (within each label of ``strata`` when given, which keeps every
    group's size) and the statistic is recomputed on the matrix of the resampled networks.
    ``statistic(d, idx) -> float`` gets that matrix ``d = dist[idx][:, idx]`` with NaN on the
    diagonal and wherever two copies of one network meet (no pair of a network with itself),
    and the drawn node indices ``idx`` (e.g. to look up labels); default :func:`pair_mean`.
    Resamples on which the statistic is NaN (e.g. every draw the same network) are left out;
    ``n_boot`` of the result counts those kept (an error if fewer than half). Percentile
    interval.
    """
    seed = _check_seed(seed)
    dist = _check_distance_matrix(dist, "dist")
    statistic = pair_mean if statistic is None else statistic
    _check_callable(statistic, "statistic")
    n_boot = _check_count(n_boot, "n_boot", 2)
    level = _check_level(level)
    m = dist.shape[0]
    codes = None if strata is None else _codes(strata, m, "strata")[0]
    estimate = _scalar(statistic(_resampled_matrix(dist, np.arange(m)), np.arange(m)),
                       "statistic")
    if not np.isfinite(estimate):
        raise ValueError(f"statistic is {estimate} on dist itself; it must be finite there")
    members = None if codes is None else [np.flatnonzero(codes == g)
                                          for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for start, size in _chunks(n_boot, m):
        if members is None:
            draws = rng.integers(0, m, size=(size, m))
        else:  # each stratum's nodes drawn from that stratum
            draws = np.concatenate([g[rng.integers(0, g.size, size=(size, g.size))]
                                    for g in members], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an empty pair set
            for r, i in enumerate(draws):
                reps[start + r] = _scalar(statistic(_resampled_matrix(dist, i), i), "statistic")
    return _kept_interval(estimate, reps, level, n_boot)


def _kept_interval(estimate: float, reps: np.ndarray, level: float, n_boot: int) -> Interval:
    kept = reps[np.isfinite(reps)]
    if kept.size < max(2, n_boot / 2):
        raise ValueError(f"the statistic was NaN on {n_boot - kept.size} of {n_boot} node "
                         "resamples (too few distinct networks in a resample); use more "
                         "networks or a statistic defined on fewer")
    low, high = _interval(estimate, kept, level, "percentile")
    return Interval(estimate, low, high, level, int(kept.size), "percentile")



def _parse_contrast(contrast: Any, uniq: np.ndarray) -> list[tuple[str, int, int]]:
    """``(kind, a, b)`` per side: kind ``"within"``, ``"between"`` or ``"pair"`` with codes."""
    if not (isinstance(contrast, tuple | list) and len(contrast) == 2):
        raise ValueError("contrast must be a pair (first, second) of 'within', 'between' or a "
                         f"(label, label) pair, got {contrast!r}")
    sides = []
    for side in contrast:
        if isinstance(side, str) and side in ("within", "between"):
            sides.append((side, -1, -1))
            continue
        if not (isinstance(side, tuple | list) and len(side) == 2):
            raise ValueError("each side of contrast must be 'within', 'between' or a "
                             f"(label, label) pair, got {side!r}")
        ab = []
        for lab in side:
            hit = np.flatnonzero(uniq == lab)
            if hit.size != 1:
                raise ValueError(f"contrast label {lab!r} is not among labels "
                                 f"{uniq.tolist()}")
            ab.append(int(hit[0]))
        sides.append(("pair", ab[0], ab[1]))
    return sides


def _kind_mask(kind: tuple[str, int, int], ci: np.ndarray, cj: np.ndarray) -> np.ndarray:
    name, a, b = kind
    if name == "within":
        return ci == cj
    if name == "between":
        return ci != cj
    return ((ci == a) & (cj == b)) | ((ci == b) & (cj == a))


def _contrast_values(dvals: np.ndarray, valid: np.ndarray, ci: np.ndarray, cj: np.ndarray,
                     sides: list) -> np.ndarray:
    """Mean of ``dvals`` over pairs of the first kind minus over the second, per row (NaN
    where a kind has no valid pair)."""
    means = []
    for kind in sides:
        mask = _kind_mask(kind, ci, cj) & valid
        count = mask.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(count > 0, (dvals * mask).sum(axis=-1) / count, np.nan))
    return means[0] - means[1]


def group_distance_test(dist: Any, labels: Any, *, contrast: tuple = ("between", "within"),
                        n_perm: int = 9999, seed: int,
                        alternative: str = "greater") -> PermutationResult:
    """Permutation test of a group contrast on a pairwise distance matrix, shuffling the *node*
    labels (networks), never the pairs.

    ``dist``: ``(m, m)`` symmetric distances between networks (diagonal ignored); ``labels``:
    one group label per network. The statistic is the mean distance over pairs of the first
    kind of ``contrast`` minus the mean over pairs of the second; a kind is ``"within"`` (both
    networks in one group), ``"between"`` (different groups) or a pair of labels, e.g.
    ``(("mem", "mem"), ("gen", "gen"))``. The default ``("between", "within")`` with
    ``alternative="greater"`` tests "within-group distances are smaller than between-group".
    Node labels are permuted (exactly, over every distinct labeling, when there are at most
    ``n_perm``), and the statistic recomputed. Returns a :class:`PermutationResult`.
    """
    seed = _check_seed(seed)
    dist = _check_distance_matrix(dist, "dist")
    m = dist.shape[0]
    codes, uniq = _codes(labels, m, "labels")
    if uniq.size < 2:
        raise ValueError(f"labels must hold at least 2 groups, got {uniq.tolist()}")
    sides = _parse_contrast(contrast, uniq)
    n_perm = _check_count(n_perm, "n_perm")
    alternative = _check_choice(alternative, "alternative", _ALTERNATIVES)
    iu, ju = np.triu_indices(m, 1)
    dvals = dist[iu, ju]
    valid = np.ones(dvals.size, dtype=bool)

    def stats_of(rows: np.ndarray) -> np.ndarray:
        return _contrast_values(dvals, valid, rows[:, iu], rows[:, ju], sides)

    observed = float(stats_of(codes[None])[0])
    if not np.isfinite(observed):
        raise ValueError(f"contrast {contrast!r} has no pair of one of its kinds for labels "
                         f"{uniq.tolist()}")
    null, exact = _label_null(codes, n_perm, seed, stats_of)
    if not np.isfinite(null).all():
        raise ValueError(f"contrast {contrast!r} is undefined under some relabelings (a kind "
                         "with no pair); choose a contrast defined for every labeling")
    return PermutationResult(observed, _p_value(null, observed, alternative, exact), null,
                             int(null.size), exact, alternative)


def _label_null(codes: np.ndarray, n_perm: int, seed: int,
                stats_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, bool]:
    """The statistic under every distinct relabeling (when at most ``n_perm``) or under
    ``n_perm`` random shuffles of ``codes``."""
    if _n_labelings(codes, n_perm) <= n_perm:
        allrows = _labelings(codes)
        null = np.concatenate([stats_of(allrows[s:s + k])
                               for s, k in _chunks(allrows.shape[0], allrows.shape[1] ** 2)])
        return null, True
    null = np.empty(n_perm)
    rng = np.random.default_rng(seed)
    for start, rows in _permutations(rng, codes, n_perm):
        null[start:start + rows.shape[0]] = stats_of(rows)
    return null, False


def group_distance_ci(dist: Any, labels: Any, *, contrast: tuple = ("between", "within"),
                      n_boot: int = 2000, level: float = 0.95, seed: int) -> Interval:
    """Bootstrap interval of the contrast of :func:`group_distance_test` (mean distance over
    pairs of the first kind minus the second), resampling networks within each group
    (:func:`bootstrap_pairs` with ``strata=labels``; pairs of two copies of one network left
    out). Directional when :func:`excludes_zero`."""
    seed = _check_seed(seed)
    dist = _check_distance_matrix(dist, "dist")
    m = dist.shape[0]
    codes, uniq = _codes(labels, m, "labels")
    sides = _parse_contrast(contrast, uniq)
    iu, ju = np.triu_indices(m, 1)

    def statistic(d: np.ndarray, idx: np.ndarray) -> float:
        vals = d[iu, ju]
        valid = np.isfinite(vals)
        c = codes[idx]
        return float(_contrast_values(np.where(valid, vals, 0.0), valid, c[iu], c[ju], sides))

    if not np.isfinite(statistic(dist, np.arange(m))):
        raise ValueError(f"contrast {contrast!r} has no pair of one of its kinds for labels "
                         f"{uniq.tolist()}")
    return bootstrap_pairs(dist, statistic, n_boot=n_boot, level=level, seed=seed, strata=labels)


def mantel(d1: Any, d2: Any, *, method: str = "spearman", n_perm: int = 9999, seed: int,
           alternative: str = "two-sided") -> PermutationResult:
    """Mantel test: correlation of two pairwise matrices over the same ``m`` nodes, with the
    rows and columns of ``d2`` permuted jointly (the nodes relabeled) for the null.

    ``d1``, ``d2``: ``(m, m)`` symmetric (diagonals ignored), ``m >= 3``. ``method``:
    ``"spearman"`` (ranks, ties averaged) or ``"pearson"`` on the upper triangles. Every
    permutation is enumerated when ``m! <= n_perm`` (exact p-value). Returns a
    :class:`PermutationResult` whose ``statistic`` is the correlation ``r``.
    """
    seed = _check_seed(seed)
    a = _check_distance_matrix(d1, "d1")
    b = _check_distance_matrix(d2, "d2")
    if a.shape != b.shape:
        raise ValueError(f"d1 and d2 must be over the same nodes, got shapes {a.shape} and "
                         f"{b.shape}")
    method = _check_choice(method, "method", ("spearman", "pearson"))
    n_perm = _check_count(n_perm, "n_perm")
    alternative = _check_choice(alternative, "alternative", _ALTERNATIVES)
    m = a.shape[0]
    iu, ju = np.triu_indices(m, 1)
    va, vb = a[iu, ju], b[iu, ju]
    if method == "spearman":
        va, vb = rankdata(va), rankdata(vb)
    std = []
    for v, name in ((va, "d1"), (vb, "d2")):
        v = v - v.mean()
        norm = np.linalg.norm(v)
        if not norm > 0:
            raise ValueError(f"{name} is constant off the diagonal: its correlation is undefined")
        std.append(v / norm)
    za = std[0]
    zb = np.zeros((m, m))
    zb[iu, ju] = std[1]
    zb = zb + zb.T  # a node permutation permutes the upper-triangle values of d2 among the pairs

    def corr(perms: np.ndarray) -> np.ndarray:
        return np.clip(zb[perms[:, iu], perms[:, ju]] @ za, -1.0, 1.0)

    observed = float(np.clip(za @ std[1], -1.0, 1.0))
    if m <= 12 and math.factorial(m) <= n_perm:
        perms = np.array(list(itertools.permutations(range(m))), dtype=np.intp)
        null = np.concatenate([corr(perms[s:s + k]) for s, k in _chunks(perms.shape[0], m * m)])
        exact = True
    else:
        null = np.empty(n_perm)
        for start, rows in _permutations(np.random.default_rng(seed), np.arange(m), n_perm):
            null[start:start + rows.shape[0]] = corr(rows)
        exact = False
    return PermutationResult(observed, _p_value(null, observed, alternative, exact), null,
                             int(null.size), exact, alternative)


# ---------------------------------------------------------------------------------------------
# Permutation test over independent units
# ---------------------------------------------------------------------------------------------


def permutation_test(values: Any, labels: Any, *, statistic: Callable | None = None,
                     n_perm: int = 9999, seed: int,
                     alternative: str = "two-sided") -> PermutationResult:
    """Permutation test of a group comparison over independent units, shuffling the labels.

    ``values``: 1-D, one value per independent unit; ``labels``: one group label per value.
    ``statistic(values, labels) -> float``; default (exactly two groups): the mean of the first
    group minus the mean of the second, in sorted label order (vectorized). For a comparison of
    distances between networks use :func:`group_distance_test` (pairs are not independent
    units). Exact over every distinct labeling when there are at most ``n_perm``.
    """
    seed = _check_seed(seed)
    v = _as_values(values, "values")
    codes, uniq = _codes(labels, v.size, "labels")
    if uniq.size < 2:
        raise ValueError(f"labels must hold at least 2 groups, got {uniq.tolist()}")
    n_perm = _check_count(n_perm, "n_perm")
    alternative = _check_choice(alternative, "alternative", _ALTERNATIVES)
    if statistic is None:
        if uniq.size != 2:
            raise ValueError(f"the default statistic compares exactly 2 groups, labels hold "
                             f"{uniq.size}: pass statistic(values, labels)")
        n0 = np.count_nonzero(codes == 0)
        n1 = v.size - n0

        def stats_of(rows: np.ndarray) -> np.ndarray:
            first = (v * (rows == 0)).sum(axis=1)
            return first / n0 - (v.sum() - first) / n1
    else:
        _check_callable(statistic, "statistic")

        def stats_of(rows: np.ndarray) -> np.ndarray:
            return np.array([_scalar(statistic(v, uniq[r]), "statistic") for r in rows])

    observed = float(stats_of(codes[None])[0])
    null, exact = _label_null(codes, n_perm, seed, stats_of)
    _check_reps(null, "statistic")
    return PermutationResult(observed, _p_value(null, observed, alternative, exact), null,
                             int(null.size), exact, alternative)


# ---------------------------------------------------------------------------------------------
# Measures: permutation null (sampling floor) and bootstrap over inputs
# ---------------------------------------------------------------------------------------------

# The fast path below takes every piece of the computation from cca_lib.similarity: the
# moment pass (scaling, dead neurons, default rtol per dtype), the whitenings by the rank rule
# and SVCCA's principal directions and kept count; only the product x'y[p] is its own. The
# tests check it against the public functions to 1e-10 on permuted data.


def _named(measure: str, keep: float | int, rtol: float | None,
           allow_few_samples: bool) -> Callable[[Any, Any], float]:
    if measure == "mean CCA":
        return lambda x, y: mean_cca(x, y, rtol=rtol, allow_few_samples=allow_few_samples)
    if measure == "SVCCA":
        return lambda x, y: svcca(x, y, keep, rtol=rtol, allow_few_samples=allow_few_samples)
    if measure in ("PWCCA", "PWCCA (symmetric)"):
        sym = measure == "PWCCA (symmetric)"
        return lambda x, y: pwcca(x, y, symmetric=sym, rtol=rtol,
                                  allow_few_samples=allow_few_samples)
    if measure == "PWCCA (reverse)":
        return lambda x, y: pwcca(y, x, rtol=rtol, allow_few_samples=allow_few_samples)
    if measure == "debiased CKA":
        return lambda x, y: linear_cka(x, y, debiased=True)
    return lambda x, y: linear_cka(x, y, allow_few_samples=allow_few_samples)


def _resolve_measure(measure: Any, keep: Any, rtol: Any,
                     allow_few_samples: bool) -> tuple[Callable, str | None]:
    if isinstance(measure, str):
        if measure not in NULL_MEASURES:
            raise ValueError(f"measure must be a callable (x, y) -> float or one of "
                             f"{NULL_MEASURES}, got {measure!r}")
        return _named(measure, check_keep(keep), check_rtol(rtol), allow_few_samples), measure
    _check_callable(measure, "measure")
    return measure, None


def _n_rows(a: Any, name: str) -> int:
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) < 1:
        raise TypeError(f"{name} must be an array or tensor with one row per input, got "
                        f"{type(a).__name__}")
    return int(shape[0])


def _take_rows(a: Any, idx: np.ndarray) -> Any:
    if is_torch(a):
        import torch

        return a[torch.as_tensor(idx, device=a.device)]
    return a[idx]


def _group_blocks(groups: Any, n: int) -> np.ndarray:
    """``(n_groups, size)`` row indices of equal-sized groups, rows in their original order."""
    codes, uniq = _codes(groups, n, "groups")
    sizes = np.bincount(codes)
    if uniq.size < 2:
        raise ValueError(f"groups must hold at least 2 groups, got {uniq.size}")
    if sizes.min() != sizes.max():
        raise ValueError("permuting whole groups needs groups of equal size (rows of one input "
                         f"pair with rows of another, position by position), got sizes from "
                         f"{sizes.min()} to {sizes.max()}")
    order = np.argsort(codes, kind="stable")
    return order.reshape(uniq.size, sizes[0])


_CKA_NAMES = ("linear CKA", "debiased CKA")


def _cross(left: np.ndarray, right: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """``left' right[p]`` for every row ``p`` of ``perms`` in one GEMM (the permuted copies
    side by side, ``(n, c * d2)``): ``(c, d1, d2)``."""
    c, n = perms.shape
    d1, d2 = left.shape[1], right.shape[1]
    side = right[perms.T].reshape(n, c * d2)
    return (left.T @ side).reshape(d1, c, d2).transpose(1, 0, 2)


class _FastNull:
    """Named measures (of :data:`NULL_MEASURES`) of ``(x, y[p])`` for many row permutations
    ``p``: ``x'x`` and ``y'y`` (and so the whitenings and the kept SVCCA directions) are
    computed once, by the code of :mod:`cca_lib.similarity` (its moment pass, rank rule and
    SVCCA reduction); each permutation costs one product of the whitened data (the CCA family,
    all of it from one SVD) and one of the centered data (CKA), ``n d1 d2`` flops each.

    The whitenings are rotated to SVCCA's principal directions when SVCCA is asked for (CCA
    does not depend on the whitening's rotation), so SVCCA's cross matrix is the leading
    ``kx x ky`` block of the one the other measures use."""

    def __init__(self, x: Any, y: Any, names: tuple[str, ...], keep: float | int,
                 rtol: float | None):
        self.names = names
        g = _sim._grams(x, y, rtol, kernel="debiased CKA" in names)
        xc, yc = _centred_scaled(x, g.exp_x, g.mean_x), _centred_scaled(y, g.exp_y, g.mean_y)
        self.n = xc.shape[0]
        self.cca = any(name not in _CKA_NAMES for name in names)
        self.cka = any(name in _CKA_NAMES for name in names)
        if self.cka:
            _sim._cka_from_grams(g)  # raises as linear_cka does on an input without variance
            self.xc, self.yc = xc, yc
            self.den = np.linalg.norm(g.sxx) * np.linalg.norm(g.syy)
            if "debiased CKA" in names:
                self.tk, self.tl = float(np.trace(g.sxx)), float(np.trace(g.syy))
                self.hxx = _sim._hsic(np.linalg.norm(g.sxx) ** 2, g.paa, self.tk, self.tk,
                                      g.n)
                self.hyy = _sim._hsic(np.linalg.norm(g.syy) ** 2, g.pbb, self.tl, self.tl,
                                      g.n)
                if not (self.hxx > 0 and self.hyy > 0):
                    raise ValueError("x or y has no variance left after debiasing (too few "
                                     "samples?)")
                self.a, self.b = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
        if self.cca:
            wx, wy = _sim._whiteners(g)
            self.kx = self.ky = 0
            if "SVCCA" in names:
                (lx, ux), (ly, uy) = (_sim._principal(w.T @ m) for w, m in ((wx, g.sxx),
                                                                           (wy, g.syy)))
                self.kx, self.ky = _sim._svd_reduce(lx, keep, "x"), _sim._svd_reduce(ly, keep,
                                                                                      "y")
                wx, wy = wx @ ux, wy @ uy
                if all(name in _CKA_NAMES or name == "SVCCA" for name in names):
                    wx, wy = wx[:, :self.kx], wy[:, :self.ky]  # SVCCA alone: the kept block
            self.left, self.right = xc @ wx, yc @ wy  # orthonormal columns
            self.gx, self.gy = g.sxx @ wx, g.syy @ wy  # x'x W_x: PWCCA's weights |x'x W_x A|

    def __call__(self, perms: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        names = self.names
        if self.cca:
            cross = _cross(self.left, self.right, perms)
            if "SVCCA" in names:
                s = np.linalg.svd(cross[:, :self.kx, :self.ky], compute_uv=False)
                out["SVCCA"] = np.clip(s, 0.0, 1.0).mean(axis=1)
            pw = [name for name in names if name.startswith("PWCCA")]
            if pw:
                a, s, bt = np.linalg.svd(cross, full_matrices=False)
                rho = np.clip(s, 0.0, 1.0)
                fwd = _pw(rho, np.abs(self.gx @ a).sum(axis=1))
                bwd = _pw(rho, np.abs(self.gy @ bt.transpose(0, 2, 1)).sum(axis=1))
                out.update({"PWCCA": fwd, "PWCCA (reverse)": bwd,
                            "PWCCA (symmetric)": 0.5 * (fwd + bwd)})
            elif "mean CCA" in names:
                rho = np.clip(np.linalg.svd(cross, compute_uv=False), 0.0, 1.0)
            if "mean CCA" in names:
                out["mean CCA"] = rho.mean(axis=1)
        if self.cka:
            tr = (_cross(self.xc, self.yc, perms) ** 2).sum(axis=(1, 2))
            out["linear CKA"] = np.clip(tr / self.den, 0.0, 1.0)
            if "debiased CKA" in names:
                hxy = _sim._hsic(tr, self.b[perms] @ self.a, self.tk, self.tl, self.n)
                out["debiased CKA"] = np.clip(hxy / np.sqrt(self.hxx * self.hyy), 0.0, 1.0)
        return {name: out[name] for name in names}


def _centred_scaled(a: Any, e: int, mean: np.ndarray) -> np.ndarray:
    """``a * 2**-e`` centered, a new float64 host array (the scaling of similarity's moment
    pass, whose covariances it matches)."""
    host = a.detach().cpu().numpy() if is_torch(a) else np.asarray(a)
    ac = _sim._scaled64(host, e)
    ac -= mean
    ac -= ac.mean(axis=0)  # the residual mean left by rounding
    return ac


def _pw(rho: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.clip((alpha * rho).sum(axis=1) / alpha.sum(axis=1), 0.0, 1.0)


def permutation_null(x: Any, y: Any, measure: Any, *, n_perm: int = 999, seed: int,
                     groups: Any = None, alternative: str = "greater", keep: float | int = 0.99,
                     rtol: float | None = None,
                     allow_few_samples: bool = False) -> PermutationResult:
    """The sampling floor of a measure: its value on ``x`` against ``y`` with the rows of ``y``
    shuffled (unrelated representations of the same shape, ``n`` and ``d``).

    ``x`` ``(n, d1)``, ``y`` ``(n, d2)``: rows are the same inputs in the same order.
    ``measure``: a callable ``(x, y) -> float`` or a name in :data:`NULL_MEASURES` (``keep``,
    ``rtol`` and ``allow_few_samples`` go to the named measures). ``groups``: optional label
    per row saying which rows come from one input (one image's positions, one sequence's
    timesteps); whole inputs are then permuted, row ``k`` of one input facing row ``k`` of
    another, so groups must be of equal size. Every permutation is enumerated when there are at
    most ``n_perm`` (exact p-value; the identity is among them). Returns a
    :class:`PermutationResult`: ``statistic`` the measure on the data, ``null`` its values
    under the permutations, ``floor`` their mean, ``p_value`` of the observed value
    (``alternative="greater"``: similarity above the floor).

    The few-samples warning (named measures; once, not per permutation) counts the groups when
    ``groups`` is given: rows of one input are not independent samples.

    Named measures take a fast path: a row permutation leaves ``x'x`` and ``y'y`` unchanged,
    so the whitenings are computed once and each permutation recomputes only the cross
    product (in float64), then a ``d1 x d2`` SVD; linear CKA needs only
    ``||x'Py||_F^2`` against fixed norms. :func:`permutation_nulls` gives several measures
    under the same permutations at the cost of one.
    """
    if isinstance(measure, str):
        _resolve_measure(measure, keep, rtol, allow_few_samples)
        return permutation_nulls(x, y, (measure,), n_perm=n_perm, seed=seed, groups=groups,
                                 alternative=alternative, keep=keep, rtol=rtol,
                                 allow_few_samples=allow_few_samples, _up=3)[measure]
    f, _ = _resolve_measure(measure, keep, rtol, allow_few_samples)
    return _null(x, y, {"measure": f}, None, n_perm, seed, groups, alternative, None,
                 allow_few_samples, 2)["measure"]


def permutation_nulls(x: Any, y: Any, measures: Any = NULL_MEASURES, *, n_perm: int = 999,
                      seed: int, groups: Any = None, alternative: str = "greater",
                      keep: float | int = 0.99, rtol: float | None = None,
                      allow_few_samples: bool = False,
                      chunk_rows: int | None = None, _up: int = 2
                      ) -> dict[str, PermutationResult]:
    """:func:`permutation_null` of several named measures (names in :data:`NULL_MEASURES`,
    default all) under the same permutations: ``{name: PermutationResult}``.

    In memory (``chunk_rows=None``) the fast path computes every measure from one setup and,
    per permutation, one product of the whitened and one of the centered data. With
    ``chunk_rows`` (e.g. for memory-mapped ``.npy`` files), each permutation instead feeds
    ``x`` and the permuted ``y`` through one :class:`cca_lib.Accumulator`, ``chunk_rows`` rows
    at a time (``y``'s rows read in sorted order), so memory does not grow with ``n``; the
    observed values come from one more such pass. Both give the same numbers to rounding.
    """
    if isinstance(measures, str):
        measures = (measures,)
    measures = tuple(measures)
    bad = [m for m in measures if m not in NULL_MEASURES]
    if bad or not measures:
        raise ValueError(f"measures must be names in {NULL_MEASURES}, got {list(measures)}")
    if chunk_rows is not None:
        chunk_rows = _check_count(chunk_rows, "chunk_rows")
    fs = {m: _named(m, check_keep(keep), check_rtol(rtol), allow_few_samples)
          for m in measures}
    return _null(x, y, fs, (keep, rtol), n_perm, seed, groups, alternative, chunk_rows,
                 allow_few_samples, _up)


def _null(x: Any, y: Any, fs: dict[str, Callable], named: tuple | None, n_perm: Any,
          seed: Any, groups: Any, alternative: Any, chunk_rows: int | None,
          allow_few_samples: bool, up: int) -> dict[str, PermutationResult]:
    """The permutation nulls of the measures ``fs`` (named ones, by the fast path or the
    chunked accumulator, when ``named = (keep, rtol)``), all under the same permutations.
    ``up``: the frames between this one and the user's call (for the warning)."""
    seed = _check_seed(seed)
    n = _n_rows(x, "x")
    if _n_rows(y, "y") != n:
        raise ValueError(f"x has {n} rows but y has {_n_rows(y, 'y')}: both must hold the same "
                         "inputs, one row each")
    n_perm = _check_count(n_perm, "n_perm")
    alternative = _check_choice(alternative, "alternative", _ALTERNATIVES)
    blocks = None if groups is None else _group_blocks(groups, n)
    n_units = n if blocks is None else blocks.shape[0]
    names = tuple(fs)
    if named is not None and chunk_rows is None:  # warns once, not per permutation
        _check_and_warn(x, y, allow_few_samples, None if groups is None else n_units, 2 + up)
    elif named is not None:  # the accumulator checks each chunk; warn once here
        d1, d2 = int(x.shape[1]), int(y.shape[1])
        if n <= d1 + d2 and not allow_few_samples:
            raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)}: n_samples={n} <= "
                             f"d1 + d2 = {d1 + d2}; pass allow_few_samples=True")
        warn_few_samples(n, d1, d2, n_inputs=None if groups is None else n_units,
                         stacklevel=2 + up)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        if named is not None and chunk_rows is not None:
            keep, rtol = named
            observed = _streamed(x, y, None, chunk_rows, names, keep, rtol, allow_few_samples)

            def stats_of_rows(rows: np.ndarray) -> dict[str, np.ndarray]:
                return _stack([_streamed(x, y, r, chunk_rows, names, keep, rtol,
                                         allow_few_samples) for r in rows], names)
            width = chunk_rows
        else:
            observed = {m: _scalar(f(x, y), "measure") for m, f in fs.items()}
            if named is not None:
                stats_of_rows = _FastNull(x, y, names, check_keep(named[0]),
                                          check_rtol(named[1]))
            else:
                (f,) = fs.values()

                def stats_of_rows(rows: np.ndarray) -> dict[str, np.ndarray]:
                    return {names[0]: np.array([_scalar(f(x, _take_rows(y, r)), "measure")
                                                for r in rows])}
            width = _work(x, y)

        def stats_of(unit_perms: np.ndarray) -> dict[str, np.ndarray]:
            rows = unit_perms if blocks is None else _rows_of(blocks, unit_perms)
            return stats_of_rows(rows)

        if n_units <= 12 and math.factorial(n_units) <= n_perm:
            perms = np.array(list(itertools.permutations(range(n_units))), dtype=np.intp)
            parts = [stats_of(perms[s:s + k]) for s, k in _chunks(perms.shape[0], width)]
            null = {m: np.concatenate([p[m] for p in parts]) for m in names}
            exact = True
        else:
            null = {m: np.empty(n_perm) for m in names}
            rng = np.random.default_rng(seed)
            for start, unit_perms in _permutations(rng, np.arange(n_units), n_perm):
                for s, k in _chunks(unit_perms.shape[0], width):
                    for m, v in stats_of(unit_perms[s:s + k]).items():
                        null[m][start + s:start + s + k] = v
            exact = False
    out = {}
    for m in names:
        _check_reps(null[m], "measure")
        out[m] = PermutationResult(observed[m], _p_value(null[m], observed[m], alternative,
                                                         exact), null[m], int(null[m].size),
                                   exact, alternative)
    return out


def _stack(rows: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {m: np.array([r[m] for r in rows]) for m in names}


def _streamed(x: Any, y: Any, perm: np.ndarray | None, chunk_rows: int, names: tuple[str, ...],
              keep: Any, rtol: Any, allow_few_samples: bool) -> dict[str, float]:
    """The measures of ``x`` against ``y[perm]`` (row ``i`` of ``x`` with row ``perm[i]`` of
    ``y``) through one accumulator, ``chunk_rows`` rows at a time."""
    from cca_lib.streaming import Accumulator

    n = int(x.shape[0])
    acc = Accumulator(int(x.shape[1]), int(y.shape[1]))
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        xb = x[start:stop]
        if perm is None:
            yb = y[start:stop]
        else:
            idx = np.asarray(perm[start:stop])
            order = np.argsort(idx, kind="stable")  # sorted reads of a memory map
            xb, yb = xb[order], y[idx[order]]
        acc.update(np.asarray(xb), np.asarray(yb))
    return acc.measures(keep=keep, rtol=rtol, allow_few_samples=allow_few_samples)


def _check_and_warn(x: Any, y: Any, allow_few_samples: bool, n_inputs: int | None,
                    stacklevel: int) -> None:
    """The named measures' input checks, and one few-samples warning counting ``n_inputs``
    (the groups: images, sequences) when given, else rows; ``stacklevel`` as
    ``warnings.warn``'s here."""
    n, d1, d2 = check_pair(x, y, allow_few_samples=allow_few_samples, warn_few=False)
    warn_few_samples(n, d1, d2, n_inputs=n_inputs, stacklevel=stacklevel + 1)


def _work(x: Any, y: Any) -> int:
    """Values held per permutation by the fast path (one permuted copy of the wider input)."""
    return int(x.shape[0]) * max(int(np.prod(x.shape[1:])), int(np.prod(y.shape[1:])))


def _rows_of(blocks: np.ndarray, unit_perms: np.ndarray) -> np.ndarray:
    """Row permutations from permutations of whole groups: the rows of group ``g`` receive the
    rows of group ``pi(g)``, position by position."""
    rows = np.empty((unit_perms.shape[0], blocks.size), dtype=np.intp)
    rows[:, blocks.ravel()] = blocks[unit_perms].reshape(unit_perms.shape[0], -1)
    return rows


def bootstrap_measure(x: Any, y: Any, measure: Any, *, n_boot: int = 200, level: float = 0.95,
                      seed: int, groups: Any = None, keep: float | int = 0.99,
                      rtol: float | None = None, allow_few_samples: bool = False) -> Interval:
    """Bootstrap interval of a measure over its inputs: rows (or whole groups of rows: one
    image's positions, one sequence's timesteps; sizes may differ) drawn with replacement,
    the same rows for ``x`` and ``y``, and the measure recomputed (percentile interval).

    ``measure``: a callable ``(x, y) -> float`` or a name in :data:`MEASURES`. This shows how
    much the value moves with the sample of inputs. It is not a debiased interval: duplicated
    rows act as fewer distinct samples, and CCA-type similarities rise as the samples per
    feature fall, so with few samples per feature the interval sits above the estimate; compare
    against :func:`permutation_null` for the floor. With ``groups`` the few-samples warning
    counts groups (inputs), not rows.
    """
    seed = _check_seed(seed)
    f, name = _resolve_measure(measure, keep, rtol, allow_few_samples)
    n = _n_rows(x, "x")
    if _n_rows(y, "y") != n:
        raise ValueError(f"x has {n} rows but y has {_n_rows(y, 'y')}: both must hold the same "
                         "inputs, one row each")
    n_boot = _check_count(n_boot, "n_boot", 2)
    level = _check_level(level)
    members = None
    if groups is not None:
        codes, uniq = _codes(groups, n, "groups")
        if uniq.size < 2:
            raise ValueError(f"groups must hold at least 2 groups, got {uniq.size}")
        members = [np.flatnonzero(codes == g) for g in range(uniq.size)]
    n_units = n if members is None else len(members)
    if name is not None:
        _check_and_warn(x, y, allow_few_samples, None if groups is None else n_units, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        estimate = _scalar(f(x, y), "measure")

        def rows(draws: np.ndarray) -> np.ndarray:
            out = np.empty(draws.shape[0])
            for r, i in enumerate(draws):
                idx = i if members is None else np.concatenate([members[g] for g in i])
                out[r] = _scalar(f(_take_rows(x, idx), _take_rows(y, idx)), "measure")
            return out

        reps = _draw_with_replacement(np.random.default_rng(seed), n_units, n_boot, rows)
    _check_reps(reps, "measure")
    low, high = _interval(estimate, reps, level, "percentile")
    return Interval(estimate, low, high, level, n_boot, "percentile")


# ---------------------------------------------------------------------------------------------
# Closed-form floors for independent Gaussian data
# ---------------------------------------------------------------------------------------------


def _check_shape_args(n: Any, d1: Any, d2: Any) -> tuple[int, int, int]:
    for value, name in ((n, "n"), (d1, "d1"), (d2, "d2")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if n <= d1 + d2:
        raise ValueError(f"n={n} <= d1 + d2 = {d1 + d2}: some canonical correlations are then "
                         "trivially 1; the floor is given for n > d1 + d2")
    return int(n), int(d1), int(d2)


@lru_cache(maxsize=256)
def _wachter_mean_sqrt(m: int, p: int, q: int) -> float:
    """Mean of the square root under the Wachter law of squared canonical correlations of
    ``p``- and ``q``-dimensional independent Gaussian data, ``m`` degrees of freedom."""
    p, q = min(p, q), max(p, q)
    c1, c2 = p / m, q / m
    u, v = math.sqrt(c2 * (1 - c1)), math.sqrt(c1 * (1 - c2))
    lo, hi = (u - v) ** 2, min((u + v) ** 2, 1.0)

    def density_times_sqrt(t: float) -> float:
        return math.sqrt(max((hi - t) * (t - lo), 0.0)) / (2 * math.pi * c1 * math.sqrt(t)
                                                            * (1 - t))

    return float(integrate.quad(density_times_sqrt, lo, hi, limit=200)[0])


@lru_cache(maxsize=256)
def _mp_kept(m: int, d: int, keep: float) -> int:
    """SVCCA's kept directions for isotropic data: the eigenvalues of ``x'x`` replaced by the
    Marchenko-Pastur quantiles at ``(i - 1/2)/d`` (ratio ``d/m``), then similarity's rule."""
    gamma = d / m
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    grid = np.linspace(a, b, 4001)
    dens = np.sqrt(np.clip((b - grid) * (grid - a), 0, None)) / (2 * math.pi * gamma * grid)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    vals = np.interp((np.arange(d) + 0.5) / d, cdf, grid)[::-1]
    return _sim._svd_reduce(vals, keep, "x")


def expected_null(n: int, d1: int, d2: int, *, measure: str = "mean CCA",
                  keep: float | int = 0.99) -> float:
    """Expected similarity of independent isotropic Gaussian ``x`` ``(n, d1)`` and ``y``
    ``(n, d2)`` under ``measure`` (a name in :data:`MEASURES`), in closed form (no CCA is run;
    see the module doc for the formulas). ``keep`` is SVCCA's. Needs ``n > d1 + d2``.

    An approximation from the large-``n`` limits, cheap (an integral, cached): within 3% of
    simulated nulls for ``d1, d2 >= 5`` (up to 8% for ``d`` of 1 or 2; SVCCA's least
    accurate when its kept count sits at a boundary). For real activations it is the
    floor of data with the same shape and no structure; :func:`permutation_null` gives the
    floor for the data's own spectra. With several correlated rows per input (one image's
    positions, one sequence's timesteps) pass ``n`` = the number of inputs: an upper estimate,
    as such rows carry more than one input's worth of samples but fewer than their count.
    """
    n, d1, d2 = _check_shape_args(n, d1, d2)
    _check_choice(measure, "measure", MEASURES)
    m = n - 1
    if measure == "linear CKA":
        return math.sqrt(d1 * d2 / ((n + d1) * (n + d2)))
    if measure == "SVCCA":
        keep = check_keep(keep)
        k1, k2 = ((keep if isinstance(keep, int) else _mp_kept(m, d, keep)) for d in (d1, d2))
        if isinstance(keep, int) and keep > min(d1, d2):
            raise ValueError(f"keep={keep} exceeds d1={d1} or d2={d2}")
        d1, d2 = k1, k2
    return _wachter_mean_sqrt(m, d1, d2)


def expected_floors(n: int, d1: int, d2: int, *, keep: float | int = 0.99) -> dict[str, float]:
    """:func:`expected_null` for every measure in :data:`MEASURES`."""
    return {name: expected_null(n, d1, d2, measure=name, keep=keep) for name in MEASURES}
