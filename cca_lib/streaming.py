r"""Exact similarities over more samples than fit in memory: :class:`Accumulator`, and
:func:`compare_models`, which compares two models layer by layer without storing activations.

Every measure of :mod:`cca_lib.similarity` is a function of sums over samples: the counts,
the per-neuron means, the centered co-moments :math:`\Sigma_{xx}, \Sigma_{yy}, \Sigma_{xy}`
(CCA, mean CCA, SVCCA, PWCCA, linear CKA; PWCCA's weights :math:`x^\top h = \Sigma_{xx} W_x A`
need no samples either) and, for debiased CKA, three sums of products of the centered rows'
squared norms :math:`a_i = |x_i - \bar x|^2`, :math:`b_i = |y_i - \bar y|^2`:
:math:`\sum a_i^2`, :math:`\sum b_i^2`, :math:`\sum a_i b_i` (with the third-order sums
:math:`\sum a_i x_i` etc. that keep them exact when the mean moves). So an accumulator of
``O((d1 + d2)^2)`` numbers, fed batch by batch, gives the in-memory answers. It is the same
code as the in-memory functions' covariance pass (``cca_lib.similarity._Moments``: the
in-memory functions are one batch), with the same rank rule (dead neurons, the correlation-
matrix cut) and the same power-of-two rescaling (module doc of :mod:`cca_lib.similarity`).

Each batch is centered about its own mean and merged with the sums so far by the pairwise
update of Chan, Golub and LeVeque (1979), extended to the kernel sums, so results do not
depend on the order of batches or on how partial accumulators are merged (agreement to
rounding, ``~1e-13`` in float64; tested to ``1e-10`` on data not within rounding of the rank
cut). Float32 batches are multiplied in float32 within a batch and summed in float64, as the
in-memory functions do.

This module needs only numpy for :class:`Accumulator`; :func:`compare_models` needs torch.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from cca_lib import similarity as _sim
from cca_lib._validation import (
    SAMPLES_PER_FEATURE_WARN,
    FewSamplesWarning,
    check_batch,
    check_keep,
    check_rtol,
    is_torch,
)

__all__ = ["Accumulator", "compare_models"]


#: The keys of :meth:`Accumulator.measures`, in order.
_MEASURE_ORDER = ("mean CCA", "SVCCA", "PWCCA", "PWCCA (reverse)", "PWCCA (symmetric)",
                  "linear CKA", "debiased CKA")


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be a positive int (number of features), got {v!r}")
    return int(v)


class Accumulator:
    """Exact streaming sufficient statistics for comparing two layers of widths ``d1``, ``d2``.

    ``update(x_batch, y_batch)`` adds rows (``(m, d1)`` and ``(m, d2)``, the same inputs in
    the same order; numpy arrays or torch tensors, float32 or float64); ``merge(other)`` adds
    another accumulator's rows (partial sums from other processes or machines; pickle it to
    send it). The results, :meth:`cca`, :meth:`mean_cca`, :meth:`svcca`, :meth:`pwcca`,
    :meth:`linear_cka`, :meth:`compare` and :meth:`measures`, equal those of the functions of
    the same name on all rows at once (same checks, same rank rule and defaults; ``cca`` has
    no canonical variates, which are ``n``-vectors).

    Sums are float64 and live where the first batch lives: numpy on the host for numpy arrays
    and CPU tensors; torch tensors on the device for device (CUDA) tensors, whose batches are
    never copied to the host. Later numpy batches are moved to an accumulator's device; a
    device batch given to a host accumulator (or one on another device) raises, as moving
    the sums silently would hide where the work happens. Memory ``O((d1 + d2)^2)``. Default
    tolerances follow the inputs' dtype as in :mod:`cca_lib.similarity`; if any batch of an
    input was float32, that input gets float32's.
    """

    def __init__(self, d1: int, d2: int) -> None:
        self._m = _sim._Moments(_positive_int(d1, "d1"), _positive_int(d2, "d2"), kernel=True)

    # ------------------------------------------------------------------ state
    @property
    def d1(self) -> int:
        return self._m.d1

    @property
    def d2(self) -> int:
        return self._m.d2

    @property
    def n_samples(self) -> int:
        """Rows added so far."""
        return self._m.n

    @property
    def device(self) -> Any:
        """Where the sums live: ``None`` for numpy on the host, else a torch device."""
        return self._m.device

    def __repr__(self) -> str:
        where = "host" if self.device is None else str(self.device)
        return f"Accumulator(d1={self.d1}, d2={self.d2}, n_samples={self.n_samples}, {where})"

    def update(self, x_batch: Any, y_batch: Any) -> Accumulator:
        """Add the rows of ``x_batch`` ``(m, d1)`` and ``y_batch`` ``(m, d2)``; returns self.

        Raises ``ValueError`` on a shape that does not fit (naming the argument and both
        shapes), NaN or inf, or a device the sums are not on; ``TypeError`` on a non-float
        dtype. A batch of 0 rows changes nothing.
        """
        check_batch(x_batch, y_batch, self.d1, self.d2)
        if self.n_samples:
            for name, a in (("x_batch", x_batch), ("y_batch", y_batch)):
                self._check_device(a, name)
        self._m.update(x_batch, y_batch)
        return self

    def _check_device(self, a: Any, name: str) -> None:
        if not _sim.on_cuda(a):
            return
        if self.device is None:
            raise ValueError(
                f"{name} is on {a.device} but this accumulator holds its sums on the host (its "
                f"first batch was a numpy array or a CPU tensor): pass {name}.cpu(), or use "
                "one accumulator per device and merge them")
        if a.device != self.device:
            raise ValueError(f"{name} is on {a.device} but this accumulator holds its sums on "
                             f"{self.device}")

    def merge(self, other: Accumulator) -> Accumulator:
        """Add ``other``'s rows (its sums, exactly as if its batches had been given to
        :meth:`update`); ``other`` is unchanged. Its sums are moved to this accumulator's
        device first (``d x d`` numbers). Returns self."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"other must be an Accumulator, got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge an accumulator into itself (it would count every "
                             "row twice)")
        if (other.d1, other.d2) != (self.d1, self.d2):
            raise ValueError(f"other has widths (d1, d2) = {(other.d1, other.d2)} but this "
                             f"accumulator has {(self.d1, self.d2)}")
        m = other._m
        if self.n_samples and m.n and m.device != self.device:
            m = m.on(self.device)
        self._m._absorb(m)
        return self

    # ------------------------------------------------------------------ results
    def _grams(self, rtol: Any, cca_family: bool, allow_few_samples: bool = False,
               warn_few: bool = True) -> Any:
        n, d1, d2 = self.n_samples, self.d1, self.d2
        if n < 2:
            raise ValueError(f"this accumulator has {n} samples; at least 2 are needed")
        if cca_family and n <= d1 + d2 and not allow_few_samples:
            raise ValueError(
                f"n_samples={n} <= d1 + d2 = {d1 + d2}, so CCA coefficients are trivially 1 "
                f"in at least {d1 + d2 - n + 1} directions. Use more samples or fewer features, "
                "or pass allow_few_samples=True.")
        if warn_few and n < SAMPLES_PER_FEATURE_WARN * max(d1, d2):
            warnings.warn(
                f"only {n} samples for {max(d1, d2)} features (< {SAMPLES_PER_FEATURE_WARN} per "
                "feature): similarities are biased upward", FewSamplesWarning, stacklevel=3)
        return self._m.grams(check_rtol(rtol))

    def cca(self, *, rtol: float | None = None,
            allow_few_samples: bool = False) -> _sim.CCAResult:
        """:func:`cca_lib.cca` of all rows so far, without canonical variates (``None``)."""
        g = self._grams(rtol, True, allow_few_samples)
        core = _sim._cca_from_grams(g)
        return _sim.CCAResult(
            rho=core.rho, x_weights=_sim._unscaled(core.x_weights, g.exp_x, "x"),
            y_weights=_sim._unscaled(core.y_weights, g.exp_y, "y"), x_variates=None,
            y_variates=None, dropped_x=core.dropped_x, dropped_y=core.dropped_y, n_samples=g.n)

    def mean_cca(self, *, rtol: float | None = None, allow_few_samples: bool = False) -> float:
        """:func:`cca_lib.mean_cca` of all rows so far."""
        g = self._grams(rtol, True, allow_few_samples)
        return float(np.mean(_sim._cca_from_grams(g, vectors=False).rho))

    def pwcca(self, *, symmetric: bool = False, reverse: bool = False,
              rtol: float | None = None, allow_few_samples: bool = False) -> float:
        """:func:`cca_lib.pwcca` of all rows so far: ``pwcca(x, y)`` (weights from ``x``),
        ``reverse=True`` for ``pwcca(y, x)``, ``symmetric=True`` for their mean."""
        g = self._grams(rtol, True, allow_few_samples)
        core = _sim._cca_from_grams(g)
        fwd = _sim._pw_mean(core.rho, g.sxx @ core.x_weights)
        bwd = _sim._pw_mean(core.rho, g.syy @ core.y_weights)
        if symmetric:
            return 0.5 * (fwd + bwd)
        return bwd if reverse else fwd

    def svcca(self, keep: float | int = 0.99, *, rtol: float | None = None,
              allow_few_samples: bool = False) -> float:
        """:func:`cca_lib.svcca` of all rows so far."""
        keep = check_keep(keep)
        return _sim._svcca_from_grams(self._grams(rtol, True, allow_few_samples), keep)

    def linear_cka(self, *, debiased: bool = False) -> float:
        """:func:`cca_lib.linear_cka` of all rows so far (``debiased`` needs 4 samples)."""
        if debiased and self.n_samples < 4:
            raise ValueError(f"debiased CKA needs at least 4 samples, got {self.n_samples}")
        g = self._grams(None, False, warn_few=not debiased)
        return _sim._debiased_cka_from_grams(g) if debiased else _sim._cka_from_grams(g)

    def compare(self, *, keep: float | int = 0.99, rtol: float | None = None,
                allow_few_samples: bool = False) -> dict[str, float]:
        """:func:`cca_lib.compare` of all rows so far (the same keys)."""
        keep = check_keep(keep)
        return _sim._compare_from_grams(self._grams(rtol, True, allow_few_samples), keep)

    def measures(self, *, keep: float | int = 0.99, rtol: float | None = None,
                 allow_few_samples: bool = False) -> dict[str, float]:
        """Every measure: :meth:`compare`'s keys plus ``"PWCCA (reverse)"`` (``pwcca(y, x)``)
        and ``"debiased CKA"`` (``None`` below 4 samples)."""
        keep = check_keep(keep)
        g = self._grams(rtol, True, allow_few_samples)
        out = _sim._compare_from_grams(g, keep, reverse=True)
        out["debiased CKA"] = _sim._debiased_cka_from_grams(g) if g.n >= 4 else None
        return {k: out[k] for k in _MEASURE_ORDER}


