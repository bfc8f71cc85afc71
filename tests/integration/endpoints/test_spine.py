"""The spine, end to end through the CLI: submit -> wait -> READY -> use -> stop -> rm.

Runs the real local scheduler (a detached process group) and hpclaunch's vLLM
stand-in; nothing on the path is mocked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import HPC, job_file

MODEL = "Qwen3-VL-2B"


def submit(hpc: HPC, name: str, *extra: str, preset: str = "single-gpu", ok: bool = True):
    return hpc("submit", MODEL, "--preset", preset, "--scheduler", "local", "--simulate",
               "--name", name, *extra, ok=ok)


def chat(url: str, key: str, model: str, text: str) -> dict:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                       "max_tokens": 16}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_submit_wait_use_stop_rm(hpc: HPC) -> None:
    out = submit(hpc, "qwen-vl", preset="dp4-throughput")
    assert "submitted qwen-vl" in out.stdout and "simulated" in out.stdout
    rec = hpc.registry()["qwen-vl"]
    assert rec["state"] == "PENDING" and rec["job_id"].isdigit()
    assert rec["model_id"] == "Qwen/Qwen3-VL-2B-Instruct"

    waited = hpc("wait", "qwen-vl", "--timeout", "60")
    assert "READY" in waited.stdout

    listing = hpc("endpoints", "--json").json()
    assert [e["name"] for e in listing] == ["qwen-vl"]
    entry = listing[0]
    assert entry["state"] == "READY" and entry["simulated"] is True
    assert entry["url"].startswith("http://127.0.0.1:") and entry["url"].endswith("/v1")
    assert "api_key" not in entry

    table = hpc("endpoints").stdout
    assert "qwen-vl" in table and "READY (simulated)" in table and entry["url"] in table

    # The served model name is the endpoint name; the key comes from the registry.
    key = hpc.registry()["qwen-vl"]["api_key"]
    reply = chat(entry["url"], key, "qwen-vl", "hello there")
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] > 0

    status = hpc("status", "qwen-vl").stdout
    assert "READY" in status and rec["job_id"] in status
    assert f"port:        {entry['url'].split(':')[2].split('/')[0]}" in status

    log = hpc("logs", "qwen-vl", "-n", "200").stdout
    assert "Application startup complete." in log
    assert "Maximum concurrency for" in log

    stopped = hpc("stop", "qwen-vl").stdout
    assert "ENDED" in stopped
    assert hpc("endpoints", "--json").json() == []
    everything = hpc("endpoints", "--all", "--json").json()
    assert [(e["name"], e["state"]) for e in everything] == [("qwen-vl", "ENDED")]
    # The server process group is really gone.
    pid = int(rec["job_id"])
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    else:
        raise AssertionError(f"job process {pid} still alive after stop")

    hpc("rm", "qwen-vl")
    assert hpc("endpoints", "--all", "--json").json() == []


def test_dry_run_prints_a_valid_script_and_records_nothing(hpc: HPC) -> None:
    out = submit(hpc, "dry", "--dry-run", "--set", "max-num-seqs=64", preset="dp4-throughput")
    script = out.stdout
    assert script.startswith("#!/bin/bash")
    assert "--data-parallel-size 4" in script and "--max-num-seqs 64" in script
    assert "--api-key" not in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert not hpc.registry_path.exists()


def test_live_name_cannot_be_submitted_twice(hpc: HPC) -> None:
    submit(hpc, "twice")
    again = submit(hpc, "twice", ok=False)
    assert "already exists" in again.stderr and "hpclaunch stop twice" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_api_key_is_never_on_a_command_line_and_files_are_private(hpc: HPC) -> None:
    submit(hpc, "secret")
    hpc("wait", "secret", "--timeout", "60")
    rec = hpc.registry()["secret"]
    key = rec["api_key"]
    assert len(key) >= 24
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert key not in ps.stdout
    assert key not in Path(rec["script_path"]).read_text()
    key_file = job_file(rec, "key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(hpc.registry_path.stat().st_mode) == 0o600
    # Without the key the server refuses; with it, it answers.
    url = rec["host"], rec["port"]
    req = urllib.request.Request(f"http://{url[0]}:{url[1]}/v1/models")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("the stand-in answered /v1/models without the key")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401


def test_job_picks_the_next_free_port_and_reports_it(hpc: HPC) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        submit(hpc, "porty", "--set", f"port={port}")
        hpc("wait", "porty", "--timeout", "60")
        rec = hpc.registry()["porty"]
        assert rec["port"] != port and rec["port"] > port
        log_name = f"vllm_porty.{rec['submission']}_port{rec['port']}_realtime.log"
        assert rec["log_path"].endswith(log_name)
        endpoint = json.loads(job_file(rec, "endpoint.json").read_text())
        assert endpoint["port"] == rec["port"] and str(endpoint["job_id"]) == rec["job_id"]


def test_server_that_exits_at_once_is_failed_with_its_last_lines(hpc: HPC) -> None:
    submit(hpc, "dies", "--env", "HPCLAUNCH_STANDIN_FAIL=exit")
    out = hpc("wait", "dies", "--timeout", "60", ok=False)
    assert "FAILED" in out.stderr
    rec = hpc.registry()["dies"]
    assert rec["state"] == "FAILED" and rec["reason"]
    assert "last log lines" in rec["reason"] or "->" in rec["reason"]


def test_oom_failure_names_cause_and_fix(hpc: HPC) -> None:
    submit(hpc, "oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom")
    out = hpc("wait", "oom", "--timeout", "60", ok=False)
    assert "out of memory" in out.stderr.lower()
    assert "gpu-memory-utilization" in out.stderr


def test_simultaneous_jobs_get_distinct_ports(hpc: HPC) -> None:
    """Jobs starting together race for the same free port; the loser retries."""
    import concurrent.futures

    names = [f"race{i}" for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: submit(hpc, n), names))
    for name in names:
        hpc("wait", name, "--timeout", "60")
    ports = {hpc.registry()[n]["port"] for n in names}
    assert len(ports) == len(names)
    listing = {e["name"]: e["state"] for e in hpc("endpoints", "--json").json()}
    assert listing == dict.fromkeys(names, "READY")


def test_server_that_hangs_after_ready_is_unhealthy(hpc: HPC) -> None:
    submit(hpc, "hangs", "--env", "HPCLAUNCH_STANDIN_FAIL=hang_after_ready",
           "--env", "HPCLAUNCH_STANDIN_CRASH_AFTER=1")
    hpc("wait", "hangs", "--timeout", "60")
    import time

    deadline = time.time() + 20
    state = ""
    while time.time() < deadline:
        state = hpc("status", "hangs", "--json", ok=None).json()["state"]
        if state == "UNHEALTHY":
            break
        time.sleep(0.5)
    assert state == "UNHEALTHY"
    assert "/health" in hpc.registry()["hangs"]["reason"]


def test_engine_that_dies_after_ready_is_failed(hpc: HPC) -> None:
    submit(hpc, "crash", "--env", "HPCLAUNCH_STANDIN_FAIL=crash_after_ready",
           "--env", "HPCLAUNCH_STANDIN_CRASH_AFTER=1")
    # READY, or already FAILED when the crash one second later beats wait's next poll.
    assert hpc("wait", "crash", "--timeout", "60", ok=None).returncode in (0, 5)
    import time

    deadline = time.time() + 20
    while time.time() < deadline and \
            hpc("status", "crash", "--json", ok=None).json()["state"] == "READY":
        time.sleep(0.5)
    rec = hpc.registry()["crash"]
    assert rec["state"] == "FAILED", rec
    assert "EngineCore" in rec["reason"] or "engine" in rec["reason"].lower()
    # vLLM's process outlives a dead engine; hpclaunch frees the job's GPUs.
    assert "cancelled to free its GPUs" in rec["reason"]
    pid = int(rec["job_id"])
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the failed job's process group {pid} is still alive")
