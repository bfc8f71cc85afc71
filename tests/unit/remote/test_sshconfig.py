"""How a profile's ``host`` is resolved through ``~/.ssh/config`` (pure: no network)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from hpclaunch.errors import UserError
from hpclaunch.remote.sshconfig import resolve, target_for

CONFIG = """
Host polaris
    HostName login.polaris.example
    User alice
    Port 2200
    IdentityFile ~/.ssh/id_polaris
    ProxyJump bastion
    UserKnownHostsFile ~/.ssh/kh_site /etc/site_known_hosts
    StrictHostKeyChecking accept-new

Host bastion
    HostName gw.example
    User alice-gw
    ProxyJump outer

Host outer
    HostName outer.example
    Port 8022

Host chain
    HostName deep.example
    ProxyJump bob@hop1:2022,ssh://hop2

Host hop1
    HostName hop1.example
    User carol

Host loop
    ProxyJump loop

Host legacy
    ProxyCommand nc -x proxy %h %p

Host *
    User default-user
"""


def config(text: str = CONFIG) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(text)


def test_an_alias_takes_hostname_user_port_keys_and_known_hosts_from_the_config() -> None:
    t = resolve(config(), "polaris")
    assert (t.host, t.user, t.port) == ("login.polaris.example", "alice", 2200)
    assert t.config_keys[0].endswith("/.ssh/id_polaris") and t.ssh_key is None
    assert t.config_known_hosts[1] == "/etc/site_known_hosts"
    assert t.label == "login.polaris.example:2200"


def test_proxyjump_chains_resolve_each_hop_through_the_config_first_hop_first() -> None:
    t = resolve(config(), "polaris")
    # bastion has its own ProxyJump (outer): outer is visited first, as OpenSSH does.
    assert [(j.host, j.port, j.user) for j in t.jumps] == [
        ("outer.example", 8022, "default-user"), ("gw.example", 22, "alice-gw")]
    assert all(j.jumps == () for j in t.jumps)
    assert t.route == ("alice@login.polaris.example:2200 via alice-gw@gw.example:22 "
                       "via default-user@outer.example:8022")


def test_a_comma_list_of_hops_with_users_ports_and_ssh_urls() -> None:
    t = resolve(config(), "chain")
    assert [(j.host, j.port, j.user) for j in t.jumps] == [
        ("hop1.example", 2022, "bob"), ("hop2", 22, "default-user")]


def test_the_profile_wins_over_the_config() -> None:
    t = resolve(config(), "polaris", user="root", port=22, ssh_key="/k", known_hosts="/kh")
    assert (t.user, t.port, t.ssh_key, t.known_hosts) == ("root", 22, "/k", "/kh")
    assert t.jumps  # the jump hosts still come from the config


def test_the_same_node_through_other_jumps_is_another_pooled_connection() -> None:
    via = resolve(config(), "polaris")
    direct = resolve(config(), "login.polaris.example", user="alice", port=2200)
    assert via.direct().key == direct.key and via.key != direct.key


def test_without_a_config_the_host_is_used_as_given(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    t = target_for(SimpleNamespace(host="me@node.example", port=None, user=None,
                                   ssh_key=None, known_hosts=None))
    assert (t.user, t.host, t.port, t.jumps) == ("me", "node.example", 22, ())
    assert not t.from_ssh_config


def test_target_for_reads_the_users_own_config(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(CONFIG)
    monkeypatch.setenv("HOME", str(tmp_path))
    t = target_for(SimpleNamespace(host="polaris", port=None, user=None, ssh_key=None,
                                   known_hosts=None))
    assert t.host == "login.polaris.example" and t.from_ssh_config
    assert t.config_keys == (str(tmp_path / ".ssh" / "id_polaris"),)


@pytest.mark.parametrize(("alias", "message"), [
    ("loop", "more than 8 jump hosts (a loop?)"),
    ("legacy", "ProxyCommand, which hpclaunch's built-in SSH does not run"),
])
def test_configs_hpclaunch_cannot_follow_are_one_line_errors(alias: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("?", r"\?")):
        resolve(config(), alias)


def test_a_bad_port_names_the_host() -> None:
    with pytest.raises(UserError, match="Port 'x' for odd is not a port number"):
        resolve(config("Host odd\n  Port x\n"), "odd")
