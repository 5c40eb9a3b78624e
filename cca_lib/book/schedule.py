"""When each chapter of a book build starts.

A chapter may name, in its notebook's metadata ``cca_book.after``, the chapters whose cached
results it reuses: it starts only once they are done (:func:`chapter_after`). Among the
chapters that may start, the one that took longest when it last ran in this profile starts
first, so that a long chapter does not end up running alone at the end (:func:`schedule_order`).

The build measures every chapter it executes and keeps the seconds in :data:`TIMES_FILE` in the
data folder (:func:`cca_lib._paths.data_dir`), per profile (:func:`record_times`). A chapter
with no measured time yet (a first build, a new chapter) starts before the measured ones, and
chapters that tie keep book order, so a first build runs in book order.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

from cca_lib.book._files import atomic_write
from cca_lib.cache import file_lock

#: The measured chapter times: ``{profile: {chapter: seconds}}`` as JSON.
TIMES_FILE = "chapter_times.json"
#: The keys a notebook's ``cca_book`` metadata may hold.
META_KEYS = ("after",)


def times_path() -> Path:
    """Where the build keeps the measured chapter times (in the data folder)."""
    from cca_lib._paths import data_dir

    return data_dir() / TIMES_FILE


def chapter_after(root: Path, name: str) -> list[str]:
    """The chapters that chapter ``name`` waits for: its notebook's metadata ``cca_book.after``
    (chapters whose cached results it reuses), or none."""
    import nbformat

    nb = nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
    meta = dict(nb.metadata.get("cca_book", {}))
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ValueError(f"notebooks/{name}.ipynb: metadata cca_book may hold only "
                         f"{list(META_KEYS)}, got {unknown} (chapter times are measured by the "
                         f"build, see {TIMES_FILE})")
    after = meta.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise ValueError(f"notebooks/{name}.ipynb: metadata cca_book.after must be a list of "
                         f"chapter names, got {after!r}")
    return after


def _read(path: Path) -> dict:
    """The whole times file; an unreadable one counts as empty, with a warning (the times only
    order the chapters, and the next build writes a good file)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"ignoring unreadable chapter times {path}: {exc}", stacklevel=3)
        return {}
    good = isinstance(data, dict) and all(
        isinstance(times, dict) and all(
            isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
            for s in times.values())
        for times in data.values())
    if not good:
        warnings.warn(f"ignoring chapter times {path}: expected {{profile: {{chapter: seconds}}}}",
                      stacklevel=3)
        return {}
    return data


def load_times(path: Path, profile: str) -> dict[str, float]:
    """The measured seconds of each chapter in ``profile`` ({} when none were measured)."""
    return {name: float(s) for name, s in _read(path).get(profile, {}).items()}


def record_times(path: Path, profile: str, seconds: Mapping[str, float]) -> None:
    """Store the measured ``seconds`` of some chapters in ``profile`` (replacing their earlier
    times, keeping the others); the file is replaced atomically."""
    for name, s in seconds.items():
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s < 0:
            raise ValueError(f"seconds of chapter {name!r} must be a finite number >= 0, "
                             f"got {s!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".writing"),
                   message=f"{path}: another build is recording its times; waiting"):
        data = _read(path)
        data.setdefault(profile, {}).update({k: round(float(v), 3) for k, v in seconds.items()})
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def schedule_order(chapters: list[str], after: Mapping[str, list[str]],
                   seconds: Mapping[str, float]) -> list[str]:
    """Chapters in the order they may start: every chapter after the selected chapters it waits
    for (``after``); among those ready, an unmeasured one first, then the longest by
    ``seconds``, then book order (the order of ``chapters``)."""
    order, done, left = [], set(), list(chapters)
    while left:
        ready = [c for c in left if set(after.get(c, ())) & set(chapters) <= done]
        if not ready:
            raise ValueError(f"chapters depend on each other in a cycle: {left}")
        nxt = max(ready, key=lambda c: (c not in seconds, seconds.get(c, 0.0), -left.index(c)))
        order.append(nxt)
        done.add(nxt)
        left.remove(nxt)
    return order
