"""Conveniences an HPC user expects: completion, --help with examples, --version."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import HPC, hpclaunch_argv


def complete(hpc: HPC, words: str, cword: int) -> list[str]:
    env = {**hpc.env, "COMP_WORDS": words, "COMP_CWORD": str(cword),
           "_HPCLAUNCH_COMPLETE": "bash_complete"}
    out = subprocess.run(hpclaunch_argv(), env=env, capture_output=True, text=True,
                         check=True).stdout
    return [line.split(",", 1)[1] for line in out.splitlines()]


def test_completion_script_and_dynamic_names(hpc: HPC) -> None:
    script = hpc("completion", "bash").stdout
    assert "_HPCLAUNCH_COMPLETE" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "alpha")
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "beta")
    assert complete(hpc, "hpclaunch stop al", 2) == ["alpha"]
    assert complete(hpc, "hpclaunch submit m --preset dp4", 4) == ["dp4-2nodes", "dp4-throughput"]


def test_help_has_examples(hpc: HPC) -> None:
    for command in ("submit", "wait"):
        text = hpc(command, "--help").stdout
        assert "Example" in text and "hpclaunch " in text


def test_version(hpc: HPC) -> None:
    assert "0.1.0" in hpc("--version").stdout


def test_lazy_commands_are_registered_by_their_modules() -> None:
    """Each lazily loaded command name is really defined by the module it points at."""
    import importlib

    from hpclaunch.cli import cli
    from hpclaunch.cli.main import LAZY_COMMANDS

    for name, module in LAZY_COMMANDS.items():
        importlib.import_module(f"hpclaunch.{module}")
        assert name in cli.commands, f"{module} does not define {name!r}"


def test_reading_the_registry_imports_no_area_modules() -> None:
    import sys

    code = ("import sys, hpclaunch.cli as c; c.main(['endpoints', '--cached'])")
    out = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    probe = ("import sys, hpclaunch.cli\n"
             "print(sorted(m for m in sys.modules if (m.startswith('hpclaunch.cli.') "
             "and m not in ('hpclaunch.cli.main',)) "
             "or m.split('.')[0] in ('jinja2', 'yaml', 'paramiko', 'openai')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_listing_only_ended_endpoints_asks_no_scheduler_and_loads_no_submit_code(
        hpc: HPC) -> None:
    # A registry of final states is answered from the cache: no scheduler, transport, status
    # or submit (planning, rendering) module is imported, so `endpoints` stays near start-up.
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate", "--name", "done")
    hpc("stop", "done")
    probe = ("import sys\nfrom hpclaunch.cli import main\n"
             "try:\n    main(['endpoints', '--all'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(("
             "'hpclaunch.schedulers', 'hpclaunch.remote', 'hpclaunch.endpoints.status', "
             "'hpclaunch.endpoints.launch', 'hpclaunch.planning', 'hpclaunch.fleet.launch'))))")
    out = subprocess.run([sys.executable, "-c", probe], env=hpc.env, capture_output=True,
                         text=True, check=True).stdout
    assert "done" in out
    assert out.strip().splitlines()[-1] == "[]"
