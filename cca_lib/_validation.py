"""Input checks for the similarity functions: one place, clear messages.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape
or values) naming the argument, its shape and what was expected. Nothing is converted silently:
integer, boolean and complex inputs are refused rather than cast, and numpy masked arrays are
refused rather than computed on with their mask ignored.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

#: Below this many samples per feature a warning is raised (CCA estimates are biased upward).
SAMPLES_PER_FEATURE_WARN = 5


class FewSamplesWarning(UserWarning):
    """Fewer than 5 samples per feature: CCA-type similarities are then strongly biased upward
    (independent inputs already score well above 0). Use more samples or fewer features. The
    message quotes what unrelated Gaussian data of that size would score (closed form)."""


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def on_cuda(a: Any) -> bool:
    """Whether ``a`` is a torch tensor on a non-CPU device."""
    return is_torch(a) and a.device.type != "cpu"


def host_view(a: Any) -> np.ndarray:
    """A CPU tensor as a numpy array sharing its memory (no copy); arrays, and views of
    ``ndarray`` subclasses such as ``np.memmap`` or ``np.matrix``, pass through as plain
    ``ndarray`` views (masked arrays are refused earlier, by the checks)."""
    return a.detach().numpy() if is_torch(a) else np.asarray(a)


def _check_one(x: Any, name: str, min_samples: int = 2) -> tuple[int, int]:
    if is_torch(x):
        if not x.is_floating_point() or x.dtype not in _torch_float_dtypes():
            raise TypeError(f"{name} must have dtype float32 or float64, got torch {x.dtype}; "
                            f"convert it explicitly (e.g. {name}.double())")
        shape = tuple(x.shape)
    elif isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy masked array (shape {x.shape}): the similarities would ignore "
            f"its mask (and compute with the values under it), so it is refused. Pass a plain "
            f"array: {name}.filled(value), or keep only the unmasked rows, e.g. "
            f"{name}[~np.ma.getmaskarray({name}).any(axis=1)].data (the same rows of the "
            "other input too)")
    elif isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}; "
                            f"convert it explicitly (e.g. {name}.astype(np.float64))")
        shape = x.shape
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor of shape "
                        f"(n_samples, n_features), got {type(x).__name__}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
    n, d = shape
    if n < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got shape {shape}")
    if d < 1:
        raise ValueError(f"{name} has no features, got shape {shape}")
    if on_cuda(x):
        finite = bool(x.isfinite().all())
    else:
        # CPU tensors are checked through their numpy view: a torch op here would wake torch's
        # OpenMP threads, whose spinning then slows the numpy BLAS calls that follow.
        finite = bool(np.isfinite(host_view(x)).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or inf values (shape {shape})")
    return n, d


def check_batch(x: Any, y: Any, d1: int, d2: int,
                names: tuple[str, str] = ("x_batch", "y_batch")) -> int:
    """Validate one batch of rows for an accumulator of widths ``(d1, d2)``: float32/float64
    2-D arrays or tensors, finite, the same number of rows (0 allowed), ``d1`` and ``d2``
    columns. Returns the number of rows."""
    n1, c1 = _check_one(x, names[0], min_samples=0)
    n2, c2 = _check_one(y, names[1], min_samples=0)
    for name, got, want, shape in ((names[0], c1, d1, (n1, c1)), (names[1], c2, d2, (n2, c2))):
        if got != want:
            raise ValueError(f"{name} has shape {shape} but this accumulator was made for "
                             f"{want} features (d{1 if name == names[0] else 2}={want}): "
                             f"expected ({shape[0]}, {want})")
    if n1 != n2:
        raise ValueError(f"{names[0]} has {n1} rows but {names[1]} has {n2}: both must hold "
                         "activations on the same inputs, one row per input")
    if is_torch(x) and is_torch(y) and x.device != y.device:
        raise ValueError(f"{names[0]} is on {x.device} but {names[1]} is on {y.device}")
    return n1


def _torch_float_dtypes() -> tuple:
    torch = sys.modules["torch"]
    return (torch.float32, torch.float64)


def check_pair(x: Any, y: Any, *, allow_few_samples: bool = False,
               names: tuple[str, str] = ("x", "y"), stacklevel: int = 3,
               warn_few: bool = True) -> tuple[int, int, int]:
    """Validate two activation matrices for a comparison; return ``(n, d1, d2)``.

    Raises when ``n_samples <= d1 + d2`` unless ``allow_few_samples`` (the coefficients are then
    trivially 1 in at least ``d1 + d2 - n + 1`` directions); warns with
    :class:`FewSamplesWarning` when ``n_samples < 5 * max(d1, d2)`` and ``warn_few``;
    ``stacklevel`` is the warning's, counted from this function (3: the caller of the public
    function calling it).
    """
    n1, d1 = _check_one(x, names[0])
    n2, d2 = _check_one(y, names[1])
    if n1 != n2:
        raise ValueError(f"{names[0]} has {n1} samples but {names[1]} has {n2}: both must hold "
                         "activations on the same inputs, one row per input")
    if is_torch(x) and is_torch(y) and x.device != y.device:
        raise ValueError(f"{names[0]} is on {x.device} but {names[1]} is on {y.device}")
    if n1 <= d1 + d2 and not allow_few_samples:
        raise ValueError(
            f"{names[0]} {(n1, d1)} and {names[1]} {(n2, d2)}: n_samples={n1} <= d1 + d2 = "
            f"{d1 + d2}, so CCA coefficients are trivially 1 in at least {d1 + d2 - n1 + 1} "
            "directions. Use more samples or fewer features, or pass allow_few_samples=True.")
    if warn_few:
        warn_few_samples(n1, d1, d2, stacklevel=stacklevel + 1)
    return n1, d1, d2


def warn_few_samples(n: int, d1: int, d2: int, *, n_inputs: int | None = None,
                     stacklevel: int = 2) -> bool:
    """Warn with :class:`FewSamplesWarning` when the samples (``n_inputs`` when given: the
    independent inputs that ``n`` rows come from, e.g. images in ``"positions"`` mode) are
    fewer than 5 per feature; the message gives the similarity that unrelated Gaussian data of
    that size would score (:func:`cca_lib.stats.expected_floors`, closed form, cached).
    ``stacklevel`` as for ``warnings.warn`` called here (2: this function's caller). Returns
    whether it warned."""
    count = n if n_inputs is None else n_inputs
    if count >= SAMPLES_PER_FEATURE_WARN * max(d1, d2):
        return False
    what = "samples" if n_inputs is None else f"independent inputs ({n} rows)"
    warnings.warn(f"only {count} {what} for {max(d1, d2)} features (< "
                  f"{SAMPLES_PER_FEATURE_WARN} per feature): similarities are biased upward; "
                  f"{_null_note(count, d1, d2)}", FewSamplesWarning, stacklevel=stacklevel)
    return True


def _null_note(n: int, d1: int, d2: int) -> str:
    """What unrelated data of this size scores, for the few-samples warning."""
    if n <= d1 + d2:
        return (f"with n={n} <= d1 + d2 = {d1 + d2} samples, CCA of unrelated data is "
                "exactly 1 in some directions")
    from cca_lib.stats import expected_floors  # lazy: stats imports this module

    try:
        f = expected_floors(n, d1, d2)
    except (ValueError, ArithmeticError):  # a warning must not raise
        return "see cca_lib.stats.permutation_null for the floor of your data"
    return (f"with n={n} samples and d1={d1}, d2={d2}, unrelated Gaussian data would score "
            f"mean CCA ~ {f['mean CCA']:.2f}, SVCCA ~ {f['SVCCA']:.2f}, PWCCA ~ "
            f"{f['PWCCA']:.2f}, linear CKA ~ {f['linear CKA']:.2f} (cca_lib.stats."
            "permutation_null gives the floor of your own data)")


def check_rtol(rtol: Any) -> float | None:
    """``rtol`` must be None or a float in (0, 1)."""
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, int | float) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be None or a number in (0, 1), got {rtol!r}")
    return float(rtol)


def check_keep(keep: Any) -> float | int:
    """SVCCA's ``keep``: a float in (0, 1] (variance fraction) or an int >= 1 (directions)."""
    if isinstance(keep, bool):
        raise TypeError(f"keep must be a float in (0, 1] or an int >= 1, got {keep!r}")
    if isinstance(keep, int | np.integer):
        if keep < 1:
            raise ValueError(f"keep must be an int >= 1 (directions kept), got {keep}")
        return int(keep)
    if isinstance(keep, float | np.floating):
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be a variance fraction in (0, 1], got {keep}")
        return float(keep)
    raise TypeError(f"keep must be a float in (0, 1] or an int >= 1, got {type(keep).__name__}")
