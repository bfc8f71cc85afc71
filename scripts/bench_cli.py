#!/usr/bin/env python3
"""How fast are the CLI calls users run most? Prints numbers; asserts nothing.

    .venv/bin/python scripts/bench_cli.py [--endpoints 200] [--runs 10] [--live 10]

- registry-only calls (``endpoints --cached``, ``--help``) with a registry of N entries:
  the target is about 0.1 s, i.e. Python start-up plus little else;
- what ``import hpclaunch.cli`` pulls in (heavy modules must load lazily);
- ``endpoints`` refreshing M live local (simulated) endpoints: one ``ps`` call for all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def hpclaunch() -> list[str]:
    script = Path(sys.executable).with_name("hpclaunch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hpclaunch.cli"]


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:<48} median {statistics.median(times) * 1000:7.1f} ms   "
          f"min {min(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--live", type=int, default=10)
    args = parser.parse_args()

    from hpclaunch.registry import ENDED, Record, Registry

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HPCLAUNCH_HOME": home, "VLLM_LOG_STATS_INTERVAL": "1"}
        reg = Registry(Path(home) / "registry.json")
        with reg.transaction() as records:
            for i in range(args.endpoints):
                records[f"ep{i}"] = Record(
                    name=f"ep{i}", model="m", model_id="org/m", served_model_name=f"ep{i}",
                    preset="single-gpu", cluster="local", scheduler="local", job_id=str(i),
                    state=ENDED, host="node", port=8000 + i, api_key="k" * 32)
        report("python -c pass (interpreter floor)",
               timed([sys.executable, "-c", "pass"], env, args.runs))
        report("python -c 'import hpclaunch.cli'",
               timed([sys.executable, "-c", "import hpclaunch.cli"], env, args.runs))
        report(f"hpclaunch endpoints --all --cached ({args.endpoints})",
               timed([*hpclaunch(), "endpoints", "--all", "--cached"], env, args.runs))
        report("hpclaunch --help", timed([*hpclaunch(), "--help"], env, args.runs))
        out = subprocess.run([sys.executable, "-c",
                              "import sys, hpclaunch.cli; print(sorted(m for m in sys.modules "
                              "if m.split('.')[0] in ('jinja2', 'yaml', 'paramiko', 'urllib3',"
                              " 'requests', 'httpx', 'openai')))"],
                             env=env, capture_output=True, text=True, check=True)
        print(f"heavy modules imported by the CLI at start: {out.stdout.strip()}")

    if args.live:
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "HPCLAUNCH_HOME": home}
            names = [f"live{i}" for i in range(args.live)]
            try:
                for name in names:
                    subprocess.run([*hpclaunch(), "submit", "Qwen3-0.6B", "--preset",
                                    "single-gpu", "--simulate", "--name", name], env=env,
                                   capture_output=True, check=True)
                for name in names:
                    subprocess.run([*hpclaunch(), "wait", name, "-q"], env=env,
                                   capture_output=True, check=True)
                report(f"hpclaunch endpoints ({args.live} live, refreshed)",
                       timed([*hpclaunch(), "endpoints"], env, args.runs))
            finally:
                subprocess.run([*hpclaunch(), "stop", *names], env=env, capture_output=True,
                               check=False)


if __name__ == "__main__":
    main()
