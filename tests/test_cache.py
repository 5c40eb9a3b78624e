"""Engine: cache keys, atomic entries, corruption detection and rebuild, clearing."""

import dataclasses
import hashlib
import json
import math
import warnings

import numpy as np
import pytest
import torch
from _engine_data import N_TRAIN, activate

from cca_lib import cache, training


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    a: int = 1
    b: tuple = (1.5, "x")


def test_config_key_stable_and_sensitive(monkeypatch):
    k = cache.config_key(_Cfg(), kind="t")
    assert k == cache.config_key(_Cfg(), kind="t") and len(k) == 24
    assert k != cache.config_key(_Cfg(a=2), kind="t")
    assert k != cache.config_key(_Cfg(), kind="other")
    assert k != cache.config_key({"a": 1, "b": (1.5, "x")}, kind="t")  # class name is keyed
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert k != cache.config_key(_Cfg(), kind="t")
    with pytest.raises(TypeError, match="cannot key"):
        cache.config_key(object(), kind="t")


def test_numbers_are_keyed_by_value():
    def key(obj):
        return cache.config_key(obj, kind="t")

    # papermill passes ints, YAML may hold 3.0: one key, at any depth and as numpy scalars
    assert key({"epochs": 3, "n": [1, 2.5], "d": {"k": 0}}) == key(
        {"epochs": 3.0, "n": [1.0, 2.5], "d": {"k": -0.0}})
    assert key(_Cfg(a=1)) == key(_Cfg(a=1.0)) == key(_Cfg(a=np.float64(1.0)))
    assert key({"a": np.int64(7)}) == key({"a": 7.0}) == key({"a": torch.tensor(7.0).item()})
    assert key({1.0: "x"}) == key({1: "x"})
    assert key({"a": float(2**60)}) == key({"a": 2**60})
    # different values stay apart: bools are not numbers here, floats keep every bit
    assert key({"a": True}) != key({"a": 1}) and key({"a": True}) != key({"a": 1.0})
    assert key({"a": False}) != key({"a": 0})
    assert key({"a": 0.1}) != key({"a": math.nextafter(0.1, 1.0)})
    assert key({"a": 2.5}) != key({"a": 2}) and key({"a": 1e-300}) != key({"a": 0})
    assert key({"a": 2**53 + 1}) != key({"a": float(2**53 + 1)})  # the float is 2**53
    assert cache.canonical([3.0, -0.0, 0.5, True, float("inf")]) == [3, 0, 0.5, True, "inf"]
    assert type(cache.canonical(1e300)) is int and cache.canonical(1e300) == 1e300
    # the same for training configs: epochs=3 and epochs=3.0 are one run
    assert training.run_key(training.CNNTrainConfig(epochs=3)) == training.run_key(
        training.CNNTrainConfig(epochs=3.0))
    assert training.run_key(training.CNNTrainConfig(epochs=3)) != training.run_key(
        training.CNNTrainConfig(epochs=3.5))


def test_keys_are_stable_within_a_cache_version():
    # A key changes only with CACHE_VERSION: if this fails, bump CACHE_VERSION (every entry is
    # then rebuilt once) and update the expected digest here. The digest is the first 24 hex
    # digits of the sha256 of the compact, key-sorted JSON of {"config", "kind", "version"}.
    assert cache.CACHE_VERSION == 2
    text = '{"config":{"a":1,"b":[0.5,"x"],"c":null},"kind":"t","version":2}'
    assert hashlib.sha256(text.encode()).hexdigest()[:24] == "bbc2a20ff4b2391086485d95"
    assert cache.config_key({"a": 1, "b": [0.5, "x"], "c": None}, kind="t") == \
        "bbc2a20ff4b2391086485d95"


def test_entries_are_atomic_verified_and_cleared(env):
    def writer(folder):
        (folder / "x.bin").write_bytes(b"12345")

    path = cache.write_entry("t", "k1", writer, meta={"n": 1})
    assert cache.open_entry("t", "k1") == path and cache.read_meta(path) == {"n": 1}
    assert json.loads((path / cache.MANIFEST).read_text())["files"]["x.bin"]["bytes"] == 5

    def failing(folder):
        (folder / "half").write_bytes(b"..")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.write_entry("t", "k2", failing)
    assert cache.open_entry("t", "k2") is None
    assert [p.name for p in (env.data / "cache" / "t").iterdir()] == ["k1"]  # no temp left

    (path / "x.bin").write_bytes(b"12346")  # same size, other bytes
    with pytest.warns(RuntimeWarning, match="corrupted"):
        assert cache.open_entry("t", "k1") is None
    assert not path.exists()
    cache.write_entry("t", "k3", writer)
    assert cache.clear() == 1 and cache.list_entries() == []
    with pytest.raises(ValueError, match="kind"):
        cache.entry_path("../x", "k")


def _cfg():
    return training.CNNTrainConfig(width=4, train_size=N_TRAIN, batch_size=32, epochs=1,
                                   eval_size=None, log_checkpoints=2, threads=1)


