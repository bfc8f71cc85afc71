"""``transport: openssh``: the system ssh through one ``hpclaunch login`` master, via the bastion.

The same bastion and login node as test_jump.py and the same ``~/.ssh/config`` alias;
clusters.yaml adds ``transport: openssh``. The master is opened once with a key (what
an MFA user does with a code), and every later call must reuse it: the login node's
sshd log shows exactly one accepted login for a whole submit / wait / tunnel / chat /
logs / stop session.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv
from tests.integration.remote.test_jump import (
    JUMP_HOST,
    KNOWN_HOSTS,
    MODEL,
    chat_via,
    jump_profile,
    logins_accepted,
    site,  # noqa: F401 - the fixture this module builds on
    ssh_config,
)
from tests.integration.remote.test_ssh import read_line, write_clusters

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


@pytest.fixture
def osite(site: HPC, tmp_path: Path) -> Iterator[HPC]:  # noqa: F811 - pytest fixture chain
    """``site`` with transport: openssh; any master a test opened is closed afterwards."""
    write_clusters(site, site=jump_profile(tmp_path, transport="openssh",
                                           control_persist="10m"))
    try:
        yield site
    finally:
        site("logout", "site", ok=None)


def socket_files(hpc: HPC) -> list[Path]:
    directory = hpc.home / "ssh"
    return [p for p in directory.iterdir() if p.is_socket()] if directory.is_dir() else []


def test_without_a_login_commands_say_so_at_once(osite: HPC, tmp_path: Path) -> None:
    before = logins_accepted()
    started = time.monotonic()
    out = osite("submit", MODEL, "--preset", "single-gpu", "--name", "early", ok=False)
    lines = out.stderr.strip().splitlines()
    assert lines == ["hpclaunch: no SSH connection to cluster site is open (or it expired); "
                     "run hpclaunch login site"], out.stderr
    assert time.monotonic() - started < 10
    assert logins_accepted() == before  # BatchMode + ProxyCommand=false: no connection
    assert not osite.registry_path.exists() or osite.registry() == {}  # nothing recorded
    assert not (tmp_path / "results").exists()


def test_one_login_serves_a_whole_session(osite: HPC) -> None:
    before = logins_accepted()
    assert "logged in to site" in osite("login", "site").stdout
    assert "already logged in" in osite("login", "site").stdout
    [sock] = socket_files(osite)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    osite("submit", MODEL, "--preset", "single-gpu", "--name", "mfa", "--simulate")
    rec = osite.registry()["mfa"]
    try:
        assert "READY" in osite("wait", "mfa", "--timeout", "90").stdout
        assert "Application startup complete." in osite("logs", "mfa", "-n", "50").stdout
        proc = subprocess.Popen([*hpclaunch_argv(), "tunnel", "mfa"], env=osite.env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            url = read_line(proc, 30)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert "over the master" in chat_via(url, rec["api_key"], "mfa", "over the master")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        assert "(openssh)" in proc.stderr.read()
        with socket.socket() as probe, pytest.raises(OSError):  # the -L was cancelled
            probe.settimeout(2)
            probe.connect(("127.0.0.1", port))
        assert "ENDED" in osite("stop", "mfa").stdout
    finally:
        subprocess.run(["scancel", rec["job_id"]], check=False, capture_output=True)
    assert logins_accepted() - before == 1  # the login; everything else rode on it

    assert "logged out of site" in osite("logout", "site").stdout
    assert socket_files(osite) == []
    out = osite("status", "mfa", ok=None)
    assert "run hpclaunch login site" in out.stderr or "ENDED" in out.stdout


def test_a_changed_bastion_key_stops_the_login(osite: HPC, tmp_path: Path) -> None:
    forged = tmp_path / "forged_known_hosts"
    other = Path(KNOWN_HOSTS.replace("known_hosts", "id_ed25519.pub")).read_text().split()[:2]
    forged.write_text("".join(
        (f"[{JUMP_HOST}]:{ln.split(']:')[1].split()[0]} {' '.join(other)}"
         if ln.startswith(f"[{JUMP_HOST}]:") else ln) + "\n"
        for ln in Path(KNOWN_HOSTS).read_text().splitlines()))
    (Path(osite.env["HOME"]) / ".ssh" / "config").write_text(ssh_config(str(forged)))
    out = osite("login", "site", ok=False)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "hpclaunch: login to cluster site (hpclogin) failed: ssh exited 255")
    assert socket_files(osite) == []


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = f"{self.path} {self.headers.get('Authorization')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        time.sleep(0.2)  # the body in a later packet
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_files_commands_and_probes_over_the_master(osite: HPC, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    osite("login", "site")
    monkeypatch.setenv("HOME", osite.env["HOME"])
    from hpclaunch.config import get_cluster
    from hpclaunch.remote.connect import transport_for

    t = transport_for(get_cluster("site"))
    assert type(t).__name__ == "OpenSSHTransport"
    hostile = ["a b", "$HOME", "`id`", "it's; touch " + str(tmp_path / "pwned"), "*", "-n"]
    assert t.run(["printf", "%s|", *hostile]).stdout == "|".join(hostile) + "|"
    assert not (tmp_path / "pwned").exists()
    assert t.run(["cat"], input="to stdin").stdout == "to stdin"

    target = tmp_path / "d e" / "api.key"
    t.makedirs(str(target.parent))
    target.parent.joinpath("api.key").write_text("old")
    target.chmod(0o644)
    t.write_file(str(target), b"secret", 0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"secret"
    t.write_file(str(tmp_path / "job.sh"), b"#!/bin/bash\n", 0o700)
    assert stat.S_IMODE((tmp_path / "job.sh").stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["api.key"]
    assert t.read_text(str(target)) == "secret" and t.stat(str(target)).size == 6
    assert t.read_text(str(tmp_path / "missing")) is None and t.stat("/nonexistent") is None
    t.remove(str(target))
    t.remove(str(target))
    assert t.expanduser("~/x/../r") == f"{t.run(['sh', '-c', 'printf %s $HOME']).stdout}/r"

    big = tmp_path / "big.log"
    data = os.urandom(3 * 1024 * 1024)
    big.write_bytes(data)
    assert t.read_range(str(big), len(data) - 4096, 4096) == data[-4096:]
    assert t.read_range(str(big), 1_000_000, 300_000) == data[1_000_000:1_300_000]
    assert t.read_range(str(big), len(data) + 5, 10) == b""
    assert t.read_range(str(tmp_path / "missing"), 0, 10) == b""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert t.http_get("127.0.0.1", server.server_address[1], "/health",
                          headers={"Authorization": "Bearer k"}, timeout=10) == \
            (200, b"/health Bearer k")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    assert t.http_get("127.0.0.1", closed, "/health") == (0, b"")
