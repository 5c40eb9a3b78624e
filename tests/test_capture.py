"""Engine: activation capture (CNN spatial means / positions, LSTM timesteps and windows)."""

import hashlib
import io
import json
import warnings

import numpy as np
import pytest
import torch
from _engine_data import N_TRAIN, activate

from cca_lib import capture, data, models, training


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_cnn_capture_means_and_positions():
    torch.manual_seed(0)
    net = models.make_cnn(4)
    x = torch.randn(6, 1, 16, 16)
    acts = capture.capture(net, x, batch_size=4)
    assert set(acts) == set(net.layer_names)
    assert acts["conv1"].shape == (6, 4) and acts["conv4"].shape == (6, 16)
    assert acts["logits"].shape == (6, 10)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in acts.values())
    pos = capture.capture(net, x, ["conv2", "logits"], mode="positions")
    assert pos["conv2"].shape == (6 * 4 * 4, 8) and pos["logits"].shape == (6, 10)
    # positions are image-major: averaging each image's rows gives the spatial means
    np.testing.assert_allclose(pos["conv2"].reshape(6, 16, 8).mean(1), acts["conv2"], atol=1e-6)
    assert net.training  # the training flag is restored
    with pytest.raises(ValueError, match="not in the model's layers"):
        capture.capture(net, x, "conv9")
    with pytest.raises(ValueError, match="mode"):
        capture.capture(net, x, mode="flat")
    with pytest.raises(ValueError, match="float"):
        capture.capture(net, torch.zeros(6, 16, 16))


def test_lstm_capture_timesteps():
    torch.manual_seed(0)
    lm = models.LSTMLM(20, embed_dim=6, hidden_size=9, n_layers=2)
    ids = torch.randint(0, 20, (5, 7))
    acts = capture.capture(lm, ids, batch_size=2)
    assert acts["lstm1"].shape == (5, 7, 9) and acts["lstm2"].dtype == np.float32
    flat = capture.flatten_timesteps(acts)
    assert flat["lstm2"].shape == (35, 9)
    np.testing.assert_array_equal(flat["lstm2"][7 * 2 + 3], acts["lstm2"][2, 3])
    last = capture.at_timestep(acts, -1)
    assert last["lstm1"].shape == (5, 9)
    np.testing.assert_array_equal(last["lstm1"], acts["lstm1"][:, 6])
    with pytest.raises(ValueError, match="int64"):
        capture.capture(lm, ids.float())
    with pytest.raises(ValueError, match="out of range"):
        capture.at_timestep(acts["lstm1"], 7)


def test_capture_windows_carry_and_reset():
    torch.manual_seed(0)
    lm = models.LSTMLM(20, embed_dim=6, hidden_size=9, n_layers=2).eval()
    ids = torch.randint(0, 20, (130,))
    carry = capture.capture_windows(lm, ids, window=5, n_windows=24, n_streams=4)
    assert carry["lstm2"].shape == (24, 5, 9)
    # stream 1 holds windows 6..11: one pass over its 30 tokens gives the same states
    with torch.no_grad():
        ref, _ = lm.forward_layers(ids[30:60].view(1, 30))
    np.testing.assert_allclose(carry["lstm2"][6:12].reshape(30, 9), ref["lstm2"][0].numpy(),
                               atol=1e-5)
    reset = capture.capture_windows(lm, ids, window=5, n_windows=24, carry_state=False)
    single = capture.capture(lm, data.windows(ids, 5, 24))
    np.testing.assert_array_equal(reset["lstm1"], single["lstm1"])
    np.testing.assert_allclose(reset["lstm1"][0], carry["lstm1"][0], atol=1e-6)  # cold start
    assert not np.allclose(reset["lstm1"][1], carry["lstm1"][1])
    assert capture.capture_windows(lm, ids, window=5, n_streams=4)["lstm1"].shape[0] == 24
    with pytest.raises(ValueError, match="multiple of n_streams"):
        capture.capture_windows(lm, ids, window=5, n_windows=23, n_streams=4)


