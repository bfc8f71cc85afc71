"""Shared fixtures: an isolated hpclaunch home per test, and the real CLI.

Tests drive the installed ``hpclaunch`` console script as a subprocess, so what
is tested is what a user runs (argument parsing, one-line errors, exit codes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Set by scripts/test.sh for the tests themselves (where the test harness put things), not
# read by hpclaunch: the isolated home must keep them.
TEST_SETUP_VARS = {"HPCLAUNCH_VF04_VENV"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/ files from the current output.")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True only when pytest runs with --update-golden: golden files never refresh silently."""
    return bool(request.config.getoption("--update-golden"))


def require(condition: bool, what: str, how: str) -> None:
    """Skip locally when a service is missing; in CI a missing service is a failure."""
    if condition:
        return
    message = f"{what} is not available; start it with: {how}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def hpclaunch_argv() -> list[str]:
    script = Path(sys.executable).with_name("hpclaunch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "hpclaunch.cli"]


@dataclass
class CLIResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def assert_golden(path: Path, script: str, update: bool) -> None:
    """A rendered job script equals its golden file, and is valid bash.

    The file is rewritten only with ``pytest --update-golden`` (never silently when missing,
    as submitit's record does); on a mismatch the diff and the refresh command are shown.
    """
    import difflib

    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
    assert path.exists(), f"no golden file {path}; create it with pytest --update-golden"
    expected = path.read_text()
    if script != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), script.splitlines(True),
                                            str(path), "rendered"))
        pytest.fail(f"{path.name} differs; if the change is intended, refresh it with "
                    f"pytest --update-golden after reading the diff:\n{diff}")


def job_file(rec: dict, suffix: str) -> Path:
    """A file of the submission behind registry entry ``rec`` (``key``, ``endpoint.json``,
    ``exit``): named after the endpoint and its submission id."""
    return Path(rec["results_dir"]) / f"{rec['name']}.{rec['submission']}.{suffix}"


def one_line_error(result: CLIResult) -> str:
    """The user-facing error contract: non-zero exit, one line on stderr, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class HPC:
    """The hpclaunch CLI bound to one isolated home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("XDG_", "HPCLAUNCH_"))}
        self.env["HPCLAUNCH_HOME"] = str(home)
        # The stand-in prints stats lines quickly so tests need not wait 10 s.
        self.env.setdefault("VLLM_LOG_STATS_INTERVAL", "0.5")
        # The environment its scheduler commands need (SLURM_CONF of the two-node Slurm).
        self.scheduler_env: dict[str, str] = {}

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def registry_path(self) -> Path:
        return self.home / "registry.json"

    def registry(self) -> dict:
        return json.loads(self.registry_path.read_text())["endpoints"]

    def __call__(self, *args: str, ok: bool | None = True, timeout: float = 120,
                 input: str | None = None) -> CLIResult:
        argv = [*hpclaunch_argv(), *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        result = CLIResult(argv, proc.returncode, proc.stdout, proc.stderr)
        if ok is True:
            assert proc.returncode == 0, (
                f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr}"
            )
        elif ok is False:
            assert proc.returncode != 0, f"{' '.join(args)} unexpectedly succeeded:\n{proc.stdout}"
        return result

    def cleanup(self) -> None:
        """Stop whatever a test left running (local process groups, Slurm jobs)."""
        if not self.registry_path.exists():
            return
        try:
            records = self.registry()
        except (ValueError, KeyError):
            return
        for rec in records.values():
            # Local process groups are killed whatever the recorded state, so that a
            # test that fails half-way leaves no server behind.
            if rec.get("scheduler") == "local" and str(rec.get("job_id", "")).isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(rec["job_id"]), signal.SIGKILL)
                continue
            if rec.get("state") in ("ENDED", "FAILED"):
                continue
            if rec.get("scheduler") == "slurm" and shutil.which("scancel"):
                subprocess.run(["scancel", str(rec["job_id"])], check=False,
                               capture_output=True, env={**os.environ, **self.scheduler_env})
            elif rec.get("scheduler") == "pbs" and shutil.which("qdel"):
                subprocess.run(["qdel", str(rec["job_id"])], check=False, capture_output=True)


@pytest.fixture
def hpc(tmp_path: Path) -> Iterator[HPC]:
    home = tmp_path / "hpchome"
    home.mkdir()
    cli = HPC(home)
    try:
        yield cli
    finally:
        cli.cleanup()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process library calls never touch the developer's real registry."""
    for key in list(os.environ):
        if key.startswith(("XDG_", "HPCLAUNCH_")) and key not in TEST_SETUP_VARS:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "hpchome"))


# -- the real single-node Slurm (scripts/services.sh start slurm) -------------------

PARTITION = os.environ.get("HPCLAUNCH_TEST_SLURM_PARTITION", "debug")
START = "bash scripts/services.sh start slurm"


def slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True,
                          text=True, timeout=30, check=False)
    states = proc.stdout.split()
    return proc.returncode == 0 and any(s.rstrip("*~#") in ("idle", "mixed", "allocated",
                                                             "completing") for s in states)


@pytest.fixture
def slurm_hpc(hpc: HPC) -> HPC:
    """The CLI with a Slurm cluster profile as the default (what a user writes)."""
    require(slurm_up(), "the real single-node Slurm", START)
    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    (hpc.config_dir / "clusters.yaml").write_text(
        "default: testslurm\n"
        "clusters:\n"
        "  testslurm:\n"
        "    scheduler: slurm\n"
        f"    partition: {PARTITION}\n"
        '    time-limit: "00:10:00"\n'
        "    gpus-per-node: 4\n"
        "    gpu-directive: gres\n"
        "    simulate: true\n"
    )
    return hpc
