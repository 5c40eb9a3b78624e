"""Engine: cache keys, atomic entries, corruption detection and rebuild, clearing."""

import dataclasses
import json
import warnings

import pytest
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
