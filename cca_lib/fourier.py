r"""CCA of two convolutional layers through the 2-D discrete Fourier transform over space.

A conv layer's activations on ``N`` inputs are ``(N, C, H, W)``. Comparing every (channel, y,
x) unit as a neuron (capture's ``mode="flatten"``: ``(N, C * H * W)``) needs more than ``C * H
* W`` inputs per layer and ``O((C H W)^3)`` work. Raghu et al. 2017 (SVCCA, the section on
convolutional layers) observe that when the statistics are translation invariant the
covariance between the unit at position ``p`` and the unit at ``q`` depends only on ``p - q``
(circularly), so the 2-D DFT of each channel block-diagonalizes all three covariance matrices:
the full CCA splits into one small CCA per spatial frequency, with ``C`` features each.

:func:`fourier_cca` computes exactly that decomposition with real arithmetic and the public
:func:`cca_lib.cca`. For real activations the coefficients at frequencies ``k`` and ``-k`` are
complex conjugates, so each pair ``{k, -k}`` is one block whose features are the real and the
imaginary parts of the ``C`` channels' coefficients at ``k`` (``2 C`` real features; ``C`` at
the self-conjugate frequencies, 0 and the Nyquist frequencies, whose coefficients are real).
For layers of one size the union of the blocks' canonical correlations holds
``H * W * min(C1, C2)`` coefficients (fewer if some are dropped as dependent), the same count
as the full comparison. The DFT's scale does not matter (CCA is invariant to
invertible linear maps of each block). Cost: the FFTs plus ``H W / 2`` CCAs of ``N x 2 C``
blocks (``~8 N C^2 H W`` flops), against ``~4 N (C H W)^2`` for the full comparison; memory:
one half-spectrum (``rfft2``) per layer, about the size of the activations.

**When it is exact.** If the sample covariances are exactly invariant to circular translation
(a dataset closed under the circular shifts of its images, fed through circularly padded
convolutions and pointwise nonlinearities), the cross-frequency covariances vanish and the
coefficients equal the full (``"flatten"``) CCA's to rounding. On real data (zero padding,
image borders, a finite, unshifted dataset) the cross-frequency covariances are not zero and
are ignored: each coefficient is still the correlation of a linear combination of one layer's
units with one of the other's, so the largest cannot exceed the full CCA's largest, but the
others can move either way (the tests measure it on data whose variance depends on position).

**Not the "positions" comparison.** capture's ``mode="positions"`` pools all positions as
samples of ``C`` features and compares the same position in both layers (zero spatial lag).
By Parseval its covariances are the *sums* over frequencies of the per-frequency ones, so the
two agree only when the spectra are flat (every position uncorrelated with every other one,
within each layer and across the two); a layer and a circularly shifted copy of it score 1
here at every frequency, but near 0 position by position when neighbouring positions are
uncorrelated.

**Layers of different spatial size** (e.g. before and after a stride-2 layer) are compared on
the frequencies both have, as the paper does: the larger layer's spectrum is cropped to the
smaller layer's frequencies (integer cycles per image, ``-h/2 <= k < h/2`` per axis), i.e. its
higher frequencies are dropped. Each block of the smaller grid is matched with every
coefficient of the larger layer that the smaller grid sees at those frequencies: at the smaller
grid's Nyquist frequency (``k = -h/2``, which that grid cannot tell from ``+h/2``) both of the
larger layer's aliases ``-h/2`` and ``+h/2`` are in, so there the larger layer has up to twice
the features and the result can hold more than ``h * w * min(C1, C2)`` coefficients. A layer
interpolated to a finer grid (its spectrum zero-padded) gives the same coefficients as the
layer itself. Nothing makes the frequency components of two layers of different resolution
correspond exactly: this is the paper's approximation.

Inputs are channels first, ``(N, C, H, W)`` as torch and capture's ``mode="raw"`` give them
(google/svcca's ``dft_ccas.py`` takes ``(N, H, W, C)``); numpy arrays or torch tensors (moved
to the CPU), float32 or float64; float32 inputs are compared in float32, with :func:`cca`'s
default tolerance for that dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from cca_lib._validation import FewSamplesWarning, is_torch
from cca_lib.similarity import cca

__all__ = ["FourierCCAResult", "fourier_cca", "fourier_mean_cca"]


@dataclass(frozen=True)
class FourierCCAResult:
    """Result of :func:`fourier_cca`.

    ``rho``: every block's canonical correlations together, sorted descending (compare with the
    full comparison's ``cca(x_flat, y_flat).rho``). ``frequencies``: each block's frequency
    ``(ky, kx)`` in cycles per image (the block also stands for ``(-ky, -kx)``);
    ``rho_by_frequency``: that block's coefficients. ``size``: the common spatial size
    ``(h, w)`` compared. ``dropped_x``, ``dropped_y``: directions dropped as dependent, summed
    over blocks. ``n_samples``: the number of inputs ``N``.
    """

    rho: np.ndarray
    frequencies: tuple[tuple[int, int], ...]
    rho_by_frequency: tuple[np.ndarray, ...]
    size: tuple[int, int]
    dropped_x: int
    dropped_y: int
    n_samples: int

    @property
    def mean(self) -> float:
        """Mean CCA similarity over all frequencies' coefficients."""
        return float(np.mean(self.rho))


