"""Plan a profile without training it: the networks each chapter trains and what they cost.

``python -m cca_lib.book --profile paper --plan`` (or :func:`plan`) reads each chapter's
parameters of the profile, builds its ``Config`` (so an invalid profile fails here, before any
training), lists the training runs the chapter asks for (without loading any data: the step
counts use the datasets' standard sizes, :data:`IMAGE_DATASETS` and :data:`TEXT_CORPORA`) and
estimates their cost on this machine's device:

1. every run's multiply-accumulates per training sample (per image, or per token) are counted
   on a model built on torch's ``meta`` device (CNNs) or from the layer sizes (LSTMs), so even
   the widest nets cost nothing to count;
2. one reference run per chapter (the median-cost one, or the cheapest) is timed for a few real
   training steps (forward, loss, backward, optimizer step) on synthetic inputs of the right
   shape, on ``device`` (default: CUDA when available);
3. each run's estimate is its steps x samples per step x its MACs per sample, at the reference
   run's measured rate.

Only training steps are counted (evaluation, capture and the distances come on top), and the
rate of one net stands for its chapter's others, so read the estimate as an order of magnitude.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cca_lib import models, training

__all__ = ["IMAGE_DATASETS", "TEXT_CORPORA", "ChapterPlan", "format_plan", "networks", "plan",
           "sample_macs", "train_steps"]

#: Image datasets: (input shape (C, H, W), training images, classes).
IMAGE_DATASETS: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "fashion-mnist": ((1, 28, 28), 60_000, 10),
    "cifar-10": ((3, 32, 32), 50_000, 10),
}
#: Text corpora: (training tokens, vocabulary size) of the standard splits as cca_lib reads them.
TEXT_CORPORA: dict[str, tuple[int, int]] = {
    "ptb": (929_589, 10_000),
    "wikitext-2": (2_088_628, 33_278),
    "tinyshakespeare": (1_003_854, 65),
}


def networks(name: str, module: Any, config: Any) -> list[training.TrainConfig]:
    """The training runs chapter ``name`` (its module and ``Config``) asks for, in order; none
    for a chapter that trains nothing or reuses another chapter's run."""
    if name == "width":
        return [config.train_config(w, config.seed + s) for w in config.widths
                for s in range(config.n_seeds)]
    if name == "learning_rate":
        return config.train_configs()
    if name == "memorization":
        return [config.train_config(labels, i) for labels in ("true", "random")
                for i in range(config.n_nets)]
    if name == "cnn_dynamics":
        return [config._base_config(seed) for seed in config.seeds]
    if name == "rnn_dynamics":
        return [module.lm_config(config, seed=seed) for seed in module.seeds(config)]
    return []


