"""A login node behind a bastion, named by an alias of ``~/.ssh/config`` (paramiko transport).

``scripts/services.sh start jump`` runs a bastion sshd (127.0.0.1:2223, forwarding only)
and a "login node" on 127.0.0.2:2224 that admits only connections the bastion makes. The
test HOME has a ``~/.ssh/config`` with ``Host hpcbastion`` and ``Host hpclogin`` (with
``ProxyJump hpcbastion``); clusters.yaml says only ``host: hpclogin``. Everything then
runs on the real Slurm through both hops.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv, require
from tests.integration.remote.test_ssh import (
    one_error_line,
    read_line,
    write_clusters,
)

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]

JUMP_HOST = os.environ.get("HPCLAUNCH_TEST_JUMP_HOST", "127.0.0.1")
JUMP_PORT = int(os.environ.get("HPCLAUNCH_TEST_JUMP_PORT", "2223"))
JUMP_USER = os.environ.get("HPCLAUNCH_TEST_JUMP_USER", "hpcjump")
LOGIN_HOST = os.environ.get("HPCLAUNCH_TEST_LOGIN_HOST", "127.0.0.2")
LOGIN_PORT = int(os.environ.get("HPCLAUNCH_TEST_LOGIN_PORT", "2224"))
LOGIN_USER = os.environ.get("HPCLAUNCH_TEST_LOGIN_USER", "root")
KEY = os.environ.get("HPCLAUNCH_TEST_JUMP_KEY", "/etc/ssh/hpclaunch-jump/id_ed25519")
KNOWN_HOSTS = os.environ.get("HPCLAUNCH_TEST_JUMP_KNOWN_HOSTS",
                             "/etc/ssh/hpclaunch-jump/known_hosts")
LOGIN_LOG = os.environ.get("HPCLAUNCH_TEST_LOGIN_LOG", "/etc/ssh/hpclaunch-jump/login.log")
MODEL = "Qwen3-0.6B"
REPO = Path(__file__).resolve().parents[3]
START = "bash scripts/services.sh start jump"


def jump_up() -> bool:
    """The bastion says SSH-, and the login node's gate accepts TCP (then drops us)."""
    if not (os.access(KEY, os.R_OK) and os.path.isfile(KNOWN_HOSTS)
            and os.access(LOGIN_LOG, os.R_OK)):
        return False
    try:
        with socket.create_connection((JUMP_HOST, JUMP_PORT), timeout=5) as sock:
            if not sock.recv(4).startswith(b"SSH-"):
                return False
        with socket.create_connection((LOGIN_HOST, LOGIN_PORT), timeout=5):
            return True
    except OSError:
        return False


def slurm_state() -> str:
    """What sinfo says of the node ("" when it does not answer)."""
    if not shutil.which("sinfo"):
        return ""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "no answer in 30 s"
    return " ".join(proc.stdout.split()) if proc.returncode == 0 else proc.stderr.strip()


def slurm_up(state: str) -> bool:
    """The node takes jobs (``completing`` right after another test's job ended counts:
    it takes the next one a moment later)."""
    return any(s.strip("*~#!%$@^-+").startswith(("idle", "mixed", "allocated", "completing"))
               for s in state.split())


def ssh_config(known_hosts: str = KNOWN_HOSTS) -> str:
    """What a user at a site with a bastion writes; StrictHostKeyChecking no must not
    weaken hpclaunch's host-key check."""
    return f"""
Host hpcbastion
    HostName {JUMP_HOST}
    Port {JUMP_PORT}
    User {JUMP_USER}
    IdentityFile {KEY}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts}

Host hpclogin
    HostName {LOGIN_HOST}
    Port {LOGIN_PORT}
    User {LOGIN_USER}
    IdentityFile {KEY}
    IdentitiesOnly yes
    ProxyJump hpcbastion
    UserKnownHostsFile {known_hosts}
    StrictHostKeyChecking no
"""


def jump_profile(tmp_path: Path, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "host": "hpclogin", "scheduler": "slurm", "simulate": True,
        "partition": os.environ.get("HPCLAUNCH_TEST_SLURM_PARTITION", "debug"),
        "gpus_per_node": 4, "python": sys.executable,
        "results_dir": str(tmp_path / "results"),
        # The job's stand-in imports hpclaunch: the code under test, not whatever the
        # shared environment has installed.
        "env": {"PYTHONPATH": str(REPO)},
    }
    data.update(changes)
    return data


def chat_via(url: str, key: str, model: str, text: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                       "max_tokens": 16}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["choices"][0]["message"]["content"])


def logins_accepted() -> int:
    """SSH sessions the login node has accepted so far (its sshd -i processes log them)."""
    with open(LOGIN_LOG, errors="replace") as fh:
        return sum("Accepted publickey for" in line for line in fh)


