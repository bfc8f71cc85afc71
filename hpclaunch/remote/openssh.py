"""The system ``ssh`` with one master connection per cluster (``transport: openssh``).

Sites with MFA ask for a one-time code on every new connection, so hpclaunch cannot
open one per call. OpenSSH's connection sharing solves it: ``hpclaunch login CLUSTER``
opens a master connection interactively (the password/MFA prompt happens there, on
the user's terminal), and every later call is a client of that master over a Unix
socket hpclaunch owns (``<state dir>/ssh/<hash>``, in a 0700 directory). The master
stays up for the profile's ``control_persist`` after its last use; ``hpclaunch logout``
closes it.

Calls after the login never open a connection of their own: they run with
``BatchMode=yes`` (no prompt can appear) and ``ProxyCommand=false``, which ssh
would run only if the master were gone. So a missing or expired
master is a one-line "run hpclaunch login CLUSTER", never a hang on a prompt and
never a second connection.

Everything else ssh knows (``~/.ssh/config`` aliases, ``ProxyJump``, agent, keys)
applies to the master as it would to ``ssh HOST``; ``StrictHostKeyChecking=yes`` is
always passed, so an unknown or changed host key is refused whatever the config says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import select
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpclaunch.config import state_dir
from hpclaunch.errors import UserError

# What ssh says when the connection had to go through our ProxyCommand (``false``),
# which happens only when there is no master to multiplex over.
NO_MASTER_SIGNS = ("UNKNOWN port 65535", "kex_exchange_identification", "banner exchange")
# Unix socket paths are limited to 108 bytes (104 on macOS), the terminating NUL included,
# and ssh -M first binds "<path>.<16 random characters>".
MAX_SOCKET_PATH = 103 - 17
CONNECT_TIMEOUT_S = 15


@dataclass(frozen=True)
class OpenSSHTarget:
    """A cluster's login node as the system ssh reaches it, and its master socket."""

    cluster: str
    destination: str
    options: tuple[str, ...]
    control_path: Path
    persist: str

    @classmethod
    def from_profile(cls, profile: Any) -> OpenSSHTarget:
        host = str(profile.host)
        options: list[str] = []
        if getattr(profile, "port", None):
            options += ["-p", str(int(profile.port))]
        if getattr(profile, "user", None) and "@" not in host:
            options += ["-l", str(profile.user)]
        if getattr(profile, "ssh_key", None):
            key = os.path.expanduser(str(profile.ssh_key))
            if not os.path.isfile(key):
                raise UserError(f"ssh_key {key} (from clusters.yaml) does not exist")
            options += ["-i", key, "-o", "IdentitiesOnly=yes"]
        if getattr(profile, "known_hosts", None):
            path = os.path.expanduser(str(profile.known_hosts))
            if not os.path.isfile(path):
                raise UserError(f"known_hosts file {path} (from clusters.yaml) does not exist")
            options += ["-o", f"UserKnownHostsFile={path}"]
        persist = str(getattr(profile, "control_persist", None) or "8h")
        if not re.fullmatch(r"yes|no|0|(\d+[smhdwSMHDW]?)+", persist):
            raise UserError(f"control_persist {persist!r}: give a time such as 8h, 30m or "
                            "3600 (seconds), or yes (until logout)")
        name = str(getattr(profile, "name", host))
        digest = hashlib.sha256(f"{name}\0{host}\0{options}".encode()).hexdigest()[:12]
        return cls(cluster=name, destination=host, options=tuple(options),
                   control_path=socket_dir() / digest,
                   persist=persist)

    @property
    def label(self) -> str:
        return f"{self.destination} (openssh)"

    def base_argv(self, *, shared: bool = True) -> list[str]:
        """``ssh`` with the user's config, the profile's options and (``shared``) our
        master socket."""
        socket = ["-S", str(self.control_path)] if shared else ["-o", "ControlPath=none"]
        return ["ssh", *_config_file_args(), *socket, "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", *self.options]

    def client_argv(self, *extra: str) -> list[str]:
        """A client of the master: never prompts, never connects by itself."""
        return [*self.base_argv(), "-T", "-o", "ControlMaster=no", "-o", "BatchMode=yes",
                "-o", "ProxyCommand=false", *extra, "--", self.destination]

    def no_master(self, stderr: str = "") -> UserError | None:
        """The error to raise when there is no master (no socket, or ssh says so)."""
        if not self.control_path.exists() or any(s in stderr for s in NO_MASTER_SIGNS):
            return UserError(f"no SSH connection to cluster {self.cluster} is open (or it "
                             f"expired); run hpclaunch login {self.cluster}")
        return None


