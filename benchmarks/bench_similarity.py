"""Time ``cca_lib.similarity`` against the physical floor and other libraries, in one run.

Usage::

    python benchmarks/bench_similarity.py --threads 2 --sizes 512x20000,1024x50000
        [--repeats 3] [--svcca PATH] [--anatome PATH] [--netrep PATH] [--repsim PATH]

``--svcca`` is a local checkout of github.com/google/svcca (``cca_core.py``, ``pwcca.py``),
``--anatome`` of github.com/moskomule/anatome, ``--netrep`` of github.com/ahwillia/netrep and
``--repsim`` a folder holding an installed ``repsim`` package (PyPI); anatome, netrep and
repsim are also used when importable. None of them is part of this project: each is only
timed.

**The floor** is what any covariance-based method must spend, measured here in the same run
on the same inputs: the products ``x'x``, ``y'y`` (SYRK) and ``x'y`` (GEMM) at BLAS speed in the
input's dtype (on data centered beforehand), plus, in float64, two Cholesky factorizations of
``d x d`` correlation matrices and one SVD of a ``d x d`` matrix, values only for the
coefficients' floor (``floor coef``), with vectors for PWCCA's (``floor pw``).

What is timed, per dtype (float64, float32 numpy arrays), interleaved in one process with the
order rotating every repeat; each time is the **minimum** over repeats (the least disturbed by
other processes; a call faster than 0.2 s is looped to last about 0.2 s):

* ``coef``: ``cca(x, y, variates=False)`` (coefficients and canonical directions: its SVD
  forms singular vectors, which ``floor coef`` does not);
* ``mcca``: ``mean_cca(x, y)`` (coefficients alone, the work ``floor coef`` counts);
* ``pwcca``: ``pwcca(x, y)``;
* ``acc``: a ``cca_lib.Accumulator`` fed the same rows in 10 batches, then ``.pwcca()``
  (``acc / pw``: against the in-memory ``pwcca``);
* the other libraries (float64 inputs; their float32 runs are not timed): google/svcca's
  ``get_cca_similarity(..., epsilon=0, compute_dirns=False)`` and ``compute_pwcca``, anatome's
  ``pwcca_distance`` (torch, ``backend="svd"``), netrep's ``LinearMetric(alpha=0)``
  ``.fit_score`` (CCA), repsim's ``pwcca``. Ratios ``ref / ours`` compare with our PWCCA
  (with our coefficients for svcca's coefficient call). anatome and netrep bring their own
  thread pools (torch's, scipy's) and are timed in groups of their own, each beside our call
  again.

``max|drho|`` compares our float64 coefficients with google/svcca's at ``epsilon=0``;
``f32|drho|`` our float32 coefficients with our float64 ones. Peak memory (MiB) is measured in
a separate untimed call with ``tracemalloc`` (numpy registers its array buffers with it: the
peak of the array memory a call allocates beyond its inputs; BLAS/LAPACK workspaces are not
included).

The BLAS thread count is fixed before numpy is imported (``--threads``, default 1), for every
library alike.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import types


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64x2000,256x10000,512x20000,1024x50000",
                   help="comma-separated d x n (neurons x samples), e.g. 256x10000")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per function")
    p.add_argument("--svcca", default=None, help="path to a google/svcca checkout")
    p.add_argument("--anatome", default=None, help="path to a moskomule/anatome checkout")
    p.add_argument("--netrep", default=None, help="path to an ahwillia/netrep checkout")
    p.add_argument("--repsim", default=None, help="folder holding an installed repsim")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (every side)")
    p.add_argument("--dtypes", default="float64,float32", help="input dtypes to time")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must look like 256x10000,512x20000, got {args.sizes!r}")
    args.dtypes = args.dtypes.split(",")
    return args


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread settings)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cca_lib import Accumulator, cca, mean_cca, pwcca  # noqa: E402


def load_reference(path: str | None):
    """Import google/svcca's ``cca_core`` and ``pwcca`` modules from ``path`` (or None)."""
    if not path:
        return None
    if not os.path.isfile(os.path.join(path, "cca_core.py")):
        print(f"# no cca_core.py under {path}: skipping google/svcca")
        return None
    sys.path.insert(0, os.path.abspath(path))
    # numpy 2 removed a few aliases the 2019 code base might touch; restore them if absent
    for alias, value in (("float", float), ("int", int), ("complex", complex)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    import cca_core  # noqa: PLC0415
    import pwcca as ref_pwcca  # noqa: PLC0415

    return cca_core, ref_pwcca


def _import_from(path: str | None, module: str):
    """Import ``module`` from the folder ``path`` (first on the path), or as installed; None
    (with a note) when neither works."""
    if path:
        sys.path.insert(0, os.path.abspath(path))
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001  (any import failure: skip that library)
        if path:
            print(f"# could not import {module} from {path}: {type(exc).__name__}: {exc}")
        return None


def load_anatome(path: str | None):
    """anatome's ``distance`` module. It imports torchvision's feature extraction at the top
    (used only by its model hooks, not by the distances); where torchvision does not import,
    an empty stand-in module is registered so the distances can be timed."""
    try:
        import torchvision.models.feature_extraction  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001
        stub = types.ModuleType("torchvision.models.feature_extraction")
        stub.get_graph_node_names = stub.create_feature_extractor = None
        for name in ("torchvision", "torchvision.models"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["torchvision.models.feature_extraction"] = stub
    return _import_from(path, "anatome.distance")


def make_data(d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Well-conditioned ``(n, d)`` pair: y is a random linear map of x plus independent noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    y = x @ mix + rng.standard_normal((n, d)) * np.linspace(0.2, 3.0, d)
    return x, y


def peak_mib(fn) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


#: Shortest timed repeat in seconds; faster calls are looped within one repeat.
MIN_REPEAT_S = 0.2


def _timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, max(time.perf_counter() - t0, 1e-6)


def _calls_per_repeat(fn, first_s: float) -> int:
    """Calls for one timed repeat to last about MIN_REPEAT_S."""
    if first_s >= MIN_REPEAT_S:
        return 1
    return max(1, math.ceil(MIN_REPEAT_S / _timed(fn)[1]))


def _streamed(x: np.ndarray, y: np.ndarray, batches: int = 10) -> float:
    acc = Accumulator(x.shape[1], y.shape[1])
    for idx in np.array_split(np.arange(x.shape[0]), batches):
        acc.update(x[idx[0]:idx[-1] + 1], y[idx[0]:idx[-1] + 1])
    return acc.pwcca()


def _time_group(fns: dict, names: list[str], repeats: int) -> tuple[dict, dict]:
    """Values and minimum times of ``fns[k]`` for ``k`` in ``names``, interleaved: a warm-up
    call each (its time counts as a repeat), then ``repeats - 1`` rounds in rotating order."""
    warm = {k: _timed(fns[k]) for k in names}
    out = {k: value for k, (value, _) in warm.items()}
    loops = {k: _calls_per_repeat(fns[k], first_s) for k, (_, first_s) in warm.items()}
    times: dict[str, list[float]] = {k: [first_s] for k, (_, first_s) in warm.items()}
    for r in range(max(0, repeats - 1)):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t0 = time.perf_counter()
            for _ in range(loops[k]):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / loops[k])
    return out, {k: float(np.min(v)) for k, v in times.items()}


def bench_size(d: int, n: int, libs: dict, args) -> dict[str, float]:
    x64, y64 = make_data(d, n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    corr = np.corrcoef(x64[: 4 * d].T)  # a d x d correlation matrix for the Cholesky floor
    fns = {
        "chol2": lambda: (np.linalg.cholesky(corr), np.linalg.cholesky(corr)),
        "svd vals": lambda: np.linalg.svd(mix, compute_uv=False),
        "svd vecs": lambda: np.linalg.svd(mix, full_matrices=False),
    }
    for dt in args.dtypes:
        x, y = x64.astype(dt), y64.astype(dt)
        xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
        fns[f"{dt} products"] = lambda xc=xc, yc=yc: (xc.T @ xc, yc.T @ yc, xc.T @ yc)
        fns[f"{dt} coef"] = lambda x=x, y=y: cca(x, y, variates=False).rho
        fns[f"{dt} mcca"] = lambda x=x, y=y: mean_cca(x, y)
        fns[f"{dt} pwcca"] = lambda x=x, y=y: pwcca(x, y)
        fns[f"{dt} acc"] = lambda x=x, y=y: _streamed(x, y)
    xt, yt = np.ascontiguousarray(x64.T), np.ascontiguousarray(y64.T)
    if libs.get("svcca") is not None:
        cca_core, ref_pw = libs["svcca"]
        fns["svcca coef"] = lambda: cca_core.get_cca_similarity(
            xt, yt, epsilon=0.0, compute_dirns=False, verbose=False)["cca_coef1"]
        fns["svcca pwcca"] = lambda: ref_pw.compute_pwcca(xt, yt, epsilon=0.0)[0]
    if libs.get("anatome") is not None or libs.get("torch_needed"):
        import torch

        torch.set_num_threads(args.threads)
        tx, ty = torch.from_numpy(x64), torch.from_numpy(y64)
    if libs.get("anatome") is not None:
        dist = libs["anatome"]
        fns["anatome pwcca"] = lambda: 1.0 - float(dist.pwcca_distance(tx, ty, backend="svd"))
    if libs.get("netrep") is not None:
        metric = libs["netrep"].LinearMetric
        fns["netrep cca"] = lambda: metric(alpha=0.0, center_columns=True).fit_score(x64, y64)
    if libs.get("repsim") is not None:
        rs = libs["repsim"]
        fns["repsim pwcca"] = lambda: float(np.asarray(rs.pwcca([x64, y64]))[0, 1])

    # Libraries with their own thread pools (torch's OpenMP for anatome, scipy's OpenBLAS for
    # netrep) leave idle threads spinning after each call, which slows the numpy BLAS calls
    # that follow: each is timed in its own group, beside our float64 call again.
    apart = {"anatome pwcca": "float64 pwcca", "netrep cca": "float64 coef"}
    out, row = _time_group(fns, [k for k in fns if k not in apart], args.repeats)
    for k, ours in apart.items():
        if k in fns:
            fns[f"{ours} (beside {k.split()[0]})"] = fns[ours]
            got, times = _time_group(fns, [k, f"{ours} (beside {k.split()[0]})"], args.repeats)
            out.update(got)
            row.update(times)
    names = list(fns)
    if "svcca coef" in out:
        ours = np.asarray(out["float64 coef"])
        theirs = np.sort(np.asarray(out["svcca coef"]))[::-1]
        row["max|drho|"] = float(np.max(np.abs(ours - theirs[: ours.size])))
    if "float32 coef" in out and "float64 coef" in out:
        row["f32|drho|"] = float(np.max(np.abs(np.asarray(out["float32 coef"])
                                               - out["float64 coef"])))
    for k in ("svcca pwcca", "anatome pwcca", "repsim pwcca", "float64 pwcca", "float64 acc"):
        if k in out:
            row[f"value {k}"] = float(out[k])
    if not args.no_memory:
        for k in names:
            if k.endswith(("coef", "pwcca", "acc", "cca")):
                row[f"mem {k}"] = peak_mib(fns[k])
    return row


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def main() -> None:
    args = ARGS
    libs = {"svcca": load_reference(args.svcca), "anatome": load_anatome(args.anatome),
            "netrep": _import_from(args.netrep, "netrep.metrics"),
            "repsim": _import_from(args.repsim, "repsim")}
    have = [k for k, v in libs.items() if v is not None]
    print(f"# numpy {np.__version__}, threads={args.threads}, repeats={args.repeats} (min), "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"others: {', '.join(have) or 'none'}")
    cols = ("d x n", "dtype", "products", "floor coef", "coef", "x floor", "mcca", "x floor",
            "floor pw", "pwcca", "x floor", "acc", "acc/pw", "MiB coef", "MiB pw", "MiB acc")
    print("# times in ms; 'x floor' = ours / floor (target <= 1.25), acc/pw target <= 1.15")
    print(" | ".join(cols))
    for d, n in args.sizes:
        r = bench_size(d, n, libs, args)

        def ms(v: float | None) -> str:
            return fmt(None if v is None else 1e3 * v, ".0f")

        for dt in args.dtypes:
            fc = r[f"{dt} products"] + r["chol2"] + r["svd vals"]
            fp = r[f"{dt} products"] + r["chol2"] + r["svd vecs"]
            cells = [f"{d}x{n}", dt, ms(r[f"{dt} products"]), ms(fc), ms(r[f"{dt} coef"]),
                     fmt(r[f"{dt} coef"] / fc, ".2f"), ms(r[f"{dt} mcca"]),
                     fmt(r[f"{dt} mcca"] / fc, ".2f"), ms(fp), ms(r[f"{dt} pwcca"]),
                     fmt(r[f"{dt} pwcca"] / fp, ".2f"), ms(r[f"{dt} acc"]),
                     fmt(r[f"{dt} acc"] / r[f"{dt} pwcca"], ".2f"),
                     fmt(r.get(f"mem {dt} coef"), ".0f"), fmt(r.get(f"mem {dt} pwcca"), ".0f"),
                     fmt(r.get(f"mem {dt} acc"), ".0f")]
            print(" | ".join(cells), flush=True)
        print(f"#   {d}x{n}: chol2 {ms(r['chol2'])} ms, svd values {ms(r['svd vals'])} ms, "
              f"vectors {ms(r['svd vecs'])} ms; max|drho| vs svcca "
              f"{fmt(r.get('max|drho|'), '.1e')}, f32|drho| {fmt(r.get('f32|drho|'), '.1e')}")
        for k, ours in (("svcca coef", "float64 coef"), ("svcca pwcca", "float64 pwcca"),
                        ("anatome pwcca", "float64 pwcca (beside anatome)"),
                        ("netrep cca", "float64 coef (beside netrep)"),
                        ("repsim pwcca", "float64 pwcca")):
            ours32 = ours.split(" (")[0].replace("64", "32")
            if k in r:
                print(f"#   {d}x{n}: {k} {ms(r[k])} ms = {r[k] / r[ours]:.1f} x our float64 "
                      f"{ours.split()[1]} (timed in the same group), "
                      f"{fmt(r[k] / r.get(ours32, math.nan), '.1f')} x float32; "
                      f"MiB {fmt(r.get('mem ' + k), '.0f')}"
                      + (f"; value {r['value ' + k]:.6f} (ours {r['value float64 pwcca']:.6f})"
                         if 'value ' + k in r else ""), flush=True)


if __name__ == "__main__":
    main()
