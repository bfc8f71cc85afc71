"""Multi-node jobs: layouts that name nodes, and the scripts that start one process per node.

Golden files cover vLLM's own launch, the Ray backend and native DP under Slurm, PBS Pro and
Torque; every one must be valid bash. The scripts run for real on the two-node Slurm in
tests/integration/schedulers/test_multinode_slurm.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.planning.multinode import check_layout, worker_flags
from hpclaunch.planning.plan import build
from hpclaunch.planning.presets import load_preset
from hpclaunch.schedulers.local import LocalScheduler
from hpclaunch.schedulers.pbs import PBSScheduler
from hpclaunch.schedulers.slurm import SlurmScheduler
from tests.conftest import assert_golden

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "multinode"
RESULTS = "/scratch/me/hpclaunch"


def profile(scheduler: str, dialect: str = "pbspro") -> ClusterProfile:
    return ClusterProfile(name="twonode", scheduler=scheduler, pbs_dialect=dialect,
                          gpus_per_node=4, results_dir=RESULTS, time_limit="02:00:00",
                          env={"NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"})


CASES = {
    # name: (scheduler, dialect, preset, overrides)
    "slurm_native_tp4pp2": ("slurm", "", "tp4pp2-2nodes", {}),
    "slurm_ray_tp4pp2": ("slurm", "", "tp4pp2-2nodes", {"distributed-executor-backend": "ray"}),
    "slurm_dp8": ("slurm", "", "dp8-2nodes", {}),
    "pbspro_ray_tp4pp2": ("pbs", "pbspro", "tp4pp2-2nodes",
                          {"distributed-executor-backend": "ray"}),
    "pbspro_dp8": ("pbs", "pbspro", "dp8-2nodes", {}),
    "torque_ray_tp4pp2": ("pbs", "torque", "tp4pp2-2nodes",
                          {"distributed-executor-backend": "ray"}),
    "torque_dp8": ("pbs", "torque", "dp8-2nodes", {}),
}


def render(case: str) -> str:
    scheduler, dialect, preset, overrides = CASES[case]
    cluster = profile(scheduler, dialect or "pbspro")
    plan = build(model="meta-llama/Llama-3.1-70B-Instruct", preset=load_preset(preset),
                 cluster=cluster, name="big", overrides=dict(overrides))
    cls = SlurmScheduler if scheduler == "slurm" else PBSScheduler
    return cls(cluster, None).render(plan, RESULTS)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(CASES))
def test_multinode_scripts_match_golden_and_are_valid_bash(case: str, update_golden: bool
                                                           ) -> None:
    script = render(case)
    assert_golden(GOLDEN / f"{case}.sh", script, update_golden)


def test_golden_files_are_valid_bash() -> None:
    for path in sorted(GOLDEN.glob("*.sh")):
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_native_launch_gives_every_node_a_rank_and_the_head_ip_never_loopback() -> None:
    script = render("slurm_native_tp4pp2")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gres=gpu:4" in script
    assert '--master-addr "$HEAD_IP"' in script and "--node-rank 0" in script
    assert re.search(r"--headless \\\n\s+--nnodes \"\$EXPECTED_NODES\" --node-rank \"\$R\"", script)
    assert "--distributed-executor-backend mp" in script
    assert 'srun --nodes=1 --ntasks=1 -w "$1" --overlap' in script
    assert "hostname -I" in script and "127.0.0.1 " not in script


def test_dp_across_nodes_splits_engines_and_keeps_api_flags_on_the_head() -> None:
    script = render("slurm_dp8")
    head = next(ln for ln in script.splitlines() if "HEAD_ARGS=(" in ln)
    assert "--data-parallel-size-local 4" in head and "--data-parallel-rpc-port" in head
    worker = script.split('start_node "${NODES[$R]}" "$R"', 1)[1].split("done", 1)[0]
    assert "--api-server-count" not in worker
    assert "--data-parallel-start-rank $((R * 4))" in worker and "--headless" in worker


def test_ray_backend_starts_ray_on_every_node_and_waits_with_a_timeout() -> None:
    script = render("slurm_ray_tp4pp2")
    assert "start --head --node-ip-address=\"$HEAD_IP\"" in script
    assert "--num-gpus=4" in script and "JOIN_TIMEOUT" in script
    assert "Ray sees" in script and "export RAY_ADDRESS=" in script
    assert "--distributed-executor-backend ray" in script


@pytest.mark.parametrize(("dialect", "launcher"), [("pbspro", "pbs_tmrsh"),
                                                    ("torque", "pbsdsh -h")])
def test_pbs_starts_nodes_through_the_mom(dialect: str, launcher: str) -> None:
    script = render(f"{dialect}_dp8")
    assert launcher in script and '"$PBS_NODEFILE"' in script


@pytest.mark.parametrize(("layout", "message"), [
    ((8, 1, 1, 3), "does not divide over 3 nodes"),
    ((6, 1, 1, 4), "does not divide over 4 nodes"),
    ((3, 2, 1, 2), "dp=3 does not divide"),
    ((1, 3, 1, 3), None),
    ((1, 1, 1, 2), "does not divide"),
])
def test_layouts_that_do_not_divide_over_the_nodes_are_refused(
        layout: tuple[int, int, int, int], message: str | None) -> None:
    dp, tp, pp, nodes = layout
    if message is None:
        launch = check_layout(dp, tp, pp, nodes, None)
        assert launch is not None and launch.gpus_per_node == 1
        return
    with pytest.raises(UserError, match=re.escape(message)):
        check_layout(dp, tp, pp, nodes, None)


def test_set_nodes_on_the_command_line_and_flags_the_job_owns_are_refused() -> None:
    cluster = profile("slurm")
    plan = build(model="Qwen3-0.6B", preset=load_preset("tp4-throughput"), cluster=cluster,
                 overrides={"nodes": 2, "pp": 2})
    assert plan.nodes == 2 and plan.gpus_per_node == 4 and plan.launch is not None
    with pytest.raises(UserError, match="--master-addr: the job sets it"):
        build(model="Qwen3-0.6B", preset=load_preset("tp4pp2-2nodes"), cluster=cluster,
              vllm_args="--master-addr 10.0.0.1")
    with pytest.raises(UserError, match="mp .* or ray"):
        build(model="Qwen3-0.6B", preset=load_preset("tp4pp2-2nodes"), cluster=cluster,
              overrides={"distributed-executor-backend": "uni"})


def test_local_scheduler_refuses_multi_node() -> None:
    cluster = ClusterProfile(name="local", scheduler="local", gpus_per_node=8)
    plan = build(model="Qwen3-0.6B", preset=load_preset("tp4pp2-2nodes"), cluster=cluster)
    with pytest.raises(UserError, match="runs on one machine"):
        LocalScheduler(cluster, None).render(plan, RESULTS)  # type: ignore[arg-type]


def test_worker_flags_drop_only_api_server_flags() -> None:
    argv = ["vllm", "serve", "m", "--api-server-count", "1", "--max-num-seqs", "8",
            "--api-server-count=2"]
    assert worker_flags(argv) == ["vllm", "serve", "m", "--max-num-seqs", "8"]


# -- planning: nodes x GPUs per node ------------------------------------------------------------

def test_suggest_spans_two_nodes_when_one_node_cannot_hold_the_weights() -> None:
    from hpclaunch.planning.suggest import suggest

    s = suggest("Llama-3.1-70B-Instruct", gpus_per_node=4, gpu="RTX4090")
    assert s.preset == "tp4pp2-2nodes"
    assert any("moving up to tp4pp2-2nodes" in r for r in s.reasons)


def test_suggest_moves_tensor_parallel_inside_smaller_nodes() -> None:
    from hpclaunch.planning.suggest import suggest

    s = suggest("Llama-3.1-70B-Instruct", gpus_per_node=2, gpu="A100-40GB")
    assert s.sets["tp"] == 2 and s.sets["pp"] == 2 and s.sets["nodes"] == 2


def test_planner_counts_gpus_per_node_and_pipeline_stages_across_nodes() -> None:
    from hpclaunch.planning import kv
    from hpclaunch.planning.capacity import capacity
    from hpclaunch.planning.catalog import model_info
    from hpclaunch.planning.settings import settings_from_flags

    info = model_info("meta-llama/Llama-3.1-70B-Instruct")
    assert info is not None
    one = capacity(info, model_id=info.model_id, preset="x", dp=1, tp=4, pp=1,
                   settings=settings_from_flags([], "0.33.0"), gpu=kv.gpu_named("A100-40GB"))
    two = capacity(info, model_id=info.model_id, preset="x", dp=1, tp=4, pp=2,
                   settings=settings_from_flags([], "0.33.0"), gpu=kv.gpu_named("A100-40GB"))
    assert one.weights_per_gpu_bytes and two.weights_per_gpu_bytes
    # PP over two nodes halves each GPU's weights, so more KV per GPU.
    assert two.weights_per_gpu_bytes < 0.55 * one.weights_per_gpu_bytes
    cluster = profile("slurm")
    plan = build(model="Llama-3.1-70B-Instruct", preset=load_preset("tp4pp2-2nodes"),
                 cluster=cluster)
    assert (plan.nodes, plan.gpus, plan.gpus_per_node) == (2, 8, 4)


# -- diagnosis: a node that never arrived --------------------------------------------------------

@pytest.mark.parametrize(("line", "code", "words"), [
    ("(APIServer pid=7) ERROR 11-27 09:48:08 [parallel_state.py:1040] torch.distributed."
     "DistStoreError: Timed out after 300 seconds waiting for clients. 1/2 clients joined.",
     "nodes_missing", "only 1 of 2 nodes joined"),
    ("(APIServer pid=7) ERROR 11-27 09:48:08 [ray_utils.py:328] ValueError: The number of "
     "required GPUs exceeds the total number of available GPUs in the placement group.",
     "ray_gpus_missing", "Ray does not hold the GPUs"),
])
def test_missing_nodes_in_the_head_log_are_the_failure_cause(line: str, code: str, words: str
                                                             ) -> None:
    from hpclaunch.vllm.logs.parse import parse
    from hpclaunch.vllm.logs.read import LogChunk

    text = ("(APIServer pid=7) INFO 11-27 09:48:00 [api_server.py:1885] vLLM API server "
            "version 0.33.0\n" + line + "\n(APIServer pid=7) ERROR 11-27 09:48:09 "
            "[core_client.py:564] EngineDeadError: EngineCore encountered an issue.\n")
    data = text.encode()
    failure = parse(LogChunk.from_bytes(data, b"", len(data))).failure
    assert failure is not None and failure.code == code and words in failure.reason


def test_node_log_path_sits_beside_the_realtime_log() -> None:
    from hpclaunch.cli.logs import node_log_path

    path = node_log_path("/r/vllm_big.ab12_port8000_realtime.log", 1)
    assert path == "/r/vllm_big.ab12_node1.log"


# -- scheduler-env: one of several clusters from one login node -----------------------------------

def test_scheduler_commands_run_under_the_profiles_scheduler_env() -> None:
    from hpclaunch.config import ClusterProfile as Profile
    from hpclaunch.remote.transport import Result
    from tests.unit.schedulers.test_slurm import CannedTransport

    profile_ = Profile.from_mapping("two", {"scheduler": "slurm", "scheduler-env": {
        "SLURM_CONF": "/etc/slurm-two/slurm.conf"}}, "clusters.yaml")
    assert profile_.scheduler_env == {"SLURM_CONF": "/etc/slurm-two/slurm.conf"}
    transport = CannedTransport([Result([], 0, "42\n", ""), Result([], 0, "", "")])
    scheduler = SlurmScheduler(profile_, transport)  # type: ignore[arg-type]
    assert scheduler.submit("/r/job.sh") == "42"
    scheduler.cancel("42")
    assert [c[:2] for c in transport.calls] == [["env", "SLURM_CONF=/etc/slurm-two/slurm.conf"]] * 2
    assert transport.calls[0][2] == "sbatch" and transport.calls[1][2] == "scancel"


def test_scheduler_env_names_are_checked() -> None:
    from hpclaunch.config import ClusterProfile as Profile

    with pytest.raises(UserError, match="scheduler-env"):
        Profile.from_mapping("two", {"scheduler": "slurm", "scheduler-env": {"BAD NAME": "x"}},
                             "clusters.yaml")
