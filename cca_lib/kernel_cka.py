r"""CKA with a Gaussian (RBF) kernel (Kornblith et al. 2019), exact, with kernels in blocks.

**Shape convention.** As everywhere in :mod:`cca_lib`: ``x`` ``(n_samples, d1)``, ``y``
``(n_samples, d2)``, one row per input, the same inputs in the same order (numpy arrays or
torch tensors, float32 or float64; computed in float64 on the CPU).

**Math.** For one representation ``x`` with rows :math:`x_p`, the kernel is
:math:`K_{pq} = \exp(-\lVert x_p - x_q\rVert^2 / (2\sigma^2))` with the bandwidth
:math:`\sigma` = ``sigma_frac`` times the median of the distances :math:`\lVert x_p - x_q\rVert`
over the :math:`n(n-1)/2` distinct pairs :math:`p < q` (Kornblith et al. use 0.4 of the
median). With the centering matrix :math:`H = I - \tfrac1n \mathbf 1 \mathbf 1^\top` and
:math:`\tilde K = HKH`,

.. math:: \mathrm{CKA}(K, L) = \frac{\langle \tilde K, \tilde L\rangle_F}
          {\lVert \tilde K\rVert_F\, \lVert \tilde L\rVert_F} \in [0, 1].

The bandwidth follows the data, so the value is invariant to rotations, translations and
isotropic scaling of either input (not to other invertible maps).

**Blocks.** No ``n x n`` matrix is held: the kernel is computed in blocks of ``block`` rows,
``block x n`` at a time, three times (the median distance, the kernel's row means, then the
centred blocks :math:`\tilde K_{pq} = K_{pq} - m_p - m_q + \bar m` and their inner products).
The result is the same for every ``block`` (up to rounding) and equals the direct ``n x n``
computation. The exact median needs the :math:`n(n-1)/2` distances at once (float64), so
``n_samples`` is limited to :data:`MAX_SAMPLES`. Cost: ``O(n^2 (d + 1))`` per input and pass,
plus ``O(n^2)`` per pair of inputs.

:func:`rbf_cka_matrix` compares many representations of the same inputs at once: each input's
kernel is computed once per pass (not once per pair), and all inner products of a block come
from one matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cca_lib._validation import _check_one, check_pair, is_torch

__all__ = ["MAX_SAMPLES", "rbf_cka", "rbf_cka_matrix"]

#: Largest ``n_samples`` accepted: the exact median holds ``n (n - 1) / 2`` float64 distances
#: (about 1 GiB at this size).
MAX_SAMPLES = 16_384
#: Values of the centred kernel blocks held at once when ``block`` is None (128 MiB).
_BLOCK_VALUES = 2**24


def _as64(a: Any) -> np.ndarray:
    """A float64 numpy copy of ``a`` (array or torch tensor on any device), centred."""
    if is_torch(a):
        a = a.detach().cpu().numpy()
    out = np.array(a, dtype=np.float64)
    out -= out.mean(axis=0)
    return out


def _check_sigma_frac(sigma_frac: Any) -> float:
    if isinstance(sigma_frac, bool) or not isinstance(sigma_frac, int | float | np.floating):
        raise TypeError(f"sigma_frac must be a positive number, got "
                        f"{type(sigma_frac).__name__} {sigma_frac!r}")
    if not (math.isfinite(sigma_frac) and sigma_frac > 0):
        raise ValueError(f"sigma_frac must be a finite number > 0, got {sigma_frac!r}")
    return float(sigma_frac)


def _check_block(block: Any, n: int, m: int) -> int:
    if block is None:
        return int(max(1, min(n, _BLOCK_VALUES // max(1, m * n))))
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"block must be None or an int >= 1 (rows per block), got {block!r}")
    return int(min(block, n))


def _sq_dist_block(a: np.ndarray, norms: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Squared distances of rows ``start:stop`` to every row, ``(stop - start, n)``, with the
    pairs of a row with itself exactly 0."""
    d2 = a[start:stop] @ a.T
    d2 *= -2.0
    d2 += norms[None, :]
    d2 += norms[start:stop, None]
    np.maximum(d2, 0.0, out=d2)
    d2[np.arange(stop - start), np.arange(start, stop)] = 0.0
    return d2


