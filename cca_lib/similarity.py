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
brings its largest absolute value into ``[0.5, 1)``. That is exact (only exponents change;
on the host the products are formed, for speed, from the input scaled by the exponent of a
sample of its rows, or unscaled where that cannot over- or underflow more, and their sums are
then multiplied by the exact power of two that makes them those of ``2**-e`` times the input:
the same numbers), and
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

**Streaming.** Every measure here is a function of sums over samples (counts, means, centered
co-moments and, for debiased CKA, sums of products of the rows' squared norms). One piece of
code, ``_Moments``, forms them batch by batch and merges partial sums (the pairwise update of
Chan et al. 1979); the functions here give it all rows as one batch, and
:class:`cca_lib.Accumulator` (:mod:`cca_lib.streaming`) gives it any number of batches with
the same results. The scaling of **Scale** is per batch; parts with different exponents are
merged by rescaling sums by exact powers of two.

**Cost.** With ``d = max(d1, d2)``: the default ``method="gram"`` forms the three covariance
matrices in one pass over the samples, as one SYRK of the stacked block ``[x - c, y - c, 1]``
per block of rows (``n (d1 + d2 + 1)^2`` flops, ``~4 n d^2``: the count of SYRK for
:math:`\Sigma_{xx}, \Sigma_{yy}` plus GEMM for :math:`\Sigma_{xy}`, the minimum for forming
these matrices; the column of ones gives the column sums in the same call). The centre ``c``
is the mean of a strided sample of rows (the exact mean is restored from the column sums);
the per-neuron maxima and minima are read chunk by chunk while the chunk is in cache, in the
same pass. Then ``O(d^3)`` in float64 on ``d x d`` matrices: two whitenings (Cholesky when an
input's correlation matrix is clearly well-conditioned, else the rank-revealing ``eigh``; same
result, see ``_fast_whitener``) and one SVD (coefficients alone, as in :func:`mean_cca`, skip
the singular vectors). Besides the inputs, one pass reads a sample of ``1/64`` of the rows.
Extra memory: one block of rows (8192 rows, or ``~2**22`` values for narrow layers) plus
``O(d^2)``; no centered copy of the data. CUDA tensors are centered and multiplied on their
device (an ``n x d`` centered copy there). PWCCA's weights come from
:math:`x^\top h = \Sigma_{xx} W_x A` at no extra pass over the samples. ``method="svd"`` is
an independent implementation (thin SVD of the centered data in float64 on the CPU,
``~6 n d^2`` flops and an ``n x d`` copy per input) that resolves singular values down to
machine precision rather than its square root; it is there to cross-check the default.
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
    unnormalized, on the host), and what else needs the data: the scaled column means, the
    dead neurons (see the module doc), the tolerances and, when asked for (debiased CKA), the
    sums over samples of products of the centered rows' squared norms ``a_i = |x_i - mean|^2``,
    ``b_i = |y_i - mean|^2``: ``paa = sum a_i^2``, ``pbb = sum b_i^2``, ``pab = sum a_i b_i``."""

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
    paa: float | None = None
    pbb: float | None = None
    pab: float | None = None


def _rtol_for(arr: Any, rtol: float | None) -> float:
    if rtol is not None:
        return rtol
    return _rtol_single(str(arr.dtype) in ("float32", "torch.float32"))


def _rtol_single(single: bool) -> float:
    return _DEFAULT_RTOL[np.dtype(np.float32 if single else np.float64)]


def _common_torch(x: Any, y: Any, device: Any = None) -> tuple[Any, Any]:
    """Put a numpy/torch mix on ``device`` (default: the device tensor's); compute in the
    wider float dtype."""
    import torch

    if device is None:
        device = (x if on_cuda(x) else y).device
    x, y = (a.to(device) if is_torch(a) else
            torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (x, y))
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


#: Values per chunk of rows for the element-wise work of the host pass (shift, maxima,
#: minima): a chunk of each input stays in cache between its reads.
_CHUNK_VALUES = 2**16

#: The provisional centre of a batch is the mean of every ``step``-th row, with
#: ``step = max(1, min(_SHIFT_STRIDE, n // _SHIFT_ROWS))``: at least ``min(n, _SHIFT_ROWS)``
#: rows and at least ``1 / _SHIFT_STRIDE`` of them. A centre ``c`` off the mean by ``delta``
#: costs float32 products a factor ``1 + (delta / std)^2`` in accuracy before the exact
#: correction; a sample of ``k`` of ``n`` rows has ``delta <= std * sqrt(n / k)`` for any data
#: (Cauchy-Schwarz), so the factor is at most ``1 + _SHIFT_STRIDE``, and about ``1 + 1 / k``
#: for rows in no particular order.
_SHIFT_ROWS = 1024
_SHIFT_STRIDE = 64

#: A batch whose sample's exponent ``p`` lies in ``[0, _SAFE_EXP)`` is multiplied unscaled
#: (``p`` taken as 0): its products cannot overflow, and are larger, so no more prone to
#: underflow, than those of the input scaled into ``[0.5, 1)``.
_SAFE_EXP = {np.dtype(np.float32): 20, np.dtype(np.float64): 200}

#: The largest excess of a batch's exponent over the one its products were formed with for
#: which every sum is certainly finite (float32 products: ``(2**50)**2`` times a block of
#: rows; float64: the kernel sums' fourth powers, ``(2**230)**4`` times ``n d**2 < 2**100``);
#: beyond it the pass is repeated.
_PRODUCT_HEADROOM = {np.dtype(np.float32): 50, np.dtype(np.float64): 230}


def _sample_rows(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    return a[:: max(1, min(_SHIFT_STRIDE, n // _SHIFT_ROWS))]


def _shift_for(a: np.ndarray, p: int) -> np.ndarray:
    """The provisional centre of ``a * 2**-p``: the float64 mean of the sampled rows, rounded
    to ``a``'s dtype (scaling ``a`` by a power of two scales it exactly)."""
    s = _sample_rows(a)
    return _scaled_mean(s, p, s.shape[0]).astype(a.dtype)


def _sample_shift(a: np.ndarray) -> tuple[int, np.ndarray]:
    """The exponent the host pass forms ``a``'s products with (that of the sampled rows'
    largest absolute value, or 0 within ``[0, _SAFE_EXP)``) and the centre for it."""
    s = _sample_rows(a)
    p = _exponent(float(max(np.abs(s.max()), np.abs(s.min()))))
    if 0 <= p < _SAFE_EXP[a.dtype]:
        p = 0
    return p, _shift_for(a, p)


def _times_pow2(a: Any, k: int) -> Any:
    """``a * 2**k`` for a float64 numpy array or torch tensor (a new one), exact wherever the
    result is a normal number, for any integer ``k``."""
    while k:
        step = max(-1000, min(1000, k))
        a = a * (2.0**step)
        k -= step
    return a


def _outer(a: Any, b: Any) -> Any:
    return a[:, None] * b[None, :]


#: The sums a part holds, and the power of two each is scaled by per unit of ``(exp_x, exp_y)``
#: (a sum of products of ``p`` values of ``x`` and ``q`` of ``y`` scales by ``2**(p ex + q ey)``).
_SUM_POWERS = {"mean_x": (1, 0), "mean_y": (0, 1), "sxx": (2, 0), "syy": (0, 2),
               "sxy": (1, 1), "qxx": (3, 0), "qxy": (1, 2), "qyx": (2, 1), "qyy": (0, 3),
               "paa": (4, 0), "pbb": (0, 4), "pab": (2, 2)}
_KERNEL_SUMS = ("qxx", "qxy", "qyx", "qyy", "paa", "pbb", "pab")


def _recentre(s: dict[str, Any], n: int, s1x: Any, s1y: Any, ex: Any, ey: Any,
              centre: bool = False, second: bool = True) -> dict:
    """Sums over the rows of ``u_i = x_i - c`` and ``v_i = y_i - c'`` (``s1x``, ``s1y``: the
    sums of ``u`` and ``v``) turned, exactly in exact arithmetic, into the sums over
    ``u_i - ex`` and ``v_i - ey`` (the same rows about the point shifted by ``(ex, ey)``).

    Second moments: ``sum (u - e)(u - e)' = S - s1 e' - e s1' + n e e'``. With ``a_i = |u_i|^2``
    and ``b_i = |v_i|^2`` (debiased CKA's kernel diagonals), the third-order sums
    ``qxx = sum a_i u_i``, ``qxy = sum b_i u_i``, ``qyx = sum a_i v_i``, ``qyy = sum b_i v_i``
    and the fourth-order ``paa = sum a_i^2``, ``pbb``, ``pab = sum a_i b_i`` follow by
    expanding ``|u - e|^2 = a - 2 u.e + |e|^2``. Used twice: to center a batch (about its
    mean, ``e = s1 / n``: ``centre=True``) and to merge two centered parts about their common
    mean (Chan et al. 1979, extended to the kernel sums; ``s1x = s1y = None`` for sums that are
    already centered). ``second=False`` leaves the second moments as they are (a merge
    combines them itself, see :meth:`_Moments._absorb`).
    """
    sxx, syy, sxy = s["sxx"], s["syy"], s["sxy"]
    out = dict(s)
    if s1x is None:  # centered sums (s1 = 0), as when merging
        s1x, s1y = 0.0 * ex, 0.0 * ey
        if second:
            out["sxx"] = sxx + n * _outer(ex, ex)
            out["syy"] = syy + n * _outer(ey, ey)
            out["sxy"] = sxy + n * _outer(ex, ey)
    elif centre:  # e = s1 / n, to the mean: S - s1 e' - e s1' + n e e' = S - s1 e'
        out["sxx"] = sxx - _outer(s1x, ex)
        out["syy"] = syy - _outer(s1y, ey)
        out["sxy"] = sxy - _outer(s1x, ey)
    else:
        out["sxx"] = sxx - _outer(s1x, ex) - _outer(ex, s1x) + n * _outer(ex, ex)
        out["syy"] = syy - _outer(s1y, ey) - _outer(ey, s1y) + n * _outer(ey, ey)
        out["sxy"] = sxy - _outer(s1x, ey) - _outer(ex, s1y) + n * _outer(ex, ey)
    if s.get("paa") is None:
        return out
    tx, ty = sxx.diagonal().sum(), syy.diagonal().sum()
    ax, ay = s1x @ ex, s1y @ ey
    e2x, e2y = ex @ ex, ey @ ey
    qxx, qxy, qyx, qyy = s["qxx"], s["qxy"], s["qyx"], s["qyy"]
    sxx_ex, syy_ey = sxx @ ex, syy @ ey
    sxy_ey, syx_ex = sxy @ ey, sxy.T @ ex
    out["qxx"] = qxx - 2 * sxx_ex + e2x * s1x - tx * ex + 2 * ax * ex - n * e2x * ex
    out["qyy"] = qyy - 2 * syy_ey + e2y * s1y - ty * ey + 2 * ay * ey - n * e2y * ey
    out["qxy"] = qxy - 2 * sxy_ey + e2y * s1x - ty * ex + 2 * ay * ex - n * e2y * ex
    out["qyx"] = qyx - 2 * syx_ex + e2x * s1y - tx * ey + 2 * ax * ey - n * e2x * ey
    out["paa"] = (s["paa"] - 4 * (ex @ qxx) + 4 * (ex @ sxx_ex) + 2 * e2x * tx
                  - 4 * e2x * ax + n * e2x * e2x)
    out["pbb"] = (s["pbb"] - 4 * (ey @ qyy) + 4 * (ey @ syy_ey) + 2 * e2y * ty
                  - 4 * e2y * ay + n * e2y * e2y)
    out["pab"] = (s["pab"] - 2 * (ey @ qyx) - 2 * (ex @ qxy) + 4 * (ex @ sxy_ey) + e2y * tx
                  + e2x * ty - 2 * e2y * ax - 2 * e2x * ay + n * e2x * e2y)
    return out


class _Moments:
    """Exact sufficient statistics of two layers' activations, built batch by batch: the one
    covariance pass of every function in this module, and of ``cca_lib.Accumulator``.

    Held in float64, in numpy on the host, or as torch tensors on the batches' device when
    they are device (CUDA) tensors: the count ``n``; per neuron the raw maximum and minimum
    (constant neurons) and the mean; the centered co-moments ``sxx``, ``syy``, ``sxy``; with
    ``kernel=True`` also the kernel sums of :func:`_recentre` (debiased CKA). Memory
    ``O((d1 + d2)^2)``, independent of ``n``. Each input's sums are those of the input scaled
    by ``2**-exp``, ``exp`` from the largest absolute value seen so far (the module doc's
    scaling): a batch is scaled by its own exponent, and when two parts meet, the one with the
    smaller exponent has its sums multiplied by the exact power of two that brings it to the
    other's (only exponents change), so the result does not depend on the order of batches.
    A batch is centered about its own mean and merged by :func:`_recentre` (numerically stable
    for any order of batches and any tree of merges). No input checks here.
    """

    def __init__(self, d1: int, d2: int, kernel: bool = False) -> None:
        self.d1, self.d2, self.kernel = int(d1), int(d2), bool(kernel)
        self.n = 0
        self.device: Any = None  # None: numpy on the host; else the torch device of the sums
        self.exp_x: int | None = None  # None: no nonzero value seen yet
        self.exp_y: int | None = None
        self.single_x = self.single_y = False  # a float32 batch was seen (tolerances)
        self.sums: dict[str, Any] = {}
        self.hi_x = self.lo_x = self.hi_y = self.lo_y = None

    # ------------------------------------------------------------------ batches
    def update(self, x: Any, y: Any) -> None:
        """Add the rows of ``x`` ``(m, d1)`` and ``y`` ``(m, d2)`` (checked by the caller)."""
        if int(x.shape[0]) == 0:
            return
        single = (str(x.dtype) in ("float32", "torch.float32"),
                  str(y.dtype) in ("float32", "torch.float32"))
        if on_cuda(x) or on_cuda(y) or self.device is not None:
            part = self._device_part(*_common_torch(x, y, self.device))
        else:
            x, y = host_view(x), host_view(y)
            if x.dtype != y.dtype:
                x, y = x.astype(np.float64), y.astype(np.float64)
            part = self._host_part(x, y)
        part.single_x, part.single_y = single
        self._absorb(part)

    def _empty_like(self, device: Any) -> _Moments:
        part = _Moments(self.d1, self.d2, self.kernel)
        part.device = device
        return part

    def _host_part(self, x: np.ndarray, y: np.ndarray) -> _Moments:
        """The moments of one batch of host arrays, in one pass over the rows (module doc:
        Cost).

        Blocks of rows are shifted by a provisional centre ``c`` (the mean of a strided sample
        of rows, rounded to the input dtype, see :func:`_sample_shift`) into one reused buffer
        ``[x - c_x, y - c_y, 1]`` in the input dtype, so float32 stays float32; one SYRK of
        that buffer gives ``x'x``, ``y'y``, ``x'y`` and the column sums at once, summed across
        blocks in float64. The per-neuron maxima and minima are taken chunk by chunk while each
        chunk is in cache. The exponents of the module doc's scaling need the maxima, so the
        buffer is scaled by the sample's exponent (products of values in ``[0.5, 1)`` or a
        little above; none when that exponent is in ``[0, _SAFE_EXP)``, where the unscaled
        products are safe) and the sums are brought to the final exponents afterwards by exact
        powers of two: the same numbers as scaling every value by ``2**-exp`` first (powers of
        two commute with rounding), with no extra pass. If the sample's exponent is too far
        below the batch's largest value for the products to be safe, the pass is repeated
        with the final exponents. :func:`_recentre` then moves the sums from ``c`` to the
        batch mean. Extra memory is one block.
        """
        n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
        block = int(min(n, max(_MIN_BLOCK_ROWS, _BLOCK_VALUES // (d1 + d2))))
        px, cx = _sample_shift(x)
        py, cy = _sample_shift(y)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            got = self._host_pass(x, y, block, px, cx, py, cy, None)
        ex, ey = got[0], got[1]
        if not (ex - px <= _PRODUCT_HEADROOM[x.dtype] and ey - py <= _PRODUCT_HEADROOM[y.dtype]):
            # the sample missed values far above its largest: redo with the final exponents
            hi_lo = got[2]
            px, py = ex, ey
            cx, cy = _shift_for(x, px), _shift_for(y, py)
            got = self._host_pass(x, y, block, px, cx, py, cy, hi_lo)
        ex, ey, (hix, lox, hiy, loy), acc, kern = got
        part = self._empty_like(None)
        part.hi_x, part.lo_x, part.hi_y, part.lo_y = hix, lox, hiy, loy
        kx, ky = px - ex, py - ey  # sums of values scaled by 2**-p, to values scaled by 2**-e
        scale = np.ones(d1 + d2 + 1)
        scale[:d1], scale[d1:d1 + d2] = 2.0**kx, 2.0**ky
        acc *= _outer(scale, scale)
        s = {"sxx": acc[:d1, :d1], "syy": acc[d1:d1 + d2, d1:d1 + d2],
             "sxy": acc[:d1, d1:d1 + d2]}
        s1x, s1y = acc[-1, :d1], acc[-1, d1:d1 + d2]
        if kern is not None:
            for k, v in kern.items():
                p, q = _SUM_POWERS[k]
                s[k] = _times_pow2(np.asarray(v, dtype=np.float64), p * kx + q * ky)
                if not np.ndim(v):
                    s[k] = float(s[k])
        mean_x = np.ldexp(cx.astype(np.float64), kx)
        mean_y = np.ldexp(cy.astype(np.float64), ky)
        return part._set(n, ex, ey, mean_x, mean_y, s, s1x, s1y)

    def _host_pass(self, x: np.ndarray, y: np.ndarray, block: int, px: int, cx: np.ndarray,
                   py: int, cy: np.ndarray, hi_lo: tuple | None) -> tuple:
        """One pass of :meth:`_host_part`: the stacked products of ``[x 2**-px - cx,
        y 2**-py - cy, 1]`` summed in float64, the maxima and minima (unless given in
        ``hi_lo``), the exponents they give and, with ``kernel``, the kernel sums."""
        n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
        dt = np.result_type(x.dtype, y.dtype)
        width = d1 + d2 + 1
        buf = np.empty((block, width), dt)
        buf[:, -1] = 1.0
        acc = np.zeros((width, width))
        fx, fy = _factors(-px, x.dtype), _factors(-py, y.dtype)
        find = hi_lo is None
        if find:
            hix, lox = np.full(d1, -np.inf, x.dtype), np.full(d1, np.inf, x.dtype)
            hiy, loy = np.full(d2, -np.inf, y.dtype), np.full(d2, np.inf, y.dtype)
        kern = None
        if self.kernel:
            kern = {"qxx": np.zeros(d1), "qxy": np.zeros(d1), "qyx": np.zeros(d2),
                    "qyy": np.zeros(d2), "paa": 0.0, "pbb": 0.0, "pab": 0.0}
        sub = max(8, _CHUNK_VALUES // max(d1, d2))
        for start in range(0, n, block):
            stop = min(n, start + block)
            for lo in range(start, stop, sub):
                hi = min(stop, lo + sub)
                r0, r1 = lo - start, hi - start
                for src, f, c, col0, col1 in ((x[lo:hi], fx, cx, 0, d1),
                                              (y[lo:hi], fy, cy, d1, d1 + d2)):
                    dst = buf[r0:r1, col0:col1]
                    if f:
                        np.multiply(src, src.dtype.type(f[0]), out=dst)
                        for g in f[1:]:
                            dst *= dst.dtype.type(g)
                        dst -= c
                    else:
                        np.subtract(src, c, out=dst)
                if find:
                    xs, ys = x[lo:hi], y[lo:hi]
                    np.maximum(hix, xs.max(axis=0), out=hix)
                    np.minimum(lox, xs.min(axis=0), out=lox)
                    np.maximum(hiy, ys.max(axis=0), out=hiy)
                    np.minimum(loy, ys.min(axis=0), out=loy)
                if kern is not None:  # while the chunk of the buffer is in cache
                    _add_host_kernel_sums(kern, buf[r0:r1, :d1], buf[r0:r1, d1:d1 + d2])
            b = buf[: stop - start]
            acc += b.T @ b
        if find:
            hi_lo = tuple(v.astype(np.float64) for v in (hix, lox, hiy, loy))
        hix, lox, hiy, loy = hi_lo
        ex = _exponent(float(max(np.abs(hix).max(), np.abs(lox).max())))
        ey = _exponent(float(max(np.abs(hiy).max(), np.abs(loy).max())))
        return ex, ey, hi_lo, acc, kern

    def _device_part(self, x: Any, y: Any) -> _Moments:
        """The moments of one batch of torch tensors on their device: scaled and shifted by
        their means in their dtype (a new tensor per input), products in that dtype, sums in
        float64 on the device."""
        import torch

        part = self._empty_like(x.device)
        scaled, exps, shifts, s1 = [], [], [], []
        for a, hi_lo in ((x, ("hi_x", "lo_x")), (y, ("hi_y", "lo_y"))):
            lo, hi = torch.aminmax(a.detach(), dim=0)
            setattr(part, hi_lo[0], hi.double())
            setattr(part, hi_lo[1], lo.double())
            e = _exponent(float(torch.maximum(lo.abs().max(), hi.abs().max())))
            c = a.detach().clone()
            for f in _factors(-e, c.dtype):
                c.mul_(f)
            shift = c.mean(dim=0)
            c.sub_(shift)
            scaled.append(c)
            exps.append(e)
            shifts.append(shift.double())
            s1.append(c.sum(dim=0, dtype=torch.float64))
        xc, yc = scaled
        s = {"sxx": (xc.T @ xc).double(), "syy": (yc.T @ yc).double(),
             "sxy": (xc.T @ yc).double()}
        if self.kernel:
            z = x.new_zeros((), dtype=torch.float64)
            s.update(qxx=torch.zeros(self.d1, dtype=torch.float64, device=x.device),
                     qxy=torch.zeros(self.d1, dtype=torch.float64, device=x.device),
                     qyx=torch.zeros(self.d2, dtype=torch.float64, device=x.device),
                     qyy=torch.zeros(self.d2, dtype=torch.float64, device=x.device),
                     paa=z, pbb=z.clone(), pab=z.clone())
            _add_kernel_sums(s, xc.double(), yc.double())
        return part._set(int(x.shape[0]), exps[0], exps[1], shifts[0], shifts[1], s, *s1)

    def _set(self, n: int, ex: int, ey: int, cx: Any, cy: Any, s: dict, s1x: Any,
             s1y: Any) -> _Moments:
        """Store a batch's sums about the point ``(cx, cy)`` as centered sums about its mean."""
        ex_, ey_ = s1x / n, s1y / n
        self.sums = _recentre(s, n, s1x, s1y, ex_, ey_, centre=True)
        self.sums["mean_x"], self.sums["mean_y"] = cx + ex_, cy + ey_
        self.n = n
        # an input with no nonzero value does not constrain the exponent
        self.exp_x = ex if bool((self.hi_x != 0).any() | (self.lo_x != 0).any()) else None
        self.exp_y = ey if bool((self.hi_y != 0).any() | (self.lo_y != 0).any()) else None
        return self

    # ------------------------------------------------------------------ merging
    def _rescaled(self, ex: int | None, ey: int | None) -> dict[str, Any]:
        """The sums expressed for the exponents ``(ex, ey)`` (exact powers of two)."""
        kx = 0 if self.exp_x is None or ex is None else self.exp_x - ex
        ky = 0 if self.exp_y is None or ey is None else self.exp_y - ey
        if not (kx or ky):
            return dict(self.sums)
        return {k: (v if v is None else _times_pow2(v, _SUM_POWERS[k][0] * kx
                                                    + _SUM_POWERS[k][1] * ky))
                for k, v in self.sums.items()}

    def _absorb(self, other: _Moments) -> None:
        """Merge the parts (``other`` on this one's backend) into this one."""
        if other.n == 0:
            return
        self.single_x |= other.single_x
        self.single_y |= other.single_y
        if self.n == 0:
            self.device, self.sums, self.n = other.device, dict(other.sums), other.n
            self.exp_x, self.exp_y = other.exp_x, other.exp_y
            self.hi_x, self.lo_x, self.hi_y, self.lo_y = (other.hi_x, other.lo_x, other.hi_y,
                                                          other.lo_y)
            return
        ex = max((e for e in (self.exp_x, other.exp_x) if e is not None), default=None)
        ey = max((e for e in (self.exp_y, other.exp_y) if e is not None), default=None)
        a, b = self._rescaled(ex, ey), other._rescaled(ex, ey)
        na, nb = self.n, other.n
        n = na + nb
        dx, dy = b["mean_x"] - a["mean_x"], b["mean_y"] - a["mean_y"]
        # second moments by Chan et al.'s update, S_a + S_b + (na nb / n) d d' (the two
        # shifts' outer products, na (nb/n)^2 + nb (na/n)^2 = na nb / n, in one); the kernel
        # sums by _recentre
        second = {"sxx": (dx, dx), "syy": (dy, dy), "sxy": (dx, dy)}
        a = _recentre(a, na, None, None, (nb / n) * dx, (nb / n) * dy, second=False)
        b = _recentre(b, nb, None, None, (-na / n) * dx, (-na / n) * dy, second=False)
        merged = {k: (None if a[k] is None else a[k] + b[k]) for k in a}
        for k, (u, v) in second.items():
            merged[k] += _outer((na * nb / n) * u, v)
        merged["mean_x"] = a["mean_x"] + (nb / n) * dx
        merged["mean_y"] = a["mean_y"] + (nb / n) * dy
        self.sums, self.n, self.exp_x, self.exp_y = merged, n, ex, ey
        mx, mn = _backend_max_min(self.hi_x)
        self.hi_x, self.lo_x = mx(self.hi_x, other.hi_x), mn(self.lo_x, other.lo_x)
        self.hi_y, self.lo_y = mx(self.hi_y, other.hi_y), mn(self.lo_y, other.lo_y)

    def on(self, device: Any) -> _Moments:
        """A copy of these moments on ``device`` (None: numpy on the host)."""
        out = self._empty_like(device)
        out.n, out.exp_x, out.exp_y = self.n, self.exp_x, self.exp_y
        out.single_x, out.single_y = self.single_x, self.single_y
        move = _to_host if device is None else _to_device(device)
        out.sums = {k: (None if v is None else move(v)) for k, v in self.sums.items()}
        if self.n:
            out.hi_x, out.lo_x, out.hi_y, out.lo_y = (move(v) for v in (
                self.hi_x, self.lo_x, self.hi_y, self.lo_y))
        return out

    # ------------------------------------------------------------------ results
    def grams(self, rtol: float | None) -> _Grams:
        """The covariances and the rank-rule inputs on the host (needs ``n >= 1``)."""
        h = self.on(None) if self.device is not None else self
        s = h.sums
        sxx, syy, sxy = s["sxx"], s["syy"], s["sxy"]
        for mat, name in ((sxx, "x"), (syy, "y"), (sxy, "x and y")):
            if not np.isfinite(mat).all():  # cannot happen for finite inputs scaled to [0.5, 1)
                raise RuntimeError(f"the covariance products of {name} are not finite although "
                                   "the inputs were checked finite: were they modified during "
                                   "the call?")
        # symmetrize against rounding so eigh sees an exactly symmetric matrix
        sxx, syy = (sxx + sxx.T) / 2, (syy + syy.T) / 2
        n = self.n
        eps_x, eps_y = (float(np.finfo(np.float32 if single else np.float64).eps)
                        for single in (self.single_x, self.single_y))
        dead_x = _dead(np.diag(sxx) / n, s["mean_x"], h.hi_x == h.lo_x, eps_x)
        dead_y = _dead(np.diag(syy) / n, s["mean_y"], h.hi_y == h.lo_y, eps_y)
        rtol_x = rtol if rtol is not None else _rtol_single(self.single_x)
        rtol_y = rtol if rtol is not None else _rtol_single(self.single_y)
        kern = {k: (None if s.get(k) is None else float(s[k])) for k in ("paa", "pbb", "pab")}
        return _Grams(sxx, syy, sxy, n, rtol_x, rtol_y, self.exp_x or 0, self.exp_y or 0,
                      s["mean_x"], s["mean_y"], dead_x, dead_y, **kern)


def _add_kernel_sums(s: dict, a: Any, b: Any) -> None:
    """Add one block's kernel sums (see :func:`_recentre`) about the block's shift point."""
    na, nb = (a * a).sum(1), (b * b).sum(1)
    s["qxx"] = s["qxx"] + a.T @ na
    s["qxy"] = s["qxy"] + a.T @ nb
    s["qyx"] = s["qyx"] + b.T @ na
    s["qyy"] = s["qyy"] + b.T @ nb
    s["paa"] = s["paa"] + na @ na
    s["pbb"] = s["pbb"] + nb @ nb
    s["pab"] = s["pab"] + na @ nb


def _add_host_kernel_sums(s: dict, a: np.ndarray, b: np.ndarray) -> None:
    """:func:`_add_kernel_sums` for a chunk of host rows (small enough to stay in cache),
    every sum in float64 (a float32 chunk is read as float64): the rows' squared norms
    ``na``, ``nb`` in one read each, then ``a' [na nb]`` and ``b' [na nb]`` as one product
    per input."""
    if a.dtype != np.float64:
        a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    nab = np.stack([na, nb], axis=1)
    qa, qb = a.T @ nab, b.T @ nab
    s["qxx"] += qa[:, 0]
    s["qxy"] += qa[:, 1]
    s["qyx"] += qb[:, 0]
    s["qyy"] += qb[:, 1]
    s["paa"] = s["paa"] + na @ na
    s["pbb"] = s["pbb"] + nb @ nb
    s["pab"] = s["pab"] + na @ nb


def _backend_max_min(a: Any) -> tuple[Any, Any]:
    if is_torch(a):
        import torch

        return torch.maximum, torch.minimum
    return np.maximum, np.minimum


def _to_host(v: Any) -> Any:
    if is_torch(v):
        v = v.detach().cpu().numpy()
        return v if v.ndim else float(v)
    return v


def _to_device(device: Any) -> Any:
    import torch

    def move(v: Any) -> Any:
        if is_torch(v):
            return v.to(device)
        return torch.as_tensor(np.asarray(v, dtype=np.float64), device=device)

    return move


def _grams(x: Any, y: Any, rtol: float | None, kernel: bool = False) -> _Grams:
    """Covariances of the scaled, centered inputs: the moments of ``x`` and ``y`` as one batch
    (:class:`_Moments`, the same code as the streaming accumulator's)."""
    m = _Moments(x.shape[1], y.shape[1], kernel=kernel)
    m.update(x, y)
    return m.grams(rtol)


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
    return _whitening(s, rtol, name, dead)[0]


def _whitening(s: np.ndarray, rtol: float, name: str, dead: np.ndarray | None,
               product: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_fast_whitener`'s ``w`` and, with ``product``, ``s @ w`` (else ``None``).

    On the Cholesky route ``s @ w`` needs no product for the live neurons: with
    ``s_live = D^{1/2} R D^{1/2}`` and ``w_live = D^{-1/2} L^{-T}`` it is ``D^{1/2} L``
    (``R = L L'``); the rows of dead neurons (whose ``w`` rows are zero) are
    ``s[dead, live] @ w_live``. PWCCA's weights ``x'h = s w A`` then cost one product with
    ``A`` instead of two.
    """
    r, live, sd = _standardized(s, name, dead)
    try:
        chol = np.linalg.cholesky(r)
        inv = _lower_inverse(chol)  # L^{-1}
    except np.linalg.LinAlgError:
        chol = None
    if chol is not None:
        absinv = np.abs(inv)
        bound = (np.abs(r).sum(axis=0).max() * absinv.sum(axis=0).max()
                 * absinv.sum(axis=1).max())
        if not bound < 1.0 / (_CHOLESKY_MARGIN * rtol * rtol):  # also catches inf / nan
            chol = None
    if chol is None:
        w = _whitener(s, rtol, name, dead)
        return w, (s @ w if product else None)
    w = _embed(inv.T, live, sd, s.shape[0])
    if not product:
        return w, None
    sw = np.zeros_like(w)
    sw[live] = chol * sd[:, None]
    if live.size < s.shape[0]:
        dead_rows = np.setdiff1d(np.arange(s.shape[0]), live)
        sw[dead_rows] = s[np.ix_(dead_rows, live)] @ w[live]
    return w, sw


#: Size below which :func:`_lower_inverse` inverts a triangular block with LAPACK directly.
_TRI_LEAF = 64


def _lower_inverse(low: np.ndarray) -> np.ndarray:
    """The inverse of the lower-triangular ``low``, itself lower triangular (exact zeros
    above the diagonal), by recursive halving: ``[[A, 0], [C, B]]^{-1} = [[A^{-1}, 0],
    [-B^{-1} C A^{-1}, B^{-1}]]``. That is ``~2/3 d^3`` flops in matrix products, against
    ``~8/3 d^3`` for a general inverse (numpy has no triangular inverse, and scipy's LAPACK
    is avoided for the reason given in :func:`_fast_whitener`)."""
    d = low.shape[0]
    if d <= _TRI_LEAF:
        return np.tril(np.linalg.inv(low))
    h = d // 2
    a_inv, b_inv = _lower_inverse(low[:h, :h]), _lower_inverse(low[h:, h:])
    out = np.zeros_like(low)
    out[:h, :h], out[h:, h:] = a_inv, b_inv
    out[h:, :h] = -((b_inv @ low[h:, :h]) @ a_inv)
    return out


def _whiteners(g: _Grams) -> tuple[np.ndarray, np.ndarray]:
    """The whitenings of both inputs (the rank rule of the module doc)."""
    return (_fast_whitener(g.sxx, g.rtol_x, "x", g.dead_x),
            _fast_whitener(g.syy, g.rtol_y, "y", g.dead_y))


def _pwcca_from_grams(g: _Grams, backward: bool = True,
                      wb: tuple | None = None) -> tuple[np.ndarray, float, float | None]:
    """``(rho, pwcca(x, y), pwcca(y, x))`` from the covariances (the last ``None`` unless
    ``backward``), with the whitenings of :func:`_whiteners`. The weights ``x'h`` are
    ``(Sigma_xx W_x) A`` with ``Sigma_xx W_x`` from :func:`_whitening` (no canonical weights
    are formed); ``B`` of the SVD is used only for ``backward``. ``wb``: ``(W_x, Sigma_xx
    W_x, W_y, Sigma_yy W_y)`` if already computed."""
    if wb is None:
        wx, bx = _whitening(g.sxx, g.rtol_x, "x", g.dead_x, product=True)
        wy, by = _whitening(g.syy, g.rtol_y, "y", g.dead_y, product=backward)
    else:
        wx, bx, wy, by = wb
    a, s, bt = np.linalg.svd(wx.T @ g.sxy @ wy, full_matrices=False)
    rho = np.clip(s, 0.0, 1.0)
    c = s.size
    fwd = _pw_mean(rho, bx @ a[:, :c])
    return rho, fwd, (_pw_mean(rho, by @ bt[:c].T) if backward else None)


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
    _, forward, backward = _pwcca_from_grams(_grams(x, y, rtol), backward=symmetric)
    return forward if not symmetric else 0.5 * (forward + backward)


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


def _hsic(tr_kl: float, sum_ab: float, tr_k: float, tr_l: float, n: int) -> float:
    """Unbiased HSIC (Song et al. 2012) of two linear kernels ``K``, ``L`` of centered
    features, from ``tr(K L)``, ``sum_i K_ii L_ii``, ``tr K`` and ``tr L``: with the diagonals
    removed, ``K~ 1 = -diag K`` (since ``K 1 = 0``), so ``1'K~1 = -tr K`` and
    ``1'K~L~1 = sum_i K_ii L_ii``."""
    tr = tr_kl - sum_ab
    return (tr + tr_k * tr_l / ((n - 1) * (n - 2)) - 2.0 * sum_ab / (n - 2)) / (n * (n - 3))


def _debiased_cka_from_grams(g: _Grams) -> float:
    """Debiased linear CKA from the covariances and the kernel sums (``kernel=True``)."""
    for dead, name in ((g.dead_x, "x"), (g.dead_y, "y")):
        if dead.all():
            raise _no_variance(name)
    tk, tl = float(np.trace(g.sxx)), float(np.trace(g.syy))
    hxy = _hsic(np.linalg.norm(g.sxy) ** 2, g.pab, tk, tl, g.n)
    hxx = _hsic(np.linalg.norm(g.sxx) ** 2, g.paa, tk, tk, g.n)
    hyy = _hsic(np.linalg.norm(g.syy) ** 2, g.pbb, tl, tl, g.n)
    if not (hxx > 0 and hyy > 0):
        raise ValueError("x or y has no variance left after debiasing (too few samples?)")
    return float(np.clip(hxy / np.sqrt(hxx * hyy), 0.0, 1.0))


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
    (debiased: ``~6 n d`` more in the same pass, for the sums of the kernels' diagonals).

    CKA is defined for any number of samples, also ``n_samples <= d1 + d2`` where the CCA
    family is not (``allow_few_samples`` is accepted for a uniform signature and changes
    nothing here). The plain estimate is biased upward when samples are few, and warns with
    :class:`FewSamplesWarning` below 5 samples per feature; the debiased one does not warn.
    An input whose neurons are all dead (see the module doc) raises ``ValueError``.
    """
    check_pair(x, y, allow_few_samples=True, warn_few=not debiased)
    if debiased and x.shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {x.shape[0]}")
    if not debiased:
        return _cka_from_grams(_grams(x, y, None))
    return _debiased_cka_from_grams(_grams(x, y, None, kernel=True))


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
    return _compare_from_grams(_grams(x, y, rtol), keep)


def _compare_from_grams(g: _Grams, keep: float | int, reverse: bool = False) -> dict[str, float]:
    """:func:`compare`'s values from the covariances; ``reverse`` adds ``"PWCCA (reverse)"``,
    ``pwcca(y, x)``."""
    wx, bx = _whitening(g.sxx, g.rtol_x, "x", g.dead_x, product=True)
    wy, by = _whitening(g.syy, g.rtol_y, "y", g.dead_y, product=True)
    rho, forward, backward = _pwcca_from_grams(g, wb=(wx, bx, wy, by))
    out = {
        "mean CCA": float(np.mean(rho)),
        "SVCCA": _svcca_from_grams(g, keep, (wx, wy)),
        "PWCCA": forward,
        "PWCCA (symmetric)": 0.5 * (forward + backward),
        "linear CKA": _cka_from_grams(g),
    }
    if reverse:
        out["PWCCA (reverse)"] = backward
    return out
