"""Fleet options given wrongly: one line naming the option and the fix, nothing queued."""

from __future__ import annotations

import pytest

from tests.conftest import HPC, one_line_error

BASE = ("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--simulate")


@pytest.mark.parametrize(("args", "words"), [
    (("--name", "f", "--replicas", "0"), "--replicas 0"),
    (("--replicas", "2"), "--replicas needs --name"),
    (("--name", "f", "--replicas-restart"), "--replicas-restart needs --replicas"),
    (("--name", "f", "--idle-stop", "soon"), "--idle-stop 'soon'"),
    (("--name", "f", "--relay"), "--relay hands over before a Slurm time limit"),
])
def test_bad_fleet_options_are_refused_before_anything_is_queued(hpc: HPC, args, words):
    line = one_line_error(hpc(*BASE, *args, ok=False))
    assert words in line
    assert not hpc.registry_path.exists() or hpc.registry() == {}


def test_scale_needs_a_fleet(hpc: HPC):
    assert "no endpoint named 'nope'" in one_line_error(hpc("scale", "nope", "2", ok=False))


def test_a_fleet_dry_run_prints_the_router_and_a_replica_script_and_queues_nothing(hpc: HPC):
    out = hpc(*BASE, "--name", "f", "--replicas", "2", "--idle-stop", "10m", "--dry-run").stdout
    router, replica = out.split("# ---- replica 1 of 2")
    assert "vllm_router.launch_router" in router and "HPCLAUNCH_ROUTER_KEY_FILE" in router
    assert "--served-model-name f " in replica and "HPC_IDLE_STOP_S=600" in replica
    assert "HPCLAUNCH_AGENT_EOF" in replica
    assert not hpc.registry_path.exists() or hpc.registry() == {}
