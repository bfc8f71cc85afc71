"""``hpclaunch cluster add|list|show|check`` against the login node behind the bastion."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import HPC
from tests.integration.remote.test_jump import (
    JUMP_HOST,
    JUMP_PORT,
    JUMP_USER,
    LOGIN_HOST,
    LOGIN_PORT,
    LOGIN_USER,
    jump_profile,
    logins_accepted,
    site,  # noqa: F401 - the fixture these tests build on
)
from tests.integration.remote.test_ssh import write_clusters

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


def test_add_asks_the_few_questions_and_list_show_read_it_back(
        site: HPC, tmp_path: Path) -> None:  # noqa: F811 - pytest fixture
    results = tmp_path / "res"
    answers = f"slurm\nhpclogin\nparamiko\ndebug\n{results}\n4\n"
    out = site("cluster", "add", "polaris", input=answers)
    assert "wrote cluster polaris" in out.stdout and "hpclaunch cluster check polaris" in out.stdout
    data = yaml.safe_load((site.config_dir / "clusters.yaml").read_text())
    assert data["clusters"]["polaris"] == {
        "scheduler": "slurm", "host": "hpclogin", "transport": "paramiko",
        "partition": "debug", "results-dir": str(results), "gpus-per-node": 4}
    assert data["default"] == "site"  # the existing default stays

    again = site("cluster", "add", "polaris", "--no-input", ok=False)
    assert "already in" in again.stderr and "--force" in again.stderr

    listing = site("cluster", "list").stdout.splitlines()
    assert any(ln.split()[:3] == ["polaris", "slurm", "hpclogin"] for ln in listing)
    assert any(ln.startswith("*") and "site" in ln for ln in listing)

    shown = site("cluster", "show", "polaris").stdout
    assert "  partition: debug" in shown
    assert (f"reached: {LOGIN_USER}@{LOGIN_HOST}:{LOGIN_PORT} via "
            f"{JUMP_USER}@{JUMP_HOST}:{JUMP_PORT} (built-in SSH)") in shown


def test_add_without_questions_for_an_mfa_site(site: HPC) -> None:  # noqa: F811
    out = site("cluster", "add", "mfa", "--scheduler", "pbs", "--host", "hpclogin",
               "--transport", "openssh", "--queue", "debug", "--control-persist", "1h",
               "--no-input", "--default")
    assert "hpclaunch login mfa" in out.stdout
    shown = site("cluster", "show", "mfa").stdout
    assert "transport: openssh" in shown and "login connection closed" in shown
    assert yaml.safe_load((site.config_dir / "clusters.yaml").read_text())["default"] == "mfa"


def test_check_reports_the_real_slurm_through_the_jump_on_one_connection(
        site: HPC) -> None:  # noqa: F811
    before = logins_accepted()
    out = site("cluster", "check", "site")
    assert logins_accepted() - before == 1
    lines = out.stdout.splitlines()
    assert lines[0] == "cluster site: slurm on hpclogin (paramiko)"
    status = {ln.split()[1]: ln.split()[0] for ln in lines[1:] if ln.startswith("  ") and
              len(ln.split()) > 2 and not ln.strip().startswith("fix:")}
    assert status["connect"] == status["sbatch"] == status["partitions"] == "ok"
    assert status["gpus"] == status["python"] == status["results-dir"] == "ok"
    assert "debug (default), gpu" in out.stdout and "untyped x4 per node in debug" in out.stdout
    assert lines[-1] == "ready to submit"


def test_check_names_what_is_missing_and_exits_1(site: HPC, tmp_path: Path) -> None:  # noqa: F811
    write_clusters(site, site=jump_profile(tmp_path, partition="a100q",
                                           python="/no/such/python"))
    out = site("cluster", "check", "site", ok=False)
    assert out.returncode == 1
    assert "MISSING  partition    a100q is not among: debug (default), gpu" in out.stdout
    assert "fix: set partition: one of debug, gpu" in out.stdout
    assert "MISSING  python       /no/such/python not found" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("2 missing: see the fixes above")


def test_check_over_the_openssh_master_needs_the_login_first(
        site: HPC, tmp_path: Path) -> None:  # noqa: F811
    write_clusters(site, site=jump_profile(tmp_path, transport="openssh",
                                           control_persist="5m", python=sys.executable))
    out = site("cluster", "check", "site", ok=False)
    assert "MISSING  connect      no SSH connection to cluster site is open" in out.stdout
    site("login", "site")
    try:
        before = logins_accepted()
        assert site("cluster", "check", "site").stdout.splitlines()[-1] == "ready to submit"
        assert logins_accepted() == before
    finally:
        site("logout", "site")
