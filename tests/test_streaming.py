"""cca_lib.Accumulator and compare_models: streamed and merged sums give the in-memory answers
(any batch order, any merge tree), the same rank rule and rescaling, device sums, pickling,
memory independent of n, clear errors; the in-memory functions share the moment code."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import cca_lib
from cca_lib import Accumulator, FewSamplesWarning, cca, compare, linear_cka, pwcca


def related(seed: int, n: int = 2400, d1: int = 11, d2: int = 7):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, d1)) + rng.standard_normal((n, d1)) + 40.0
    y = z @ rng.standard_normal((3, d2)) + rng.standard_normal((n, d2)) - 7.0
    return x, y


def in_memory(x, y):
    """Every measure the accumulator reports, from the in-memory functions."""
    out = compare(x, y)
    out["PWCCA (reverse)"] = pwcca(y, x)
    out["debiased CKA"] = linear_cka(x, y, debiased=True)
    return out


def streamed(x, y, rng, n_parts=9, tree=True):
    """Rows in a random order, cut into uneven batches, each batch its own accumulator, merged
    in a random tree (or fed to one accumulator in turn)."""
    order = rng.permutation(x.shape[0])
    cuts = np.sort(rng.choice(np.arange(1, x.shape[0]), n_parts - 1, replace=False))
    batches = np.split(order, cuts)
    if not tree:
        acc = Accumulator(x.shape[1], y.shape[1])
        for idx in batches:
            acc.update(x[idx], y[idx])
        return acc
    parts = [Accumulator(x.shape[1], y.shape[1]).update(x[i], y[i]) for i in batches]
    while len(parts) > 1:
        i = int(rng.integers(len(parts) - 1))
        a, b = parts.pop(i), parts.pop(i)
        parts.insert(i, a.merge(b) if rng.random() < 0.5 else b.merge(a))
    return parts[0]


def assert_same(acc, x, y, tol=1e-10):
    want, got = in_memory(x, y), acc.measures()
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=tol), k
    assert acc.compare() == pytest.approx(compare(x, y), abs=tol)
    r, r0 = acc.cca(), cca(x, y, variates=False)
    assert (r.dropped_x, r.dropped_y, r.n_samples) == (r0.dropped_x, r0.dropped_y, r0.n_samples)
    np.testing.assert_allclose(r.rho, r0.rho, atol=tol)
    assert r.x_variates is None and r.y_variates is None
    # the canonical directions are those of the in-memory CCA, up to sign
    for w, w0 in ((r.x_weights, r0.x_weights), (r.y_weights, r0.y_weights)):
        signs = np.sign((w * w0).sum(axis=0))
        np.testing.assert_allclose(w, w0 * signs, atol=1e-7 * np.abs(w0).max())
    assert acc.mean_cca() == pytest.approx(cca_lib.mean_cca(x, y), abs=tol)
    assert acc.svcca(keep=4) == pytest.approx(cca_lib.svcca(x, y, keep=4), abs=tol)
    assert acc.pwcca(symmetric=True) == pytest.approx(pwcca(x, y, symmetric=True), abs=tol)
    assert acc.linear_cka() == pytest.approx(linear_cka(x, y), abs=tol)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tree", [True, False])
def test_any_batch_order_and_merge_tree_gives_the_in_memory_answer(seed, tree):
    x, y = related(seed)
    assert_same(streamed(x, y, np.random.default_rng(seed), tree=tree), x, y)


def test_scale_exponent_changing_between_batches():
    """Rows of very different magnitude (the largest value, so the rescaling exponent, changes
    from batch to batch, up and down): still the in-memory answer; and inputs near the ends
    of float64's range stream exactly like the unscaled data."""
    x, y = related(20)
    rng = np.random.default_rng(0)
    rowscale = np.where(np.arange(x.shape[0]) % 3 == 0, 1e-5, 1.0)[:, None]
    xs, ys = x * rowscale, y * rowscale[::-1]
    for order_seed in range(3):
        assert_same(streamed(xs, ys, np.random.default_rng(order_seed), n_parts=15), xs, ys)
    want = in_memory(x, y)
    for s in (1e-300, 1e300):
        got = streamed(x * s, y, rng).measures()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-10), (s, k)


