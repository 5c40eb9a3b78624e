"""Engine: dataset registry, resolution (cache -> mirror -> download), checksums, loaders."""

import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_data import N_CLASSES, N_TEST, N_TRAIN, SIDE, activate

from cca_lib import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
_REAL_URLOPEN = data._urlopen  # before any test replaces it with the offline stub


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def test_canonical_names_and_aliases():
    assert data.canonical_name("tiny-shakespeare") == "tinyshakespeare"
    assert data.canonical_name("CIFAR10") == "cifar-10"
    assert data.canonical_name("fashion_mnist") == "fashion-mnist"
    with pytest.raises(ValueError, match="unknown dataset name='mnist'"):
        data.canonical_name("mnist")
    with pytest.raises(TypeError, match="name must be a str"):
        data.canonical_name(3)


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared dataset mirror on this machine")
def test_registry_matches_shared_mirror_checksums():
    for name in ("fashion-mnist", "ptb", "wikitext-2", "tinyshakespeare"):
        sums = dict(line.split()[::-1] for line in (SHARED / name / "SHA256SUMS").read_text()
                    .splitlines() if line.strip())
        spec = data.REGISTRY[name]
        assert {f.filename: f.sha256 for f in spec.files} == sums


def test_mirror_files_are_verified_and_used_in_place(env):
    files = data.dataset_files("ptb", progress=False)
    assert files["ptb.train.txt"] == env.mirror / "ptb" / "ptb.train.txt"
    assert not (env.data / "datasets" / "ptb").exists()  # nothing copied


def test_cache_is_preferred_over_mirror(env):
    cached = env.data / "datasets" / "ptb"
    cached.mkdir(parents=True)
    shutil.copy(env.mirror / "ptb" / "ptb.valid.txt", cached / "ptb.valid.txt")
    files = data.dataset_files("ptb", progress=False)
    assert files["ptb.valid.txt"] == cached / "ptb.valid.txt"
    assert files["ptb.test.txt"].parent == env.mirror / "ptb"


def test_mirror_checksum_mismatch_names_file_and_hashes(env):
    bad = env.mirror / "ptb" / "ptb.test.txt"
    bad.write_text("tampered\n")
    expected = env.specs["ptb"].file("ptb.test.txt").sha256
    with pytest.raises(data.ChecksumError) as err:
        data.dataset_files("ptb", progress=False)
    msg = str(err.value)
    assert str(bad) in msg and expected in msg and data.sha256_file(bad) in msg
    assert bad.exists()  # a mirror is never modified


def test_corrupted_cached_file_is_deleted_and_reported(env):
    cached = env.data / "datasets" / "tinyshakespeare" / "input.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("garbage")
    with pytest.raises(data.ChecksumError, match="cached file"):
        data.dataset_files("tinyshakespeare", progress=False)
    assert not cached.exists()
    # the next call falls through to the (good) mirror
    assert data.dataset_files("tinyshakespeare", progress=False)["input.txt"].parent == (
        env.mirror / "tinyshakespeare")


def test_offline_and_not_cached_says_where_to_put_files(env, monkeypatch):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.dataset_files("ptb", progress=False)
    msg = str(err.value)
    assert "CCA_BOOK_DATA_MIRROR" in msg and str(env.data / "datasets" / "ptb") in msg
    with pytest.raises(data.DatasetUnavailableError, match="downloads are disabled"):
        data.dataset_files("ptb", download=False, progress=False)


def test_download_writes_verified_file(env, monkeypatch):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    monkeypatch.setattr(data, "_urlopen", lambda url: urllib.request.urlopen(url))
    files = data.dataset_files("wikitext-2", progress=False)
    folder = env.data / "datasets" / "wikitext-2"
    assert files["valid.txt"] == folder / "valid.txt"
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "valid.txt"]


class _Broken:
    """A response that delivers some bytes, then fails (an interrupted download)."""

    def __init__(self):
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        self.calls += 1
        if self.calls > 1:
            raise ConnectionResetError("connection reset by peer")
        return b"partial bytes"


def test_interrupted_download_never_looks_complete(env, monkeypatch):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    monkeypatch.setattr(data, "_urlopen", lambda url: _Broken())
    with pytest.raises(data.DatasetUnavailableError, match="connection reset"):
        data.dataset_files("tinyshakespeare", progress=False)
    folder = env.data / "datasets" / "tinyshakespeare"
    assert not any(folder.iterdir()) if folder.exists() else True


