"""Execute the book's chapters with papermill, one profile at a time.

``python -m cca_lib.bookbuild --profile quick`` (what ``make book`` runs) reads ``_toc.yml``,
finds every chapter listed as ``book/executed/<name>``, and executes ``notebooks/<name>.ipynb``
with the parameters in ``params/<profile>/<name>.yaml`` into ``book/executed/<name>.ipynb``.
Each chapter records the status of the paper's claims it checks (see :mod:`cca_lib.scorecard`);
after all chapters ran, the reproduction scorecard page ``book/generated/scorecard.md`` is
generated from those records.

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
from pathlib import Path

EXECUTED = Path("book") / "executed"
GENERATED = Path("book") / "generated"
PROFILES = ("quick", "full")


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


def load_params(root: Path, profile: str, name: str) -> dict:
    """Parameters of chapter ``name`` for ``profile``; a missing file is an error, not a default."""
    import yaml

    path = root / "params" / profile / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no parameter file for chapter {name!r} in profile {profile!r}: {path}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values, got {params!r}")
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
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - start


def build(root: Path, profile: str, only: Iterable[str] | None = None) -> None:
    from cca_lib import scorecard

    chapters = toc_chapters(root / "_toc.yml")
    selected = list(only) if only else chapters
    unknown = sorted(set(selected) - set(chapters))
    if unknown:
        raise SystemExit(f"not chapters of the book (see _toc.yml): {', '.join(unknown)}; "
                         f"chapters are: {', '.join(chapters)}")
    results_dir = root / EXECUTED / "results"
    os.environ[scorecard.RESULTS_ENV] = str(results_dir)
    os.environ[scorecard.PROFILE_ENV] = profile
    total = time.perf_counter()
    for i, name in enumerate(selected, 1):
        params = load_params(root, profile, name)
        print(f"[{i}/{len(selected)}] {name} ({profile} profile) ...", flush=True)
        try:
            seconds = execute_chapter(root, name, profile, params)
        except Exception as exc:  # papermill's error already names the failing cell
            print(f"[{i}/{len(selected)}] {name} FAILED: {type(exc).__name__}", file=sys.stderr)
            kept = EXECUTED / f"{name}.failed.ipynb"
            print(f"    executed copy kept at {kept}", file=sys.stderr)
            raise SystemExit(1) from exc
        print(f"[{i}/{len(selected)}] {name} done in {seconds:.1f} s", flush=True)
    page = scorecard.write_page(results_dir, root / GENERATED / "scorecard.md", profile=profile,
                                chapters=chapters)
    seconds = time.perf_counter() - total
    print(f"scorecard: {page.relative_to(root)}; all chapters in {seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES,
                        help="parameter set in params/<profile>/ (default: quick)")
    parser.add_argument("--only", nargs="+", metavar="CHAPTER",
                        help="execute only these chapters (names as in _toc.yml)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="book root (default: cwd)")
    args = parser.parse_args(argv)
    build(args.root.resolve(), args.profile, args.only)


if __name__ == "__main__":
    main()