def test_power_of_two_batches_are_rescaled_exactly():
    """An exponent raised by a later batch rescales the sums by powers of two: feeding the
    small rows first or last gives the same numbers to rounding of the merge only."""
    x, y = related(21, n=1200)
    x = x.copy()
    x[:600] = np.ldexp(x[:600], -40)
    a = Accumulator(11, 7).update(x[:600], y[:600]).update(x[600:], y[600:])
    b = Accumulator(11, 7).update(x[600:], y[600:]).update(x[:600], y[:600])
    assert a._m.exp_x == b._m.exp_x
    assert a.measures() == pytest.approx(b.measures(), abs=1e-13)
    assert a.measures() == pytest.approx(in_memory(x, y), abs=1e-10)


def test_dead_duplicate_and_dependent_neurons_are_dropped_as_in_memory():
    x, y = related(22)
    n = x.shape[0]
    rng = np.random.default_rng(1)
    extra = np.column_stack([np.full(n, 3.0), 1e3 + 3e-14 * rng.standard_normal(n),
                             2.5 * x[:, 0], x[:, 1] - x[:, 2]])
    xb = np.hstack([x, extra])
    r0 = cca(xb, y)
    assert r0.dropped_x == 4
    acc = streamed(xb, y, rng)
    assert acc.cca().dropped_x == 4
    assert_same(acc, xb, y)
    # a neuron constant within every batch but not overall is alive
    step = np.repeat([1.0, 2.0], n // 2)
    xs = np.column_stack([x, step])
    acc = Accumulator(12, 7).update(xs[: n // 2], y[: n // 2]).update(xs[n // 2:], y[n // 2:])
    assert acc.cca().dropped_x == cca(xs, y).dropped_x == 0


def test_float32_batches_match_float32_in_memory():
    x, y = related(23)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    acc = streamed(x32, y32, np.random.default_rng(2))
    want = in_memory(x32, y32)
    for k, v in acc.measures().items():
        assert v == pytest.approx(want[k], abs=1e-5), k
    r, r0 = acc.cca(), cca(x32, y32)
    assert (r.dropped_x, r.dropped_y) == (r0.dropped_x, r0.dropped_y)
    # the float32 tolerance applies to an input once any of its batches was float32
    mixed = Accumulator(11, 7).update(x[:1000], y[:1000]).update(x32[1000:], y[1000:])
    g = mixed._m.grams(None)
    assert (g.rtol_x, g.rtol_y) == (3e-3, 1e-6)


def test_pickle_midstream_and_continue():
    x, y = related(24)
    acc = Accumulator(11, 7).update(x[:1000], y[:1000])
    back = pickle.loads(pickle.dumps(acc))
    back.update(x[1000:], y[1000:])
    assert back.n_samples == x.shape[0]
    assert_same(back, x, y)


def test_memory_is_independent_of_n_and_float64():
    x, y = related(25, n=6000)
    few, many = Accumulator(11, 7), Accumulator(11, 7)
    few.update(x[:300], y[:300])
    for i in range(0, 6000, 50):
        many.update(x[i:i + 50], y[i:i + 50])

    def footprint(acc):
        arrays = [np.asarray(v) for v in acc._m.sums.values()]
        assert all(a.dtype == np.float64 for a in arrays)
        return sum(a.size for a in arrays)

    assert footprint(few) == footprint(many) <= 2 * (11 + 7) ** 2
    assert len(pickle.dumps(few)) == pytest.approx(len(pickle.dumps(many)), rel=0.05)


def test_single_rows_and_empty_batches():
    x, y = related(26, n=300)
    acc = Accumulator(11, 7)
    acc.update(x[:0], y[:0])
    assert acc.n_samples == 0
    for i in range(x.shape[0]):
        acc.update(x[i:i + 1], y[i:i + 1])
    assert_same(acc, x, y, tol=1e-9)


def test_in_memory_functions_use_the_moment_code(monkeypatch):
    """No second covariance pass: every in-memory gram-method function goes through
    _Moments.update (the accumulator's), once."""
    import cca_lib.similarity as sim

    calls = []
    original = sim._Moments.update

    def spy(self, x, y):
        calls.append(x.shape)
        return original(self, x, y)

    monkeypatch.setattr(sim._Moments, "update", spy)
    x, y = related(27, n=400)
    fns = (cca, cca_lib.mean_cca, pwcca, cca_lib.svcca, compare, linear_cka,
           lambda a, b: linear_cka(a, b, debiased=True), lambda a, b: cca_lib.distance(a, b))
    for f in fns:
        calls.clear()
        f(x, y)
        assert calls == [x.shape]


def test_bad_input_raises_clear_errors():
    x, y = related(28, n=200)
    acc = Accumulator(11, 7)
    with pytest.raises(ValueError, match=r"x_batch has shape \(200, 7\) but this accumulator "
                                         r"was made for 11 features"):
        acc.update(y, y)
    with pytest.raises(ValueError, match=r"y_batch has shape \(200, 11\).*7 features"):
        acc.update(x, x)
    with pytest.raises(ValueError, match="x_batch has 200 rows but y_batch has 100"):
        acc.update(x, y[:100])
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"x_batch contains NaN or inf values \(shape"):
        acc.update(bad, y)
    with pytest.raises(TypeError, match="y_batch must have dtype float32 or float64"):
        acc.update(x, y.astype(int))
    with pytest.raises(ValueError, match="x_batch must be 2-D"):
        acc.update(x[:, 0], y)
    assert acc.n_samples == 0  # nothing was added by the refused batches
    with pytest.raises(ValueError, match="0 samples; at least 2"):
        acc.compare()
    with pytest.raises(ValueError, match="d1 must be a positive int"):
        Accumulator(0, 3)
    with pytest.raises(ValueError, match=r"other has widths \(d1, d2\) = \(7, 11\)"):
        acc.merge(Accumulator(7, 11))
    with pytest.raises(ValueError, match="into itself"):
        acc.merge(acc)
    with pytest.raises(TypeError, match="other must be an Accumulator"):
        acc.merge(x)
    acc.update(x[:15], y[:15])
    with pytest.raises(ValueError, match="trivially 1"):
        acc.pwcca()
    with pytest.warns(FewSamplesWarning) as record:
        acc.mean_cca(allow_few_samples=True)
    assert record[0].filename == __file__
    with pytest.raises(ValueError, match="keep must be"):
        acc.svcca(keep=0)


# ----------------------------------------------------------------------- torch / device sums


@pytest.fixture
def device_branch(monkeypatch):
    """Declare every CPU tensor a device tensor (as tests/test_similarity.py does), so the
    torch branch (sums on the batches' device) runs without a GPU."""
    torch = pytest.importorskip("torch")
    import cca_lib._validation as validation
    import cca_lib.similarity as sim

    monkeypatch.setattr(sim, "on_cuda", sim.is_torch)
    monkeypatch.setattr(validation, "on_cuda", validation.is_torch)
    return torch


def test_device_sums_match_numpy(device_branch):
    torch = device_branch
    x, y = related(30)
    rng = np.random.default_rng(3)
    idx = np.array_split(rng.permutation(x.shape[0]), 5)
    acc = Accumulator(11, 7)
    for i, part in enumerate(idx):
        xb, yb = torch.from_numpy(x[part]), torch.from_numpy(y[part])
        # a numpy batch given to a device accumulator is moved to its device
        acc.update(xb if i != 2 else x[part], yb)
    assert acc.device == torch.device("cpu")
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float64
               for v in acc._m.sums.values())
    assert_same(acc, x, y)
    # merging host sums into device sums (and back), and pickling device sums
    host = Accumulator(11, 7).update(x[:1000], y[:1000])
    dev = Accumulator(11, 7).update(torch.from_numpy(x[1000:]), torch.from_numpy(y[1000:]))
    assert_same(pickle.loads(pickle.dumps(dev)).merge(host), x, y)
    assert_same(Accumulator(11, 7).update(x[:1000], y[:1000]).merge(dev), x, y)
    # float32 device batches
    acc32 = Accumulator(11, 7)
    for part in idx:
        acc32.update(torch.from_numpy(x[part]).float(), torch.from_numpy(y[part]).float())
    for k, v in acc32.measures().items():
        assert v == pytest.approx(in_memory(x.astype(np.float32), y.astype(np.float32))[k],
                                  abs=1e-5), k


def test_device_batch_into_host_sums_is_refused(device_branch):
    torch = device_branch
    x, y = related(31, n=300)
    acc = Accumulator(11, 7).update(x[:100], y[:100])
    with pytest.raises(ValueError, match="x_batch is on cpu but this accumulator holds its "
                                         "sums on the host"):
        acc.update(torch.from_numpy(x[100:]), y[100:])
    with pytest.raises(ValueError, match="NaN or inf"):
        acc.update(x[100:], torch.full((200, 7), float("nan"), dtype=torch.float64))


def test_torch_cpu_tensors_use_host_sums():
    torch = pytest.importorskip("torch")
    x, y = related(32)
    acc = Accumulator(11, 7).update(torch.from_numpy(x[:900]), y[:900])
    acc.update(x[900:], torch.from_numpy(y[900:]).requires_grad_())
    assert acc.device is None
    assert_same(acc, x, y)


@pytest.mark.skipif("not __import__('importlib').util.find_spec('torch') or "
                    "not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_cuda_batches_stay_on_the_gpu():
    import torch

    x, y = related(33)
    acc = Accumulator(11, 7)
    for part in np.array_split(np.arange(x.shape[0]), 4):
        acc.update(torch.from_numpy(x[part]).cuda(), torch.from_numpy(y[part]).cuda())
    assert acc.device.type == "cuda"
    assert all(v.device.type == "cuda" for v in acc._m.sums.values())
    assert_same(acc, x, y)


# ----------------------------------------------------------------------- compare_models


def _models(torch, seed):
    from torch import nn

    torch.manual_seed(seed)
    a = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 12), nn.Tanh(),
                      nn.Linear(12, 3))
    b = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 9), nn.ReLU(inplace=True),
                      nn.Linear(9, 3))
    return a.double(), b.double()


