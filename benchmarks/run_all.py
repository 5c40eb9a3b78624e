"""Run every benchmark in this folder (``make bench``).

Each benchmark prints its own table; ratios are taken against a reference timed in the same
process. Pass-through: ``SVCCA_PATH`` (a checkout of github.com/google/svcca) enables the
reference comparison of ``bench_similarity.py``.
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
        if script.name == "bench_similarity.py" and os.environ.get("SVCCA_PATH"):
            args += ["--svcca", os.environ["SVCCA_PATH"]]
        print(f"== {script.name}", flush=True)
        if subprocess.call(args) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