def socket_dir() -> Path:
    """Where master sockets live: ``<state dir>/ssh``, which only the user may enter.

    When that path is too long for a socket, the directory is reached through a short
    symlink, ``/tmp/hpclaunch-ssh-<uid>-<hash>``, checked to be the user's own and to
    point there (``/tmp`` is sticky: no one else can replace it).
    """
    path = state_dir() / "ssh"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if len(str(path)) + 13 <= MAX_SOCKET_PATH:
        return path
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    link = Path(f"/tmp/hpclaunch-ssh-{os.getuid()}-{tag}")
    try:
        info = os.lstat(link)
    except FileNotFoundError:
        os.symlink(path.resolve(), link)
        info = os.lstat(link)
    if not (stat.S_ISLNK(info.st_mode) and info.st_uid == os.getuid()
            and os.readlink(link) == str(path.resolve())):
        raise UserError(f"{link} is not hpclaunch's link to {path}; remove it, or set "
                        "XDG_STATE_HOME (or HPCLAUNCH_HOME) to a shorter directory")
    return link


def _config_file_args() -> list[str]:
    """ssh reads ``~/.ssh/config`` of the passwd entry, not of ``$HOME``; when the two
    differ (tests, shared accounts) the ``$HOME`` one is what paramiko would read too."""
    home = os.path.expanduser("~")
    try:
        real = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        real = home
    if os.path.realpath(home) == os.path.realpath(real):
        return []
    config = os.path.join(home, ".ssh", "config")
    return ["-F", config if os.path.isfile(config) else "/dev/null"]


def master_running(target: OpenSSHTarget) -> bool:
    if not target.control_path.exists():
        return False
    proc = subprocess.run([*target.base_argv(), "-O", "check", "--", target.destination],
                          capture_output=True, text=True, timeout=CONNECT_TIMEOUT_S,
                          check=False)
    return proc.returncode == 0


def login(target: OpenSSHTarget) -> bool:
    """Open the master (prompts happen on the terminal); False if one was already open."""
    if master_running(target):
        return False
    # A socket left by a master that died: ssh -M would refuse to replace it and log in
    # without sharing.
    target.control_path.unlink(missing_ok=True)
    argv = [*target.base_argv(), "-o", "ControlMaster=yes",
            "-o", f"ControlPersist={target.persist}", "-f", "-N"]
    # The terminal stays ssh's for the prompts (they go to /dev/tty; MFA menus print
    # their text on stderr, which is relayed as it comes). ssh -f detaches from all
    # three once logged in, so a caller's pipes are not held.
    # The master outlives this terminal, and so must the `ssh -W` it runs for a ProxyJump,
    # which stays in this process group: ssh keeps an ignored SIGHUP ignored (as nohup).
    with _hangup_ignored():
        proc = subprocess.Popen([*argv, "--", target.destination], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    said = _relay(proc)
    if proc.wait() != 0:
        if any(sign in said for sign in NO_MASTER_SIGNS):
            _diagnose_jump(target)
        raise UserError(f"login to cluster {target.cluster} ({target.destination}) failed: "
                        f"ssh exited {proc.returncode} (its message is above; a host key "
                        "warning means: check the key with your admins before anything else)")
    return True


@contextlib.contextmanager
def _hangup_ignored() -> Iterator[None]:
    """SIGHUP ignored while a child is started (dispositions are inherited at fork)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def _relay(proc: subprocess.Popen[bytes]) -> str:
    """Copy ssh's stderr to ours as it comes, until it closes (or ssh has exited and
    gone quiet: a detached child might keep the pipe); return what it said."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    said = bytearray()
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        said += chunk
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
    proc.stderr.close()
    return said.decode(errors="replace")


def _diagnose_jump(target: OpenSSHTarget) -> None:
    """ssh hides what a ProxyJump hop says when ControlPersist is on; when the login
    failed before the login node spoke, try once more without sharing (BatchMode: no
    prompt) so the hop's message, a changed host key above all, reaches the user."""
    argv = [*target.base_argv(shared=False), "-o", "BatchMode=yes", "--",
            target.destination, "true"]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=2 * CONNECT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return
    if proc.returncode != 0 and proc.stderr.strip():
        sys.stderr.write(proc.stderr)
        sys.stderr.flush()


def logout(target: OpenSSHTarget) -> bool:
    """Close the master; False if none was open."""
    if not master_running(target):
        target.control_path.unlink(missing_ok=True)
        return False
    subprocess.run([*target.base_argv(), "-O", "exit", "--", target.destination],
                   capture_output=True, text=True, timeout=CONNECT_TIMEOUT_S, check=False)
    return True