@pytest.fixture
def site(hpc: HPC, tmp_path: Path) -> Iterator[HPC]:
    """The CLI with a test HOME whose ~/.ssh/config reaches hpclogin through hpcbastion."""
    require(jump_up(), "the bastion and login-node sshds", START)
    state = slurm_state()
    require(slurm_up(state), f"the single-node Slurm (sinfo: {state or 'not found'!r})",
            "bash scripts/services.sh start slurm")
    home = tmp_path / "userhome"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(ssh_config())
    hpc.env["HOME"] = str(home)
    hpc.env.pop("SSH_AUTH_SOCK", None)
    write_clusters(hpc, site=jump_profile(tmp_path))
    yield hpc
    # A test state dir is too long for a socket path: openssh tests reach it through a
    # short link in /tmp (see hpclaunch.remote.openssh.socket_dir); leave none behind.
    for link in Path("/tmp").glob(f"hpclaunch-ssh-{os.getuid()}-*"):
        if link.is_symlink() and os.readlink(link).startswith(str(tmp_path)):
            link.unlink()


def test_the_login_node_refuses_anyone_but_the_bastion(hpc: HPC, tmp_path: Path) -> None:
    """The fixture is what it claims: without the jump there is no way in."""
    require(jump_up(), "the bastion and login-node sshds", START)
    write_clusters(hpc, direct=jump_profile(tmp_path, host=LOGIN_HOST, port=LOGIN_PORT,
                                            user=LOGIN_USER, ssh_key=KEY,
                                            known_hosts=KNOWN_HOSTS))
    out = hpc("submit", MODEL, "--preset", "single-gpu", ok=False)
    assert f"cannot reach login node {LOGIN_HOST}:{LOGIN_PORT}" in one_error_line(out.stderr)


def test_submit_ready_tunnel_chat_stop_through_the_bastion(site: HPC, tmp_path: Path) -> None:
    before = logins_accepted()
    out = site("submit", MODEL, "--preset", "single-gpu", "--name", "jumped", "--simulate")
    assert "submitted jumped" in out.stdout
    rec = site.registry()["jumped"]
    assert rec["cluster"] == "site" and rec["scheduler"] == "slurm"
    try:
        assert "READY" in site("wait", "jumped", "--timeout", "90").stdout
        proc = subprocess.Popen([*hpclaunch_argv(), "tunnel", "jumped"], env=site.env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            url = read_line(proc, 30)
            assert url.startswith("http://127.0.0.1:")
            rec = site.registry()["jumped"]
            assert "via the bastion" in chat_via(url, rec["api_key"], "jumped", "via the bastion")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        assert f"via {LOGIN_HOST}:{LOGIN_PORT}" in proc.stderr.read()
        assert "ENDED" in site("stop", "jumped").stdout
    finally:
        subprocess.run(["scancel", rec["job_id"]], check=False, capture_output=True)
    # submit, wait, tunnel, stop: four CLI calls, four logins to the login node.
    assert logins_accepted() - before == 4


def test_one_connection_chain_per_cli_call(site: HPC, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpclaunch.cli import main
    from hpclaunch.remote import ssh

    monkeypatch.setenv("HOME", site.env["HOME"])
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    def connections(*argv: str) -> tuple[int, int]:
        before, logins = ssh.connections_opened(), logins_accepted()
        main(list(argv))
        ssh.close_all()
        return ssh.connections_opened() - before, logins_accepted() - logins

    try:
        assert connections("submit", MODEL, "--preset", "single-gpu", "--name", "chain",
                           "--wait", "--timeout", "90") == (1, 1)
        assert connections("status", "chain") == (1, 1)
        assert connections("logs", "chain", "-n", "5") == (1, 1)
        assert connections("stop", "chain") == (1, 1)
    finally:
        subprocess.run(["scancel", "--name", "chain"], check=False, capture_output=True)


def test_a_changed_bastion_host_key_is_refused_loudly(site: HPC, tmp_path: Path) -> None:
    forged = tmp_path / "forged_known_hosts"
    other = Path(KEY + ".pub").read_text().split()[:2]  # some other ed25519 key
    lines = Path(KNOWN_HOSTS).read_text().splitlines()
    forged.write_text("\n".join(
        f"[{JUMP_HOST}]:{JUMP_PORT} {' '.join(other)}" if ln.startswith(f"[{JUMP_HOST}]:")
        else ln for ln in lines) + "\n")
    (Path(site.env["HOME"]) / ".ssh" / "config").write_text(ssh_config(str(forged)))
    before = logins_accepted()
    out = site("submit", MODEL, "--preset", "single-gpu", ok=False)
    line = one_error_line(out.stderr)
    assert f"host key of jump host {JUMP_HOST}:{JUMP_PORT} does NOT match {forged}" in line
    assert "someone is in the middle" in line
    assert logins_accepted() == before
    assert not site.registry_path.exists() or site.registry() == {}  # nothing recorded


def test_strict_host_key_checking_no_in_the_config_does_not_weaken_the_check(
        site: HPC, tmp_path: Path) -> None:
    only_bastion = tmp_path / "only_bastion_known_hosts"
    only_bastion.write_text("".join(
        ln + "\n" for ln in Path(KNOWN_HOSTS).read_text().splitlines()
        if ln.startswith(f"[{JUMP_HOST}]:")))
    (Path(site.env["HOME"]) / ".ssh" / "config").write_text(ssh_config(str(only_bastion)))
    out = site("submit", MODEL, "--preset", "single-gpu", ok=False)
    line = one_error_line(out.stderr)
    assert re.search(rf"login node {LOGIN_HOST}:{LOGIN_PORT} has an unknown host key "
                     r"\(ssh-ed25519 SHA256:", line), line
    assert only_bastion.read_text().count("\n") == 1  # nothing was added
