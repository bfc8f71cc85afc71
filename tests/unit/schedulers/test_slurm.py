"""Slurm backend, pure parts: parsing real command output, directives, rendered scripts.

The canned text comes from tests/data/slurm/ (captured on this project's real Slurm, or
quoted from other projects' tests; SOURCES.md says which). Submitting, polling and
cancelling real jobs is tested in tests/integration/schedulers/test_slurm_e2e.py.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import SubmitError, UserError
from hpclaunch.planning.plan import build
from hpclaunch.planning.presets import load_preset
from hpclaunch.remote.transport import Result
from hpclaunch.schedulers.base import DONE, MISSING, QUEUED, RUNNING
from hpclaunch.schedulers.slurm import (
    SlurmScheduler,
    decode_exit_pair,
    decode_wait_status,
    parse_sacct,
    parse_squeue,
)
from tests.conftest import assert_golden

DATA = Path(__file__).resolve().parents[2] / "data" / "slurm"
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "slurm"
RESULTS = "/scratch/hpcl/results"


def captured(name: str) -> Result:
    """A captured command as a Result (``<name>.stdout`` / ``.stderr`` / ``.rc``)."""
    def text(ext: str) -> str:
        path = DATA / f"{name}.{ext}"
        return path.read_text() if path.exists() else ""

    return Result([name], int(text("rc") or 0), text("stdout"), text("stderr"))


@dataclass
class CannedTransport:
    """Answers commands from canned Results, in order, and records what was asked."""

    answers: list[Result]
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        self.calls.append(argv)
        return self.answers.pop(0)


def slurm(transport: object = None, **profile: object) -> SlurmScheduler:
    defaults: dict[str, object] = {"name": "hpc", "scheduler": "slurm", "partition": "gpu",
                                   "gpus_per_node": 4}
    return SlurmScheduler(ClusterProfile(**{**defaults, **profile}),  # type: ignore[arg-type]
                          transport)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- squeue / sacct

SQUEUE_EXPECTED = {  # id: (state, reason, exit code) from squeue_states_all.txt
    "53": (DONE, "CANCELLED", 143),
    "73": (DONE, "CANCELLED", 0),
    "51": (DONE, "COMPLETED", 0),
    "50": (DONE, "FAILED (NonZeroExitCode, exit code 3)", 3),
    "56": (DONE, "FAILED (JobLaunchFailure, exit code 137)", 137),
    "49": (QUEUED, "PartitionConfig", None),
    "52": (QUEUED, "DependencyNeverSatisfied", None),
    "75": (QUEUED, "Resources", None),
    "76": (QUEUED, "Priority", None),
    "55": (QUEUED, "JobHeldUser", None),
    "74": (RUNNING, "", None),
    "54": (DONE, "TIMEOUT (TimeLimit)", 143),
}


@pytest.mark.parametrize("job_id", sorted(SQUEUE_EXPECTED))
def test_squeue_states_all_captured_here(job_id: str) -> None:
    states = parse_squeue((DATA / "squeue_states_all.txt").read_text(), list(SQUEUE_EXPECTED))
    job = states[job_id]
    state, reason, code = SQUEUE_EXPECTED[job_id]
    assert (job.state, job.reason) == (state, reason)
    if state == DONE:
        assert job.exit_code == code
    if state in (DONE, RUNNING):
        assert job.node == "vm"


def test_squeue_reports_only_the_ids_asked_for() -> None:
    states = parse_squeue((DATA / "squeue_states_all.txt").read_text(), ["74", "999"])
    assert list(states) == ["74"]


@pytest.mark.parametrize("capture", ["squeue_unknown_one_id", "squeue_unknown_two_ids"])
def test_ids_squeue_does_not_know_are_gone_not_an_error(capture: str) -> None:
    # One unknown id: rc 1 "Invalid job id specified"; several: rc 0 and a stray header.
    assert slurm().parse_status(captured(capture), ["99998", "99999"]) == {}


def test_controller_down_is_an_error_not_every_job_ended() -> None:
    with pytest.raises(UserError, match="Unable to contact slurm controller.*not updated"):
        slurm().parse_status(captured("squeue_controller_down"), ["1", "2"])


@pytest.mark.parametrize(("raw", "code"), [("0", 0), ("768", 3), ("15", 143), ("9", 137),
                                           ("256", 1), ("", None), ("N/A", None)])
def test_squeue_exit_code_is_a_wait_status(raw: str, code: int | None) -> None:
    assert decode_wait_status(raw) == code


@pytest.mark.parametrize(("raw", "code"), [("0:0", 0), ("3:0", 3), ("0:15", 143), ("0:9", 137),
                                           ("1:0", 1), ("-2:0", -2), ("", None), ("x:y", None)])
def test_sacct_exit_code_is_code_colon_signal(raw: str, code: int | None) -> None:
    assert decode_exit_pair(raw) == code


SACCT_EXPECTED = {  # (file, id): (state, reason contains, exit code)
    ("sacct_jobcomp.stdout", "50"): (DONE, "FAILED (exit code 3)", 3),
    ("sacct_jobcomp.stdout", "51"): (DONE, "COMPLETED", 0),
    ("sacct_jobcomp.stdout", "53"): (DONE, "CANCELLED", 0),
    ("sacct_jobcomp.stdout", "54"): (DONE, "TIMEOUT", 0),
    ("sacct_jobcomp.stdout", "56"): (DONE, "FAILED (exit code 137)", 137),
    ("sacct_gc3pie_samples.txt", "1001"): (DONE, "CANCELLED by 1000", 0),
    ("sacct_gc3pie_samples.txt", "1002"): (DONE, "NODE_FAIL", 1),
    ("sacct_gc3pie_samples.txt", "1003"): (DONE, "TIMEOUT", 129),
    ("sacct_gc3pie_samples.txt", "1004"): (DONE, "FAILED (exit code 1)", 1),
    ("sacct_gc3pie_samples.txt", "1005"): (DONE, "COMPLETED", 0),
    ("sacct_submitit_samples.txt", "5610980"): (RUNNING, "", 0),
    ("sacct_submitit_samples.txt", "20956421_0"): (RUNNING, "", 0),
}


@pytest.mark.parametrize(("source", "job_id"), sorted(SACCT_EXPECTED))
def test_sacct_rows_map_to_states_and_steps_are_ignored(source: str, job_id: str) -> None:
    text = (DATA / source).read_text()
    ids = [i for s, i in SACCT_EXPECTED if s == source]
    job = parse_sacct(text, ids)[job_id]
    state, reason, code = SACCT_EXPECTED[(source, job_id)]
    assert (job.state, job.reason, job.exit_code if state == DONE else 0) == (state, reason, code)


def test_the_last_sacct_row_of_an_id_wins() -> None:
    # A requeued job, or a jobcomp file from before the cluster's job ids started over.
    text = "7|FAILED|1:0|\n7|COMPLETED|0:0|\n"
    assert parse_sacct(text, ["7"])["7"].reason == "COMPLETED"


def test_unknown_state_is_logged_and_treated_as_running(caplog: pytest.LogCaptureFixture) -> None:
    text = (DATA / "sacct_submitit_samples.txt").read_text()  # 5610980.0|RUNING: a step
    with caplog.at_level(logging.WARNING):
        job = parse_squeue("8|WEIRD_NEW_STATE|None|n1|0|\n", ["8"])["8"]
    assert (job.state, job.native_state, job.reason) == (RUNNING, "WEIRD_NEW_STATE",
                                                          "Slurm state WEIRD_NEW_STATE")
    assert "WEIRD_NEW_STATE" in caplog.text
    # The step 5610980.0 (state RUNING) never poses as its job.
    assert parse_sacct(text, ["5610980"])["5610980"].native_state == "RUNNING"


def test_finished_states_ask_sacct_once_then_the_jobcomp_file() -> None:
    transport = CannedTransport([captured("sacct_disabled"), captured("sacct_jobcomp")])
    states = slurm(transport).finished_states(["50", "51"])
    assert [c[:2] for c in transport.calls] == [["sacct", "-P"], ["sacct", "-c"]]
    assert transport.calls[0][transport.calls[0].index("-j") + 1] == "50,51"
    assert {k: v.reason for k, v in states.items()} == {"50": "FAILED (exit code 3)",
                                                        "51": "COMPLETED"}


def test_finished_states_with_accounting_use_one_call() -> None:
    rows = Result([], 0, "1001|CANCELLED by 1000|0:0|None\n", "")
    transport = CannedTransport([rows])
    assert slurm(transport).finished_states(["1001"])["1001"].reason == "CANCELLED by 1000"
    assert len(transport.calls) == 1


def test_accounting_disabled_is_remembered_and_old_wording_understood() -> None:
    disabled = Result([], 1, "", (DATA / "sacct_disabled_old.stderr").read_text())
    empty = Result([], 0, "", "")
    transport = CannedTransport([disabled, empty, empty])
    scheduler = slurm(transport)
    assert scheduler.finished_states(["5"]) == {}
    assert scheduler.finished_states(["6"]) == {}
    assert [c[1] for c in transport.calls] == ["-P", "-c", "-c"]


def test_jobs_nobody_remembers_are_missing() -> None:
    answers = [captured("squeue_unknown_one_id"), captured("sacct_disabled"),
               Result([], 0, "", "")]
    states = slurm(CannedTransport(answers)).states(["99999"])
    assert states["99999"].state == MISSING


def test_status_is_one_squeue_call_for_all_ids() -> None:
    transport = CannedTransport([Result([], 0, (DATA / "squeue_states_all.txt").read_text(), "")])
    states = slurm(transport).states(list(SQUEUE_EXPECTED))
    assert len(transport.calls) == 1 and transport.calls[0][0] == "squeue"
    assert "--states=all" in transport.calls[0]
    assert f"--jobs={','.join(SQUEUE_EXPECTED)}" in transport.calls[0]
    assert states["75"].state == QUEUED


# ------------------------------------------------------------------------------------- submit

@pytest.mark.parametrize(("stdout", "job_id"), [("80\n", "80"), ("4242;hpclaunch-ci\n", "4242")])
def test_job_id_from_sbatch_parsable(stdout: str, job_id: str) -> None:
    transport = CannedTransport([Result([], 0, stdout, "")])
    assert slurm(transport).submit("/x/job.sh") == job_id
    assert transport.calls == [["sbatch", "--parsable", "/x/job.sh"]]


@pytest.mark.parametrize("stdout", ["Submitted batch job 80\n", "80\n81\n", "", "80;a b\n"])
def test_anything_but_a_bare_id_is_refused(stdout: str) -> None:
    with pytest.raises(SubmitError, match="printed no job id"):
        slurm(CannedTransport([Result([], 0, stdout, "")])).submit("/x/job.sh")


@pytest.mark.parametrize("capture", ["sbatch_invalid_partition", "sbatch_too_many_gpus"])
def test_sbatch_error_is_one_line_in_slurms_words(capture: str) -> None:
    result = captured(capture)
    with pytest.raises(SubmitError) as info:
        slurm(CannedTransport([result])).submit("/x/job.sh")
    message = str(info.value)
    assert "\n" not in message and message.startswith("sbatch exited 1: ")
    assert result.stderr.strip().splitlines()[-1] in message


# --------------------------------------------------------------------------------- directives

def plan_for(preset: str = "single-gpu", cluster: ClusterProfile | None = None, **kw: object):
    cluster = cluster or ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4)
    return build(model="Qwen3-VL-2B", preset=load_preset(preset), cluster=cluster,
                 name="qwen-vl", results_dir=RESULTS, **kw)  # type: ignore[arg-type]


def header(cluster: ClusterProfile, preset: str = "single-gpu", **kw: object) -> list[str]:
    return SlurmScheduler(cluster, None).header(plan_for(preset, cluster, **kw))  # type: ignore


def test_directives_from_plan_and_profile() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4, partition="gpu",
                             account="proj1", qos="normal", time_limit="08:00:00",
                             cpus_per_task=16, mem="64G")
    lines = header(cluster, "dp4-throughput")
    assert lines == sorted(lines)
    for wanted in ("--job-name=hpcl-qwen-vl", "--partition=gpu", "--account=proj1",
                   "--qos=normal", "--time=08:00:00", "--nodes=1", "--ntasks-per-node=1",
                   "--gres=gpu:4", "--cpus-per-task=16", "--mem=64G",
                   f"--output={RESULTS}/hpclaunch_qwen-vl.%j.out",
                   f"--error={RESULTS}/hpclaunch_qwen-vl.%j.err"):
        assert f"#SBATCH {wanted}" in lines
    assert not any("--gpus-per-node" in line for line in lines)


def test_set_overrides_the_profile_and_unset_values_are_left_out() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4, partition="gpu")
    lines = header(cluster, overrides={"partition": "debug", "cpus-per-task": 999,
                                       "time-limit": "00:30:00"})
    assert "#SBATCH --partition=debug" in lines and "#SBATCH --cpus-per-task=999" in lines
    assert "#SBATCH --time=00:30:00" in lines
    assert not any(k in line for line in lines for k in ("--account", "--qos", "--mem"))


@pytest.mark.parametrize(("directive", "gpu_type", "wanted"), [
    ("gres", None, "--gres=gpu:1"), ("gres", "a100", "--gres=gpu:a100:1"),
    ("gpus-per-node", None, "--gpus-per-node=1"),
    ("gpus-per-node", "h100", "--gpus-per-node=h100:1"),
])
def test_gpu_directive_is_the_sites_choice(directive: str, gpu_type: str | None,
                                           wanted: str) -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4,
                             gpu_directive=directive, gpu_type=gpu_type)
    gpu_lines = [ln for ln in header(cluster) if "gpu" in ln]
    assert gpu_lines == [f"#SBATCH {wanted}"]


def test_gpu_directives_stay_with_simulate() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4)
    assert "#SBATCH --gres=gpu:4" in header(cluster, "dp4-throughput", simulate=True)


def test_unknown_gpu_directive_is_refused() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4, gpu_directive="gpu")
    with pytest.raises(UserError, match="gpu-directive must be one of gres, gpus-per-node"):
        header(cluster)


def test_skip_and_extra_directives() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4, mem="32G",
                             skip_directives=["--mem", "--ntasks-per-node"],
                             extra_directives=["--constraint=a100", "#SBATCH --exclusive"])
    lines = header(cluster)
    assert not any("--mem" in ln or "--ntasks-per-node" in ln for ln in lines)
    assert lines[-2:] == ["#SBATCH --constraint=a100", "#SBATCH --exclusive"]


HOSTILE = ["gpu; rm -rf ~", "a b", "a\nb", "$(id)", "`id`", "x'y", 'x"y', "a#b"]


@pytest.mark.parametrize("weird", HOSTILE)
@pytest.mark.parametrize("key", ["partition", "account", "qos", "mem", "time-limit"])
def test_hostile_directive_values_are_refused(key: str, weird: str) -> None:
    """Free-text values are checked at render; values with a syntax (mem, time-limit) by
    their rule, before that."""
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4)
    refused = ("expected a" if key in ("mem", "time-limit")
               else "characters a job directive cannot carry")
    with pytest.raises(UserError, match=refused):
        header(cluster, overrides={key: weird})


def test_results_dir_that_a_directive_cannot_carry_is_refused_with_the_reason() -> None:
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4)
    plan = plan_for(cluster=cluster)
    with pytest.raises(UserError, match=r"results-dir value '/scratch/my results'"):
        SlurmScheduler(cluster, None).render(plan, "/scratch/my results")  # type: ignore


def test_hostile_model_path_is_quoted_in_the_body_and_kept_out_of_directives(
        tmp_path: Path) -> None:
    weird = "m'; touch pwned; echo '$(id)"
    model_dir = tmp_path / weird
    model_dir.mkdir()
    cluster = ClusterProfile(name="hpc", scheduler="slurm", gpus_per_node=4,
                             vllm_command=[sys.executable, "-c", "import sys; print(sys.argv)"])
    plan = build(model=str(model_dir), preset=load_preset("single-gpu"), cluster=cluster,
                 name="weird", vllm_args=f"--chat-template {weird!r}")
    script = SlurmScheduler(cluster, None).render(plan, str(tmp_path))  # type: ignore
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    directives = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert directives and not any(weird in ln for ln in directives)
    body = script.split("set -uo pipefail", 1)[1]
    assert re.search(r"'m'\"'\"'; touch pwned", body)  # shlex-quoted, never bare


# ------------------------------------------------------------------------------ golden scripts

GOLDEN_CASES = {
    "dp4-throughput": ("dp4-throughput", ClusterProfile(
        name="hpc", scheduler="slurm", gpus_per_node=4, partition="gpu", account="proj1",
        time_limit="08:00:00", results_dir=RESULTS)),
    "single-gpu": ("single-gpu", ClusterProfile(
        name="hpc", scheduler="slurm", gpus_per_node=4, partition="debug", qos="normal",
        mem="32G", cpus_per_task=8, results_dir=RESULTS,
        setup=["module load cuda/12.4", "source ~/venvs/vllm/bin/activate"])),
    "gpus-per-node-site-quirks": ("dp4-throughput", ClusterProfile(
        name="hpc", scheduler="slurm", gpus_per_node=4, partition="gpu", gpu_directive=
        "gpus-per-node", gpu_type="a100", time_limit="1-00:00:00", mem="0", results_dir=RESULTS,
        skip_directives=["--ntasks-per-node"],
        extra_directives=["--constraint=a100&ib", "--exclusive"],
        env={"HF_HOME": "/scratch/hf cache"})),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_rendered_script_matches_golden(case: str, update_golden: bool) -> None:
    preset, cluster = GOLDEN_CASES[case]
    plan = build(model="Qwen3-VL-2B", preset=load_preset(preset), cluster=cluster, name="qwen-vl")
    script = SlurmScheduler(cluster, None).render(plan, RESULTS)  # type: ignore[arg-type]
    assert_golden(GOLDEN / f"{case}.sh", script, update_golden)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_files_are_valid_bash_with_directives_first(case: str) -> None:
    path = GOLDEN / f"{case}.sh"
    subprocess.run(["bash", "-n", str(path)], check=True)
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    # sbatch reads #SBATCH lines only up to the first command.
    first_command = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    assert all(not ln.startswith("#SBATCH") for ln in lines[first_command:])
    assert sum(ln.startswith("#SBATCH") for ln in lines) >= 8
