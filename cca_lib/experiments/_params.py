"""What every chapter ``Config`` shares: parameters declared once, with meaning and checks.

A chapter's ``Config`` is a frozen dataclass deriving from :class:`ChapterConfig` whose fields
are declared with :func:`param`: the default (the quick profile), its meaning (``help``), the
paper's value (``paper``, "" when the paper states none) and the validator that every value
must pass at construction (one of :mod:`cca_lib._checks`, with its bounds). The ``Config`` adds
only the rules that tie several fields together, in ``_validate``.

Notebooks build their config from their papermill parameters with
:meth:`ChapterConfig.from_params` (or :meth:`ChapterConfig.from_namespace` on ``globals()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from cca_lib import _checks

__all__ = ["ChapterConfig", "arch_param", "optimizer_param", "param", "rule", "scheduler_param"]


def rule(validator: Callable, **bounds) -> Callable[[str, Any], Any]:
    """``validator`` of :mod:`cca_lib._checks` with its bounds fixed: ``f(name, value)``."""
    return partial(validator, **bounds)


def param(default: Any = dataclasses.MISSING, help: str = "", paper: str = "", *,
          check: Callable[[str, Any], Any],
          default_factory: Any = dataclasses.MISSING) -> Any:
    """A ``Config`` field: its default, meaning, paper value and validator."""
    if not help:
        raise ValueError("every parameter needs its meaning (help)")
    meta = {"help": help, "paper": paper, "check": check}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _float_field(f: dataclasses.Field) -> bool:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return kind.replace(" ", "") in ("float", "float|None")


class ChapterConfig:
    """Mixin of the chapter configs (frozen dataclasses whose fields come from :func:`param`).

    Construction runs each field's validator (a ``TypeError`` / ``ValueError`` naming the field
    and the value), then the config's own cross-field rules (``_validate``)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            validator = f.metadata.get("check")
            if validator is None:
                raise TypeError(f"{type(self).__name__}.{f.name} is not declared with param()")
            value = getattr(self, f.name)
            checked = validator(f.name, value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self._validate()

    def _validate(self) -> None:
        """Rules across fields (the fields themselves are already checked)."""

    # -- parameters -------------------------------------------------------------------------

    @classmethod
    def parameters(cls) -> dict[str, dataclasses.Field]:
        """The papermill parameters, in order: name -> the field that declares it (its
        ``default`` and ``metadata["help"]`` / ``["paper"]``). The fields, unless a chapter
        maps its parameters otherwise (rnn_timesteps: its LSTM run's fields)."""
        return {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each parameter's default (the quick profile)."""
        return {name: _default(f) for name, f in cls.parameters().items()}

    @classmethod
    def _convert(cls, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """The two papermill conversions (a list becomes a tuple; an int given for a float
        parameter becomes a float); unknown names are refused."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"params must be a mapping of parameter names to values, got "
                            f"{type(mapping).__name__}")
        known = cls.parameters()
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {cls.__module__}.Config; "
                             f"known: {list(known)}")
        out = {}
        for name, value in mapping.items():
            if isinstance(value, list):
                value = tuple(value)
            elif (type(value) is int and _float_field(known[name])):
                value = float(value)
            out[name] = value
        return out

    @classmethod
    def from_params(cls, mapping: Mapping[str, Any]):
        """The config of papermill parameters ``mapping`` (name -> value; missing names keep
        their default). A list becomes a tuple and an int a float for a float parameter;
        nothing else is converted, and an unknown name is an error."""
        return cls(**cls._convert(mapping))

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]):
        """:meth:`from_params` of the parameters defined in ``namespace`` (a notebook's
        ``globals()``); every parameter must be defined there."""
        missing = [name for name in cls.parameters() if name not in namespace]
        if missing:
            raise NameError(f"parameter(s) {missing} of {cls.__module__}.Config are not "
                            f"defined (the notebook's parameters cell lists every one)")
        return cls.from_params({name: namespace[name] for name in cls.parameters()})


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"parameter {f.name} has no default")


# Validators used by several chapters (bounds as documented in cca_lib._checks).
SEED = rule(_checks.seed)
POSITIVE_COUNT = rule(_checks.integer, ge=1, le=_checks.MAX_COUNT)
COUNT = rule(_checks.integer, ge=0, le=_checks.MAX_COUNT)
SAMPLES = rule(_checks.integer, ge=1, le=_checks.MAX_SAMPLES)
UNITS = rule(_checks.integer, ge=1, le=_checks.MAX_UNITS)
EPOCHS = rule(_checks.real, gt=0, le=_checks.MAX_EPOCHS)
POSITIVE = rule(_checks.real, gt=0)
FRACTION = rule(_checks.real, gt=0, lt=1)
IMAGES = rule(_checks.dataset, kind="images")
TEXT = rule(_checks.dataset, kind="text")
BATCH = rule(_checks.integer, ge=1, le=_checks.MAX_SAMPLES)
LR_FRAC = rule(_checks.real, ge=0, le=1)


def arch_param(paper: str) -> Any:
    """The ``arch`` field of a CNN chapter: a layout of :func:`cca_lib.models.make_cnn`."""
    from cca_lib import models

    return param("small", 'CNN layout (cca_lib.models.make_cnn): "small" (4 conv layers), '
                 '"paper" (the paper\'s 11 conv layers, w..8w channels) or "resnet" (ResNet-20)',
                 paper, check=rule(_checks.text, choices=models.CNN_LAYOUTS))


def optimizer_param(paper: str) -> Any:
    """The ``optimizer`` field of a CNN chapter."""
    return param("sgd", '"sgd" (with momentum 0.9) or "adam"', paper,
                 check=rule(_checks.text, choices=("sgd", "adam")))


def scheduler_param() -> Any:
    """The ``scheduler`` field of a chapter that trains many networks: where they train (see
    :mod:`cca_lib.executors`); it never changes a number or a cache key."""
    from cca_lib import executors

    return param(None, executors.SCHEDULER_HELP, check=executors.check_scheduler)