def _cfg(**kw):
    base = dict(width=4, train_size=N_TRAIN, batch_size=32, epochs=1, eval_size=None,
                checkpoints=(3,), threads=1)
    base.update(kw)
    return training.CNNTrainConfig(**base)


def test_same_config_twice_gives_bit_identical_activations(env):
    probe = data.load_images("fashion-mnist", "test", progress=False).images
    runs = [training.train(_cfg(), progress=False, cache=False) for _ in range(2)]
    a, b = (capture.capture(r.load(3), probe) for r in runs)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    c = capture.capture(training.train(_cfg(seed=1), progress=False, cache=False).load(3), probe)
    assert not np.array_equal(a["conv4"], c["conv4"])


def test_capture_run_is_cached(env):
    run = training.train(_cfg(), progress=False)
    probe = data.load_images("fashion-mnist", "test", limit=20, progress=False)
    first = capture.capture_run(run, 3, probe, ["conv1", "conv4"])
    entries = list((env.data / "cache" / "activations").iterdir())
    assert len(entries) == 1
    again = capture.capture_run(run, 3, probe, ["conv1", "conv4"])
    assert list(again) == ["conv1", "conv4"]
    np.testing.assert_array_equal(first["conv4"], again["conv4"])
    assert first["conv4"].shape == (20, 16)
    capture.capture_run(run, None, probe, "conv1")  # another step: another entry
    assert len(list((env.data / "cache" / "activations").iterdir())) == 2
    with pytest.raises(ValueError, match="no checkpoint"):
        capture.capture_run(run, 2, probe)


def _rewrite_manifest(entry, name):
    """Make ``entry``'s manifest agree with the current bytes of its file ``name``."""
    mpath = entry / "manifest.json"
    manifest = json.loads(mpath.read_text())
    blob = (entry / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    mpath.write_text(json.dumps(manifest))


def _flip_in_array_data(blob):
    b = bytearray(blob)
    b[len(b) // 3] ^= 0xFF  # inside the first member's data: its CRC-32 fails
    return bytes(b)


def _npy_instead(blob):
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, np.float32))
    return buf.getvalue()


def _other_layers(blob):
    buf = io.BytesIO()
    np.savez(buf, conv2=np.zeros((20, 8), np.float32))
    return buf.getvalue()


_BREAK_NPZ = {"bad crc": _flip_in_array_data, "truncated": lambda b: b[: len(b) // 2],
              "empty": lambda b: b"", "npy, not npz": _npy_instead,
              "other layers": _other_layers}


@pytest.mark.parametrize("how", sorted(_BREAK_NPZ))
def test_broken_activations_matching_their_manifest_are_recaptured(env, how):
    run = training.train(_cfg(), progress=False)
    probe = data.load_images("fashion-mnist", "test", limit=20, progress=False)
    ref = capture.capture_run(run, 3, probe, ["conv1", "conv4"], cache=False)
    capture.capture_run(run, 3, probe, ["conv1", "conv4"])
    (entry,) = (env.data / "cache" / "activations").iterdir()
    npz = entry / "acts.npz"
    npz.write_bytes(_BREAK_NPZ[how](npz.read_bytes()))
    _rewrite_manifest(entry, "acts.npz")
    with pytest.warns(RuntimeWarning, match="corrupted.*acts.npz cannot be read"):
        got = capture.capture_run(run, 3, probe, ["conv1", "conv4"])
    assert list(got) == ["conv1", "conv4"]
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name])
    with warnings.catch_warnings():  # rewritten: read back without complaint
        warnings.simplefilter("error")
        again = capture.capture_run(run, 3, probe, ["conv1", "conv4"])
    np.testing.assert_array_equal(again["conv4"], ref["conv4"])


def test_capture_run_retrains_a_broken_checkpoint(env):
    # the checkpoint is first read by capture_run -> result.load, long after train() returned
    fresh = training.train(_cfg(), progress=False)
    probe = data.load_images("fashion-mnist", "test", limit=20, progress=False)
    ref = capture.capture_run(fresh, 3, probe, cache=False)
    run = training.train(_cfg(), progress=False)
    assert run.from_cache
    ckpt = run.path / "step_00000003.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    _rewrite_manifest(run.path, ckpt.name)
    with pytest.warns(RuntimeWarning, match="corrupted.*step_00000003.pt cannot be loaded"):
        got = capture.capture_run(run, 3, probe)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name])
    again = training.train(_cfg(), progress=False)
    assert again.from_cache
    np.testing.assert_array_equal(capture.capture_run(again, 3, probe, cache=False)["conv4"],
                                  ref["conv4"])


