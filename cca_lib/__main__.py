"""Command line: ``python -m cca_lib compare a.npy b.npy`` prints every similarity of two
layers' activations, the number of samples and features, the directions the rank rule
dropped, and the sampling floor (what unrelated data of this size scores).

Inputs: ``.npy`` files, ``.npz`` archives (``file.npz:key``; the key may be left out when the
archive holds one array), ``.pt`` files holding a tensor or a dict of tensors
(``file.pt:key``; needs torch). Arrays are ``(samples, neurons)``; ``--layout neurons-first``
reads google/svcca's ``(neurons, datapoints)`` orientation. ``--json`` prints one JSON object.
``--stream`` memory-maps ``.npy`` files and feeds them in chunks of rows through
:class:`cca_lib.Accumulator` (exactly the in-memory answers, memory independent of ``n``).
Every computation goes through the accumulator, so both modes run the same code.

The sampling floor is the mean of each measure over ``--null-perms`` permutations of ``y``'s
rows (seeded by ``--seed``): the similarity of data with these sizes and marginals but no
relation, from :func:`cca_lib.stats.permutation_nulls` (in memory by its fast path; with
``--stream`` through the accumulator in chunks, memory independent of ``n``). Bad files, keys,
shapes or layouts exit with status 2 and a message.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cca_lib.streaming import Accumulator

_PROG = "python -m cca_lib"
_LAYOUTS = ("samples-first", "neurons-first")


class CLIError(Exception):
    """A problem with the command line's inputs: reported as a message, exit status 2."""


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """``path`` or ``path:key`` (a path that exists as written is never split)."""
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return path, None
    head, key = spec.rsplit(":", 1)
    return Path(head), key


def load(spec: str, name: str, *, layout: str = "samples-first", mmap: bool = False) -> Any:
    """The 2-D float array ``spec`` names, as ``(samples, neurons)`` (a memory map for
    ``mmap=True``, ``.npy`` only). Raises :class:`CLIError` with a message naming ``name``."""
    path, key = _split_spec(spec)
    if not path.is_file():
        raise CLIError(f"{name}: no such file: {path}")
    suffix = path.suffix.lower()
    if mmap and suffix != ".npy":
        raise CLIError(f"{name}: --stream reads .npy files (memory-mapped); {path} is "
                       f"{suffix or 'without a suffix'}: save the array with np.save, or drop "
                       "--stream")
    try:
        if suffix == ".npy":
            if key is not None:
                raise CLIError(f"{name}: {path} is a .npy file, which holds one array: drop "
                               f"the ':{key}'")
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arr = archive[_pick(list(archive.files), key, name, path)]
        elif suffix == ".pt":
            arr = _load_pt(path, key, name)
        else:
            raise CLIError(f"{name}: {path} has suffix {suffix or '(none)'}; expected .npy, "
                           ".npz or .pt")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CLIError(f"{name}: could not read {path} as a {suffix} file ({err})") from err
    return _check_array(arr, name, spec, layout)


def _pick(keys: list[str], key: str | None, name: str, path: Path) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise CLIError(f"{name}: {path} holds {len(keys)} arrays {keys}: choose one with "
                       f"{path}:KEY")
    if key not in keys:
        raise CLIError(f"{name}: {path} has no array {key!r}; it holds {keys}")
    return key


def _load_pt(path: Path, key: str | None, name: str) -> np.ndarray:
    try:
        import torch
    except ImportError as err:
        raise CLIError(f"{name}: reading .pt files needs torch, which is not installed") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a tensor file
        raise CLIError(f"{name}: could not read {path} as a torch file ({err})") from err
    if isinstance(obj, dict):
        obj = obj[_pick([str(k) for k in obj], key, name, path)]
    elif key is not None:
        raise CLIError(f"{name}: {path} holds a {type(obj).__name__}, not a dict: drop the "
                       f"':{key}'")
    if not isinstance(obj, torch.Tensor):
        raise CLIError(f"{name}: {path} holds a {type(obj).__name__}, not a tensor")
    return obj.detach().numpy()


def _check_array(arr: Any, name: str, spec: str, layout: str) -> Any:
    if arr.ndim != 2:
        raise CLIError(f"{name}: {spec} holds an array of shape {arr.shape}; expected 2-D "
                       "(samples, neurons), or (neurons, samples) with --layout neurons-first")
    if arr.dtype not in (np.float32, np.float64):
        raise CLIError(f"{name}: {spec} has dtype {arr.dtype}; expected float32 or float64 "
                       "(convert it, e.g. a.astype(np.float32), and save it again)")
    return arr.T if layout == "neurons-first" else arr


def _check_pair(x: Any, y: Any, layout: str) -> None:
    if x.shape[0] == y.shape[0]:
        return
    other = "samples-first" if layout == "neurons-first" else "neurons-first"
    hint = ""
    if x.shape[1] == y.shape[1] or x.shape[0] == y.shape[1] or x.shape[1] == y.shape[0]:
        hint = f"; if the files are {other.replace('-first', '')} first, pass --layout {other}"
    raise CLIError(f"x has {x.shape[0]} samples but y has {y.shape[0]} (as (samples, neurons) "
                   f"after --layout {layout}: x {x.shape}, y {y.shape}){hint}")


def _chunks(n: int, rows: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + rows)) for s in range(0, n, rows)]


def accumulate(x: Any, y: Any, chunk_rows: int) -> Accumulator:
    """One :class:`Accumulator` over all rows, ``chunk_rows`` at a time."""
    acc = Accumulator(x.shape[1], y.shape[1])
    for start, stop in _chunks(x.shape[0], chunk_rows):
        acc.update(np.asarray(x[start:stop]), np.asarray(y[start:stop]))
    return acc