def train_steps(cfg: training.TrainConfig) -> int:
    """Training steps ``T`` of ``cfg`` on the standard size of its dataset (as
    :func:`cca_lib.training.total_steps` counts them, without loading the data; a run that
    stops early takes fewer)."""
    if cfg.steps is not None:
        return cfg.steps
    if isinstance(cfg, training.CNNTrainConfig):
        n = IMAGE_DATASETS[cfg.dataset][1]
        n = n if cfg.train_size is None else min(n, cfg.train_size)
        per_epoch = n // cfg.batch_size
    else:
        tokens = TEXT_CORPORA[cfg.corpus][0]
        tokens = tokens if cfg.train_tokens is None else min(tokens, cfg.train_tokens)
        per_epoch = ((tokens - 1) // cfg.seq_len) // cfg.batch_size
    return max(1, math.ceil(cfg.epochs * max(per_epoch, 1)))


def _build(cfg: training.TrainConfig) -> nn.Module:
    if isinstance(cfg, training.CNNTrainConfig):
        shape, _, classes = IMAGE_DATASETS[cfg.dataset]
        return models.make_cnn(cfg.width, arch=cfg.arch, depth=cfg.depth, in_channels=shape[0],
                               num_classes=classes)
    return models.LSTMLM(TEXT_CORPORA[cfg.corpus][1], embed_dim=cfg.embed_dim,
                         hidden_size=cfg.hidden_size, n_layers=cfg.n_layers,
                         dropout=cfg.dropout, tie_weights=cfg.tie_weights)


def sample_macs(cfg: training.TrainConfig) -> float:
    """Multiply-accumulates of one forward pass per training sample: per image for a CNN
    (convolutions and linear layers, counted on a ``meta``-device model), per token for an LSTM
    language model (its gates and the decoder)."""
    if isinstance(cfg, training.LMTrainConfig):
        vocab = TEXT_CORPORA[cfg.corpus][1]
        sizes = [cfg.hidden_size] * cfg.n_layers
        if cfg.tie_weights:
            sizes[-1] = cfg.embed_dim
        macs, prev = 0.0, cfg.embed_dim
        for h in sizes:
            macs += 4 * h * (prev + h)
            prev = h
        return macs + prev * vocab
    total = 0.0

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += out.numel() * k * module.in_channels // module.groups
        else:
            total += out.numel() * module.in_features

    shape = IMAGE_DATASETS[cfg.dataset][0]
    with torch.device("meta"):
        model = _build(cfg)
        handles = [m.register_forward_hook(hook) for m in model.modules()
                   if isinstance(m, nn.Conv2d | nn.Linear)]
        model.eval()(torch.empty(1, *shape))
    for h in handles:
        h.remove()
    return total


def _samples_per_step(cfg: training.TrainConfig, batch: int | None = None) -> int:
    b = cfg.batch_size if batch is None else batch
    return b * cfg.seq_len if isinstance(cfg, training.LMTrainConfig) else b


def _time_steps(cfg: training.TrainConfig, device: torch.device, budget_s: float,
                batch: int | None) -> tuple[float, int]:
    """Seconds per training step of ``cfg``'s model on synthetic inputs (one warm-up step,
    then steps until ``budget_s`` is spent, at least one, at most 50), and the batch used."""
    b = cfg.batch_size if batch is None else min(batch, cfg.batch_size)
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(0)
        model = _build(cfg).to(device).train()
        opt = training._optimizer(cfg, model.parameters())
        if isinstance(cfg, training.CNNTrainConfig):
            shape, _, classes = IMAGE_DATASETS[cfg.dataset]
            x = torch.randn(b, *shape, device=device)
            y = torch.randint(0, classes, (b,), device=device)

            def loss_fn() -> torch.Tensor:
                return F.cross_entropy(model(x), y)
        else:
            vocab = TEXT_CORPORA[cfg.corpus][1]
            ids = torch.randint(0, vocab, (b, cfg.seq_len + 1), device=device)

            def loss_fn() -> torch.Tensor:
                out, _ = model(ids[:, :-1])
                return F.cross_entropy(out.reshape(-1, vocab), ids[:, 1:].reshape(-1))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()  # warm-up (allocations, kernel selection)
        n, start = 0, time.perf_counter()
        while n < 1 or (time.perf_counter() - start < budget_s and n < 50):
            step()
            n += 1
        return (time.perf_counter() - start) / n, b


@dataclass(frozen=True)
class ChapterPlan:
    """One chapter of a plan: its runs, the timed reference and the estimate."""

    chapter: str
    networks: int
    models: str  #: the layouts trained, e.g. "cnn paper w=16..448"
    steps: tuple[int, int]  #: fewest and most training steps of a run
    reference: str  #: the timed run, its batch and seconds per step ("" if nothing trains)
    seconds: float  #: estimated training time of all the runs on this device

    def row(self) -> dict[str, Any]:
        lo, hi = self.steps
        return {"chapter": self.chapter, "networks": self.networks, "models": self.models,
                "steps per net": f"{lo}" if lo == hi else f"{lo}..{hi}",
                "timed": self.reference, "estimate": _duration(self.seconds)}


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _describe(cfgs: Sequence[training.TrainConfig]) -> str:
    parts = []
    cnn = [c for c in cfgs if isinstance(c, training.CNNTrainConfig)]
    for arch in dict.fromkeys(c.arch for c in cnn):
        widths = sorted({c.width for c in cnn if c.arch == arch})
        w = f"{widths[0]}" if len(widths) == 1 else f"{widths[0]}..{widths[-1]}"
        parts.append(f"cnn {arch} w={w} ({cnn[0].optimizer}, batch {cnn[0].batch_size})")
    for c in dict.fromkeys((c.corpus, c.n_layers, c.hidden_size, c.embed_dim) for c in cfgs
                           if isinstance(c, training.LMTrainConfig)):
        parts.append(f"lstm {c[1]}x{c[2]} emb {c[3]} on {c[0]}")
    return "; ".join(parts)


def plan(root: Path, profile: str, *, chapters: Sequence[str] | None = None,
         budget_s: float = 3.0, device: str = "auto", reference: str = "median",
         timing_batch: int | None = None) -> list[ChapterPlan]:
    """The plan of ``profile`` for the chapters of ``root``'s ``_toc.yml`` (or ``chapters``).

    ``budget_s``: seconds of timed steps per chapter (at least one step is timed);
    ``reference``: ``"median"`` (the run of median cost per sample) or ``"cheapest"``;
    ``timing_batch``: time at most this batch (None: each run's own), to keep the timing short
    for very large nets (the per-sample rate of a small batch is lower, so the estimate errs
    high). See the module doc."""
    from cca_lib.book.chapters import chapter_module, load_params, toc_chapters

    if reference not in ("median", "cheapest"):
        raise ValueError(f"reference must be 'median' or 'cheapest', got {reference!r}")
    if not (isinstance(budget_s, int | float) and budget_s >= 0):
        raise ValueError(f"budget_s must be a number >= 0, got {budget_s!r}")
    dev = training.resolve_device(device)
    names = list(chapters) if chapters else toc_chapters(root / "_toc.yml")
    out = []
    for name in names:
        module = chapter_module(name)
        if module is None or not hasattr(module, "Config"):
            continue
        config = module.Config.from_params(load_params(root, profile, name))
        cfgs = networks(name, module, config)
        if not cfgs:
            out.append(ChapterPlan(name, 0, "", (0, 0), "", 0.0))
            continue
        steps = [train_steps(c) for c in cfgs]
        macs = [sample_macs(c) for c in cfgs]
        order = sorted(range(len(cfgs)), key=lambda i: macs[i])
        ref = order[len(order) // 2] if reference == "median" else order[0]
        per_step, batch = _time_steps(cfgs[ref], dev, budget_s, timing_batch)
        rate = _samples_per_step(cfgs[ref], batch) * macs[ref] / per_step  # MACs per second
        seconds = sum(s * _samples_per_step(c) * m / rate
                      for c, s, m in zip(cfgs, steps, macs, strict=True))
        label = _describe([cfgs[ref]]).split(" (")[0]
        out.append(ChapterPlan(name, len(cfgs), _describe(cfgs), (min(steps), max(steps)),
                               f"{label}, batch {batch}: {per_step:.3g} s/step on {dev.type}",
                               seconds))
    return out


def format_plan(rows: Sequence[ChapterPlan], profile: str) -> str:
    """The plan as a text table with a total line."""
    import pandas as pd

    frame = pd.DataFrame([r.row() for r in rows])
    total = sum(r.seconds for r in rows)
    nets = sum(r.networks for r in rows)
    plural = "" if nets == 1 else "s"
    return (f"profile {profile!r}: {nets} network{plural} to train, about {_duration(total)} "
            f"of training steps on this device (evaluation, capture and distances not included)\n"
            + frame.to_string(index=False))
