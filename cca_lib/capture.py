"""Record named layers' activations of any ``torch.nn.Module`` on a fixed set of inputs.

:func:`capture` reads each requested layer with a forward hook on the module of that name
(``layers`` are names from ``model.named_modules()``, e.g. ``"layer1.0.conv2"``), runs the model
over the inputs in batches and returns ``dict[layer_name, np.ndarray]`` of float32, samples
first. The project's :class:`~cca_lib.models.ConvNet` and :class:`~cca_lib.models.LSTMLM` go
through the same hooks; for them ``layers`` defaults to their ``layer_names``, for any other
model it is required. The hooks are always removed afterwards (also when the forward pass
raises); a requested module whose hook never fired raises (see :func:`capture`); a hook records
a copy, so a later in-place op (``ReLU(inplace=True)``) cannot change what was recorded.

Each layer's output (the first element of a tuple output such as ``nn.LSTM``'s, unless
``output=`` says otherwise) must have the batch on its first axis. By its number of axes:

* ``(N, C, H, W)`` (conv layers), by ``mode``: ``"mean"`` (default, the paper's choice): each
  channel averaged over space, ``(N, C)``; ``"positions"``: one row per (image, y, x),
  image-major, ``(N * H * W, C)``; ``"flatten"``: every (channel, y, x) a feature,
  ``(N, C * H * W)`` (channel-major, as ``reshape``); ``"raw"``: kept ``(N, C, H, W)`` (for
  :func:`cca_lib.fourier.fourier_cca`).
* ``(N, T, H)`` (a sequence, batch first): kept as is in every mode. Take every (sequence,
  timestep) as a sample with :func:`flatten_timesteps` -> ``(N * T, H)``, or one timestep with
  :func:`at_timestep` -> ``(N, H)``.
* ``(N, F)``: kept as is in every mode.

:func:`capture_into` streams the same hooks' outputs batch by batch into
:class:`cca_lib.Accumulator` objects (or any callable), so a layer in ``"positions"`` mode over
any number of images is never held in memory; :func:`cca_lib.compare_models` runs two models
in step through the same hooks. One hook mechanism (``_Hooks``) serves all of them.

**Rows are not always independent samples.** In ``"positions"`` mode (and after
:func:`flatten_timesteps`) the rows from one input (image or sequence) are contiguous and
correlated; anything that counts or resamples samples (sample-size rules, floors, bootstrap,
permutation nulls) should count and resample *inputs*. :func:`samples_per_input` gives the rows
per input and :func:`input_index` the input each row came from (pass it as ``groups=`` to
:mod:`cca_lib.stats`' measure nulls and bootstrap); :func:`capture_into` tells the accumulators
how many inputs each batch holds.

For the project's models:

* CNN (:class:`cca_lib.models.ConvNet`), probe images float32 ``(N, C, H, W)`` (a tensor or an
  :class:`~cca_lib.data.ImageDataset`): conv layers as above; ``logits`` ``(N, num_classes)``.
* LSTM LM (:class:`cca_lib.models.LSTMLM`), probe token ids int64 ``(n_seq, T)``, each sequence
  from a zero state: each layer's hidden states ``(n_seq, T, hidden)``. The LM runs its
  ``forward_layers`` (everything but the vocabulary-sized decoder, which would dominate the
  cost) unless ``logits`` is requested; the hooks read the layers either way.
* :func:`capture_windows` unrolls an LM over a long text in windows (e.g. 20 steps) and returns
  ``(n_windows, window, hidden)``; ``at_timestep(acts, j)`` is then the paper's ``O_j`` (the
  outputs at positions ``j mod window``, one row per window).

:func:`capture_run` does the same for a checkpoint of a :class:`cca_lib.training.TrainResult`
and caches the arrays under ``cache_dir()/activations/`` keyed by the run's key (which holds
the training thread count, device type and torch version), the step, a sha256 of the probe
tensor, the capture options and the torch thread count the capture runs with. Models run in
eval mode in float32 on CPU, so the same run, probe and thread count give bit-identical arrays.
Before a CNN checkpoint is captured, its batch-norm running statistics are recomputed on fixed
training batches (:func:`recalibrate_batchnorm`, settings in the key), so that eval mode
normalizes with the statistics of the network as it is at that step. An entry whose
``acts.npz`` matches its manifest but cannot be read is deleted (with a warning) and captured
again.
"""

from __future__ import annotations

import difflib
import hashlib
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from cca_lib import cache as _cache
from cca_lib import data as _data
from cca_lib.models import LSTMLM, ConvNet

