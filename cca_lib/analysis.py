"""Analyses shared by the chapters: distances within and between groups of networks, random
feature subsets, and the non-CCA controls (cosine and Euclidean distance).

All activations are ``(n_samples, n_features)`` arrays computed on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from cca_lib.similarity import distance


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


def pairwise_distances(acts: Sequence[np.ndarray], method: str = "pwcca", **kw) -> np.ndarray:
    """Symmetric ``(k, k)`` matrix of ``distance(acts[i], acts[j], method)`` (zero diagonal).

    PWCCA is asymmetric, so for ``method="pwcca"`` the default is the symmetric variant
    (``symmetric=True``, the mean of both directions); pass ``symmetric=False`` to use
    ``acts[i]`` for the weights of entry ``(i, j)`` and ``acts[j]`` for ``(j, i)``.
    Cost: ``k (k - 1) / 2`` comparisons (``k (k - 1)`` when asymmetric).
    """
    k = len(acts)
    if k < 2:
        raise ValueError(f"acts must hold at least 2 activation matrices, got {k}")
    if method == "pwcca":
        kw.setdefault("symmetric", True)
    symmetric = method != "pwcca" or kw.get("symmetric", False)
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
