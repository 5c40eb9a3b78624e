"""Time ``cca_lib.similarity`` against the authors' reference code (google/svcca).

Usage::

    python benchmarks/bench_similarity.py --svcca /path/to/svcca [--sizes 64x2000,256x10000]
        [--repeats 5] [--threads 1]

``--svcca`` is a local checkout of github.com/google/svcca (``cca_core.py`` and ``pwcca.py``);
it is not part of this project. Without it, only cca_lib is timed.

What is timed, interleaved in one process (the order rotates every repeat), median over repeats
(a repeat of a call faster than 0.2 s loops it enough times to last about 0.2 s):

* coefficients: ``cca(x, y, variates=False)`` (rho and canonical directions) vs the reference's
  ``get_cca_similarity(x.T, y.T, epsilon=0, compute_dirns=False)``, which also returns the
  coefficients and directions;
* PWCCA: ``pwcca(x, y)`` vs ``compute_pwcca(x.T, y.T, epsilon=0)``;
* the same two cca_lib calls on float32 CPU torch tensors (ratios against the float64
  reference, since the reference has no float32 path);
* ``floor``: the three float64 products ``x'x``, ``y'y``, ``x'y`` alone on data centered
  beforehand, the least any covariance-based CCA must spend (the reference's ``np.cov`` of the
  stacked ``[x; y]`` is one SYRK with the same flop count). It bounds the achievable speed-up:
  ``ref / floor``;
* ``svd``: the thin SVD, with vectors, of one ``d x d`` matrix: the ``O(d^3)`` step that both
  the reference and cca_lib take to get coefficients and directions from the covariances;
* ``floor32``: the same three products in float32 (the float32 path's floor). ``f32 max`` is
  ``ref / (floor32 + svd)``: the speed-up a float32 path that spent nothing else would reach.

Inputs are well-conditioned float64 ``(n, d)`` activations sharing a linear signal, so the
coefficients spread over (0, 1). ``max|drho|`` compares our float64 coefficients with the
reference's at ``epsilon=0``; ``f32 |drho|`` our float32 torch coefficients with our float64.
The transposes the reference needs (``(neurons, datapoints)``) are made once, outside timing.

Peak memory is measured in a separate untimed call per function with ``tracemalloc``: numpy
registers its array buffers with it, so this is the peak of the array memory the call
allocates beyond its inputs (BLAS/LAPACK workspaces are not included, for either side).

The BLAS thread count is fixed before numpy is imported (``--threads``, default 1): on a shared
two-core machine OpenBLAS's threads contend with other processes and make timings erratic.
Both sides run with the same setting.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64x2000,256x10000,512x20000,1024x50000",
                   help="comma-separated d x n (neurons x samples), e.g. 256x10000")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per function")
    p.add_argument("--svcca", default=None, help="path to a google/svcca checkout")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (both sides)")
    p.add_argument("--no-torch", action="store_true", help="skip the float32 torch path")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must look like 256x10000,512x20000, got {args.sizes!r}")
    return args


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread settings)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cca_lib import cca, pwcca  # noqa: E402


def load_reference(path: str | None):
    """Import the reference ``cca_core`` and ``pwcca`` modules from ``path`` (or None)."""
    if not path:
        return None
    if not os.path.isfile(os.path.join(path, "cca_core.py")):
        print(f"# no cca_core.py under {path}: skipping the reference comparison")
        return None
    sys.path.insert(0, os.path.abspath(path))
    # numpy 2 removed a few aliases the 2019 code base might touch; restore them if absent
    for alias, value in (("float", float), ("int", int), ("complex", complex)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    import cca_core  # noqa: PLC0415
    import pwcca as ref_pwcca  # noqa: PLC0415

    return cca_core, ref_pwcca


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
    """Calls for one timed repeat to last about MIN_REPEAT_S. A first (warm-up) call already
    that long needs no second call to calibrate; a shorter one may include one-off start-up
    costs, so a second call measures the steady state."""
    if first_s >= MIN_REPEAT_S:
        return 1
    return max(1, math.ceil(MIN_REPEAT_S / _timed(fn)[1]))


def bench_size(d: int, n: int, ref, args) -> dict[str, float]:
    x, y = make_data(d, n, args.seed)
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    xc32, yc32 = xc.astype(np.float32), yc.astype(np.float32)
    mix = np.random.default_rng(args.seed + 1).standard_normal((d, d)) / np.sqrt(d)
    fns = {
        # the floor for any covariance-based method: the three products alone, on data
        # centered beforehand (the reference's np.cov does the same flops, as one SYRK)
        "floor": lambda: (xc.T @ xc, yc.T @ yc, xc.T @ yc),
        "floor32": lambda: (xc32.T @ xc32, yc32.T @ yc32, xc32.T @ yc32),
        "svd": lambda: np.linalg.svd(mix, full_matrices=False),
        "coef": lambda: cca(x, y, variates=False).rho,
        "pwcca": lambda: pwcca(x, y),
    }
    if ref is not None:
        cca_core, ref_pw = ref
        fns["ref coef"] = lambda: cca_core.get_cca_similarity(
            xt, yt, epsilon=0.0, compute_dirns=False, verbose=False)["cca_coef1"]
        fns["ref pwcca"] = lambda: ref_pw.compute_pwcca(xt, yt, epsilon=0.0)[0]
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
        tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        fns["t32 coef"] = lambda: cca(tx, ty, variates=False).rho
        fns["t32 pwcca"] = lambda: pwcca(tx, ty)

    names = list(fns)
    warm = {k: _timed(fns[k]) for k in names}  # warm-up, and the values compared
    out: dict[str, object] = {k: value for k, (value, _) in warm.items()}
    # Calls per timed repeat: enough for a repeat to last about MIN_REPEAT_S, so millisecond
    # calls at small sizes are not timed one at a time (timer and scheduler noise).
    loops = {k: _calls_per_repeat(fns[k], first_s) for k, (_, first_s) in warm.items()}
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t0 = time.perf_counter()
            for _ in range(loops[k]):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / loops[k])
    row: dict[str, float] = {k: float(np.median(v)) for k, v in times.items()}
    if ref is not None:
        ours, theirs = np.asarray(out["coef"]), np.sort(np.asarray(out["ref coef"]))[::-1]
        row["max|drho|"] = float(np.max(np.abs(ours - theirs[: ours.size])))
        row["pwcca value"], row["ref pwcca value"] = float(out["pwcca"]), float(out["ref pwcca"])
    if "t32 coef" in out:
        row["f32|drho|"] = float(np.max(np.abs(np.asarray(out["t32 coef"]) - out["coef"])))
    if not args.no_memory:
        for k in (k for k in names if k not in ("floor", "floor32", "svd")):
            row[f"mem {k}"] = peak_mib(fns[k])
    return row


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def main() -> None:
    args = ARGS
    ref = load_reference(args.svcca)
    print(f"# numpy {np.__version__}, threads={args.threads}, repeats={args.repeats}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"reference={'yes' if ref else 'no'}")
    cols = ("d x n", "floor ms", "coef ms", "ref ms", "x", "pwcca ms", "ref ms", "x",
            "t32 coef ms", "x", "t32 pw ms", "x", "floor32 ms", "svd ms", "f32 max x",
            "max|drho|", "f32|drho|",
            "MiB ours", "MiB ref", "MiB pw", "MiB refpw")
    print(" | ".join(cols))
    for d, n in args.sizes:
        r = bench_size(d, n, ref, args)

        def ratio(ref_key: str, key: str, r=r) -> float | None:
            return r[ref_key] / r[key] if ref_key in r and key in r else None

        def ms(v: float | None) -> str:
            return fmt(None if v is None else 1e3 * v, ".1f")

        cells = [f"{d}x{n}", ms(r.get("floor")), ms(r.get("coef")),
                 ms(r.get("ref coef")),
                 fmt(ratio("ref coef", "coef"), ".1f"), ms(r.get("pwcca")),
                 ms(r.get("ref pwcca")), fmt(ratio("ref pwcca", "pwcca"), ".1f"),
                 ms(r.get("t32 coef")), fmt(ratio("ref coef", "t32 coef"), ".1f"),
                 ms(r.get("t32 pwcca")), fmt(ratio("ref pwcca", "t32 pwcca"), ".1f"),
                 ms(r.get("floor32")), ms(r.get("svd")),
                 fmt(r["ref coef"] / (r["floor32"] + r["svd"]) if "ref coef" in r else None,
                     ".1f"),
                 fmt(r.get("max|drho|"), ".1e"), fmt(r.get("f32|drho|"), ".1e"),
                 fmt(r.get("mem coef"), ".0f"), fmt(r.get("mem ref coef"), ".0f"),
                 fmt(r.get("mem pwcca"), ".0f"), fmt(r.get("mem ref pwcca"), ".0f")]
        print(" | ".join(cells), flush=True)
        if "pwcca value" in r:
            print(f"#   {d}x{n}: PWCCA ours (paper formula) {r['pwcca value']:.4f}, "
                  f"reference {r['ref pwcca value']:.4f}", flush=True)


if __name__ == "__main__":
    main()
