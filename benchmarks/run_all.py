"""Run every benchmark in this folder (``make bench``).

Each benchmark prints its own table; ratios are taken against a reference timed in the same
process. Pass-through to ``bench_similarity.py``: ``SVCCA_PATH`` (a checkout of
github.com/google/svcca), ``ANATOME_PATH`` (github.com/moskomule/anatome), ``NETREP_PATH``
(github.com/ahwillia/netrep) and ``REPSIM_PATH`` (a folder holding an installed ``repsim``)
enable those comparisons.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        args = [sys.executable, str(script)]
        if script.name == "bench_similarity.py":
            for var, flag in (("SVCCA_PATH", "--svcca"), ("ANATOME_PATH", "--anatome"),
                              ("NETREP_PATH", "--netrep"), ("REPSIM_PATH", "--repsim")):
                if os.environ.get(var):
                    args += [flag, os.environ[var]]
        print(f"== {script.name}", flush=True)
        if subprocess.call(args) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
