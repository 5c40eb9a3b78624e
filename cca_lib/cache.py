"""A content-addressed cache of trained checkpoints and captured activations.

Layout: ``cache_dir()/<kind>/<key>/`` (``cache_dir()`` is ``data/cache`` in a checkout, see
:mod:`cca_lib._paths`), one folder per entry, e.g. ``runs/`` for training runs and
``activations/`` for captured layers. ``key`` is the first 24 hex digits of the sha256 of a
canonical JSON form of ``{"kind", "version": CACHE_VERSION, "config": <the full config>}``
(:func:`config_key`, :func:`canonical`), so a change to any config field, or a bump of
:data:`CACHE_VERSION` after a change to what the engine computes or to how keys are formed,
gives a new entry. Numbers are keyed by value: ``3`` and ``3.0`` give the same key (a config
read from YAML and the same one passed by papermill share their entries), ``True`` and ``1`` do
not.

Each entry holds a ``manifest.json`` listing every file with its sha256 and size. An entry is
written into a temporary folder next to its final place and renamed into place only once it is
complete (atomic on POSIX); an entry whose manifest is missing, has another version, or
disagrees with a file is treated as corrupted: it is deleted (with a warning) and rebuilt, never
trusted. A file that matches its manifest but that its loader cannot read (it was broken when
written) is treated the same way by the code that reads it (:func:`discard_entry`).
:func:`clear` (or ``python -m cca_lib.cache clear``, or ``make clean-cache``) empties the cache.

Two processes that need the same missing entry (two notebooks run side by side by ``make test``
or ``make book``, or two workers of a cluster whose ``CCA_BOOK_DATA_DIR`` is on shared storage)
would both build it; :func:`build_lock` lets the second one wait for the first and then read its
entry instead. The lock is an atomically created file with a heartbeat (:func:`file_lock`), not
``flock``, so it holds on network filesystems too, and a crashed holder's lock is taken over
once it has been silent for ``$CCA_BOOK_LOCK_STALE`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cca_lib._paths import cache_dir

__all__ = ["CACHE_VERSION", "build_lock", "canonical", "clear", "config_key", "discard_entry",
           "entry_path", "file_lock", "list_entries", "open_entry", "write_entry"]

#: Bump when the engine's output for an unchanged config changes, or when the way keys are formed
#: changes (invalidates every entry). 2: numbers keyed by value (3 == 3.0); training runs keyed
#: on the thread count used, the device type and the torch version.
CACHE_VERSION = 2
MANIFEST = "manifest.json"
_KEY_LEN = 24

#: (entry path, ((file, size, mtime_ns), ...)) of entries verified in this process.
_verified: set[tuple[str, tuple]] = set()


def canonical(obj: Any) -> Any:
    """A JSON-able form of ``obj`` with a stable layout: dataclasses become
    ``{"__class__": name, field: value, ...}``, tuples lists, paths strings, numpy/torch scalars
    Python numbers. Numbers are normalized by value: an integral float becomes the int of the
    same value (``3.0 -> 3``, ``-0.0 -> 0``), other floats keep their exact repr, non-finite
    floats become their repr (``"inf"``, ``"nan"``), and bools stay bools. Dict keys become
    strings of their normalized value. Raises TypeError for anything else that JSON cannot
    hold."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"__class__": type(obj).__qualname__}
        for f in dataclasses.fields(obj):
            out[f.name] = canonical(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        items = {_key_text(k): canonical(v) for k, v in obj.items()}
        return dict(sorted(items.items()))
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return canonical(obj.value)
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)
        return int(obj) if obj.is_integer() else obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return canonical(obj.item())
    raise TypeError(f"cannot key the cache on a {type(obj).__name__}: {obj!r}")


def _key_text(key: Any) -> str:
    if isinstance(key, float) and math.isfinite(key) and key.is_integer():
        return str(int(key))
    return str(key)


def config_key(config: Any, *, kind: str) -> str:
    """The cache key (24 hex digits) of ``config`` for entries of ``kind``."""
    payload = {"kind": kind, "version": CACHE_VERSION, "config": canonical(config)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LEN]


def _check_kind_key(kind: str, key: str) -> None:
    for arg, val in (("kind", kind), ("key", key)):
        if not isinstance(val, str) or not val or "/" in val or val.startswith("."):
            raise ValueError(f"{arg} must be a plain folder name, got {val!r}")


