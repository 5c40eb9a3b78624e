r"""Similarity of two layers' activations: CCA, mean CCA, SVCCA, PWCCA and linear CKA.

**Shape convention.** Every function takes ``x`` of shape ``(n_samples, d1)`` and ``y`` of shape
``(n_samples, d2)``: one row per input, one column per neuron, the same inputs in the same order
in both (numpy arrays or torch tensors, CPU or CUDA, float32 or float64). The reference code
(google/svcca) uses the transpose, ``(neurons, datapoints)``.

**Math.** Each neuron is centered. With :math:`\Sigma_{xx} = x^\top x`, :math:`\Sigma_{yy}`,
:math:`\Sigma_{xy} = x^\top y`, CCA whitens each layer, :math:`W_x = \Sigma_{xx}^{-1/2}`, and
takes the SVD :math:`W_x^\top \Sigma_{xy} W_y = A\,\mathrm{diag}(\rho)\,B^\top`. The
:math:`\rho_i` are the canonical correlations, ``x_weights = W_x A`` the canonical directions in
``x``'s neuron space, and the canonical variates ``h = x_centered @ x_weights`` are orthonormal
``n``-vectors. Similarities are in ``[0, 1]``; ``distance = 1 - similarity``.

**Rank deficiency.** Whitening is rank revealing: the eigenvalues :math:`\lambda` of
:math:`\Sigma_{xx}` below ``rtol**2`` times the largest are dropped (singular values of the
centered data below ``rtol`` times the largest), and :class:`CCAResult` reports how many
(``dropped_x``, ``dropped_y``). Dead (constant) neurons, duplicated neurons and rank-deficient
layers therefore give finite answers, never NaN or ``LinAlgError``. Default ``rtol``:

* ``1e-6`` for float64 inputs: the covariance is exact to about ``1e-15`` relative, so an exact
  duplicate or dead neuron leaves an eigenvalue near ``1e-15 lambda_max``, far below the cut
  ``1e-12 lambda_max``, while genuine directions down to a millionth of the largest standard
  deviation are kept;
* ``3e-3`` for float32 inputs: products are formed in float32 (about 7 digits), so a duplicate
  leaves an eigenvalue up to about ``1e-7 lambda_max`` (singular-value ratio ``~3e-4``); the
  cut at ``~1e-5 lambda_max`` leaves a 10x margin. Pass ``rtol`` to choose otherwise.

An input with no variance at all (every neuron constant) raises ``ValueError``: its similarity
to anything is undefined (0/0), and returning 0 would hide a broken capture.

**Accuracy of float32.** Within blocks of rows the products are float32, summed across blocks in
float64. On well-conditioned data ``rho`` from float32 inputs agrees with float64 to about
``1e-7`` (``benchmarks/bench_similarity.py`` reports it per size: 1e-8 to 5e-8 measured); the
error grows with the condition number of the inputs. Tests allow ``1e-4``.

**Cost.** With ``d = max(d1, d2)``: the default ``method="gram"`` forms the three covariance
matrices in one pass over the samples, ``n (d1^2 + d2^2 + 2 d1 d2)`` flops (SYRK for
:math:`\Sigma_{xx}, \Sigma_{yy}`, GEMM for :math:`\Sigma_{xy}`: ``~4 n d^2``, the same count as
a SYRK of the stacked ``[x, y]``, which is the minimum for forming these matrices), then
``O(d^3)`` in float64 on ``d x d`` matrices: two whitenings (Cholesky when an input is clearly
well-conditioned, else the rank-revealing ``eigh``; same result, see ``_fast_whitener``) and
one SVD (coefficients alone skip the singular vectors). Extra memory: one block of rows
(8192 rows, or ``~2**22`` values for narrow layers) plus ``O(d^2)``; no
centered copy of the data. CUDA tensors are centered and multiplied on their device (an ``n x d``
centered copy there). PWCCA's weights come from :math:`x^\top h = \Sigma_{xx} W_x A` at no extra
pass over the samples. ``method="svd"`` is an independent implementation (thin SVD of the
centered data in float64 on the CPU, ``~6 n d^2`` flops and an ``n x d`` copy per input) that
resolves singular values down to machine precision rather than its square root; it is there
to cross-check the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cca_lib._validation import (
    FewSamplesWarning,
    check_keep,
    check_pair,
    check_rtol,
    host_view,
    is_torch,
    on_cuda,
)

__all__ = ["CCAResult", "FewSamplesWarning", "cca", "compare", "distance", "linear_cka",
           "mean_cca", "pwcca", "svcca"]

_DEFAULT_RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 3e-3}
_METHODS = ("gram", "svd")


@dataclass(frozen=True)
class CCAResult:
    """Result of :func:`cca`. ``c = min(rank_x, rank_y)`` canonical pairs.

    ``rho``: ``(c,)`` canonical correlations, sorted descending, in ``[0, 1]``.
    ``x_weights``: ``(d1, c)`` canonical directions of ``x`` (``h = x_centered @ x_weights``);
    ``y_weights``: ``(d2, c)`` likewise. ``x_variates``, ``y_variates``: ``(n, c)`` orthonormal
    canonical variates (``None`` when ``cca(..., variates=False)``). ``dropped_x``,
    ``dropped_y``: directions of each input dropped as numerically dependent.
    """

    rho: np.ndarray
    x_weights: np.ndarray
    y_weights: np.ndarray
    x_variates: np.ndarray | None
    y_variates: np.ndarray | None
    dropped_x: int
    dropped_y: int
    n_samples: int

    @property
    def mean(self) -> float:
        """Mean CCA similarity, the unweighted mean of ``rho``."""
        return float(np.mean(self.rho))


# ---------------------------------------------------------------------------------------------
# Covariances (the one pass over the samples)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grams:
    """Covariances of the centered inputs (float64, unnormalized) and what else needs the data."""

    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    n: int
    rtol_x: float
    rtol_y: float


def _rtol_for(arr: Any, rtol: float | None) -> float:
    if rtol is not None:
        return rtol
    single = str(arr.dtype) in ("float32", "torch.float32")
    return _DEFAULT_RTOL[np.dtype(np.float32 if single else np.float64)]


def _common_torch(x: Any, y: Any) -> tuple[Any, Any]:
    """Put a numpy/torch mix on the CUDA tensor's device; compute in the wider float dtype."""
    import torch

    ref = x if on_cuda(x) else y
    x, y = (a.to(ref.device) if is_torch(a) else
            torch.from_numpy(np.ascontiguousarray(a)).to(ref.device) for a in (x, y))
    if x.dtype != y.dtype:
        x, y = x.double(), y.double()
    return x, y


