"""Chapter: compare your own model (no claim of the paper; a worked comparison of a model that
the library did not define).

Two copies of a small residual CNN (:class:`TinyResNet`, plain ``torch.nn``, trained here by
a plain torch loop, :func:`train_net`) that differ only in their seed are compared layer by
layer on Fashion-MNIST test images with the library's generic tools:

* :func:`cca_lib.capture.capture` records named modules of the model (``"stem"``,
  ``"block1"``, ``"block2"``, ``"fc"``) in each of its modes: ``"mean"`` (each channel averaged
  over space, one row per image), ``"positions"`` (one row per image position),
  ``"flatten"`` (every channel and position a feature) and ``"raw"`` maps for
  :func:`cca_lib.fourier_cca`;
* the sampling floor of each comparison comes from :func:`cca_lib.stats.permutation_null`
  (whole images permuted in ``"positions"`` mode) and, in closed form for independent rows,
  :func:`cca_lib.stats.expected_null`; a sweep over the number of probe images shows the
  measures against ``n / d``;
* PWCCA in both directions and symmetrized, against linear CKA and RBF CKA
  (:func:`cca_lib.rbf_cka_matrix`), for every layer of one net against every layer of the other;
* a large layer streamed through :class:`cca_lib.Accumulator` (positions mode over many
  images, and the ``"flatten"`` comparison of the last block) and through
  :func:`cca_lib.compare_models`, with the streamed results set beside the in-memory ones.

:func:`check` returns sanity criteria (what must hold for the comparison to mean anything:
the nets learned their task, the streamed results equal the in-memory ones, the Fourier
comparison stays within the full one), not a verdict on a claim.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cca_lib import _checks, analysis, compare, compare_models, fourier_cca, plotting, stats
from cca_lib._validation import FewSamplesWarning
from cca_lib.capture import capture, input_index
from cca_lib.claims import Criterion
from cca_lib.experiments._params import (
    BATCH,
    EPOCHS,
    IMAGES,
    POSITIVE,
    SAMPLES,
    SEED,
    ChapterConfig,
    param,
    rule,
)
from cca_lib.fourier import FourierCCAResult
from cca_lib.kernel_cka import rbf_cka_matrix
from cca_lib.streaming import Accumulator

# ---------------------------------------------------------------------------------------------
# The model: a small residual CNN, written as any torch user would (nothing of cca_lib in it)
# ---------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a projected shortcut (stride ``stride``)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A stride-2 stem (``width`` channels, 14x14 on 28x28 inputs), two residual blocks
    (``2 * width`` channels at 7x7, ``4 * width`` at 4x4), global average pooling and a linear
    classifier."""

    def __init__(self, width: int = 8, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = ResidualBlock(width, 2 * width, 2)
        self.block2 = ResidualBlock(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.block1(self.stem(x)))
        return self.fc(self.pool(h).flatten(1))


#: The modules compared (names from ``model.named_modules()``), input to output.
LAYERS = ("stem", "block1", "block2", "fc")
#: The conv layers among them (4-D outputs: the capture modes apply).
CONV_LAYERS = ("stem", "block1", "block2")
#: The measures of the chapter's tables, in order (keys of :func:`cca_lib.compare`).
MEASURES = ("mean CCA", "PWCCA (symmetric)", "linear CKA")
#: The capture modes compared for conv layers; "Fourier" is fourier_cca on mode="raw".
MODES = ("mean", "positions", "flatten", "Fourier")
#: Test images used for the nets' accuracy.
EVAL_SIZE = 2000
#: Images per batch in the streaming section (and compare_models' batch_size).
STREAM_BATCH = 250


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Compare-your-own-model parameters. Defaults are the quick profile."""

    dataset: str = param("fashion-mnist", '"fashion-mnist" (offline mirror) or "cifar-10" (a '
                         "170 MB download)", "not in the paper", check=IMAGES)
    width: int = param(8, "channels of the stem of TinyResNet (its blocks have 2w and 4w)",
                       "not in the paper", check=rule(_checks.integer, ge=1, le=256))
    train_size: int = param(6000, "training images, the first ones of the training split",
                            "not in the paper", check=SAMPLES)
    epochs: float = param(4.0, "training epochs, SGD + momentum with a cosine schedule",
                          "not in the paper", check=EPOCHS)
    batch_size: int = param(128, "training minibatch size", "not in the paper", check=BATCH)
    lr: float = param(0.05, "peak SGD learning rate (cosine schedule)", "not in the paper",
                      check=POSITIVE)
    probe_size: int = param(1000, "probe images (the first ones of the test split): every "
                            "in-memory comparison", "not in the paper", check=SAMPLES)
    stream_size: int = param(5000, "images streamed through the accumulators (the first ones "
                             "of the test split, the probe images among them)",
                             "not in the paper", check=SAMPLES)
    sweep_ratios: tuple[int, ...] = param(
        (3, 6, 12, 24), "the floor sweep compares block2 (mean mode) on the first n probe "
        "images, n each of these times its channels (4w)", "not in the paper",
        check=rule(_checks.ints, ge=3, le=_checks.MAX_SAMPLES, distinct=True))
    n_perm: int = param(50, "row (or image) permutations per sampling floor",
                        "not in the paper", check=rule(_checks.integer, ge=19,
                                                       le=_checks.MAX_COUNT))
    rbf_sigma_frac: float = param(0.4, "RBF CKA: bandwidth as a fraction of the median "
                                  "distance between probe images' activations",
                                  "not in the paper", check=POSITIVE)
    seed: int = param(0, "the two nets use seeds seed and seed + 1; also seeds the "
                      "permutations", "not in the paper", check=SEED)

    def _validate(self) -> None:
        if self.train_size < self.batch_size:
            raise ValueError(f"train_size must be >= batch_size={self.batch_size}, got "
                             f"{self.train_size!r}")
        if self.stream_size < self.probe_size:
            raise ValueError(f"stream_size must be >= probe_size={self.probe_size} (the probe "
                             f"images are the first streamed ones), got {self.stream_size!r}")
        if self.stream_size <= 2 * self.flatten_features:
            raise ValueError(
                f"stream_size must exceed twice block2's flattened features (2 x "
                f"{self.flatten_features}) for the flatten comparison, got {self.stream_size!r}")
        if self.probe_size <= 4 * self.d_last:
            raise ValueError(f"probe_size must exceed 4 x block2's {self.d_last} channels (Fourier "
                             f"CCA compares blocks of 2 x {self.d_last} features per net), got "
                             f"{self.probe_size!r}")
        big = [r for r in self.sweep_ratios if r * self.d_last > self.probe_size]
        if big:
            raise ValueError(f"sweep_ratios {big} x block2's {self.d_last} channels exceed "
                             f"probe_size={self.probe_size}")
        _checks.allocation("stream_size x block2's flattened features x 2",
                           2 * self.stream_size * self.flatten_features)
        _checks.allocation("probe_size x stem positions x stem channels",
                           self.probe_size * self.stem_side ** 2 * self.width)

    @property
    def channels(self) -> dict[str, int]:
        """Features per position of every compared layer (fc: its 10 class scores)."""
        return {"stem": self.width, "block1": 2 * self.width, "block2": 4 * self.width,
                "fc": 10}

    @property
    def stem_side(self) -> int:
        """Height (and width) of the stem's maps: 14 on 28x28 Fashion-MNIST, 16 on 32x32
        CIFAR-10 (block2's maps are 4x4 on both)."""
        from cca_lib import data

        return 16 if data.canonical_name(self.dataset) == "cifar-10" else 14

    @property
    def d_last(self) -> int:
        """Channels of block2."""
        return 4 * self.width

    @property
    def flatten_features(self) -> int:
        """block2's features in flatten mode: 4w channels x 4 x 4 positions."""
        return self.d_last * 16

    @property
    def probe_counts(self) -> tuple[int, ...]:
        """The sweep's numbers of probe images, then ``probe_size``."""
        counts = sorted(r * self.d_last for r in self.sweep_ratios)
        return tuple(c for c in counts if c < self.probe_size) + (self.probe_size,)


@dataclass(frozen=True)
class Result:
    """Everything the chapter shows."""

    config: Config
    #: the two trained nets (eval mode), seeds seed and seed + 1
    models: tuple[nn.Module, nn.Module]
    #: the probe images (first probe_size of the test split)
    probe: torch.Tensor
    #: one row per net: seed, test_acc, acc_at_80 (at 80% of the steps), trained
    nets: pd.DataFrame
    #: one row per conv layer, mode and measure: similarity of net 0's layer and net 1's same
    #: layer on the probe images, its floor (mean and 95% quantile of the permutation null),
    #: the p-value against it, inputs, rows and features; NaN where n <= d1 + d2
    modes: pd.DataFrame
    #: positions mode: the floor three ways per layer and measure (images shuffled, rows
    #: shuffled, the closed form with every row an independent sample)
    position_floors: pd.DataFrame
    #: block2 (mean mode) on the first n probe images: similarity, permutation floor (mean,
    #: 95% quantile), closed-form floor, p-value
    sweep: pd.DataFrame
    #: PWCCA of pairs of layers (net 0's, net 1's) with weights from either side
    directions: pd.DataFrame
    #: measure -> (L, L) similarity of net 0's layer i and net 1's layer j (mean mode)
    matrix: dict[str, np.ndarray]
    #: measure -> (L, L) closed-form floor of each cell, for the measures of MEASURES
    matrix_floor: dict[str, np.ndarray]
    #: positions mode, streamed: the measures after every batch of images
    running: pd.DataFrame
    #: per layer and measure: in memory on the probe, streamed on the probe (float64 batches),
    #: streamed over all images (Accumulator, and compare_models)
    streamed: pd.DataFrame
    #: block2 on all streamed images: flatten (compare_models) against Fourier on raw maps
    flatten: pd.DataFrame
    #: block2 in mean mode on the probe, float64, nets 0 and 1 (for the command line demo)
    example: tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Training (plain torch)
# ---------------------------------------------------------------------------------------------


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(images[i:i + 500]).argmax(1) == labels[i:i + 500]).sum())
                      for i in range(0, len(labels), 500))
    model.train(was)
    return correct / len(labels)


