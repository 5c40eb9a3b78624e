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

Rows of one input (an image's positions, a sequence's timesteps) are not independent samples:
``update(..., n_inputs=k)`` says how many inputs a batch's rows come from, and the few-samples
warning and :meth:`Accumulator.expected_floors` then count inputs.
:func:`cca_lib.capture.capture_into` and :func:`compare_models` read layers with the forward
hooks of :mod:`cca_lib.capture` (one mechanism) and pass each batch's input count on.

This module needs only numpy for :class:`Accumulator`; :func:`compare_models` needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cca_lib import similarity as _sim
from cca_lib._validation import (
    check_batch,
    check_keep,
    check_rtol,
    warn_few_samples,
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

    **Rows are not always independent samples.** A batch of rows from fewer inputs (one
    image's positions, one sequence's timesteps) says so with ``update(..., n_inputs=k)``;
    :attr:`n_inputs` then counts inputs, and the few-samples warning and
    :meth:`expected_floors` count them rather than rows (without it, one input per row).
    """

    def __init__(self, d1: int, d2: int) -> None:
        self._m = _sim._Moments(_positive_int(d1, "d1"), _positive_int(d2, "d2"), kernel=True)
        self._inputs = 0

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
    def n_inputs(self) -> int:
        """Independent inputs the rows came from (the ``n_inputs`` of each batch; one per row
        where none was given)."""
        return getattr(self, "_inputs", self.n_samples)

    @property
    def device(self) -> Any:
        """Where the sums live: ``None`` for numpy on the host, else a torch device."""
        return self._m.device

    def __repr__(self) -> str:
        where = "host" if self.device is None else str(self.device)
        return f"Accumulator(d1={self.d1}, d2={self.d2}, n_samples={self.n_samples}, {where})"

    def update(self, x_batch: Any, y_batch: Any, *, n_inputs: int | None = None) -> Accumulator:
        """Add the rows of ``x_batch`` ``(m, d1)`` and ``y_batch`` ``(m, d2)``; returns self.

        ``n_inputs``: how many independent inputs the ``m`` rows come from (e.g. the images
        of a batch in ``"positions"`` mode, ``m = n_inputs * H * W``); default ``m``. Raises
        ``ValueError`` on a shape that does not fit (naming the argument and both shapes), NaN
        or inf, a device the sums are not on, or an ``n_inputs`` that is not an int in
        ``[1, m]``; ``TypeError`` on a non-float dtype. A batch of 0 rows changes nothing.
        """
        m = check_batch(x_batch, y_batch, self.d1, self.d2)
        if n_inputs is None:
            n_inputs = m
        elif (isinstance(n_inputs, bool) or not isinstance(n_inputs, int | np.integer)
              or not (min(1, m) <= n_inputs <= m)):
            raise ValueError(f"n_inputs must be an int from 1 to the batch's {m} rows (the "
                             f"inputs its rows come from), got {n_inputs!r}")
        if self.n_samples:
            for name, a in (("x_batch", x_batch), ("y_batch", y_batch)):
                self._check_device(a, name)
        self._m.update(x_batch, y_batch)
        self._inputs = self.n_inputs + int(n_inputs)
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
        self._inputs = self.n_inputs + other.n_inputs
        return self

    def expected_floors(self, *, keep: float | int = 0.99) -> dict[str, float]:
        """What unrelated data of this size scores: :func:`cca_lib.stats.expected_floors` for
        ``n`` = :attr:`n_inputs` (independent inputs, not rows), ``d1``, ``d2`` (closed form,
        no pass over the data; needs ``n_inputs > d1 + d2``). With several rows per input this
        is an upper estimate: correlated rows carry more than one input's worth of samples
        but less than their count."""
        from cca_lib.stats import expected_floors

        return expected_floors(self.n_inputs, self.d1, self.d2, keep=keep)

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
        if warn_few:
            warn_few_samples(n, d1, d2, stacklevel=4,
                             n_inputs=None if self.n_inputs == n else self.n_inputs)
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
        if not (symmetric or reverse):
            return _sim._pwcca_from_grams(g, backward=False)[1]
        _, fwd, bwd = _sim._pwcca_from_grams(g)
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

def compare_models(model_a: Any, model_b: Any, inputs: Any, layers_a: Sequence[str],
                   layers_b: Sequence[str] | None = None, *, mode: str = "mean",
                   batch_size: int = 256) -> dict[tuple[str, str], Accumulator]:
    """Compare ``model_a``'s layers ``layers_a`` with ``model_b``'s ``layers_b`` (pairwise, in
    order; default the same names) on the same inputs, without storing activations.

    ``inputs``: a tensor (split into ``batch_size`` rows), a ``Dataset`` or a ``DataLoader``
    (batches of tensors or ``(input, target)`` tuples; its order must be fixed: a shuffling
    one raises). Each batch runs through both models in eval mode without gradients (each on
    the device of its parameters), read by the forward hooks of :mod:`cca_lib.capture` (the
    same code as :func:`cca_lib.capture.capture`: names from ``model.named_modules()``, copies
    of the outputs, first element of a tuple output, hooks removed and every module's
    train/eval flag restored afterwards, also on error; a hook that never fired, or fired
    twice in one pass, raises ``ValueError``). The outputs go straight into one
    :class:`Accumulator` per pair, on their device. ``mode`` for ``(N, C, H, W)`` outputs:
    ``"mean"`` (channels averaged over space), ``"positions"`` (one row per image position),
    ``"flatten"`` (``C*H*W`` features); for ``(N, T, H)``: mean over ``T``, one row per
    timestep, or ``T*H`` features. Rows of one input in ``"positions"`` mode are not
    independent samples: each batch is added with ``n_inputs`` = its inputs, so the
    accumulators' :attr:`~Accumulator.n_inputs`, few-samples warning and
    :meth:`~Accumulator.expected_floors` count inputs.

    Returns ``{(name_a, name_b): Accumulator}``; call e.g. ``.compare()`` or ``.measures()``.
    """
    import torch
    from torch.utils.data import DataLoader

    from cca_lib import capture as _cap

    if mode not in _cap.STREAM_MODES:
        raise ValueError(f"mode must be one of {_cap.STREAM_MODES}, got {mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    layers_b = list(layers_a) if layers_b is None else layers_b
    names = {}
    for which, model, layers in (("layers_a", model_a, layers_a), ("layers_b", model_b,
                                                                    layers_b)):
        if isinstance(layers, str):
            raise TypeError(f"{which} must be a sequence of layer names, got the string "
                            f"{layers!r} (write [{layers!r}])")
        try:
            names[which] = _cap._layers(model, layers)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{which}: {err}") from None
    if len(layers_a) != len(layers_b):
        raise ValueError(f"layers_a has {len(layers_a)} names but layers_b has "
                         f"{len(layers_b)}: they are compared pairwise")
    batches = _cap._batches(model_a, inputs,
                            None if isinstance(inputs, DataLoader) else batch_size)
    dev_a, dev_b = _cap._model_device(model_a, None), _cap._model_device(model_b, None)
    fwd_a, fwd_b = _cap._runner(model_a, names["layers_a"]), _cap._runner(model_b,
                                                                          names["layers_b"])
    accs: dict[tuple[str, str], Accumulator] = {}
    with _cap._Streamer(model_a, names["layers_a"], mode, None, who="model_a's ") as hooks_a, \
            _cap._Streamer(model_b, names["layers_b"], mode, None, who="model_b's ") as hooks_b, \
            _cap._EvalMode(model_a), _cap._EvalMode(model_b), torch.no_grad():
        for batch in batches:
            seen_a = hooks_a.batch(fwd_a, batch.to(dev_a))
            seen_b = hooks_b.batch(fwd_b, batch.to(dev_b))
            for la, lb in zip(names["layers_a"], names["layers_b"], strict=True):
                xa, xb = seen_a[la], seen_b[lb]
                if xa.shape[0] != xb.shape[0]:
                    raise ValueError(f"layer {la!r} gives {xa.shape[0]} rows per batch but "
                                     f"{lb!r} gives {xb.shape[0]} (mode={mode!r})")
                if xa.device != xb.device:
                    xb = xb.to(xa.device)
                key = (la, lb)
                if key not in accs:
                    accs[key] = Accumulator(xa.shape[1], xb.shape[1])
                accs[key].update(xa, xb, n_inputs=int(batch.shape[0]))
    if not accs:
        raise ValueError("inputs gave no batches")
    return accs
