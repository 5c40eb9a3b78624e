"""Training with checkpoints: CNN classifiers and LSTM language models, cached by config.

``train(config, *, progress=True, cache=True) -> TrainResult`` takes a :class:`CNNTrainConfig`
or an :class:`LMTrainConfig` (frozen dataclasses; everything that changes the weights is part
of the cache key, see :func:`run_key` and :mod:`cca_lib.cache`). It

* seeds the initial weights with ``seed`` and the minibatch order (and dropout) with
  ``data_seed`` (``None``: same as ``seed``), inside a forked RNG so the caller's RNG state is
  untouched;
* saves checkpoints (state dicts) at step 0, at the steps in ``checkpoints``, at
  ``log_checkpoints`` log-spaced steps plus ``T/2`` (see :func:`checkpoint_steps`), and at the
  final step ``T``;
* records a history (``TrainResult.history``, a pandas DataFrame, one row per evaluation) of
  train loss/accuracy (running means since the previous row) and test loss/accuracy (CNN, on the
  first ``eval_size`` test images) or validation loss/perplexity (LM);
* runs on CUDA when available (``device="auto"``), else CPU, optionally under bfloat16 autocast;
* reports non-convergence in ``TrainResult.converged`` / ``.reason`` instead of returning a bad
  net silently: a non-finite loss (training stops there), a train loss that stays near chance
  (CNN: above 0.9 ln C), a train accuracy below ``target_train_acc`` (memorisation), an LM no
  better on validation text than a unigram model, or above ``target_valid_ppl``;
* optionally stops a CNN early, at the first epoch end where that epoch's running train
  accuracy reaches ``stop_at_train_acc`` ("train until memorised"; use a constant LR).

A step is one minibatch. CNN: an epoch is ``train_size // batch_size`` steps over a fresh
permutation of the first ``train_size`` training images (last partial batch dropped). LM: the
training stream is cut into ``seq_len`` windows at a random offset each epoch, visited in random
order, ``batch_size`` windows per step, each starting from a zero state (truncated BPTT of
``seq_len`` steps); validation carries the state along ``eval_streams`` parallel streams.

On CPU the same config, thread count and torch version give bit-identical weights. A cached
run whose result or checkpoint files cannot be read is deleted and retrained, also when the
checkpoint is read later (by :meth:`TrainResult.state_dict`, :meth:`TrainResult.load`).
"""

from __future__ import annotations

import abc
import contextlib
import io
import json
import math
import pickle
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cca_lib import _checks
from cca_lib import cache as _cache
from cca_lib import data as _data
from cca_lib.models import LSTMLM, make_cnn

__all__ = ["CNNTrainConfig", "LMTrainConfig", "TrainResult", "checkpoint_steps",
           "resolve_device", "run_key", "total_steps", "train", "train_many",
           "training_threads"]

_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = ("constant", "cosine", "half_cosine")
#: Fields not keyed as given: :func:`run_key` keys what they resolve to (the device type, the
#: thread count used) instead, so ``device="auto"`` and ``"cpu"`` share a CPU run.
_NON_KEY_FIELDS = ("device", "threads")
#: What ``torch.load`` raises on a checkpoint file it cannot read.
_CKPT_ERRORS = (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError)
RUNS_KIND = "runs"


def _check(cfg: Any, name: str, validator, **bounds) -> None:
    """Validate field ``name`` of the frozen ``cfg`` (storing the checked value)."""
    value = getattr(cfg, name)
    checked = validator(name, value, **bounds)
    if checked is not value:
        object.__setattr__(cfg, name, checked)


def _check_common(cfg: Any) -> None:
    _check(cfg, "optimizer", _checks.text, choices=_OPTIMIZERS)
    _check(cfg, "schedule", _checks.text, choices=_SCHEDULES)
    _check(cfg, "seed", _checks.seed)
    _check(cfg, "data_seed", _checks.seed, none=True)
    _check(cfg, "lr", _checks.real, gt=0)
    _check(cfg, "momentum", _checks.real, ge=0)
    _check(cfg, "weight_decay", _checks.real, ge=0)
    _check(cfg, "final_lr_frac", _checks.real, ge=0, le=1)
    _check(cfg, "batch_size", _checks.integer, ge=1, le=_checks.MAX_SAMPLES)
    _check(cfg, "epochs", _checks.real, gt=0, le=_checks.MAX_EPOCHS)
    _check(cfg, "steps", _checks.integer, ge=1, le=_checks.MAX_SAMPLES, none=True)
    object.__setattr__(cfg, "checkpoints", _checks.ints("checkpoints", cfg.checkpoints,
                                                        min_len=0, ge=0))
    _check(cfg, "log_checkpoints", _checks.integer, ge=0, le=_checks.MAX_COUNT)
    _check(cfg, "eval_every", _checks.integer, ge=1, le=_checks.MAX_SAMPLES, none=True)
    _check(cfg, "threads", _checks.integer, ge=1, le=4096, none=True)
    _check(cfg, "bf16", _checks.boolean)
    _check(cfg, "device", _checks.text)
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {cfg.device!r}")


