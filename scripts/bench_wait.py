#!/usr/bin/env python3
"""How quickly does ``hpclaunch wait`` notice READY, and what does waiting cost?

    .venv/bin/python scripts/bench_wait.py [--runs 3] [--delay 3]

Submits the stand-in with a startup delay, runs ``hpclaunch wait`` as a child,
watches the log for the readiness line from this process (every 10 ms), and
reports: latency = wait's exit - the line's appearance; CPU seconds the wait
process used (from its rusage) per second of waiting. Prints numbers only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

READY = b"Application startup complete."


def hpclaunch() -> list[str]:
    script = Path(sys.executable).with_name("hpclaunch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hpclaunch.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "HPCLAUNCH_HOME": home}
            name = f"bench{run}"
            subprocess.run([*hpclaunch(), "submit", "Qwen3-0.6B", "--preset", "single-gpu",
                            "--simulate", "--name", name, "--env",
                            f"HPCLAUNCH_STANDIN_STARTUP_DELAY={args.delay}"],
                           env=env, check=True, capture_output=True)
            seen: dict[str, float] = {}

            def watch_log(results: Path, name: str, seen: dict[str, float]) -> None:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and "ready" not in seen:
                    for log in results.glob(f"vllm_{name}_port*_realtime.log"):
                        if READY in log.read_bytes():
                            seen["ready"] = time.monotonic()
                            return
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch_log, daemon=True,
                                       args=(Path(home) / "results", name, seen))
            watcher.start()
            start = time.monotonic()
            proc = subprocess.Popen([*hpclaunch(), "wait", name, "-q"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            done = time.monotonic()
            watcher.join(5)
            subprocess.run([*hpclaunch(), "stop", name], env=env, capture_output=True,
                           check=False)
            cpu = usage.ru_utime + usage.ru_stime
            waited = done - start
            latency = done - seen["ready"] if "ready" in seen else float("nan")
            print(f"run {run}: exit {os.waitstatus_to_exitcode(status)}, waited {waited:.2f} s, "
                  f"READY noticed {latency * 1000:.0f} ms after the line appeared, "
                  f"CPU {cpu:.3f} s = {100 * cpu / waited:.1f}% of one core")


if __name__ == "__main__":
    main()
