"""Execute the book's chapters with papermill, one profile at a time.

``python -m cca_lib.book --profile quick`` (what ``make book`` runs) reads ``_toc.yml``,
finds every chapter listed as ``book/executed/<name>``, and executes ``notebooks/<name>.ipynb``
into ``book/executed/<name>.ipynb`` with the profile's parameters
(:func:`cca_lib.book.chapters.load_params`). Each chapter records the status of the paper's
claims it checks (:func:`cca_lib.book.scorecard.record`); after all chapters ran, the
reproduction scorecard page ``book/generated/scorecard.md`` is generated from those records.

Chapters run ``--jobs`` at a time (default 2), the longest first as measured when they last ran
in the same profile (:mod:`cca_lib.book.schedule`; every build records the times it measures).
Each kernel gets ``--threads`` BLAS/torch threads (default 1).
The thread count is pinned because it is part of what makes a run reproducible: torch and BLAS
split reductions by thread, so a network trained with 1 thread and with 2 threads differs in
the last bits, and training amplifies that. ``make test`` executes the notebooks with one
thread per process too, so the book and the tests see the same numbers.

Progress bars are switched off in the kernels (``CCA_BOOK_PROGRESS=0``): an executed notebook
would store every redraw of every bar as output.

A chapter is written to a temporary name and renamed only when it executed without error, so a
failed run never leaves a notebook that looks complete. The failed copy is kept as
``book/executed/<name>.failed.ipynb`` for inspection.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from cca_lib._progress import PROGRESS_ENV
from cca_lib.book import scorecard
from cca_lib.book.chapters import (
    EXECUTED,
    GENERATED,
    PROFILES,
    chapter_module,
    load_params,
    toc_chapters,
)
from cca_lib.book.schedule import (
    chapter_after,
    load_times,
    record_times,
    schedule_order,
    times_path,
)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def execute_chapter(root: Path, name: str, profile: str, params: dict) -> float:
    """Execute one chapter; return its wall time in seconds."""
    import papermill

    source = root / "notebooks" / f"{name}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"_toc.yml lists {EXECUTED / name} but {source} does not exist")
    out_dir = root / EXECUTED
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name}.ipynb"
    partial = out_dir / f".{name}.partial.ipynb"
    failed = out_dir / f"{name}.failed.ipynb"
    start = time.perf_counter()
    print(f"  started: {name}", flush=True)
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=params,
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
        )
    except BaseException:
        if partial.exists():
            os.replace(partial, failed)
        raise
    _fold_injected_parameters(partial)
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - start


def _pin_threads(threads: int) -> None:
    """Make every kernel started from this process use ``threads`` BLAS/torch threads."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


