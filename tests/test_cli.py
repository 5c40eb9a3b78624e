"""``python -m cca_lib compare``, run as a subprocess on temporary files: the values are the
library's, every input format and layout, streaming, JSON, and exit status 2 with a message
(no traceback) for a wrong file, key, shape, dtype or layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cca_lib

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check_rc=0):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "cca_lib", "compare", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    return proc


def run_json(*args):
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1500, 3))
    x = z @ rng.standard_normal((3, 12)) + rng.standard_normal((1500, 12)) + 3.0
    y = z @ rng.standard_normal((3, 6)) + rng.standard_normal((1500, 6))
    x = np.hstack([x, x[:, :1] * 2.0])  # one dependent direction, dropped
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    np.save(tmp / "xt.npy", x.T.copy())
    np.save(tmp / "yt.npy", y.T.copy())
    np.savez(tmp / "both.npz", conv1=x, fc=y)
    np.savez(tmp / "one.npz", acts=y)
    np.save(tmp / "ints.npy", np.arange(30).reshape(15, 2))
    np.save(tmp / "cube.npy", np.zeros((4, 3, 2)))
    (tmp / "junk.npy").write_bytes(b"not an array")
    (tmp / "x.csv").write_text("1,2\n")
    return tmp, x, y


def expected(x, y):
    want = cca_lib.compare(x, y)
    want["PWCCA (reverse)"] = cca_lib.pwcca(y, x)
    want["debiased CKA"] = cca_lib.linear_cka(x, y, debiased=True)
    return want


def test_json_values_are_the_library_values(files):
    tmp, x, y = files
    out = run_json(tmp / "x.npy", tmp / "y.npy")
    assert (out["n_samples"], out["d1"], out["d2"]) == (1500, 13, 6)
    r = cca_lib.cca(x, y)
    assert (out["dropped_x"], out["dropped_y"]) == (r.dropped_x, r.dropped_y) == (1, 0)
    assert out["measures"] == pytest.approx(expected(x, y), abs=1e-12)
    # the floor: unrelated data of this size, d1 = 13 and d2 = 6 at n = 1500, has canonical
    # correlations of order sqrt(d / n) ~ 0.1; the real similarity is far above it
    floor = out["floor"]
    assert set(floor) == set(out["measures"])
    assert 0.02 < floor["mean CCA"] < 0.15 < out["measures"]["mean CCA"]
    assert abs(floor["debiased CKA"]) < 0.01
    # seeded: the same command gives the same floor; another seed another one
    assert run_json(tmp / "x.npy", tmp / "y.npy")["floor"] == floor
    assert run_json(tmp / "x.npy", tmp / "y.npy", "--seed", "1")["floor"] != floor


def test_floor_is_the_mean_over_permuted_rows(files):
    tmp, x, y = files
    out = run_json(tmp / "x.npy", tmp / "y.npy", "--null-perms", "2", "--seed", "7")
    rng = np.random.default_rng(7)
    vals = [cca_lib.mean_cca(x, y[rng.permutation(1500)]) for _ in range(2)]
    assert out["floor"]["mean CCA"] == pytest.approx(np.mean(vals), abs=1e-10)
    # every measure's floor is stats' permutation null under the same permutations
    from cca_lib import stats

    nulls = stats.permutation_nulls(x, y, n_perm=2, seed=7)
    assert out["floor"] == pytest.approx({k: r.floor for k, r in nulls.items()}, abs=1e-10)
    assert run_json(tmp / "x.npy", tmp / "y.npy", "--null-perms", "0")["floor"] is None


def test_text_output_lists_everything(files):
    tmp, x, y = files
    text = run(tmp / "x.npy", tmp / "y.npy").stdout
    for needle in ("n=1500", "d1=13", "d2=6", "directions dropped: x 1, y 0", "floor",
                   "mean CCA", "SVCCA", "PWCCA (reverse)", "PWCCA (symmetric)", "linear CKA",
                   "debiased CKA"):
        assert needle in text, needle
    assert f"{cca_lib.pwcca(x, y):.6f}" in text


def test_formats_layouts_and_streaming_agree(files):
    tmp, x, y = files
    torch = pytest.importorskip("torch")
    torch.save(torch.from_numpy(x), tmp / "x.pt")
    torch.save({"layer": torch.from_numpy(y)}, tmp / "y.pt")
    base = run_json(tmp / "x.npy", tmp / "y.npy", "--null-perms", "0")["measures"]
    variants = [
        (tmp / "both.npz:conv1", tmp / "both.npz:fc"),
        (tmp / "x.npy", tmp / "one.npz"),
        (tmp / "x.pt", tmp / "y.pt:layer"),
        (tmp / "x.pt", tmp / "y.pt"),
        (tmp / "xt.npy", tmp / "yt.npy", "--layout", "neurons-first"),
        (tmp / "x.npy", tmp / "y.npy", "--stream", "--chunk-rows", "97"),
        (tmp / "xt.npy", tmp / "yt.npy", "--layout", "neurons-first", "--stream"),
    ]
    for v in variants:
        got = run_json(*v, "--null-perms", "0")
        assert got["measures"] == pytest.approx(base, abs=1e-10), v
    streamed = run_json(tmp / "x.npy", tmp / "y.npy", "--stream", "--chunk-rows", "97")
    assert streamed["stream"] and streamed["chunk_rows"] == 97
    assert streamed["floor"] == pytest.approx(
        run_json(tmp / "x.npy", tmp / "y.npy")["floor"], abs=1e-10)


@pytest.mark.parametrize("args, message", [
    (("missing.npy", "y.npy"), "x: no such file"),
    (("x.npy", "junk.npy"), "y: could not read"),
    (("x.csv", "y.npy"), "expected .npy, .npz or .pt"),
    (("both.npz", "y.npy"), r"holds 2 arrays \['conv1', 'fc'\]: choose one"),
    (("both.npz:nope", "y.npy"), r"has no array 'nope'; it holds \['conv1', 'fc'\]"),
    (("x.npy:key", "y.npy"), "a .npy file, which holds one array"),
    (("x.npy", "cube.npy"), r"shape \(4, 3, 2\); expected 2-D"),
    (("ints.npy", "ints.npy"), "dtype int64; expected float32 or float64"),
    (("x.npy", "yt.npy"), "pass --layout neurons-first"),
    (("xt.npy", "yt.npy"), "pass --layout neurons-first"),
    (("x.npy", "y.npy", "--layout", "neurons-first"), "pass --layout samples-first"),
    (("both.npz:conv1", "y.npy", "--stream"), "--stream reads .npy files"),
    (("x.npy", "y.npy", "--keep", "0"), "keep must be"),
])
def test_bad_input_exits_2_with_a_message(files, args, message):
    tmp = files[0]
    args = [str(tmp / a) if i < 2 else a for i, a in enumerate(args)]
    proc = run(*args, check_rc=2)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("python -m cca_lib compare: error:")
    assert __import__("re").search(message, proc.stderr), proc.stderr


def test_nan_in_a_streamed_file_is_reported(files):
    tmp, x, y = files
    bad = x.copy()
    bad[1200, 3] = np.nan
    np.save(tmp / "nan.npy", bad)
    proc = run(tmp / "nan.npy", tmp / "y.npy", "--stream", "--chunk-rows", "500", check_rc=2)
    assert "contains NaN or inf" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "cca_lib"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "usage" in proc.stderr
