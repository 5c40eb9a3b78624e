"""The figure style module holds only the theme and the palettes; the signal-noise chapter's
figure is drawn by its module."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cca_lib import plotting  # noqa: E402
from cca_lib.experiments import signal_noise  # noqa: E402


def test_plotting_keeps_only_the_theme_and_palettes():
    public = {name for name in vars(plotting) if not name.startswith("_")}
    assert public - {"annotations", "sns"} == {"MEASURE_COLORS", "set_theme"}


def test_signal_noise_figure_has_a_noise_panel_only_with_a_noise_sweep():
    cfg = signal_noise.Config(n_neurons=20, n_points=300, signal_dims=(2, 18), n_repeats=2,
                              spectrum_dims=(2,), noise_sweep=(0.01, 1.0), seed=1)
    result = signal_noise.run(cfg, progress=False)
    fig = signal_noise.plot_signal_noise(result)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "Similarity vs shared signal", "Sorted CCA coefficients",
        "Smallest signal fraction, varying noise"]
    assert axes[2].get_xscale() == "log"
    # one line per measure (plus the k/d diagonal) in the first panel
    assert len(axes[0].get_lines()) >= len(signal_noise.MEASURES) + 1
    plt.close(fig)

    empty = signal_noise.Result(config=cfg, similarities=result.similarities,
                                spectra=result.spectra.iloc[:0], noise=pd.DataFrame())
    fig = signal_noise.plot_signal_noise(empty)
    assert len(fig.axes) == 2 and not fig.axes[1].get_visible()
    plt.close(fig)
