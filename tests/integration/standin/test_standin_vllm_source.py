"""Every line the stand-in prints is one vLLM 0.33 (or uvicorn) prints: a real format string.

The stand-in runs as a subprocess (``python -m hpclaunch.standin serve ...``) in each of its
modes, healthy and failing; its whole output is then read line by line and each line must be
a rendering of a format string from tests/data/vllm-source/ (vLLM 0.33.0 for logger lines and
exception messages, uvicorn for uvicorn's lines), a Python traceback around one, or the
stand-in's own ``[hpclaunch_standin]`` notice.  The /metrics it serves must use vLLM's series
names and labels.  Nothing of the stand-in is imported: this is what a user's log shows.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.vllm.vllmsource import UVICORN, facts, level_of, template_regex

VERSION = "0.33.0"
MODEL = "Qwen/Qwen3-VL-2B-Instruct"
# Exception texts that come from outside vLLM: Python, torch, numpy, CUDA.
OUTSIDE = {
    "OSError": re.compile(r"\[Errno 98\] Address already in use"),
    "torch.OutOfMemoryError": re.compile(r"CUDA out of memory\. Tried to allocate .*", re.S),
    "ValueError": re.compile(r"could not broadcast input array from shape \(\d+,\) into "
                             r"shape \(\d+,\)"),
    "RuntimeError": re.compile(r"CUDA error: an illegal memory access was encountered"),
}
# The loading progress the stand-in prints (hpclaunch/standin/loading.py) as vLLM 0.33 words
# it, but whose format strings tests/data/vllm-source/ does not hold yet: (file, level, regex).
# A refresh of the snapshot that extracts them should replace this table.
LOADING = [
    ("backends.py", "INFO", r"Using cache directory: \S+ for vLLM's torch\.compile"),
    ("backends.py", "INFO", r"Dynamo bytecode transform time: [\d.]+ s"),
    ("backends.py", "INFO", r"Compiling a graph for compile range \(\d+, \d+\) takes [\d.]+ s"),
    ("monitor.py", "INFO", r"torch\.compile took [\d.]+ s in total"),
]
# tqdm bars print without a logger prefix: the weight loader's own bar_format, and tqdm's
# default bar for CUDA graph capture (updates joined by \r).
_TQDM_TAIL = r"\d+/\d+ \[(?:\d\d:)?[\d?:]+<(?:\d\d:)?[\d?:]+, +(?:[\d.]+)?(?:\?)?(?:it/s|s/it)\]"
TQDM_BAR = re.compile(r"Loading safetensors checkpoint shards: +\d+% Completed \| " + _TQDM_TAIL
                      + r"|Capturing CUDA graphs \((?:decode|mixed prefill-decode), "
                      r"(?:FULL|PIECEWISE)\): +\d+%\|[^|]*\| " + _TQDM_TAIL)
# FastAPI adds these routes itself; vLLM's source does not declare them.
FASTAPI_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# name -> (flags, environment, send requests and stop with SIGTERM once ready?)
RUNS: dict[str, tuple[list[str], dict[str, str], bool]] = {
    "dp2": (["--data-parallel-size", "2", "--api-server-count", "1"], {}, True),
    "tp2-aggregated": (["--tensor-parallel-size", "2", "--data-parallel-size", "2",
                        "--api-server-count", "1", "--aggregate-engine-logging"], {}, True),
    "dp2-api-servers": (["--data-parallel-size", "2"], {}, True),
    "headless": (["--headless", "--data-parallel-size", "2"], {}, False),
    "max-len": (["--max-model-len", "10000000"], {}, False),
    "crash": ([], {"HPCLAUNCH_STANDIN_FAIL": "crash_after_ready",
                   "HPCLAUNCH_STANDIN_CRASH_AFTER": "0.2"}, True),
    **{mode: ([], {"HPCLAUNCH_STANDIN_FAIL": mode}, False) for mode in (
        "oom", "kv_too_small", "no_kv_memory", "port_in_use", "model_missing", "bad_parser",
        "flashinfer")},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait(path: Path, proc: subprocess.Popen[bytes], needle: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return needle in path.read_text(errors="replace")
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Run every mode at once; name -> {"log": text, "metrics": /metrics text or ""}."""
    tmp = tmp_path_factory.mktemp("standin-fidelity")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HPCLAUNCH_STANDIN_", "VLLM_"))}
    env |= {"PYTHONUNBUFFERED": "1", "VLLM_LOG_STATS_INTERVAL": "0.1"}
    running = {}
    for name, (flags, extra, _serve) in RUNS.items():
        port = _free_port()
        log = tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hpclaunch.standin", "serve", MODEL, "--host",
                 "127.0.0.1", "--port", str(port), *flags],
                stdout=out, stderr=subprocess.STDOUT, env=env | extra)
        running[name] = (proc, port, log)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, (proc, port, log) in running.items():
            metrics = ""
            if RUNS[name][2] and _wait(log, proc, "Application startup complete.", 20):
                _get(port, "/v1/chat/completions", {
                    "model": MODEL, "max_tokens": 4,
                    "messages": [{"role": "user", "content": "a real line, please"}]})
                metrics = _get(port, "/metrics")[1]
                _wait(log, proc, "Avg prompt throughput" if name != "crash"
                      else "EngineDeadError", 3)
            elif name == "headless":
                _wait(log, proc, "headless mode", 20)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            # Bytes, not read_text(): universal newlines would hide vLLM's \r\n continuations.
            results[name] = {"log": log.read_bytes().decode(errors="replace"),
                             "metrics": metrics}
    finally:
        for proc, _port, _log in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield results


