"""The vLLM stand-in, run as a real subprocess on a free port, checked like a vLLM server.

Only the standard library talks HTTP here (urllib), plus the ``openai`` client for streaming,
since that is what vf-eval and researchers' scripts use.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpclaunch.planning import kv
from hpclaunch.planning.catalog import model_info

READY = "Application startup complete."
# vLLM 0.33's logger prefix; uvicorn and traceback lines carry none (plain stderr).
LOGGER_LINE = re.compile(
    r"^\((?P<proc>[A-Za-z_]+\d*(?:_[A-Z]+\d+)*) pid=\d+\) "
    r"(?P<level>INFO|WARNING|ERROR) \d\d-\d\d \d\d:\d\d:\d\d \[[\w.]+:\d+\] (?P<msg>.*)$")
STATS_LINE = re.compile(
    r"\[loggers\.py:\d+\] Engine (?P<engine>\d{3}): Avg prompt throughput: (?P<prompt>\d+\.\d) "
    r"tokens/s, Avg generation throughput: (?P<gen>\d+\.\d) tokens/s, Running: \d+ reqs, "
    r"Waiting: \d+ reqs, GPU KV cache usage: \d+\.\d%, Prefix cache hit rate: \d+\.\d%$")
# tqdm bars (checkpoint shards, CUDA graph capture), updates separated by \r.
TQDM_LINE = re.compile(r"^(?:Loading safetensors checkpoint shards: +\d+% Completed \| "
                       r"|Capturing CUDA graphs \([^)]+\): +\d+%\|)")
KV_LINE = re.compile(r"GPU KV cache size: (?P<tokens>[\d,]+) tokens, Maximum concurrency for "
                     r"(?P<len>[\d,]+) tokens per request: (?P<conc>\d+\.\d\d)x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StandIn:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float
    ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_for(self, needle: str | re.Pattern[str], timeout: float = 5.0) -> str:
        """The first log line containing/matching ``needle``; fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if (needle.search(line) if isinstance(needle, re.Pattern) else needle in line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in log after {timeout}s:\n{self.text()}")
            if self.proc.poll() is not None:
                time.sleep(0.05)  # last flush
                if not any((needle.search(x) if isinstance(needle, re.Pattern) else needle in x)
                           for x in self.lines()):
                    raise AssertionError(f"stand-in exited {self.proc.returncode} before "
                                         f"{needle!r}:\n{self.text()}")
            time.sleep(0.01)

    def exit_code(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout=timeout)

    def request(self, path: str, payload: dict[str, Any] | None = None, key: str | None = None,
                timeout: float = 5.0) -> tuple[int, bytes]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def chat(self, text: str, model: str, key: str | None = None, **extra: Any
             ) -> tuple[int, dict[str, Any]]:
        status, body = self.request("/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": text}], **extra}, key)
        return status, json.loads(body)


def _launch(directory: Path, *flags: str, model: str = "Qwen/Qwen3-VL-2B-Instruct",
            env: dict[str, str] | None = None, ready: bool = True,
            port: int | None = None) -> StandIn:
    port = port or free_port()
    log_path = directory / f"vllm_port{port}_realtime.log"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HPCLAUNCH_STANDIN_", "VLLM_"))}
    clean.update(env or {})
    clean["PYTHONUNBUFFERED"] = "1"
    argv = [sys.executable, "-m", "hpclaunch.standin", "serve", model,
            "--host", "127.0.0.1", "--port", str(port), *flags]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=clean)
    s = StandIn(proc, port, log_path, started)
    if ready:
        try:
            s.wait_for(READY)
        except AssertionError:
            _stop(s)
            raise
        s.ready_after = time.monotonic() - started
    return s


def _stop(s: StandIn) -> None:
    if s.proc.poll() is None:
        s.proc.terminate()
        try:
            s.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Any]:
    """Start stand-ins: ``standin(*flags, model=..., env={...}, ready=True)``."""
    running: list[StandIn] = []

    def start(*flags: str, **kwargs: Any) -> StandIn:
        s = _launch(tmp_path, *flags, **kwargs)
        running.append(s)
        return s

    yield start
    for s in running:
        _stop(s)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """One stand-in for the request/response checks that do not depend on its counters:
    served as ``m`` with key ``k`` and a 1024-token context."""
    s = _launch(tmp_path_factory.mktemp("shared"), "--served-model-name", "m",
                "--max-model-len", "1024", env={"VLLM_API_KEY": "k"})
    yield s
    _stop(s)