@dataclass(frozen=True)
class CNNTrainConfig:
    """Train one CNN (:func:`cca_lib.models.make_cnn`) on an image dataset.

    Defaults: the small 4-layer CNN of width 16, trained by SGD (lr 0.05, momentum 0.9, weight
    decay 5e-4, cosine decay to 0) in minibatches of 128 for 3 epochs on the first 20,000
    Fashion-MNIST training images; the history is evaluated on the first 2,000 test images.
    """

    dataset: str = "fashion-mnist"  #: "fashion-mnist" or "cifar-10"
    width: int = 16  #: channels of conv1 (make_cnn's width multiplier)
    arch: str = "small"  #: "small" (4 conv layers) or "paper" (11)
    depth: int | None = None  #: conv layers for arch="small" (None: 4)
    train_size: int | None = 20_000  #: train on the first train_size images (None: all)
    label_seed: int | None = None  #: set: train on data.random_labels(..., seed=label_seed)
    seed: int = 0  #: initial weights
    data_seed: int | None = None  #: minibatch order (None: same as seed)
    optimizer: str = "sgd"  #: "sgd" (with momentum), "adam" or "adamw"
    lr: float = 0.05
    momentum: float = 0.9  #: SGD only
    weight_decay: float = 5e-4
    #: "cosine" (to lr * final_lr_frac at T), "half_cosine" (to it at T/2, then constant) or
    #: "constant"
    schedule: str = "cosine"
    final_lr_frac: float = 0.0
    batch_size: int = 128
    epochs: float = 3.0  #: used when steps is None
    steps: int | None = None  #: total steps T (overrides epochs)
    checkpoints: tuple[int, ...] = ()  #: extra steps to checkpoint (0 and T always are)
    log_checkpoints: int = 0  #: add this many log-spaced steps plus T/2
    eval_every: int | None = None  #: history rows every k steps (also at checkpoints, epochs)
    eval_size: int | None = 2000  #: test images for the history (None: all)
    target_train_acc: float | None = None  #: converged only if final train accuracy >= this
    #: stop early at the first epoch end whose running train accuracy over that epoch is >= this
    #: (e.g. 1.0 to "train until memorised" with a constant LR); the stop step is checkpointed
    stop_at_train_acc: float | None = None
    bf16: bool = False  #: bfloat16 autocast
    channels_last: bool = True  #: NHWC memory format (faster on CPU)
    device: str = "auto"  #: "auto" (CUDA if available), "cpu", "cuda" (keyed as its type)
    threads: int | None = None  #: torch threads during training (None: torch's current count)

    def __post_init__(self) -> None:
        _check_common(self)
        _check(self, "width", _checks.integer, ge=1, le=_checks.MAX_UNITS)
        _check(self, "arch", _checks.text)
        _check(self, "depth", _checks.integer, ge=1, le=64, none=True)
        _check(self, "dataset", _checks.dataset, kind="images")
        object.__setattr__(self, "dataset", _data.canonical_name(self.dataset))
        _check(self, "train_size", _checks.integer, ge=1, le=_checks.MAX_SAMPLES, none=True)
        if self.train_size is not None and self.train_size < self.batch_size:
            raise ValueError(f"train_size must be an int >= batch_size={self.batch_size} or "
                             f"None, got {self.train_size!r}")
        _check(self, "label_seed", _checks.seed, none=True)
        _check(self, "eval_size", _checks.integer, ge=1, le=_checks.MAX_SAMPLES, none=True)
        for arg in ("target_train_acc", "stop_at_train_acc"):
            _check(self, arg, _checks.real, gt=0, le=1, none=True)
        _check(self, "channels_last", _checks.boolean)


@dataclass(frozen=True)
class LMTrainConfig:
    """Train one LSTM language model (:class:`cca_lib.models.LSTMLM`) on a text corpus.

    Defaults: a character-level model of Tiny Shakespeare (3 LSTM layers of 128 units,
    embedding 64, no dropout), trained by Adam (lr 2e-3, cosine decay to 0, gradient norm
    clipped to 1) on minibatches of 64 windows of 64 characters for one epoch; the history is
    evaluated on the first 32,768 validation characters.
    """

    corpus: str = "tinyshakespeare"  #: "tinyshakespeare", "ptb" or "wikitext-2"
    embed_dim: int = 64
    hidden_size: int = 128
    n_layers: int = 3
    dropout: float = 0.0
    tie_weights: bool = False
    seed: int = 0  #: initial weights
    data_seed: int | None = None  #: window order and dropout (None: same as seed)
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0  #: SGD only
    weight_decay: float = 0.0
    schedule: str = "cosine"
    final_lr_frac: float = 0.0
    batch_size: int = 64  #: windows per step
    seq_len: int = 64  #: tokens per window (BPTT length)
    epochs: float = 1.0
    steps: int | None = None
    train_tokens: int | None = None  #: train on the first train_tokens tokens (None: all)
    grad_clip: float | None = 1.0  #: max gradient norm (None: no clipping)
    checkpoints: tuple[int, ...] = ()
    log_checkpoints: int = 0
    eval_every: int | None = None
    eval_tokens: int | None = 32_768  #: validation tokens for the history (None: all)
    eval_streams: int = 16  #: parallel validation streams (state carried along each)
    target_valid_ppl: float | None = None  #: converged only if final validation ppl <= this
    bf16: bool = False
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        _check(self, "corpus", _checks.dataset, kind="text")
        object.__setattr__(self, "corpus", _data.canonical_name(self.corpus))
        for arg in ("embed_dim", "hidden_size"):
            _check(self, arg, _checks.integer, ge=1, le=_checks.MAX_UNITS)
        _check(self, "n_layers", _checks.integer, ge=1, le=64)
        _check(self, "seq_len", _checks.integer, ge=1, le=_checks.MAX_SAMPLES)
        _check(self, "eval_streams", _checks.integer, ge=1, le=_checks.MAX_SAMPLES)
        _check(self, "dropout", _checks.real, ge=0, lt=1)
        _check(self, "tie_weights", _checks.boolean)
        _check(self, "grad_clip", _checks.real, gt=0, none=True)
        for arg in ("train_tokens", "eval_tokens"):
            _check(self, arg, _checks.integer, ge=2, le=10**10, none=True)
        _check(self, "target_valid_ppl", _checks.real, gt=0, none=True)