class _Kernel:
    """One input's RBF kernel, computed block by block from its (centred) features."""

    def __init__(self, a: np.ndarray, sigma_frac: float, block: int, name: str) -> None:
        self.a = a
        self.norms = np.einsum("ij,ij->i", a, a)
        n = a.shape[0]
        upper = np.empty(n * (n - 1) // 2)
        pos = 0
        for start in range(0, n, block):
            stop = min(n, start + block)
            d2 = _sq_dist_block(a, self.norms, start, stop)
            for r in range(stop - start):
                row = d2[r, start + r + 1:]
                upper[pos:pos + row.size] = row
                pos += row.size
        median = float(np.median(np.sqrt(upper, out=upper)))
        if not median > 0:
            raise ValueError(
                f"{name} has no spread: the median distance between its samples is 0 (at least "
                "half of the pairs of samples are identical), so the RBF bandwidth is undefined")
        self.gamma = 1.0 / (2.0 * (sigma_frac * median) ** 2)
        self.block = block
        means = np.empty(n)
        for start in range(0, n, block):
            stop = min(n, start + block)
            means[start:stop] = self.kernel(start, stop).mean(axis=1)
        self.row_means = means
        self.grand_mean = float(means.mean())

    def kernel(self, start: int, stop: int) -> np.ndarray:
        k = _sq_dist_block(self.a, self.norms, start, stop)
        k *= -self.gamma
        return np.exp(k, out=k)

    def centred(self, start: int, stop: int) -> np.ndarray:
        k = self.kernel(start, stop)
        k -= self.row_means[start:stop, None]
        k -= self.row_means[None, :]
        k += self.grand_mean
        return k


def rbf_cka_matrix(reps: Sequence[Any], *, sigma_frac: float = 0.4,
                   block: int | None = None) -> np.ndarray:
    """RBF CKA between every pair of ``reps`` (representations of the same inputs), exact.

    ``reps``: a sequence of ``m >= 1`` arrays or tensors, each ``(n_samples, d_k)`` with the
    same ``n_samples``; ``sigma_frac``: each kernel's bandwidth as a fraction of its median
    pairwise distance; ``block``: kernel rows computed at once (None: as many as keep the
    ``m`` centred blocks near 2**24 values). Returns the symmetric ``(m, m)`` matrix of
    similarities in ``[0, 1]`` (ones on the diagonal). Each kernel is computed three times in
    blocks, whatever ``m``; the ``m x m`` inner products of a block come from one matrix
    product. Raises like :func:`rbf_cka` on bad inputs (``reps[k]`` named in the message).
    """
    if isinstance(reps, np.ndarray) or is_torch(reps) or not isinstance(reps, Sequence):
        raise TypeError(f"reps must be a sequence (list or tuple) of (n_samples, n_features) "
                        f"arrays, got {type(reps).__name__}")
    if not reps:
        raise ValueError("reps must hold at least one representation")
    sigma_frac = _check_sigma_frac(sigma_frac)
    n = None
    for k, a in enumerate(reps):
        nk, _ = _check_one(a, f"reps[{k}]")
        if n is not None and nk != n:
            raise ValueError(f"reps[{k}] has {nk} samples but reps[0] has {n}: all must hold "
                             "activations on the same inputs, one row per input")
        n = nk
    return _matrix([_as64(a) for a in reps], [f"reps[{k}]" for k in range(len(reps))],
                   sigma_frac, block)


def _matrix(arrays: list[np.ndarray], names: list[str], sigma_frac: float,
            block: int | None) -> np.ndarray:
    n, m = arrays[0].shape[0], len(arrays)
    if n > MAX_SAMPLES:
        raise ValueError(f"n_samples={n} exceeds MAX_SAMPLES={MAX_SAMPLES}: the exact median "
                         "distance holds all n (n - 1) / 2 distances; compare a subset of the "
                         "inputs")
    block = _check_block(block, n, m)
    kernels = [_Kernel(a, sigma_frac, block, name) for a, name in zip(arrays, names,
                                                                         strict=True)]
    gram = np.zeros((m, m))
    stack = np.empty((m, block * n))
    for start in range(0, n, block):
        stop = min(n, start + block)
        width = (stop - start) * n
        for k, kern in enumerate(kernels):
            stack[k, :width].reshape(stop - start, n)[...] = kern.centred(start, stop)
        part = stack[:, :width]
        gram += part @ part.T
    diag = np.sqrt(np.diag(gram))
    for k, name in enumerate(names):
        if not diag[k] > 0:
            raise ValueError(f"{name} has no variance: its centred RBF kernel is 0")
    out = gram / np.outer(diag, diag)
    np.clip(out, 0.0, 1.0, out=out)
    np.fill_diagonal(out, 1.0)
    return out


def rbf_cka(x: Any, y: Any, *, sigma_frac: float = 0.4, block: int | None = None) -> float:
    """CKA of ``x`` ``(n_samples, d1)`` and ``y`` ``(n_samples, d2)`` with RBF kernels, in
    ``[0, 1]`` (see the module doc for the math).

    ``sigma_frac``: each kernel's bandwidth as a fraction of the median distance between that
    input's samples (0.4 in Kornblith et al. 2019); ``block``: kernel rows computed at once
    (None: automatic; the value does not depend on it). Symmetric; invariant to rotation,
    translation and isotropic scaling of either input. Defined for any ``n_samples >= 2`` (up
    to :data:`MAX_SAMPLES`), also below ``d1 + d2``, and, unlike the CCA family, it does not
    warn there. Raises ``TypeError``/``ValueError`` on inputs the other similarity functions
    refuse (see :func:`cca_lib._validation.check_pair`), and ``ValueError`` when an input's
    median distance is 0 (e.g. a constant input).
    """
    check_pair(x, y, allow_few_samples=True, warn_few=False)
    sigma_frac = _check_sigma_frac(sigma_frac)
    return float(_matrix([_as64(x), _as64(y)], ["x", "y"], sigma_frac, block)[0, 1])