#: Rows per block when accumulating covariances on the CPU: at least 8192 rows, or about 2**22
#: values for narrow layers. Each block's ``d x d`` products are added into float64
#: accumulators, a pass over memory that does not shrink with the block; at 1024x50000 in
#: float32 (2 threads) the loop took 1.65 s with 2048-row blocks and 1.38 s with 8192 against
#: 1.25 s for the bare products. The extra memory is one block: 8192 rows of ``d1 + d2``
#: values (64 MiB in float32 at ``d1 + d2 = 2048``), independent of ``n_samples``.
_BLOCK_VALUES = 2**22
_MIN_BLOCK_ROWS = 8192


def _grams(x: Any, y: Any, rtol: float | None) -> _Grams:
    """Covariances of the centered inputs, float64, in one blocked pass over the samples.

    CPU inputs (numpy arrays, and CPU tensors viewed as numpy without a copy, whose BLAS was
    measured faster here than torch's): the means first, then blocks of rows are centered into
    a reused buffer and their products accumulated in float64 (SYRK for ``x'x``, ``y'y``, GEMM
    for ``x'y``). Extra memory is one block, not a centered copy of the data; float32 inputs are
    multiplied in float32 within a block (twice the speed) and summed across blocks in float64.
    CUDA tensors: centered and multiplied on their device in their dtype; only the ``d x d``
    results come to the host.
    """
    rtol_x, rtol_y = _rtol_for(x, rtol), _rtol_for(y, rtol)
    n = int(x.shape[0])
    if on_cuda(x) or on_cuda(y):
        x, y = _common_torch(x, y)
        xc = x - x.mean(dim=0, keepdim=True)
        yc = y - y.mean(dim=0, keepdim=True)
        sxx, syy, sxy = ((a.T @ b).double().cpu().numpy()
                         for a, b in ((xc, xc), (yc, yc), (xc, yc)))
    else:
        x, y = host_view(x), host_view(y)
        if x.dtype != y.dtype:
            x, y = x.astype(np.float64), y.astype(np.float64)
        d1, d2 = x.shape[1], y.shape[1]
        # Shift each neuron by its mean rounded to the input dtype, so blocks are centered in
        # that dtype (float32 stays float32); the rounding leaves a known offset
        # delta = mean - shift per neuron, removed exactly at the end:
        # sum (x - s)(x - s)' = sum (x - m)(x - m)' + n delta delta'.
        mx, my = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
        shx, shy = mx.astype(x.dtype), my.astype(y.dtype)
        dx, dy = mx - shx, my - shy
        block = int(min(n, max(_MIN_BLOCK_ROWS, _BLOCK_VALUES // (d1 + d2))))
        bx, by = np.empty((block, d1), x.dtype), np.empty((block, d2), y.dtype)
        sxx, syy = np.zeros((d1, d1)), np.zeros((d2, d2))
        sxy = np.zeros((d1, d2))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            for start in range(0, n, block):
                stop = min(n, start + block)
                a, b = bx[: stop - start], by[: stop - start]
                np.subtract(x[start:stop], shx, out=a)
                np.subtract(y[start:stop], shy, out=b)
                sxx += a.T @ a
                syy += b.T @ b
                sxy += a.T @ b
        sxx -= n * np.outer(dx, dx)
        syy -= n * np.outer(dy, dy)
        sxy -= n * np.outer(dx, dy)
    for mat, name in ((sxx, "x"), (syy, "y"), (sxy, "x and y")):
        if not np.isfinite(mat).all():  # the inputs are finite, so the products overflowed
            dtype = str(x.dtype).replace("torch.", "")
            shapes = f"x {tuple(x.shape)}, y {tuple(y.shape)}"
            raise ValueError(f"the covariance products of {name} overflowed {dtype} ({shapes}): "
                             "the inputs are too large to square and sum (float32 overflows "
                             "near 1e38); rescale them or pass float64")
    # symmetrize against rounding so eigh sees an exactly symmetric matrix
    return _Grams((sxx + sxx.T) / 2, (syy + syy.T) / 2, sxy, n, rtol_x, rtol_y)


def _whitener(s: np.ndarray, rtol: float, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-revealing inverse square root of the PSD matrix ``s``.

    Returns ``(w, vecs, vals)``: ``w`` is ``(d, r)`` with ``w.T @ s @ w = I_r``, keeping the
    eigen-directions whose eigenvalue exceeds ``rtol**2`` times the largest (singular values of
    the centered data above ``rtol`` times the largest); ``vecs``/``vals`` are the kept
    eigenvectors/eigenvalues, largest first.
    """
    vals, vecs = np.linalg.eigh(s)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    top = vals[0] if vals.size else 0.0
    if not top > 0:
        raise ValueError(f"{name} has no variance: every neuron is constant over the samples, "
                         "so its similarity to anything is undefined")
    keep = vals > (rtol * rtol) * top
    vals, vecs = vals[keep], vecs[:, keep]
    return vecs / np.sqrt(vals), vecs, vals


@dataclass(frozen=True)
class _Core:
    rho: np.ndarray
    x_weights: np.ndarray
    y_weights: np.ndarray
    dropped_x: int
    dropped_y: int


#: The Cholesky shortcut is taken only when a bound on the condition number is this many times
#: below the eigenvalue cut ``1 / rtol**2`` (see :func:`_fast_whitener`).
_CHOLESKY_MARGIN = 10.0


def _fast_whitener(s: np.ndarray, rtol: float, name: str) -> np.ndarray:
    """A whitening ``w`` (``w.T @ s @ w = I_r``) with the same rank decision as
    :func:`_whitener`, by Cholesky when ``s`` is clearly well-conditioned.

    CCA does not depend on which whitening is used (any two differ by an orthogonal factor
    that the SVD absorbs). ``s = L L'`` gives ``w = L^{-T}``, several times cheaper than an
    eigendecomposition at ``d = 1024``. It is used only when the upper bound
    ``kappa_1(s) <= ||s||_1 ||L^{-1}||_1 ||L^{-1}||_inf`` (from ``s^{-1} = L^{-T} L^{-1}``) is
    below ``1 / (10 rtol^2)``: since ``kappa_2 <= kappa_1`` for symmetric matrices, every
    eigenvalue is then above ten times the cut ``rtol^2 lambda_max``, so the eigendecomposition
    would keep every direction too. The factor 10 covers rounding: ``s`` is float64 (also
    for float32 inputs), so the bound, computed from the computed ``L^{-1}``, and the
    eigenvalues ``eigh`` would compare with the cut are both correct to far better than 10%.
    The bound can exceed ``kappa_2`` by up to ``d^1.5`` (each norm by up to ``sqrt(d)``), which
    only sends more inputs to the eigendecomposition; at 1024x50000 it was 116 for a condition
    number of 1.8 and 4610 for 28, inside float32's limit ``1 / (10 * 3e-3**2) = 11111`` (a
    margin of 1000 sent both to the eigendecomposition). Otherwise (dead, duplicate or nearly
    dependent neurons) the rank-revealing eigendecomposition decides what to drop. With a
    user ``rtol`` below about ``1e-8`` the cut approaches ``eigh``'s own rounding
    (``~d eps lambda_max``), and the two routes can then disagree about a direction at the
    cut; the default tolerances are far from that.

    Everything here is numpy's LAPACK, on purpose: scipy's LAPACK is a second OpenBLAS with
    its own thread pool, and alternating between the two pools made these calls 5 to 25
    times slower with 2 threads on 2 cores (each pool's idle threads spin on the cores the
    other needs).
    """
    try:
        chol = np.linalg.cholesky(s)
        inv = np.linalg.inv(chol)  # lower triangular L^{-1}
    except np.linalg.LinAlgError:
        return _whitener(s, rtol, name)[0]
    absinv = np.abs(inv)
    bound = np.abs(s).sum(axis=0).max() * absinv.sum(axis=0).max() * absinv.sum(axis=1).max()
    if not bound < 1.0 / (_CHOLESKY_MARGIN * rtol * rtol):  # also catches inf / nan
        return _whitener(s, rtol, name)[0]
    return np.tril(inv).T


def _cca_from_grams(g: _Grams, vectors: bool = True) -> _Core:
    """CCA from the covariances. ``vectors=False``: only ``rho`` (singular values without
    vectors, about half the ``O(d^3)`` work); the weights are then empty ``(d, 0)`` arrays."""
    wx = _fast_whitener(g.sxx, g.rtol_x, "x")
    wy = _fast_whitener(g.syy, g.rtol_y, "y")
    m = wx.T @ g.sxy @ wy
    dropped_x, dropped_y = g.sxx.shape[0] - wx.shape[1], g.syy.shape[0] - wy.shape[1]
    if not vectors:
        s = np.linalg.svd(m, compute_uv=False)
        return _Core(rho=np.clip(s, 0.0, 1.0), x_weights=np.empty((g.sxx.shape[0], 0)),
                     y_weights=np.empty((g.syy.shape[0], 0)), dropped_x=dropped_x,
                     dropped_y=dropped_y)
    a, s, bt = np.linalg.svd(m, full_matrices=False)
    c = s.size  # = min(rank_x, rank_y)
    return _Core(rho=np.clip(s, 0.0, 1.0), x_weights=wx @ a[:, :c], y_weights=wy @ bt[:c].T,
                 dropped_x=dropped_x, dropped_y=dropped_y)


def _pw_mean(rho: np.ndarray, xtx_weights: np.ndarray) -> float:
    """Projection-weighted mean: weights ``sum_j |<h_i, z_j>|`` from ``x.T @ h`` ``(d1, c)``."""
    alpha = np.abs(xtx_weights).sum(axis=0)
    return float(np.clip(alpha @ rho / alpha.sum(), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# The independent implementation: SVD of the centered data
# ---------------------------------------------------------------------------------------------


def _to_host64(a: Any) -> np.ndarray:
    return a.detach().double().cpu().numpy() if is_torch(a) else np.asarray(a, dtype=np.float64)


def _basis(a: np.ndarray, rtol: float, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Orthonormal basis ``u`` of the centered columns and the map ``m`` with ``a_c @ m = u``."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    if not s.size or not s[0] > 0:
        raise ValueError(f"{name} has no variance: every neuron is constant over the samples, "
                         "so its similarity to anything is undefined")
    keep = s > rtol * s[0]
    return u[:, keep], vt[keep].T / s[keep], a.shape[1] - int(keep.sum())


def _cca_svd(x: Any, y: Any, rtol: float | None) -> tuple[_Core, np.ndarray, np.ndarray]:
    rtol_x, rtol_y = _rtol_for(x, rtol), _rtol_for(y, rtol)
    xc, yc = _to_host64(x), _to_host64(y)
    xc, yc = xc - xc.mean(axis=0), yc - yc.mean(axis=0)
    ux, mx, dx = _basis(xc, rtol_x, "x")
    uy, my, dy = _basis(yc, rtol_y, "y")
    a, s, bt = np.linalg.svd(ux.T @ uy, full_matrices=False)
    c = s.size
    core = _Core(rho=np.clip(s, 0.0, 1.0), x_weights=mx @ a[:, :c], y_weights=my @ bt[:c].T,
                 dropped_x=dx, dropped_y=dy)
    return core, xc, yc


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------


def _prepare(x, y, allow_few_samples, rtol, method):
    check_pair(x, y, allow_few_samples=allow_few_samples, stacklevel=4)
    rtol = check_rtol(rtol)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return rtol


def cca(x: Any, y: Any, *, variates: bool = True, method: str = "gram", rtol: float | None = None,
        allow_few_samples: bool = False) -> CCAResult:
    """Canonical correlation analysis of ``x`` ``(n_samples, d1)`` and ``y`` ``(n_samples, d2)``.

    Returns a :class:`CCAResult` (see the module doc for the math). ``variates=False`` skips the
    ``(n, c)`` canonical variates (saves ``2 n d c`` flops and their memory). ``method``:
    ``"gram"`` (default, fast) or ``"svd"`` (independent, more accurate on ill-conditioned data).
    ``rtol``: relative singular-value tolerance for dropping dependent directions (default by
    dtype, see the module doc). Invariant to any invertible linear map of either input and to
    translation. Cost: ``~4 n d^2`` flops plus ``O(d^3)``; variates ``2 n d c`` more.
    """
    rtol = _prepare(x, y, allow_few_samples, rtol, method)
    if method == "svd":
        core, xc, yc = _cca_svd(x, y, rtol)
        hx = xc @ core.x_weights if variates else None
        hy = yc @ core.y_weights if variates else None
    else:
        core = _cca_from_grams(_grams(x, y, rtol))
        hx = hy = None
        if variates:
            hx, hy = (_variates(a, w) for a, w in ((x, core.x_weights), (y, core.y_weights)))
    return CCAResult(rho=core.rho, x_weights=core.x_weights, y_weights=core.y_weights,
                     x_variates=hx, y_variates=hy, dropped_x=core.dropped_x,
                     dropped_y=core.dropped_y, n_samples=int(x.shape[0]))


def _variates(a: Any, w: np.ndarray) -> np.ndarray:
    """Canonical variates ``(a - mean) @ w`` as a float64 numpy array."""
    if on_cuda(a):
        import torch

        ac = a - a.mean(dim=0, keepdim=True)
        return (ac.double() @ torch.from_numpy(w).to(ac.device)).cpu().numpy()
    a = host_view(a)
    ac = a.astype(np.float64, copy=False) - a.mean(axis=0, dtype=np.float64)
    return ac @ w


def mean_cca(x: Any, y: Any, *, method: str = "gram", rtol: float | None = None,
             allow_few_samples: bool = False) -> float:
    """Mean CCA similarity: the unweighted mean of the canonical correlations, in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``. Symmetric; invariant to invertible
    linear maps and translation of either input. Cost as :func:`cca` without variates.
    """
    rtol = _prepare(x, y, allow_few_samples, rtol, method)
    if method == "svd":
        return float(np.mean(_cca_svd(x, y, rtol)[0].rho))
    return float(np.mean(_cca_from_grams(_grams(x, y, rtol), vectors=False).rho))


def pwcca(x: Any, y: Any, *, symmetric: bool = False, method: str = "gram",
          rtol: float | None = None, allow_few_samples: bool = False) -> float:
    r"""Projection-weighted CCA similarity (Morcos et al. 2018, Sec. 2.2), in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``, any ``d1``, ``d2``. With the
    orthonormal canonical variates :math:`h_i` of ``x`` and its centered neurons :math:`z_j`:
    :math:`\tilde\alpha_i = \sum_j |\langle h_i, z_j\rangle|`,
    :math:`\alpha = \tilde\alpha / \sum \tilde\alpha`, similarity :math:`\sum_i \alpha_i \rho_i`.

    The weights come from ``x``: PWCCA is asymmetric. ``symmetric=True`` returns the mean of
    ``pwcca(x, y)`` and ``pwcca(y, x)`` (one pass over the data). Invariances: any invertible
    linear map of ``y``; permutation, isotropic scaling and translation of ``x``; NOT rotations of
    ``x`` in general (the weights sum absolute values over ``x``'s neuron basis, as the paper's
    formula does). Cost as :func:`cca` without variates (the weights need no extra pass).
    """
    rtol = _prepare(x, y, allow_few_samples, rtol, method)
    if method == "svd":
        core, xc, yc = _cca_svd(x, y, rtol)
        forward = _pw_mean(core.rho, xc.T @ (xc @ core.x_weights))
        if not symmetric:
            return forward
        return 0.5 * (forward + _pw_mean(core.rho, yc.T @ (yc @ core.y_weights)))
    g = _grams(x, y, rtol)
    core = _cca_from_grams(g)
    forward = _pw_mean(core.rho, g.sxx @ core.x_weights)
    if not symmetric:
        return forward
    return 0.5 * (forward + _pw_mean(core.rho, g.syy @ core.y_weights))


def _svd_reduce(vals: np.ndarray, keep: float | int, name: str) -> int:
    """Number of top directions kept by SVCCA for eigenvalues ``vals`` (descending)."""
    if isinstance(keep, int):
        if keep > vals.size:
            raise ValueError(f"keep={keep} exceeds the number of independent directions of "
                             f"{name} ({vals.size})")
        return keep
    frac = np.cumsum(vals) / vals.sum()
    return int(min(np.searchsorted(frac, keep - 1e-12) + 1, vals.size))


def _svcca_from_grams(g: _Grams, keep: float | int) -> float:
    _, vx, lx = _whitener(g.sxx, g.rtol_x, "x")
    _, vy, ly = _whitener(g.syy, g.rtol_y, "y")
    kx, ky = _svd_reduce(lx, keep, "x"), _svd_reduce(ly, keep, "y")
    # The reduced layers x @ vx[:, :kx] have diagonal covariance lx[:kx]: whiten directly.
    wx = vx[:, :kx] / np.sqrt(lx[:kx])
    wy = vy[:, :ky] / np.sqrt(ly[:ky])
    s = np.linalg.svd(wx.T @ g.sxy @ wy, compute_uv=False)
    return float(np.mean(np.clip(s, 0.0, 1.0)))


def svcca(x: Any, y: Any, keep: float | int = 0.99, *, rtol: float | None = None,
          allow_few_samples: bool = False) -> float:
    """SVCCA similarity (Raghu et al. 2017): mean CCA after reducing each input to its top
    singular directions, in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``. ``keep``: a float in ``(0, 1]`` keeps
    the fewest top directions whose variance reaches that fraction (per input); an int keeps
    that many directions (an error if an input has fewer independent directions). Symmetric;
    invariant to rotation, isotropic scaling, translation and permutation, not to general
    invertible maps (they change which directions carry the variance). Cost as :func:`cca`.
    """
    keep = check_keep(keep)
    rtol = _prepare(x, y, allow_few_samples, rtol, "gram")
    return _svcca_from_grams(_grams(x, y, rtol), keep)


def _hsic_terms(gram_norm2: float, diag_a: np.ndarray, diag_b: np.ndarray, n: int) -> float:
    """Unbiased HSIC (Song et al. 2012) of two linear kernels of centered features, from
    ``tr(K L) = gram_norm2`` and the kernels' diagonals (row norms squared)."""
    # centered features: K 1 = 0, so 1'K~1 = -sum(diag K) and K~1 = -diag K
    tr = gram_norm2 - diag_a @ diag_b
    sum_a, sum_b = -diag_a.sum(), -diag_b.sum()
    cross = diag_a @ diag_b
    return (tr + sum_a * sum_b / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def linear_cka(x: Any, y: Any, *, debiased: bool = False,
               allow_few_samples: bool = False) -> float:
    r"""Linear CKA (Kornblith et al. 2019), in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``, centered:
    :math:`\|y^\top x\|_F^2 / (\|x^\top x\|_F \|y^\top y\|_F)`. ``debiased=True`` uses the
    unbiased HSIC estimator (Song et al. 2012), computed in feature space in ``O(n d^2)``
    without ``n x n`` kernels; it can dip slightly below 0 for unrelated inputs and is clipped
    to ``[0, 1]`` (needs ``n_samples >= 4``). Invariant to rotation, isotropic scaling,
    translation and permutation; not to general invertible maps. Cost ``~4 n d^2`` flops
    (debiased: ``2 n d`` more for the kernels' diagonals).
    """
    check_pair(x, y, allow_few_samples=allow_few_samples)
    g = _grams(x, y, None)
    if not debiased:
        den = np.linalg.norm(g.sxx) * np.linalg.norm(g.syy)
        if not den > 0:
            raise ValueError("x or y has no variance: every neuron is constant over the samples")
        return float(np.clip(np.linalg.norm(g.sxy) ** 2 / den, 0.0, 1.0))
    n = g.n
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {n}")
    da, db = _row_norms2(x), _row_norms2(y)
    hxy = _hsic_terms(np.linalg.norm(g.sxy) ** 2, da, db, n)
    hxx = _hsic_terms(np.linalg.norm(g.sxx) ** 2, da, da, n)
    hyy = _hsic_terms(np.linalg.norm(g.syy) ** 2, db, db, n)
    if not (hxx > 0 and hyy > 0):
        raise ValueError("x or y has no variance left after debiasing (too few samples?)")
    return float(np.clip(hxy / np.sqrt(hxx * hyy), 0.0, 1.0))


def _row_norms2(a: Any) -> np.ndarray:
    """Squared norms of the centered rows (the linear kernel's diagonal), float64."""
    if on_cuda(a):
        ac = a.double() - a.double().mean(dim=0, keepdim=True)
        return (ac * ac).sum(dim=1).cpu().numpy()
    ac = host_view(a).astype(np.float64, copy=False)
    ac = ac - ac.mean(axis=0)
    return np.einsum("ij,ij->i", ac, ac)


_MEASURES = {
    "pwcca": pwcca,
    "mean_cca": mean_cca,
    "svcca": svcca,
    "cka": linear_cka,
    "cka_debiased": lambda x, y, **kw: linear_cka(x, y, debiased=True, **kw),
}


def distance(x: Any, y: Any, method: str = "pwcca", **kw: Any) -> float:
    """``1 - similarity`` for ``method`` in ``"pwcca"``, ``"mean_cca"``, ``"svcca"``, ``"cka"``,
    ``"cka_debiased"``; ``kw`` go to that function (e.g. ``symmetric=True``, ``keep=0.99``).
    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``."""
    if method not in _MEASURES:
        raise ValueError(f"method must be one of {sorted(_MEASURES)}, got {method!r}")
    return 1.0 - _MEASURES[method](x, y, **kw)


def compare(x: Any, y: Any, *, keep: float | int = 0.99, rtol: float | None = None,
            allow_few_samples: bool = False) -> dict[str, float]:
    """Every similarity at once, from one pass over the data: ``{"mean CCA", "SVCCA", "PWCCA",
    "PWCCA (symmetric)", "linear CKA"}`` -> value in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``; ``keep`` is SVCCA's.
    """
    keep = check_keep(keep)
    rtol = _prepare(x, y, allow_few_samples, rtol, "gram")
    g = _grams(x, y, rtol)
    core = _cca_from_grams(g)
    forward = _pw_mean(core.rho, g.sxx @ core.x_weights)
    backward = _pw_mean(core.rho, g.syy @ core.y_weights)
    den = np.linalg.norm(g.sxx) * np.linalg.norm(g.syy)
    return {
        "mean CCA": float(np.mean(core.rho)),
        "SVCCA": _svcca_from_grams(g, keep),
        "PWCCA": forward,
        "PWCCA (symmetric)": 0.5 * (forward + backward),
        "linear CKA": float(np.clip(np.linalg.norm(g.sxy) ** 2 / den, 0.0, 1.0)),
    }
