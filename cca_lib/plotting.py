"""The book's figure style: one seaborn theme, set here, and the colour palettes the chapters
share. Colours are fixed per similarity measure so that a measure looks the same in every
chapter. The figures themselves are the chapter modules' ``plot_*`` functions
(:mod:`cca_lib.experiments`).
"""

from __future__ import annotations

import seaborn as sns

#: One colour per measure, used in every chapter.
MEASURE_COLORS = {
    "mean CCA": "#1f77b4",
    "SVCCA": "#2ca02c",
    "PWCCA": "#d62728",
    "linear CKA": "#7f7f7f",
    "cosine": "#9467bd",
    "Euclidean": "#8c564b",
}


def set_theme() -> None:
    """The book's plotting theme (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=1.0,
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "axes.titleweight": "bold"})
