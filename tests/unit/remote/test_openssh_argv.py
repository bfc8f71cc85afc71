"""``transport: openssh``: the ssh command lines, and where the master socket lives."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.remote.openssh import OpenSSHTarget, socket_dir


@pytest.fixture(autouse=True)
def _short_state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A state dir short enough for a socket path, so no /tmp link is made."""
    with tempfile.TemporaryDirectory(prefix="hl", dir="/tmp") as short:
        monkeypatch.setenv("HPCLAUNCH_HOME", short)
        yield


def target(**changes: object) -> OpenSSHTarget:
    fields: dict = {"name": "polaris", "host": "polaris", "transport": "openssh"}
    fields.update(changes)
    return OpenSSHTarget.from_profile(ClusterProfile(**fields))


def test_calls_after_login_can_neither_prompt_nor_connect_by_themselves() -> None:
    argv = target().client_argv()
    assert argv[0] == "ssh" and argv[-2:] == ["--", "polaris"]
    for option in ("ControlMaster=no", "BatchMode=yes", "ProxyCommand=false",
                   "StrictHostKeyChecking=yes"):
        assert argv[argv.index(option) - 1] == "-o"
    assert argv[argv.index("-S") + 1] == str(target().control_path)


def test_profile_settings_become_options_and_the_host_stays_a_destination(
        tmp_path: Path) -> None:
    key, known = tmp_path / "key", tmp_path / "known"
    key.write_text("k")
    known.write_text("")
    t = target(host="-oProxyCommand=touch pwned", port=2200, user="alice", ssh_key=str(key),
               known_hosts=str(known))
    argv = t.client_argv()
    assert argv[-2:] == ["--", "-oProxyCommand=touch pwned"]
    joined = " ".join(argv)
    assert "-p 2200" in joined and "-l alice" in joined
    assert f"-i {key} -o IdentitiesOnly=yes" in joined and f"UserKnownHostsFile={known}" in joined


def test_missing_files_and_bad_persist_times_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="ssh_key .* does not exist"):
        target(ssh_key=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="control_persist '8 hours'"):
        target(control_persist="8 hours")
    assert target(control_persist="1h30m").persist == "1h30m"


def test_the_socket_directory_is_private_and_in_the_state_dir() -> None:
    directory = socket_dir()
    assert directory == Path(os.environ["HPCLAUNCH_HOME"]) / "ssh"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert target().control_path.parent == directory
    assert target().control_path != target(name="other").control_path


def test_a_state_dir_too_long_for_a_socket_is_reached_through_a_checked_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("d" * 60)
    monkeypatch.setenv("HPCLAUNCH_HOME", str(deep))
    link = socket_dir()
    try:
        assert str(link).startswith("/tmp/hpclaunch-ssh-") and link.is_symlink()
        assert os.readlink(link) == str((deep / "ssh").resolve())
        assert socket_dir() == link  # found again, and trusted: it is ours
        link.unlink()
        link.symlink_to(tmp_path)  # pointing elsewhere: refused
        with pytest.raises(UserError, match="is not hpclaunch's link"):
            socket_dir()
    finally:
        link.unlink(missing_ok=True)