__all__ = ["at_timestep", "capture", "capture_into", "capture_run", "capture_windows",
           "flatten_timesteps", "input_index", "recalibrate_batchnorm", "samples_per_input",
           "tensor_digest"]

_MODES = ("mean", "positions", "flatten", "raw")
_SHUFFLING = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)
_DEFAULT_BATCH = 500
ACTIVATIONS_KIND = "activations"
#: What reading a broken ``acts.npz`` raises (``np.load`` and the lazy reads of its members).
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)

#: How to pick the tensor out of a module's output: None (the output itself, or the first
#: element of a tuple/list), an index into a tuple/list output, or a callable.
OutputSelector = None | int | Callable[[Any], torch.Tensor]

_FAST_PATH_HINT = (
    "Some modules use a submodule's weights without calling it, or take a fused fast path that "
    "skips their submodules: nn.MultiheadAttention never calls its out_proj; "
    "nn.TransformerEncoderLayer in eval mode without gradients (as capture runs) can run one "
    "fused kernel instead of its self_attn, linear1, norm1, ... (recent torch versions skip the "
    "fast path when hooks are attached, older ones do not). Capture the enclosing module instead "
    "(e.g. 'layers.0.self_attn' or 'layers.0' of an nn.TransformerEncoder), or turn the fast "
    "path off while capturing: torch.backends.mha.set_fastpath_enabled(False). A module that the "
    "forward pass does not use at all never fires either.")


def _layers(model: nn.Module, layers: Sequence[str] | str | None) -> tuple[str, ...]:
    """The requested module names, validated against ``model.named_modules()``."""
    if layers is None:
        names = getattr(model, "layer_names", None)
        if names is None:
            some = [n for n, _ in model.named_modules() if n][:12]
            raise ValueError(f"layers is required for a {type(model).__name__} (it defines no "
                             f"layer_names): pass names from model.named_modules(), e.g. {some}")
        return tuple(names)
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one module")
    if not all(isinstance(name, str) for name in layers):
        raise TypeError(f"layers must be module names (str), got {layers!r}")
    dup = sorted({name for name in layers if layers.count(name) > 1})
    if dup:
        raise ValueError(f"layers {dup} are requested more than once")
    known = [name for name, _ in model.named_modules()]
    bad = [name for name in layers if name not in known]
    if bad:
        hints = []
        for name in bad:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hints.append(f"{name!r}: did you mean {close}?" if close
                         else f"{name!r}: no close match")
        shown = known if len(known) <= 30 else known[:30] + [f"... ({len(known) - 30} more)"]
        raise ValueError(f"layers {bad} not in the model's layers (names from "
                         f"model.named_modules()); {'; '.join(hints)} Modules of "
                         f"{type(model).__name__}: {shown}")
    return layers


def _as_images(inputs: torch.Tensor | _data.ImageDataset) -> torch.Tensor:
    x = inputs.images if isinstance(inputs, _data.ImageDataset) else torch.as_tensor(inputs)
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"images must be a float (N, C, H, W) tensor, got {x.dtype} "
                         f"{tuple(x.shape)}")
    return x


def _as_ids(inputs: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(inputs)
    if x.ndim != 2 or x.dtype != torch.int64:
        raise ValueError(f"token ids must be an int64 (n_seq, T) tensor, got {x.dtype} "
                         f"{tuple(x.shape)}")
    return x


def _batch_input(batch: Any) -> torch.Tensor:
    """The model input of one batch: a tensor, or the first element of ``(input, target)``."""
    if isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"each batch must be a tensor or an (input, target, ...) tuple whose "
                        f"first element is a tensor, got {type(batch).__name__}")
    if batch.ndim < 1 or batch.shape[0] < 1:
        raise ValueError(f"a batch must hold at least one input on its first axis, got shape "
                         f"{tuple(batch.shape)}")
    return batch