def _as_maps(a: Any, name: str) -> np.ndarray:
    if is_torch(a):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor (N, C, H, W), got "
                        f"{type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if a.ndim != 4 or min(a.shape) < 1:
        raise ValueError(f"{name} must be conv activations (N, C, H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _freqs(n: int) -> np.ndarray:
    """Integer frequencies of an ``n``-point DFT in numpy's order: ``0, 1, .., -1``."""
    return np.rint(np.fft.fftfreq(n, d=1.0 / n)).astype(int)


def _self_conjugate(k: tuple[int, int], size: tuple[int, int]) -> bool:
    return (2 * k[0]) % size[0] == 0 and (2 * k[1]) % size[1] == 0


def _blocks(small: tuple[int, int]) -> list[list[tuple[int, int]]]:
    """The orbits ``{k, -k}`` of the ``small`` grid's frequencies, each as integer
    frequencies in ``[-h/2, h/2) x [-w/2, w/2)``, representative first."""
    h, w = small
    canon_y = {int(f) % h: int(f) for f in _freqs(h)}
    canon_x = {int(f) % w: int(f) for f in _freqs(w)}
    seen: set[tuple[int, int]] = set()
    out = []
    for ky in _freqs(h):
        for kx in _freqs(w):
            k = (int(ky), int(kx))
            if (k[0] % h, k[1] % w) in seen:
                continue
            partner = (canon_y[(-k[0]) % h], canon_x[(-k[1]) % w])
            seen.update({(k[0] % h, k[1] % w), (partner[0] % h, partner[1] % w)})
            out.append([k] if partner == k else [k, partner])
    return out


def _columns(size: tuple[int, int], members: list[tuple[int, int]]
             ) -> list[tuple[tuple[int, int], bool, str]]:
    """What one layer contributes to a block: ``(index into its rfft2, conjugate?, part)`` per
    ``C``-column group; the real part of each coefficient at ``members`` and its imaginary part
    where that is not identically zero, a coefficient whose conjugate is already in skipped."""
    H, W = size
    out, used = [], set()
    for ky, kx in members:
        key, conj = (ky % H, kx % W), ((-ky) % H, (-kx) % W)
        if conj in used:
            continue  # the conjugate of a coefficient already in: same information
        used.add(key)
        # rfft2 stores kx in [0, W // 2]; the other half-plane is X(k) = conj(X(-k))
        index, flip = (key, False) if key[1] <= W // 2 else (conj, True)
        out.append((index, flip, "real"))
        if not _self_conjugate((ky, kx), size):
            out.append((index, flip, "imag"))
    return out


#: A Fourier feature whose root-mean-square is at most this many rounding units of its channel's
#: root-mean-square norm is rounding noise of the transform (e.g. the aliases of a layer
#: interpolated from a coarser grid): it is set to zero, so :func:`cca_lib.cca` drops it as a
#: dead neuron and counts it. Per channel, so scaling a channel changes nothing.
_ROUNDING_UNITS = 64


def _features(half: np.ndarray, columns: list[tuple[tuple[int, int], bool, str]],
              dtype: np.dtype, channel_rms: np.ndarray) -> np.ndarray:
    """One layer's real features ``(N, C * len(columns))`` of a block from its ``rfft2`` ``half``
    ``(N, C, H, W // 2 + 1)``; ``channel_rms`` ``(C,)`` is each channel's root-mean-square
    spatial norm, against which features at rounding level are zeroed."""
    floor = _ROUNDING_UNITS * np.finfo(half.real.dtype).eps * channel_rms
    parts = []
    for (iy, ix), flip, part in columns:
        z = half[:, :, iy, ix]
        f = z.real if part == "real" else (-z.imag if flip else z.imag)
        rms = np.sqrt(np.mean(np.square(f, dtype=np.float64), axis=0))
        parts.append(np.where(rms <= floor, 0, f))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=dtype)


