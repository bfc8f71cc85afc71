"""An MFA login node: key, then a one-time code at a keyboard-interactive prompt (PAM).

``services.sh start jump`` also runs it on 127.0.0.2:2225 behind the bastion. The code is
typed once, into ``hpclaunch login`` on a pseudo-terminal, as a user would; every later
call rides on that master and must never prompt. The built-in SSH must refuse the site
with the fix, and never print a prompt of its own.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv, require
from tests.integration.remote.test_jump import (
    KEY,
    KNOWN_HOSTS,
    LOGIN_HOST,
    LOGIN_USER,
    MODEL,
    START,
    jump_profile,
    jump_up,
    site,  # noqa: F401 - the fixture this module builds on
)
from tests.integration.remote.test_ssh import one_error_line, write_clusters

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]

MFA_PORT = int(os.environ.get("HPCLAUNCH_TEST_MFA_PORT", "2225"))
CODE_FILE = os.environ.get("HPCLAUNCH_TEST_MFA_CODE_FILE", "/etc/ssh/hpclaunch-jump/mfa_code")
MFA_LOG = os.environ.get("HPCLAUNCH_TEST_MFA_LOG", "/etc/ssh/hpclaunch-jump/mfa.log")


def codes_accepted() -> int:
    with open(MFA_LOG, errors="replace") as fh:
        return sum("Accepted keyboard-interactive/pam" in line for line in fh)


@pytest.fixture
def mfa(site: HPC, tmp_path: Path) -> Iterator[HPC]:  # noqa: F811 - pytest fixture chain
    require(jump_up() and os.access(CODE_FILE, os.R_OK) and os.path.isfile(MFA_LOG),
            "the MFA login node", START)
    config = Path(site.env["HOME"]) / ".ssh" / "config"
    config.write_text(config.read_text() + f"""
Host hpcmfa
    HostName {LOGIN_HOST}
    Port {MFA_PORT}
    User {LOGIN_USER}
    IdentityFile {KEY}
    IdentitiesOnly yes
    ProxyJump hpcbastion
    UserKnownHostsFile {KNOWN_HOSTS}
""")
    write_clusters(site, mfa=jump_profile(tmp_path, host="hpcmfa", transport="openssh",
                                          control_persist="10m"))
    try:
        yield site
    finally:
        site("logout", "mfa", ok=None)


def login_on_a_terminal(hpc: HPC, answer: str | None, timeout: float = 30) -> tuple[int, str]:
    """``hpclaunch login mfa`` on a pseudo-terminal; type ``answer`` at the prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session whose controlling terminal is the pty
        os.execve(hpclaunch_argv()[0], [*hpclaunch_argv(), "login", "mfa"], hpc.env)
    seen, answered = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            # ssh asks again after a wrong answer (NumberOfPasswordPrompts): answer each.
            if answer is not None and seen.count(b"Password:") > answered:
                os.write(fd, answer.encode() + b"\n")
                answered += 1
        else:
            os.kill(pid, 9)
            raise AssertionError(f"login still running after {timeout} s: {seen!r}")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_the_code_is_typed_once_and_a_session_needs_no_other(mfa: HPC) -> None:
    code = Path(CODE_FILE).read_text().strip()
    before = codes_accepted()
    status, screen = login_on_a_terminal(mfa, code)
    assert status == 0, screen
    assert "Password:" in screen and "logged in to mfa" in screen
    assert code not in screen  # the terminal did not echo it

    # No terminal from here on: a prompt would fail these calls, not wait for an answer.
    mfa("submit", MODEL, "--preset", "single-gpu", "--name", "coded", "--cluster", "mfa",
        "--simulate")
    rec = mfa.registry()["coded"]
    try:
        assert "READY" in mfa("wait", "coded", "--timeout", "90").stdout
        assert mfa("chat", "coded", "hi").stdout.strip()
        assert "ENDED" in mfa("stop", "coded").stdout
    finally:
        subprocess.run(["scancel", rec["job_id"]], check=False, capture_output=True)
    assert codes_accepted() - before == 1


def test_a_wrong_code_fails_the_login(mfa: HPC) -> None:
    status, screen = login_on_a_terminal(mfa, "000000")
    assert status == 1 and "hpclaunch: login to cluster mfa (hpcmfa) failed" in screen
    assert "run hpclaunch login mfa" in mfa("cluster", "check", "mfa", ok=False).stdout


def test_without_a_terminal_login_fails_fast_instead_of_waiting(mfa: HPC) -> None:
    started = time.monotonic()
    proc = subprocess.run([*hpclaunch_argv(), "login", "mfa"], env=mfa.env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                          start_new_session=True, check=False)
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert "hpclaunch: login to cluster mfa (hpcmfa) failed" in proc.stderr


def test_the_built_in_ssh_refuses_an_mfa_site_with_the_fix(mfa: HPC, tmp_path: Path) -> None:
    write_clusters(mfa, mfa=jump_profile(tmp_path, host="hpcmfa"))
    out = mfa("submit", MODEL, "--preset", "single-gpu", "--cluster", "mfa", ok=False,
              input="123456\n")
    line = one_error_line(out.stderr)
    assert "asks for a password or one-time code too (MFA)" in line
    assert "set transport: openssh" in line and "hpclaunch login" in line
    assert "Password" not in out.stdout  # paramiko's own console prompt is disabled