def _batches(model: nn.Module, inputs: Any, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Model inputs batch by batch, in the inputs' order."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(inputs, DataLoader):
        if batch_size is not None:
            raise ValueError("batch_size applies to a tensor or a Dataset; a DataLoader brings "
                             "its own batches")
        if isinstance(inputs.sampler, _SHUFFLING) or isinstance(
                getattr(inputs.batch_sampler, "sampler", None), _SHUFFLING):
            raise ValueError("the DataLoader samples at random (shuffle=True or a random "
                             "sampler): its rows come in a new "
                             "order on every pass, so two captures would not hold the same "
                             "inputs in the same rows; use shuffle=False")
        return (_batch_input(b) for b in inputs)
    size = _DEFAULT_BATCH if batch_size is None else batch_size
    if isinstance(inputs, _data.ImageDataset | torch.Tensor | np.ndarray):
        if isinstance(model, ConvNet):
            x = _as_images(inputs)
        elif isinstance(model, LSTMLM):
            x = _as_ids(inputs)
        else:
            x = inputs.images if isinstance(inputs, _data.ImageDataset) else \
                torch.as_tensor(inputs)
            if x.ndim < 1 or x.shape[0] < 1:
                raise ValueError(f"inputs must hold at least one input on their first axis, "
                                 f"got shape {tuple(x.shape)}")
        return (x[i:i + size] for i in range(0, x.shape[0], size))
    if isinstance(inputs, Dataset):
        return (_batch_input(b) for b in DataLoader(inputs, batch_size=size, shuffle=False))
    raise TypeError(f"inputs must be a tensor, a torch Dataset or a DataLoader, got "
                    f"{type(inputs).__name__}")


def _select(output: Any, selector: OutputSelector, name: str) -> torch.Tensor:
    if callable(selector):
        out = selector(output)
    elif selector is None:
        out = output[0] if isinstance(output, list | tuple) and output else output
    elif isinstance(selector, int) and not isinstance(selector, bool):
        if not isinstance(output, list | tuple):
            raise TypeError(f"output={selector} indexes a tuple output, but layer {name!r} "
                            f"returns a {type(output).__name__}")
        out = output[selector]
    else:
        raise TypeError(f"output must be None, an int or a callable, got {selector!r}")
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"layer {name!r} gives a {type(out).__name__}, not a tensor; pass "
                        "output= (an index into a tuple output, or a callable) to pick one")
    return out


def _reduce(a: torch.Tensor, mode: str, name: str) -> torch.Tensor:
    """One batch of a layer's output in the returned layout (see the module doc)."""
    a = a.detach().float()
    if a.ndim == 4:
        if mode == "mean":
            a = a.mean(dim=(2, 3))
        elif mode == "positions":
            a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
        elif mode == "flatten":
            a = a.reshape(a.shape[0], -1)
    elif a.ndim not in (2, 3):
        raise ValueError(f"layer {name!r} gives shape {tuple(a.shape)}: capture takes (N, F), "
                         "(N, T, H) or (N, C, H, W) outputs; pass output= (a callable) to "
                         "reshape it")
    return a.to(device="cpu", dtype=torch.float32, copy=True)  # a copy, never a view


class _Hooks:
    """Forward hooks on the named modules of ``model`` (the one hook mechanism of
    :func:`capture`, :func:`capture_into`, :func:`capture_windows` and
    :func:`cca_lib.compare_models`): a context manager that registers them and always
    removes them (also on error). Each hook picks the tensor out of its module's output
    (``output``), checks that the batch is its first axis and that the module runs once per
    forward pass, and hands a copy in the layout of ``mode`` (``layout(tensor, mode, name)``)
    to ``self.record(name, tensor)``; :meth:`run` runs one pass and raises if a hook never
    fired. ``who`` prefixes the messages (e.g. ``"model_b's "``)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], mode: str,
                 output: OutputSelector | Mapping[str, OutputSelector],
                 layout: Callable[[torch.Tensor, str, str], torch.Tensor], *,
                 modes: tuple[str, ...] = _MODES, who: str = "") -> None:
        if mode not in modes:
            raise ValueError(f"mode must be one of {modes}, got {mode!r}")
        if isinstance(output, Mapping):
            extra = sorted(set(output) - set(names))
            if extra:
                raise ValueError(f"output names layers {extra} that are not captured")
            self.selectors = {name: output.get(name) for name in names}
        else:
            self.selectors = {name: output for name in names}
        self.model, self.names, self.mode, self.layout, self.who = (model, names, mode, layout,
                                                                    who)
        self.modules = dict(model.named_modules())
        self.handles: list[Any] = []
        self.n_batch = 0
        self.passes = 0
        self.fired: dict[str, int] = {}

    def __enter__(self) -> _Hooks:
        try:
            for name in self.names:
                self.handles.append(self.modules[name].register_forward_hook(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def record(self, name: str, a: torch.Tensor) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.fired[name]:
                raise ValueError(f"{self.who}layer {name!r} ran more than once in one forward "
                                 "pass (a module used twice, e.g. a shared ReLU): its output "
                                 "is ambiguous; capture a module that runs once")
            a = _select(output, self.selectors[name], name)
            if a.ndim < 1 or a.shape[0] != self.n_batch:
                raise ValueError(
                    f"{self.who}layer {name!r} gives shape {tuple(a.shape)} for a batch of "
                    f"{self.n_batch} inputs: the batch must be its first axis (modules with "
                    "batch_first=False, such as nn.LSTM or nn.TransformerEncoderLayer by "
                    "default, put time first: build them with batch_first=True or pass "
                    "output=lambda o: o[0].transpose(0, 1))")
            self.record(name, self.layout(a, self.mode, name))
            self.fired[name] += 1
        return hook

    def run(self, n_batch: int, forward: Callable[[], Any]) -> Any:
        """Run one forward pass over ``n_batch`` inputs; every hook must fire exactly once."""
        self.n_batch = n_batch
        self.fired = dict.fromkeys(self.names, 0)
        result = forward()
        missing = [name for name in self.names if not self.fired[name]]
        if missing:
            raise ValueError(f"{self.who}layers {missing} produced no output: their forward "
                             f"hooks never fired during model(inputs). {_FAST_PATH_HINT}")
        self.passes += 1
        return result


class _Recorder(_Hooks):
    """Hooks that keep every batch's output (float32, on the CPU) for :func:`capture`."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], mode: str,
                 output: OutputSelector | Mapping[str, OutputSelector]) -> None:
        super().__init__(model, names, mode, output, _reduce)
        self.parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def record(self, name: str, a: torch.Tensor) -> None:
        self.parts[name].append(a)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for name, parts in self.parts.items():
            shapes = {tuple(p.shape[1:]) for p in parts}
            if len(shapes) > 1:
                raise ValueError(f"layer {name!r} gives per-input shapes {sorted(shapes)} in "
                                 "different batches: every input must give the same shape")
            out[name] = np.ascontiguousarray(np.concatenate([p.numpy() for p in parts]),
                                             dtype=np.float32)
        return out


