"""Analyses shared by the chapters: distances within and between groups of networks, random
feature subsets, the non-CCA controls (cosine and Euclidean distance), distances to a reference
representation, the time-average on a log-step axis, cluster statistics (silhouette, adjusted
Rand index), and the per-net table and probe images of the CNN chapters.

All activations are ``(n_samples, n_features)`` arrays computed on the same inputs. Only
:func:`probe_images` needs torch (it imports :mod:`cca_lib.data` when called).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cca_lib.similarity import distance

if TYPE_CHECKING:
    from cca_lib.data import ImageDataset


def derived_seed(*keys: int) -> int:
    """A fixed int seed for one random step of an analysis, derived from the int ``keys``
    (e.g. the chapter's seed and the step's indices) with numpy's ``SeedSequence``."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def feature_subset(acts: np.ndarray, n_features: int, seed: int) -> np.ndarray:
    """A fixed random subset of ``n_features`` columns of ``acts`` (``(n_samples, d)``).

    Used to compare layers of different widths on an equal footing (the paper compares a random
    subset of 128 final-layer filters for every width). Raises if ``n_features`` exceeds ``d``:
    a subset is never silently smaller than asked.
    """
    acts = np.asarray(acts)
    if acts.ndim != 2:
        raise ValueError(f"acts must be 2-D (n_samples, n_features), got shape {acts.shape}")
    if not isinstance(n_features, int | np.integer) or not 1 <= n_features <= acts.shape[1]:
        raise ValueError(f"n_features must be an int in [1, {acts.shape[1]}] for acts of shape "
                         f"{acts.shape}, got {n_features!r}")
    cols = np.sort(np.random.default_rng(seed).choice(acts.shape[1], n_features, replace=False))
    return acts[:, cols]


def pairwise_setup(acts: Sequence[Any], method: str, kw: dict) -> tuple[int, bool]:
    """The number of matrices and whether entry ``(j, i)`` equals ``(i, j)`` for a pairwise
    distance matrix; sets the default ``symmetric=True`` for PWCCA in ``kw`` (in place)."""
    k = len(acts)
    if k < 2:
        raise ValueError(f"acts must hold at least 2 activation matrices, got {k}")
    if method == "pwcca":
        kw.setdefault("symmetric", True)
    return k, method != "pwcca" or bool(kw.get("symmetric", False))


def pairwise_distances(acts: Sequence[np.ndarray], method: str = "pwcca", **kw) -> np.ndarray:
    """Symmetric ``(k, k)`` matrix of ``distance(acts[i], acts[j], method)`` (zero diagonal).

    PWCCA is asymmetric, so for ``method="pwcca"`` the default is the symmetric variant
    (``symmetric=True``, the mean of both directions); pass ``symmetric=False`` to use
    ``acts[i]`` for the weights of entry ``(i, j)`` and ``acts[j]`` for ``(j, i)``.
    Cost: ``k (k - 1) / 2`` comparisons (``k (k - 1)`` when asymmetric).
    """
    k, symmetric = pairwise_setup(acts, method, kw)
    out = np.zeros((k, k))
    for i, j in combinations(range(k), 2):
        out[i, j] = distance(acts[i], acts[j], method=method, **kw)
        out[j, i] = out[i, j] if symmetric else distance(acts[j], acts[i], method=method, **kw)
    return out


def group_distances(groups: Mapping[str, Sequence[np.ndarray]], method: str = "pwcca",
                    **kw) -> pd.DataFrame:
    """Distances for every pair of networks within each group and across each pair of groups.

    ``groups`` maps a group name to one activation matrix per network (same layer, same inputs).
    Returns one row per pair: ``pair`` ("within: <g>" or "between: <g1> / <g2>"), ``group_a``,
    ``group_b``, ``i``, ``j``, ``distance``. Symmetric PWCCA by default, as in
    :func:`pairwise_distances`.
    """
    names = list(groups)
    if not names:
        raise ValueError("groups must not be empty")
    if method == "pwcca":
        kw.setdefault("symmetric", True)
    rows = []
    for g in names:
        for i, j in combinations(range(len(groups[g])), 2):
            rows.append({"pair": f"within: {g}", "group_a": g, "group_b": g, "i": i, "j": j,
                         "distance": distance(groups[g][i], groups[g][j], method=method, **kw)})
    for g1, g2 in combinations(names, 2):
        for i, a in enumerate(groups[g1]):
            for j, b in enumerate(groups[g2]):
                rows.append({"pair": f"between: {g1} / {g2}", "group_a": g1, "group_b": g2,
                             "i": i, "j": j,
                             "distance": distance(a, b, method=method, **kw)})
    return pd.DataFrame(rows, columns=["pair", "group_a", "group_b", "i", "j", "distance"])