TrainConfig = CNNTrainConfig | LMTrainConfig


def checkpoint_steps(total: int, n_log: int = 8, *, include_zero: bool = True,
                     extra: Iterable[int] = ()) -> tuple[int, ...]:
    """Sorted unique checkpoint steps: ``n_log`` log-spaced steps in ``[1, total]``, ``total // 2``
    and ``total`` (and 0 if ``include_zero``), plus ``extra``."""
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be a positive int, got {total!r}")
    if not isinstance(n_log, int) or n_log < 0:
        raise ValueError(f"n_log must be an int >= 0, got {n_log!r}")
    steps = {total}
    if n_log:
        steps |= {int(round(s)) for s in np.geomspace(1, total, n_log)}
        steps.add(max(1, total // 2))
    if include_zero:
        steps.add(0)
    steps |= {int(s) for s in extra if 0 <= int(s) <= total}
    return tuple(sorted(steps))


def _cnn_steps_per_epoch(n_train: int, cfg: CNNTrainConfig) -> int:
    return n_train // cfg.batch_size


def _lm_steps_per_epoch(n_tokens: int, cfg: LMTrainConfig) -> int:
    n_windows = (n_tokens - 1) // cfg.seq_len
    per_epoch = n_windows // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"{n_tokens} training tokens give {n_windows} windows of "
                         f"seq_len={cfg.seq_len}, fewer than batch_size={cfg.batch_size}")
    return per_epoch


def _total(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return cfg.steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))


def total_steps(config: TrainConfig, *, progress: bool = False) -> int:
    """The number of training steps ``T`` of ``config`` (its last checkpoint unless training
    stops early): ``steps`` if set, else ``ceil(epochs * steps per epoch)``, counted on the data
    as :func:`train` counts them (so the training data is loaded if ``steps`` is None)."""
    if not isinstance(config, CNNTrainConfig | LMTrainConfig):
        raise TypeError(f"config must be a CNNTrainConfig or LMTrainConfig, got "
                        f"{type(config).__name__}")
    if config.steps is not None:
        return config.steps
    if isinstance(config, CNNTrainConfig):
        n_train = len(_cnn_train_set(config, progress))
        return _total(config, _cnn_steps_per_epoch(n_train, config))
    train_ids = _lm_train_ids(config, _data.load_text(config.corpus, progress=progress))
    return _total(config, _lm_steps_per_epoch(len(train_ids), config))


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def training_threads(config: TrainConfig) -> int:
    """The torch thread count :func:`train` uses for ``config``: ``config.threads``, or when it
    is None the process's current count (``torch.get_num_threads()``, which follows
    ``OMP_NUM_THREADS``)."""
    return torch.get_num_threads() if config.threads is None else config.threads


def run_key(config: TrainConfig) -> str:
    """Cache key of a training config: every field, except that ``device`` and ``threads`` are
    keyed by what they resolve to, the device type (``"cpu"``/``"cuda"``) and the thread count
    used (:func:`training_threads`), plus the torch version. Each of these changes the trained
    bits (reductions are split by thread and differ between CPU and CUDA kernels and between
    torch releases), so runs differing in any of them are cached apart."""
    payload: dict[str, Any] = {"__class__": type(config).__name__}
    payload.update({f.name: getattr(config, f.name) for f in fields(config)
                    if f.name not in _NON_KEY_FIELDS})
    payload["__env__"] = {"device_type": resolve_device(config.device).type,
                          "threads": training_threads(config), "torch": str(torch.__version__)}
    return _cache.config_key(payload, kind=RUNS_KIND)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


def _ckpt_name(step: int) -> str:
    return f"step_{step:08d}.pt"