#: The modes of the streaming paths (:func:`capture_into`, :func:`cca_lib.compare_models`),
#: which hand on 2-D ``(rows, features)`` batches.
STREAM_MODES = ("mean", "positions", "flatten")


def _rows(a: torch.Tensor, mode: str, name: str) -> torch.Tensor:
    """One batch of a layer's output as ``(rows, features)`` for the streaming paths, a new
    tensor (never a view) in its own dtype (float16/bfloat16 as float32) on its own device.

    ``(N, C, H, W)``: ``"mean"`` ``(N, C)``, ``"positions"`` ``(N * H * W, C)`` image-major,
    ``"flatten"`` ``(N, C * H * W)``; ``(N, T, H)``: ``"mean"`` the mean over ``T`` ``(N, H)``,
    ``"positions"`` every timestep a row ``(N * T, H)`` sequence-major, ``"flatten"``
    ``(N, T * H)``; ``(N, F)`` as is."""
    a = a.detach()
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    if a.ndim == 4:
        if mode == "mean":
            return a.mean(dim=(2, 3))
        if mode == "positions":
            return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).clone()
        return a.reshape(a.shape[0], -1).clone()
    if a.ndim == 3:
        if mode == "mean":
            return a.mean(dim=1)
        if mode == "positions":
            return a.reshape(-1, a.shape[2]).clone()
        return a.reshape(a.shape[0], -1).clone()
    if a.ndim == 2:
        return a.clone()
    raise ValueError(f"layer {name!r} gives shape {tuple(a.shape)}: the streaming paths take "
                     "(N, F), (N, T, H) or (N, C, H, W) outputs; pass output= (a callable) to "
                     "reshape it")


class _Streamer(_Hooks):
    """Hooks that hand on each forward pass's outputs as ``(rows, features)`` batches."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], mode: str,
                 output: OutputSelector | Mapping[str, OutputSelector], who: str = "") -> None:
        super().__init__(model, names, mode, output, _rows, modes=STREAM_MODES, who=who)
        self.seen: dict[str, torch.Tensor] = {}

    def record(self, name: str, a: torch.Tensor) -> None:
        self.seen[name] = a

    def batch(self, forward: Callable[..., Any], xb: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs of one forward pass over ``xb`` by layer."""
        self.seen = {}
        self.run(xb.shape[0], lambda: forward(xb))
        out, self.seen = self.seen, {}
        return out