def test_training_cache_hit_miss_and_corruption(env, monkeypatch):
    first = training.train(_cfg(), progress=False)
    assert not first.from_cache and first.path is not None
    real = training._train_cnn

    def must_not_train(*a, **k):
        raise AssertionError("trained again despite a cache hit")

    monkeypatch.setattr(training, "_train_cnn", must_not_train)
    hit = training.train(_cfg(), progress=False)
    assert hit.from_cache and hit.steps == first.steps
    assert hit.history.equals(first.history) and hit.metrics == first.metrics
    sd_a, sd_b = first.state_dict(), hit.state_dict()
    assert all((sd_a[k] == sd_b[k]).all() for k in sd_a)

    # corrupt one checkpoint: detected, deleted, retrained
    ckpt = sorted(first.path.glob("step_*.pt"))[-1]
    blob = bytearray(ckpt.read_bytes())
    blob[-20] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    monkeypatch.setattr(training, "_train_cnn", real)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = training.train(_cfg(), progress=False)
    assert any("corrupted" in str(w.message) for w in caught)
    assert not rebuilt.from_cache
    sd_c = rebuilt.state_dict()
    assert all((sd_a[k] == sd_c[k]).all() for k in sd_a)  # deterministic rebuild
    assert cache.clear("runs") == 1


def _rewrite_manifest(entry, name):
    """Make the manifest of ``entry`` agree with the current bytes of its file ``name`` (a file
    broken when it was written: the sha256 check passes, only its loader can tell)."""
    mpath = entry / cache.MANIFEST
    manifest = json.loads(mpath.read_text())
    blob = (entry / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    mpath.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _list_checkpoint():
    import io

    buf = io.BytesIO()
    torch.save([1, 2, 3], buf)
    return buf.getvalue()


_BREAK_CKPT = {
    "truncated": lambda blob: blob[: len(blob) // 2],
    "garbage": lambda blob: b"not a checkpoint" * 64,
    "empty": lambda blob: b"",
    "not a state dict": lambda blob: _list_checkpoint(),
}


@pytest.mark.parametrize("how", sorted(_BREAK_CKPT))
def test_broken_checkpoint_matching_its_manifest_is_retrained(env, how):
    first = training.train(_cfg(), progress=False)  # keeps its checkpoints in memory
    hit = training.train(_cfg(), progress=False)
    assert hit.from_cache
    steps = hit.steps
    ckpt = hit.path / training._ckpt_name(steps[-1])
    ckpt.write_bytes(_BREAK_CKPT[how](ckpt.read_bytes()))
    _rewrite_manifest(hit.path, ckpt.name)
    later = training.train(_cfg(), progress=False)  # the manifest check passes: still a hit
    assert later.from_cache and cache.open_entry("runs", later.key) is not None
    with pytest.warns(RuntimeWarning, match=f"corrupted.*{ckpt.name} cannot be loaded"):
        sd = later.state_dict()
    ref = first.state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)
    assert later.steps == steps and later.path == hit.path and not later.from_cache
    # the entry was rebuilt: every later call reads it, with no warning and no training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = training.train(_cfg(), progress=False)
        assert again.from_cache
        for step in steps:
            a, b = again.state_dict(step), first.state_dict(step)
            assert all(torch.equal(a[k], b[k]) for k in b)
        # another result still pointing at the rebuilt entry reads it as well
        sd_hit = hit.state_dict()
        assert all(torch.equal(sd_hit[k], ref[k]) for k in ref)
    assert cache.clear("runs") == 1


def test_checkpoint_of_a_deleted_entry_is_retrained(env):
    first = training.train(_cfg(), progress=False)
    hit = training.train(_cfg(), progress=False)
    assert cache.clear("runs") == 1  # e.g. `make clean-cache` while a kernel holds the result
    with pytest.warns(RuntimeWarning, match="is gone.*FileNotFoundError"):
        sd = hit.state_dict(hit.steps[1])
    ref = first.state_dict(hit.steps[1])
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert training.train(_cfg(), progress=False).from_cache


def test_broken_result_json_matching_its_manifest_is_retrained(env):
    first = training.train(_cfg(), progress=False)
    (first.path / "result.json").write_text("[]")  # valid JSON, not a result
    _rewrite_manifest(first.path, "result.json")
    with pytest.warns(RuntimeWarning, match="corrupted.*result.json cannot be read"):
        rebuilt = training.train(_cfg(), progress=False)
    assert not rebuilt.from_cache and rebuilt.metrics == first.metrics
    hit = training.train(_cfg(), progress=False)
    assert hit.from_cache and hit.history.equals(first.history)


def test_build_lock_makes_a_second_builder_wait(env, capsys):
    import threading
    import time

    key = cache.config_key(_Cfg(), kind="t")
    events, inside = [], threading.Event()

    def first():
        with cache.build_lock("t", key):
            events.append("first in")
            inside.set()
            time.sleep(0.5)
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    inside.wait()
    with cache.build_lock("t", key):
        events.append("second in")
    t.join()
    assert events == ["first in", "first out", "second in"]
    assert "another process is building it" in capsys.readouterr().err
    with cache.build_lock("t", cache.config_key(_Cfg(a=2), kind="t")):  # other keys: no wait
        pass
    assert "waiting" not in capsys.readouterr().err