# ----------------------------------------------------------------- start-up


def test_it_is_ready_in_under_a_second_with_vllms_startup_lines_in_order(standin: Any) -> None:
    s = standin("--max-model-len", "40960")
    assert s.ready_after is not None and s.ready_after < 1.0
    lines = s.lines()
    first = LOGGER_LINE.match(lines[0])
    assert first and first["level"] == "WARNING"
    assert "[hpclaunch_standin] SIMULATED" in first["msg"]
    expected = ["█  version 0.33.0", "non-default args:",
                "Starting to load model Qwen/Qwen3-VL-2B-Instruct...",
                "Model loading took", "Available KV cache memory:", "GPU KV cache size:",
                "init engine (profile, create kv cache, warmup model) took",
                f"Starting vLLM server on http://127.0.0.1:{s.port}", "Available routes are:",
                "Route: /health, Methods: GET", "INFO:     Started server process",
                "INFO:     Waiting for application startup.", "INFO:     " + READY]
    positions = [next(i for i, line in enumerate(lines) if fragment in line)
                 for fragment in expected]
    assert positions == sorted(positions)
    for line in lines[:positions[-1] + 1]:
        if TQDM_LINE.match(line):
            continue  # progress bars carry no process prefix in vLLM either
        if not line.startswith("INFO:     "):  # uvicorn's own lines have no vLLM prefix
            assert LOGGER_LINE.match(line), line
    kv_line = next(line for line in lines if "GPU KV cache size" in line)
    assert LOGGER_LINE.match(kv_line)["proc"] == "EngineCore_DP0"  # type: ignore[index]


def _printed_kv(s: StandIn) -> tuple[float, list[re.Match[str]]]:
    memory = float(re.search(r"Available KV cache memory: ([\d.]+) GiB",
                             s.text()).group(1))  # type: ignore[union-attr]
    return memory, [m for m in map(KV_LINE.search, s.lines()) if m]


@pytest.mark.parametrize("tp", [1, 2])
def test_printed_kv_numbers_follow_the_kv_arithmetic(standin: Any, tp: int) -> None:
    s = standin("--max-model-len", "40960", "-tp", str(tp))
    memory_gib, kv_lines = _printed_kv(s)
    assert len(kv_lines) == 1
    info = model_info("Qwen/Qwen3-VL-2B-Instruct")
    assert info is not None
    per_token = kv.kv_bytes_per_token(info, tp=tp)
    tokens = int(kv_lines[0]["tokens"].replace(",", ""))
    # The printed GiB is rounded to 0.01, so tokens agree to that precision.
    assert tokens == pytest.approx(memory_gib * kv.GiB / per_token, abs=0.006 * kv.GiB / per_token)
    assert tokens % 16 == 0
    assert kv_lines[0]["len"] == "40,960"
    assert float(kv_lines[0]["conc"]) == pytest.approx(tokens / 40960, abs=0.006)


def test_the_simulated_gpu_and_utilisation_change_the_kv_cache(standin: Any) -> None:
    small = standin("--gpu-memory-utilization", "0.5", "--max-model-len", "8192",
                    env={"HPCLAUNCH_STANDIN_GPU": "RTX4090"})
    big = standin("--gpu-memory-utilization", "0.9", "--max-model-len", "8192",
                  env={"HPCLAUNCH_STANDIN_GPU": "H200"})
    small_gib, _ = _printed_kv(small)
    big_gib, _ = _printed_kv(big)
    assert small_gib < 10 < 100 < big_gib


def test_data_parallel_prints_one_kv_line_per_engine(standin: Any) -> None:
    s = standin("-dp", "3", "--max-model-len", "40960")
    _, kv_lines = _printed_kv(s)
    assert len(kv_lines) == 3
    procs = [LOGGER_LINE.match(line)["proc"]  # type: ignore[index]
             for line in s.lines() if "GPU KV cache size" in line]
    assert procs == ["EngineCore_DP0", "EngineCore_DP1", "EngineCore_DP2"]