def entry_path(kind: str, key: str) -> Path:
    """Where entry ``key`` of ``kind`` lives (whether or not it exists)."""
    _check_kind_key(kind, key)
    return cache_dir() / kind / key


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stats(path: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in path.iterdir() if p.is_file()))


def _problem(path: Path) -> str | None:
    """Why the entry at ``path`` cannot be trusted, or None if it is sound."""
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    if manifest.get("version") != CACHE_VERSION:
        return f"cache version {manifest.get('version')!r} != {CACHE_VERSION}"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "manifest lists no files"
    for name, info in files.items():
        fpath = path / name
        if not fpath.is_file():
            return f"missing file {name}"
        if fpath.stat().st_size != info.get("bytes"):
            return f"{name} has {fpath.stat().st_size} bytes, manifest says {info.get('bytes')}"
        if _sha256(fpath) != info.get("sha256"):
            return f"{name} does not match its sha256"
    return None


def open_entry(kind: str, key: str) -> Path | None:
    """The verified folder of entry ``key``, or None if absent. A corrupted entry is deleted
    (with a ``RuntimeWarning`` saying why) and None returned, so the caller rebuilds it."""
    path = entry_path(kind, key)
    if not path.is_dir():
        return None
    stamp = (str(path), _stats(path))
    if stamp in _verified:
        return path
    problem = _problem(path)
    if problem is None:
        _verified.add(stamp)
        return path
    discard_entry(path, problem)
    return None


def discard_entry(path: Path, problem: str, *, stacklevel: int = 2) -> None:
    """Delete the corrupted entry at ``path`` with a ``RuntimeWarning`` saying why, so that the
    caller rebuilds it. Used by :func:`open_entry`, and by the readers of an entry's files when
    a file that matches its manifest cannot be loaded. ``stacklevel`` counts from the caller
    of ``discard_entry``'s caller (2: the code that called the reader)."""
    warnings.warn(f"cache entry {path} is corrupted ({problem}); deleting it and rebuilding",
                  RuntimeWarning, stacklevel=stacklevel + 1)
    shutil.rmtree(path, ignore_errors=True)
    stale = {stamp for stamp in _verified if stamp[0] == str(path)}
    _verified.difference_update(stale)


def read_meta(path: Path) -> dict:
    """The ``meta`` dict stored in an entry's manifest."""
    return json.loads((path / MANIFEST).read_text()).get("meta", {})


