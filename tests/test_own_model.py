"""The compare-your-own-model chapter: a tiny run end to end, its sanity criteria on hand-built
results, its config rules, the model's shapes and the notebook's check cell."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cca_lib import compare
from cca_lib.capture import capture
from cca_lib.claims import STATUSES
from cca_lib.experiments import own_model
from cca_lib.fourier import FourierCCAResult

ROOT = Path(__file__).resolve().parents[1]

TINY = own_model.Config(width=2, train_size=256, epochs=1.0, batch_size=64, probe_size=120,
                        stream_size=300, sweep_ratios=(3,), n_perm=19)


@pytest.fixture(scope="module")
def tiny():
    import warnings

    from cca_lib import FewSamplesWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)  # 300 images for 128 features
        return own_model.run(TINY, progress=False)


def test_tiny_run_streams_exactly_and_passes_the_exactness_criteria(tiny):
    r, cfg = tiny, TINY
    assert list(r.nets["seed"]) == [cfg.seed, cfg.seed + 1]
    assert r.probe.shape == (cfg.probe_size, 1, 28, 28)
    # every conv layer in every mode; flatten is not computable at n = 120 (<= 2 x C H W)
    assert set(r.modes["layer"]) == set(own_model.CONV_LAYERS)
    assert set(r.modes["mode"]) == set(own_model.MODES)
    flat = r.modes[r.modes["mode"] == "flatten"]
    assert flat["similarity"].isna().all()
    assert (flat["rows"] <= 2 * flat["features"]).all()
    pos = r.modes[r.modes["mode"] == "positions"].set_index("layer")
    assert pos.loc["stem", "rows"].iloc[0] == cfg.probe_size * 14 * 14
    # the streamed results: exact on the probe, all images counted
    s = r.streamed
    assert (s["in memory (probe)"] - s["streamed (probe)"]).abs().max() < 1e-10
    assert (s[s["layer"] == "block2"]["rows (all images)"] == cfg.stream_size * 16).all()
    assert r.running["images"].max() == cfg.stream_size
    # the command line example: block2 in mean mode, float64
    x, y = r.example
    assert x.dtype == np.float64 and x.shape == (cfg.probe_size, cfg.d_last)
    assert r.matrix["linear CKA"].shape == (len(own_model.LAYERS), len(own_model.LAYERS))
    assert list(r.sweep["n"].unique()) == list(cfg.probe_counts)
    crit = own_model.check(r)
    assert [c.passed for c in crit[1:4]] == [True, True, True]
    assert isinstance(crit[0].passed, bool) and crit[4].passed is None


def test_the_layer_matrix_is_net_0_against_net_1(tiny):
    r = tiny
    i, j = own_model.LAYERS.index("block1"), own_model.LAYERS.index("block2")
    acts = [capture(m, r.probe, ["block1", "block2"]) for m in r.models]
    x = acts[0]["block1"].astype(np.float64)
    y = acts[1]["block2"].astype(np.float64)
    v = compare(x, y)
    assert r.matrix["linear CKA"][i, j] == pytest.approx(v["linear CKA"], abs=1e-9)
    row = r.directions[(r.directions["layer of net 0"] == "block1")
                       & (r.directions["layer of net 1"] == "block2")].iloc[0]
    assert row["PWCCA (weights from net 0)"] == pytest.approx(v["PWCCA"], abs=1e-9)


def test_training_is_seeded():
    from cca_lib import data

    train = data.load_images("fashion-mnist", "train", 128, progress=False)
    test = data.load_images("fashion-mnist", "test", 100, progress=False)
    cfg = dataclasses.replace(TINY, train_size=128, epochs=1.0)
    a, acc_a = own_model.train_net(cfg, 3, train, test)
    b, acc_b = own_model.train_net(cfg, 3, train, test)
    c, _ = own_model.train_net(cfg, 4, train, test)
    assert acc_a == acc_b
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)


@pytest.mark.parametrize("side, stem", [(28, 14), (32, 16)])
def test_model_shapes_match_the_config(side, stem):
    model = own_model.TinyResNet(width=3, in_channels=1 if side == 28 else 3)
    x = torch.randn(5, 1 if side == 28 else 3, side, side)
    acts = capture(model, x, ["stem", "block1", "block2", "fc"], mode="raw")
    assert acts["stem"].shape == (5, 3, stem, stem)
    assert acts["block2"].shape == (5, 12, 4, 4)
    assert acts["fc"].shape == (5, 10)
    cfg = dataclasses.replace(TINY, width=3, stream_size=500,
                              dataset="fashion-mnist" if side == 28 else "cifar-10")
    assert cfg.stem_side == stem
    assert cfg.flatten_features == int(np.prod(acts["block2"].shape[1:]))
    assert model.training  # capture restored the train/eval flag


@pytest.mark.parametrize("change, match", [
    ({"stream_size": 100}, "stream_size must be >= probe_size"),
    ({"stream_size": 250}, "stream_size must exceed twice block2's flattened features"),
    ({"sweep_ratios": (3, 20)}, r"sweep_ratios \[20\]"),
    ({"sweep_ratios": (2,)}, "sweep_ratios"),
    ({"train_size": 32}, "train_size must be >= batch_size"),
    ({"n_perm": 5}, "n_perm"),
    ({"probe_size": 32, "sweep_ratios": (3,)}, "probe_size must exceed 4 x block2's 8"),
])
def test_config_rules(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_fourier_floor_weights_each_block_by_its_coefficients():
    from cca_lib import stats

    res = FourierCCAResult(rho=np.zeros(12), frequencies=((0, 0), (0, 1)),
                           rho_by_frequency=(np.zeros(4), np.zeros(8)), size=(2, 2),
                           dropped_x=0, dropped_y=0, n_samples=200)
    want = (4 * stats.expected_null(200, 4, 4) + 8 * stats.expected_null(200, 8, 8)) / 12
    assert own_model.fourier_floor(200, res) == pytest.approx(want, rel=1e-12)
    assert own_model.fourier_floor(200, res) != pytest.approx(
        (stats.expected_null(200, 4, 4) + stats.expected_null(200, 8, 8)) / 2, rel=1e-6)


# -- the sanity criteria on hand-built results ------------------------------------------------

def _result(acc=(0.8, 0.82), exact_gap=0.0, float32_gap=1e-7, fourier_top=0.99):
    streamed = pd.DataFrame({
        "layer": ["stem", "block2"], "measure": ["mean CCA", "linear CKA"],
        "in memory (probe)": [0.5, 0.7], "streamed (probe)": [0.5 + exact_gap, 0.7],
        "streamed (all images)": [0.51, 0.69],
        "compare_models (all images)": [0.51, 0.69 + float32_gap]})
    flatten = pd.DataFrame({
        "comparison": ["flatten (compare_models)", "Fourier (raw maps)"] * 2,
        "measure": ["mean CCA", "mean CCA", "largest coefficient", "largest coefficient"],
        "similarity": [0.45, 0.38, 0.995, fourier_top]})
    nets = pd.DataFrame({"seed": [0, 1], "test_acc": list(acc), "acc_at_80": [0.8, 0.8],
                         "trained": [True, False]})
    modes = pd.DataFrame({"layer": ["block2"], "mode": ["mean"],
                          "measure": ["PWCCA (symmetric)"], "p_value": [0.02]})
    return own_model.Result(
        config=TINY, models=(None, None), probe=None, nets=nets, modes=modes,
        position_floors=pd.DataFrame(), sweep=pd.DataFrame(), directions=pd.DataFrame(),
        matrix={}, matrix_floor={}, running=pd.DataFrame(), streamed=streamed,
        flatten=flatten, example=(None, None))


def test_check_passes_a_sound_result():
    crit = own_model.check(_result())
    assert [c.passed for c in crit] == [True, True, True, True, None, None]
    assert crit[4].measured == "1 of 2"
    assert crit[5].measured == pytest.approx(0.02)


@pytest.mark.parametrize("kw, failing", [
    ({"acc": (0.8, 0.3)}, 0),                    # a net that did not learn its task
    ({"exact_gap": 1e-8}, 1),                    # the stream is not the in-memory result
    ({"float32_gap": 1e-3}, 2),                  # compare_models off by more than float32
    ({"fourier_top": 0.996}, 3),                 # a Fourier coefficient above the full CCA's
])
def test_check_fails_each_criterion_on_its_own(kw, failing):
    crit = own_model.check(_result(**kw))
    assert [i for i, c in enumerate(crit) if c.passed is False] == [failing]


def test_check_thresholds_are_the_module_constants():
    crit = own_model.check(_result(exact_gap=0.9 * own_model.STREAM_TOL,
                                   float32_gap=0.9 * own_model.FLOAT32_TOL,
                                   fourier_top=0.995 + 0.9 * own_model.FLOAT32_TOL,
                                   acc=(own_model.MIN_TEST_ACC, 0.9)))
    assert all(c.passed for c in crit[:4])


# -- the notebook -----------------------------------------------------------------------------

def _code_cells() -> list[str]:
    nb = json.loads((ROOT / "notebooks" / "own_model.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_shows_and_asserts_the_check_and_decides_nothing_itself():
    code = _code_cells()
    checks = [c for c in code if "own_model.check(result)" in c]
    assert len(checks) == 1, "expected one cell calling check(result)"
    assert "book.evidence_table(" in checks[0] and "assert " in checks[0]
    assert not any("book.record(" in c for c in code), "this chapter tests no claim"
    for cell in code:
        assert not re.search(r"^\s*def ", cell, re.M), "a cell defines a function"
        for verdict in STATUSES:
            assert f'"{verdict}"' not in cell and f"'{verdict}'" not in cell


def test_notebook_runs_the_command_line_on_npy_files():
    code = "\n".join(_code_cells())
    assert '"-m", "cca_lib", "compare"' in code and "np.save(" in code


@pytest.mark.parametrize("name", ["plot_modes", "plot_floor_sweep", "plot_directions",
                                  "plot_matrix", "plot_streaming"])
def test_figures_fit_the_column_with_legible_text(tiny, name):
    import matplotlib.pyplot as plt

    from cca_lib import plotting

    plotting.set_theme()  # the book's theme, as every notebook sets it
    fig = getattr(own_model, name)(tiny)
    try:
        width, _ = fig.get_size_inches()
        assert width <= plotting.COLUMN_WIDTH_IN + 1e-9
        points, text = plotting.smallest_text(fig)
        assert points * 100 / 72 >= plotting.MIN_FONT_PX, (name, text, points)
    finally:
        plt.close(fig)
