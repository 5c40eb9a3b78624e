"""Shared analyses: cluster statistics against known answers, distances to a reference, the
log-step area, the per-net table and the probe images."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _engine_data import N_TRAIN, activate

from cca_lib import analysis
from cca_lib.similarity import distance


def test_adjusted_rand_index_known_values():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert analysis.adjusted_rand_index(a, a) == pytest.approx(1.0)
    assert analysis.adjusted_rand_index(a, np.array([5, 5, 7, 7, 9, 9])) == pytest.approx(1.0)
    # a textbook example: ARI of these two partitions is 0.24242...
    x = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([0, 0, 1, 1, 2, 2])
    assert analysis.adjusted_rand_index(x, y) == pytest.approx(0.2424242424)
    rng = np.random.default_rng(0)
    vals = [analysis.adjusted_rand_index(rng.integers(0, 4, 200), rng.integers(0, 4, 200))
            for _ in range(20)]
    assert abs(np.mean(vals)) < 0.02
    with pytest.raises(ValueError):
        analysis.adjusted_rand_index(a, a[:-1])


def test_silhouette_matches_hand_computation():
    pts = np.array([0.0, 1.0, 10.0, 11.0, 12.0])
    dist = np.abs(pts[:, None] - pts[None, :])
    labels = np.array([1, 1, 2, 2, 2])
    # point 0: a = 1, b = mean(10, 11, 12) = 11 -> 10/11
    s = [(11 - 1) / 11, (10 - 1) / 10, (9.5 - 1.5) / 9.5, (10.5 - 1) / 10.5, (11.5 - 1.5) / 11.5]
    assert analysis.silhouette(dist, labels) == pytest.approx(np.mean(s))
    # a singleton cluster scores 0 for its point
    s2 = [0.0, -8 / 9, -7.5 / 9, 4.5 / 5.5, 5.5 / 6.5]
    assert analysis.silhouette(dist, np.array([1, 2, 2, 3, 3])) == pytest.approx(np.mean(s2))
    with pytest.raises(ValueError, match="clusters"):
        analysis.silhouette(dist, np.ones(5))


def test_reference_distances_are_the_four_measures_with_weights_from_the_reference():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((400, 6))
    x = ref @ rng.standard_normal((6, 6)) + 0.5 * rng.standard_normal((400, 6))
    d = analysis.reference_distances(ref, x)
    assert tuple(d) == analysis.REFERENCE_MEASURES
    assert d["PWCCA"] == distance(ref, x, method="pwcca")
    assert d["PWCCA"] != distance(x, ref, method="pwcca")  # weights from ref, not from x
    assert d["mean CCA"] == distance(ref, x, method="mean_cca")
    assert d["cosine"] == analysis.cosine_distance(x, ref)
    assert d["Euclidean"] == analysis.euclidean_distance(x, ref)
    # float32 input is compared in float64
    assert analysis.reference_distances(ref.astype(np.float32), x.astype(np.float32)) == \
        analysis.reference_distances(ref.astype(np.float32).astype(np.float64),
                                     x.astype(np.float32).astype(np.float64))
    # an invertible linear map of the reference: CCA says identical, cosine does not
    same = analysis.reference_distances(ref, ref @ rng.standard_normal((6, 6)))
    assert same["PWCCA"] < 1e-8 and same["mean CCA"] < 1e-8 and same["cosine"] > 0.1


def test_log_step_area_known_values():
    steps = np.array([1, 10, 100, 1000])
    # a straight line in log10(step) is integrated exactly: int_0^3 u du = 4.5
    assert analysis.log_step_area(steps, np.log10(steps), base=10) == pytest.approx(4.5)
    # a constant curve's time-average is the constant, in any base
    for base in (math.e, 2.0, 10.0):
        assert analysis.log_step_area(steps, np.full(4, 0.3), base=base,
                                      mean=True) == pytest.approx(0.3)
    y = np.random.default_rng(1).uniform(size=(4, 3))
    area = analysis.log_step_area(steps, y)
    assert area.shape == (3,)
    np.testing.assert_allclose(area, [analysis.log_step_area(steps, y[:, k]) for k in range(3)])
    np.testing.assert_allclose(area, analysis.log_step_area(steps, y, base=10) * math.log(10))
    np.testing.assert_allclose(analysis.log_step_area(steps, y, mean=True),
                               analysis.log_step_area(steps, y, base=10, mean=True))


def test_log_step_area_equals_numpy_trapezoid_bit_for_bit():
    rng = np.random.default_rng(2)
    steps = np.unique(rng.integers(1, 5000, 30))
    y = rng.uniform(size=len(steps))
    assert analysis.log_step_area(steps, y, base=10) == np.trapezoid(y, np.log10(steps))


def test_log_step_area_rejects_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        analysis.log_step_area([1, 10, 10], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="positive"):
        analysis.log_step_area([0, 10, 100], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"values must be \(3,\)"):
        analysis.log_step_area([1, 10, 100], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        analysis.log_step_area([1], [0.1])
    with pytest.raises(ValueError, match="base"):
        analysis.log_step_area([1, 10], [0.1, 0.2], base=3)


def _run(seed, converged=True, **metrics):
    return SimpleNamespace(config=SimpleNamespace(seed=seed), metrics=metrics,
                           converged=converged, reason="" if converged else "diverged")


def test_nets_frame_one_row_per_run_labels_first():
    runs = [_run(3, test_acc=0.8, train_acc=0.9), _run(4, False, train_acc=0.2)]
    nets = analysis.nets_frame(runs, width=[8, 16], group=["a", "b"])
    assert list(nets.columns) == ["width", "group", "seed", "test_acc", "train_acc",
                                  "converged", "reason"]
    assert nets["seed"].tolist() == [3, 4] and nets["width"].tolist() == [8, 16]
    assert nets.loc[0, "test_acc"] == 0.8 and np.isnan(nets.loc[1, "test_acc"])
    assert nets["converged"].tolist() == [True, False]
    assert nets["reason"].tolist() == ["", "diverged"]
    with pytest.raises(ValueError, match="'width' has 1 values for 2 runs"):
        analysis.nets_frame(runs, width=[8])


def test_probe_images_are_the_first_images_of_the_split(tmp_path, monkeypatch):
    from cca_lib import data

    activate(tmp_path, monkeypatch)
    probe = analysis.probe_images("fashion-mnist", "train", 50)
    full = data.load_images("fashion-mnist", "train", progress=False)
    assert len(full.images) == N_TRAIN and probe.images.shape[0] == 50
    assert np.array_equal(probe.images.numpy(), full.images[:50].numpy())
    assert np.array_equal(probe.labels.numpy(), full.labels[:50].numpy())


class _Run:
    def __init__(self, history, metrics=None, converged=True, reason=""):
        self.history, self.metrics = pd.DataFrame(history), metrics or {}
        self.converged, self.reason, self.key = converged, reason, "k"


def test_trained_classifier_needs_a_flat_last_fifth():
    steps = [0, 20, 40, 60, 80, 100]
    flat = _Run({"step": steps, "test_acc": [0.1, 0.6, 0.8, 0.85, 0.851, 0.853]})
    assert analysis.trained(flat)[0]  # 0.851 at step 80 -> 0.853: 0.2 points
    rising = _Run({"step": steps, "test_acc": [0.1, 0.6, 0.8, 0.85, 0.86, 0.87]})
    ok, why = analysis.trained(rising)
    assert not ok and "1.00 points" in why
    nan_stop = _Run({"step": steps, "test_acc": [0.1] * 6}, converged=False,
                    reason="non-finite loss at step 3")
    assert not analysis.trained(nan_stop)[0]


def test_trained_memorizer_and_language_model():
    mem = _Run({"step": [0, 10], "test_acc": [0.1, 0.1]}, metrics={"train_acc": 0.995})
    assert analysis.trained(mem, memorizing=True)[0]
    assert not analysis.trained(_Run({"step": [0, 10], "test_acc": [0.1, 0.1]},
                                     metrics={"train_acc": 0.98}), memorizing=True)[0]
    steps = [0, 50, 80, 100]
    assert analysis.trained(_Run({"step": steps, "valid_loss": [5.0, 2.0, 1.50, 1.49]}))[0]
    ok, why = analysis.trained(_Run({"step": steps, "valid_loss": [5.0, 2.0, 1.50, 1.40]}))
    assert not ok and "6.67%" in why
