#!/usr/bin/env python3
"""What does bench's load generator cost, and what does `wait`'s progress parsing cost?

    .venv/bin/python scripts/bench_load.py [--requests 4000] [--concurrency 32]

1. Generator overhead: a zero-latency stand-in on loopback, one level of short requests
   (max_tokens 1), plain and streamed. Prints the rate reached (the stand-in shares the
   machine, so this is a floor) and the generator's own CPU time per request, whose
   inverse is the rate one core of generator could drive.
2. Progress parse cost: `LogFollower.poll` on logs of 1 MB and 64 MB - the first poll
   (reads at most the tail) and the next polls (1 kB appended between them).
Prints numbers only; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpclaunch.bench.load import run_sweep  # noqa: E402
from hpclaunch.bench.workload import Workload  # noqa: E402
from hpclaunch.remote.transport import LocalTransport  # noqa: E402
from hpclaunch.vllm.progress import LogFollower  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_standin(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCLAUNCH_STANDIN_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    argv = [sys.executable, "-m", "hpclaunch.standin", "serve", "Qwen/Qwen3-0.6B",
            "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "m",
            "--disable-uvicorn-access-log", "--disable-log-stats"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while b"Application startup complete." not in log.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"stand-in did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def generator(requests: int, concurrency: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_standin(port, Path(tmp) / "standin.log")
        try:
            url = f"http://127.0.0.1:{port}/v1"
            run_sweep(url, "k", "m", Workload(concurrency=(8,), requests=200, max_tokens=1,
                                              prompt_tokens=8))  # warm up
            for stream in (False, True):
                w = Workload(concurrency=(concurrency,), requests=requests, max_tokens=1,
                             prompt_tokens=8, stream=stream)
                cpu, wall = time.process_time(), time.perf_counter()
                (level,) = run_sweep(url, "k", "m", w)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                per = cpu / max(1, level.requests)
                print(f"generator {'streamed' if stream else 'plain   '}: {level.ok}/"
                      f"{level.requests} ok at concurrency {concurrency} in {wall:.2f} s = "
                      f"{level.requests / wall:,.0f} req/s reached; generator CPU "
                      f"{per * 1e6:,.0f} us/request -> {1 / per:,.0f} req/s per core")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def httpx_reference(requests: int, concurrency: int) -> None:
    """The same closed loop with httpx (one AsyncClient per client: its shared pool costs
    more), to show why bench uses aiohttp."""
    try:
        import httpx
    except ImportError:
        print("httpx reference: httpx not installed")
        return
    port = free_port()
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'
    headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}

    async def run() -> None:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1))
                   for _ in range(concurrency)]

        async def loop(client: httpx.AsyncClient) -> None:
            for _ in range(requests // concurrency):
                (await client.post(url, content=body, headers=headers)).json()

        await asyncio.gather(*(loop(c) for c in clients))
        for c in clients:
            await c.aclose()

    with tempfile.TemporaryDirectory() as tmp:
        proc = start_standin(port, Path(tmp) / "standin.log")
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(run())
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            done = requests // concurrency * concurrency
            print(f"httpx reference : {done} at concurrency {concurrency} in {wall:.2f} s = "
                  f"{done / wall:,.0f} req/s reached; client CPU {cpu / done * 1e6:,.0f} "
                  "us/request")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


LOADING = (
    "(EngineCore_DP0 pid=7) INFO 11-26 08:00:00 [gpu_model_runner.py:3338] Starting to load "
    "model Qwen/Qwen3-8B...\n" + "".join(
        f"Loading safetensors checkpoint shards: {25 * n:3d}% Completed | {n}/4 "
        f"[00:{n:02d}<00:{4 - n:02d},  1.00it/s]\n" for n in range(5)))
FILLER = ("(APIServer pid=7) INFO 11-26 08:00:00 [loggers.py:236] Engine 000: Avg prompt "
          "throughput: 1234.5 tokens/s, Avg generation throughput: 567.8 tokens/s, Running: "
          "12 reqs, Waiting: 0 reqs, GPU KV cache usage: 45.6%, Prefix cache hit rate: 12.3%\n")


def parse_cost() -> None:
    transport = LocalTransport()
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in (1, 64):
            log = Path(tmp) / f"vllm_{megabytes}.log"
            with log.open("w") as f:
                for _ in range(megabytes * 2**20 // len(FILLER)):
                    f.write(FILLER)
                f.write(LOADING)
            follower = LogFollower()
            t = time.perf_counter()
            first = follower.poll(transport, str(log))
            first_ms = (time.perf_counter() - t) * 1000
            times = []
            for i in range(50):
                with log.open("a") as f:
                    f.write(FILLER * 4 + f"Capturing CUDA graphs (decode, FULL): {2 * i:3d}%|"
                            f"          | {i}/50 [00:{i:02d}<00:10, 5.00it/s]\r")
                t = time.perf_counter()
                last = follower.poll(transport, str(log))
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            print(f"progress parse, {megabytes:>2} MB log: first poll {first_ms:.2f} ms "
                  f"({first.line()!r}); next polls (1 kB new) median {times[25]:.3f} ms, "
                  f"max {times[-1]:.3f} ms ({last.line()!r})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    generator(args.requests, args.concurrency)
    httpx_reference(args.requests, args.concurrency)
    parse_cost()


if __name__ == "__main__":
    main()