def test_download_with_bad_checksum_is_deleted(env, monkeypatch, tmp_path):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not shakespeare")
    monkeypatch.setattr(data, "_urlopen", lambda url: urllib.request.urlopen(wrong.as_uri()))
    with pytest.raises(data.ChecksumError, match="expected sha256"):
        data.dataset_files("tinyshakespeare", progress=False)
    assert not (env.data / "datasets" / "tinyshakespeare" / "input.txt").exists()
    assert not (env.data / "datasets" / "tinyshakespeare" / "input.txt.part").exists()


def test_gzip_file_accepted_by_decompressed_hash(env):
    path = env.mirror / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    payload = gzip.decompress(path.read_bytes())
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=12345,
                                                filename="other-name") as gz:
        gz.write(payload)  # same content, another gzip header
    assert data.dataset_files("fashion-mnist", progress=False)[path.name] == path


def test_load_images_shapes_dtypes_and_normalisation(env):
    train = data.load_images("fashion-mnist", "train", progress=False)
    test = data.load_images("fashion-mnist", "test", limit=30, progress=False)
    assert train.images.shape == (N_TRAIN, 1, SIDE, SIDE) and train.images.dtype == torch.float32
    assert train.labels.shape == (N_TRAIN,) and train.labels.dtype == torch.int64
    assert test.images.shape == (30, 1, SIDE, SIDE) and len(test) == 30
    assert train.num_classes == N_CLASSES == len(train.classes)
    assert abs(train.images.mean().item()) < 1e-4
    assert abs(train.images.std().item() - 1) < 1e-2
    assert test.mean == train.mean and test.std == train.std  # train statistics
    assert train.head(5).images.shape[0] == 5
    with pytest.raises(ValueError, match="split must be"):
        data.load_images("fashion-mnist", "valid", progress=False)
    with pytest.raises(ValueError, match="limit must be"):
        data.load_images("fashion-mnist", limit=0, progress=False)
    with pytest.raises(ValueError, match="use load_text"):
        data.load_images("ptb", progress=False)
    assert N_TEST == data.load_images("fashion-mnist", "test", progress=False).labels.shape[0]


def test_channel_stats_match_numpy_on_scaled_float64():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(50, 3, 7, 5), dtype=np.uint8)
    images[:, 1] //= 4  # channels with different statistics
    mean, std = data._channel_stats(images)
    scaled = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-13)
    assert len(mean) == len(std) == 3


def test_random_labels_fixed_by_seed():
    y = torch.zeros(500, dtype=torch.int64)
    a = data.random_labels(y, 10, seed=3)
    assert a.dtype == torch.int64 and a.shape == (500,)
    assert torch.equal(a, data.random_labels(500, 10, seed=3))
    assert not torch.equal(a, data.random_labels(y, 10, seed=4))
    assert torch.equal(a[:100], data.random_labels(100, 10, seed=3))  # prefix-stable
    assert set(a.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="num_classes"):
        data.random_labels(y, 1, seed=0)
    with pytest.raises(TypeError, match="seed"):
        data.random_labels(y, 10, seed=1.5)


def test_load_text_word_level(env):
    c = data.load_text("ptb", progress=False)
    text = (env.mirror / "ptb" / "ptb.train.txt").read_text()
    n_lines = len(text.splitlines())
    assert c.train.dtype == torch.int64 and c.train.ndim == 1
    assert len(c.train) == len(text.split()) + n_lines  # one <eos> per line
    eos = c.vocab.stoi[data.EOS]
    assert int((c.train == eos).sum()) == n_lines
    assert c.vocab.level == "word" and len(c.vocab) == len(set(text.split())) + 1
    assert c.vocab.decode(c.train[:3]).split() == text.split()[:3]
    assert c.valid is not c.test