def train_net(config: Config, seed: int, train, test) -> tuple[nn.Module, dict[str, float]]:
    """One :class:`TinyResNet` trained with SGD (momentum 0.9, weight decay 5e-4, cosine
    schedule from ``config.lr``) on ``train`` (an ImageDataset), seeded by ``seed`` (weights
    and batch order). Returns the net in eval mode and its test accuracy on ``test`` at 80% of
    the steps and at the end."""
    with torch.random.fork_rng(devices=[]):  # seeded weights; torch's global state untouched
        torch.manual_seed(seed)
        model = TinyResNet(config.width, train.images.shape[1], train.num_classes)
    n = len(train)
    per_epoch = n // config.batch_size
    steps = max(1, round(config.epochs * per_epoch))
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    at_80 = round(0.8 * steps)
    acc_80 = float("nan")
    model.train()
    step = 0
    while step < steps:
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == at_80:
                acc_80 = _accuracy(model, test.images, test.labels)
            if step == steps:
                break
    model.eval()
    return model, {"acc_at_80": acc_80, "test_acc": _accuracy(model, test.images, test.labels)}


# ---------------------------------------------------------------------------------------------
# The comparisons
# ---------------------------------------------------------------------------------------------


def _f64(acts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in acts.items()}


def _null(x, y, measure, config: Config, salt: int, groups=None):
    return stats.permutation_null(x, y, measure, n_perm=config.n_perm,
                                  seed=config.seed * 1000 + salt, groups=groups,
                                  allow_few_samples=True)