def _paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be 2-D with the same shape (the same neurons on the same "
                         f"inputs), got {x.shape} and {y.shape}")
    return x, y


def cosine_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of ``1 - cos(x_i, y_i)``: compares the same neurons, so only meaningful
    for one network at two times. In ``[0, 2]``; a zero row counts as orthogonal."""
    x, y = _paired(x, y)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    cos = np.divide(np.einsum("ij,ij->i", x, y), norms, out=np.zeros(len(x)), where=norms > 0)
    return float(np.mean(1.0 - cos))


def euclidean_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of ``||x_i - y_i|| / sqrt(d)`` (root-mean-square difference per neuron):
    compares the same neurons, so only meaningful for one network at two times."""
    x, y = _paired(x, y)
    return float(np.mean(np.linalg.norm(x - y, axis=1)) / np.sqrt(x.shape[1]))


#: The measures of :func:`reference_distances`, in plotting order.
REFERENCE_MEASURES = ("PWCCA", "mean CCA", "cosine", "Euclidean")


def reference_distances(ref: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Distances of ``x`` to the reference ``ref``, the same neurons on the same inputs (a layer
    at some step or timestep against the same layer at the final one), both
    ``(n_samples, n_features)``, compared in float64.

    Returns one value per :data:`REFERENCE_MEASURES`: PWCCA distance with the weights from
    ``ref`` (``distance(ref, x, "pwcca")``), mean CCA distance, and the controls
    :func:`cosine_distance` and :func:`euclidean_distance`.
    """
    ref, x = np.asarray(ref, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return {
        "PWCCA": float(distance(ref, x, method="pwcca")),
        "mean CCA": float(distance(ref, x, method="mean_cca")),
        "cosine": cosine_distance(x, ref),
        "Euclidean": euclidean_distance(x, ref),
    }


_LOGS = {math.e: np.log, 2.0: np.log2, 10.0: np.log10}


def log_step_area(steps: Sequence[int] | np.ndarray, values: np.ndarray, *,
                  base: float = math.e, mean: bool = False) -> float | np.ndarray:
    """Trapezoid area under ``values`` against ``log(steps)`` (a curve over training on the
    usual log step axis).

    ``steps``: ``(n,)`` strictly increasing positive steps, ``n >= 2``; ``values``: ``(n,)``
    (returns a float) or ``(n, k)``, one curve per column (returns ``(k,)``). ``base``: the
    logarithm's base, ``e`` (default), 2 or 10. ``mean=True`` divides by the log-step range:
    the curve's time-average on the log axis, which does not depend on ``base``.
    """
    if base not in _LOGS:
        raise ValueError(f"base must be e, 2 or 10, got {base!r}")
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or len(steps) < 2:
        raise ValueError(f"steps must be 1-D with at least 2 entries, got shape {steps.shape}")
    if not steps[0] > 0 or not np.all(np.diff(steps) > 0):
        raise ValueError(f"steps must be positive and strictly increasing, got {steps}")
    y = np.asarray(values, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != len(steps):
        raise ValueError(f"values must be ({len(steps)},) or ({len(steps)}, k) for "
                         f"{len(steps)} steps, got shape {y.shape}")
    x = _LOGS[base](steps)
    dx = np.diff(x).reshape((-1,) + (1,) * (y.ndim - 1))
    area = (0.5 * (y[1:] + y[:-1]) * dx).sum(0)
    if mean:
        area = area / (x[-1] - x[0])
    return float(area) if y.ndim == 1 else area


def silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a clustering from a precomputed ``(k, k)`` distance matrix.

    For point i in cluster A: ``a`` = mean distance to the other members of A, ``b`` = the
    smallest mean distance to the members of another cluster; ``s_i = (b - a) / max(a, b)``,
    and ``s_i = 0`` for a point alone in its cluster (Rousseeuw 1987). Needs 2 .. k-1 clusters.
    """
    dist, labels = np.asarray(dist, dtype=float), np.asarray(labels)
    k = len(labels)
    if dist.shape != (k, k):
        raise ValueError(f"dist has shape {dist.shape}, expected ({k}, {k}) for {k} labels")
    names = np.unique(labels)
    if not 2 <= len(names) <= k - 1:
        raise ValueError(f"silhouette needs 2 .. {k - 1} clusters, got {len(names)}")
    s = np.zeros(k)
    for i in range(k):
        own = labels == labels[i]
        if own.sum() == 1:
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == c].mean() for c in names if c != labels[i])
        s[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(s.mean())


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same items (Hubert & Arabie 1985).

    1 for identical partitions (up to renaming), about 0 for independent ones.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"a and b must be 1-D labellings of the same >= 2 items, got shapes "
                         f"{a.shape} and {b.shape}")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    total = len(a) * (len(a) - 1) / 2
    expected = rows * cols / total
    top = 0.5 * (rows + cols)
    if top == expected:  # both partitions trivial (all one cluster or all singletons)
        return 1.0
    return float((index - expected) / (top - expected))


