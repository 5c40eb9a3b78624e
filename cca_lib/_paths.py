"""Where cca_lib keeps its local files; the one place that defines it.

The data folder (:func:`data_dir`) holds the verified dataset files (``datasets/``, see
:mod:`cca_lib.data`), the trained checkpoints and captured activations (``cache/``, see
:mod:`cca_lib.cache`) and the book build's measured chapter times. It is the first of:

1. ``$CCA_BOOK_DATA_DIR`` (:data:`DATA_DIR_ENV`), when set;
2. ``data/`` in the cca-book checkout this package lives in (:func:`project_root`);
3. the user cache folder ``~/.cache/cca-book`` (a plain install, no checkout).

It is created on first use. ``$CCA_BOOK_DATA_MIRROR`` (:data:`MIRROR_ENV`) may name a read-only
folder of dataset files that is searched before downloading (:func:`mirror_dir`).

This module needs only the standard library: the measures, the engine and the chapters find
their files without the book tooling (:mod:`cca_lib.book`).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the cache root.
DATA_DIR_ENV = "CCA_BOOK_DATA_DIR"
#: Environment variable naming a read-only mirror of the datasets
#: (layout ``<mirror>/<name>/<file>``).
MIRROR_ENV = "CCA_BOOK_DATA_MIRROR"


def project_root() -> Path | None:
    """The cca-book checkout this package lives in, or None for a plain install."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "_toc.yml").is_file() else None


def data_dir() -> Path:
    """The data folder (where it is: see this module's docstring); created on first use."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        root = project_root()
        path = root / "data" if root is not None else Path.home() / ".cache" / "cca-book"
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Folder holding one sub-folder of verified files per dataset."""
    path = data_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Folder holding trained checkpoints and captured activations."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_dir() -> Path | None:
    """The dataset mirror named by ``$CCA_BOOK_DATA_MIRROR``, if set."""
    env = os.environ.get(MIRROR_ENV)
    return Path(env).expanduser() if env else None
