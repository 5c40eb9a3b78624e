"""Record named layers' activations on a fixed probe set.

All results are ``dict[layer_name, np.ndarray]`` of float32, samples first:

* CNN (:class:`cca_lib.models.ConvNet`), probe images float32 ``(N, C, H, W)``:
  ``mode="mean"`` (default, the paper's choice): conv layers ``(N, channels)``, each channel
  averaged over space; ``mode="positions"``: conv layers ``(N * H_i * W_i, channels)``, one row
  per (image, y, x), image-major. ``logits`` is always ``(N, num_classes)``.
* LSTM LM (:class:`cca_lib.models.LSTMLM`), probe token ids int64 ``(n_seq, T)``: each layer's
  hidden states ``(n_seq, T, hidden)``. Take every (sequence, timestep) as a sample with
  :func:`flatten_timesteps` -> ``(n_seq * T, hidden)``, or one timestep with
  :func:`at_timestep` -> ``(n_seq, hidden)``.
* :func:`capture_windows` unrolls an LM over a long text in windows (e.g. 20 steps) and returns
  ``(n_windows, window, hidden)``; ``at_timestep(acts, j)`` is then the paper's ``O_j`` (the
  outputs at positions ``j mod window``, one row per window).

:func:`capture_run` does the same for a checkpoint of a :class:`cca_lib.training.TrainResult`
and caches the arrays under ``cache_dir()/activations/`` keyed by the run's key (which holds
the training thread count, device type and torch version), the step, a sha256 of the probe
tensor, the capture options and the torch thread count the capture runs with. Models run in
eval mode in float32 on CPU, so the same run, probe and thread count give bit-identical arrays.
An entry whose ``acts.npz`` matches its manifest but cannot be read is deleted (with a
warning) and captured again.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cca_lib import cache as _cache
from cca_lib import data as _data
from cca_lib.models import LSTMLM, ConvNet

__all__ = ["at_timestep", "capture", "capture_run", "capture_windows", "flatten_timesteps",
           "tensor_digest"]

_MODES = ("mean", "positions")
ACTIVATIONS_KIND = "activations"
#: What reading a broken ``acts.npz`` raises (``np.load`` and the lazy reads of its members).
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def _layers(model: nn.Module, layers: Sequence[str] | str | None) -> tuple[str, ...]:
    names = model.layer_names  # type: ignore[attr-defined]
    if layers is None:
        return tuple(names)
    if isinstance(layers, str):
        layers = (layers,)
    bad = [name for name in layers if name not in names]
    if bad:
        raise ValueError(f"layers {bad} not in the model's layers {names}")
    return tuple(layers)


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


@torch.no_grad()
def _capture_cnn(model: ConvNet, x: torch.Tensor, layers: tuple[str, ...], mode: str,
                 batch_size: int, device: torch.device) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for i in range(0, x.shape[0], batch_size):
        outs = model.forward_layers(x[i:i + batch_size].to(device))
        for name in layers:
            a = outs[name].float()
            if a.ndim == 4:
                if mode == "mean":
                    a = a.mean(dim=(2, 3))
                else:
                    a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
            parts[name].append(a.cpu().numpy())
    return {name: np.ascontiguousarray(np.concatenate(p), dtype=np.float32)
            for name, p in parts.items()}


@torch.no_grad()
def _capture_lm(model: LSTMLM, ids: torch.Tensor, layers: tuple[str, ...], batch_size: int,
                device: torch.device) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for i in range(0, ids.shape[0], batch_size):
        outs, _ = model.forward_layers(ids[i:i + batch_size].to(device))
        for name in layers:
            parts[name].append(outs[name].float().cpu().numpy())
    return {name: np.ascontiguousarray(np.concatenate(p), dtype=np.float32)
            for name, p in parts.items()}


def capture(model: nn.Module, inputs: torch.Tensor | _data.ImageDataset,
            layers: Sequence[str] | str | None = None, *, mode: str = "mean",
            batch_size: int = 500, device: str | torch.device = "cpu"
            ) -> dict[str, np.ndarray]:
    """Activations of ``layers`` (default: all named layers) of ``model`` on ``inputs``.

    ``model``: a :class:`ConvNet` with float images ``(N, C, H, W)`` (or an ImageDataset), or an
    :class:`LSTMLM` with int64 token ids ``(n_seq, T)`` (each sequence from a zero state).
    Returns float32 arrays: see the module doc for shapes. The model is run in eval mode (its
    training flag is restored afterwards).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device)
    names = _layers(model, layers)
    was = model.training
    model.eval()
    try:
        if isinstance(model, ConvNet):
            return _capture_cnn(model, _as_images(inputs), names, mode, batch_size, device)
        if isinstance(model, LSTMLM):
            if mode != "mean":
                raise ValueError("mode applies to CNNs only; an LSTM gives (n_seq, T, hidden)")
            return _capture_lm(model, _as_ids(inputs), names, batch_size, device)
        raise TypeError(f"model must be a ConvNet or an LSTMLM, got {type(model).__name__}")
    finally:
        model.train(was)


@torch.no_grad()
def capture_windows(model: LSTMLM, ids: torch.Tensor, *, window: int = 20,
                    n_windows: int | None = None, start: int = 0, carry_state: bool = True,
                    n_streams: int = 50, layers: Sequence[str] | str | None = None,
                    device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Unroll an LM over the long 1-D text ``ids[start:]`` in consecutive windows of ``window``
    tokens; returns ``{layer: float32 (n_windows, window, hidden)}`` with windows in text order.

    ``carry_state=True``: the text is split into ``n_streams`` contiguous streams run side by
    side; each stream starts from a zero state and carries the state from one window to the
    next, so only the first window of each stream starts cold. ``carry_state=False``: every
    window starts from a zero state. Either way window ``k`` covers tokens
    ``ids[start + k * window : start + (k + 1) * window]``. ``n_windows`` defaults to all that
    fit (rounded down to a multiple of ``n_streams`` when carrying state).
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
    device = torch.device(device)
    was = model.training
    model.eval()
    try:
        if not carry_state:
            return _capture_lm(model, wins, names, 512, device)
        if n_windows % n_streams:
            raise ValueError(f"n_windows={n_windows} must be a multiple of n_streams="
                             f"{n_streams} when carry_state=True")
        per = n_windows // n_streams
        grid = wins.view(n_streams, per, window).to(device)  # stream s holds windows s*per ...
        state = None
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        for k in range(per):
            outs, state = model.forward_layers(grid[:, k], state)
            for name in names:
                parts[name].append(outs[name].float().cpu())
        out = {}
        for name in names:
            a = torch.stack(parts[name], dim=1)  # (n_streams, per, window, hidden)
            out[name] = np.ascontiguousarray(a.reshape(n_windows, window, -1).numpy(),
                                             dtype=np.float32)
        return out
    finally:
        model.train(was)


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
