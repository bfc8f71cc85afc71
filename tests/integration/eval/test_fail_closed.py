"""Fail closed: an endpoint name never reaches a hosted provider, and a script stops.

verifiers 0.3.x sends a ``-m`` name its registry does not list to a hosted provider
and exits 0; a shell script that ``eval``s nothing carries on with OpenAI's defaults.
These tests drive the real vf-eval 0.3.1, the real bash and the installed hpclaunch
against stand-in servers, and check what reached whom.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import HPC, hpclaunch_argv, job_file
from tests.integration.eval.test_eval import (  # noqa: F401 - vf is a fixture
    ENV_ID,
    PLAIN,
    assert_served_by,
    chat_requests,
    serve,
    vf,
)

HOSTED = ("pinference", "Provider:", "api.openai.com")


def bash(script: str, hpc: HPC, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=hpc.env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def printed_command(stdout: str, prefix: str) -> str:
    (line,) = [x for x in stdout.splitlines() if x.startswith(prefix)]
    return line


def test_exported_name_works_from_any_directory_and_fails_closed_once_ended(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    record = serve(hpc, tmp_path, "qa")
    out = hpc("export", "--format", "vf-eval")
    command = printed_command(out.stdout, "vf-eval ENV -m qa -e ")
    registry = Path(shlex.split(command)[-1])
    assert registry.is_absolute() and registry == hpc.home / "exports" / "endpoints.toml"
    assert 'eval "$(hpclaunch env --all)"' in out.stdout

    elsewhere = tmp_path / "elsewhere"  # no ./configs here: vf-eval's own default misses
    elsewhere.mkdir()
    run = command.replace("vf-eval ENV", f"{vf} {ENV_ID}", 1) + " " + shlex.join(PLAIN)
    keys = f'eval "$({" ".join(hpclaunch_argv())} env --all)"'
    ok = bash(f"{keys} && {run}", hpc, elsewhere)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert_served_by(record, hpc, "qa")

    hpc("stop", "qa")
    again = hpc("export", "--format", "vf-eval")
    assert "fail closed (vf-eval stops on these names): qa ENDED" in again.stderr
    assert "dropped" not in again.stderr
    refused = bash(f"{keys}; {run}", hpc, elsewhere, timeout=60)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "refused by hpclaunch: endpoint qa is ENDED" in output  # why, in vf-eval's words
    assert not any(word in output for word in HOSTED), output[-2000:]
    assert len(chat_requests(record)) == 2  # nothing more reached the (stopped) server


def test_env_on_a_bad_name_stops_a_set_e_script_and_never_points_at_openai(
        hpc: HPC, tmp_path: Path) -> None:
    env = " ".join(hpclaunch_argv()) + " env"
    stopped = bash(f'set -e; eval "$({env} typo)"; echo AFTER', hpc, tmp_path, timeout=60)
    assert stopped.returncode == 3 and "AFTER" not in stopped.stdout  # 3: no such endpoint
    assert "no endpoint named 'typo'" in stopped.stderr
    # Without set -e the script goes on, but an OpenAI client fails here, on this machine.
    carried_on = bash(f'export OPENAI_BASE_URL=https://api.openai.com/v1; '
                      f'eval "$({env} typo)"; echo "rc=$? url=$OPENAI_BASE_URL"',
                      hpc, tmp_path, timeout=60)
    assert "rc=3 url=http://127.0.0.1:9/v1" in carried_on.stdout


def test_exit_codes_say_not_found_not_ready_failed_and_ended(hpc: HPC, tmp_path: Path) -> None:
    assert hpc("status", "nosuch", ok=False).returncode == 3
    serve(hpc, tmp_path, "qa")
    assert hpc("status", "qa").returncode == 0
    serve(hpc, tmp_path, "oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom", ok=False)
    failed = hpc("status", "oom", ok=False)
    assert failed.returncode == 5 and "FAILED" in failed.stdout
    assert hpc("status", "oom", "--json", ok=False).returncode == 5
    assert hpc("env", "oom", ok=False).returncode == 5
    hpc("submit", "Qwen3-VL-2B", "--preset", "single-gpu", "--scheduler", "local",
        "--simulate", "--name", "slow", "--env", "HPCLAUNCH_STANDIN_STARTUP_DELAY=60")
    assert hpc("status", "slow", ok=False).returncode == 4
    assert hpc("wait", "slow", "--timeout", "1", ok=False).returncode == 4
    hpc("stop", "qa", "slow")
    assert hpc("status", "qa", ok=False).returncode == 6


def test_eval_stops_within_seconds_naming_the_cause_when_the_server_is_killed_mid_run(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    record = serve(hpc, tmp_path, "qk", "--env", "HPCLAUNCH_STANDIN_TOKEN_DELAY=0.3")
    rec = hpc.registry()["qk"]
    pid = json.loads(job_file(rec, "endpoint.json").read_text())["pid"]
    argv = [*hpclaunch_argv(), "eval", "qk", ENV_ID, "-n", "4", "-r", "3", "-c", "1",
            "--disable-tui", "--disable-env-server", "-a", '{"use_think": false}']
    proc = subprocess.Popen(argv, env=hpc.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 90
        # Running for a while (requests served, the watch polling) before the kill, so the
        # poll rate below is measured over several polls whatever this machine's speed.
        while (len(chat_requests(record)) < 3 or len(metrics_polls(record)) < 4) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(chat_requests(record)) >= 3, "vf-eval never got going"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, stderr[-3000:]  # 5: the endpoint FAILED
    assert took < 20, f"hpclaunch eval took {took:.0f} s to notice"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("hpclaunch: endpoint 'qk' went FAILED during the eval (")
    assert "vf-eval was stopped" in last and "/health" not in last  # no probe lines as cause
    # The server's log is not flooded by the watch: at most one /metrics request a second.
    times = metrics_polls(record)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 3 and min(gaps) > 0.9, gaps


def metrics_polls(record: Path) -> list[float]:
    return [r["time"] for r in _requests(record) if r["path"] == "/metrics"]


def _requests(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def test_eval_refuses_an_unhealthy_endpoint_at_once(hpc: HPC, vf: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    record = serve(hpc, tmp_path, "qh", "--env", "HPCLAUNCH_STANDIN_FAIL=hang_after_ready",
                   "--env", "HPCLAUNCH_STANDIN_CRASH_AFTER=1")
    time.sleep(2)
    started = time.monotonic()
    out = hpc("eval", "qh", ENV_ID, "--wait-timeout", "600", *PLAIN, ok=False)
    assert out.returncode == 4 and "'qh' is UNHEALTHY" in out.stderr  # 4: not ready
    assert time.monotonic() - started < 30  # refused, not waited on for --wait-timeout
    assert chat_requests(record) == []