def fourier_floor(n: int, result: FourierCCAResult) -> float:
    """Closed-form floor of a :func:`cca_lib.fourier_cca` mean: each frequency block's
    :func:`cca_lib.stats.expected_null` (for blocks of its size, ``n`` inputs), averaged with
    the block's number of coefficients as its weight (the mean is over all coefficients)."""
    sizes = [r.size for r in result.rho_by_frequency]
    return float(np.average([stats.expected_null(n, k, k) for k in sizes], weights=sizes))


def _mode_rows(config: Config, acts: list[dict[str, dict[str, np.ndarray]]]) -> tuple[list,
                                                                                      list]:
    """Similarity of each conv layer of net 0 and net 1 in each mode, with its floor."""
    n = config.probe_size
    rows, floors = [], []
    for li, layer in enumerate(CONV_LAYERS):
        for mode in MODES:
            key = "raw" if mode == "Fourier" else mode
            x, y = acts[0][key][layer], acts[1][key][layer]
            feats = int(np.prod(x.shape[1:])) if mode != "Fourier" else 2 * x.shape[1]
            base = {"layer": layer, "mode": mode, "inputs": n, "rows": int(x.shape[0]),
                    "features": feats}
            if mode == "Fourier":
                four = fourier_cca(x, y)
                floor = fourier_floor(n, four)
                rows.append({**base, "measure": "mean CCA", "similarity": four.mean,
                             "floor": floor, "floor_high": np.nan, "p_value": np.nan,
                             "floor_kind": "closed form"})
                continue
            if x.shape[0] <= 2 * feats:  # n <= d1 + d2: every canonical correlation is 1
                rows.extend({**base, "measure": m, "similarity": np.nan, "floor": np.nan,
                             "floor_high": np.nan, "p_value": np.nan,
                             "floor_kind": "n <= d1 + d2"} for m in MEASURES)
                continue
            groups = input_index(x, n) if mode == "positions" else None
            for mi, m in enumerate(MEASURES):
                res = _null(x, y, m, config, 100 * li + 10 * mi + MODES.index(mode),
                            groups=groups)
                rows.append({**base, "measure": m, **_from_null(res),
                             "floor_kind": "images shuffled" if groups is not None else
                             "rows shuffled"})
                if mode == "positions":
                    floors.append({"layer": layer, "measure": m, "similarity": res.statistic,
                                   "images shuffled": res.floor,
                                   "closed form (rows independent)": stats.expected_null(
                                       x.shape[0], x.shape[1], y.shape[1], measure=m)})
    return rows, floors


