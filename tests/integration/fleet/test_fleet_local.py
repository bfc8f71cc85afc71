"""Fleets on this machine: the real vllm-router (PyPI) in front of stand-in replicas.

The router is the installed ``vllm-router`` run as a local process group; replicas are
``--simulate`` jobs whose own agent joins the router when healthy. Load is a bounded
loop of chat requests on 127.0.0.1 (a few per second, a fixed count).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import HPC
from tests.integration.eval.test_eval import vf  # noqa: F401 - the fixture

MODEL = "Qwen3-0.6B"
ROUTER_PORT = 31500 + os.getpid() % 400
HEALTH_CHECK_S = 1


def profile(hpc: HPC) -> None:
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "clusters:\n  local:\n    scheduler: local\n    bind-host: 127.0.0.1\n"
        "    url-host: 127.0.0.1\n    time-limit: ''\n"
        f"    router:\n      port: {ROUTER_PORT}\n      health-check-interval: {HEALTH_CHECK_S}\n")


def post_chat(url: str, key: str, model: str, timeout: float = 20) -> int:
    body = json.dumps({"model": model, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Load(threading.Thread):
    """``count`` requests at ``rate`` per second; ``failed`` counts every non-200."""

    def __init__(self, url: str, key: str, model: str, count: int = 40, rate: float = 8):
        super().__init__(daemon=True)
        self.args = (url, key, model)
        self.count, self.gap = count, 1 / rate
        self.codes: list[int] = []
        self.halt = threading.Event()  # stop early (still bounded by count)

    def run(self) -> None:
        for _ in range(self.count):
            if self.halt.is_set():
                return
            self.codes.append(post_chat(*self.args))
            time.sleep(self.gap)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.codes if c != 200)


def workers(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/workers", timeout=5) as resp:
        return json.loads(resp.read())["workers"]


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def fleet_row(hpc: HPC, name: str) -> str:
    out = hpc("endpoints").stdout
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_fleet_one_name_one_key_survives_a_replica_killed_hard_and_replaces_it(hpc: HPC):
    profile(hpc)
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "fl",
        "--replicas", "2", "--replicas-restart")
    hpc("wait", "fl", "--timeout", "60")
    until(lambda: "READY 2/2" in fleet_row(hpc, "fl"), 30, "both replicas READY")
    reg = hpc.registry()
    fleet, r0, r1 = reg["fl"], reg["fl.r0"], reg["fl.r1"]
    assert fleet["port"] == ROUTER_PORT and fleet["role"] == "fleet"
    # One key and one served name for all: the router forwards the client's key unchanged.
    assert r0["api_key"] == r1["api_key"] == fleet["api_key"]
    assert r0["served_model_name"] == r1["served_model_name"] == "fl"
    url, key = f"http://127.0.0.1:{ROUTER_PORT}/v1", fleet["api_key"]
    assert "You said" in hpc("chat", "fl", "hello").stdout
    # The router's own key check: no key, a wrong key, a replica's... all one key.
    assert post_chat(url, "", "fl") == 401
    assert post_chat(url, "wrong", "fl") == 401
    both = {f"http://127.0.0.1:{r0['port']}", f"http://127.0.0.1:{r1['port']}"}
    # A replica's agent joins within a poll (1 s) of its server answering /health.
    until(lambda: {w["url"] for w in workers(ROUTER_PORT)} == both, 10, "both to join")
    status = hpc("status", "fl").stdout
    assert "fl.r0" in status and "fl.r1" in status and "READY 2/2" in status

    load = Load(url, key, "fl")
    load.start()
    time.sleep(1.0)
    os.killpg(int(r1["job_id"]), signal.SIGKILL)  # the whole job, agent included: no goodbye
    killed = time.monotonic()
    victim = f"http://127.0.0.1:{r1['port']}"
    until(lambda: not any(w["is_healthy"] for w in workers(ROUTER_PORT) if w["url"] == victim),
          HEALTH_CHECK_S + 4, "the router to mark the killed replica unhealthy")
    noticed = time.monotonic() - killed
    load.join(timeout=60)
    print(f"killed replica noticed by the router after {noticed:.2f} s; "
          f"{len(load.codes)} requests, {load.failed} failed")
    assert len(load.codes) == 40 and load.failed == 0, load.codes
    row = fleet_row(hpc, "fl")  # this refresh also queues the replacement
    assert "READY 1/2" in row, row
    assert hpc.registry()["fl.r1"]["state"] == "FAILED"
    until(lambda: "READY 2/2" in fleet_row(hpc, "fl"), 40, "the replacement replica")
    assert hpc.registry()["fl.r2"]["fleet"] == "fl"
    # A refresh took the killed replica off the router's list (it could not leave itself).
    assert victim not in {w["url"] for w in workers(ROUTER_PORT)}

    out = hpc("scale", "fl", "1").stdout
    assert "retired fl.r2" in out
    assert {w["url"] for w in workers(ROUTER_PORT)} == {f"http://127.0.0.1:{r0['port']}"}
    assert "You said" in hpc("chat", "fl", "still here").stdout

    stopped = hpc("stop", "fl").stdout
    assert "fl: ENDED" in stopped and "fl.r0: ENDED" in stopped
    assert post_chat(url, key, "fl", timeout=3) == 0  # the router is gone too
    usage = hpc("endpoints", "--usage").stdout
    assert "fl" in usage and "fleet" in usage
    removed = hpc("rm", "fl").stdout.split()
    assert {"fl", "fl.r0", "fl.r1", "fl.r2"} <= set(removed)
    assert not [n for n in hpc.registry() if n == "fl" or n.startswith("fl.")]


def test_a_replica_told_to_go_leaves_the_router_before_it_stops(hpc: HPC):
    """SIGTERM to the job's own shell, as a scheduler's grace signal (or ``scancel --batch``)
    sends it: the replica leaves the router, drains, then stops; nothing fails."""
    profile(hpc)
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "ft",
        "--replicas", "2")
    hpc("wait", "ft", "--timeout", "60")
    port = hpc.registry()["ft"]["port"]
    until(lambda: len(workers(port)) == 2, 30, "both replicas in the router")
    reg = hpc.registry()
    fleet, r1 = reg["ft"], reg["ft.r1"]
    load = Load(f"http://127.0.0.1:{port}/v1", fleet["api_key"], "ft", count=30, rate=8)
    load.start()
    time.sleep(1.0)
    os.kill(int(r1["job_id"]), signal.SIGTERM)  # the batch shell only, not vLLM
    gone = f"http://127.0.0.1:{r1['port']}"
    until(lambda: gone not in {w["url"] for w in workers(port)}, 10, "r1 to leave")
    load.join(timeout=60)
    assert len(load.codes) == 30 and load.failed == 0, load.codes
    until(lambda: hpc("status", "ft.r1", "--json", ok=None).json()["state"] == "ENDED", 20,
          "r1 ENDED")
    agent_log = next(Path(r1["results_dir"]).glob(f"ft.r1.{r1['submission']}.agent.log"))
    assert "left http://127.0.0.1" in agent_log.read_text()
    assert "READY 1/2" in fleet_row(hpc, "ft")
    hpc("stop", "ft")


def test_idle_stop_ends_an_endpoint_and_a_fleet_with_that_reason(hpc: HPC):
    profile(hpc)
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "one",
        "--idle-stop", "3s")
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "fi",
        "--replicas", "1", "--idle-stop", "3s")
    hpc("wait", "one", "--timeout", "60")
    hpc("wait", "fi", "--timeout", "60")
    for _ in range(3):  # requests keep it alive past its idle time
        assert "You said" in hpc("chat", "one", "hi").stdout
        time.sleep(1.5)

    def ended(name: str) -> dict | None:
        hpc("endpoints")
        rec = hpc.registry()[name]
        return rec if rec["state"] == "ENDED" else None

    one = until(lambda: ended("one"), 20, "idle stop of one")
    assert one["reason"] == "idle stop: no requests for 3s"
    fleet = until(lambda: ended("fi"), 20, "idle stop of the fleet")
    assert fleet["reason"].startswith("idle stop")
    assert hpc.registry()["fi.r0"]["reason"] == "idle stop: no requests for 3s"


@pytest.mark.vfeval
@pytest.mark.usefixtures("vf")  # vf-eval and the test environment on the path
def test_eval_by_fleet_name_goes_through_the_router_with_the_fleet_key(hpc: HPC, tmp_path):
    from tests.integration.eval.test_eval import ENV_ID, PLAIN, chat_requests

    profile(hpc)
    record = tmp_path / "requests.jsonl"
    hpc("submit", MODEL, "--preset", "single-gpu", "--simulate", "--name", "fe",
        "--replicas", "2", "--env", f"HPCLAUNCH_STANDIN_RECORD={record}")
    hpc("wait", "fe", "--timeout", "60")
    port = hpc.registry()["fe"]["port"]  # ROUTER_PORT, or the next free one
    until(lambda: "READY 2/2" in fleet_row(hpc, "fe") and len(workers(port)) == 2, 30,
          "both replicas in the router")
    out = hpc("eval", "fe", ENV_ID, *PLAIN, timeout=180)
    key = hpc.registry()["fe"]["api_key"]
    requests = chat_requests(record)
    assert len(requests) == 2
    assert {r["model"] for r in requests} == {"fe"}
    assert {r["authorization"] for r in requests} == {f"Bearer {key}"}
    assert "GPU-hours held for the run:" in out.stderr and "(2 GPU(s) x" in out.stderr
    hpc("stop", "fe")
