"""Models: a CNN family with a width multiplier, and a multi-layer LSTM language model.

Both expose their analysable layers by name (``layer_names``) and a ``forward_layers`` method
that returns every named layer's output, which :mod:`cca_lib.capture` records.

CNN (:class:`ConvNet`, built by :func:`make_cnn`): ``conv1 .. convK`` blocks of
conv 3x3 (no bias) -> batch norm -> ReLU, global average pooling, a linear ``logits`` layer. The
channel counts are ``width * multipliers[i]``:

* ``arch="small"`` (default; the quick profile): multipliers ``(1, 2, 2, 4)``, strides
  ``(2, 2, 1, 1)``; ``depth`` other than 4 truncates or extends the pattern with more
  stride-1 layers at ``4 * width`` channels.
* ``arch="paper"``: the paper's 11-layer net; at ``width=64`` it has 64, 64, 128, 128, 128, 256,
  256, 256, 512, 512, 512 filters, stride 2 at layers 3, 6 and 9.
* ``arch="resnet"`` (:class:`ResNet`): a CIFAR ResNet (He et al., 2016) for the training
  dynamics of the paper's Fig. 1: ``conv1`` (``width`` channels), then three stages of
  ``depth`` (default 3: ResNet-20) residual blocks ``block1 .. block{3 depth}`` at ``width``,
  ``2 width`` and ``4 width`` channels (stride 2 entering stages 2 and 3), global average
  pooling, ``logits``. At ``width=16`` it is the standard ResNet-(6 depth + 2).

LSTM LM (:class:`LSTMLM`): embedding -> ``lstm1 .. lstmK`` (separate single-layer ``nn.LSTM``
modules, so each layer's hidden states are visible) -> linear ``logits``; dropout on the
embedding, between layers and before the decoder; optional weight tying (then the last layer's
hidden size equals the embedding size, as in AWD-LSTM). :data:`LM_PRESETS` holds the sizes of
the paper's word-level models (awd-lstm-lm: 3 layers of 1150 units on 400-dim embeddings, and
the 5-layer variant); :func:`make_lm` builds one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CNN_ARCHS", "CNN_LAYOUTS", "LM_PRESETS", "ConvNet", "LSTMLM", "ResNet",
           "cnn_layer_widths", "cnn_layout", "make_cnn", "make_lm"]

#: Named CNN layouts: (channel multipliers, strides).
CNN_ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "small": ((1, 2, 2, 4), (2, 2, 1, 1)),
    "paper": ((1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8), (1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1)),
}


#: Every ``arch`` of :func:`make_cnn`.
CNN_LAYOUTS = (*CNN_ARCHS, "resnet")
#: Residual blocks per stage of ``arch="resnet"`` when ``depth`` is None (ResNet-20).
RESNET_BLOCKS = 3


def cnn_layout(arch: str = "small", depth: int | None = None
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Channel multipliers and strides of a named layout, optionally at another ``depth``.

    ``depth`` (``arch="small"`` only) keeps the first ``depth`` layers of
    ``(1, 2, 2, 4, 4, 4, ...)`` with strides ``(2, 2, 1, 1, ...)``.
    """
    if arch not in CNN_ARCHS:
        raise ValueError(f"arch must be one of {sorted(CNN_ARCHS)}, got {arch!r}")
    mult, strides = CNN_ARCHS[arch]
    if depth is None or depth == len(mult):
        return mult, strides
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    if arch != "small":
        raise ValueError(f"depth={depth} is only supported for arch='small' "
                         f"(arch={arch!r} has {len(mult)} layers)")
    mult = (mult + (4,) * depth)[:depth]
    strides = (strides + (1,) * depth)[:depth]
    return mult, strides


