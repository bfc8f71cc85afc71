"""Latency the real vllm-router adds per request on loopback (a benchmark, not a test).

A minimal OpenAI-shaped backend (a fixed chat reply, no model) answers on 127.0.0.1;
the same sequential requests go to it directly and through ``vllm-router`` over one
kept-alive connection each, and the p50/p90 difference is the router's cost:

    python scripts/bench_router_overhead.py --requests 500

Bounded: one client, sequential requests, loopback only; the router and backend it
starts are stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
BODY = json.dumps({"model": "m", "max_tokens": 1,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /health, /v1/models
        self._send(b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(REPLY)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timings(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for i in range(count + 20):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=BODY,
                     headers={"Content-Type": "application/json", "Authorization": "Bearer k"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"status {resp.status} from port {port}")
        if i >= 20:  # warm-up first
            out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    count = max(50, min(args.requests, 5000))
    router_bin = shutil.which("vllm-router") or str(
        __import__("pathlib").Path(sys.executable).with_name("vllm-router"))
    backend = ThreadingHTTPServer(("127.0.0.1", free_port()), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    bport, rport = backend.server_address[1], free_port()
    router = subprocess.Popen(
        [router_bin, "--host", "127.0.0.1", "--port", str(rport), "--policy", "round_robin",
         "--worker-urls", f"http://127.0.0.1:{bport}", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", rport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(1)
        direct = timings(bport, count)
        routed = timings(rport, count)
    finally:
        router.terminate()
        router.wait(timeout=10)
        backend.shutdown()
    d50, r50 = statistics.median(direct), statistics.median(routed)
    print(f"{count} sequential requests on loopback")
    print(f"direct:      p50 {d50:.3f} ms  p90 {pct(direct, 90):.3f} ms")
    print(f"via router:  p50 {r50:.3f} ms  p90 {pct(routed, 90):.3f} ms")
    print(f"added by vllm-router: p50 {r50 - d50:.3f} ms")


if __name__ == "__main__":
    main()
