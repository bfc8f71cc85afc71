"""``cluster check``: parsing what a login node reports, and judging it against the profile."""

from __future__ import annotations

from hpclaunch.config import ClusterProfile
from hpclaunch.schedulers.sitecheck import assess, parse_facts

SLURM_SITE = """\
host login01
which sbatch /usr/bin/sbatch
which squeue /usr/bin/squeue
which scancel /usr/bin/scancel
which sacct /usr/bin/sacct
which apptainer /usr/bin/apptainer
version sbatch slurm 23.11.4
partition debug* up 4 gpu:a100:4(S:0-1)
partition gpu up 10 gpu:h100:8(S:0-1),shard:h100:16
partition gpu up 2 gpu:a100:4
partition cpu up 100 (null)
results-parent /scratch/alice
results-writable yes
results-free-kb 524288000
results-mount /scratch
"""

PBS_SITE = """\
host polaris-login-01
which qsub /opt/pbs/bin/qsub
which qstat /opt/pbs/bin/qstat
which qdel /opt/pbs/bin/qdel
version qstat pbs_version = 2022.1.3
queue debug
queue prod
exe /soft/vllm/bin/vllm
exe-version 0.11.0
results-parent /eagle/proj/hpclaunch
results-writable yes
results-free-kb 900
results-mount /eagle
"""


def rows_by_item(profile: ClusterProfile, text: str, results: str) -> dict[str, tuple[str, ...]]:
    return {r.item: (r.status, r.detail, r.fix)
            for r in assess(profile, parse_facts(text), results)}


def test_slurm_facts_partitions_default_and_gpu_types_per_partition() -> None:
    facts = parse_facts(SLURM_SITE)
    assert facts.host == "login01" and facts.versions["sbatch"] == "slurm 23.11.4"
    assert list(facts.partitions) == ["debug", "gpu", "cpu"]
    assert facts.default_partition == "debug"
    assert facts.gpu_types("gpu") == {"h100": 8, "a100": 4}
    assert facts.gpu_types("cpu") == {}
    assert facts.gpu_types() == {"a100": 4, "h100": 8}
    assert facts.results_free_kb == 524288000 and facts.results_writable


def test_a_matching_profile_is_all_ok_with_the_facts_shown() -> None:
    profile = ClusterProfile(name="s", scheduler="slurm", host="h", partition="gpu",
                             gpu_type="h100", vllm_command=["apptainer", "exec", "x", "vllm"])
    rows = rows_by_item(profile, SLURM_SITE + "exe /usr/bin/apptainer\n",
                        "/scratch/alice/hpclaunch")
    assert rows["sbatch"][:2] == ("ok", "/usr/bin/sbatch (slurm 23.11.4)")
    assert rows["partitions"] == ("ok", "debug (default), gpu, cpu", "")
    assert rows["gpus"][:2] == ("ok", "a100 x4, h100 x8 per node in gpu")
    assert rows["vllm"][0] == "ok"
    assert rows["results-dir"][:2] == (
        "ok", "/scratch/alice/hpclaunch (will be created under /scratch/alice; "
              "500.0 GiB free on /scratch)")
    assert rows["shared"][0] == "note"


def test_each_gap_is_missing_with_its_fix() -> None:
    profile = ClusterProfile(name="s", scheduler="slurm", host="h", partition="gpus",
                             gpu_type="v100")
    rows = rows_by_item(profile, SLURM_SITE, "/scratch/alice/r")
    assert rows["partition"] == ("missing", "gpus is not among: debug (default), gpu, cpu",
                                 "set partition: one of debug, gpu, cpu")
    # GPUs are then judged in the default partition, not reported as absent.
    assert rows["gpu-type"][0] == "missing" and "set gpu_type: one of a100" in rows["gpu-type"][2]
    assert rows["vllm"] == ("warn", "vllm not found, but apptainer is",
                            "to run vLLM in a container set vllm_command: "
                            "[apptainer, exec, --nv, IMAGE.sif, vllm]")


def test_a_cpu_only_partition_has_no_gpus() -> None:
    profile = ClusterProfile(name="s", scheduler="slurm", host="h", partition="cpu")
    assert rows_by_item(profile, SLURM_SITE, "/x")["gpus"][0] == "missing"


def test_the_wrong_scheduler_is_named_with_the_right_one() -> None:
    profile = ClusterProfile(name="p", scheduler="slurm", host="h")
    status, detail, fix = rows_by_item(profile, PBS_SITE, "/eagle/proj/hpclaunch")["scheduler"]
    assert status == "missing" and detail.startswith("sbatch, squeue, scancel not on PATH")
    assert fix.endswith("qsub is there: set scheduler: pbs")


def test_pbs_queues_vllm_version_and_low_space() -> None:
    profile = ClusterProfile(name="p", scheduler="pbs", host="h", queue="prod")
    rows = rows_by_item(profile, PBS_SITE, "/eagle/proj/hpclaunch")
    assert rows["qsub"][:2] == ("ok", "/opt/pbs/bin/qsub (pbs_version = 2022.1.3)")
    assert rows["queues"][:2] == ("ok", "debug, prod")
    assert rows["vllm"][:2] == ("ok", "/soft/vllm/bin/vllm (0.11.0)")
    assert rows["results-dir"][0] == "warn" and "(exists;" in rows["results-dir"][1]
    wrong = ClusterProfile(name="p", scheduler="pbs", host="h", queue="gpu")
    assert rows_by_item(wrong, PBS_SITE, "/e")["queue"][2] == "set queue: one of debug, prod"


def test_nothing_to_run_and_nowhere_to_write() -> None:
    site = "\n".join(ln for ln in SLURM_SITE.splitlines()
                     if not ln.startswith(("which apptainer", "results-writable")))
    rows = rows_by_item(ClusterProfile(name="s", scheduler="slurm", host="h"), site,
                        "/scratch/alice/r")
    assert rows["vllm"][0] == "missing" and "setup:" in rows["vllm"][2]
    assert rows["results-dir"][0] == "missing" and "not writable" in rows["results-dir"][1]
    simulated = ClusterProfile(name="s", scheduler="slurm", host="h", simulate=True)
    assert rows_by_item(simulated, site, "/x")["python"][0] == "missing"