# ------------------------------------------------------------------------- the oracle


def _regex(site: dict[str, Any], subs: dict[str, str]) -> str:
    fmt, style = site["format"].rstrip(), site["style"]  # trailing whitespace is not seen
    if style in ("fstring", "mixed", "format"):
        for key in subs:  # composed messages: {msg} is another fact's text
            fmt = fmt.replace("{" + key + "}", "\x00" + key + "\x00")
    pattern = template_regex(fmt, style).pattern.removesuffix(r"\Z")
    for key, sub in subs.items():
        pattern = pattern.replace(re.escape("\x00" + key + "\x00"), f"(?:{sub})")
    return pattern + r"\s*"


def _templates() -> list[tuple[str, re.Pattern[str]]]:
    logs = facts(f"vllm-{VERSION}")["logs"]

    def alternatives(*names: str) -> str:
        return "|".join(_regex(s, {}) for n in names for s in logs.get(n, []))

    subs = {"msg": alternatives("max_model_len_too_long", "oom_loading"),
            "warning": alternatives("max_model_len_caution"),
            "estimated_msg": alternatives("kv_estimate"),
            "e": OUTSIDE["torch.OutOfMemoryError"].pattern}
    out = [(s["file"], level_of(s["call"]), re.compile(_regex(s, subs), re.S))
           for fact, sites in logs.items() for s in sites if fact != "logo"]
    logo = logs["logo"][0]["format"].replace("${w}", "").replace("${o}", "").replace(
        "${b}", "").replace("${r}", "")
    out.append((logs["logo"][0]["file"], "INFO",
                re.compile(template_regex(logo, "percent").pattern, re.S)))
    stats = facts(f"vllm-{VERSION}")["stats_line"][0]["parts"]
    body = ""
    for i, part in enumerate(stats):
        piece = template_regex(part, "percent").pattern.removesuffix(r"\Z")
        required = part.split(":")[0] in ("Avg prompt throughput", "Avg generation throughput",
                                          "Running", "Waiting", "%s KV cache usage")
        body += piece if i == 0 else f"(?:, {piece})" + ("" if required else "?")
    stats_rx = re.compile(r"(?:Engine \d{3}|\d+ Engines Aggregated): " + body + r"\Z")
    out.append((facts(f"vllm-{VERSION}")["stats_line"][0]["file"], "INFO", stats_rx))
    out += [(file, level, re.compile(rx, re.S)) for file, level, rx in LOADING]
    return out


TEMPLATES = _templates()
UVICORN_LINES = [re.compile(template_regex(s["format"], s["style"]).pattern)
                 for fact, sites in facts(UVICORN)["logs"].items() for s in sites
                 if fact not in ("line_format", "access_format")]
# uvicorn's access formatter: '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
ACCESS = re.compile(r'[\d.]+:\d+ - "[A-Z]+ \S+ HTTP/1\.[01]" \d{3} [A-Za-z ]+')
LOGGER = re.compile(r"\((?P<proc>[^()\s]+) pid=\d+\) (?P<level>[A-Z]+) \d\d-\d\d \d\d:\d\d:\d\d "
                    r"\[(?P<src>[\w.]+):\d+\] (?P<msg>.*)")


def _sources(text: str) -> set[tuple[str, str | None]]:
    """(file base name, level) of the vLLM format strings that render to ``text``."""
    return {(Path(file).name, level) for file, level, rx in TEMPLATES if rx.fullmatch(text)}


def _is_vllm_message(text: str) -> bool:
    return bool(_sources(text))


def _exception_ok(text: str) -> bool:
    exc, _, msg = text.partition(": ")
    if exc == "KeyError":  # str(KeyError(m)) is repr(m)
        return _is_vllm_message(ast.literal_eval(msg))
    if exc == "pydantic_core._pydantic_core.ValidationError":
        m = re.fullmatch(r"1 validation error for ModelConfig\n  Value error, (.*) "
                         r"\[type=value_error, input_value=.*, input_type=ArgsKwargs\]", msg, re.S)
        return bool(m) and _is_vllm_message(m[1])
    if exc in OUTSIDE and OUTSIDE[exc].fullmatch(msg):
        return True
    return _is_vllm_message(msg)