def _fold_injected_parameters(path: Path) -> None:
    """Fold papermill's injected-parameters cell in the book (``hide-input``: a "show" toggle);
    the parameter table at the end of each chapter lists the same values with their meaning."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(nb, path)


def with_scheduler(params: dict[str, dict], scheduler: str | None) -> dict[str, dict]:
    """Chapter name -> papermill parameters, with ``scheduler`` added for every chapter whose
    ``Config`` has a ``scheduler`` parameter (the others unchanged); the book build's
    ``--scheduler``."""
    from cca_lib.executors import check_scheduler

    scheduler = check_scheduler("scheduler", scheduler)
    out = {}
    for name, values in params.items():
        config = getattr(chapter_module(name), "Config", None)
        takes = config is not None and "scheduler" in config.parameters()
        out[name] = {**values, "scheduler": scheduler} if takes else values
    return out


def build(root: Path, profile: str, only: Iterable[str] | None = None, *, jobs: int = 2,
          threads: int = 1, times: Path | None = None, scheduler: str | None = None) -> None:
    """Execute the chapters ``only`` (default: every chapter of the book) in ``profile``, then
    write the scorecard page; raise ``SystemExit`` naming the chapters that failed. The
    measured chapter times are read from and recorded in ``times`` (default:
    :func:`cca_lib.book.schedule.times_path`)."""
    for arg, value in (("jobs", jobs), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    chapters = toc_chapters(root / "_toc.yml")
    selected = list(only) if only else chapters
    unknown = sorted(set(selected) - set(chapters))
    if unknown:
        raise SystemExit(f"not chapters of the book (see _toc.yml): {', '.join(unknown)}; "
                         f"chapters are: {', '.join(chapters)}")
    params = {name: load_params(root, profile, name) for name in selected}  # fail before running
    if scheduler is not None:  # the chapters that train many nets take it (never in a key)
        params = with_scheduler(params, scheduler)
    results_dir = root / EXECUTED / "results"
    os.environ[scorecard.RESULTS_ENV] = str(results_dir)
    os.environ[scorecard.PROFILE_ENV] = profile
    _pin_threads(threads)
    os.environ[PROGRESS_ENV] = "0"  # an executed notebook would keep every redraw of every bar
    n = len(selected)
    workers = min(jobs, n)
    print(f"executing {n} chapter(s), {profile} profile, {workers} at a time, "
          f"{threads} thread(s) each", flush=True)
    after = {name: chapter_after(root, name) for name in selected}
    times = times if times is not None else times_path()
    order = schedule_order(selected, after, load_times(times, profile))
    total = time.perf_counter()
    failed: list[str] = []
    finished: set[str] = set()
    running: dict = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        while order or running:
            # start what may start: a free worker, and every chapter it waits for finished
            for name in list(order):
                if len(running) >= workers:
                    break
                waits = set(after[name]) & set(selected)
                if waits & set(failed):
                    order.remove(name)
                    print(f"  SKIPPED {name}: {', '.join(sorted(waits & set(failed)))} failed",
                          file=sys.stderr, flush=True)
                    failed.append(name)
                    continue
                if waits - finished:
                    continue
                order.remove(name)
                running[pool.submit(execute_chapter, root, name, profile, params[name])] = name
            if not running:
                if order:  # cannot happen with an order from schedule_order; never spin
                    raise RuntimeError(f"no chapter can start: {order}")
                break
            done, _ = wait(set(running), return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                finished.add(name)
                exc = future.exception()
                if exc is None:
                    record_times(times, profile, {name: future.result()})
                    print(f"  done {len(finished)}/{n}: {name} in {future.result():.1f} s",
                          flush=True)
                else:  # papermill's error already names the failing cell
                    failed.append(name)
                    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                    print(f"  FAILED {len(finished)}/{n}: {name}: {type(exc).__name__}: {last}",
                          file=sys.stderr, flush=True)
                    kept = root / EXECUTED / f"{name}.failed.ipynb"
                    if kept.exists():
                        print(f"    executed copy kept at {kept.relative_to(root)}",
                              file=sys.stderr, flush=True)
    seconds = time.perf_counter() - total
    if failed:
        raise SystemExit(f"{len(failed)} chapter(s) failed: {', '.join(failed)} "
                         f"(after {seconds:.1f} s)")
    page = scorecard.write_page(results_dir, root / GENERATED / "scorecard.md", profile=profile,
                                chapters=chapters)
    print(f"scorecard: {page.relative_to(root)}; all chapters in {seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cca_lib.book",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES,
                        help="quick (the chapters' defaults, the default), full "
                             "(the overrides in params/full/) or paper (params/paper/: the "
                             "paper's setups)")
    parser.add_argument("--only", nargs="+", metavar="CHAPTER",
                        help="execute only these chapters (names as in _toc.yml)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="chapters executed at the same time (default: 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/torch threads per chapter, fixed for reproducibility "
                             "(default: 1)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="book root (default: cwd)")
    parser.add_argument("--scheduler", default=None,
                        help='where the chapters that train many networks train them: '
                             '"processes" (a local pool) or a Dask scheduler address '
                             '"tcp://host:8786" (default: in each chapter\'s process)')
    parser.add_argument("--plan", action="store_true",
                        help="train nothing: print the networks per chapter and an estimate of "
                             "their cost on this machine's device (cca_lib.plan)")
    args = parser.parse_args(argv)
    if args.plan:
        from cca_lib.book import plan

        rows = plan.plan(args.root.resolve(), args.profile, chapters=args.only)
        print(plan.format_plan(rows, args.profile))
        return
    build(args.root.resolve(), args.profile, args.only, jobs=args.jobs, threads=args.threads,
          scheduler=args.scheduler)
