"""Where a sweep's tasks run: in this process, a local process pool, or a cluster (Dask, ...).

The many-network steps (:func:`cca_lib.training.train_many`, :func:`capture_many`,
:func:`pairwise_distances`) take an ``executor``:

* ``None`` (the default): every task runs here, one after the other;
* ``"processes"`` (or ``"processes:N"``): a local pool of ``N`` worker processes (default: the
  CPU count), each started fresh (``spawn``) with one BLAS/torch thread;
* any object with a :class:`concurrent.futures.Executor`-style ``submit(fn, *args)`` that
  returns futures (``.result()``, ``.done()``): a ``concurrent.futures`` executor, a Dask
  ``Client(...).get_executor(pure=False)``, a submitit executor, ...

:func:`from_scheduler` turns a chapter's ``scheduler`` parameter (``None``, ``"processes"`` or
a Dask scheduler address such as ``"tcp://10.0.0.5:8786"``) into one of these.

Results come back in the order of the inputs, whatever the order of completion, and one
progress bar over the sweep advances as tasks finish. A task that fails does not stop the
others: once all have finished, :class:`SweepError` lists every failed task with its input
(e.g. the training config) and the worker's traceback; the tasks that succeeded have already
written their results to the cache, so a rerun only redoes the failed ones.

Training and capture tasks that share a process (threads of one worker) take turns
(:data:`TORCH_LOCK`), since torch's random state is per process; run one thread per worker
process for parallelism.

Where a task runs never changes its numbers beyond what the cache key already records: a
training run is keyed on the thread count, device type and torch version it trains with (see
:func:`cca_lib.training.run_key`), so the same config on identical nodes gives bit-identical
weights. For workers on several machines, ``CCA_BOOK_DATA_DIR`` must point at storage they all
share (the trained runs are read back from there); the cache's locks and atomic writes hold on
network filesystems.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SCHEDULER_HELP", "SweepError", "TaskFailure", "capture_many", "check_scheduler",
           "from_scheduler", "map_tasks", "pairwise_distances", "process_pool", "resolve",
           "session"]

#: Prefixes of a Dask scheduler address accepted by :func:`from_scheduler`.
DASK_PROTOCOLS = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


@dataclass(frozen=True)
class TaskFailure:
    """One failed task: its index in the sweep, a description of its input, the traceback."""

    index: int
    item: str
    traceback: str


class SweepError(RuntimeError):
    """Some tasks of a sweep failed; ``failures`` lists them (the others finished)."""

    def __init__(self, desc: str, failures: Sequence[TaskFailure], n_tasks: int) -> None:
        self.failures = tuple(failures)
        lines = [f"{desc}: {len(self.failures)} of {n_tasks} tasks failed (the others finished "
                 f"and are cached):"]
        for f in self.failures:
            lines.append(f"--- task {f.index}: {f.item}\n{f.traceback.rstrip()}")
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable, so that a sweep run inside a worker can report it
        return (_rebuild_sweep_error, (str(self), self.failures))


def _rebuild_sweep_error(text: str, failures: tuple[TaskFailure, ...]) -> SweepError:
    err = SweepError.__new__(SweepError)
    RuntimeError.__init__(err, text)
    err.failures = failures
    return err


# ---------------------------------------------------------------------------------------------
# Choosing an executor
# ---------------------------------------------------------------------------------------------


def _worker_init(threads: int) -> None:
    """Pool initializer: one BLAS/torch thread per worker (set before numpy/torch start)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def process_pool(workers: int | None = None, *, threads: int = 1) -> cf.ProcessPoolExecutor:
    """A local pool of ``workers`` fresh (``spawn``) processes (default: the CPU count), each
    with ``threads`` BLAS/torch threads. The caller shuts it down (``with process_pool() as
    ex:``)."""
    n = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_worker_init, initargs=(threads,))


def _parse_processes(text: str) -> int | None:
    if text == "processes":
        return None
    head, _, count = text.partition(":")
    if head == "processes" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise ValueError(f'executor must be None, "processes", "processes:N" (N >= 1) or an object '
                     f"with a submit() method, got {text!r}")