def test_activation_keys_follow_the_run_and_capture_threads(env):
    probe = data.load_images("fashion-mnist", "test", limit=20, progress=False)
    one = training.train(_cfg(threads=1), progress=False)
    two = training.train(_cfg(threads=2), progress=False)
    assert not two.from_cache and one.key != two.key
    capture.capture_run(one, 3, probe, "conv1")
    capture.capture_run(two, 3, probe, "conv1")
    acts_dir = env.data / "cache" / "activations"
    assert len(list(acts_dir.iterdir())) == 2
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(old + 1)
        capture.capture_run(one, 3, probe, "conv1")  # captured with other threads: own entry
    finally:
        torch.set_num_threads(old)
    assert len(list(acts_dir.iterdir())) == 3


def test_capture_run_windows_for_lm(env):
    run = training.train(training.LMTrainConfig(
        corpus="ptb", embed_dim=8, hidden_size=10, n_layers=2, batch_size=8, seq_len=12,
        steps=5, eval_tokens=None, eval_streams=4, threads=1), progress=False)
    text = data.load_text("ptb", progress=False).valid
    acts = capture.capture_run(run, None, text, windowed={"window": 20, "n_windows": 8,
                                                          "n_streams": 2})
    assert acts["lstm2"].shape == (8, 20, 10)
    o0 = capture.at_timestep(acts, 0)["lstm1"]
    assert o0.shape == (8, 10)


def test_capture_run_recalibrates_batchnorm_before_capturing(env):
    # the captured checkpoint equals a forward pass whose batch norm uses the statistics of the
    # fixed calibration batches (cumulative average of the batch means and unbiased variances)
    run = training.train(_cfg(checkpoints=(0, 3)), progress=False)
    probe = data.load_images("fashion-mnist", "test", progress=False).images
    train_x = data.load_images("fashion-mnist", "train", N_TRAIN, progress=False).images
    rng = np.random.default_rng(capture.BN_SEED)
    need = capture.BN_BATCHES * capture.BN_BATCH_SIZE
    order = np.concatenate([rng.permutation(N_TRAIN) for _ in range(-(-need // N_TRAIN))])[:need]
    for step in (0, 3):
        model = run.load(step)
        conv, bn = model.conv1[0], model.conv1[1]
        with torch.no_grad():
            batches = [conv(train_x[order[i:i + capture.BN_BATCH_SIZE]])
                       for i in range(0, need, capture.BN_BATCH_SIZE)]
            mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
            var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
            z = (conv(probe) - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
            want = torch.relu(z * bn.weight[:, None, None] + bn.bias[:, None, None])
        got = capture.capture_run(run, step, probe, "conv1")["conv1"]
        np.testing.assert_allclose(got, want.mean(dim=(2, 3)).numpy(), rtol=2e-4, atol=2e-5)
        # and it is not what the stored running statistics give (at step 0: the identity)
        stored = capture.capture(run.load(step), probe, "conv1")["conv1"]
        assert np.abs(stored - got).max() > 1e-2


def test_recalibrate_batchnorm_changes_no_weight_and_restores_modes():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3),
                                torch.nn.Dropout(0.5))
    model[1].momentum = 0.3
    model.train()
    model[2].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(300, 1, 6, 6)
    capture.recalibrate_batchnorm(model, x, n_batches=3, batch_size=100, seed=0)
    after = model.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])
    assert model.training and model[1].training and not model[2].training
    assert model[1].momentum == 0.3
    with pytest.raises(ValueError, match="seed"):
        capture.recalibrate_batchnorm(model, x, seed=None)
    with pytest.raises(ValueError, match="batch_size"):
        capture.recalibrate_batchnorm(model, x[:10], seed=0)