def test_load_text_wikitext_split_and_char_level(env):
    w = data.load_text("wikitext-2", progress=False)
    assert w.valid is w.test and "train = valid.txt" in w.split_note
    valid_text = (env.mirror / "wikitext-2" / "valid.txt").read_text()
    assert len(w.train) == len(valid_text.split()) + len(valid_text.splitlines())
    s = data.load_text("tiny-shakespeare", progress=False)
    text = (env.mirror / "tinyshakespeare" / "input.txt").read_text()
    assert s.level == "char" and len(s.vocab) == len(set(text))
    assert len(s.train) == int(0.9 * len(text)) and len(s.train) + len(s.valid) == len(text)
    assert s.vocab.decode(s.valid) == text[int(0.9 * len(text)):]
    assert torch.equal(s.vocab.encode("the"), s.train[s.vocab.decode(s.train).index("the"):][:3])


def test_batchify_and_windows():
    ids = torch.arange(103)
    b = data.batchify(ids, 4)
    assert b.shape == (4, 25) and torch.equal(b[1], torch.arange(25, 50))
    w = data.windows(ids, 10, 5, start=3)
    assert w.shape == (5, 10) and w[0, 0] == 3 and w[4, 9] == 52
    assert data.windows(ids, 10).shape == (10, 10)
    with pytest.raises(ValueError, match="do not fit"):
        data.windows(ids, 10, 11)
    with pytest.raises(ValueError, match="n_streams"):
        data.batchify(ids, 0)
    np.testing.assert_array_equal(data.windows(ids, 1, 3).numpy().ravel(), [0, 1, 2])


