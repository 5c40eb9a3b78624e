"""Figures for the book. One seaborn theme, set here; every helper returns the ``Figure``.

Colours are fixed per similarity measure so that a measure looks the same in every chapter.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
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


def signal_noise(frame: pd.DataFrame, spectra: pd.DataFrame, noise: pd.DataFrame | None = None
                 ) -> plt.Figure:
    """Chapter 1: similarity vs signal fraction (left), sorted CCA coefficients (middle),
    similarity vs noise level at the smallest signal fraction (right, if ``noise`` is given).

    ``frame``: columns signal_fraction, measure, similarity (one row per repeat);
    ``spectra``: columns signal_dims, index, rho; ``noise``: noise_std, measure, similarity.
    """
    panels = 3 if noise is not None and len(noise) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), constrained_layout=True)
    ax, ax2 = axes[0], axes[1]
    measures = [m for m in MEASURE_COLORS if m in set(frame["measure"])]
    sns.lineplot(data=frame, x="signal_fraction", y="similarity", hue="measure",
                 hue_order=measures, palette=MEASURE_COLORS, marker="o", errorbar="sd", ax=ax)
    ax.plot([0, 1], [0, 1], ls=":", color="black", lw=1, label="signal fraction k/d")
    ax.set(xlabel="signal fraction k / d", ylabel="similarity", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Similarity vs shared signal")
    ax.legend(loc="lower right", fontsize="small")
    if len(spectra):
        sns.lineplot(data=spectra, x="index", y="rho", hue="signal_dims", palette="viridis",
                     errorbar=None, ax=ax2)
        ax2.set(xlabel="canonical direction (sorted)", ylabel=r"CCA coefficient $\rho_i$",
                ylim=(0, 1.02), title="Sorted CCA coefficients")
        ax2.legend(title="signal dims k", fontsize="small")
    else:
        ax2.set_visible(False)
    if panels == 3:
        ax3 = axes[2]
        sns.lineplot(data=noise, x="noise_std", y="similarity", hue="measure",
                     hue_order=measures, palette=MEASURE_COLORS, marker="o", errorbar="sd",
                     ax=ax3, legend=False)
        ax3.set(xscale="log", xlabel="noise standard deviation", ylabel="similarity",
                ylim=(0, 1.02), title="Smallest signal fraction, varying noise")
    return fig