def cnn_layer_widths(width: int = 16, *, arch: str = "small", depth: int | None = None,
                     num_classes: int = 10) -> dict[str, int]:
    """Features of each named layer of ``make_cnn(width, arch=arch, depth=depth,
    num_classes=num_classes)``, without building it: ``{"conv1": channels, ...,
    "convK": channels, "logits": num_classes}`` (the same as :meth:`ConvNet.layer_widths`)."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if arch == "resnet":
        n = _resnet_blocks(depth)
        return {"conv1": width, **{f"block{i + 1}": width * 2 ** (i // n) for i in range(3 * n)},
                "logits": num_classes}
    mult, _ = cnn_layout(arch, depth)
    return {**{f"conv{i}": width * m for i, m in enumerate(mult, start=1)},
            "logits": num_classes}


def _resnet_blocks(depth: int | None) -> int:
    if depth is None:
        return RESNET_BLOCKS
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth (residual blocks per stage) must be a positive int or None, "
                         f"got {depth!r}")
    return depth


class ConvNet(nn.Module):
    """A plain CNN with named layers ``conv1 .. convK`` and ``logits``.

    Input float32 ``(N, C, H, W)``; ``forward`` returns logits ``(N, num_classes)``.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], *, in_channels: int = 1,
                 num_classes: int = 10) -> None:
        super().__init__()
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if not channels or len(channels) != len(strides):
            raise ValueError(f"channels {channels} and strides {strides} must be non-empty and "
                             "of equal length")
        if min(channels) < 1 or min(strides) < 1:
            raise ValueError(f"channels {channels} and strides {strides} must be positive")
        self.channels, self.strides = channels, strides
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        prev = self.in_channels
        for i, (c, s) in enumerate(zip(channels, strides, strict=True), start=1):
            block = nn.Sequential(
                nn.Conv2d(prev, c, kernel_size=3, stride=s, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            )
            self.add_module(f"conv{i}", block)
            prev = c
        self.logits = nn.Linear(prev, self.num_classes)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``("conv1", ..., "convK", "logits")``."""
        return tuple(f"conv{i}" for i in range(1, len(self.channels) + 1)) + ("logits",)

    def layer_widths(self) -> dict[str, int]:
        """Number of features (channels / classes) of each named layer."""
        return dict(zip(self.layer_names, self.channels + (self.num_classes,), strict=True))

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named layer's output: conv layers ``(N, C_i, H_i, W_i)`` (after ReLU), logits
        ``(N, num_classes)``."""
        out: dict[str, torch.Tensor] = {}
        for i in range(1, len(self.channels) + 1):
            x = getattr(self, f"conv{i}")(x)
            out[f"conv{i}"] = x
        out["logits"] = self.logits(x.mean(dim=(2, 3)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, len(self.channels) + 1):
            x = getattr(self, f"conv{i}")(x)
        return self.logits(x.mean(dim=(2, 3)))


def make_cnn(width: int = 16, *, arch: str = "small", depth: int | None = None,
             in_channels: int = 1, num_classes: int = 10) -> ConvNet:
    """Build a :class:`ConvNet` with ``width * multiplier`` channels per layer (see module doc).

    ``width`` is the first layer's channel count (the paper's 11-layer net: ``width=64``).
    ``arch="resnet"`` builds a :class:`ResNet` with ``depth`` blocks per stage.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if arch == "resnet":
        return ResNet(width, _resnet_blocks(depth), in_channels=in_channels,
                      num_classes=num_classes)
    mult, strides = cnn_layout(arch, depth)
    return ConvNet([width * m for m in mult], strides, in_channels=in_channels,
                   num_classes=num_classes)


class _Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a strided 1x1 conv-BN when the shape changes),
    then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(ConvNet):
    """A CIFAR ResNet with named layers ``conv1``, ``block1 .. block{3 blocks}`` and ``logits``
    (see the module doc). It has a :class:`ConvNet`'s interface (``layer_names``,
    ``layer_widths``, ``forward_layers``), so training and capture treat it as one."""

    def __init__(self, width: int = 16, blocks: int = RESNET_BLOCKS, *, in_channels: int = 3,
                 num_classes: int = 10) -> None:
        nn.Module.__init__(self)
        for arg, val in (("width", width), ("blocks", blocks), ("in_channels", in_channels),
                         ("num_classes", num_classes)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{arg} must be a positive int, got {val!r}")
        widths = [width * 2 ** (i // blocks) for i in range(3 * blocks)]
        self.channels = (width, *widths)
        self.strides = (1, *[2 if i in (blocks, 2 * blocks) else 1 for i in range(3 * blocks)])
        self.in_channels, self.num_classes, self.blocks = in_channels, num_classes, blocks
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        prev = width
        for i, (c, s) in enumerate(zip(widths, self.strides[1:], strict=True), start=1):
            self.add_module(f"block{i}", _Residual(prev, c, s))
            prev = c
        self.logits = nn.Linear(prev, num_classes)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``("conv1", "block1", ..., "block{3 blocks}", "logits")``."""
        return ("conv1", *(f"block{i}" for i in range(1, 3 * self.blocks + 1)), "logits")

    def _stages(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1)] + [(f"block{i}", getattr(self, f"block{i}"))
                                          for i in range(1, 3 * self.blocks + 1)]

    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named layer's output: ``(N, C_i, H_i, W_i)`` after each block's ReLU, logits
        ``(N, num_classes)``."""
        out: dict[str, torch.Tensor] = {}
        for name, module in self._stages():
            x = module(x)
            out[name] = x
        out["logits"] = self.logits(x.mean(dim=(2, 3)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, module in self._stages():
            x = module(x)
        return self.logits(x.mean(dim=(2, 3)))


State = list[tuple[torch.Tensor, torch.Tensor]]


class LSTMLM(nn.Module):
    """A multi-layer LSTM language model with named layers ``lstm1 .. lstmK``.

    Input int64 token ids ``(B, T)``; ``forward`` returns logits ``(B, T, vocab_size)`` and the
    final state, a list with one ``(h, c)`` pair per layer, each ``(1, B, hidden_i)``.
    """

    def __init__(self, vocab_size: int, *, embed_dim: int = 64, hidden_size: int = 128,
                 n_layers: int = 3, dropout: float = 0.0, tie_weights: bool = False) -> None:
        super().__init__()
        for arg, val in (("vocab_size", vocab_size), ("embed_dim", embed_dim),
                         ("hidden_size", hidden_size), ("n_layers", n_layers)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{arg} must be a positive int, got {val!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.vocab_size, self.embed_dim, self.n_layers = vocab_size, embed_dim, n_layers
        self.tie_weights = bool(tie_weights)
        sizes = [hidden_size] * n_layers
        if self.tie_weights:
            sizes[-1] = embed_dim
        self.hidden_sizes = tuple(sizes)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.drop = nn.Dropout(dropout)
        prev = embed_dim
        for i, h in enumerate(sizes, start=1):
            self.add_module(f"lstm{i}", nn.LSTM(prev, h, batch_first=True))
            prev = h
        self.logits = nn.Linear(prev, vocab_size)
        if self.tie_weights:
            self.logits.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``("lstm1", ..., "lstmK")``."""
        return tuple(f"lstm{i}" for i in range(1, self.n_layers + 1))

    def layer_widths(self) -> dict[str, int]:
        return dict(zip(self.layer_names, self.hidden_sizes, strict=True))

    def _run(self, ids: torch.Tensor, state: State | None, keep: bool
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], State]:
        if ids.ndim != 2:
            raise ValueError(f"ids must be (batch, time), got shape {tuple(ids.shape)}")
        x = self.drop(self.embedding(ids))
        layers: dict[str, torch.Tensor] = {}
        new_state: State = []
        for i in range(self.n_layers):
            lstm = getattr(self, f"lstm{i + 1}")
            x, hc = lstm(x, None if state is None else state[i])
            new_state.append(hc)
            if keep:
                layers[f"lstm{i + 1}"] = x
            x = self.drop(x)
        return x, layers, new_state

    def forward_layers(self, ids: torch.Tensor, state: State | None = None
                       ) -> tuple[dict[str, torch.Tensor], State]:
        """Hidden states of every layer ``{lstm_i: (B, T, hidden_i)}`` and the final state."""
        _, layers, new_state = self._run(ids, state, keep=True)
        return layers, new_state

    def forward(self, ids: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        x, _, new_state = self._run(ids, state, keep=False)
        return self.logits(x), new_state


#: Sizes of the paper's word-level LSTM language models (its Sec. 4 and App. A, trained with
#: the awd-lstm-lm code): 400-dim embeddings, 1150 hidden units, weights tied (so the last
#: layer has 400 units), 3 layers, and the deeper 5-layer model on WikiText-2. awd-lstm-lm's
#: several dropouts (embedding, hidden, weight drop) are approximated by one dropout of 0.4.
LM_PRESETS: dict[str, dict] = {
    "awd-lstm-lm": {"embed_dim": 400, "hidden_size": 1150, "n_layers": 3, "dropout": 0.4,
                    "tie_weights": True},
    "awd-lstm-lm-5": {"embed_dim": 400, "hidden_size": 1150, "n_layers": 5, "dropout": 0.4,
                      "tie_weights": True},
}


def make_lm(preset: str, vocab_size: int, **overrides) -> LSTMLM:
    """An :class:`LSTMLM` with the sizes of :data:`LM_PRESETS` ``[preset]`` (keyword
    ``overrides`` replace single sizes)."""
    if preset not in LM_PRESETS:
        raise ValueError(f"preset must be one of {sorted(LM_PRESETS)}, got {preset!r}")
    return LSTMLM(vocab_size, **{**LM_PRESETS[preset], **overrides})