def _cifar_tarball(path: Path) -> str:
    import hashlib
    import io
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
            blob = pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                 b"labels": [int(v) for v in rng.integers(0, 10, n)]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cifar10_tarball_loader(env, monkeypatch):
    folder = env.mirror / "cifar-10"
    folder.mkdir()
    tarball = folder / "cifar-10-python.tar.gz"
    sha = _cifar_tarball(tarball)
    monkeypatch.setitem(data.REGISTRY, "cifar-10", data.DatasetSpec(
        "cifar-10", (data.RemoteFile(tarball.name, tarball.as_uri(), sha),), "images"))
    train = data.load_images("cifar10", "train", progress=False)
    test = data.load_images("cifar-10", "test", limit=5, progress=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (5, 3, 32, 32)
    assert train.classes == data.CIFAR10_CLASSES and len(train.mean) == 3
    torch.testing.assert_close(train.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5,
                               rtol=0)


# ---------------------------------------------------------------------------------------------
# Downloads from a real local HTTP server (127.0.0.1 only): concurrency and slow servers
# ---------------------------------------------------------------------------------------------


class _SlowServer:
    """A loopback HTTP server sending ``payload`` by a schedule of ``(pause_s, n_bytes)``
    steps (the rest, if any, at once), counting the GET requests it receives. It stops
    sending when closed, so no test can hang on it."""

    def __init__(self, payload: bytes, schedule: list[tuple[float, int]]):
        self.payload, self.schedule = payload, schedule
        self.requests = 0
        self._stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                sent = 0
                try:
                    for pause, n in outer.schedule:
                        if outer._stop.wait(pause):
                            return
                        self.wfile.write(outer.payload[sent:sent + n])
                        self.wfile.flush()
                        sent += n
                    self.wfile.write(outer.payload[sent:])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/blob.bin"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        return False


def _payload(n: int) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


def _blob_spec(url: str, payload: bytes) -> data.DatasetSpec:
    return data.DatasetSpec("blobset", (data.RemoteFile(
        "blob.bin", url, hashlib.sha256(payload).hexdigest(), len(payload)),), "text")


_CHILD = """
import sys
from cca_lib import data
url, sha, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = data.DatasetSpec("blobset", (data.RemoteFile("blob.bin", url, sha, size),), "text")
with data.registry_override(spec):
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other process
    print(data.dataset_files("blobset", progress=False)["blob.bin"], flush=True)
"""


def test_two_processes_downloading_one_file_download_it_once(tmp_path):
    payload = _payload(200_000)
    data_root = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "CCA_BOOK_DATA_MIRROR"}
    env.update(CCA_BOOK_DATA_DIR=str(data_root), PYTHONPATH=str(Path(data.__file__).parents[1]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # 40 steps of 0.1 s: the download takes ~4 s, so both processes overlap in it
    with _SlowServer(payload, [(0.1, 5000)] * 40) as server:
        args = [sys.executable, "-c", _CHILD, server.url, hashlib.sha256(payload).hexdigest(),
                str(len(payload))]
        procs = [subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for p in procs:
                assert p.stdout.readline().strip() == "ready", p.stderr.read()
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            results = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        requests = server.requests
    final = data_root / "datasets" / "blobset" / "blob.bin"
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == str(final)
    assert requests == 1  # the second process waited and used the first one's file
    assert sum("another process is downloading it" in err for _, err in results) == 1
    assert final.read_bytes() == payload
    assert [q.name for q in final.parent.iterdir()] == ["blob.bin"]  # no temporary files left


@pytest.mark.parametrize(("schedule", "limits", "says"), [
    # 1 byte per 0.1 s (10 B/s) against a minimum of 1000 B/s over 0.5 s windows
    ([(0.1, 1)] * 40, {"MIN_RATE": "1000", "RATE_WINDOW": "0.5", "DEADLINE": "30"},
     ["too slow", "lower $CCA_BOOK_DOWNLOAD_MIN_RATE"]),
    # a steady 1000 B/s, fast enough, but 4 s of it against a 1 s deadline
    ([(0.1, 100)] * 40, {"MIN_RATE": "10", "RATE_WINDOW": "0.5", "DEADLINE": "1"},
     ["deadline of 1 s", "CCA_BOOK_DOWNLOAD_DEADLINE"]),
    # some bytes, then nothing for 4 s (longer than the 0.5 s window)
    ([(0.0, 100), (4.0, 100)], {"MIN_RATE": "10", "RATE_WINDOW": "0.5", "DEADLINE": "30"},
     ["stalled", "CCA_BOOK_DOWNLOAD_RATE_WINDOW"]),
], ids=["trickle", "deadline", "stall"])
def test_slow_server_ends_in_clear_error_not_hang(env, monkeypatch, schedule, limits, says):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    monkeypatch.setattr(data, "_urlopen", _REAL_URLOPEN)
    for key, value in limits.items():
        monkeypatch.setenv(f"CCA_BOOK_DOWNLOAD_{key}", value)
    payload = _payload(sum(n for _, n in schedule))
    with _SlowServer(payload, schedule) as server, data.registry_override(
            _blob_spec(server.url, payload)):
        t0 = time.monotonic()
        with pytest.raises(data.DatasetUnavailableError) as err:
            data.dataset_files("blobset", progress=False)
        elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert server.url in msg and "CCA_BOOK_DATA_MIRROR" in msg
    for text in says:
        assert text in msg
    assert elapsed < 3.0  # the server would take 4 s to send everything
    folder = env.data / "datasets" / "blobset"
    assert not any(folder.iterdir())  # nothing half-written left, at any name


def test_download_limits_from_env_are_validated(monkeypatch):
    for env in data.DOWNLOAD_LIMIT_ENVS.values():
        monkeypatch.delenv(env, raising=False)
    assert data.download_limits() == data.DownloadLimits(3600.0, 10240.0, 30.0)
    monkeypatch.setenv("CCA_BOOK_DOWNLOAD_RATE_WINDOW", "5")
    assert data.download_limits().window == 5.0 and data.download_limits().read_timeout == 5.0
    for bad in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("CCA_BOOK_DOWNLOAD_DEADLINE", bad)
        with pytest.raises(ValueError, match=rf"\$CCA_BOOK_DOWNLOAD_DEADLINE='{bad}'"):
            data.download_limits()
    with pytest.raises(ValueError, match="min_rate must be"):
        data.DownloadLimits(min_rate=-1.0)


def test_stale_temporary_file_of_a_killed_download_is_removed(env, monkeypatch):
    monkeypatch.delenv("CCA_BOOK_DATA_MIRROR")
    monkeypatch.setattr(data, "_urlopen", _REAL_URLOPEN)
    folder = env.data / "datasets" / "blobset"
    folder.mkdir(parents=True)
    (folder / ".blob.bin.99999.0123abcd.part").write_bytes(b"half of a download")
    payload = _payload(5000)
    with _SlowServer(payload, []) as server, data.registry_override(
            _blob_spec(server.url, payload)):
        path = data.dataset_files("blobset", progress=False)["blob.bin"]
    assert path == folder / "blob.bin" and path.read_bytes() == payload
    assert [q.name for q in folder.iterdir()] == ["blob.bin"]
