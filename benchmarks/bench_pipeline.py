"""Wall time of `dvc repro` in a fresh copy of the repository, then of a no-op `dvc repro`.

The copy holds the files git tracks, in a new git repository, with this
interpreter's environment first on PATH (as `make repro` runs it); MLflow
tracks into the copy's own mlflow.db.  Targets: the whole pipeline within 30 s,
a no-op within 3 s, on a 2-core machine.  Figures only.

    python benchmarks/bench_pipeline.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cwd: Path, *args: str) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return seconds


def fresh_copy(dest: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=dest, check=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    full, noop = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            fresh_copy(Path(tmp))
            full.append(run(Path(tmp), "dvc", "repro"))
            noop.append(run(Path(tmp), "dvc", "repro"))
    report = {
        "repro_seconds": statistics.median(full),
        "noop_repro_seconds": statistics.median(noop),
        "repro_all": full,
        "noop_all": noop,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"dvc repro in a fresh copy, median of {args.repeats}")
    print(f"  whole pipeline (data, preprocess, train, evaluate)  {report['repro_seconds']:.1f} s")
    print(f"  no-op repro  {report['noop_repro_seconds']:.1f} s")


if __name__ == "__main__":
    main()