def write_entry(kind: str, key: str, writer: Callable[[Path], None], *,
                meta: dict | None = None) -> Path:
    """Create entry ``key`` atomically: ``writer(folder)`` writes the files into a temporary
    folder, a manifest (sha256 of each file, plus JSON-able ``meta``) is added, and the folder
    is renamed into place. If a sound entry appeared meanwhile (another process), it is kept and
    ours discarded. Returns the entry's folder."""
    final = entry_path(kind, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        writer(tmp)
        files = {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST}
        if not files:
            raise ValueError(f"writer wrote no files for cache entry {kind}/{key}")
        manifest = {"version": CACHE_VERSION, "kind": kind, "key": key, "files": files,
                    "meta": canonical(meta or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for _ in range(3):
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if open_entry(kind, key) is not None:
                    return final
        raise OSError(f"could not move cache entry into place at {final}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: Environment variable: seconds after its last heartbeat that a lock counts as abandoned.
LOCK_STALE_ENV = "CCA_BOOK_LOCK_STALE"
#: Default of :data:`LOCK_STALE_ENV`: generous, so that a slow disk or clock skew between
#: machines sharing the cache never makes a live holder look dead.
LOCK_STALE_S = 120.0


def _stale_seconds(stale: float | None) -> float:
    if stale is None:
        text = os.environ.get(LOCK_STALE_ENV, "").strip()
        try:
            stale = float(text) if text else LOCK_STALE_S
        except ValueError:
            raise ValueError(f"${LOCK_STALE_ENV} must be a number of seconds, got "
                             f"{text!r}") from None
    if not (isinstance(stale, int | float) and math.isfinite(stale) and stale > 0):
        raise ValueError(f"stale must be a positive number of seconds, got {stale!r}")
    return float(stale)


def _lock_age(path: Path) -> float | None:
    """Seconds since ``path`` was last touched (None: it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _read_holder(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


@contextmanager
def file_lock(path: Path, *, message: str, stale: float | None = None,
              poll: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock that works across processes and machines sharing a filesystem,
    network filesystems included (it needs no ``flock``, only an atomic exclusive create).

    The lock is the file ``path``, created with ``O_CREAT | O_EXCL`` and holding the holder's
    host, pid, start time and a random token. While held, a heartbeat thread touches it every
    ``stale / 6`` seconds. A lock untouched for ``stale`` seconds (default: ``$CCA_BOOK_LOCK_STALE``
    or :data:`LOCK_STALE_S`) belongs to a holder that died: the next process removes it and
    takes over (one at a time: the removal itself is guarded by a ``<path>.break`` lock file).
    A process that has to wait prints ``message`` (and who holds the lock) on stderr, once."""
    stale = _stale_seconds(stale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
              "token": token}
    said = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            age = _lock_age(path)
            if age is not None and age > stale:
                _break_stale(path, stale)
                continue
            if not said:
                who = _read_holder(path)
                by = f" (held by pid {who.get('pid')} on {who.get('host')})" if who else ""
                print(f"{message}{by}", file=sys.stderr, flush=True)
                said = True
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(holder))
        break
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(stale / 6):
            if _read_holder(path).get("token") != token:
                warnings.warn(f"lock {path} was taken over while held (its heartbeat stopped "
                              f"for over {stale:g} s)", RuntimeWarning, stacklevel=1)
                return
            try:
                os.utime(path)
            except OSError:
                pass

    thread = threading.Thread(target=beat, name=f"lock-heartbeat {path.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if _read_holder(path).get("token") == token:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _break_stale(path: Path, stale: float) -> None:
    """Remove the abandoned lock ``path``, unless another process is doing so or it came back
    to life; guarded by ``<path>.break`` so that two takers never remove a fresh lock."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        age = _lock_age(guard)
        if age is not None and age > stale:  # a taker died mid-way
            with contextlib.suppress(FileNotFoundError):
                guard.unlink()
        time.sleep(0.05)
        return
    os.close(fd)
    try:
        age = _lock_age(path)  # checked again under the guard: still abandoned?
        if age is not None and age > stale:
            who = _read_holder(path)
            print(f"lock {path}: taking over from pid {who.get('pid')} on {who.get('host')}, "
                  f"silent for {age:.0f} s", file=sys.stderr, flush=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()


@contextmanager
def build_lock(kind: str, key: str, *, stale: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on building entry ``key`` of ``kind``, across processes and
    machines sharing the cache (a :func:`file_lock` on ``.build-<key>.lock`` beside the entry;
    it works on network filesystems). A process that has to wait says so on stderr. A holder
    that dies stops its heartbeat, and after ``stale`` seconds the next builder takes over."""
    _check_kind_key(kind, key)
    folder = cache_dir() / kind
    with file_lock(folder / f".build-{key}.lock", stale=stale,
                   message=f"cache {kind}/{key}: another process is building it; waiting for it"):
        yield


def list_entries(kind: str | None = None) -> list[Path]:
    """Folders of all entries (of one ``kind`` or all), unverified."""
    root = cache_dir()
    kinds = [root / kind] if kind else [p for p in root.iterdir() if p.is_dir()]
    return sorted(e for k in kinds if k.is_dir() for e in k.iterdir()
                  if e.is_dir() and not e.name.startswith("."))


def clear(kind: str | None = None) -> int:
    """Delete every entry (of one ``kind``, or all, with leftover temporary folders).
    Returns the number of entries deleted."""
    root = cache_dir()
    if kind is not None:
        _check_kind_key(kind, "x")
    n = len(list_entries(kind))
    targets = [root / kind] if kind else list(root.iterdir())
    for t in targets:
        if t.is_dir():
            shutil.rmtree(t, ignore_errors=True)
        elif t.exists():
            t.unlink()
    _verified.clear()
    return n


def _main(argv: list[str]) -> int:
    if argv[:1] == ["clear"]:
        n = clear(argv[1] if len(argv) > 1 else None)
        print(f"removed {n} cache entries from {cache_dir()}")
        return 0
    if argv[:1] == ["list"]:
        for e in list_entries(argv[1] if len(argv) > 1 else None):
            size = sum(p.stat().st_size for p in e.iterdir())
            print(f"{e.parent.name}/{e.name}  {size / 1e6:.1f} MB")
        return 0
    print("usage: python -m cca_lib.cache {clear|list} [kind]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
