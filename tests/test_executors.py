"""Sweeps on executors: a process pool and a real Dask LocalCluster give the serial results,
bit for bit, in input order; failures are reported with their config; reruns hit the cache."""

import concurrent.futures as cf
import multiprocessing
import time

import numpy as np
import pytest
import torch
from _engine_data import N_TRAIN, activate

from cca_lib import analysis, executors, training
from cca_lib.book.execute import with_scheduler


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def _patch_registry(specs):
    """Worker setup: the test's synthetic datasets (the parent's registry patch)."""
    from cca_lib import data

    data.REGISTRY.update(specs)


def tiny(seed, **kw):
    base = dict(width=4, train_size=N_TRAIN, batch_size=32, epochs=2, lr=0.05, eval_size=None,
                log_checkpoints=2, threads=1, seed=seed)
    base.update(kw)
    return training.CNNTrainConfig(**base)


def _same_run(a, b):
    assert a.key == b.key and a.steps == b.steps
    assert a.history.equals(b.history) and a.metrics == b.metrics
    for step in a.steps:
        sa, sb = a.state_dict(step), b.state_dict(step)
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), step


def _slow_square(x):
    time.sleep(0.05 * (3 - x % 3))  # later items finish first
    if x == 4:
        raise ValueError("four is refused")
    return x * x


def test_map_tasks_keeps_input_order_and_reports_every_failure():
    with cf.ThreadPoolExecutor(3) as ex:
        assert executors.map_tasks(_slow_square, [0, 1, 2, 3], executor=ex,
                                   progress=False) == [0, 1, 4, 9]
        with pytest.raises(executors.SweepError) as info:
            executors.map_tasks(_slow_square, [3, 4, 5], executor=ex, progress=False,
                                describe=lambda x: f"item {x}")
    err = info.value
    assert [f.index for f in err.failures] == [1]
    assert "item 4" in str(err) and "four is refused" in err.failures[0].traceback
    assert "1 of 3 tasks failed" in str(err)
    with pytest.raises(ValueError, match="four"):  # in-process: raised at once, as before
        executors.map_tasks(_slow_square, [4], progress=False)


def test_processes_string_runs_a_spawned_pool():
    assert executors.map_tasks(_slow_square, [5, 6, 7], executor="processes:2",
                               progress=False) == [25, 36, 49]


def test_executor_arguments_are_checked():
    with pytest.raises(ValueError, match="processes"):
        executors.resolve("threads")
    with pytest.raises(ValueError, match="processes"):
        executors.resolve("processes:0")
    with pytest.raises(TypeError, match="submit"):
        executors.resolve(42)
    assert executors.check_scheduler("scheduler", "tcp://127.0.0.1:8786") == \
        "tcp://127.0.0.1:8786"
    assert executors.check_scheduler("scheduler", None) is None
    with pytest.raises(ValueError, match="scheduler"):
        executors.check_scheduler("scheduler", "tcp://")
    with pytest.raises(TypeError, match="scheduler"):
        executors.check_scheduler("scheduler", 3)
    assert executors.from_scheduler("processes") == "processes"
    assert executors.from_scheduler(None) is None


def test_train_many_on_a_process_pool_equals_serial_and_reports_failures(env):
    cfgs = [tiny(s) for s in (3, 1, 2)]
    serial = [training.train(c, progress=False, cache=False) for c in cfgs]
    bad = tiny(9, steps=5, checkpoints=(50,))  # a checkpoint beyond T: fails when training
    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_patch_registry, initargs=(env.specs,))
    with pool:
        with pytest.raises(executors.SweepError) as info:
            training.train_many([cfgs[0], bad, cfgs[1]], executor=pool, progress=False)
        assert [f.index for f in info.value.failures] == [1]
        assert "beyond the last step" in info.value.failures[0].traceback
        assert repr(bad) in str(info.value)
        # the finished ones are in the cache: the rerun trains only the third
        runs = training.train_many(cfgs, executor=pool, progress=False)
    assert [r.from_cache for r in runs] == [True, True, False]
    for a, b in zip(serial, runs, strict=True):
        _same_run(a, b)
        assert b.path is not None and not b._blobs  # read back from the cache