def _from_null(res) -> dict[str, float]:
    return {"similarity": res.statistic, "floor": res.floor,
            "floor_high": float(np.quantile(res.null, 0.95)), "p_value": res.p_value}


def _sweep_rows(config: Config, x: np.ndarray, y: np.ndarray) -> list[dict]:
    rows = []
    for n in config.probe_counts:
        for mi, m in enumerate(MEASURES):
            with warnings.catch_warnings():
                # below 5 samples per feature (the sweep's smallest n): the point of the sweep
                warnings.simplefilter("ignore", FewSamplesWarning)
                res = _null(x[:n], y[:n], m, config, 700 + 10 * config.probe_counts.index(n) + mi)
            rows.append({"n": n, "n / d": n / x.shape[1], "measure": m, **_from_null(res),
                         "closed form": stats.expected_null(n, x.shape[1], y.shape[1],
                                                            measure=m)})
    return rows


def _layer_pairs(config: Config, mean_a: dict, mean_b: dict) -> tuple[list, dict, dict]:
    """Every layer of net 0 against every layer of net 1 (mean mode): PWCCA with weights from
    either side, and the matrices of the measures with their closed-form floors."""
    n_l = len(LAYERS)
    matrix = {m: np.full((n_l, n_l), np.nan) for m in (*MEASURES, "RBF CKA")}
    floor = {m: np.full((n_l, n_l), np.nan) for m in MEASURES}
    rows = []
    for i, la in enumerate(LAYERS):
        for j, lb in enumerate(LAYERS):
            v = compare(mean_a[la], mean_b[lb])
            d0, d1 = mean_a[la].shape[1], mean_b[lb].shape[1]
            for m in MEASURES:
                matrix[m][i, j] = v[m]
                floor[m][i, j] = stats.expected_null(config.probe_size, d0, d1, measure=m)
            rows.append({"layer of net 0": la, "layer of net 1": lb, "d0": d0, "d1": d1,
                         "PWCCA (weights from net 0)": v["PWCCA"],
                         "PWCCA (weights from net 1)": 2 * v["PWCCA (symmetric)"] - v["PWCCA"],
                         "PWCCA (symmetric)": v["PWCCA (symmetric)"]})
    rbf = rbf_cka_matrix([mean_a[k] for k in LAYERS] + [mean_b[k] for k in LAYERS],
                         sigma_frac=config.rbf_sigma_frac)
    matrix["RBF CKA"] = rbf[:n_l, n_l:].copy()
    return rows, matrix, floor


def _stream(config: Config, models, images: torch.Tensor) -> tuple[list, list]:
    """Positions mode of every conv layer, STREAM_BATCH images at a time: one Accumulator per
    layer over the probe images and one over the rest, merged; the probe's batches are kept
    to compare with the in-memory results."""
    probe_acc = {k: None for k in CONV_LAYERS}
    rest_acc = {k: None for k in CONV_LAYERS}
    kept = {k: ([], []) for k in CONV_LAYERS}
    running = []
    seen = 0
    # batches of STREAM_BATCH images, the probe images (the first ones) in batches of their own
    starts = [*range(0, config.probe_size, STREAM_BATCH),
              *range(config.probe_size, config.stream_size, STREAM_BATCH)]
    for start in starts:
        stop = min(start + STREAM_BATCH,
                   config.probe_size if start < config.probe_size else config.stream_size)
        batch = images[start:stop]
        xa = _f64(capture(models[0], batch, CONV_LAYERS, mode="positions"))
        xb = _f64(capture(models[1], batch, CONV_LAYERS, mode="positions"))
        seen += batch.shape[0]
        in_probe = start < config.probe_size
        for k in CONV_LAYERS:
            accs = probe_acc if in_probe else rest_acc
            if accs[k] is None:
                accs[k] = Accumulator(xa[k].shape[1], xb[k].shape[1])
            accs[k].update(xa[k], xb[k])
            if in_probe:
                kept[k][0].append(xa[k])
                kept[k][1].append(xb[k])
            total = Accumulator(xa[k].shape[1], xb[k].shape[1]).merge(probe_acc[k])
            if rest_acc[k] is not None:
                total.merge(rest_acc[k])
            v = total.compare()
            running.extend({"images": seen, "rows": total.n_samples, "layer": k, "measure": m,
                            "similarity": v[m]} for m in MEASURES)
    one_call = compare_models(models[0], models[1], images[:config.stream_size],
                              list(CONV_LAYERS), mode="positions", batch_size=STREAM_BATCH)
    rows = []
    for k in CONV_LAYERS:
        memory = compare(np.concatenate(kept[k][0]), np.concatenate(kept[k][1]))
        streamed = probe_acc[k].compare()
        merged = Accumulator(probe_acc[k].d1, probe_acc[k].d2).merge(probe_acc[k])
        if rest_acc[k] is not None:
            merged.merge(rest_acc[k])
        whole = merged.compare()
        models_v = one_call[(k, k)].compare()
        d1, d2 = probe_acc[k].d1, probe_acc[k].d2
        for m in MEASURES:
            rows.append({"layer": k, "measure": m, "in memory (probe)": memory[m],
                         "streamed (probe)": streamed[m],
                         "streamed (all images)": whole[m],
                         "compare_models (all images)": models_v[m],
                         "rows (all images)": merged.n_samples,
                         "stored activations (MB)": merged.n_samples * (d1 + d2) * 8 / 1e6,
                         "accumulator (MB)": _accumulator_mb(d1, d2)})
    return running, rows