# ---------------------------------------------------------------------------------------------
# Two models, layer by layer, without storing activations
# ---------------------------------------------------------------------------------------------

# The hook loop below is self-contained on purpose: cca_lib.capture is being made generic
# (forward hooks on any module, the same modes); once it is, compare_models should take its
# per-batch hook code from there instead of keeping a second copy.
_MODES = ("mean", "positions", "flatten")


def _resolve(model: Any, layers: Sequence[str], which: str) -> dict[str, Any]:
    if isinstance(layers, str):
        raise TypeError(f"{which} must be a sequence of layer names, got the string "
                        f"{layers!r} (write [{layers!r}])")
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        if name not in modules:
            close = difflib.get_close_matches(str(name), [k for k in modules if k], n=5)
            hint = f"; close matches: {close}" if close else ""
            raise ValueError(f"{which}: {name!r} is not a module of the model (names from "
                             f"model.named_modules()){hint}")
        out[name] = modules[name]
    return out


def _rows(out: Any, mode: str, where: str) -> Any:
    """One layer output as a ``(rows, features)`` tensor (a new tensor, never a view)."""
    import torch

    if isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{where} returned {type(out).__name__}, not a tensor")
    out = out.detach()
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    if out.ndim == 2:
        return out.clone()
    if out.ndim == 4:  # (N, C, H, W)
        if mode == "mean":
            return out.mean(dim=(2, 3))
        if mode == "positions":
            return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).clone()
        return out.reshape(out.shape[0], -1).clone()
    if out.ndim == 3:  # (N, T, H)
        if mode == "mean":
            return out.mean(dim=1)
        if mode == "positions":
            return out.reshape(-1, out.shape[2]).clone()
        return out.reshape(out.shape[0], -1).clone()
    raise ValueError(f"{where} output has shape {tuple(out.shape)}: expected (N, features), "
                     "(N, C, H, W) or (N, T, H)")