def _runner(model: nn.Module, names: tuple[str, ...]) -> Callable[..., Any]:
    """What one forward pass calls. An :class:`LSTMLM` runs ``forward_layers`` (its hidden
    states and final state, without the vocabulary-sized decoder, which dominates its cost)
    unless the decoder or the model itself is requested; the hooks record either way."""
    if isinstance(model, LSTMLM) and not any(n == "" or n.split(".")[0] == "logits"
                                             for n in names):
        return model.forward_layers
    return model


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device``, or by default the device of the model's parameters and buffers (CPU if it
    has none); a model held wholly on another device than ``device`` raises."""
    held = {t.device for t in (*model.parameters(), *model.buffers())}
    if device is None:
        return next(iter(held)) if held else torch.device("cpu")
    dev = torch.device(device)
    if len(held) == 1:
        (on,) = held
        if on.type != dev.type or (None not in (on.index, dev.index) and on.index != dev.index):
            raise ValueError(f"device={str(dev)!r} but the model is on {str(on)!r}: batches go "
                             "to device, the model is not moved (move it with model.to(...))")
    return dev


class _EvalMode:
    """Every submodule in eval mode inside; each one's own training flag restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.flags = [(m, m.training) for m in model.modules()]
        self.model = model

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def capture(model: nn.Module, inputs: Any, layers: Sequence[str] | str | None = None, *,
            mode: str = "mean", batch_size: int | None = None,
            device: str | torch.device | None = None,
            output: OutputSelector | Mapping[str, OutputSelector] = None
            ) -> dict[str, np.ndarray]:
    """Activations of the modules ``layers`` of ``model`` on ``inputs``: float32 arrays, samples
    first, in the inputs' order (see the module doc for the shapes by ``mode``).

    ``layers``: names from ``model.named_modules()`` (a str or a sequence); required unless the
    model defines ``layer_names`` (the project's :class:`ConvNet` and :class:`LSTMLM`: all of
    them). An unknown name raises ``ValueError`` listing close matches.
    ``inputs``: a tensor (or array) with the inputs on its first axis, run in batches of
    ``batch_size`` (default 500); a :class:`torch.utils.data.Dataset` (batched with
    ``batch_size`` by a non-shuffling DataLoader); or a :class:`~torch.utils.data.DataLoader`,
    taken as it batches (``batch_size`` must then be None; a shuffling one raises). A batch is a
    tensor or an ``(input, target, ...)`` tuple whose first element goes to ``model(input)``.
    A :class:`ConvNet` takes float images ``(N, C, H, W)`` (or an ImageDataset), an
    :class:`LSTMLM` int64 token ids ``(n_seq, T)``.
    ``device``: where batches are sent (default: the device of the model's parameters); the
    model is not moved. ``output``: which tensor of a module's output to record: None (the
    output, or the first element of a tuple such as ``nn.LSTM``'s ``(output, (h, c))``), an
    int index into a tuple output, a callable ``output -> tensor``, or a dict of these by layer.

    The model runs under ``torch.no_grad()`` with every submodule in eval mode; each
    submodule's training flag is restored afterwards. The hooks are removed afterwards, also on
    error. Raises ``ValueError`` when a requested module's hook never fires during a forward
    pass (an unused module; a submodule whose weights its parent uses directly, such as
    ``nn.MultiheadAttention``'s ``out_proj``; or a fused fast path, e.g.
    ``nn.TransformerEncoderLayer``'s in eval mode without gradients, which skips its
    submodules: capture the enclosing module, or call
    ``torch.backends.mha.set_fastpath_enabled(False)`` first), when one fires twice in one pass
    (a shared module), or when an output does not have the batch on its first axis.
    """
    names = _layers(model, layers)
    batches = _batches(model, inputs, batch_size)
    dev = _model_device(model, device)
    forward = _runner(model, names)
    with _Recorder(model, names, mode, output) as rec, _EvalMode(model), torch.no_grad():
        for xb in batches:
            rec.run(xb.shape[0], lambda xb=xb: forward(xb.to(dev)))
        if not rec.passes:
            raise ValueError("inputs hold no batches")
        return rec.arrays()


