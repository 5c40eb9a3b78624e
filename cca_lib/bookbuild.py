"""Execute the book's chapters with papermill, one profile at a time.

``python -m cca_lib.bookbuild --profile quick`` (what ``make book`` runs) reads ``_toc.yml``,
finds every chapter listed as ``book/executed/<name>``, and executes ``notebooks/<name>.ipynb``
into ``book/executed/<name>.ipynb``: the quick profile with the chapter's defaults (its
``Config``'s, which the notebook's parameters cell copies), another profile with the overrides
in ``params/<profile>/<name>.yaml`` (see :func:`load_params`).
Each chapter records the status of the paper's claims it checks (see :mod:`cca_lib.scorecard`);
after all chapters ran, the reproduction scorecard page ``book/generated/scorecard.md`` is
generated from those records.

Chapters run ``--jobs`` at a time (default 2), each kernel with ``--threads`` BLAS/torch threads
(default 1). The thread count is pinned because it is part of what makes a run reproducible:
torch and BLAS split reductions by thread, so a network trained with 1 thread and with 2 threads
differs in the last bits, and training amplifies that. ``make test`` executes the notebooks with
one thread per process too, so the book and the tests see the same numbers.

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

EXECUTED = Path("book") / "executed"
GENERATED = Path("book") / "generated"
PROFILES = ("quick", "full", "paper")
#: Profiles shown as columns of :func:`parameter_table` (the paper profile's values are close
#: to the table's "paper" column, the values the paper states).
TABLE_PROFILES = ("quick", "full")
#: The profile that is every chapter's defaults (no parameter file).
DEFAULT_PROFILE = "quick"
_UNSET = object()
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def toc_chapters(toc_path: Path) -> list[str]:
    """Names of the executed chapters listed in ``_toc.yml``, in book order."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text())
    prefix = EXECUTED.as_posix() + "/"
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            entry = node.get("file")
            if isinstance(entry, str) and entry.startswith(prefix):
                found.append(entry[len(prefix) :].removesuffix(".ipynb"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def chapter_module(name: str):
    """The library module of chapter ``name`` (``cca_lib.experiments.<name>``), or None for a
    chapter that has none (it calls the library directly)."""
    import importlib
    import importlib.util

    module = f"cca_lib.experiments.{name}"
    if not name.isidentifier() or importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


def load_params(root: Path, profile: str, name: str) -> dict:
    """The parameters that profile ``profile`` sets for chapter ``name`` (papermill's overrides).

    The quick profile (:data:`DEFAULT_PROFILE`) is each chapter's defaults (its ``Config``'s,
    copied in the notebook's parameters cell): it sets nothing. Any other profile is
    ``params/<profile>/<name>.yaml``, the values that differ from the defaults (a missing file
    is an error, not a default; an empty one sets nothing). A chapter whose module declares
    ``PARAMS_FROM`` (chapter -> parameter names) also gets those parameters from the other
    chapter's profile, so that both use the same values (e.g. one shared training run); its
    own file may not set them.
    """
    import yaml

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    params: dict = {}
    if profile != DEFAULT_PROFILE:
        path = root / "params" / profile / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"no parameter file for chapter {name!r} in profile {profile!r}: {path}")
        params = yaml.safe_load(path.read_text()) or {}
        if not isinstance(params, dict):
            raise ValueError(f"{path} must hold a mapping of parameter names to values, got "
                             f"{params!r}")
    module = chapter_module(name)
    for other, names in getattr(module, "PARAMS_FROM", {}).items():
        doubled = sorted(set(params) & set(names))
        if doubled:
            raise ValueError(f"params/{profile}/{name}.yaml sets {doubled}, which chapter "
                             f"{name!r} takes from chapter {other!r}: set them in "
                             f"params/{profile}/{other}.yaml")
        shared = load_params(root, profile, other)
        params.update({k: v for k, v in shared.items() if k in names})
    return params


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


def parameter_table(name: str, current: dict | None = None, root: Path | None = None):
    """The parameters of chapter ``name`` as a DataFrame, for the chapter to show.

    One row per parameter of the chapter's ``Config`` (:meth:`parameters`): its meaning and the
    paper's value (the field's ``help`` and ``paper`` metadata), the quick profile value (the
    default) and the full profile value, and the value in this run when ``current`` (the
    notebook's ``globals()``) is given. A chapter without a ``Config`` lists its notebook's
    parameters cell as papermill reads it (the meaning is the line's comment).
    """
    import pandas as pd

    from cca_lib._paths import project_root

    root = root if root is not None else project_root()
    if root is None:
        raise FileNotFoundError("parameter_table needs a cca-book checkout (notebooks/, params/)")
    profiles = {p: load_params(root, p, name) for p in TABLE_PROFILES}
    config = getattr(chapter_module(name), "Config", None)
    rows = []
    if config is not None:
        defaults = config.defaults()
        values = {p: {**defaults, **config._convert(profiles[p])} for p in TABLE_PROFILES}
        for param, f in config.parameters().items():
            row = {"parameter": param, "meaning": f.metadata["help"],
                   "paper": f.metadata["paper"]}
            row.update({p: repr(values[p][param]) for p in TABLE_PROFILES})
            rows.append(row)
    else:
        import papermill

        inferred = papermill.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb"))
        for param, info in inferred.items():
            row = {"parameter": param, "meaning": info["help"].strip(), "paper": ""}
            row.update({p: repr(profiles[p][param]) if param in profiles[p] else info["default"]
                        for p in TABLE_PROFILES})
            rows.append(row)
    if current is not None:
        for row in rows:
            value = current.get(row["parameter"], _UNSET)
            value = tuple(value) if isinstance(value, list) else value
            row["this run"] = "" if value is _UNSET else repr(value)
    return pd.DataFrame(rows).set_index("parameter")


def chapter_meta(root: Path, name: str) -> dict:
    """The chapter's scheduling hints from its notebook metadata ``cca_book``: ``after`` (chapters
    whose cached results it reuses, so it starts once they are done) and ``cost`` (its measured
    quick-profile seconds on one thread, so the longest chapters start first)."""
    import nbformat

    nb = nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
    meta = dict(nb.metadata.get("cca_book", {}))
    after, cost = meta.get("after", []), meta.get("cost", 0)
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise ValueError(f"notebooks/{name}.ipynb: metadata cca_book.after must be a list of "
                         f"chapter names, got {after!r}")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
        raise ValueError(f"notebooks/{name}.ipynb: metadata cca_book.cost must be a number of "
                         f"seconds >= 0, got {cost!r}")
    return {"after": after, "cost": float(cost)}


def schedule_order(chapters: list[str], meta: dict[str, dict]) -> list[str]:
    """Chapters in the order they may start: every chapter after the selected chapters it
    depends on; among those ready, the costliest first, then book order."""
    order, done, left = [], set(), list(chapters)
    while left:
        ready = [c for c in left if set(meta[c]["after"]) & set(chapters) <= done]
        if not ready:
            raise ValueError(f"chapters depend on each other in a cycle: {left}")
        nxt = max(ready, key=lambda c: (meta[c]["cost"], -left.index(c)))
        order.append(nxt)
        done.add(nxt)
        left.remove(nxt)
    return order


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


def build(root: Path, profile: str, only: Iterable[str] | None = None, *, jobs: int = 2,
          threads: int = 1, scheduler: str | None = None) -> None:
    from cca_lib import scorecard

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
        from cca_lib.executors import with_scheduler

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
    meta = {name: chapter_meta(root, name) for name in selected}
    order = schedule_order(selected, meta)
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
                waits = set(meta[name]["after"]) & set(selected)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        from cca_lib import plan

        rows = plan.plan(args.root.resolve(), args.profile, chapters=args.only)
        print(plan.format_plan(rows, args.profile))
        return
    build(args.root.resolve(), args.profile, args.only, jobs=args.jobs, threads=args.threads,
          scheduler=args.scheduler)


if __name__ == "__main__":
    main()