def _channel_rms(maps: np.ndarray) -> np.ndarray:
    """Root-mean-square over inputs of each channel's spatial norm ``||x_c||_2``: the
    rounding error of one coefficient of numpy's (unnormalized) DFT is a small multiple of
    ``eps ||x_c||_2`` (it grows like the logarithm of the map's size)."""
    power = np.mean(np.sum(np.square(maps, dtype=np.float64), axis=(2, 3)), axis=0)
    return np.sqrt(power)


def fourier_cca(x: Any, y: Any, *, rtol: float | None = None,
                allow_few_samples: bool = False) -> FourierCCAResult:
    """CCA of conv activations ``x`` ``(N, C1, H1, W1)`` and ``y`` ``(N, C2, H2, W2)`` one
    spatial frequency at a time (see the module doc): the full comparison of every (channel,
    position) unit when the statistics are translation invariant, at a fraction of its cost.

    Needs more than ``2 (C1 + C2)`` inputs (the largest block's features; ``allow_few_samples``
    as for :func:`cca_lib.cca`, which warns once, for the largest block, when there are fewer
    than 5 inputs per feature). ``rtol``: as for :func:`cca_lib.cca`, per block.
    """
    xa, ya = _as_maps(x, "x"), _as_maps(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"x has {xa.shape[0]} inputs but y has {ya.shape[0]}: both must hold "
                         "activations on the same inputs, in the same order")
    dtype = np.dtype(np.float32 if xa.dtype == ya.dtype == np.float32 else np.float64)
    sx, sy = xa.shape[2:], ya.shape[2:]
    small = (min(sx[0], sy[0]), min(sx[1], sy[1]))
    hx, hy = np.fft.rfft2(xa, axes=(2, 3)), np.fft.rfft2(ya, axes=(2, 3))
    rms_x, rms_y = _channel_rms(xa), _channel_rms(ya)
    blocks = _blocks(small)
    cols = [(_columns(sx, members), _columns(sy, members)) for members in blocks]
    # the block with the most features decides "too few samples", once, as cca() would
    order = sorted(range(len(blocks)),
                   key=lambda i: -max(len(cols[i][0]) * xa.shape[1], len(cols[i][1]) * ya.shape[1]))
    results: dict[int, Any] = {}
    for pos, i in enumerate(order):
        fx = _features(hx, cols[i][0], dtype, rms_x)
        fy = _features(hy, cols[i][1], dtype, rms_y)
        if pos == 0:
            results[i] = cca(fx, fy, variates=False, rtol=rtol,
                             allow_few_samples=allow_few_samples)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewSamplesWarning)
            results[i] = cca(fx, fy, variates=False, rtol=rtol, allow_few_samples=True)
    by_freq = tuple(results[i].rho for i in range(len(blocks)))
    rho = np.sort(np.concatenate(by_freq))[::-1]
    return FourierCCAResult(rho=np.ascontiguousarray(rho),
                            frequencies=tuple(members[0] for members in blocks),
                            rho_by_frequency=by_freq, size=small,
                            dropped_x=sum(r.dropped_x for r in results.values()),
                            dropped_y=sum(r.dropped_y for r in results.values()),
                            n_samples=int(xa.shape[0]))


def fourier_mean_cca(x: Any, y: Any, **kw: Any) -> float:
    """Mean CCA similarity of :func:`fourier_cca` (the mean over every frequency's
    coefficients), in ``[0, 1]``."""
    return fourier_cca(x, y, **kw).mean
