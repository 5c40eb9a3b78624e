"""Where cca_lib keeps its local cache (datasets, trained models, activations)."""

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
    """Root of the local cache: ``$CCA_BOOK_DATA_DIR``, else ``<checkout>/data``, else
    ``~/.cache/cca-book``. Created on first use."""
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