def test_compare_models_equals_in_memory_comparison():
    torch = pytest.importorskip("torch")
    a, b = _models(torch, 0)
    a.train()
    inputs = torch.randn(700, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    accs = cca_lib.compare_models(a, b, inputs, ["0", "2", "4"], ["1", "2", "4"],
                                  batch_size=64)
    assert set(accs) == {("0", "1"), ("2", "2"), ("4", "4")}
    with torch.no_grad():
        acts_a = {"0": a[0](inputs), "2": a[:3](inputs), "4": a(inputs)}
        # b's ReLU(inplace) at index 3 overwrites layer 2's output in place: the hook copied it
        acts_b = {"1": torch.relu(b[0](inputs)), "2": b[:3](inputs), "4": b(inputs)}
    for (la, lb), acc in accs.items():
        x, y = acts_a[la].numpy(), acts_b[lb].numpy()
        assert acc.n_samples == 700
        assert acc.compare() == pytest.approx(compare(x, y), abs=1e-10), (la, lb)
    assert a.training and b.training  # the flags are restored
    assert not any(m._forward_hooks for m in list(a.modules()) + list(b.modules()))


def test_compare_models_conv_modes_and_errors():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
    other = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
    imgs = torch.randn(90, 3, 5, 5)
    with torch.no_grad():
        out_a, out_b = conv(imgs), other(imgs)
    pos = cca_lib.compare_models(conv, other, imgs, ["2"], ["1"], mode="positions",
                                 batch_size=16)[("2", "1")]
    xa = out_a.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    xb = out_b.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
    assert pos.n_samples == 90 * 25 and pos.n_inputs == 90  # rows of one image: one input
    assert pos.compare() == pytest.approx(compare(xa, xb), abs=1e-5)
    mean = cca_lib.compare_models(conv, other, imgs, ["2"], ["1"])[("2", "1")]
    assert mean.linear_cka() == pytest.approx(
        linear_cka(out_a.mean((2, 3)).numpy(), out_b.mean((2, 3)).numpy()), abs=1e-5)
    with pytest.raises(ValueError, match=r"layers_a: .*'02'.*did you mean"):
        cca_lib.compare_models(conv, other, imgs, ["02"], ["1"])
    with pytest.raises(ValueError, match="mode must be one of"):
        cca_lib.compare_models(conv, other, imgs, ["2"], ["1"], mode="pool")
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.spare = nn.Conv2d(3, 5, 3, padding=1), nn.Linear(2, 2)

        def forward(self, x):
            return self.body(x)

    unused = WithSpare()
    conv.train()
    with pytest.raises(ValueError, match=r"model_b's layers \['spare'\] produced no output"):
        cca_lib.compare_models(conv, unused, imgs, ["2"], ["spare"])
    assert conv.training  # restored on error, hooks removed
    assert not any(m._forward_hooks for m in list(conv.modules()) + list(unused.modules()))


def test_compare_models_dataloader_of_tuples():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    a, b = _models(torch, 2)
    x = torch.randn(300, 6, dtype=torch.float64)
    ds = TensorDataset(x, torch.zeros(300))
    one = cca_lib.compare_models(a, b, DataLoader(ds, batch_size=50), ["2"])[("2", "2")]
    two = cca_lib.compare_models(a, b, ds, ["2"], batch_size=7)[("2", "2")]
    three = cca_lib.compare_models(a, b, x, ["2"])[("2", "2")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        assert one.measures() == pytest.approx(three.measures(), abs=1e-10)
        assert two.measures() == pytest.approx(three.measures(), abs=1e-10)


def test_compare_models_uses_the_capture_hooks(monkeypatch):
    """One hook mechanism: compare_models registers capture's hooks (so it inherits their
    checks: a module run twice in a pass, the batch axis, a shuffling DataLoader)."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from cca_lib import capture as cap

    made = []
    real = cap._Hooks.__enter__

    def spy(self):
        made.append(type(self).__name__)
        return real(self)

    monkeypatch.setattr(cap._Hooks, "__enter__", spy)
    a, b = _models(torch, 3)
    x = torch.randn(120, 6, dtype=torch.float64)
    cca_lib.compare_models(a, b, x, ["2"])
    assert made == ["_Streamer", "_Streamer"]

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(6, 6).double(), nn.Tanh()

        def forward(self, x):
            return self.act(self.lin(self.act(x)))

    with pytest.raises(ValueError, match="model_b's layer 'act' ran more than once"):
        cca_lib.compare_models(a, Twice(), x, ["3"], ["act"])
    class Transpose(nn.Module):
        def forward(self, x):
            return x.T

    flipped = nn.Sequential(nn.Linear(6, 6).double(), Transpose())
    with pytest.raises(ValueError, match="layer '1' gives shape .* batch must be its first axis"):
        cca_lib.compare_models(a, flipped, x, ["2"], ["1"])
    with pytest.raises(ValueError, match="shuffle=True"):
        cca_lib.compare_models(a, b, DataLoader(TensorDataset(x), batch_size=10, shuffle=True),
                               ["2"])
    assert not any(m._forward_hooks for m in list(a.modules()) + list(b.modules()))
