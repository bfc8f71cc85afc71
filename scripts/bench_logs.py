#!/usr/bin/env python3
"""Time hpclaunch.vllm.logs on a multi-gigabyte log: read_head_tail + parse, N times.

``hpclaunch status`` reads every endpoint's log on every call, and a server that runs for days
writes gigabytes, so the cost must not grow with the file.  This writes a sparse file of
``--size-gb`` (startup lines at the start, a hole, realistic lines at the end; the hole costs no
disk), then times the two steps.  Two tails are measured: a serving server (stats and access
lines, few of which the parser looks at) and a crash loop (a tail full of ERROR traceback
lines, every one of which it looks at), which bounds the parse cost from above.

Wall times are medians (other work on the machine shows up there); "best CPU" is the least
process CPU time of one parse.  Not run by the tests.  Example::

    .venv/bin/python scripts/bench_logs.py --size-gb 2 --iterations 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpclaunch.vllm.logs.parse import parse  # noqa: E402
from hpclaunch.vllm.logs.read import HEAD_BYTES, TAIL_BYTES, read_head_tail  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "logs" / "ok_v033_single.log"


def startup_block() -> str:
    """The real 0.33 startup from the test samples, up to the readiness line."""
    lines = [ln for ln in SAMPLE.read_text().splitlines() if not ln.startswith("#")]
    ready = next(i for i, ln in enumerate(lines) if "Application startup complete" in ln)
    return "\n".join(lines[: ready + 1]) + "\n"


SERVING = (
    '(APIServer pid=2817) INFO:     10.0.0.7:51420 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n'
    * 8
    + "(APIServer pid=2817) INFO 11-25 18:02:15 [loggers.py:330] Engine 000: Avg prompt "
    "throughput: 1234.5 tokens/s, Avg generation throughput: 567.8 tokens/s, Running: 12 reqs, "
    "Waiting: 0 reqs, GPU KV cache usage: 45.6%, Prefix cache hit rate: 12.3%\n"
)

CRASH_LOOP = (
    "(EngineCore pid=2990) ERROR 11-25 18:02:15 [core.py:1136] Traceback (most recent call last):\n"
    '(EngineCore pid=2990) ERROR 11-25 18:02:15 [core.py:1136]   File "/opt/venv/lib/python3.12/'
    'site-packages/vllm/v1/engine/core.py", line 1127, in run_engine_core\n'
    "(EngineCore pid=2990) ERROR 11-25 18:02:15 [core.py:1136] RuntimeError: CUDA error: an "
    "illegal memory access was encountered\n"
)


def write_sparse_log(path: Path, size: int, tail_block: str) -> None:
    """Startup first, ``tail_block`` over the last ~1.5 x TAIL_BYTES, a hole in between."""
    tail = tail_block * (int(TAIL_BYTES * 1.5) // len(tail_block) + 1)
    with open(path, "wb") as f:
        f.write(startup_block().encode())
        f.seek(size - len(tail.encode()))
        f.write(b"\n" + tail.encode()[1:])


def bench(path: Path, iterations: int) -> dict[str, float]:
    read_s: list[float] = []
    parse_s: list[float] = []
    parse_cpu: list[float] = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        chunk = read_head_tail(path)
        t1, c1 = time.perf_counter(), time.process_time()
        report = parse(chunk)
        t2, c2 = time.perf_counter(), time.process_time()
        read_s.append(t1 - t0)
        parse_s.append(t2 - t1)
        parse_cpu.append(c2 - c1)
    assert report.ready_line, "the startup block was not found"
    return {
        "bytes_read": len(chunk.head.encode()) + len(chunk.tail.encode()),
        "read_ms_median": 1000 * statistics.median(read_s),
        "read_ms_max": 1000 * max(read_s),
        "parse_ms_median": 1000 * statistics.median(parse_s),
        "parse_ms_max": 1000 * max(parse_s),
        "parse_cpu_ms_min": 1000 * min(parse_cpu),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0, help="log size in GiB (sparse)")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--dir", default=None, help="where to write the log (default: a temp dir)")
    args = ap.parse_args()
    size = int(args.size_gb * 1024**3)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "vllm_bench_port8000_realtime.log"
        print(f"log: {size / 1024**3:.2f} GiB, head {HEAD_BYTES} B + tail {TAIL_BYTES} B read")
        for name, block in (("serving", SERVING), ("crash-loop", CRASH_LOOP)):
            write_sparse_log(path, size, block)
            r = bench(path, args.iterations)
            print(
                f"{name:>10}: read {r['read_ms_median']:.2f} ms (max {r['read_ms_max']:.2f}), "
                f"parse {r['parse_ms_median']:.2f} ms (max {r['parse_ms_max']:.2f}, best CPU "
                f"{r['parse_cpu_ms_min']:.2f}), "
                f"{r['bytes_read']:,} bytes decoded, {args.iterations} iterations"
            )


if __name__ == "__main__":
    main()