def resolve(executor: Any) -> tuple[Any, bool]:
    """``(executor object or None, whether the caller must shut it down)`` for an ``executor``
    argument (see the module doc)."""
    if executor is None:
        return None, False
    if isinstance(executor, str):
        return process_pool(_parse_processes(executor.strip())), True
    if callable(getattr(executor, "submit", None)):
        return executor, False
    raise TypeError(f"executor must be None, 'processes' or an object with a submit() method "
                    f"(a concurrent.futures.Executor, a Dask client's get_executor(), ...), got "
                    f"{type(executor).__name__}")


def check_scheduler(name: str, value: Any) -> str | None:
    """Validate a ``scheduler`` parameter: None, ``"processes"``, ``"processes:N"`` or a Dask
    scheduler address (``tcp://host:port``, ...). Returns it unchanged."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be None or a str, got {type(value).__name__}: {value!r}")
    if value.startswith(DASK_PROTOCOLS) and len(value) > value.index("://") + 3:
        return value
    try:
        _parse_processes(value)
    except ValueError:
        raise ValueError(f'{name} must be None (this process), "processes", "processes:N" or a '
                         f'Dask scheduler address such as "tcp://host:8786", got '
                         f"{value!r}") from None
    return value


#: Meaning of a chapter's ``scheduler`` parameter (papermill's help text).
SCHEDULER_HELP = ('where the networks train: None (this process), "processes" (a local pool) or '
                  'a Dask scheduler address "tcp://host:8786"; never changes the numbers')

#: Held by a worker's training and capture tasks: torch's RNG and thread count are global to a
#: process, so two such tasks in threads of one process (a thread pool, a Dask worker with
#: several threads) would mix their random streams. They take turns instead; for parallelism
#: use processes (one thread each).
TORCH_LOCK = threading.RLock()

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def from_scheduler(scheduler: str | None) -> Any:
    """The executor of a chapter's ``scheduler`` parameter: None -> None (this process);
    ``"processes"`` / ``"processes:N"`` -> that string (a pool per sweep, see :func:`resolve`);
    a Dask scheduler address -> ``distributed.Client(address).get_executor(pure=False)`` (so
    that every task runs rather than reusing a result held by the scheduler; one client per
    address, kept open for the process's lifetime; needs ``pip install -e .[distributed]``)."""
    scheduler = check_scheduler("scheduler", scheduler)
    if scheduler is None or not scheduler.startswith(DASK_PROTOCOLS):
        return scheduler
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError(f"scheduler={scheduler!r} needs Dask: pip install -e '.[distributed]'"
                          ) from err
    with _clients_lock:
        client = _clients.get(scheduler)
        if client is None or client.status not in ("running", "connecting"):
            client = _clients[scheduler] = Client(scheduler)
    return client.get_executor(pure=False)


@contextlib.contextmanager
def session(executor: Any = None, scheduler: str | None = None) -> Iterator[Any]:
    """The executor of one chapter run, shared by its steps: ``executor`` if given, else
    :func:`from_scheduler` of ``scheduler``, resolved once (a ``"processes"`` pool is started
    here and shut down on exit)."""
    if executor is None:
        executor = from_scheduler(scheduler)
    ex, owned = resolve(executor)
    try:
        yield ex
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Running tasks
# ---------------------------------------------------------------------------------------------


def _guarded(fn: Callable, item: Any) -> tuple[bool, Any]:
    """Run ``fn(item)`` in the worker; a failure comes back as its formatted traceback."""
    try:
        return True, fn(item)
    except Exception:  # reported with the task, never swallowed
        return False, traceback.format_exc()


def _wait_any(pending: set) -> set:
    """The futures of ``pending`` that are done, waiting for at least one."""
    if all(isinstance(f, cf.Future) for f in pending):
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        return set(done)
    delay = 0.01
    while True:  # futures of another kind (e.g. submitit jobs): poll done()
        done = {f for f in pending if f.done()}
        if done:
            return done
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def map_tasks(fn: Callable[[Any], Any], items: Sequence[Any], *, executor: Any = None,
              progress: bool = True, desc: str = "tasks", unit: str = "task",
              describe: Callable[[Any], str] = repr) -> list[Any]:
    """``[fn(item) for item in items]``, run on ``executor`` (see the module doc), with one
    progress bar fed from completions. ``fn`` and the items must be picklable for an executor
    other than None (``fn`` a module-level function). With ``executor=None`` an error
    propagates at once, as in a plain loop; on an executor, a failed task does not stop the
    others: once all have finished, :class:`SweepError` reports each failure with
    ``describe(item)`` and its traceback."""
    from cca_lib._progress import bar as tqdm_bar

    items = list(items)
    ex, owned = resolve(executor)
    results: list[Any] = [None] * len(items)
    failures: list[TaskFailure] = []
    try:
        with tqdm_bar(total=len(items), desc=desc, progress=progress, unit=unit) as bar:
            if ex is None:
                for i, item in enumerate(items):  # here, an error propagates at once
                    results[i] = fn(item)
                    bar.update(1)
            else:
                index = {}
                for i, item in enumerate(items):
                    index[ex.submit(_guarded, fn, item)] = i
                pending = set(index)
                while pending:
                    for fut in _wait_any(pending):
                        pending.discard(fut)
                        i = index[fut]
                        try:
                            ok, value = fut.result()
                        except BaseException:  # noqa: BLE001 - the worker itself failed
                            ok, value = False, traceback.format_exc()
                        if ok:
                            results[i] = value
                        else:
                            failures.append(TaskFailure(i, describe(items[i]), value))
                        bar.update(1)
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
    if failures:
        raise SweepError(desc, sorted(failures, key=lambda f: f.index), len(items))
    return results


# ---------------------------------------------------------------------------------------------
# Capture and distances over many networks
# ---------------------------------------------------------------------------------------------


def _capture_task(job: tuple) -> dict[str, np.ndarray]:
    from cca_lib import capture

    result, step, inputs, layers, kwargs = job
    with TORCH_LOCK:
        return capture.capture_run(result, step, inputs, layers, **kwargs)


def capture_many(results: Sequence[Any], step: int | None, inputs: Any, layers: Any = None, *,
                 executor: Any = None, progress: bool = True, desc: str = "capture",
                 **kwargs) -> list[dict[str, np.ndarray]]:
    """:func:`cca_lib.capture.capture_run` of every run in ``results`` (same step, inputs,
    layers and options), each cached, on ``executor``. The runs must be cached where the
    workers can read them (a shared ``CCA_BOOK_DATA_DIR``) unless ``executor`` is None."""
    jobs = [(r if executor is None else _light(r), step, inputs, layers, kwargs)
            for r in results]
    return map_tasks(_capture_task, jobs, executor=executor, progress=progress, desc=desc,
                     unit="net", describe=lambda job: f"capture of run {job[0].key}")


def _light(result: Any) -> Any:
    """A cached training result without its in-memory checkpoints (cheaper to send)."""
    if getattr(result, "path", None) is None or not getattr(result, "_blobs", None):
        return result
    import dataclasses

    return dataclasses.replace(result, _blobs={})


def _distance_row(job: tuple) -> list[tuple[int, int, float, float]]:
    from cca_lib.similarity import distance

    i, acts_i, others, method, kw, symmetric = job
    out = []
    for j, acts_j in others:
        d = float(distance(acts_i, acts_j, method=method, **kw))
        back = d if symmetric else float(distance(acts_j, acts_i, method=method, **kw))
        out.append((i, j, d, back))
    return out


def pairwise_distances(acts: Sequence[np.ndarray], method: str = "pwcca", *,
                       executor: Any = None, progress: bool = True,
                       desc: str = "distances", **kw) -> np.ndarray:
    """:func:`cca_lib.analysis.pairwise_distances` (the same matrix) with the ``k (k - 1) / 2``
    comparisons run on ``executor``, one task per row (net ``i`` against every ``j > i``)."""
    from cca_lib.analysis import pairwise_setup

    k, symmetric = pairwise_setup(acts, method, kw)
    jobs = [(i, acts[i], [(j, acts[j]) for j in range(i + 1, k)], method, kw, symmetric)
            for i in range(k - 1)]
    out = np.zeros((k, k))
    rows = map_tasks(_distance_row, jobs, executor=executor, progress=progress, desc=desc,
                     unit="row", describe=lambda job: f"distances of net {job[0]}")
    for row in rows:
        for i, j, d, back in row:
            out[i, j], out[j, i] = d, back
    return out