def capture_into(model: nn.Module, inputs: Any, layers: Sequence[str] | str | None,
                 sink: Any, *, mode: str = "mean", batch_size: int | None = None,
                 device: str | torch.device | None = None,
                 output: OutputSelector | Mapping[str, OutputSelector] = None) -> Any:
    """Stream the modules ``layers`` of ``model`` on ``inputs`` into ``sink`` batch by batch,
    without ever holding more than one batch's activations (a conv layer in ``"positions"``
    mode over any number of images stays one batch of rows in memory).

    ``sink``: a mapping ``{(layer_x, layer_y): Accumulator}`` (:class:`cca_lib.Accumulator`
    of the layers' widths): each batch's rows of ``layer_x`` and ``layer_y`` are added to it,
    with ``n_inputs`` = the batch's inputs, so the accumulators count images (or sequences),
    not rows, for the few-samples warning and :meth:`~cca_lib.Accumulator.expected_floors`;
    or a callable ``sink(acts, n_inputs)`` called once per batch with ``{layer: (rows,
    features) tensor}`` (each a copy, in the model's dtype, on the model's device) and the
    number of inputs in the batch. ``layers`` may be None with a mapping (its layers) or for
    the project's models (all of them). Returns ``sink``.

    ``mode`` lays out each output as ``(rows, features)``: ``(N, C, H, W)``: ``"mean"``
    (default) ``(N, C)``, ``"positions"`` ``(N * H * W, C)`` image-major (as :func:`capture`),
    ``"flatten"`` ``(N, C * H * W)``; ``(N, T, H)``: ``"mean"`` the mean over time,
    ``"positions"`` ``(N * T, H)`` (as :func:`flatten_timesteps`), ``"flatten"`` ``(N, T * H)``.
    ``inputs``, ``batch_size``, ``device``, ``output``, the hooks, eval mode and the errors are
    those of :func:`capture` (the same hook code). The streamed accumulators equal
    :func:`capture` followed by the in-memory functions on the same rows.
    """
    pairs = None
    if isinstance(sink, Mapping):
        from cca_lib.streaming import Accumulator

        pairs = list(sink)
        for key in pairs:
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"sink's keys must be (layer_x, layer_y) pairs, got {key!r}")
            if not isinstance(sink[key], Accumulator):
                raise TypeError(f"sink[{key!r}] must be an Accumulator, got "
                                f"{type(sink[key]).__name__}")
        if not pairs:
            raise ValueError("sink holds no (layer_x, layer_y) pairs")
        wanted = list(dict.fromkeys(name for key in pairs for name in key))
        if layers is None:
            layers = wanted
        else:
            names = (layers,) if isinstance(layers, str) else tuple(layers)
            missing = [n for n in wanted if n not in names]
            if missing:
                raise ValueError(f"sink pairs layers {missing} that are not in layers "
                                 f"{list(names)}")
    elif not callable(sink):
        raise TypeError(f"sink must be a mapping {{(layer_x, layer_y): Accumulator}} or a "
                        f"callable (acts, n_inputs), got {type(sink).__name__}")
    names = _layers(model, layers)
    batches = _batches(model, inputs, batch_size)
    dev = _model_device(model, device)
    forward = _runner(model, names)
    with _Streamer(model, names, mode, output) as hooks, _EvalMode(model), torch.no_grad():
        for xb in batches:
            acts = hooks.batch(forward, xb.to(dev))
            k = int(xb.shape[0])
            if pairs is None:
                sink(acts, k)
            else:
                for lx, ly in pairs:
                    sink[(lx, ly)].update(acts[lx], acts[ly], n_inputs=k)
        if not hooks.passes:
            raise ValueError("inputs hold no batches")
    return sink


def samples_per_input(acts: np.ndarray | Mapping[str, np.ndarray], n_inputs: int
                      ) -> int | dict[str, int]:
    """Rows per input of captured activations (``H * W`` in ``"positions"`` mode, ``T`` after
    :func:`flatten_timesteps`, else 1) given the number of inputs captured."""
    if isinstance(acts, Mapping):
        return {k: samples_per_input(v, n_inputs) for k, v in acts.items()}  # type: ignore[misc]
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
        raise ValueError(f"n_inputs must be a positive int, got {n_inputs!r}")
    rows = np.shape(acts)[0]
    if rows % n_inputs:
        raise ValueError(f"{rows} rows are not a whole number of rows per input for "
                         f"n_inputs={n_inputs}")
    return rows // n_inputs


def input_index(acts: np.ndarray, n_inputs: int) -> np.ndarray:
    """The input each row of ``acts`` came from, int64 ``(rows,)``: rows of one input are
    contiguous (image-major positions, sequence-major timesteps). Resample inputs, not rows:
    e.g. ``acts[np.isin(input_index(acts, n), chosen)]``."""
    return np.repeat(np.arange(n_inputs, dtype=np.int64), samples_per_input(acts, n_inputs))


