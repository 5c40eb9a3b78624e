"""Training throughput of the experiment engine's quick configs, on the real datasets.

    CCA_BOOK_DATA_MIRROR=<datasets folder> python benchmarks/bench_training.py [--threads 1 2]
        [--bf16] [--steps-scale 1.0] [--json out.json]

Runs ``cca_lib.training.train`` end to end (cache off, minimal evaluation) for

* the small CNN on Fashion-MNIST (20k-image subset, batch 128) at width 16 and 32: images/s;
* the 3-layer char LSTM (hidden 128, embedding 64, batch 64 x 64) on tiny-shakespeare: tokens/s;
* the same LSTM at word level on PTB (10k-word softmax): tokens/s;

once per thread count, and prints them beside reference figures (:data:`REFERENCE`, measured
with 2 threads on a 2-core CPU). The machine may be shared: numbers are noisy,
so each line also says how many threads it used and the load average when it ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cca_lib import training  # noqa: E402

#: Reference training throughput with 2 threads on a 2-core CPU, fp32 (units as printed).
REFERENCE = {"cnn w=16": 5400.0, "cnn w=32": 1900.0, "char lstm h=128": 66000.0,
             "word lstm h=128 (ptb)": 8500.0}


def _cases(bf16: bool, scale: float):
    def steps(n: int) -> int:
        return max(5, int(n * scale))

    for width, n in ((16, 150), (32, 60)):
        yield (f"cnn w={width}", "img/s", 128,
               training.CNNTrainConfig(width=width, steps=steps(n), eval_size=128, bf16=bf16))
    yield ("char lstm h=128", "tok/s", 64 * 64,
           training.LMTrainConfig(corpus="tinyshakespeare", steps=steps(60), eval_tokens=1024,
                                  bf16=bf16))
    yield ("word lstm h=128 (ptb)", "tok/s", 64 * 64,
           training.LMTrainConfig(corpus="ptb", steps=steps(12), eval_tokens=1024, bf16=bf16))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the number of timed steps (default 1.0)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if not os.environ.get("CCA_BOOK_DATA_MIRROR"):
        default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
        if default.is_dir():
            os.environ["CCA_BOOK_DATA_MIRROR"] = str(default)

    rows = []
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, device "
          f"{training.resolve_device('auto')}, bf16={args.bf16}")
    print(f"{'case':24s} {'threads':>7s} {'steps':>6s} {'rate':>10s} {'unit':6s} "
          f"{'reference (2 cores)':>20s} {'ratio':>6s} {'load':>5s}")
    for threads in args.threads:
        for name, unit, per_step, cfg in _cases(args.bf16, args.steps_scale):
            cfg = dataclasses.replace(cfg, threads=threads)
            # warm-up: load the data and run a few steps so one-time costs are not timed
            training.train(dataclasses.replace(cfg, steps=3), progress=False,
                           cache=False)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            result = training.train(cfg, progress=False, cache=False)
            wall = time.perf_counter() - start
            rate = cfg.steps * per_step / result.seconds
            ref = REFERENCE[name]
            rows.append({"case": name, "threads": threads, "steps": cfg.steps, "rate": rate,
                         "unit": unit, "reference_2_cores": ref, "ratio": rate / ref,
                         "bf16": args.bf16, "train_seconds": result.seconds,
                         "wall_seconds": wall, "loadavg_1min": load})
            print(f"{name:24s} {threads:7d} {cfg.steps:6d} {rate:10.0f} {unit:6s} "
                  f"{ref:20.0f} {rate / ref:6.2f} {load:5.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
