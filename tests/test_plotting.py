"""The figure style module holds only the theme and the palettes; the signal-noise chapter's
figure is drawn by its module."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cca_lib import plotting  # noqa: E402
from cca_lib.experiments import signal_noise  # noqa: E402


def test_plotting_keeps_the_theme_palettes_and_figure_reports():
    import inspect

    public = {name for name, value in vars(plotting).items() if not name.startswith("_")
              and not inspect.ismodule(value)
              and getattr(value, "__module__", plotting.__name__) == plotting.__name__}
    assert public - {"annotations"} == {
        "MEASURE_COLORS", "COLUMN_WIDTH_IN", "MIN_FONT_PX", "REPORT_KEY", "set_theme",
        "smallest_text", "figure_report", "figure_png", "displayed_min_font", "grid"}


def test_figure_png_reports_its_size_and_smallest_visible_text():
    import io
    import json

    from PIL import Image

    plotting.set_theme()
    fig, axes = plotting.grid(3, ncols=2)
    assert len(axes) == 3 and len(fig.axes) == 4 and not fig.axes[3].get_visible()
    assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="line")
    axes[0].legend(fontsize=7)
    fig.axes[3].set_title("hidden", fontsize=2)  # in a hidden panel: not drawn, not counted
    axes[1].text(0.5, 0.5, "", fontsize=1)  # empty: not counted
    png, metadata = plotting.figure_png(fig)
    report = metadata[plotting.REPORT_KEY]
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        assert im.size == (report["width_px"], report["height_px"])
        assert json.loads(im.text[plotting.REPORT_KEY]) == report
    assert report["min_font_text"] == "line"
    assert report["min_font_px"] == round(7 * fig.dpi / 72, 2)
    assert plotting.displayed_min_font(report, report["width_px"] / 2) == pytest.approx(
        report["min_font_px"] / 2)
    plt.close(fig)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_grid_refuses_a_bad_panel_count(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        plotting.grid(bad)


def test_signal_noise_figures_fit_the_column_with_a_noise_panel_only_with_a_noise_sweep():
    from matplotlib.colors import to_rgb

    cfg = signal_noise.Config(n_neurons=20, n_points=300, signal_dims=(2, 10, 18), n_repeats=2,
                              spectrum_dims=(2, 18), noise_sweep=(0.01, 1.0), seed=1)
    result = signal_noise.run(cfg, progress=False)
    fig = signal_noise.plot_signal_noise(result)
    assert [ax.get_title() for ax in fig.axes] == ["Similarity vs shared signal"]
    # one line per measure (plus the k/d diagonal)
    assert len(fig.axes[0].get_lines()) >= len(signal_noise.MEASURES) + 1
    assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN
    assert plotting.smallest_text(fig)[0] * fig.dpi / 72 >= plotting.MIN_FONT_PX
    plt.close(fig)

    fig = signal_noise.plot_coefficients(result)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "Sorted CCA coefficients", "Smallest k = 2, varying noise"]
    assert axes[1].get_xscale() == "log"
    assert fig.get_size_inches()[0] <= plotting.COLUMN_WIDTH_IN
    assert plotting.smallest_text(fig)[0] * fig.dpi / 72 >= plotting.MIN_FONT_PX
    # every k's line is visible on white: none of the shades is pale (the largest k was drawn
    # in viridis' near-white yellow)
    lines = [line for line in axes[0].get_lines() if len(line.get_xdata()) == cfg.n_neurons]
    assert len(lines) == len(cfg.spectrum_dims)
    for line in lines:
        r, g, b = to_rgb(line.get_color())
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.8, line.get_color()
    plt.close(fig)

    no_spectra = signal_noise.Result(config=cfg, similarities=result.similarities,
                                     spectra=result.spectra.iloc[:0], noise=result.noise)
    fig = signal_noise.plot_coefficients(no_spectra)
    assert [ax.get_title() for ax in fig.axes] == ["Smallest k = 2, varying noise"]
    plt.close(fig)
    empty = signal_noise.Result(config=cfg, similarities=result.similarities,
                                spectra=result.spectra.iloc[:0], noise=pd.DataFrame())
    with pytest.raises(ValueError, match="neither spectra nor noise"):
        signal_noise.plot_coefficients(empty)
