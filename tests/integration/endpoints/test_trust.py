"""Trust at the edges, on the real local scheduler: races, unwritable state, bad names.

Each test is a fault a hostile or unlucky user meets: many submits of one name at once,
a registry that cannot be written, names and flags that would break other tools. The
rule under test is the same every time: one winner, nothing orphaned, nothing lost, and
a one-line error that names the cause.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import HPC, CLIResult, job_file, one_line_error

MODEL = "Qwen3-0.6B"
SUBMIT = ("submit", MODEL, "--preset", "single-gpu", "--simulate")


def servers_named(name: str) -> list[int]:
    """Pids of stand-in servers serving ``name`` (what a user would find with ps)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines()
            if "hpclaunch.standin" in line and f"--served-model-name {name} " in line]


def run_many(hpc: HPC, argvs: list[tuple[str, ...]], workers: int = 20) -> list[CLIResult]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda argv: hpc(*argv, ok=None, timeout=180), argvs))


def test_twenty_concurrent_submits_of_one_name_leave_one_usable_endpoint(hpc: HPC) -> None:
    results = run_many(hpc, [(*SUBMIT, "--name", "same")] * 20)
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [r.stderr for r in results]
    for loser in (r for r in results if r.returncode != 0):
        assert "already exists" in one_line_error(loser)
    rec = hpc.registry()["same"]
    assert "READY" in hpc("wait", "same", "--timeout", "90").stdout
    assert hpc("chat", "same", "Hi").stdout.strip()
    # Losers wrote nothing and queued nothing: one server, one submission's files.
    assert len(servers_named("same")) == 1
    own = {p.name for p in Path(rec["results_dir"]).iterdir() if p.name.startswith("same.")}
    assert own == {f"same.{rec['submission']}.{s}" for s in ("key", "endpoint.json")}


def test_a_registry_that_cannot_be_locked_queues_nothing(hpc: HPC) -> None:
    (hpc.home / "registry.json.lock").mkdir(parents=True)
    out = hpc(*SUBMIT, "--name", "nolock", ok=False)
    assert "cannot write the registry" in one_line_error(out)
    time.sleep(1)
    assert servers_named("nolock") == []
    assert not (hpc.home / "results").exists() or not list((hpc.home / "results").iterdir())


def test_a_full_disk_under_the_state_dir_queues_nothing_and_loses_nothing(
        hpc: HPC, tmp_path: Path) -> None:
    first = hpc(*SUBMIT, "--name", "kept")
    assert first.returncode == 0
    hpc("stop", "kept")
    saved = hpc.registry_path.read_bytes()
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(small)], check=True)
    try:
        (small / "registry.json").write_bytes(saved)  # the registry moves onto the small disk
        fd = os.open(small / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # whatever room is left, taken
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        env_home, hpc.env["HPCLAUNCH_HOME"] = hpc.env["HPCLAUNCH_HOME"], str(small)
        try:
            out = hpc(*SUBMIT, "--name", "full", ok=False)
            assert "Traceback" not in out.stderr and "internal error" not in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
            time.sleep(1)
            assert servers_named("full") == []
            # The records on the full disk are the ones that were there: nothing lost.
            assert json.loads((small / "registry.json").read_bytes())["endpoints"].keys() \
                == json.loads(saved)["endpoints"].keys()
        finally:
            hpc.env["HPCLAUNCH_HOME"] = env_home
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_names_must_match_whole(hpc: HPC) -> None:
    for bad in ("nl\n", "a b", "-lead", "x" * 64, "dot/slash"):
        out = hpc(*SUBMIT, "--name", bad, ok=False)
        assert "invalid endpoint name" in one_line_error(out)
    assert servers_named("nl") == []


def test_a_registry_entry_with_a_bad_name_is_named_and_kept(hpc: HPC) -> None:
    entry = {"name": "nl\n", "model": "m", "model_id": "m", "served_model_name": "nl\n",
             "preset": "single-gpu", "cluster": "local", "scheduler": "local"}
    text = json.dumps({"schema": 1, "endpoints": {"nl\n": entry}})
    hpc.registry_path.write_text(text)
    for argv in (("endpoints",), ("export", "--format", "json"), (*SUBMIT, "--name", "ok")):
        line = one_line_error(hpc(*argv, ok=False))
        assert "corrupt" in line and "endpoints.'nl\\n'" in line, line
    assert hpc.registry_path.read_text() == text  # left exactly as it was


def test_flags_hpclaunch_owns_are_refused_everywhere(hpc: HPC) -> None:
    cases = [("--set", "served-model-name=other"),
             ("--vllm-args", "--served-model-name other"),
             ("--vllm-args", "--served-model-name=other"),
             ("--vllm-args", "--port 9000"),
             ("--vllm-args", "--api-key sk-x")]
    for flag, value in cases:
        line = one_line_error(hpc(*SUBMIT, "--name", "own", flag, value, ok=False))
        assert "served-model-name" in line or "port" in line or "key" in line, line
    presets = hpc.config_dir / "presets"
    presets.mkdir(parents=True)
    (presets / "renamed.yaml").write_text(
        "description: renames the model\nlayout: {dp: 1, tp: 1, pp: 1}\n"
        "vllm: {served-model-name: other}\n")
    line = one_line_error(hpc("submit", MODEL, "--preset", "renamed", "--simulate", ok=False))
    assert "vllm.served-model-name" in line and "--name" in line
    assert not hpc.registry_path.exists() or hpc.registry() == {}


def test_a_server_killed_minus_nine_is_failed_with_its_cause(hpc: HPC) -> None:
    hpc(*SUBMIT, "--name", "k9")
    hpc("wait", "k9", "--timeout", "90")
    rec = hpc.registry()["k9"]
    pid = json.loads(job_file(rec, "endpoint.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = hpc("status", "k9", "--json", ok=None).json()
        assert isinstance(status, dict)
        if status["state"] == "FAILED":
            break
        time.sleep(0.5)
    assert status["state"] == "FAILED", status
    assert "SIGKILL" in status["reason"] or "137" in status["reason"], status["reason"]


def test_fifty_concurrent_cli_calls_lose_nothing(hpc: HPC) -> None:
    names = [f"c{i:02d}" for i in range(20)]
    argvs: list[tuple[str, ...]] = [(*SUBMIT, "--name", n) for n in names]
    argvs += [("endpoints", "--json")] * 15
    argvs += [("stop", n) for n in names[:15]]
    results = run_many(hpc, argvs, workers=25)
    for r in results:
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    registry = hpc.registry()
    assert sorted(registry) == names  # every name is there, submitted or stopped; none lost
    for name, r in zip(names, results[:20], strict=True):
        if r.returncode:  # its `stop` landed before the job id: stopped, the job cancelled
            line = one_line_error(r)
            assert "was stopped (hpclaunch stop) while its job" in line, line
            assert "it was cancelled" in line and registry[name]["state"] == "ENDED", line
    hpc("stop", *names)
    records = hpc("endpoints", "--all", "--json").json()
    assert isinstance(records, list) and {e["state"] for e in records} <= {"ENDED", "FAILED"}
    for name in names:
        assert servers_named(name) == [], name


def test_results_dir_that_cannot_be_created_records_nothing(hpc: HPC) -> None:
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: here\nclusters:\n  here:\n    scheduler: local\n"
        "    results-dir: /dev/null/results\n    simulate: true\n")
    out = hpc("submit", MODEL, "--preset", "single-gpu", "--name", "nodir", ok=False)
    line = one_line_error(out)
    assert "/dev/null/results" in line
    assert not hpc.registry_path.exists() or hpc.registry() == {}
