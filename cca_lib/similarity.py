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

**Scale.** Every input is first multiplied, internally, by the power of two ``2**-e`` that
brings its largest absolute value into ``[0.5, 1)``. That is exact (only exponents change), and
every measure here is invariant to scaling an input, so the results do not depend on it, but no
product can overflow or underflow for any finite input: ``x * 1e-300`` and ``x * 1e300`` in
float64, or ``x * 1e-35`` and ``x * 1e35`` in float32, give the answers ``x`` gives. (A neuron
far smaller than the input's largest value, below about ``1e-18`` of it in float32 or
``1e-150`` in float64, then has products near the bottom of the range and loses precision.)

**Rank rule** (the one rule for every function, both methods, float32 and float64 inputs,
numpy arrays and torch tensors):

1. A neuron is *dead* when it takes a single value over the samples, or when its standard
   deviation is at most the rounding unit of its own mean (``eps * |mean|``, ``eps`` of the
   input's dtype, ``1.2e-7`` for float32 and ``2.2e-16`` for float64): what varies is then
   rounding, not signal. Dead neurons are dropped.
2. The other neurons are standardized: the decision is made on their correlation matrix
   :math:`R = D^{-1/2} \Sigma_{xx} D^{-1/2}` (:math:`D` the diagonal of :math:`\Sigma_{xx}`),
   so it does not depend on the neurons' scales, exactly as CCA itself does not. The
   eigen-directions of :math:`R` whose eigenvalue is at most ``rtol**2`` times its largest are
   dropped (singular values of the standardized, centered data at most ``rtol`` times the
   largest): exact or near duplicates, and neurons that are linear combinations of others.

:class:`CCAResult` reports how many directions each input lost (``dropped_x``, ``dropped_y``:
dead neurons plus dependent directions). Dead, duplicated and rank-deficient layers therefore
give finite answers, never NaN or ``LinAlgError``. Default ``rtol``:

* ``1e-6`` for float64 inputs: the covariance is exact to about ``1e-15`` relative, so an exact
  duplicate leaves an eigenvalue of :math:`R` near ``1e-15``, far below the cut
  ``1e-12 lambda_max``, while genuine directions down to a millionth of the largest (after
  standardization) are kept;
* ``3e-3`` for float32 inputs: products are formed in float32 (about 7 digits), so a duplicate
  leaves an eigenvalue of :math:`R` up to about ``1e-7 lambda_max`` (singular-value ratio
  ``~3e-4``); the cut at ``~1e-5 lambda_max`` leaves a 10x margin. Pass ``rtol`` to choose
  otherwise.

Consequences: scaling single neurons (any invertible diagonal map, e.g. by ``1e-4`` to
``1e4``) changes neither ``rho`` nor the dropped counts; and a float32 and a float64 copy of
the same data drop the same number of directions whenever the condition number of :math:`R` is
below ``1 / (10 * 3e-3**2) = 11111`` (every eigenvalue is then more than ten times above both
cuts; the factor 10 covers float32's rounding of :math:`R`) and no neuron is dead in one dtype
but not in the other (a standard deviation between float64's and float32's rounding of the
mean). :func:`svcca` applies the same rule before its variance-based reduction; :func:`linear_cka`
drops nothing, but, like the others, raises on an input whose neurons are all dead.

An input with no variance at all (every neuron dead, e.g. all zeros) raises ``ValueError``: its
similarity to anything is undefined (0/0), and returning 0 would hide a broken capture.

**Accuracy of float32.** Within blocks of rows the products are float32, summed across blocks in
float64. On well-conditioned data ``rho`` from float32 inputs agrees with float64 to about
``1e-7`` (``benchmarks/bench_similarity.py`` reports it per size); the
error grows with the condition number of the inputs' correlation matrices (not with the
neurons' scales). Tests allow ``1e-4``.

**Cost.** With ``d = max(d1, d2)``: the default ``method="gram"`` forms the three covariance
matrices in one pass over the samples, ``n (d1^2 + d2^2 + 2 d1 d2)`` flops (SYRK for
:math:`\Sigma_{xx}, \Sigma_{yy}`, GEMM for :math:`\Sigma_{xy}`: ``~4 n d^2``, the same count as
a SYRK of the stacked ``[x, y]``, which is the minimum for forming these matrices), then
``O(d^3)`` in float64 on ``d x d`` matrices: two whitenings (Cholesky when an input's
correlation matrix is clearly well-conditioned, else the rank-revealing ``eigh``; same result,
see ``_fast_whitener``) and one SVD (coefficients alone skip the singular vectors). Before it,
three ``O(n d)`` reads of each input (per-neuron maxima, minima, means). Extra memory: one
block of rows (8192 rows, or ``~2**22`` values for narrow layers) plus ``O(d^2)``; no centered
copy of the data. CUDA tensors are centered and multiplied on their device (an ``n x d``
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
    ``dropped_y``: directions of each input dropped by the rank rule of the module doc (dead
    neurons plus numerically dependent directions), so ``c = min(d1 - dropped_x,
    d2 - dropped_y)``.
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
# Scaling by powers of two, dead neurons
# ---------------------------------------------------------------------------------------------


def _eps_of(a: Any) -> float:
    """Rounding unit of ``a``'s dtype (float32 or float64; numpy array or torch tensor)."""
    single = str(a.dtype) in ("float32", "torch.float32")
    return float(np.finfo(np.float32 if single else np.float64).eps)


def _exponent(amax: float) -> int:
    """``e`` with ``2**(e-1) <= amax < 2**e`` (0 for ``amax == 0``): ``a * 2**-e`` has its
    largest absolute value in ``[0.5, 1)``."""
    return int(np.frexp(amax)[1]) if amax > 0 else 0


def _factors(k: int, dtype: Any) -> list[float]:
    """Powers of two whose product is ``2**k``, each representable in ``dtype`` (numpy or
    torch float32/float64): multiplying by them in turn is exact wherever the result is a
    normal number, for any ``k`` a finite input can need (float32 needs ``2**148`` to scale a
    tiny subnormal up, beyond float32's range, so the factor is then split in two)."""
    single = str(dtype) in ("float32", "torch.float32")
    lim = 120 if single else 1000
    if abs(k) <= lim:
        return [2.0**k] if k else []
    half = k // 2
    return [2.0**half, 2.0 ** (k - half)]


def _scale_into(src: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """``out = src * 2**k``, exactly, in ``src``'s dtype (``out`` may not alias ``src``)."""
    factors = _factors(k, src.dtype)
    if not factors:
        np.copyto(out, src)
        return out
    np.multiply(src, src.dtype.type(factors[0]), out=out)
    for f in factors[1:]:
        np.multiply(out, out.dtype.type(f), out=out)
    return out


def _scaled64(a: Any, e: int) -> Any:
    """A new float64 copy of ``a * 2**-e`` (numpy on the host; a torch tensor stays on its
    device)."""
    if is_torch(a):
        import torch

        out = a.detach().to(torch.float64, copy=True)
        for f in _factors(-e, out.dtype):
            out.mul_(f)
        return out
    return np.ldexp(np.asarray(a, dtype=np.float64), -e)


def _dead(var: np.ndarray, mean: np.ndarray, constant: np.ndarray, eps: float) -> np.ndarray:
    """Dead neurons: a single value over the samples (``constant``), or a variance at most the
    square of their mean's rounding unit ``eps * |mean|`` (also true when rounding has made the
    computed variance 0 or negative). ``var`` and ``mean`` in the same (scaled) units."""
    return constant | ~(var > (eps * mean) ** 2)


def _no_variance(name: str) -> ValueError:
    return ValueError(f"{name} has no variance: every neuron is constant over the samples (or "
                      "varies by less than the rounding of its mean), so its similarity to "
                      "anything is undefined")


# ---------------------------------------------------------------------------------------------
# Covariances (the one pass over the samples)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grams:
    """Covariances of the centered inputs, each input scaled by ``2**-exp_*`` (float64,
    unnormalized), and what else needs the data: the scaled column means, the dead neurons
    (see the module doc) and the tolerances."""

    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    n: int
    rtol_x: float
    rtol_y: float
    exp_x: int
    exp_y: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    dead_x: np.ndarray
    dead_y: np.ndarray


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
#: accumulators, a pass over memory that does not shrink with the block, so larger blocks
#: bring the loop closer to the cost of the bare products. The extra memory is one block: 8192
#: rows of ``d1 + d2``
#: values (64 MiB in float32 at ``d1 + d2 = 2048``), independent of ``n_samples``.
_BLOCK_VALUES = 2**22
_MIN_BLOCK_ROWS = 8192

#: float64 inputs whose largest absolute value is within ``2**+-_SAFE_EXP64`` have their
#: column means summed unscaled (then scaled exactly); beyond that the sums could overflow, or
#: lose digits to subnormals, and the means are summed over scaled blocks instead.
_SAFE_EXP64 = 900


def _scaled_mean(a: np.ndarray, e: int, block: int) -> np.ndarray:
    """Column means of ``a * 2**-e`` in float64, without a scaled copy of ``a``."""
    if a.dtype == np.float32 or abs(e) <= _SAFE_EXP64:
        # float32 values and their sums are far inside float64's range
        return np.ldexp(a.mean(axis=0, dtype=np.float64), -e)
    total = np.zeros(a.shape[1])
    buf = np.empty((min(block, a.shape[0]), a.shape[1]))
    for start in range(0, a.shape[0], block):
        part = a[start:start + block]
        total += _scale_into(part, -e, buf[: part.shape[0]]).sum(axis=0)
    return total / a.shape[0]


def _grams(x: Any, y: Any, rtol: float | None) -> _Grams:
    """Covariances of the scaled, centered inputs, float64, in one blocked pass over the samples.

    Each input is scaled by ``2**-e`` (``e`` from its largest absolute value, see the module
    doc) before any product. CPU inputs (numpy arrays, and CPU tensors viewed as numpy without
    a copy, so that numpy's BLAS does the products): per-neuron maxima and minima and
    the means first, then blocks of rows are scaled and centered into a reused buffer and
    their products accumulated in float64 (SYRK for ``x'x``, ``y'y``, GEMM for ``x'y``). Extra
    memory is one block, not a centered copy of the data; float32 inputs are multiplied in
    float32 within a block (twice the speed) and summed across blocks in float64. CUDA
    tensors: scaled, centered and multiplied on their device in their dtype; only the
    ``d x d`` results and per-neuron statistics come to the host.
    """
    rtol_x, rtol_y = _rtol_for(x, rtol), _rtol_for(y, rtol)
    eps_x, eps_y = _eps_of(x), _eps_of(y)
    n = int(x.shape[0])
    if on_cuda(x) or on_cuda(y):
        x, y = _common_torch(x, y)
        stats = [_device_centered(a) for a in (x, y)]
        (xc, ex, mx, cx), (yc, ey, my, cy) = stats
        sxx, syy, sxy = ((a.T @ b).double().cpu().numpy()
                         for a, b in ((xc, xc), (yc, yc), (xc, yc)))
    else:
        x, y = host_view(x), host_view(y)
        if x.dtype != y.dtype:
            x, y = x.astype(np.float64), y.astype(np.float64)
        d1, d2 = x.shape[1], y.shape[1]
        block = int(min(n, max(_MIN_BLOCK_ROWS, _BLOCK_VALUES // (d1 + d2))))
        hi_x, lo_x, hi_y, lo_y = x.max(axis=0), x.min(axis=0), y.max(axis=0), y.min(axis=0)
        cx, cy = hi_x == lo_x, hi_y == lo_y
        ex = _exponent(float(max(np.abs(hi_x).max(), np.abs(lo_x).max())))
        ey = _exponent(float(max(np.abs(hi_y).max(), np.abs(lo_y).max())))
        # Shift each scaled neuron by its mean rounded to the input dtype, so blocks are
        # centered in that dtype (float32 stays float32); the residual mean r of the shifted
        # values is accumulated alongside and removed exactly at the end:
        # sum (a - r)(a - r)' = sum a a' - n r r'.
        mx, my = _scaled_mean(x, ex, block), _scaled_mean(y, ey, block)
        shx, shy = mx.astype(x.dtype), my.astype(y.dtype)
        bx, by = np.empty((block, d1), x.dtype), np.empty((block, d2), y.dtype)
        sxx, syy = np.zeros((d1, d1)), np.zeros((d2, d2))
        sxy = np.zeros((d1, d2))
        rx, ry = np.zeros(d1), np.zeros(d2)
        for start in range(0, n, block):
            stop = min(n, start + block)
            a = _scale_into(x[start:stop], -ex, bx[: stop - start])
            b = _scale_into(y[start:stop], -ey, by[: stop - start])
            a -= shx
            b -= shy
            rx += a.sum(axis=0)
            ry += b.sum(axis=0)
            sxx += a.T @ a
            syy += b.T @ b
            sxy += a.T @ b
        rx, ry = rx / n, ry / n
        sxx -= n * np.outer(rx, rx)
        syy -= n * np.outer(ry, ry)
        sxy -= n * np.outer(rx, ry)
    for mat, name in ((sxx, "x"), (syy, "y"), (sxy, "x and y")):
        if not np.isfinite(mat).all():  # cannot happen for finite inputs scaled to [0.5, 1)
            raise RuntimeError(f"the covariance products of {name} are not finite although the "
                               "inputs were checked finite: were they modified during the call?")
    # symmetrize against rounding so eigh sees an exactly symmetric matrix
    sxx, syy = (sxx + sxx.T) / 2, (syy + syy.T) / 2
    dead_x = _dead(np.diag(sxx) / n, mx, cx, eps_x)
    dead_y = _dead(np.diag(syy) / n, my, cy, eps_y)
    return _Grams(sxx, syy, sxy, n, rtol_x, rtol_y, ex, ey, mx, my, dead_x, dead_y)


def _device_centered(a: Any) -> tuple[Any, int, np.ndarray, np.ndarray]:
    """A torch tensor scaled by ``2**-e`` and centered, on its device and in its dtype (a new
    tensor); with ``e``, the scaled means (float64, host) and which neurons are constant."""
    import torch

    lo, hi = torch.aminmax(a.detach(), dim=0)
    e = _exponent(float(torch.maximum(lo.abs().max(), hi.abs().max())))
    c = a.detach().clone()
    for f in _factors(-e, c.dtype):
        c.mul_(f)
    mean = c.mean(dim=0, keepdim=True)
    c.sub_(mean)
    c.sub_(c.mean(dim=0, keepdim=True))  # the residual mean left by rounding
    return c, e, mean[0].double().cpu().numpy(), (hi == lo).cpu().numpy()


def _standardized(s: np.ndarray, name: str,
                  dead: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The correlation matrix of the live neurons of the covariance ``s``: ``(r, live, sd)``
    with ``r = s[live][:, live] / outer(sd, sd)``, ``sd`` the live neurons' root variances.
    ``dead`` (see :func:`_dead`) defaults to the neurons whose variance is not positive."""
    var = np.diag(s)
    dead = ~(var > 0) if dead is None else dead | ~(var > 0)
    live = np.flatnonzero(~dead)
    if not live.size:
        raise _no_variance(name)
    sd = np.sqrt(var[live])
    r = s[np.ix_(live, live)] / np.outer(sd, sd)
    np.fill_diagonal(r, 1.0)
    return r, live, sd


def _whitener(s: np.ndarray, rtol: float, name: str,
              dead: np.ndarray | None = None) -> np.ndarray:
    """Rank-revealing whitening of the PSD covariance ``s`` by the rule of the module doc.

    Returns ``w`` ``(d, k)`` with ``w.T @ s @ w = I_k``: zero rows for the dead neurons, and
    for the others ``D^{-1/2}`` times the eigenvectors of the correlation matrix whose
    eigenvalue exceeds ``rtol**2`` times its largest, each divided by its root eigenvalue.
    """
    r, live, sd = _standardized(s, name, dead)
    vals, vecs = np.linalg.eigh(r)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    keep = vals > (rtol * rtol) * vals[0]
    return _embed(vecs[:, keep] / np.sqrt(vals[keep]), live, sd, s.shape[0])


def _embed(wr: np.ndarray, live: np.ndarray, sd: np.ndarray, d: int) -> np.ndarray:
    """A whitening of the correlation matrix of the live neurons as one of the covariance."""
    w = np.zeros((d, wr.shape[1]))
    w[live] = wr / sd[:, None]
    return w


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


def _fast_whitener(s: np.ndarray, rtol: float, name: str,
                   dead: np.ndarray | None = None) -> np.ndarray:
    """A whitening ``w`` (``w.T @ s @ w = I_k``) with the same rank decision as
    :func:`_whitener`, by Cholesky when the correlation matrix ``R`` of the live neurons is
    clearly well-conditioned.

    CCA does not depend on which whitening is used (any two differ by an orthogonal factor
    that the SVD absorbs). ``R = L L'`` gives ``w = D^{-1/2} L^{-T}``, several times cheaper
    than an eigendecomposition at ``d = 1024``. It is used only when the upper bound
    ``kappa_1(R) <= ||R||_1 ||L^{-1}||_1 ||L^{-1}||_inf`` (from ``R^{-1} = L^{-T} L^{-1}``) is
    below ``1 / (10 rtol^2)``: since ``kappa_2 <= kappa_1`` for symmetric matrices, every
    eigenvalue is then above ten times the cut ``rtol^2 lambda_max``, so the eigendecomposition
    would keep every direction too. The factor 10 covers rounding: ``R`` is float64 (also
    for float32 inputs), so the bound, computed from the computed ``L^{-1}``, and the
    eigenvalues ``eigh`` would compare with the cut are both correct to far better than 10%.
    The bound can exceed ``kappa_2`` by up to ``d^1.5`` (each norm by up to ``sqrt(d)``), which
    only sends more inputs to the eigendecomposition. Otherwise (duplicate or nearly dependent
    neurons) the rank-revealing eigendecomposition decides what to drop; dead neurons are
    dropped before either. With a user ``rtol`` below about ``1e-8`` the cut approaches
    ``eigh``'s own rounding (``~d eps lambda_max``), and the two routes can then disagree about
    a direction at the cut; the default tolerances are far from that.

    Everything here is numpy's LAPACK, on purpose: scipy's LAPACK is a second OpenBLAS with
    its own thread pool, and alternating between the two pools makes these calls several
    times slower when the threads share the cores (each pool's idle threads spin on the cores
    the other needs).
    """
    r, live, sd = _standardized(s, name, dead)
    try:
        chol = np.linalg.cholesky(r)
        inv = np.linalg.inv(chol)  # lower triangular L^{-1}
    except np.linalg.LinAlgError:
        return _whitener(s, rtol, name, dead)
    absinv = np.abs(inv)
    bound = np.abs(r).sum(axis=0).max() * absinv.sum(axis=0).max() * absinv.sum(axis=1).max()
    if not bound < 1.0 / (_CHOLESKY_MARGIN * rtol * rtol):  # also catches inf / nan
        return _whitener(s, rtol, name, dead)
    return _embed(np.tril(inv).T, live, sd, s.shape[0])


def _whiteners(g: _Grams) -> tuple[np.ndarray, np.ndarray]:
    """The whitenings of both inputs (the rank rule of the module doc)."""
    return (_fast_whitener(g.sxx, g.rtol_x, "x", g.dead_x),
            _fast_whitener(g.syy, g.rtol_y, "y", g.dead_y))


def _cca_from_grams(g: _Grams, vectors: bool = True,
                    w: tuple[np.ndarray, np.ndarray] | None = None) -> _Core:
    """CCA from the covariances (``w``: the whitenings, if already computed).
    ``vectors=False``: only ``rho`` (singular values without vectors, about half the
    ``O(d^3)`` work); the weights are then empty ``(d, 0)`` arrays. The weights are those of
    the scaled inputs (see :func:`_unscaled`)."""
    wx, wy = _whiteners(g) if w is None else w
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


def _unscaled(w: np.ndarray, e: int, name: str) -> np.ndarray:
    """Weights of an input scaled by ``2**-e`` as weights of the input itself (exact)."""
    with np.errstate(over="ignore"):
        out = np.ldexp(w, -e)
    if not np.isfinite(out).all():
        raise ValueError(f"the canonical weights of {name} overflow float64: its values are "
                         f"below 2**{e}, so the weights, about 1 / (std * sqrt(n)), exceed "
                         "1e308; rescale it (mean_cca, pwcca, svcca and compare, which return "
                         "no weights, are unaffected)")
    return out


def _pw_mean(rho: np.ndarray, xtx_weights: np.ndarray) -> float:
    """Projection-weighted mean: weights ``sum_j |<h_i, z_j>|`` from ``x.T @ h`` ``(d1, c)``."""
    alpha = np.abs(xtx_weights).sum(axis=0)
    return float(np.clip(alpha @ rho / alpha.sum(), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# The independent implementation: SVD of the centered data
# ---------------------------------------------------------------------------------------------


def _centered_host64(a: Any, eps: float) -> tuple[np.ndarray, int, np.ndarray]:
    """``a`` scaled by ``2**-e`` and centered, a new float64 host array, with ``e`` and which
    neurons are dead (the rule of :func:`_dead`)."""
    host = a.detach().cpu() if is_torch(a) else a
    host = host.numpy() if is_torch(host) else np.asarray(host)
    hi, lo = host.max(axis=0), host.min(axis=0)
    e = _exponent(float(max(np.abs(hi).max(), np.abs(lo).max())))
    ac = _scaled64(host, e)
    mean = ac.mean(axis=0)
    ac -= mean
    ac -= ac.mean(axis=0)  # the residual mean left by rounding
    dead = _dead(np.einsum("ij,ij->j", ac, ac) / ac.shape[0], mean, hi == lo, eps)
    return ac, e, dead


def _basis(a: np.ndarray, rtol: float, name: str,
           dead: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Orthonormal basis ``u`` of the centered columns and the map ``m`` with ``a_c @ m = u``,
    by the rule of the module doc: dead columns dropped, the others standardized, singular
    values at most ``rtol`` times the largest dropped."""
    norms = np.sqrt(np.einsum("ij,ij->j", a, a))
    dead = dead | ~(norms > 0)
    live = np.flatnonzero(~dead)
    if not live.size:
        raise _no_variance(name)
    u, s, vt = np.linalg.svd(a[:, live] / norms[live], full_matrices=False)
    keep = s > rtol * s[0]
    m = np.zeros((a.shape[1], int(keep.sum())))
    m[live] = vt[keep].T / s[keep] / norms[live][:, None]
    return u[:, keep], m, a.shape[1] - int(keep.sum())


def _cca_svd(x: Any, y: Any, rtol: float | None) -> tuple[_Core, np.ndarray, np.ndarray, int, int]:
    """CCA by SVDs of the scaled, centered data: the core (weights of the scaled inputs), the
    scaled centered inputs and their exponents."""
    rtol_x, rtol_y = _rtol_for(x, rtol), _rtol_for(y, rtol)
    xc, ex, dead_x = _centered_host64(x, _eps_of(x))
    yc, ey, dead_y = _centered_host64(y, _eps_of(y))
    ux, mx, dx = _basis(xc, rtol_x, "x", dead_x)
    uy, my, dy = _basis(yc, rtol_y, "y", dead_y)
    a, s, bt = np.linalg.svd(ux.T @ uy, full_matrices=False)
    c = s.size
    core = _Core(rho=np.clip(s, 0.0, 1.0), x_weights=mx @ a[:, :c], y_weights=my @ bt[:c].T,
                 dropped_x=dx, dropped_y=dy)
    return core, xc, yc, ex, ey


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
    ``rtol``: relative singular-value tolerance for dropping dependent directions of the
    standardized inputs (default by dtype; the rank rule is in the module doc). Invariant to
    any invertible linear map of either input and to translation. Cost: ``~4 n d^2`` flops
    plus ``O(d^3)``; variates ``2 n d c`` more.
    """
    rtol = _prepare(x, y, allow_few_samples, rtol, method)
    if method == "svd":
        core, xc, yc, ex, ey = _cca_svd(x, y, rtol)
        hx = xc @ core.x_weights if variates else None
        hy = yc @ core.y_weights if variates else None
    else:
        g = _grams(x, y, rtol)
        core = _cca_from_grams(g)
        ex, ey = g.exp_x, g.exp_y
        hx = hy = None
        if variates:
            hx, hy = (_variates(a, w, e) for a, w, e in
                      ((x, core.x_weights, ex), (y, core.y_weights, ey)))
    return CCAResult(rho=core.rho, x_weights=_unscaled(core.x_weights, ex, "x"),
                     y_weights=_unscaled(core.y_weights, ey, "y"), x_variates=hx,
                     y_variates=hy, dropped_x=core.dropped_x, dropped_y=core.dropped_y,
                     n_samples=int(x.shape[0]))


def _variates(a: Any, w: np.ndarray, e: int) -> np.ndarray:
    """Canonical variates ``(a * 2**-e - mean) @ w`` as a float64 numpy array."""
    ac = _scaled64(a if on_cuda(a) else host_view(a), e)
    if on_cuda(a):
        import torch

        ac -= ac.mean(dim=0, keepdim=True)
        return (ac @ torch.from_numpy(w).to(ac.device)).cpu().numpy()
    ac -= ac.mean(axis=0)
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
        core, xc, yc, _, _ = _cca_svd(x, y, rtol)
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


def _principal(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors of ``b @ b.T``."""
    vals, vecs = np.linalg.eigh(b @ b.T)
    return np.maximum(vals[::-1], 0.0), vecs[:, ::-1]


def _svcca_from_grams(g: _Grams, keep: float | int,
                      w: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """SVCCA within the directions the rank rule keeps.

    With the whitening ``w`` of an input, its kept canonical-basis variates ``z = x_c w`` are
    orthonormal, and ``b = w' Sigma_xx = z' x_c`` holds every neuron's coordinates in that
    basis: the eigendecomposition ``b b' = U diag(lambda) U'`` gives the principal directions
    ``z U`` with variances ``lambda`` (those of ``Sigma_xx``, less the dropped directions). The
    reduced layers' bases ``z_x U_x[:, :kx]`` and ``z_y U_y[:, :ky]`` are orthonormal, so their
    canonical correlations are the singular values of
    ``U_x[:, :kx]' (w_x' Sigma_xy w_y) U_y[:, :ky]`` (``w``: the whitenings, if already
    computed).
    """
    wx, wy = _whiteners(g) if w is None else w
    (lx, ux), (ly, uy) = (_principal(w.T @ s) for w, s in ((wx, g.sxx), (wy, g.syy)))
    kx, ky = _svd_reduce(lx, keep, "x"), _svd_reduce(ly, keep, "y")
    m = ux[:, :kx].T @ (wx.T @ g.sxy @ wy) @ uy[:, :ky]
    s = np.linalg.svd(m, compute_uv=False)
    return float(np.mean(np.clip(s, 0.0, 1.0)))


def svcca(x: Any, y: Any, keep: float | int = 0.99, *, rtol: float | None = None,
          allow_few_samples: bool = False) -> float:
    """SVCCA similarity (Raghu et al. 2017): mean CCA after reducing each input to its top
    singular directions, in ``[0, 1]``.

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``. ``keep``: a float in ``(0, 1]`` keeps
    the fewest top directions whose variance reaches that fraction (per input); an int keeps
    that many directions (an error if an input has fewer independent directions). Dead and
    dependent directions (the rank rule of the module doc) are dropped first. Symmetric;
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


def _cka_from_grams(g: _Grams) -> float:
    """Plain linear CKA of the (scaled) covariances; an input whose neurons are all dead has
    no variance (the same check as the CCA family's)."""
    for dead, name in ((g.dead_x, "x"), (g.dead_y, "y")):
        if dead.all():
            raise _no_variance(name)
    den = np.linalg.norm(g.sxx) * np.linalg.norm(g.syy)
    return float(np.clip(np.linalg.norm(g.sxy) ** 2 / den, 0.0, 1.0))


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

    CKA is defined for any number of samples, also ``n_samples <= d1 + d2`` where the CCA
    family is not (``allow_few_samples`` is accepted for a uniform signature and changes
    nothing here). The plain estimate is biased upward when samples are few, and warns with
    :class:`FewSamplesWarning` below 5 samples per feature; the debiased one does not warn.
    An input whose neurons are all dead (see the module doc) raises ``ValueError``.
    """
    check_pair(x, y, allow_few_samples=True, warn_few=not debiased)
    if debiased and x.shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {x.shape[0]}")
    g = _grams(x, y, None)
    if not debiased:
        return _cka_from_grams(g)
    for dead, name in ((g.dead_x, "x"), (g.dead_y, "y")):
        if dead.all():
            raise _no_variance(name)
    n = g.n
    da, db = _row_norms2(x, g.exp_x), _row_norms2(y, g.exp_y)
    hxy = _hsic_terms(np.linalg.norm(g.sxy) ** 2, da, db, n)
    hxx = _hsic_terms(np.linalg.norm(g.sxx) ** 2, da, da, n)
    hyy = _hsic_terms(np.linalg.norm(g.syy) ** 2, db, db, n)
    if not (hxx > 0 and hyy > 0):
        raise ValueError("x or y has no variance left after debiasing (too few samples?)")
    return float(np.clip(hxy / np.sqrt(hxx * hyy), 0.0, 1.0))


def _row_norms2(a: Any, e: int) -> np.ndarray:
    """Squared norms of the rows of ``a * 2**-e``, centered (the linear kernel's diagonal),
    float64."""
    if on_cuda(a):
        ac = _scaled64(a, e)
        ac -= ac.mean(dim=0, keepdim=True)
        ac -= ac.mean(dim=0, keepdim=True)
        return (ac * ac).sum(dim=1).cpu().numpy()
    ac = _scaled64(host_view(a), e)
    ac -= ac.mean(axis=0)
    ac -= ac.mean(axis=0)
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

    ``x``: ``(n_samples, d1)``, ``y``: ``(n_samples, d2)``; ``keep`` is SVCCA's. Each value is
    the one its own function returns, with the same checks: as it includes the CCA family,
    ``n_samples <= d1 + d2`` raises unless ``allow_few_samples`` (call :func:`linear_cka` for
    CKA alone there).
    """
    keep = check_keep(keep)
    rtol = _prepare(x, y, allow_few_samples, rtol, "gram")
    g = _grams(x, y, rtol)
    w = _whiteners(g)
    core = _cca_from_grams(g, w=w)
    forward = _pw_mean(core.rho, g.sxx @ core.x_weights)
    backward = _pw_mean(core.rho, g.syy @ core.y_weights)
    return {
        "mean CCA": float(np.mean(core.rho)),
        "SVCCA": _svcca_from_grams(g, keep, w),
        "PWCCA": forward,
        "PWCCA (symmetric)": 0.5 * (forward + backward),
        "linear CKA": _cka_from_grams(g),
    }
