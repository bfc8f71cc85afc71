#!/usr/bin/env python3
"""Compare two checkouts on the CLI calls that schema validation could slow down.

    .venv/bin/python scripts/bench_ab.py BEFORE_DIR AFTER_DIR [--runs 11]

Runs alternate between the checkouts (a busy shared machine slows both alike) and medians
are printed: ``--help`` (wall time and the cumulative ``hpclaunch.cli`` import from
``-X importtime``), ``endpoints --all`` on a registry of 1,000 ENDED entries, and
``submit --dry-run`` with a one-cluster clusters.yaml. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "--help": ["--help"],
    "endpoints --all (1,000 ended)": ["endpoints", "--all"],
    "submit --dry-run (clusters.yaml)": ["submit", "Qwen3-0.6B", "--preset", "single-gpu",
                                         "--simulate", "--dry-run"],
}


def make_home(home: Path) -> None:
    (home / "config").mkdir(parents=True)
    (home / "config" / "clusters.yaml").write_text(
        "clusters:\n  c:\n    scheduler: slurm\n    gpus-per-node: 4\n")
    now = time.time()
    records = {f"ep{i}": {"name": f"ep{i}", "model": "Qwen3-0.6B", "model_id": "Qwen/Qwen3-0.6B",
                          "served_model_name": f"ep{i}", "preset": "single-gpu", "cluster": "c",
                          "scheduler": "slurm", "job_id": str(1000 + i), "state": "ENDED",
                          "reason": "cancelled", "created": now, "updated": now, "ended": now}
               for i in range(1000)}
    (home / "registry.json").write_text(json.dumps({"schema": 1, "endpoints": records}))


def run(tree: str, home: Path, args: list[str], importtime: bool) -> tuple[float, float | None]:
    env = dict(os.environ, PYTHONPATH=tree, HPCLAUNCH_HOME=str(home))
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "hpclaunch.cli",
            *args]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    match = re.search(r"\|\s+(\d+) \| hpclaunch\.cli\n", proc.stderr) if importtime else None
    return wall, int(match.group(1)) / 1000 if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--runs", type=int, default=11)
    opts = parser.parse_args()
    trees = {"before": opts.before, "after": opts.after}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        make_home(home)
        for label, args in CASES.items():
            walls: dict[str, list[float]] = {k: [] for k in trees}
            imports: dict[str, list[float]] = {k: [] for k in trees}
            for _ in range(opts.runs):
                for key, tree in trees.items():
                    walls[key].append(run(tree, home, args, False)[0])
                    if label == "--help":
                        ms = run(tree, home, args, True)[1]
                        if ms is not None:
                            imports[key].append(ms)
            for key in trees:
                extra = (f", import hpclaunch.cli {statistics.median(imports[key]):.1f} ms"
                         if imports[key] else "")
                median = statistics.median(walls[key]) * 1000
                print(f"{label:34s} {key:6s} wall median {median:5.0f} ms "
                      f"(min {min(walls[key]) * 1000:.0f}){extra}")


if __name__ == "__main__":
    main()
