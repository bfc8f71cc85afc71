"""hpclaunch driving a login node over SSH: the real loopback sshd from scripts/services.sh.

The cluster profile names ``host: 127.0.0.1, port: 2222``; every scheduler command, job-file
read and /health probe then goes over one paramiko connection to that sshd, which runs the
local scheduler and the vLLM stand-in on this machine. Nothing on the path is mocked: what
these tests see is what a user on a laptop sees.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv, job_file, require

pytestmark = pytest.mark.ssh

# Read at import time: the autouse fixture in conftest clears HPCLAUNCH_* variables.
SSH_HOST = os.environ.get("HPCLAUNCH_TEST_SSH_HOST", "127.0.0.1")
SSH_PORT = int(os.environ.get("HPCLAUNCH_TEST_SSH_PORT", "2222"))
SSH_USER = os.environ.get("HPCLAUNCH_TEST_SSH_USER", "root")
SSH_KEY = os.environ.get("HPCLAUNCH_TEST_SSH_KEY", "/etc/ssh/hpclaunch-test/id_ed25519")
SSH_KNOWN_HOSTS = os.environ.get("HPCLAUNCH_TEST_SSH_KNOWN_HOSTS",
                                 "/etc/ssh/hpclaunch-test/known_hosts")
MODEL = "Qwen3-0.6B"
START = "bash scripts/services.sh start sshd"


def sshd_up() -> bool:
    if not (os.access(SSH_KEY, os.R_OK) and os.path.isfile(SSH_KNOWN_HOSTS)):
        return False
    try:
        with socket.create_connection((SSH_HOST, SSH_PORT), timeout=2) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def profile(tmp_path: Path, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "host": SSH_HOST, "port": SSH_PORT, "user": SSH_USER, "ssh_key": SSH_KEY,
        "known_hosts": SSH_KNOWN_HOSTS, "scheduler": "local", "simulate": True,
        "python": sys.executable, "results_dir": str(tmp_path / "results"),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def write_clusters(hpc: HPC, **profiles: dict[str, object]) -> None:
    import yaml

    hpc.config_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(profiles))
    (hpc.config_dir / "clusters.yaml").write_text(
        yaml.safe_dump({"default": first, "clusters": profiles}))


@pytest.fixture
def login(hpc: HPC, tmp_path: Path) -> Iterator[HPC]:
    """The CLI with a default cluster ``login`` reached over the loopback sshd."""
    require(sshd_up(), f"the loopback sshd on {SSH_HOST}:{SSH_PORT}", START)
    write_clusters(hpc, login=profile(tmp_path))
    yield hpc
    # The jobs ran on this machine: leave none behind, even one a failed test said was
    # stopped (hpc.cleanup skips ENDED entries).
    if hpc.registry_path.exists():
        for rec in hpc.registry().values():
            if rec.get("scheduler") == "local" and str(rec.get("job_id", "")).isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(rec["job_id"]), signal.SIGKILL)


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[object]:
    """An SSHTransport to the loopback sshd, for the file and HTTP primitives."""
    require(sshd_up(), f"the loopback sshd on {SSH_HOST}:{SSH_PORT}", START)
    from types import SimpleNamespace

    from hpclaunch.remote import ssh

    t = ssh.SSHTransport.from_profile(SimpleNamespace(**profile(tmp_path)))
    yield t
    t.close()
    ssh.close_all()


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert lines[0].startswith("hpclaunch: ") and "Traceback" not in stderr
    return lines[0]


# -- the spine over SSH --------------------------------------------------------------------


def test_submit_wait_chat_endpoints_stop_over_ssh(login: HPC, tmp_path: Path) -> None:
    out = login("submit", MODEL, "--preset", "single-gpu", "--name", "remote")
    assert "submitted remote" in out.stdout and "on login" in out.stdout
    rec = login.registry()["remote"]
    assert rec["cluster"] == "login" and rec["job_id"].isdigit()
    results = tmp_path / "results"
    assert rec["results_dir"] == str(results)
    # Written over SFTP with their modes from the first byte: key 0600, script 0700.
    assert stat.S_IMODE(job_file(rec, "key").stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(rec["script_path"]).stat().st_mode) == 0o700
    assert job_file(rec, "key").read_text() == rec["api_key"]
    # write_file's temporaries (name.tmp<12 hex>) were all renamed into place.
    assert not [p.name for p in results.iterdir() if re.search(r"\.tmp[0-9a-f]{12}$", p.name)]

    assert "READY" in login("wait", "remote", "--timeout", "60").stdout
    reply = login("chat", "remote", "hello over ssh").stdout
    assert reply.strip()
    listing = login("endpoints", "--json").json()
    assert [(e["name"], e["state"]) for e in listing] == [("remote", "READY")]
    assert "READY" in login("status", "remote").stdout
    assert "Application startup complete." in login("logs", "remote", "-n", "100").stdout

    assert "ENDED" in login("stop", "remote").stdout
    pid = int(rec["job_id"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"job {pid} still alive after stop over ssh")
    assert login("endpoints", "--json").json() == []


def test_one_ssh_connection_per_cli_call(login: HPC) -> None:
    """Every command and file read of one CLI call shares one connection."""
    from hpclaunch.cli import main
    from hpclaunch.remote import ssh

    def connections(*argv: str) -> int:
        before = ssh.connections_opened()
        main(list(argv))
        ssh.close_all()  # what the end of a process does
        return ssh.connections_opened() - before

    # submit: expanduser, mkdir, 2 removes, 2 writes, the launch command; --wait then polls.
    assert connections("submit", MODEL, "--preset", "single-gpu", "--name", "once",
                       "--wait", "--timeout", "60") == 1
    assert connections("endpoints") == 1
    assert connections("status", "once") == 1
    assert connections("logs", "once", "-n", "5") == 1
    assert connections("stop", "once") == 1
    assert connections("endpoints", "--all") == 0  # nothing live: no need to connect
    assert connections("submit", MODEL, "--preset", "single-gpu", "--dry-run") == 0


def slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          check=False, timeout=10)
    return proc.returncode == 0 and any(
        s.strip("*~#") in ("idle", "mixed", "allocated") for s in proc.stdout.split())


@pytest.mark.slurm
def test_slurm_through_the_login_node(login: HPC, tmp_path: Path) -> None:
    """sbatch, squeue/sacct and scancel run on the login node, quoted argv over SSH."""
    require(slurm_up(), "the single-node Slurm", "bash scripts/services.sh start slurm")
    partition = os.environ.get("HPCLAUNCH_TEST_SLURM_PARTITION", "debug")
    write_clusters(login, login=profile(tmp_path, scheduler="slurm", partition=partition,
                                        gpus_per_node=4))
    login("submit", MODEL, "--preset", "single-gpu", "--name", "viaslurm")
    rec = login.registry()["viaslurm"]
    assert rec["scheduler"] == "slurm"
    try:
        assert "READY" in login("wait", "viaslurm", "--timeout", "90").stdout
        assert login("chat", "viaslurm", "hi").stdout.strip()
        assert "ENDED" in login("stop", "viaslurm").stdout
    finally:
        subprocess.run(["scancel", rec["job_id"]], check=False, capture_output=True)


# -- failures are one line, and record nothing ------------------------------------------------


def test_unknown_host_key_is_refused_with_the_fix(login: HPC, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    write_clusters(login, login=profile(tmp_path, known_hosts=str(empty)))
    out = login("submit", MODEL, "--preset", "single-gpu", "--name", "nokey", ok=False)
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert f"login node {SSH_HOST}:{SSH_PORT} has an unknown host key" in line
    assert "SHA256:" in line and "verify that fingerprint" in line
    assert f"ssh-keyscan -p {SSH_PORT} {SSH_HOST} >> {empty}" in line
    assert empty.read_text() == ""  # never auto-added
    assert not login.registry_path.exists() or login.registry() == {}  # nothing recorded
    assert not (tmp_path / "results").exists()


def test_default_known_hosts_is_the_users_own(login: HPC, tmp_path: Path) -> None:
    require(not os.path.exists("/etc/ssh/ssh_known_hosts"),
            "a machine without a system-wide /etc/ssh/ssh_known_hosts",
            "move /etc/ssh/ssh_known_hosts aside (it may list the test sshd)")
    write_clusters(login, login=profile(tmp_path, known_hosts=None))
    login.env["HOME"] = str(tmp_path / "fresh-home")  # no ~/.ssh/known_hosts at all
    out = login("submit", MODEL, "--preset", "single-gpu", ok=False)
    line = one_error_line(out.stderr)
    assert "unknown host key" in line and ">> ~/.ssh/known_hosts" in line


def test_unreachable_login_node_is_one_line_and_records_nothing(login: HPC,
                                                                  tmp_path: Path) -> None:
    write_clusters(login, login=profile(tmp_path, port=1))
    started = time.monotonic()
    out = login("submit", MODEL, "--preset", "single-gpu", "--name", "nowhere", ok=False)
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert f"cannot reach login node {SSH_HOST}:1 (" in line
    assert "check host/port in clusters.yaml" in line
    assert time.monotonic() - started < 15
    assert not login.registry_path.exists() or login.registry() == {}  # nothing recorded
    assert not (tmp_path / "results").exists()


def test_refused_key_says_so(login: HPC, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True, stdin=subprocess.DEVNULL)
    write_clusters(login, login=profile(tmp_path, ssh_key=str(stranger)))
    login.env.pop("SSH_AUTH_SOCK", None)
    out = login("submit", MODEL, "--preset", "single-gpu", ok=False)
    line = one_error_line(out.stderr)
    assert f"login to {SSH_USER}@{SSH_HOST}:{SSH_PORT} refused (key {stranger})" in line
    assert "check user and ssh_key in clusters.yaml" in line
    assert not login.registry_path.exists() or login.registry() == {}  # nothing recorded


# -- the transport's primitives --------------------------------------------------------------


def test_run_passes_argv_through_the_remote_shell_unchanged(transport, tmp_path: Path) -> None:
    hostile = ["a b", "$HOME", "`id`", "it's; touch " + str(tmp_path / "pwned"), "*", "\n"]
    result = transport.run(["printf", "%s|", *hostile])
    assert result.returncode == 0 and result.stdout == "|".join(hostile) + "|"
    assert not (tmp_path / "pwned").exists()
    failed = transport.run(["bash", "-c", "echo out; echo err >&2; exit 3"])
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "out\n", "err\n")
    assert transport.run(["cat"], input="to stdin").stdout == "to stdin"


def test_write_file_is_private_and_replaces_atomically(transport, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "api.key"
    transport.makedirs(str(target.parent))
    transport.makedirs(str(target.parent))  # -p: existing directories are fine
    transport.write_file(str(target), b"first", 0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"first"

    # Replacing a world-readable file leaves a 0600 one, never a readable one with the key.
    target.write_text("old")
    target.chmod(0o644)
    transport.write_file(str(target), b"second", 0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"second"

    script = tmp_path / "job.sh"
    transport.write_file(str(script), b"#!/bin/bash\n", 0o700)
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["api.key"]  # no temp left

    assert transport.read_text(str(target)) == "second"
    assert transport.read_text(str(tmp_path / "missing")) is None
    assert transport.stat(str(target)).size == 6
    transport.remove(str(target))
    transport.remove(str(target))  # already gone: fine
    assert transport.stat(str(target)) is None
    home = transport.run(["sh", "-c", 'printf %s "$HOME"']).stdout
    assert transport.expanduser("~") == home
    assert transport.expanduser("~/x/../results") == f"{home}/results"


def test_read_range_of_a_large_remote_file_is_bounded(transport, tmp_path: Path) -> None:
    big = tmp_path / "vllm_big_realtime.log"
    data = os.urandom(6 * 1024 * 1024)
    big.write_bytes(data)
    size = len(data)

    tail = transport.read_range(str(big), size - 4096, 4096)
    assert tail == data[-4096:]
    window = transport.read_range(str(big), 1_000_000, 300_000)  # several SFTP requests
    assert len(window) == 300_000 and window == data[1_000_000:1_300_000]
    assert transport.read_range(str(big), size - 10, 4096) == data[-10:]
    assert transport.read_range(str(big), size + 10, 4096) == b""
    assert transport.read_range(str(tmp_path / "missing"), 0, 10) == b""

    # The status reader takes a head and a tail of a log of any size over SSH.
    from hpclaunch.endpoints.status import read_log

    report = read_log(transport, str(big))
    assert report is not None


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        peer_port = self.client_address[1]
        owner = subprocess.run(["ss", "-Htnp", "state", "established",
                                f"( sport = :{peer_port} )"],
                               capture_output=True, text=True, check=False).stdout
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization", ""),
                          "owner": owner})
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The body in a later packet than the headers, as busy servers send it: the
        # channel must stay open until it has been read.
        self.wfile.flush()
        time.sleep(0.3)
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_http_get_goes_through_the_login_node(transport) -> None:
    require(shutil.which("ss") is not None, "ss (to see which process connected)",
            "apt-get install iproute2")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    _Recorder.seen = []
    try:
        status, body = transport.http_get("127.0.0.1", port, "/health?x=1",
                                          headers={"Authorization": "Bearer k"}, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert (status, body) == (200, b'{"ok": true}'), _Recorder.seen
    [seen] = _Recorder.seen
    assert seen["path"] == "/health?x=1" and seen["auth"] == "Bearer k"
    # The TCP connection to the server was made by sshd, not by this process.
    assert "sshd" in seen["owner"] and f"pid={os.getpid()}," not in seen["owner"]

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    assert transport.http_get("127.0.0.1", closed_port, "/health") == (0, b"")


# -- tunnels ---------------------------------------------------------------------------------


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise AssertionError(f"no output within {timeout} s; stderr: {proc.stderr.read()}")
    return proc.stdout.readline().strip()


def chat_via(url: str, key: str, text: str) -> str:
    body = json.dumps({"model": "tun", "messages": [{"role": "user", "content": text}],
                       "max_tokens": 16}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["choices"][0]["message"]["content"]


def test_tunnel_forwards_until_interrupted(login: HPC, tmp_path: Path) -> None:
    from hpclaunch.remote.tunnel import state_file, tunnel_url

    record = tmp_path / "requests.jsonl"
    login("submit", MODEL, "--preset", "single-gpu", "--name", "tun",
          "--env", f"HPCLAUNCH_STANDIN_RECORD={record}")
    login("wait", "tun", "--timeout", "60")
    rec = login.registry()["tun"]
    assert tunnel_url("tun") is None

    proc = subprocess.Popen([*hpclaunch_argv(), "tunnel", "tun"], env=login.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = read_line(proc, 30)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        local_port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert local_port != rec["port"]  # the server holds that port on this machine
        state = json.loads(state_file("tun").read_text())
        assert state == {"pid": proc.pid, "local_port": local_port, "url": url,
                         "remote": f"{rec['host']}:{rec['port']}"}
        assert tunnel_url("tun") == url

        assert "through the tunnel" in chat_via(url, rec["api_key"], "through the tunnel")
        assert "again" in chat_via(url, rec["api_key"], "again")  # a second connection
        sent = [json.loads(line) for line in record.read_text().splitlines()]
        assert [s["path"] for s in sent if s.get("method") == "POST"] == \
            ["/v1/chat/completions"] * 2

        second = login("tunnel", "tun", ok=False)
        assert f"already running at {url}" in one_error_line(second.stderr)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, proc.stderr.read()
    assert not state_file("tun").exists() and tunnel_url("tun") is None
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", local_port))


def test_stale_tunnel_state_is_ignored(tmp_path: Path) -> None:
    from hpclaunch.remote.tunnel import state_file, tunnel_url

    dead = subprocess.Popen(["true"])
    dead.wait()
    path = state_file("gone")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": dead.pid, "local_port": 1, "url": "http://x/v1"}))
    assert tunnel_url("gone") is None
    path.write_text("{not json")
    assert tunnel_url("gone") is None
    path.write_text(json.dumps({"pid": os.getpid(), "local_port": 1, "url": "http://x/v1"}))
    assert tunnel_url("gone") == "http://x/v1"


def test_tunnel_needs_an_endpoint_with_a_node(login: HPC) -> None:
    out = login("tunnel", "nosuch", ok=False)
    assert "nosuch" in one_error_line(out.stderr)