@dataclass(eq=False)
class TrainResult:
    """What :func:`train` returns.

    ``steps``: checkpointed steps (0 and the final step included, unless training stopped
    early); ``history``: DataFrame, one row per evaluation; ``metrics``: final numbers (CNN:
    ``train_loss``/``train_acc`` over the whole training subset in eval mode, with the labels
    it was trained on, and ``test_loss``/``test_acc`` on the full test split; LM:
    ``valid_loss``/``valid_ppl``/``valid_acc`` on the whole validation split); ``converged`` and
    ``reason`` (empty when converged); ``seconds`` of training (of the original run when loaded
    from the cache); ``path``: the cache entry folder (None if not cached).
    """

    config: TrainConfig
    key: str
    steps: tuple[int, ...]
    history: pd.DataFrame
    metrics: dict[str, float]
    converged: bool
    reason: str
    seconds: float
    model_kwargs: dict[str, Any]
    path: Path | None = None
    from_cache: bool = False
    _blobs: dict[int, bytes] = field(default_factory=dict, repr=False)

    @property
    def final_step(self) -> int:
        return self.steps[-1]

    def state_dict(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """The state dict saved at ``step`` (None: the final step), tensors on CPU.

        A cached checkpoint file that cannot be loaded (it matched its manifest but was broken
        when written) makes the run's cache entry count as corrupted: it is deleted with a
        ``RuntimeWarning``, the run is retrained into the cache (deterministically, as its key
        holds everything the weights depend on), and the checkpoint is read from the new entry.
        """
        step = self.final_step if step is None else step
        if step not in self.steps:
            raise ValueError(f"no checkpoint at step={step!r}; available: {self.steps}")
        if step in self._blobs:
            buf = io.BytesIO(self._blobs[step])
            return torch.load(buf, map_location="cpu", weights_only=True)
        assert self.path is not None
        try:
            return _read_checkpoint(self.path / _ckpt_name(step))
        except _CKPT_ERRORS as err:
            self._rebuild(f"{_ckpt_name(step)} cannot be loaded: {type(err).__name__}: {err}")
        if step not in self.steps:  # cannot happen for a deterministic run; never guess
            raise RuntimeError(f"the retrained run {self.key} has no checkpoint at step={step}")
        return _read_checkpoint(self.path / _ckpt_name(step))

    def _rebuild(self, problem: str) -> None:
        """Delete this run's broken cache entry and retrain it into the cache (unless another
        process did so meanwhile), then point this result at the new entry."""
        assert self.path is not None
        with _cache.build_lock(RUNS_KIND, self.key):
            existed = self.path.is_dir()
            path = _cache.open_entry(RUNS_KIND, self.key)  # warns if its manifest disagrees
            if path is not None and not _entry_checkpoints_load(path, self.steps):
                _cache.discard_entry(path, problem, stacklevel=3)
            elif path is None and not existed:
                warnings.warn(f"cache entry {self.path} is gone ({problem}); retraining",
                              RuntimeWarning, stacklevel=3)
            # else: another process rebuilt it meanwhile, and the next line loads its entry
            fresh = _train_cached(self.config, self.key, progress=True)
        for name in ("steps", "history", "metrics", "converged", "reason", "seconds",
                     "model_kwargs", "path", "from_cache"):
            setattr(self, name, getattr(fresh, name))

    def build_model(self) -> nn.Module:
        """A freshly initialised model of this run's architecture (CPU)."""
        if isinstance(self.config, CNNTrainConfig):
            return make_cnn(**self.model_kwargs)
        return LSTMLM(**self.model_kwargs)

    def load(self, step: int | None = None, *, device: str | torch.device = "cpu") -> nn.Module:
        """The model at checkpoint ``step`` (None: final), in eval mode on ``device``."""
        model = self.build_model()
        model.load_state_dict(self.state_dict(step))
        return model.to(device).eval()

    def summary(self) -> dict[str, Any]:
        """One flat dict (for a sweep's DataFrame): key config fields, metrics, convergence."""
        cfg = {k: v for k, v in asdict(self.config).items()
               if k not in _NON_KEY_FIELDS and not isinstance(v, tuple)}
        return {**cfg, **self.metrics, "converged": self.converged, "reason": self.reason,
                "seconds": self.seconds, "key": self.key}


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    return state


def _entry_checkpoints_load(path: Path, steps: Sequence[int]) -> bool:
    try:
        for step in steps:
            _read_checkpoint(path / _ckpt_name(step))
    except _CKPT_ERRORS:
        return False
    return True


def _save_result(result: TrainResult) -> Path:
    def writer(folder: Path) -> None:
        for step in result.steps:
            (folder / _ckpt_name(step)).write_bytes(result._blobs[step])
        doc = {"history": result.history.to_dict(orient="list"), "metrics": result.metrics,
               "converged": result.converged, "reason": result.reason,
               "seconds": result.seconds, "model_kwargs": result.model_kwargs,
               "steps": list(result.steps), "config": _cache.canonical(result.config)}
        (folder / "result.json").write_text(json.dumps(doc, indent=1))

    return _cache.write_entry(RUNS_KIND, result.key, writer,
                              meta={"config": result.config, "converged": result.converged})


def _load_result(config: TrainConfig, key: str, path: Path) -> TrainResult:
    doc = json.loads((path / "result.json").read_text())
    return TrainResult(config=config, key=key, steps=tuple(doc["steps"]),
                       history=pd.DataFrame(doc["history"]), metrics=doc["metrics"],
                       converged=doc["converged"], reason=doc["reason"], seconds=doc["seconds"],
                       model_kwargs=doc["model_kwargs"], path=path, from_cache=True)


# ---------------------------------------------------------------------------------------------
# Training loops
# ---------------------------------------------------------------------------------------------


def _state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def _lr_lambda(cfg: TrainConfig, total: int):
    if cfg.schedule == "constant":
        return lambda step: 1.0
    f = cfg.final_lr_frac
    if cfg.schedule == "half_cosine":  # cosine to f over the first half of the steps, then f
        half = total / 2
        return lambda step: f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(step / half, 1)))
    return lambda step: f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _autocast(cfg: TrainConfig, device: torch.device):
    if not cfg.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _schedule_points(cfg: TrainConfig, total: int, steps_per_epoch: int
                     ) -> tuple[set[int], set[int]]:
    ckpts = set(checkpoint_steps(total, cfg.log_checkpoints, extra=cfg.checkpoints))
    bad = [s for s in cfg.checkpoints if s > total]
    if bad:
        raise ValueError(f"checkpoints {bad} lie beyond the last step T={total}")
    evals = set(ckpts) | set(range(steps_per_epoch, total + 1, steps_per_epoch))
    if cfg.eval_every:
        evals |= set(range(0, total + 1, cfg.eval_every))
    return ckpts, evals


