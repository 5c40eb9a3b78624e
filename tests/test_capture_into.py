"""capture_into: a layer streamed from the hooks into accumulators equals capture + the in-memory
functions, never holds more than one batch (memory flat in n), counts inputs (not rows) for the
few-samples warning and floors, and shares capture's hook code and errors."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cca_lib import Accumulator, FewSamplesWarning, compare, stats  # noqa: E402
from cca_lib.capture import capture, capture_into  # noqa: E402


def convnet(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(6, 5, 3, padding=1), nn.Tanh()).to(dtype)


def test_streamed_positions_equal_in_memory_capture_and_cca():
    net = convnet()
    imgs = torch.randn(80, 3, 6, 6, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))
    accs = {("0", "2"): Accumulator(6, 5), ("2", "3"): Accumulator(5, 5)}
    out = capture_into(net, imgs, None, accs, mode="positions", batch_size=7)
    assert out is accs
    with torch.no_grad():
        # layer 0's output before the ReLU(inplace) that follows: the hook kept a copy
        want = {"0": net[0](imgs), "2": net[:3](imgs), "3": net(imgs)}
    rows = {k: v.permute(0, 2, 3, 1).reshape(-1, v.shape[1]).numpy() for k, v in want.items()}
    for (lx, ly), acc in accs.items():
        assert acc.n_samples == 80 * 36 and acc.n_inputs == 80
        assert acc.measures() == pytest.approx(
            {**compare(rows[lx], rows[ly]), "PWCCA (reverse)": acc.pwcca(reverse=True),
             "debiased CKA": acc.linear_cka(debiased=True)}, abs=1e-10)
        assert acc.compare() == pytest.approx(compare(rows[lx], rows[ly]), abs=1e-10)
    # a float32 model against capture()'s float32 arrays (float32 products: to 1e-5)
    net32 = convnet(torch.float32)
    x32 = imgs.float()
    acts = capture(net32, x32, ["0", "2"], mode="positions")
    acc = capture_into(net32, x32, None, {("0", "2"): Accumulator(6, 5)},
                       mode="positions", batch_size=9)[("0", "2")]
    assert acc.compare() == pytest.approx(compare(acts["0"], acts["2"]), abs=1e-5)
    assert not any(m._forward_hooks for m in net.modules())


def _peak(n_images, batch):
    net = convnet()
    imgs = torch.randn(n_images, 3, 8, 8, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(2))
    acc = {("0", "2"): Accumulator(6, 5)}
    tracemalloc.start()
    try:
        capture_into(net, imgs, None, acc, mode="positions", batch_size=batch)
        return tracemalloc.get_traced_memory()[1], acc[("0", "2")]
    finally:
        tracemalloc.stop()


def test_memory_of_the_streamed_path_does_not_grow_with_n():
    small, _ = _peak(100, 25)
    big, acc = _peak(1600, 25)
    full = 1600 * 64 * (6 + 5) * 8  # the two layers' positions rows in float64: 9 MB
    assert acc.n_samples == 1600 * 64
    assert big < 1.5 * small + 64_000, (small, big)
    assert big < full / 20, (big, full)
    # the largest batch a callable sink ever sees is one batch of rows
    sizes = []
    capture_into(convnet(), torch.randn(60, 3, 8, 8, dtype=torch.float64), ["2"],
                 lambda acts, k: sizes.append((acts["2"].shape, k)), mode="positions",
                 batch_size=16)
    assert sizes == [((16 * 64, 5), 16)] * 3 + [((12 * 64, 5), 12)]


def test_rows_of_one_image_count_as_one_input():
    net = convnet()
    imgs = torch.randn(20, 3, 6, 6, dtype=torch.float64)
    acc = capture_into(net, imgs, None, {("0", "2"): Accumulator(6, 5)}, mode="positions",
                       batch_size=8)[("0", "2")]
    # 720 rows for 6 features would not warn; 20 images for 6 features do, with the floor of
    # unrelated data for n = 20 inputs
    floors = stats.expected_floors(20, 6, 5)
    with pytest.warns(FewSamplesWarning, match=r"only 20 independent inputs \(720 rows\)") as w:
        acc.mean_cca()
    assert f"mean CCA ~ {floors['mean CCA']:.2f}" in str(w[0].message)
    assert w[0].filename == __file__
    assert acc.expected_floors() == floors
    rng = np.random.default_rng(0)
    one_per_row = Accumulator(6, 5).update(rng.standard_normal((9, 6)),
                                           rng.standard_normal((9, 5)))
    assert one_per_row.n_inputs == one_per_row.n_samples == 9
    merged = Accumulator(6, 5).merge(acc).merge(one_per_row)
    assert merged.n_inputs == 29 and merged.n_samples == 729
    with pytest.raises(ValueError, match="n_inputs must be an int from 1"):
        Accumulator(2, 2).update(np.zeros((3, 2)), np.zeros((3, 2)), n_inputs=4)


def test_errors_are_capture_errors():
    net = convnet()
    imgs = torch.randn(10, 3, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="did you mean"):
        capture_into(net, imgs, None, {("0", "22"): Accumulator(6, 5)})
    with pytest.raises(ValueError, match="mode must be one of"):
        capture_into(net, imgs, None, {("0", "2"): Accumulator(6, 5)}, mode="raw")
    with pytest.raises(ValueError, match="this accumulator was made for"):
        capture_into(net, imgs, None, {("0", "2"): Accumulator(5, 5)})
    with pytest.raises(TypeError, match="must be an Accumulator"):
        capture_into(net, imgs, None, {("0", "2"): object()})
    with pytest.raises(TypeError, match="sink must be"):
        capture_into(net, imgs, ["0"], 3)
    with pytest.raises(ValueError, match=r"sink pairs layers \['2'\]"):
        capture_into(net, imgs, ["0"], {("0", "2"): Accumulator(6, 5)})
    spare = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    spare.forward = lambda x: spare[0](x)
    with pytest.raises(ValueError, match=r"\['1'\] produced no output"):
        capture_into(spare, torch.randn(20, 4), ["0", "1"], lambda a, k: None)
    assert not any(m._forward_hooks for m in net.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capture_into(net, imgs, ["3"], lambda a, k: None)  # plain run: no warning