def _traceback_ok(lines: list[str]) -> bool:
    """``Traceback (most recent call last):``, frames, then one exception (may span lines)."""
    i = 1
    while i + 1 < len(lines) and lines[i].startswith('  File "'):
        i += 2
    return lines[0] == "Traceback (most recent call last):" and i < len(lines) and \
        _exception_ok("\n".join(lines[i:]))


def problems(text: str) -> list[str]:
    """Every printed line that is not a rendering of a real format string."""
    out: list[str] = []
    records = text.replace("\r\n", "\r").split("\n")
    stderr_block: list[str] = []

    def flush() -> None:
        if stderr_block and not _traceback_ok(stderr_block):
            out.append("traceback: " + " / ".join(stderr_block))
        stderr_block.clear()

    for record in records:
        if not record:
            continue
        parts = record.split("\r")
        first = LOGGER.fullmatch(parts[0])
        if first is None:
            if record.startswith("INFO:     "):
                flush()
                msg = record.removeprefix("INFO:     ")
                if not (ACCESS.fullmatch(msg) or any(rx.fullmatch(msg) for rx in UVICORN_LINES)):
                    out.append("uvicorn: " + record)
            elif record == "Traceback (most recent call last):":
                flush()
                stderr_block.append(record)
            elif re.fullmatch(r"Process [\w]+:", record):  # multiprocessing's own notice
                flush()
            elif stderr_block:
                stderr_block.append(record)
            elif all(TQDM_BAR.fullmatch(p) for p in parts if p):
                flush()
            else:
                out.append("unknown: " + record)
            continue
        flush()
        head = parts[0][: first.start("msg")]
        lines = [first["msg"]] + [p.removeprefix(head) for p in parts[1:]]
        if not all(p.startswith(head) for p in parts[1:]):
            out.append("continuation without the prefix: " + record)
        message = "\n".join(lines)
        if "[hpclaunch_standin]" in message:
            continue
        head_text, tb, rest = message.partition("\nTraceback (most recent call last):\n")
        sources = _sources(head_text)
        if not sources:
            out.append("logger: " + head_text[:300])
        elif not any(first["src"] == f and level in (None, first["level"])
                     for f, level in sources):  # [file.py:N] names the file that logs it
            out.append(f"logger {first['level']} [{first['src']}] for a message from "
                       f"{sorted(sources, key=str)}: {head_text[:120]}")
        if tb and not _traceback_ok([tb.strip("\n")] + rest.split("\n")):
            out.append("logged traceback: " + rest[-300:])
    flush()
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_every_line_the_stand_in_prints_is_a_real_format_string(
        outputs: dict[str, dict[str, Any]], name: str) -> None:
    text = outputs[name]["log"]
    assert text.count("\n") >= 3, text
    found = problems(text)
    assert found == [], "\n".join(found)


def test_the_runs_cover_startup_stats_shutdown_and_each_failure(
        outputs: dict[str, dict[str, Any]]) -> None:
    everything = "\n".join(o["log"] for o in outputs.values())
    for needle in (f"█  version {VERSION}", "Engine 000: Avg prompt throughput",
                   "2 Engines Aggregated: ",
                   "api_server_count more than 1", "headless mode",
                   "[shutdown] API server: shutdown triggered", "Application shutdown complete.",
                   "EngineDeadError", "max seq len", "No available memory",
                   "(original error: CUDA out of memory", "invalid reasoning parser",
                   "Invalid repository ID", "User-specified max_model_len", "Errno 98",
                   "could not broadcast"):
        assert needle in everything, needle


def test_route_lines_name_routes_vllm_declares(outputs: dict[str, dict[str, Any]]) -> None:
    routes = facts(f"vllm-{VERSION}")["routes"]
    printed = re.findall(r"Route: (\S+), Methods: (.+?)\r?$", outputs["dp2"]["log"], re.M)
    assert printed
    for path, methods in printed:
        if path in FASTAPI_ROUTES:
            continue
        assert path in routes, path
        assert set(methods.split(", ")) <= set(routes[path]["methods"]), (path, methods)


def test_metrics_the_stand_in_serves_exist_in_vllm_with_those_labels(
        outputs: dict[str, dict[str, Any]]) -> None:
    real = facts(f"vllm-{VERSION}")["metrics"]
    served = outputs["dp2"]["metrics"]
    series = re.findall(r"^(vllm:\w+)\{([^}]*)\}", served, re.M)
    assert len({name for name, _ in series}) >= 6, served
    for name, labels in series:
        keys = set(re.findall(r'(\w+)="', labels))
        assert name in real, name
        wanted = set(real[name][0]["labels"])
        if name == "vllm:cache_config_info":
            assert keys <= wanted, (name, keys - wanted)
        else:
            assert keys == wanted, (name, keys, wanted)
