"""``cluster add`` writes clusters.yaml: validated first, never silently replacing anything."""

from __future__ import annotations

import pytest
import yaml

from hpclaunch.config import clusters_file, get_cluster, load_clusters, save_cluster
from hpclaunch.errors import UserError


def test_the_first_cluster_becomes_the_default_and_reads_back() -> None:
    path = save_cluster("polaris", {"scheduler": "pbs", "host": "polaris",
                                    "transport": "openssh", "control-persist": "2h"})
    assert path == clusters_file()
    profile = get_cluster(None)
    assert (profile.name, profile.scheduler, profile.transport, profile.control_persist) == \
        ("polaris", "pbs", "openssh", "2h")
    assert profile.port is None  # left to ~/.ssh/config


def test_a_second_cluster_keeps_the_default_unless_asked_and_a_backup_is_kept() -> None:
    save_cluster("a", {"scheduler": "slurm"})
    save_cluster("b", {"scheduler": "slurm"})
    assert load_clusters()[1] == "a"
    assert "b" not in yaml.safe_load(clusters_file().with_name("clusters.yaml.bak")
                                     .read_text())["clusters"]
    save_cluster("c", {"scheduler": "slurm"}, make_default=True)
    assert load_clusters()[1] == "c"


def test_an_existing_name_needs_force() -> None:
    save_cluster("a", {"scheduler": "slurm", "partition": "debug"})
    with pytest.raises(UserError, match="already in .*add --force"):
        save_cluster("a", {"scheduler": "pbs"})
    save_cluster("a", {"scheduler": "pbs"}, replace=True)
    assert get_cluster("a").scheduler == "pbs"


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("x", {"scheduler": "lsf"}, "scheduler: expected one of local, slurm, pbs"),
    ("x", {"transport": "ssh"}, "transport: expected one of paramiko, openssh"),
    ("x", {"hots": "h"}, "hots: unknown key"),
    ("../x", {}, "use letters, digits"),
])
def test_bad_settings_write_nothing(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        save_cluster(name, settings)
    assert not clusters_file().exists()