def _bar(total: int, desc: str, progress: bool):
    from cca_lib._progress import bar as tqdm_bar

    return tqdm_bar(total=total, desc=desc, progress=progress, leave=False, unit="step")


class _Run(abc.ABC):
    """One model kind's part of a training run; :func:`_fit` is the loop all kinds share.

    The constructor loads the data and sets ``steps_per_epoch``, ``model_kwargs`` and ``desc``
    (the progress bar's label). :func:`_fit` seeds the weights and calls :meth:`build`, then at
    each epoch start :meth:`new_epoch` with the minibatch generator, and each step
    :meth:`forward` (the gradient norm is then clipped to ``grad_clip`` unless it is None);
    :meth:`evaluate` gives each history row's held-out columns. At the end the metrics are
    ``steps``, then :meth:`fixed_metrics`, then, unless the loss became non-finite,
    :meth:`final_metrics`; the run has converged if :meth:`problems` finds none.
    """

    cfg: TrainConfig
    device: torch.device
    steps_per_epoch: int
    model_kwargs: dict[str, Any]
    desc: str
    model: nn.Module
    grad_clip: float | None = None

    @abc.abstractmethod
    def build(self) -> nn.Module:
        """Create ``self.model`` on the device (the weight seed is set) and return it."""

    @abc.abstractmethod
    def new_epoch(self, gen: torch.Generator) -> None:
        """Draw this epoch's minibatch order from ``gen``."""

    @abc.abstractmethod
    def forward(self, pos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Minibatch ``pos`` of the epoch through the model: the mean loss, and the logits
        (one row per prediction) and targets it is counted on."""

    @abc.abstractmethod
    def evaluate(self, train_loss: float, train_acc: float) -> dict[str, float]:
        """A history row's columns after ``step``, ``epoch`` and ``lr``, given the running train
        loss and accuracy since the previous row (NaN at step 0)."""

    @abc.abstractmethod
    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of history ``row``."""

    def stops(self, pos: int, epoch_correct: int) -> bool:
        """Whether training stops after minibatch ``pos``, with ``epoch_correct`` right
        predictions so far this epoch (default: never)."""
        return False

    def fixed_metrics(self) -> dict[str, float]:
        """Metrics recorded even when training stopped at a non-finite loss (default: none)."""
        return {}

    @abc.abstractmethod
    def final_metrics(self, last: dict[str, float]) -> dict[str, float]:
        """The final model's metrics; ``last`` is the last history row."""

    @abc.abstractmethod
    def problems(self, metrics: dict[str, float], last: dict[str, float]) -> list[str]:
        """Why the run has not converged (empty: it has)."""


def _fit(run: _Run, progress: bool) -> TrainResult:
    """Train ``run``: checkpoints, history, a stop at a non-finite loss, the convergence
    verdict. Everything model-specific is asked of ``run``."""
    cfg, per_epoch = run.cfg, run.steps_per_epoch
    total = _total(cfg, per_epoch)
    ckpts, evals = _schedule_points(cfg, total, per_epoch)

    torch.manual_seed(cfg.seed)
    model = run.build()
    opt = _optimizer(cfg, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    gen = torch.Generator().manual_seed(data_seed)
    torch.manual_seed(data_seed)  # dropout masks

    blobs: dict[int, bytes] = {0: _state_bytes(model)}
    history: list[dict[str, float]] = []
    run_loss, run_correct, run_n = 0.0, 0, 0
    epoch_correct = 0
    reason = ""

    def record(step: int) -> None:
        nonlocal run_loss, run_correct, run_n
        train_loss = run_loss / run_n if run_n else math.nan
        train_acc = run_correct / run_n if run_n else math.nan
        history.append({"step": step, "epoch": step / per_epoch, "lr": lr_used,
                        **run.evaluate(train_loss, train_acc)})
        run_loss, run_correct, run_n = 0.0, 0, 0

    lr_used = opt.param_groups[0]["lr"]
    start = time.perf_counter()
    record(0)
    model.train()
    with _bar(total, run.desc, progress) as bar:
        for step in range(1, total + 1):
            pos = (step - 1) % per_epoch
            if pos == 0:
                run.new_epoch(gen)
                epoch_correct = 0
            loss, logits, targets = run.forward(pos)
            lr_used = opt.param_groups[0]["lr"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if run.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
            opt.step()
            sched.step()
            lval = loss.item()
            if not math.isfinite(lval):
                reason = f"loss became non-finite ({lval}) at step {step}; training stopped"
                break
            hits = (logits.argmax(1) == targets).sum().item()
            run_loss += lval * targets.numel()
            run_correct += hits
            run_n += targets.numel()
            epoch_correct += hits
            stop = run.stops(pos, epoch_correct)
            if step in ckpts or stop:
                blobs[step] = _state_bytes(model)
            if step in evals or stop:
                record(step)
                bar.set_postfix(**run.postfix(history[-1]), refresh=False)
            bar.update(1)
            if stop:
                break
    seconds = time.perf_counter() - start

    metrics: dict[str, float] = {"steps": float(max(blobs)), **run.fixed_metrics()}
    if not reason:
        metrics.update(run.final_metrics(history[-1]))
        reason = "; ".join(run.problems(metrics, history[-1]))
    return TrainResult(config=cfg, key=run_key(cfg), steps=tuple(sorted(blobs)),
                       history=pd.DataFrame(history), metrics=metrics, converged=not reason,
                       reason=reason, seconds=seconds, model_kwargs=run.model_kwargs,
                       _blobs=blobs)


def _cnn_train_set(cfg: CNNTrainConfig, progress: bool) -> _data.ImageDataset:
    """The first ``train_size`` training images of ``cfg.dataset``, checked to be that many."""
    train_ds = _data.load_images(cfg.dataset, "train", cfg.train_size, progress=progress)
    if cfg.train_size is not None and len(train_ds) < cfg.train_size:
        raise ValueError(f"train_size={cfg.train_size} exceeds the {len(train_ds)} training "
                         f"images of {cfg.dataset}")
    return train_ds


@torch.no_grad()
def _eval_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: CNNTrainConfig,
              device: torch.device, batch: int = 1000) -> tuple[float, float]:
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch):
        xb = x[i:i + batch].to(device)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[i:i + batch].to(device)
        with _autocast(cfg, device):
            out = model(xb)
        out = out.float()
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    model.train(was)
    return loss_sum / len(y), correct / len(y)


class _CNNRun(_Run):
    """A CNN classifier: fresh permutations of the training images, test-set history, a stall
    check against chance (0.9 ln C) and the optional memorisation target and early stop."""

    def __init__(self, cfg: CNNTrainConfig, progress: bool) -> None:
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        train_ds = _cnn_train_set(cfg, progress)
        self.test_ds = _data.load_images(cfg.dataset, "test", progress=progress)
        self.x_train, self.y_train = train_ds.images, train_ds.labels
        if cfg.label_seed is not None:
            self.y_train = _data.random_labels(self.y_train, train_ds.num_classes,
                                               cfg.label_seed)
        n_eval = len(self.test_ds) if cfg.eval_size is None else min(cfg.eval_size,
                                                                     len(self.test_ds))
        self.x_eval, self.y_eval = self.test_ds.images[:n_eval], self.test_ds.labels[:n_eval]
        self.chance = math.log(train_ds.num_classes)
        self.steps_per_epoch = _cnn_steps_per_epoch(len(self.y_train), cfg)
        self.model_kwargs = {"width": cfg.width, "arch": cfg.arch, "depth": cfg.depth,
                             "in_channels": train_ds.shape[0],
                             "num_classes": train_ds.num_classes}
        self.desc = f"cnn w={cfg.width} seed={cfg.seed}"
        self.order = torch.empty(0, dtype=torch.int64)

    def build(self) -> nn.Module:
        model = make_cnn(**self.model_kwargs).to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        return model

    def new_epoch(self, gen: torch.Generator) -> None:
        self.order = torch.randperm(len(self.y_train), generator=gen)

    def forward(self, pos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, device = self.cfg, self.device
        idx = self.order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        xb, yb = self.x_train[idx].to(device), self.y_train[idx].to(device)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(cfg, device):
            out = self.model(xb)
        return F.cross_entropy(out.float(), yb), out, yb

    def evaluate(self, train_loss: float, train_acc: float) -> dict[str, float]:
        test_loss, test_acc = _eval_cnn(self.model, self.x_eval, self.y_eval, self.cfg,
                                        self.device)
        return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
                "test_acc": test_acc}

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{row['train_loss']:.3f}", "test_acc": f"{row['test_acc']:.3f}"}

    def stops(self, pos: int, epoch_correct: int) -> bool:
        cfg, per_epoch = self.cfg, self.steps_per_epoch
        return (cfg.stop_at_train_acc is not None and pos == per_epoch - 1
                and epoch_correct >= cfg.stop_at_train_acc * per_epoch * cfg.batch_size)

    def final_metrics(self, last: dict[str, float]) -> dict[str, float]:
        metrics = {}
        metrics["train_loss"], metrics["train_acc"] = _eval_cnn(
            self.model, self.x_train, self.y_train, self.cfg, self.device)
        metrics["test_loss"], metrics["test_acc"] = _eval_cnn(
            self.model, self.test_ds.images, self.test_ds.labels, self.cfg, self.device)
        return metrics

    def problems(self, metrics: dict[str, float], last: dict[str, float]) -> list[str]:
        problems = []
        if last["train_loss"] > 0.9 * self.chance:
            problems.append(f"train loss stalled at {last['train_loss']:.3f} (chance level "
                            f"ln C = {self.chance:.3f})")
        target = self.cfg.target_train_acc
        if target is not None and metrics["train_acc"] < target:
            problems.append(f"train accuracy {metrics['train_acc']:.4f} below target {target}")
        return problems


@torch.no_grad()
def evaluate_lm(model: LSTMLM, ids: torch.Tensor, *, seq_len: int = 64, n_streams: int = 16,
                device: torch.device | str = "cpu", bf16: bool = False
                ) -> tuple[float, float]:
    """Mean next-token cross-entropy (nats) and accuracy of ``model`` on the 1-D stream ``ids``,
    cut into ``n_streams`` parallel streams read in ``seq_len`` chunks with the state carried."""
    device = torch.device(device)
    was = model.training
    model.eval()
    n_streams = max(1, min(n_streams, (len(ids) - 1) // 2))
    streams = _data.batchify(ids, n_streams).to(device)
    state = None
    loss_sum, correct, count = 0.0, 0, 0
    for t in range(0, streams.shape[1] - 1, seq_len):
        x = streams[:, t:t + seq_len]
        y = streams[:, t + 1:t + 1 + seq_len]
        x = x[:, : y.shape[1]]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out, state = model(x, state)
        out = out.float().reshape(-1, out.shape[-1])
        loss_sum += F.cross_entropy(out, y.reshape(-1), reduction="sum").item()
        correct += (out.argmax(1) == y.reshape(-1)).sum().item()
        count += y.numel()
    model.train(was)
    return loss_sum / count, correct / count


def _unigram_loss(train: torch.Tensor, valid: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats) of ``valid`` under add-one-smoothed unigram counts of ``train``."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[valid].mean())


def _lm_train_ids(cfg: LMTrainConfig, corpus: _data.TextCorpus) -> torch.Tensor:
    """The first ``train_tokens`` tokens of the training split (all of it if None)."""
    return corpus.train if cfg.train_tokens is None else corpus.train[:cfg.train_tokens]


def _exp(x: float) -> float:
    """``math.exp(x)``, or infinity where that overflows."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _perplexity(loss: float) -> float:
    """``exp(loss)`` capped at ``exp(50)`` (NaN for NaN), as history rows record it."""
    return math.exp(min(loss, 50.0))


class _LMRun(_Run):
    """An LSTM language model: windows at a random offset in random order, gradient clipping,
    validation history, and a check against a unigram model and the optional ppl target."""

    def __init__(self, cfg: LMTrainConfig, progress: bool) -> None:
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.grad_clip = cfg.grad_clip
        corpus = _data.load_text(cfg.corpus, progress=progress)
        self.train_ids = _lm_train_ids(cfg, corpus)
        self.valid_ids = corpus.valid
        self.eval_ids = self.valid_ids if cfg.eval_tokens is None else \
            self.valid_ids[:cfg.eval_tokens]
        self.vocab_size = len(corpus.vocab)
        self.unigram = _unigram_loss(self.train_ids, self.valid_ids, self.vocab_size)
        self.steps_per_epoch = _lm_steps_per_epoch(len(self.train_ids), cfg)
        self.model_kwargs = {"vocab_size": self.vocab_size, "embed_dim": cfg.embed_dim,
                             "hidden_size": cfg.hidden_size, "n_layers": cfg.n_layers,
                             "dropout": cfg.dropout, "tie_weights": cfg.tie_weights}
        self.desc = f"lstm h={cfg.hidden_size} seed={cfg.seed}"
        self.starts = torch.empty(0, dtype=torch.int64)

    def build(self) -> nn.Module:
        self.model = LSTMLM(**self.model_kwargs).to(self.device)
        self.train_dev = self.train_ids.to(self.device)
        self.ar = torch.arange(self.cfg.seq_len + 1, device=self.device)
        return self.model

    def new_epoch(self, gen: torch.Generator) -> None:
        seq_len = self.cfg.seq_len
        offset = int(torch.randint(0, seq_len, (1,), generator=gen))
        n_here = (len(self.train_ids) - 1 - offset) // seq_len
        perm = torch.randperm(n_here, generator=gen)
        self.starts = (offset + perm * seq_len).to(self.device)

    def forward(self, pos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.cfg.batch_size
        batch_starts = self.starts[pos * batch:(pos + 1) * batch]
        chunk = self.train_dev[batch_starts[:, None] + self.ar]  # (B, seq_len + 1)
        x, y = chunk[:, :-1], chunk[:, 1:].reshape(-1)
        with _autocast(self.cfg, self.device):
            out, _ = self.model(x)
        out = out.float().reshape(-1, self.vocab_size)
        return F.cross_entropy(out, y), out, y

    def _evaluate_on(self, ids: torch.Tensor) -> tuple[float, float]:
        return evaluate_lm(self.model, ids, seq_len=self.cfg.seq_len,
                           n_streams=self.cfg.eval_streams, device=self.device,
                           bf16=self.cfg.bf16)

    def evaluate(self, train_loss: float, train_acc: float) -> dict[str, float]:
        vloss, vacc = self._evaluate_on(self.eval_ids)
        return {"train_loss": train_loss, "train_ppl": _perplexity(train_loss),
                "train_acc": train_acc, "valid_loss": vloss, "valid_ppl": _perplexity(vloss),
                "valid_acc": vacc}

    def postfix(self, row: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{row['train_loss']:.3f}", "val_ppl": f"{row['valid_ppl']:.1f}"}

    def fixed_metrics(self) -> dict[str, float]:
        return {"unigram_valid_loss": self.unigram, "unigram_valid_ppl": math.exp(self.unigram)}

    def final_metrics(self, last: dict[str, float]) -> dict[str, float]:
        vloss, vacc = self._evaluate_on(self.valid_ids)
        return {"valid_loss": vloss, "valid_ppl": _exp(vloss), "valid_acc": vacc,
                "train_loss": last["train_loss"]}

    def problems(self, metrics: dict[str, float], last: dict[str, float]) -> list[str]:
        problems = []
        vloss = metrics["valid_loss"]
        if not vloss < self.unigram - 0.01:  # also a NaN validation loss
            problems.append(f"validation loss {vloss:.3f} is no better than a unigram model "
                            f"({self.unigram:.3f}): the model has not learnt context")
        target = self.cfg.target_valid_ppl
        if target is not None and metrics["valid_ppl"] > target:
            problems.append(f"validation perplexity {metrics['valid_ppl']:.2f} above target "
                            f"{target}")
        return problems


def _train_cnn(cfg: CNNTrainConfig, progress: bool) -> TrainResult:
    return _fit(_CNNRun(cfg, progress), progress)


def _train_lm(cfg: LMTrainConfig, progress: bool) -> TrainResult:
    return _fit(_LMRun(cfg, progress), progress)


def train(config: TrainConfig, *, progress: bool = True, cache: bool = True) -> TrainResult:
    """Train ``config`` (a :class:`CNNTrainConfig` or :class:`LMTrainConfig`), or load the
    cached run with the same key. ``cache=False`` neither reads nor writes the cache (the
    checkpoints are then kept in memory). See the module doc for what is recorded."""
    if not isinstance(config, CNNTrainConfig | LMTrainConfig):
        raise TypeError(f"config must be a CNNTrainConfig or LMTrainConfig, got "
                        f"{type(config).__name__}")
    key = run_key(config)
    if not cache:
        return _train_now(config, progress)
    with _cache.build_lock(RUNS_KIND, key):  # a second process wants the same run: it waits
        return _train_cached(config, key, progress)


def _train_cached(config: TrainConfig, key: str, progress: bool) -> TrainResult:
    """Load run ``key`` from the cache, or train and cache it (the caller holds its lock)."""
    path = _cache.open_entry(RUNS_KIND, key)
    if path is not None:
        try:
            return _load_result(config, key, path)
        except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable despite manifest
            _cache.discard_entry(path, f"result.json cannot be read: {type(err).__name__}: "
                                       f"{err}", stacklevel=3)
    result = _train_now(config, progress)
    result.path = _save_result(result)
    return result


def _train_now(config: TrainConfig, progress: bool) -> TrainResult:
    device = resolve_device(config.device)
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork), _threads(config.threads):
        if isinstance(config, CNNTrainConfig):
            return _train_cnn(config, progress)
        return _train_lm(config, progress)


def train_many(configs: Sequence[TrainConfig], *, progress: bool = True, cache: bool = True,
               desc: str = "training") -> list[TrainResult]:
    """Train a sweep of configs in order (each cached), with one bar over the sweep."""
    from cca_lib._progress import bar as tqdm_bar

    configs = list(configs)
    out = []
    for cfg in tqdm_bar(configs, desc=desc, progress=progress, unit="net"):
        out.append(train(cfg, progress=progress, cache=cache))
    return out
