"""Progress bars for long work, switched off where nobody watches them.

Every loop that trains, captures or compares many things shows a tqdm bar unless the caller
passes ``progress=False``. Setting ``CCA_BOOK_PROGRESS=0`` turns all bars off: the book build
does so, since an executed notebook would otherwise store every redraw of every bar as output.
The plain (text) tqdm is used: it needs no widget library and redraws in place in Jupyter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

#: Environment variable that switches every progress bar off when set to ``0``.
PROGRESS_ENV = "CCA_BOOK_PROGRESS"


def enabled(progress: bool) -> bool:
    """Whether a bar requested with ``progress`` is shown."""
    return bool(progress) and os.environ.get(PROGRESS_ENV, "1").strip() != "0"


def bar(iterable: Iterable | None = None, *, progress: bool = True, **kwargs):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``), hidden when disabled."""
    from tqdm.std import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not enabled(progress), **kwargs)