def test_dask_local_cluster_sweep_equals_serial_and_reruns_from_cache(env):
    distributed = pytest.importorskip("distributed")
    cfgs = [tiny(s) for s in range(4)]
    serial = [training.train(c, progress=False, cache=False) for c in cfgs]
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster, timeout=60) as client:
        client.run(_patch_registry, env.specs)
        ex = client.get_executor(pure=False)  # pure=False: every submit really runs
        runs = training.train_many(cfgs, executor=ex, progress=False)
        again = training.train_many(cfgs, executor=ex, progress=False)
        # capture and distances of the sweep on the cluster equal the in-process ones
        probe = analysis.probe_images("fashion-mnist", "test", 60)
        acts = executors.capture_many(runs, None, probe.images, ["conv3"], executor=ex,
                                      progress=False)
        here = executors.capture_many(runs, None, probe.images, ["conv3"], progress=False)
        dist = executors.pairwise_distances([a["conv3"] for a in acts], executor=ex,
                                            progress=False)
        # a chapter's scheduler address gives a client of that scheduler
        by_address = executors.from_scheduler(cluster.scheduler_address)
        assert executors.map_tasks(_slow_square, [1, 2], executor=by_address,
                                   progress=False) == [1, 4]
    assert time.perf_counter() - start < 90
    assert not any(r.from_cache for r in runs)
    assert all(r.from_cache for r in again)
    for a, b, c in zip(serial, runs, again, strict=True):
        _same_run(a, b)
        _same_run(a, c)
    for a, b in zip(acts, here, strict=True):
        assert np.array_equal(a["conv3"], b["conv3"])
    ref = analysis.pairwise_distances([a["conv3"] for a in here])
    np.testing.assert_allclose(dist, ref, rtol=1e-12, atol=1e-12)


def test_chapter_on_an_executor_gives_the_serial_numbers(env, tmp_path, monkeypatch):
    from cca_lib.experiments import learning_rate as lr_exp
    from cca_lib.experiments import memorization, width

    for cls in (lr_exp.Config, width.Config, memorization.Config):
        assert cls().scheduler is None
        assert cls(scheduler="processes:2").scheduler == "processes:2"
        with pytest.raises(ValueError, match="scheduler"):
            cls(scheduler="dask")
    cfg = lr_exp.Config(learning_rates=(0.01, 0.1, 0.5), n_seeds=2, width=2, train_size=N_TRAIN,
                        epochs=2.0, layer="conv4", probe_split="train", probe_size=100,
                        max_clusters=4, seed=7)
    serial = lr_exp.run(cfg, progress=False)
    monkeypatch.setenv("CCA_BOOK_DATA_DIR", str(tmp_path / "other-cache"))  # train again
    with cf.ThreadPoolExecutor(3) as ex:
        par = lr_exp.run(cfg, progress=False, executor=ex)
    np.testing.assert_array_equal(serial.distances, par.distances)
    assert serial.nets.equals(par.nets)


def test_book_build_passes_the_scheduler_to_the_sweep_chapters_only():
    params = {"width": {"n_seeds": 5}, "signal_noise": {}, "method": {}, "learning_rate": {}}
    out = with_scheduler(params, "tcp://10.0.0.5:8786")
    assert out["width"] == {"n_seeds": 5, "scheduler": "tcp://10.0.0.5:8786"}
    assert out["learning_rate"] == {"scheduler": "tcp://10.0.0.5:8786"}
    assert out["signal_noise"] == {} and out["method"] == {}
    assert params["width"] == {"n_seeds": 5}  # not modified in place
    with pytest.raises(ValueError, match="scheduler"):
        with_scheduler(params, "dask")


def test_quick_profile_runs_keep_their_keys():
    """arch, optimizer and scheduler at their defaults train exactly the nets of before."""
    from cca_lib.experiments import learning_rate as lr_exp
    from cca_lib.experiments import memorization, width

    w = width.Config()
    got = w.train_config(8, 0)
    assert got == training.CNNTrainConfig(
        dataset=w.dataset, width=8, train_size=w.train_size, epochs=w.epochs,
        batch_size=w.batch_size, lr=w.lr, seed=0, eval_every=got.eval_every)
    lr = lr_exp.Config()
    assert lr.train_configs()[3] == training.CNNTrainConfig(
        dataset=lr.dataset, width=lr.width, train_size=lr.train_size, epochs=lr.epochs,
        batch_size=lr.batch_size, lr=lr.learning_rates[0], seed=lr.seed + 3)
    m = memorization.Config()
    new = m.train_config("random", 1)
    assert (new.arch, new.optimizer) == ("small", "sgd")
    assert training.run_key(width.Config(scheduler="processes").train_config(8, 0)) == \
        training.run_key(w.train_config(8, 0))