def _batches(inputs: Any, batch_size: int) -> Iterable[Any]:
    import torch

    if isinstance(inputs, torch.Tensor):
        for start in range(0, inputs.shape[0], batch_size):
            yield inputs[start:start + batch_size]
        return
    if isinstance(inputs, torch.utils.data.Dataset) and not isinstance(
            inputs, torch.utils.data.IterableDataset):
        inputs = torch.utils.data.DataLoader(inputs, batch_size=batch_size, shuffle=False)
    for batch in inputs:
        yield batch[0] if isinstance(batch, tuple | list) else batch


def _model_device(model: Any) -> Any:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def compare_models(model_a: Any, model_b: Any, inputs: Any, layers_a: Sequence[str],
                   layers_b: Sequence[str] | None = None, *, mode: str = "mean",
                   batch_size: int = 256) -> dict[tuple[str, str], Accumulator]:
    """Compare ``model_a``'s layers ``layers_a`` with ``model_b``'s ``layers_b`` (pairwise, in
    order; default the same names) on the same inputs, without storing activations.

    ``inputs``: a tensor (split into ``batch_size`` rows), a ``Dataset`` or a ``DataLoader``
    (batches of tensors or ``(input, target)`` tuples; its order must be fixed). Each batch
    runs through both models in eval mode without gradients (each on the device of its
    parameters); forward hooks on the named modules (``model.named_modules()`` names) copy the
    outputs, which go straight into one :class:`Accumulator` per pair, on their device. A
    module returning a tuple gives its first element. ``mode`` for ``(N, C, H, W)`` outputs:
    ``"mean"`` (channels averaged over space), ``"positions"`` (one row per image position),
    ``"flatten"`` (``C*H*W`` features); for ``(N, T, H)``: mean over ``T``, one row per
    timestep, or ``T*H`` features. Rows of one input in ``"positions"`` mode are not
    independent samples (the accumulators count rows). The hooks are removed and every
    module's train/eval flag restored afterwards, also on error; a hook that never fired
    raises ``RuntimeError``.

    Returns ``{(name_a, name_b): Accumulator}``; call e.g. ``.compare()`` or ``.measures()``.
    """
    import torch

    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    layers_b = list(layers_a) if layers_b is None else layers_b
    mods_a, mods_b = _resolve(model_a, layers_a, "layers_a"), _resolve(model_b, layers_b,
                                                                       "layers_b")
    if len(mods_a) != len(layers_a) or len(mods_b) != len(layers_b):
        raise ValueError("layers_a and layers_b must not repeat a name")
    if len(layers_a) != len(layers_b):
        raise ValueError(f"layers_a has {len(layers_a)} names but layers_b has "
                         f"{len(layers_b)}: they are compared pairwise")
    accs: dict[tuple[str, str], Accumulator] = {}
    seen: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    handles, flags = [], {}
    for model in (model_a, model_b):
        flags.update({m: m.training for m in model.modules()})

    def hook(tag: str, name: str) -> Any:
        def record(_module: Any, _inp: Any, out: Any) -> None:
            seen[tag][name] = _rows(out, mode, f"layer {name!r} of model_{tag}")
        return record

    try:
        for tag, mods in (("a", mods_a), ("b", mods_b)):
            for name, module in mods.items():
                handles.append(module.register_forward_hook(hook(tag, name)))
        model_a.eval()
        model_b.eval()
        with torch.no_grad():
            for batch in _batches(inputs, batch_size):
                for tag, model, names in (("a", model_a, layers_a), ("b", model_b, layers_b)):
                    seen[tag].clear()
                    model(batch.to(_model_device(model)))
                    missing = [n for n in names if n not in seen[tag]]
                    if missing:
                        raise RuntimeError(
                            f"the forward hooks of model_{tag}'s layers {missing} never fired: "
                            "the module is not called in forward (or a fused fast path skips "
                            "it, e.g. a TransformerEncoderLayer in eval mode)")
                for la, lb in zip(layers_a, layers_b, strict=True):
                    xa, xb = seen["a"][la], seen["b"][lb]
                    if xa.shape[0] != xb.shape[0]:
                        raise ValueError(f"layer {la!r} gives {xa.shape[0]} rows per batch but "
                                         f"{lb!r} gives {xb.shape[0]} (mode={mode!r})")
                    if is_torch(xa) and xa.device != xb.device:
                        xb = xb.to(xa.device)
                    key = (la, lb)
                    if key not in accs:
                        accs[key] = Accumulator(xa.shape[1], xb.shape[1])
                    accs[key].update(xa, xb)
                seen["a"].clear()
                seen["b"].clear()
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    if not accs:
        raise ValueError("inputs gave no batches")
    return accs
