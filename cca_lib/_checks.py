"""Small argument validators shared by the configs (one rule, one message each).

Every validator takes the argument's ``name`` and ``value``, raises a :class:`TypeError` (wrong
type) or :class:`ValueError` (wrong value) whose message names both, and returns the value
(an exact int or float; nothing is rounded or truncated). The type rules:

* an int argument takes an integer (``numpy`` integers included) but never a ``bool`` or a
  float, even an integral one (``2.0``);
* a float argument takes a finite real number, an int included; ``inf`` and ``nan`` are refused;
* a bool argument takes ``True`` or ``False`` only (``"yes"`` or ``1`` are refused);
* a seed is an int in ``[0, MAX_SEED]``: every random thing takes an explicit int seed.

The upper bounds below are sanity limits, far above anything the book runs, that turn an absurd
size (a typo such as ``n_linear=10**9``) into an error at construction instead of a
``MemoryError`` or an endless loop later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

#: Largest seed (seeds are offset by small counts, e.g. ``seed + i``, and stay far below 2**64).
MAX_SEED = 2**32 - 1
#: Largest count of repeats, networks, seeds, checkpoints, evaluations, clusters or subsets.
MAX_COUNT = 10_000
#: Largest number of samples: images, tokens, datapoints, probe rows, sequences.
MAX_SAMPLES = 10_000_000
#: Largest number of units in a layer: neurons, channels, hidden units, embedding dimensions.
MAX_UNITS = 65_536
#: Largest number of epochs.
MAX_EPOCHS = 100_000
#: Largest array (elements) that a config may ask to be allocated at once.
MAX_ELEMENTS = 2**28


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _range_text(ge=None, gt=None, le=None, lt=None) -> str:
    lo = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else "(-inf"
    hi = f"{le}]" if le is not None else f"{lt})" if lt is not None else "inf)"
    return f"in {lo}, {hi}"


def _in_range(value, ge, gt, le, lt) -> bool:
    return ((ge is None or value >= ge) and (gt is None or value > gt)
            and (le is None or value <= le) and (lt is None or value < lt))


def integer(name: str, value: Any, *, ge: int | None = None, le: int | None = None,
            none: bool = False) -> int | None:
    """An int in ``[ge, le]`` (bounds optional); ``None`` allowed if ``none``."""
    if value is None and none:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        allowed = "an int or None" if none else "an int"
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if not _in_range(value, ge, None, le, None):
        if ge == 1 and le is None:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
        raise ValueError(f"{name} must be an int {_range_text(ge=ge, le=le)}, got {value!r}")
    return value


def real(name: str, value: Any, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None, none: bool = False) -> float | None:
    """A finite real number (an int is accepted and kept as it is) in the given range."""
    if value is None and none:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
        allowed = "a number or None" if none else "a number"
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if not isinstance(value, int | float):  # numpy scalars: the same value as a Python float
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if not _in_range(value, ge, gt, le, lt):
        if gt == 0 and ge is None and le is None and lt is None:
            raise ValueError(f"{name} must be positive, got {value!r}")
        raise ValueError(f"{name} must be {_range_text(ge, gt, le, lt)}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False`` (no truthy strings or ints)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def text(name: str, value: Any, *, choices: Iterable[str] | None = None,
         none: bool = False) -> str | None:
    """A str, one of ``choices`` when given."""
    if value is None and none:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if choices is not None:
        choices = tuple(choices)
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def seed(name: str, value: Any, *, none: bool = False) -> int | None:
    """A seed: an int in ``[0, MAX_SEED]`` (``None`` only where ``none``: a documented meaning)."""
    if value is None and not none:
        raise TypeError(f"{name} must be an int seed in [0, {MAX_SEED}] (every random draw "
                        f"takes an explicit seed), got None")
    return integer(name, value, ge=0, le=MAX_SEED, none=none)


def sequence(name: str, value: Any, item, *, min_len: int = 1, distinct: bool = False,
             **bounds) -> tuple:
    """A non-empty (``min_len``) list or tuple whose every item passes ``item`` (one of the
    validators above, with ``bounds``); returned as a tuple."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a tuple or list, got {value!r} "
                        f"({type(value).__name__})")
    out = tuple(item(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value))
    if len(out) < min_len:
        raise ValueError(f"{name} must hold at least {min_len} value(s), got {value!r}")
    if distinct and len(set(out)) != len(out):
        raise ValueError(f"{name} must hold distinct values, got {value!r}")
    return out


def ints(name: str, value: Any, *, min_len: int = 1, distinct: bool = False, **bounds
         ) -> tuple[int, ...]:
    """A list or tuple of ints (see :func:`integer`), as a tuple."""
    return sequence(name, value, integer, min_len=min_len, distinct=distinct, **bounds)


def reals(name: str, value: Any, *, min_len: int = 1, distinct: bool = False, **bounds
          ) -> tuple[float, ...]:
    """A list or tuple of finite numbers (see :func:`real`), as a tuple of floats."""
    out = sequence(name, value, real, min_len=min_len, distinct=distinct, **bounds)
    return tuple(float(v) for v in out)


def texts(name: str, value: Any, *, min_len: int = 1, distinct: bool = False, **kw
          ) -> tuple[str, ...]:
    """A list or tuple of str (see :func:`text`), as a tuple."""
    return sequence(name, value, text, min_len=min_len, distinct=distinct, **kw)


def dataset(name: str, value: Any, kind: str) -> str:
    """A registered dataset name of ``kind`` ("images" or "text"); returned unchanged."""
    from cca_lib import data

    text(name, value)
    try:
        key = data.canonical_name(value)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    if data.REGISTRY[key].kind != kind:
        raise ValueError(f"{name} must name a {kind} dataset, got {value!r} "
                         f"(a {data.REGISTRY[key].kind} dataset)")
    return value


def allocation(what: str, elements: int, limit: int = MAX_ELEMENTS) -> None:
    """Refuse a config that asks for an array of more than ``limit`` elements at once."""
    if elements > limit:
        raise ValueError(f"{what} would allocate {elements:,} elements at once (more than "
                         f"{limit:,}); reduce the sizes")
