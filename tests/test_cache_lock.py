"""The cache's build lock across real processes: one builder at a time, a live holder kept
(heartbeat), a killed holder taken over after the stale timeout; no flock involved."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cca_lib import cache

ROOT = Path(__file__).resolve().parent.parent

HOLDER = textwrap.dedent("""
    import os, sys, time
    from cca_lib import cache
    stale, hold, log = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    with cache.build_lock("runs", "k" * 24, stale=stale):
        with open(log, "a") as fh:
            fh.write(f"start {os.getpid()} {time.time()}\\n")
        print("acquired", flush=True)
        time.sleep(hold)
        with open(log, "a") as fh:
            fh.write(f"end {os.getpid()} {time.time()}\\n")
""")

BUILDER = textwrap.dedent("""
    import os, sys, time
    from cca_lib import cache
    log = sys.argv[1]
    key = "b" * 24
    with cache.build_lock("runs", key, stale=5):
        if cache.open_entry("runs", key) is None:
            with open(log, "a") as fh:
                fh.write(f"built {os.getpid()}\\n")
            time.sleep(1.0)
            cache.write_entry("runs", key, lambda d: (d / "x.txt").write_text(str(os.getpid())))
    print((cache.entry_path("runs", key) / "x.txt").read_text(), flush=True)
""")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CCA_BOOK_DATA_DIR", str(tmp_path / "data"))
    e = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return e, tmp_path


def _start(script, args, env):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(log: Path) -> list[tuple[str, int, float]]:
    out = []
    for line in log.read_text().splitlines():
        kind, pid, *rest = line.split()
        out.append((kind, int(pid), float(rest[0]) if rest else 0.0))
    return out


def test_two_concurrent_builders_build_once(env):
    e, tmp = env
    log = tmp / "log.txt"
    procs = [_start(BUILDER, [log], e) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    built = [ev for ev in _events(log) if ev[0] == "built"]
    assert len(built) == 1, built
    # both read the one entry, written by the builder
    assert {o[0].strip() for o in outs} == {str(built[0][1])}
    assert any("another process is building it; waiting" in o[1] for o in outs)


def test_live_holder_keeps_its_lock_past_the_stale_timeout(env):
    e, tmp = env
    log = tmp / "log.txt"
    first = _start(HOLDER, [0.6, 2.5, log], e)  # holds 4x longer than the stale timeout
    assert first.stdout.readline().strip() == "acquired"
    second = _start(HOLDER, [0.6, 0, log], e)
    for p in (first, second):
        p.communicate(timeout=60)
        assert p.returncode == 0
    (k1, p1, _), (k2, p2, t_end), (k3, p3, t_start) = _events(log)[:3]
    assert (k1, k2, k3) == ("start", "end", "start")
    assert p1 == p2 == first.pid and p3 == second.pid and t_start >= t_end


def test_killed_holder_is_taken_over_after_the_timeout(env):
    e, tmp = env
    log = tmp / "log.txt"
    stale = 1.5
    holder = _start(HOLDER, [stale, 600, log], e)
    assert holder.stdout.readline().strip() == "acquired"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    killed_at = time.time()
    lock = cache.cache_dir() / "runs" / f".build-{'k' * 24}.lock"
    assert lock.is_file(), "the killed holder's lock file stays behind"
    nxt = _start(HOLDER, [stale, 0, log], e)
    out, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, err
    starts = [ev for ev in _events(log) if ev[0] == "start"]
    assert [ev[1] for ev in starts] == [holder.pid, nxt.pid]
    # it waited for the stale timeout (counted from the dead holder's last heartbeat) ...
    assert starts[1][2] - killed_at >= stale - stale / 6 - 0.1
    assert "taking over from pid" in err and str(holder.pid) in err
    assert not lock.exists()  # ... and released the lock it took over


def test_file_lock_rejects_a_bad_timeout(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="stale"), \
            cache.file_lock(tmp_path / "x.lock", message="m", stale=0):
        pass
    monkeypatch.setenv(cache.LOCK_STALE_ENV, "soon")
    with pytest.raises(ValueError, match=cache.LOCK_STALE_ENV), \
            cache.file_lock(tmp_path / "x.lock", message="m"):
        pass