def sampling_floor(x: Any, y: Any, *, n_perm: int, seed: int, chunk_rows: int | None = None,
                   **measure_kw: Any) -> dict[str, float | None]:
    """Mean of every measure over ``n_perm`` permutations of ``y``'s rows (seeded): the
    similarity expected of unrelated data with these sizes, by
    :func:`cca_lib.stats.permutation_nulls` (``chunk_rows``: through the accumulator in chunks
    of rows, for memory-mapped files; None: in memory). ``measure_kw`` (``keep``, ``rtol``,
    ``allow_few_samples``) go to the measures. Debiased CKA is None below 4 samples."""
    from cca_lib.stats import NULL_MEASURES, permutation_nulls

    names = tuple(m for m in NULL_MEASURES if m != "debiased CKA" or x.shape[0] >= 4)
    nulls = permutation_nulls(x, y, names, n_perm=n_perm, seed=seed, chunk_rows=chunk_rows,
                              **measure_kw)
    return {m: (nulls[m].floor if m in nulls else None) for m in NULL_MEASURES}


def compare_files(args: argparse.Namespace) -> dict[str, Any]:
    x = load(args.x, "x", layout=args.layout, mmap=args.stream)
    y = load(args.y, "y", layout=args.layout, mmap=args.stream)
    _check_pair(x, y, args.layout)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    chunk = args.chunk_rows or (max(1024, 2**24 // (d1 + d2)) if args.stream else n)
    kw = {"keep": args.keep, "rtol": args.rtol, "allow_few_samples": args.allow_few_samples}
    if n <= d1 + d2 and not args.allow_few_samples:
        raise CLIError(
            f"n_samples={n} <= d1 + d2 = {d1 + d2} (x {x.shape}, y {y.shape}): CCA would be "
            "trivially 1 in some directions. Use more samples, pass --allow-few-samples, or, "
            "if the files are (neurons, samples), pass --layout neurons-first")
    acc = accumulate(x, y, chunk)
    result = acc.cca(rtol=args.rtol, allow_few_samples=args.allow_few_samples)
    measures = acc.measures(**kw)
    floor = (sampling_floor(x, y, n_perm=args.null_perms, seed=args.seed,
                            chunk_rows=chunk if args.stream else None, **kw)
             if args.null_perms else None)
    return {"x": {"file": args.x, "shape": list(x.shape)},
            "y": {"file": args.y, "shape": list(y.shape)},
            "layout": args.layout, "n_samples": n, "d1": d1, "d2": d2,
            "dropped_x": result.dropped_x, "dropped_y": result.dropped_y,
            "canonical_pairs": int(result.rho.size), "top_rho": float(result.rho[0]),
            "measures": measures, "floor": floor, "null_perms": args.null_perms,
            "seed": args.seed, "stream": args.stream, "chunk_rows": chunk}


def _text(r: dict[str, Any]) -> str:
    lines = [f"x: {r['x']['file']}  (n={r['n_samples']}, d1={r['d1']})",
             f"y: {r['y']['file']}  (n={r['n_samples']}, d2={r['d2']})",
             f"layout: {r['layout']}" + (f", streamed in chunks of {r['chunk_rows']} rows"
                                         if r["stream"] else ""),
             f"directions dropped: x {r['dropped_x']}, y {r['dropped_y']}  "
             f"(canonical pairs {r['canonical_pairs']}, largest rho {r['top_rho']:.6f})",
             ""]
    floor = r["floor"]
    head = f"{'measure':<20}{'value':>10}"
    if floor is not None:
        head += f"{'floor':>10}   (mean over {r['null_perms']} permutations of y, seed "
        head += f"{r['seed']})"
    lines.append(head)
    for k, v in r["measures"].items():
        row = f"{k:<20}{_fmt(v):>10}"
        if floor is not None:
            row += f"{_fmt(floor[k]):>10}"
        lines.append(row)
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6f}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_PROG, description="Compare neural-network "
                                "representations with CCA, SVCCA, PWCCA and CKA.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="every similarity of two activation files",
                       description="Every similarity of two layers' activations on the same "
                       "inputs (same rows in the same order).")
    c.add_argument("x", help="first file: a.npy, a.npz[:key] or a.pt[:key]")
    c.add_argument("y", help="second file, same samples in the same order")
    c.add_argument("--layout", choices=_LAYOUTS, default="samples-first",
                   help="samples-first: (samples, neurons) arrays (default); neurons-first: "
                   "(neurons, samples), google/svcca's orientation")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--stream", action="store_true", help="memory-map .npy files and "
                   "accumulate them in chunks of rows")
    c.add_argument("--chunk-rows", type=_positive, default=None,
                   help="rows per chunk with --stream (default ~2**24 values)")
    c.add_argument("--keep", type=_keep, default=0.99,
                   help="SVCCA: variance fraction in (0, 1] or number of directions")
    c.add_argument("--rtol", type=float, default=None, help="rank-rule tolerance "
                   "(default by dtype: 1e-6 float64, 3e-3 float32)")
    c.add_argument("--allow-few-samples", action="store_true",
                   help="compute even when n_samples <= d1 + d2")
    c.add_argument("--null-perms", type=_nonneg, default=5,
                   help="permutations for the sampling floor (0: skip it; default 5)")
    c.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    return p


def _positive(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {s}")
    return v


def _nonneg(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {s}")
    return v


def _keep(s: str) -> float | int:
    try:
        return int(s)
    except ValueError:
        return float(s)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = compare_files(args)
    except CLIError as err:
        print(f"{_PROG} compare: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:  # the library's input checks
        print(f"{_PROG} compare: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