def test_connections_are_refused_until_the_readiness_line(standin: Any) -> None:
    s = standin(env={"HPCLAUNCH_STANDIN_STARTUP_DELAY": "0.6"}, ready=False)
    s.wait_for("Starting vLLM server on")
    assert READY not in s.text()
    with pytest.raises(urllib.error.URLError) as err:
        s.request("/health", timeout=1)
    assert isinstance(err.value.reason, ConnectionRefusedError)
    s.wait_for(READY)
    assert time.monotonic() - s.started >= 0.6
    assert s.request("/health") == (200, b"")


# ----------------------------------------------------------------- endpoints


def test_health_needs_no_key_but_models_does(shared: StandIn) -> None:
    s = shared
    assert s.request("/health") == (200, b"")
    status, body = s.request("/v1/models")
    assert status == 401 and json.loads(body) == {"error": "Unauthorized"}
    assert s.request("/v1/models", key="wrong")[0] == 401
    status, body = s.request("/v1/models", key="k")
    assert status == 200
    models = json.loads(body)["data"]
    assert [(m["id"], m["root"], m["max_model_len"]) for m in models] == \
        [("m", "Qwen/Qwen3-VL-2B-Instruct", 1024)]
    assert s.chat("hi", "m")[0] == 401  # completions need the key too


def test_api_key_flag_works_like_the_environment_variable(standin: Any) -> None:
    s = standin("--api-key", "flagkey")
    assert s.request("/v1/models")[0] == 401
    assert s.request("/v1/models", key="flagkey")[0] == 200


def test_chat_echoes_the_last_user_message_with_consistent_usage(shared: StandIn) -> None:
    status, reply = shared.chat("How many GPUs do I need?", "m", key="k")
    assert status == 200
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "How many GPUs do I need?" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 5
    assert "reasoning_content" not in choice["message"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_token_limit_cuts_the_reply(shared: StandIn, field: str) -> None:
    status, reply = shared.chat("one two three four five six seven", "m", key="k",
                                **{field: 3})
    assert status == 200
    assert reply["usage"]["completion_tokens"] == 3
    assert reply["choices"][0]["finish_reason"] == "length"


def test_a_too_large_max_tokens_is_a_400_like_vllms(shared: StandIn) -> None:
    status, reply = shared.chat("hi", "m", key="k", max_tokens=5000)
    assert status == 400
    assert "maximum context length is 1024 tokens" in reply["error"]["message"]


def test_a_wrong_model_name_is_a_404_with_vllms_error_shape(shared: StandIn) -> None:
    status, reply = shared.chat("hi", "wrong", key="k")
    assert status == 404
    assert reply == {"error": {"message": "The model `wrong` does not exist.",
                               "type": "NotFoundError", "param": "model", "code": 404}}


def test_a_reasoning_parser_adds_reasoning_content(standin: Any) -> None:
    s = standin("--served-model-name", "think", "--reasoning-parser", "qwen3",
                model="Qwen/Qwen3-VL-2B-Thinking")
    status, reply = s.chat("2+2?", "think")
    assert status == 200
    message = reply["choices"][0]["message"]
    assert message["reasoning_content"]
    assert "2+2?" in message["content"] and "2+2?" not in message["reasoning_content"]


def test_openai_client_streams_the_same_text_and_a_usage_chunk(shared: StandIn) -> None:
    from openai import OpenAI

    s = shared
    client = OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0, timeout=10)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "stream me please"}], stream=True,
        stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert "stream me please" in text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == len(re.findall(r"\S+", text))
    plain = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "stream me please"}])
    assert plain.choices[0].message.content == text
    assert plain.usage is not None and plain.usage.prompt_tokens == usage.prompt_tokens


