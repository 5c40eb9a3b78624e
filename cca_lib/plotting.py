"""The book's figure style: one seaborn theme, set here, the colour palettes the chapters share,
and the record of how large each figure's text is.

Colours are fixed per similarity measure so that a measure looks the same in every chapter. The
figures themselves are the chapter modules' ``plot_*`` functions (:mod:`cca_lib.experiments`).

Legible at page width. The book's text column is about :data:`COLUMN_WIDTH_IN` inches wide at the
figures' 100 dpi (690 CSS pixels in a 1280-pixel browser window); a wider figure is shrunk to
fit, and its text with it. A text of ``p`` points in a figure ``w`` inches wide is therefore
displayed at ``p * 100 / 72`` pixels when ``w <= COLUMN_WIDTH_IN`` and at
``p * 100 / 72 * COLUMN_WIDTH_IN / w`` otherwise. The chapters' figures are drawn at most
:data:`COLUMN_WIDTH_IN` wide with no text under :data:`MIN_FONT_PX` pixels. In a notebook,
:func:`set_theme` makes every figure's PNG output carry :func:`figure_report` (its pixel size
and its smallest text) in the output's metadata and in the PNG file itself, where the book's
browser check compares it with the width the figure is displayed at.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator

import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.text import Text

#: One colour per measure, used in every chapter.
MEASURE_COLORS = {
    "mean CCA": "#1f77b4",
    "SVCCA": "#2ca02c",
    "PWCCA": "#d62728",
    "linear CKA": "#7f7f7f",
    "cosine": "#9467bd",
    "Euclidean": "#8c564b",
}

#: Width of the book's text column in inches at the figures' 100 dpi (at a 1280-pixel window).
COLUMN_WIDTH_IN = 6.9
#: Smallest text a figure may show, in pixels as displayed in the book's column.
MIN_FONT_PX = 9.0
#: Key of the figure report in a PNG output's metadata and in the PNG file's text chunks.
REPORT_KEY = "cca-book"
_DPI = 100


def set_theme() -> None:
    """The book's plotting theme (call once per notebook); in IPython, figures' PNG outputs also
    carry :func:`figure_report` (see the module docs)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=1.0,
                  rc={"figure.dpi": _DPI, "savefig.dpi": _DPI, "axes.titleweight": "bold"})
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is installed with the book
        return
    shell = get_ipython()
    if shell is not None:
        import matplotlib
        import matplotlib.pyplot as plt

        # load the backend now: Jupyter's inline backend registers its own PNG formatter when
        # it is loaded (on the first figure otherwise), which would replace this one
        plt.switch_backend(matplotlib.get_backend())
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def _drawn_texts(artist: Artist) -> Iterator[Text]:
    """Every visible, non-empty text under ``artist`` (an invisible parent hides its children)."""
    if not artist.get_visible():
        return
    if isinstance(artist, Text) and artist.get_text().strip():
        yield artist
    for child in artist.get_children():
        yield from _drawn_texts(child)


def smallest_text(fig: Figure) -> tuple[float, str]:
    """The smallest font size in points among the figure's visible texts, with that text
    (``(inf, "")`` for a figure without text). Tick labels count; a hidden axes does not."""
    sizes = [(float(t.get_fontsize()), t.get_text()) for t in _drawn_texts(fig)]
    return min(sizes, default=(float("inf"), ""))


def figure_report(fig: Figure, width_px: int, height_px: int) -> dict:
    """What the browser check needs about a figure rendered as a ``width_px`` x ``height_px``
    PNG: that size, the smallest text in pixels of that PNG, and the text itself."""
    points, text = smallest_text(fig)
    return {"width_px": int(width_px), "height_px": int(height_px),
            "min_font_px": round(points * fig.dpi / 72, 2), "min_font_text": text[:80]}


def figure_png(fig: Figure) -> tuple[bytes, dict]:
    """The figure as a PNG (cropped to its content, like Jupyter's inline backend) whose text
    chunk ``cca-book`` holds :func:`figure_report` as JSON, and the output metadata
    ``{"cca-book": report}``."""
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format="png", bbox_inches="tight", dpi=fig.dpi)
    png = buf.getvalue()
    # the size is in the IHDR chunk, the first after the 8-byte signature
    width, height = struct.unpack(">II", png[16:24])
    report = figure_report(fig, width, height)
    return _with_text_chunk(png, REPORT_KEY, json.dumps(report)), {REPORT_KEY: report}


def _with_text_chunk(png: bytes, key: str, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk ``key: text`` inserted after its header chunk."""
    body = b"tEXt" + key.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    header_end = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, 13 data bytes, CRC
    return png[:header_end] + chunk + png[header_end:]


def displayed_min_font(report: dict, displayed_width_px: float) -> float:
    """The smallest text of a figure in pixels when its PNG is shown ``displayed_width_px``
    wide."""
    return report["min_font_px"] * displayed_width_px / report["width_px"]


def grid(n: int, ncols: int = 2, panel: tuple[float, float] = (3.3, 2.9), **kwargs):
    """A figure of ``n`` panels, ``ncols`` to a row, each ``panel`` inches, no wider than the
    column; returns ``(fig, axes)`` with ``axes`` a flat list of the ``n`` panels in use (the
    grid's spare panels are hidden). Keyword arguments go to :func:`matplotlib.pyplot.subplots`."""
    import matplotlib.pyplot as plt

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(ncols, int) or isinstance(ncols, bool) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    width = min(panel[0] * ncols, COLUMN_WIDTH_IN)
    kwargs.setdefault("constrained_layout", True)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel[1] * nrows), squeeze=False,
                             **kwargs)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]
