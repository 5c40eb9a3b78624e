"""A tiny synthetic dataset mirror for the engine's tests (never the network).

``make_mirror(root)`` writes ``root/<name>/<file>`` for fashion-mnist (12x12 IDX gz files whose
classes differ by a mean pattern), ptb, wikitext-2 and tinyshakespeare, and returns registry
specs pointing at them (``file://`` URLs, their true sha256).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from cca_lib.data import DatasetSpec, RemoteFile

N_TRAIN, N_TEST, SIDE, N_CLASSES = 320, 80, 12, 10


def _idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def _write_gz(path: Path, payload: bytes, mtime: int = 0) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime,
                                                filename="") as gz:
        gz.write(payload)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % N_CLASSES
    rng.shuffle(labels)
    protos = np.random.default_rng(123).uniform(0, 255, size=(N_CLASSES, SIDE, SIDE))
    x = 0.6 * protos[labels] + rng.uniform(0, 100, size=(n, SIDE, SIDE))
    return np.clip(x, 0, 255).astype(np.uint8), labels.astype(np.uint8)


_WORDS = "the cat dog sat on a mat ran to big red house".split()


def _sentences(n: int, rng: np.random.Generator) -> str:
    lines = []
    for _ in range(n):
        k = int(rng.integers(3, 9))
        # a weak grammar: each word tends to follow its predecessor in _WORDS
        i = int(rng.integers(len(_WORDS)))
        words = []
        for _ in range(k):
            words.append(_WORDS[i])
            i = (i + 1) % len(_WORDS) if rng.random() < 0.8 else int(rng.integers(len(_WORDS)))
        lines.append(" " + " ".join(words) + " ")
    return "\n".join(lines) + "\n"


def make_mirror(root: Path) -> dict[str, DatasetSpec]:
    rng = np.random.default_rng(0)
    specs: dict[str, DatasetSpec] = {}

    fm = root / "fashion-mnist"
    fm.mkdir(parents=True)
    files = []
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x, y = _images(n, rng)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte.gz"
            payload = _idx_bytes(arr)
            _write_gz(fm / name, payload)
            files.append(RemoteFile(name, (fm / name).as_uri(), _sha(fm / name),
                                    gunzip_sha256=hashlib.sha256(payload).hexdigest()))
    specs["fashion-mnist"] = DatasetSpec("fashion-mnist", tuple(files), "images", "synthetic")

    ptb = root / "ptb"
    ptb.mkdir()
    files = []
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        name = f"ptb.{split}.txt"
        (ptb / name).write_text(_sentences(n, rng))
        files.append(RemoteFile(name, (ptb / name).as_uri(), _sha(ptb / name)))
    specs["ptb"] = DatasetSpec("ptb", tuple(files), "text", "synthetic")

    wt = root / "wikitext-2"
    wt.mkdir()
    files = []
    for name, n in (("valid.txt", 200), ("test.txt", 50)):
        (wt / name).write_text(_sentences(n, rng))
        files.append(RemoteFile(name, (wt / name).as_uri(), _sha(wt / name)))
    specs["wikitext-2"] = DatasetSpec("wikitext-2", tuple(files), "text", "synthetic")

    ts = root / "tinyshakespeare"
    ts.mkdir()
    (ts / "input.txt").write_text(_sentences(300, rng))
    specs["tinyshakespeare"] = DatasetSpec(
        "tinyshakespeare",
        (RemoteFile("input.txt", (ts / "input.txt").as_uri(), _sha(ts / "input.txt")),),
        "text", "synthetic")
    return specs


class Env:
    """What :func:`activate` set up: the mirror, the data dir and the patched specs."""

    def __init__(self, mirror: Path, data: Path, specs: dict[str, DatasetSpec]) -> None:
        self.mirror, self.data, self.specs = mirror, data, specs


def activate(tmp_path: Path, monkeypatch) -> Env:
    """Point cca_lib at a fresh synthetic mirror and an empty data dir under ``tmp_path``,
    with the registry patched (undone by ``monkeypatch`` after the test)."""
    from cca_lib import data

    mirror, data_root = tmp_path / "mirror", tmp_path / "data"
    specs = make_mirror(mirror)
    monkeypatch.setenv("CCA_BOOK_DATA_DIR", str(data_root))
    monkeypatch.setenv("CCA_BOOK_DATA_MIRROR", str(mirror))
    for name, spec in specs.items():
        monkeypatch.setitem(data.REGISTRY, name, spec)

    def offline(url):
        raise data.urllib.error.URLError("offline (tests never use the network)")

    monkeypatch.setattr(data, "_urlopen", offline)
    return Env(mirror, data_root, specs)