def _accumulator_mb(d1: int, d2: int) -> float:
    """Float64 memory of the accumulator's co-moment matrix ``(d1 + d2)^2`` (its other sums are
    vectors), in MB."""
    return (d1 + d2) ** 2 * 8 / 1e6


def _flatten_rows(config: Config, models, images: torch.Tensor) -> list[dict]:
    """block2 on all streamed images: the flatten comparison streamed by compare_models, and
    fourier_cca on the raw maps."""
    acc = compare_models(models[0], models[1], images, ["block2"], mode="flatten",
                         batch_size=STREAM_BATCH)[("block2", "block2")]
    full = acc.compare()
    top_full = float(acc.cca().rho[0])
    raw = [np.asarray(capture(m, images, ["block2"], mode="raw")["block2"], dtype=np.float64)
           for m in models]
    four = fourier_cca(raw[0], raw[1])
    n, d = acc.n_samples, acc.d1
    rows = [{"comparison": "flatten (compare_models)", "measure": m, "similarity": full[m],
             "closed-form floor": stats.expected_null(n, d, d, measure=m)} for m in MEASURES]
    rows.append({"comparison": "Fourier (raw maps)", "measure": "mean CCA",
                 "similarity": four.mean, "closed-form floor": fourier_floor(n, four)})
    rows.append({"comparison": "flatten (compare_models)", "measure": "largest coefficient",
                 "similarity": top_full, "closed-form floor": np.nan})
    rows.append({"comparison": "Fourier (raw maps)", "measure": "largest coefficient",
                 "similarity": float(four.rho[0]), "closed-form floor": np.nan})
    for r in rows:
        r.update({"images": n, "features": d})
    return rows


def run(config: Config = Config(), *, progress: bool = True) -> Result:
    """Train the two nets, capture their layers in every mode, compare them."""
    from cca_lib import data
    from cca_lib._progress import bar as tqdm_bar

    train = data.load_images(config.dataset, "train", config.train_size, progress=False)
    test = data.load_images(config.dataset, "test", max(EVAL_SIZE, config.stream_size),
                            progress=False)
    if len(test) < max(EVAL_SIZE, config.stream_size) or len(train) < config.train_size:
        raise ValueError(f"{config.dataset} has {len(train)} training and {len(test)} test "
                         f"images; train_size={config.train_size} and stream_size="
                         f"{config.stream_size} (and {EVAL_SIZE} test images for accuracy) "
                         "must fit")
    evaluate = test.head(EVAL_SIZE)
    models, nets = [], []
    for s in tqdm_bar([config.seed, config.seed + 1], desc="training", progress=progress):
        model, acc = train_net(config, s, train, evaluate)
        models.append(model)
        nets.append({"seed": s, **acc})
    nets_df = pd.DataFrame(nets)
    nets_df["trained"] = ((nets_df["test_acc"] - nets_df["acc_at_80"]).abs()
                          < analysis.TRAINED_ACC_CHANGE)
    images = test.images[:config.stream_size]
    probe = images[:config.probe_size]
    acts = [{mode: (_f64(capture(m, probe, LAYERS, mode=mode)) if mode != "flatten" else
                    _f64(capture(m, probe, CONV_LAYERS, mode=mode)))
             for mode in ("mean", "positions", "flatten", "raw")} for m in models]
    mode_rows, floor_rows = _mode_rows(config, acts)
    sweep = _sweep_rows(config, acts[0]["mean"]["block2"], acts[1]["mean"]["block2"])
    directions, matrix, matrix_floor = _layer_pairs(config, acts[0]["mean"], acts[1]["mean"])
    running, streamed = _stream(config, models, images)
    flatten = _flatten_rows(config, models, images)
    return Result(config=config, models=(models[0], models[1]), probe=probe, nets=nets_df,
                  modes=pd.DataFrame(mode_rows), position_floors=pd.DataFrame(floor_rows),
                  sweep=pd.DataFrame(sweep), directions=pd.DataFrame(directions),
                  matrix=matrix, matrix_floor=matrix_floor, running=pd.DataFrame(running),
                  streamed=pd.DataFrame(streamed), flatten=pd.DataFrame(flatten),
                  example=(acts[0]["mean"]["block2"], acts[1]["mean"]["block2"]))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