def capture_windows(model: LSTMLM, ids: torch.Tensor, *, window: int = 20,
                    n_windows: int | None = None, start: int = 0, carry_state: bool = True,
                    n_streams: int = 50, layers: Sequence[str] | str | None = None,
                    device: str | torch.device | None = None) -> dict[str, np.ndarray]:
    """Unroll an LM over the long 1-D text ``ids[start:]`` in consecutive windows of ``window``
    tokens; returns ``{layer: float32 (n_windows, window, hidden)}`` with windows in text order.

    ``carry_state=True``: the text is split into ``n_streams`` contiguous streams run side by
    side; each stream starts from a zero state and carries the state from one window to the
    next, so only the first window of each stream starts cold. ``carry_state=False``: every
    window starts from a zero state. Either way window ``k`` covers tokens
    ``ids[start + k * window : start + (k + 1) * window]``. ``n_windows`` defaults to all that
    fit (rounded down to a multiple of ``n_streams`` when carrying state). The layers are read
    by the same forward hooks as :func:`capture`; ``device`` as there.
    """
    if not isinstance(model, LSTMLM):
        raise TypeError(f"model must be an LSTMLM, got {type(model).__name__}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not isinstance(n_streams, int) or n_streams < 1:
        raise ValueError(f"n_streams must be a positive int, got {n_streams!r}")
    ids = torch.as_tensor(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D token stream, got shape {tuple(ids.shape)}")
    fit = (len(ids) - start) // window
    if n_windows is None:
        n_windows = fit - fit % n_streams if carry_state and fit >= n_streams else fit
    wins = _data.windows(ids, window, n_windows, start=start)  # (n_windows, window)
    names = _layers(model, layers)
    dev = _model_device(model, device)
    if not carry_state:
        return capture(model, wins, names, batch_size=512, device=dev)
    if n_windows % n_streams:
        raise ValueError(f"n_windows={n_windows} must be a multiple of n_streams="
                         f"{n_streams} when carry_state=True")
    per = n_windows // n_streams
    grid = wins.view(n_streams, per, window).to(dev)  # stream s holds windows s*per ...
    state = None
    forward = _runner(model, names)
    with _Recorder(model, names, "mean", None) as rec, _EvalMode(model), torch.no_grad():
        for k in range(per):
            _, state = rec.run(n_streams, lambda k=k, state=state: forward(grid[:, k], state))
        acts = rec.arrays()  # (per * n_streams, window, hidden), window k of every stream first
    return {name: np.ascontiguousarray(
                a.reshape(per, n_streams, window, -1).transpose(1, 0, 2, 3)
                .reshape(n_windows, window, -1), dtype=np.float32)
            for name, a in acts.items()}


def flatten_timesteps(acts: np.ndarray | dict[str, np.ndarray]
                      ) -> np.ndarray | dict[str, np.ndarray]:
    """``(n_seq, T, hidden) -> (n_seq * T, hidden)``: every (sequence, timestep) a sample."""
    if isinstance(acts, dict):
        return {k: flatten_timesteps(v) for k, v in acts.items()}  # type: ignore[misc]
    if acts.ndim != 3:
        raise ValueError(f"acts must be (n_seq, T, hidden), got shape {acts.shape}")
    return acts.reshape(-1, acts.shape[-1])


def at_timestep(acts: np.ndarray | dict[str, np.ndarray], j: int
                ) -> np.ndarray | dict[str, np.ndarray]:
    """``(n_seq, T, hidden) -> (n_seq, hidden)`` at timestep ``j`` (negative counts from the
    end): with :func:`capture_windows`, the paper's ``O_j``."""
    if isinstance(acts, dict):
        return {k: at_timestep(v, j) for k, v in acts.items()}  # type: ignore[misc]
    if acts.ndim != 3:
        raise ValueError(f"acts must be (n_seq, T, hidden), got shape {acts.shape}")
    if not -acts.shape[1] <= j < acts.shape[1]:
        raise ValueError(f"j={j} out of range for T={acts.shape[1]}")
    return np.ascontiguousarray(acts[:, j])


def tensor_digest(x: torch.Tensor | np.ndarray) -> str:
    """sha256 of a tensor's dtype, shape and bytes (identifies a probe set)."""
    a = x.detach().cpu().contiguous().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _read_acts(path: Path, names: Sequence[str] | None) -> dict[str, np.ndarray]:
    """The arrays of a cached ``acts.npz``; ValueError if it is not the float32 arrays of the
    expected layers."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise ValueError("not an npz (zip) archive")
    with np.load(path, allow_pickle=False) as z:
        acts = {name: z[name] for name in z.files}
    if not acts or (names is not None and list(acts) != list(names)):
        raise ValueError(f"holds layers {list(acts)}, expected {names or 'some'}")
    bad = [name for name, a in acts.items() if a.dtype != np.float32]
    if bad:
        raise ValueError(f"layers {bad} are not float32")
    return acts


#: Batch-norm statistics before a checkpoint is captured: recomputed as the cumulative average
#: over BN_BATCHES batches of BN_BATCH_SIZE training images (a fixed draw, seed BN_SEED). In eval
#: mode batch norm uses its running statistics, and after k training steps at momentum 0.1 a
#: share 0.9**k of their initial values (mean 0, variance 1) remains: at step 0 batch norm is
#: the identity, and early checkpoints would not be the networks that train.
BN_BATCHES = 20
BN_BATCH_SIZE = 128
BN_SEED = 0


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor | np.ndarray, *,
                          n_batches: int = BN_BATCHES, batch_size: int = BN_BATCH_SIZE,
                          seed: int) -> nn.Module:
    """Recompute the running mean and variance of every batch-norm layer of ``model``, in
    place, as the cumulative average over ``n_batches`` batches of ``batch_size`` images of
    ``images`` ``(N, C, H, W)`` in an order drawn with ``seed`` (without replacement; with fewer
    than ``n_batches * batch_size`` images, successive permutations are concatenated). No
    weight changes; the layers' momentum and every module's train/eval flag are restored. A
    model without batch norm is returned unchanged. Returns ``model``."""
    for name, value in (("n_batches", n_batches), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed"
                                                                              else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'}"
                             f" int, got {value!r}")
    bns = _batchnorms(model)
    if not bns:
        return model
    x = torch.as_tensor(images)
    need = n_batches * batch_size
    if x.ndim != 4 or len(x) < batch_size:
        raise ValueError(f"images must be (N, C, H, W) with N >= batch_size={batch_size}, got "
                         f"shape {tuple(x.shape)}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(-(-need // len(x)))])
    order = torch.from_numpy(order[:need])
    flags = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    device = next(iter(model.parameters()), x).device
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: equal weight to every batch
            m.train()
        for i in range(n_batches):
            model(x[order[i * batch_size:(i + 1) * batch_size]].to(device))
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, flag in flags.items():
            m.train(flag)
    return model


def _is_cnn_run(result) -> bool:
    from cca_lib.training import CNNTrainConfig

    return isinstance(result.config, CNNTrainConfig)


def _bn_images(result) -> torch.Tensor:
    """The training images a CNN run's batch norm is recalibrated on (its training set)."""
    cfg = result.config
    return _data.load_images(cfg.dataset, "train", cfg.train_size, progress=False).images


def capture_run(result, step: int | None, inputs: torch.Tensor | _data.ImageDataset,
                layers: Sequence[str] | str | None = None, *, mode: str = "mean",
                windowed: dict | None = None, batch_size: int = 500, cache: bool = True
                ) -> dict[str, np.ndarray]:
    """Capture a checkpoint of a :class:`~cca_lib.training.TrainResult`, cached.

    ``step=None`` is the final step. ``inputs``: probe images ``(N, C, H, W)`` / token ids
    ``(n_seq, T)`` as for :func:`capture`, or with ``windowed={...}`` (keyword arguments of
    :func:`capture_windows`, e.g. ``{"window": 20, "carry_state": True}``) a 1-D token stream
    unrolled by :func:`capture_windows`. Returns the same dict of float32 arrays as those.
    The cache key covers the run's key, the step, the probe's digest, the layers and options
    and the torch thread count; ``cache=False`` neither reads nor writes it. A cached entry that
    cannot be read is deleted (``RuntimeWarning``) and captured again; a checkpoint that cannot
    be read makes the run retrain (see :meth:`~cca_lib.training.TrainResult.state_dict`).
    """
    step = result.final_step if step is None else step
    if step not in result.steps:
        raise ValueError(f"no checkpoint at step={step!r}; available: {result.steps}")
    x = inputs.images if isinstance(inputs, _data.ImageDataset) else torch.as_tensor(inputs)
    model = None
    names = layers
    if names is not None and isinstance(names, str):
        names = (names,)
    spec = {"run": result.key, "step": step, "probe": tensor_digest(x),
            "layers": None if names is None else list(names), "mode": mode,
            "windowed": windowed, "threads": torch.get_num_threads()}
    if windowed is None and _is_cnn_run(result):
        spec["batchnorm"] = {"batches": BN_BATCHES, "batch_size": BN_BATCH_SIZE, "seed": BN_SEED}
    key = _cache.config_key(spec, kind=ACTIVATIONS_KIND)
    if cache:
        path = _cache.open_entry(ACTIVATIONS_KIND, key)
        if path is not None:
            try:
                return _read_acts(path / "acts.npz", names)
            except _NPZ_ERRORS as err:  # matches its manifest, yet broken: capture it again
                _cache.discard_entry(path, f"acts.npz cannot be read: {type(err).__name__}: "
                                           f"{err}")
    model = result.load(step)
    if "batchnorm" in spec:
        recalibrate_batchnorm(model, _bn_images(result), seed=BN_SEED)
    if windowed is not None:
        acts = capture_windows(model, x, layers=names, **windowed)
    else:
        acts = capture(model, x, names, mode=mode, batch_size=batch_size)
    if cache:
        def writer(folder: Path) -> None:
            with open(folder / "acts.npz", "wb") as fh:
                np.savez(fh, **acts)

        _cache.write_entry(ACTIVATIONS_KIND, key, writer, meta=spec)
    return acts