def nets_frame(runs: Sequence[Any], **labels: Sequence[Any]) -> pd.DataFrame:
    """One row per trained net (:class:`cca_lib.training.TrainResult`), in the order of
    ``runs``: the ``labels`` columns (each one value per run, in the order given), then
    ``seed`` (the run's training seed), ``test_acc``, ``train_acc`` (the run's final metrics,
    NaN where the run has none), ``converged`` and ``reason`` (empty when converged).
    """
    for name, values in labels.items():
        if len(values) != len(runs):
            raise ValueError(f"label {name!r} has {len(values)} values for {len(runs)} runs")
    return pd.DataFrame({
        **{name: list(values) for name, values in labels.items()},
        "seed": [r.config.seed for r in runs],
        "test_acc": [r.metrics.get("test_acc", np.nan) for r in runs],
        "train_acc": [r.metrics.get("train_acc", np.nan) for r in runs],
        "converged": [r.converged for r in runs],
        "reason": [r.reason for r in runs]})


def probe_images(dataset: str, split: str, size: int) -> ImageDataset:
    """The probe set of an image chapter: the first ``size`` images of ``split`` (``"train"``
    or ``"test"``) of ``dataset``, loaded without a progress bar. Every net of a chapter is
    recorded on the same probe."""
    from cca_lib import data

    return data.load_images(dataset, split, size, progress=False)


#: "Trained" means the last TRAINED_TAIL of training (by step) changed little:
TRAINED_TAIL = 0.2
#: a classifier: test accuracy moved by less than this (0.5 points) over that tail;
TRAINED_ACC_CHANGE = 0.005
#: a memorizing classifier instead: training accuracy at least this at the end;
MEMORIZED_TRAIN_ACC = 0.99
#: a language model: validation loss fell by less than this fraction over that tail.
TRAINED_LOSS_DROP = 0.01


def trained(run: Any, *, memorizing: bool = False) -> tuple[bool, str]:
    """Whether ``run`` (a :class:`cca_lib.training.TrainResult`) counts as trained, and why, in
    plain words. A classifier is trained when its test accuracy changed by less than
    :data:`TRAINED_ACC_CHANGE` over the last :data:`TRAINED_TAIL` of its steps (a memorizing
    one, ``memorizing=True``: when its final training accuracy is at least
    :data:`MEMORIZED_TRAIN_ACC`); a language model when its validation loss fell by less than
    :data:`TRAINED_LOSS_DROP` (relative) over that tail. A run that stopped on a non-finite
    loss, or whose history has no row before the tail, is not trained."""
    h = run.history
    if not run.converged and "non-finite" in run.reason:
        return False, f"stopped early: {run.reason}"
    if memorizing:
        acc = float(run.metrics.get("train_acc", np.nan))
        ok = bool(acc >= MEMORIZED_TRAIN_ACC)
        return ok, f"final training accuracy {acc:.3f} (needs at least {MEMORIZED_TRAIN_ACC})"
    column = "test_acc" if "test_acc" in h else "valid_loss"
    if column not in h or h.empty:
        raise ValueError(f"run {run.key} has no {column} history to judge training by")
    steps = h["step"].to_numpy()
    last = steps.max()
    start = last - TRAINED_TAIL * last
    before = h[h["step"] <= start]
    if before.empty:
        return False, "no evaluation before the last 20% of training"
    a, b = float(before[column].iloc[-1]), float(h[column].iloc[-1])
    if column == "test_acc":
        change = abs(b - a)
        ok = bool(change < TRAINED_ACC_CHANGE)
        return ok, (f"test accuracy {a:.3f} -> {b:.3f} over the last 20% of training "
                    f"(change {100 * change:.2f} points; trained if below "
                    f"{100 * TRAINED_ACC_CHANGE:.1f})")
    drop = (a - b) / abs(a) if a else np.inf
    ok = bool(np.isfinite(b) and drop < TRAINED_LOSS_DROP)
    return ok, (f"validation loss {a:.3f} -> {b:.3f} over the last 20% of training "
                f"(fell {100 * drop:.2f}%; trained if below {100 * TRAINED_LOSS_DROP:.0f}%)")