MEASURE_COLORS = {"mean CCA": plotting.MEASURE_COLORS["mean CCA"],
                  "PWCCA (symmetric)": plotting.MEASURE_COLORS["PWCCA"],
                  "linear CKA": plotting.MEASURE_COLORS["linear CKA"], "RBF CKA": "#000000"}


def _legend_panel(ax: plt.Axes, handles: list, labels: list[str], title: str = "") -> None:
    """Use the spare panel of a 2 x 2 grid for the figure's legend (the panels stay clear)."""
    ax.axis("off")
    ax.legend(handles, labels, loc="center", title=title or None, frameon=False)


def plot_modes(result: Result) -> plt.Figure:
    """One panel per conv layer: the similarity of net 0's layer and net 1's in each capture
    mode and measure (bars) on the probe images, with each comparison's floor (black ticks);
    a mode where ``n <= d1 + d2`` is marked instead of drawn. Two panels to a row, the legend
    in the fourth."""
    modes = result.modes
    fig, axes = plotting.grid(len(CONV_LAYERS) + 1, ncols=2, panel=(3.45, 3.0))
    width = 0.26
    for ax, layer in zip(axes, CONV_LAYERS, strict=False):
        g = modes[modes["layer"] == layer]
        for mi, m in enumerate(MEASURES):
            for xi, mode in enumerate(MODES):
                row = g[(g["mode"] == mode) & (g["measure"] == m)]
                if row.empty:
                    continue
                x = xi + (mi - 1) * width
                v, f = float(row["similarity"].iloc[0]), float(row["floor"].iloc[0])
                if np.isnan(v):
                    if mi == 1:
                        ax.text(xi, 0.05, "n <= d1 + d2:\nnot computable", ha="center",
                                va="bottom", fontsize="x-small", rotation=90)
                    continue
                ax.bar(x, v, width, color=MEASURE_COLORS[m], label=m)
                ax.plot([x - width / 2, x + width / 2], [f, f], color="black", lw=2,
                        label="floor")
        feats = {mode: int(g[g["mode"] == mode]["features"].iloc[0]) for mode in MODES}
        rows = {mode: int(g[g["mode"] == mode]["rows"].iloc[0]) for mode in MODES}
        ax.set_xticks(range(len(MODES)),
                      [f"{mode}\n{rows[mode]}\nx {feats[mode]}" if mode != "Fourier" else
                       f"Fourier\nblocks\nof {feats[mode]}" for mode in MODES],
                      fontsize="x-small")
        ax.set_title(f"{layer} ({result.config.channels[layer]} channels)", fontsize="small")
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="y", labelsize="small")
        ax.set_ylabel("net 0 vs net 1", fontsize="small")
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    _legend_panel(axes[-1], list(unique.values()), list(unique),
                  "net 0 vs net 1, same layer;\nunder the bars: rows x features")
    return fig