def test_raw_sse_ends_with_done(shared: StandIn) -> None:
    status, body = shared.request("/v1/chat/completions", {
        "model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}, key="k")
    assert status == 200
    events = [e for e in body.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def _metric(text: str, name: str, engine: str = "0") -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'engine="{engine}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for engine {engine} not in:\n{text}")


def test_metrics_count_the_tokens_requests_used(standin: Any) -> None:
    s = standin("--served-model-name", "m", "--max-model-len", "40960")
    before = s.request("/metrics")[1].decode()
    assert _metric(before, "vllm:prompt_tokens_total") == 0
    _, reply = s.chat("count these tokens", "m")
    after = s.request("/metrics")[1].decode()
    assert _metric(after, "vllm:prompt_tokens_total") == reply["usage"]["prompt_tokens"]
    assert _metric(after, "vllm:generation_tokens_total") == reply["usage"]["completion_tokens"]
    assert _metric(after, "vllm:num_requests_running") == 0
    assert _metric(after, "vllm:num_requests_waiting") == 0
    assert 0 <= _metric(after, "vllm:kv_cache_usage_perc") <= 1
    info = next(line for line in after.splitlines() if line.startswith("vllm:cache_config_info{"))
    blocks = int(re.search(r'num_gpu_blocks="(\d+)"', info).group(1))  # type: ignore[union-attr]
    _, kv_lines = _printed_kv(s)
    assert blocks * 16 == int(kv_lines[0]["tokens"].replace(",", ""))
    # vLLM's labels are CacheConfig's fields and engine: no model_name on this series.
    assert 'block_size="16"' in info and 'model_name=' not in info


def test_a_request_in_flight_shows_as_running_and_using_kv_cache(standin: Any) -> None:
    s = standin("--served-model-name", "m", env={"HPCLAUNCH_STANDIN_TOKEN_DELAY": "0.05"})
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(s.chat("slow " * 20, "m")[0]))
    worker.start()
    deadline = time.monotonic() + 3
    running = 0.0
    while time.monotonic() < deadline and not running:
        text = s.request("/metrics")[1].decode()
        running = _metric(text, "vllm:num_requests_running")
    assert running == 1
    assert _metric(text, "vllm:kv_cache_usage_perc") > 0
    worker.join(timeout=5)
    assert done == [200]
    assert _metric(s.request("/metrics")[1].decode(), "vllm:num_requests_running") == 0


def test_past_max_num_seqs_requests_wait_and_show_as_waiting(standin: Any) -> None:
    s = standin("--served-model-name", "m", "--max-num-seqs", "1",
                env={"HPCLAUNCH_STANDIN_TOKEN_DELAY": "0.05", "VLLM_LOG_STATS_INTERVAL": "0.2"})
    done: list[float] = []

    def ask() -> None:
        start = time.monotonic()
        assert s.chat("one two three", "m", max_tokens=4)[0] == 200
        done.append(time.monotonic() - start)

    workers = [threading.Thread(target=ask) for _ in range(3)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 3
    waiting = 0.0
    while time.monotonic() < deadline and waiting < 2:
        text = s.request("/metrics")[1].decode()
        waiting = _metric(text, "vllm:num_requests_waiting")
    assert waiting == 2 and _metric(text, "vllm:num_requests_running") == 1
    for w in workers:
        w.join(timeout=5)
    # One at a time: the last of three took about three times as long as the first.
    assert sorted(done)[-1] > 2.5 * sorted(done)[0]
    assert s.wait_for(re.compile(r"Running: 1 reqs, Waiting: [12] reqs"))


def test_every_request_is_recorded_with_its_model_and_key(standin: Any, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    s = standin("--served-model-name", "m", env={"VLLM_API_KEY": "k1",
                                                 "HPCLAUNCH_STANDIN_RECORD": str(record)})
    s.chat("hi", "m", key="k1")
    s.chat("hi", "other", key="k2")
    s.request("/health")
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["method"], e["path"], e["model"], e["authorization"]) for e in entries] == [
        ("POST", "/v1/chat/completions", "m", "Bearer k1"),
        ("POST", "/v1/chat/completions", "other", "Bearer k2"),
        ("GET", "/health", None, None),
    ]


# ----------------------------------------------------------------- stats lines


def test_stats_lines_appear_after_requests_and_stop_when_idle(standin: Any) -> None:
    interval = 0.1
    s = standin("--served-model-name", "m", env={"VLLM_LOG_STATS_INTERVAL": str(interval)})
    time.sleep(3 * interval)
    assert "Avg prompt throughput" not in s.text()  # idle: nothing logged
    _, reply = s.chat("hello stats", "m")
    line = s.wait_for(STATS_LINE, timeout=3)
    match = STATS_LINE.search(line)
    assert match and match["engine"] == "000"
    assert float(match["prompt"]) == pytest.approx(reply["usage"]["prompt_tokens"] / interval,
                                                   abs=0.1)
    time.sleep(6 * interval)
    stats = [x for x in s.lines() if STATS_LINE.search(x)]
    assert 1 <= len(stats) <= 2  # the busy interval, then at most one zero line


def test_dp_with_one_api_server_logs_one_stats_line_per_engine(standin: Any) -> None:
    s = standin("-dp", "2", "--api-server-count", "1", "--served-model-name", "m",
                env={"VLLM_LOG_STATS_INTERVAL": "0.2"})
    s.chat("a", "m")
    s.chat("b", "m")  # round-robin: one request per engine
    s.wait_for(re.compile(r"Engine 000: Avg prompt"), timeout=3)
    s.wait_for(re.compile(r"Engine 001: Avg prompt"), timeout=3)


def test_dp_with_default_api_servers_disables_stats_like_vllm_0_33(standin: Any) -> None:
    s = standin("-dp", "2", "--served-model-name", "m", env={"VLLM_LOG_STATS_INTERVAL": "0.1"})
    notices = [x for x in s.lines() if "AsyncLLM created with api_server_count more than 1; "
               "disabling stats logging" in x]
    assert len(notices) == 2
    s.chat("a", "m")
    time.sleep(0.5)
    assert "Avg prompt throughput" not in s.text()


# ----------------------------------------------------------------- failures


@pytest.mark.parametrize("mode, flags, expected", [
    ("oom", [], ["Failed to load model - not enough GPU memory",
                 "EngineCore failed to start.",
                 "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
                 "RuntimeError: Engine core initialization failed. See root cause above."]),
    ("kv_too_small", [], ["EngineCore failed to start.",
                          "To serve at least one request with the model's max seq len (262144)",
                          "RuntimeError: Engine core initialization failed."]),
    ("no_kv_memory", [], ["No available memory for the cache blocks",
                          "RuntimeError: Engine core initialization failed."]),
    ("port_in_use", [], ["OSError: [Errno 98] Address already in use"]),
    ("model_missing", [], ["ValueError: Invalid repository ID or local directory specified: "
                           "'Qwen/Qwen3-VL-2B-Instruct'."]),
    ("bad_parser", ["--reasoning-parser", "qwen3"],
     ["KeyError: 'invalid reasoning parser: qwen3 (chose from {"]),
    ("flashinfer", ["--max-num-seqs", "4"],
     ["EngineCore failed to start.",
      "could not broadcast input array from shape (9,) into shape (4,)",
      "RuntimeError: Engine core initialization failed."]),
])
def test_forced_failures_print_vllms_lines_in_order_and_exit_1(
        standin: Any, mode: str, flags: list[str], expected: list[str]) -> None:
    s = standin(*flags, env={"HPCLAUNCH_STANDIN_FAIL": mode}, ready=False)
    assert s.exit_code() == 1
    text = s.text()
    positions = [text.find(fragment) for fragment in expected]
    assert -1 not in positions, f"{expected} vs:\n{text}"
    assert positions == sorted(positions)
    assert READY not in text and "Starting vLLM server" not in text
    assert "[hpclaunch_standin] SIMULATED" in s.lines()[0]


def test_forced_kv_too_small_numbers_are_self_consistent(standin: Any) -> None:
    s = standin(env={"HPCLAUNCH_STANDIN_FAIL": "kv_too_small"}, ready=False)
    assert s.exit_code() == 1
    m = re.search(r"max seq len \((\d+)\), \(([\d.]+) GiB KV cache is needed, which is larger "
                  r"than the available KV cache memory \(([\d.]+) GiB\)\. Based on the available "
                  r"memory, the estimated maximum model length is (\d+)\.", s.text())
    assert m, s.text()
    max_len, needed, available, estimate = int(m[1]), float(m[2]), float(m[3]), int(m[4])
    per_token = 114_688
    assert needed == pytest.approx(max_len * per_token / kv.GiB, abs=0.01)
    assert needed > available
    assert estimate == pytest.approx(available * kv.GiB / per_token, abs=0.006 * kv.GiB / per_token)


def test_exit_mode_prints_one_line_and_exits_1(standin: Any) -> None:
    s = standin(env={"HPCLAUNCH_STANDIN_FAIL": "exit"}, ready=False)
    assert s.exit_code() == 1
    assert len(s.lines()) == 1 and "SIMULATED" in s.lines()[0]


def test_a_port_really_in_use_fails_before_the_model_loads(standin: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        s = standin(port=taken.getsockname()[1], ready=False)
        assert s.exit_code() == 1
    assert "OSError: [Errno 98] Address already in use" in s.text()
    assert "Starting to load model" not in s.text()


def test_an_unregistered_reasoning_parser_fails_with_vllms_key_error(standin: Any) -> None:
    s = standin("--reasoning-parser", "deepseek-r1", ready=False)
    assert s.exit_code() == 1
    line = s.wait_for("KeyError: 'invalid reasoning parser: deepseek-r1 (chose from {")
    assert "deepseek_r1" in line
    assert "Starting to load model" not in s.text()


def test_max_model_len_above_the_models_context_fails_unless_allowed(standin: Any) -> None:
    s = standin("--max-model-len", "65536", model="Qwen/Qwen3-8B", ready=False)
    assert s.exit_code() == 1
    assert ("User-specified max_model_len (65536) is greater than the derived max_model_len "
            "(max_position_embeddings=40960") in s.text()
    allowed = standin("--max-model-len", "65536", model="Qwen/Qwen3-8B",
                      env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
    assert "Maximum concurrency for 65,536 tokens" in allowed.text()


def test_a_context_too_long_for_the_gpu_fails_by_itself(standin: Any) -> None:
    s = standin(model="meta-llama/Llama-3.1-8B-Instruct", ready=False,
                env={"HPCLAUNCH_STANDIN_GPU": "RTX4090"})
    assert s.exit_code() == 1
    assert "To serve at least one request with the model's max seq len (131072)" in s.text()


def test_weights_larger_than_the_gpu_fail_with_cuda_oom(standin: Any) -> None:
    s = standin(model="meta-llama/Llama-3.1-70B-Instruct", ready=False)
    assert s.exit_code() == 1
    assert "torch.OutOfMemoryError: CUDA out of memory" in s.text()


def test_an_unknown_flag_exits_2_exactly_like_vllm(standin: Any) -> None:
    s = standin("--swap-space", "4", ready=False)
    assert s.exit_code() == 2
    assert s.lines()[-1] == "vllm serve: error: unrecognized arguments: --swap-space 4"


def test_an_engine_crash_after_ready_turns_health_to_503(standin: Any) -> None:
    s = standin("--served-model-name", "m", env={"HPCLAUNCH_STANDIN_FAIL": "crash_after_ready",
                                                 "HPCLAUNCH_STANDIN_CRASH_AFTER": "0.3"})
    assert s.request("/health")[0] == 200
    s.wait_for("EngineDeadError: EngineCore encountered an issue.")
    assert s.request("/health")[0] == 503
    assert s.chat("hi", "m")[0] == 500


def test_a_hang_after_ready_stops_answering_health_silently(standin: Any) -> None:
    s = standin(env={"HPCLAUNCH_STANDIN_FAIL": "hang_after_ready",
                     "HPCLAUNCH_STANDIN_CRASH_AFTER": "0.2"})
    assert s.request("/health")[0] == 200
    lines_at_ready = len(s.lines())
    time.sleep(0.3)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        s.request("/health", timeout=0.3)
    assert not any("Error" in x for x in s.lines()[lines_at_ready:])


def test_sigterm_shuts_down_cleanly_like_vllm(standin: Any) -> None:
    s = standin()
    s.proc.send_signal(signal.SIGTERM)
    assert s.exit_code() == 0
    tail = s.text()
    assert tail.index("[shutdown] API server: shutdown triggered") < \
        tail.index("INFO:     Application shutdown complete.")