def plot_floor_sweep(result: Result) -> plt.Figure:
    """block2 in mean mode on the first n probe images, one panel per measure: the similarity
    of the two nets, the permutation floor (mean, and up to its 95% quantile, shaded) and the
    closed-form floor for independent isotropic data, against n / d. Two panels to a row, the
    legend in the fourth."""
    sweep = result.sweep
    fig, axes = plotting.grid(len(MEASURES) + 1, ncols=2, panel=(3.45, 2.7))
    for ax, m in zip(axes, MEASURES, strict=False):
        g = sweep[sweep["measure"] == m]
        ax.plot(g["n / d"], g["similarity"], marker="o", color=MEASURE_COLORS[m],
                label="net 0 vs net 1 (colour: measure)")
        ax.plot(g["n / d"], g["floor"], marker="s", color="black", label="permutation floor")
        ax.fill_between(g["n / d"], g["floor"], g["floor_high"], color="black", alpha=0.2,
                        label="floor to its 95% quantile")
        ax.plot(g["n / d"], g["closed form"], ls="--", color="#ff7f0e",
                label="closed form (isotropic)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(g["n / d"]), [f"{r:.0f}" if r >= 10 else f"{r:g}"
                                         for r in g["n / d"]], fontsize="x-small")
        ax.minorticks_off()
        ax.tick_params(axis="y", labelsize="small")
        ax.set_title(m, fontsize="small")
        ax.set_xlabel(f"n / d  (d = {result.config.d_last} channels)", fontsize="small")
        ax.set_ylabel("similarity", fontsize="small")
        ax.set_ylim(0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_panel(axes[-1], handles, labels, "block2, mean mode")
    return fig


def plot_directions(result: Result, label_gap: float = 0.03) -> plt.Figure:
    """PWCCA with weights from net 0's layer (x) against weights from net 1's layer (y), for
    every pair of layers; pairs of equal width are filled, the diagonal is symmetry, and pairs
    whose two directions differ by more than ``label_gap`` are labelled."""
    d = result.directions
    fig, ax = plt.subplots(figsize=(5.6, 5.2), constrained_layout=True)
    same = d["d0"] == d["d1"]
    for mask, label, face in ((same, "equal widths", MEASURE_COLORS["PWCCA (symmetric)"]),
                              (~same, "different widths", "white")):
        ax.scatter(d.loc[mask, "PWCCA (weights from net 0)"],
                   d.loc[mask, "PWCCA (weights from net 1)"], s=45, facecolor=face,
                   edgecolor=MEASURE_COLORS["PWCCA (symmetric)"], label=label, zorder=3)
    for _, r in d.iterrows():
        if abs(r["PWCCA (weights from net 0)"] - r["PWCCA (weights from net 1)"]) <= label_gap:
            continue
        ax.annotate(f"{r['layer of net 0']}-{r['layer of net 1']}",
                    (r["PWCCA (weights from net 0)"], r["PWCCA (weights from net 1)"]),
                    fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    lo = float(min(d["PWCCA (weights from net 0)"].min(),
                   d["PWCCA (weights from net 1)"].min())) - 0.03
    ax.plot([lo, 1], [lo, 1], ls=":", color="black", lw=1)
    ax.set(xlim=(lo, 1), ylim=(lo, 1), xlabel="PWCCA, weights from net 0's layer",
           ylabel="PWCCA, weights from net 1's layer")
    ax.set_title("PWCCA's two directions\n(labels: net 0's layer - net 1's)", fontsize="medium")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_matrix(result: Result) -> plt.Figure:
    """Every layer of net 0 (rows) against every layer of net 1 (columns), mean mode on the
    probe images, one panel per measure (two to a row), one colour scale for all; a dot marks
    each row's most similar layer."""
    measures = ("PWCCA (symmetric)", "linear CKA", "RBF CKA")
    fig, axes = plotting.grid(len(measures) + 1, ncols=2, panel=(3.45, 3.1))
    for ax, m in zip(axes, measures, strict=False):
        s = result.matrix[m]
        im = ax.imshow(s, cmap="magma", vmin=0, vmax=1)
        best = s.argmax(axis=1)
        ax.scatter(best, range(len(LAYERS)), s=30, c="#2ca02c", edgecolors="white")
        for i in range(len(LAYERS)):
            for j in range(len(LAYERS)):
                ax.text(j, i + 0.3, f"{s[i, j]:.2f}", ha="center", fontsize="x-small",
                        color="white" if s[i, j] < 0.6 else "black")
        ax.set_xticks(range(len(LAYERS)), LAYERS, fontsize="x-small")
        ax.set_yticks(range(len(LAYERS)), LAYERS, fontsize="x-small")
        ax.set_title(m, fontsize="small")
        ax.set_xlabel("layer of net 1", fontsize="small")
        ax.set_ylabel("layer of net 0", fontsize="small")
        ax.grid(False)
    axes[-1].axis("off")
    bar = fig.colorbar(im, ax=axes[-1], location="left", fraction=0.12, shrink=0.9)
    bar.set_label("similarity", fontsize="small")
    bar.ax.tick_params(labelsize="x-small")
    return fig


def plot_streaming(result: Result) -> plt.Figure:
    """Positions mode, streamed: each measure after every batch of images (one panel per conv
    layer, two to a row), with the in-memory value on the probe images (diamonds), the probe's
    end (dotted) and each measure's floor on the probe images with whole images shuffled
    (dashed); the legend in the fourth panel."""
    run = result.running
    fig, axes = plotting.grid(len(CONV_LAYERS) + 1, ncols=2, panel=(3.45, 2.7))
    mem = result.streamed
    pf = result.position_floors
    for ax, layer in zip(axes, CONV_LAYERS, strict=False):
        for m in MEASURES:
            g = run[(run["layer"] == layer) & (run["measure"] == m)]
            ax.plot(g["images"], g["similarity"], color=MEASURE_COLORS[m], label=m)
            v = mem[(mem["layer"] == layer) & (mem["measure"] == m)]["in memory (probe)"]
            ax.scatter([result.config.probe_size], v, marker="D", color=MEASURE_COLORS[m],
                       edgecolor="black", zorder=3)
            floor = pf[(pf["layer"] == layer) & (pf["measure"] == m)]["images shuffled"]
            ax.axhline(float(floor.iloc[0]), ls="--", lw=1, color=MEASURE_COLORS[m],
                       label=f"{m}: floor")
        ax.axvline(result.config.probe_size, ls=":", color="black", lw=1)
        rows = int(run[run["layer"] == layer]["rows"].max())
        ax.set_title(f"{layer}: {rows} rows at the end", fontsize="small")
        ax.set_xlabel("images streamed", fontsize="small")
        ax.set_ylabel("net 0 vs net 1", fontsize="small")
        ax.tick_params(labelsize="small")
        ax.set_ylim(0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_panel(axes[-1], handles, labels, "positions mode, streamed")
    return fig


# ---------------------------------------------------------------------------------------------
# Sanity criteria (this chapter tests no claim of the paper)
# ---------------------------------------------------------------------------------------------

#: The nets must have learned their task for their layers to be worth comparing: test
#: accuracy at least this (chance is 0.1 on ten classes).
MIN_TEST_ACC = 0.5
#: Streaming float64 batches through an Accumulator is exact: it agrees with the in-memory
#: functions on the same rows up to rounding (about 1e-13).
STREAM_TOL = 1e-10
#: compare_models feeds the models' float32 outputs, multiplied in float32 within a batch and
#: summed in float64: it agrees with the float64 stream up to float32 rounding (relative
#: 1e-7 per product, amplified by the whitening).
FLOAT32_TOL = 1e-4


def check(result: Result) -> tuple[Criterion, ...]:
    """What must hold for the chapter's comparisons to mean anything (no paper claim is
    tested): both nets reach ``MIN_TEST_ACC``; the streamed results on the probe equal the
    in-memory ones within ``STREAM_TOL``; compare_models equals the float64 stream within
    ``FLOAT32_TOL``; the largest Fourier coefficient does not exceed the largest flatten
    coefficient by more than ``FLOAT32_TOL`` (each Fourier coefficient is a correlation of
    linear combinations of the same units, which the full CCA maximizes). Reported beside
    them, deciding nothing: how many nets met the trained rule, and block2's p-value against
    its floor in mean mode."""
    s, f = result.streamed, result.flatten
    low_acc = float(result.nets["test_acc"].min())
    exact = float((s["in memory (probe)"] - s["streamed (probe)"]).abs().max())
    single = float((s["streamed (all images)"] - s["compare_models (all images)"]).abs().max())
    top = f[f["measure"] == "largest coefficient"].set_index("comparison")["similarity"]
    excess = float(top["Fourier (raw maps)"] - top["flatten (compare_models)"])
    n_trained = int(result.nets["trained"].sum())
    m = result.modes
    p = m[(m["layer"] == "block2") & (m["mode"] == "mean")].set_index("measure")["p_value"]
    return (
        Criterion("lowest test accuracy of the two nets", f"at least {MIN_TEST_ACC:g}",
                  low_acc, bool(low_acc >= MIN_TEST_ACC)),
        Criterion("largest |streamed - in memory|, probe images, every layer and measure",
                  f"below {STREAM_TOL:g}", exact, bool(exact < STREAM_TOL)),
        Criterion("largest |compare_models - float64 stream|, all streamed images",
                  f"below {FLOAT32_TOL:g}", single, bool(single < FLOAT32_TOL)),
        Criterion("Fourier's largest coefficient minus flatten's (block2, all streamed images)",
                  f"at most {FLOAT32_TOL:g}", excess, bool(excess <= FLOAT32_TOL)),
        Criterion("nets whose last 20% of training changed test accuracy by less than "
                  f"{100 * analysis.TRAINED_ACC_CHANGE:g} points", "reported only",
                  f"{n_trained} of {len(result.nets)}", None),
        Criterion("block2, mean mode: permutation p-value of PWCCA (symmetric) against its "
                  "floor", "reported only", float(p["PWCCA (symmetric)"]), None),
    )
