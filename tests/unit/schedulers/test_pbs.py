"""PBS Pro and Torque: rendering (golden files), job ids, qstat parsing, qdel outcomes.

Parsing runs on real command output in ``tests/data/pbs/`` (each file names its
source): PBS Pro ``qstat -f`` text and ``-F json``, Torque ``qstat -f`` text with
its wrapping hazards, the default tables, qsub/qstat error lines, and what this
machine's slurm-wlm-torque wrappers print. The real qsub/qstat/qdel path is in
``tests/integration/schedulers/test_pbs_e2e.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import SubmitError, UserError
from hpclaunch.planning.plan import build
from hpclaunch.planning.presets import load_preset
from hpclaunch.remote.transport import Result
from hpclaunch.schedulers.base import DONE, QUEUED, RUNNING, UNKNOWN
from hpclaunch.schedulers.pbs import (
    PBSScheduler,
    exit_reason,
    job_state,
    match_jobs,
    parse_qstat_json,
    parse_qstat_table,
    parse_qstat_text,
    same_job,
)
from tests.conftest import assert_golden

if TYPE_CHECKING:
    from hpclaunch.endpoints.status import Observation

DATA = Path(__file__).resolve().parents[2] / "data" / "pbs"
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "pbs"
RESULTS = "/lus/eagle/projects/myproj/hpclaunch_results"


def sample(name: str) -> str:
    """A sample without its ``# SOURCE`` / ``# NOTE`` header lines."""
    return "\n".join(ln for ln in (DATA / name).read_text().splitlines()
                     if not ln.startswith("# ")) + "\n"


def sections(name: str) -> dict[str, str]:
    """``# ---- title ----`` sections of a sample file, title -> body."""
    out: dict[str, list[str]] = {}
    current = None
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("# ---- "):
            current = line.strip("# -")
            out[current] = []
        elif current is not None and not line.startswith("# "):
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


@dataclass
class CannedTransport:
    """Hands out canned command results in order and records what was run (parsers only)."""

    results: list[Result] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> Result:
        self.calls.append(argv)
        canned = self.results.pop(0)
        return Result(argv, canned.returncode, canned.stdout, canned.stderr)


def scheduler(dialect: str = "pbspro", *results: Result, **profile: object) -> PBSScheduler:
    cluster = ClusterProfile(name="site", scheduler="pbs", pbs_dialect=dialect, **profile)
    return PBSScheduler(cluster, CannedTransport(list(results)))  # type: ignore[arg-type]


def ok(stdout: str = "", stderr: str = "", rc: int = 0) -> Result:
    return Result([], rc, stdout, stderr)


# -- qstat -f text ------------------------------------------------------------------------

# (sample, dialect, job id as qsub printed it, state, letter, node, exit code, reason contains)
TEXT_CASES = [
    ("pbspro_qstat_f_1.txt", "pbspro", "68350.mycluster", QUEUED, "Q", "", None,
     "Not Running: Node is in an ineligible state: offline"),
    ("pbspro_qstat_f_1.txt", "pbspro", "69301.mycluster", RUNNING, "R", "b141", None, ""),
    ("pbspro_qstat_f_1.txt", "pbspro", "69302.mycluster", QUEUED, "H", "", None, "held"),
    ("pbspro_qstat_f_1.txt", "pbspro", "74164.mycluster", RUNNING, "R", "b270", None, ""),
    ("pbspro_qstat_f_1.txt", "pbspro", "74165.mycluster", QUEUED, "H", "", None, "held"),
    ("torque_qstat_f_1.txt", "torque", "549159.service1", QUEUED, "H", "", None, "held"),
    ("torque_qstat_f_1.txt", "torque", "555716.service1", RUNNING, "R", "r2i4n13", None, ""),
    ("torque_qstat_f_1.txt", "torque", "556491.service1", RUNNING, "R", "r3i1n2", None, ""),
    ("torque_qstat_f_1.txt", "torque", "546437.service1", DONE, "C", "r2i7n16", 271,
     "killed by SIGTERM (exit_status 271)"),
    ("torque_qstat_f_1.txt", "torque", "547637.service1", QUEUED, "Q", "", None, ""),
    # After a sched_hint with unindented lines and a blank line inside it.
    ("torque_qstat_f_1.txt", "torque", "543984.service1", DONE, "C", "r2i7n17", 271, "SIGTERM"),
    ("slurmtorque_qstat_f_running.txt", "torque", "82", RUNNING, "R", "vm", None, ""),
    ("slurmtorque_qstat_f_running.txt", "torque", "83", QUEUED, "Q", "", None, ""),
    ("slurmtorque_qstat_f_finished.txt", "torque", "82", DONE, "C", "vm", None, ""),
    ("slurmtorque_qstat_f_finished.txt", "torque", "83", DONE, "C", "", None, ""),
]


@pytest.mark.parametrize(("name", "dialect", "job_id", "state", "letter", "node", "code",
                          "reason"), TEXT_CASES)
def test_qstat_f_text_samples(name: str, dialect: str, job_id: str, state: str, letter: str,
                              node: str, code: int | None, reason: str) -> None:
    sched = scheduler(dialect, ok(sample(name)))
    sched._json = False
    found = sched.states([job_id])[job_id]
    assert (found.state, found.native_state, found.node, found.exit_code) == \
        (state, letter, node, code)
    assert reason in found.reason
    if not reason:
        assert found.reason in ("", "queued")


def test_text_parser_keeps_every_job_and_joins_wrapped_values() -> None:
    jobs = parse_qstat_text(sample("pbspro_qstat_f_1.txt"))
    assert list(jobs) == ["68350.mycluster", "68351.mycluster", "69301.mycluster",
                          "69302.mycluster", "74164.mycluster", "74165.mycluster"]
    first = jobs["68350.mycluster"]
    # A TAB continuation cuts mid-word: "PTOs" + "caletest".
    assert first["Error_Path"] == \
        "mycluster.cluster:/home/usernum1/scratch/cptest/scaletest/PTOscaletest/testjob.err"
    assert "PBS_O_WORKDIR=/home/usernum1/scratch/cptest/scaletest/PTOscaletest," in \
        first["Variable_List"]
    assert first["project"] == "_pbs_project_default"
    assert jobs["69301.mycluster"]["exec_vnode"].endswith("+(b144:ncpus=16)")


def test_text_parser_survives_unindented_lines_and_blank_lines_inside_a_value() -> None:
    jobs = parse_qstat_text(sample("torque_qstat_f_1.txt"))
    assert len(jobs) == 10 and "543984" in jobs
    last = jobs["543984"]
    assert last["exit_status"] == "271" and last["start_time"] == "Wed Jun 17 10:48:24 2015"
    assert "Unable to copy file 543984.OU" in last["sched_hint"]
    assert "/bin/cp: cannot stat" in last["sched_hint"]
    assert last["submit_args"].startswith("args_XX.ext")
    assert "NOPFS=false" in last["submit_args"]
    # A blank line inside Error_Path does not end the job.
    assert jobs["547637"]["Resource_List.walltime"] == "24:00:00"


def test_a_wrapped_line_that_looks_like_an_attribute_stays_part_of_its_value() -> None:
    # Taken from the PBS Pro sample: a Variable_List whose wrapped part (TAB) happens
    # to read "key = value" (any exported variable can hold " = ").
    text = sample("pbspro_qstat_f_1.txt").replace(
        "\tPBS_O_HOME=/home/usernum1,", "\tjob_state = R,PBS_O_HOME=/home/usernum1,", 1)
    job = parse_qstat_text(text)["68350.mycluster"]
    assert job["job_state"] == "Q"
    assert "job_state = R,PBS_O_HOME=/home/usernum1," in job["Variable_List"]


def test_tab_indented_attributes_of_slurm_wlm_torque() -> None:
    jobs = parse_qstat_text(sample("slurmtorque_qstat_f_running.txt"))
    assert set(jobs) == {"82", "83", "84"}
    assert jobs["82"]["job_state"] == "R" and jobs["82"]["exec_host"] == "vm/1"
    assert jobs["83"]["Resource_List.walltime"] == "00:10:00"


# -- qstat -f -x -F json ----------------------------------------------------------------

def test_qstat_json_sample_finished_job() -> None:
    text = sample("pbspro_qstat_xf_json_2.txt")
    jobs = parse_qstat_json(text)
    assert list(jobs) == ["40.pbs"]
    sched = scheduler("pbspro", ok(text))
    found = sched.states(["40.pbs"])["40.pbs"]
    assert sched.transport.calls == [["qstat", "-f", "-x", "-F", "json", "40.pbs"]]
    assert (found.state, found.native_state, found.exit_code, found.node) == \
        (DONE, "F", 0, "pbs")
    assert found.reason == "Job run at Wed Mar 17 at 20:36 on (pbs:ncpus=1) and finished"


def test_qstat_json_without_jobs_key_means_no_job_matched() -> None:
    assert parse_qstat_json('{"timestamp": 1, "pbs_version": "23.06", "pbs_server": "s"}') == {}
    with pytest.raises(ValueError):
        parse_qstat_json('{"Jobs": {"1.s": {"Variable_List": {"BASH_FUNC_x%%": "() {')


def test_json_refused_falls_back_to_text_once_for_the_life_of_the_scheduler() -> None:
    refused = sections("slurmtorque_errors.txt")
    usage = next(v for k, v in refused.items() if "-F json" in k)
    text = sample("slurmtorque_qstat_f_running.txt")
    sched = scheduler("pbspro", ok(stderr=usage, rc=2), ok(text), ok(text))
    assert sched.states(["82"])["82"].state == RUNNING
    assert sched.states(["82", "83"])["83"].state == QUEUED
    assert sched.transport.calls == [
        ["qstat", "-f", "-x", "-F", "json", "82"], ["qstat", "-f", "82"],
        ["qstat", "-f", "82", "83"],
    ]


def test_invalid_json_is_asked_again_as_text() -> None:
    text = sample("pbspro_qstat_f_1.txt")
    sched = scheduler("pbspro", ok('{"Jobs": {"69301.mycluster": {"Variable_List": {"BASH'),
                      ok(text))
    assert sched.states(["69301.mycluster"])["69301.mycluster"].state == RUNNING
    assert sched.transport.calls[1] == ["qstat", "-f", "69301.mycluster"]


# -- many ids, unknown ids, a broken qstat --------------------------------------------------

def test_status_of_many_jobs_is_one_qstat_call() -> None:
    ids = ["549159.service1", "555716.service1", "546437.service1", "99.service1"]
    sched = scheduler("torque", ok(sample("torque_qstat_f_1.txt"),
                                   "qstat: Unknown Job Id Error 99.service1\n", 153))
    states = sched.states(ids)
    assert sched.transport.calls == [["qstat", "-f", *ids]]
    assert [states[i].state for i in ids] == [QUEUED, RUNNING, DONE, "missing"]


@pytest.mark.parametrize("stderr", [
    "qstat: Unknown Job Id 7.pbs\n",                        # PBS Pro / OpenPBS
    "qstat: Unknown Job Id Error 46707.modex.bnl.gov\n",    # Torque, sample (b)
    "",                                                     # slurm-wlm-torque: rc 153, silent
])
def test_unknown_ids_are_missing_not_an_error(stderr: str) -> None:
    sched = scheduler("torque", ok("", stderr, 153))
    assert sched.states(["7.pbs"])["7.pbs"].state == "missing"


def test_a_qstat_that_cannot_reach_the_server_raises_instead_of_ending_jobs() -> None:
    sched = scheduler("torque", ok("", "pbs_iff: cannot connect to host\n", 162))
    with pytest.raises(UserError, match="qstat exited 162: pbs_iff: cannot connect to host"):
        sched.states(["1.s"])


def test_ids_match_by_sequence_number_whatever_suffix_the_server_prints() -> None:
    # Torque sample (d): qsub printed a long id, qstat lists a short one.
    assert same_job("13.vcluster_torque_1.vcluster_default", "13.torque")
    # The default tables truncate ids (Torque silently, PBS Pro with '*').
    for row in sample("torque_qstat_table_1.txt").splitlines():
        if row[:1].isdigit():
            full = {"3754123": "3754123.mskcc-fe1.local", "272[0]": "272[0].pitzer-batch.ten",
                    "272[1]": "272[1].pitzer-batch.ten"}[row.split(".")[0]]
            assert same_job(full, row.split()[0])
    assert not same_job("3754123.a", "375412.a")


# -- state letters and exit statuses ----------------------------------------------------------

@pytest.mark.parametrize(("letter", "state"), [
    ("Q", QUEUED), ("H", QUEUED), ("W", QUEUED), ("T", QUEUED), ("S", QUEUED),
    ("R", RUNNING), ("E", RUNNING), ("F", DONE), ("C", DONE), ("X", DONE),
])
def test_state_letters(letter: str, state: str) -> None:
    assert job_state({"job_state": letter}, "pbspro").state == state


def test_queued_reason_comes_from_the_comment() -> None:
    found = job_state({"job_state": "Q", "comment": "Can Never Run: Insufficient amount of "
                       "server resource: eagle_fs (True != False)"}, "pbspro")
    assert found.reason.startswith("Can Never Run: Insufficient amount of server resource")


@pytest.mark.parametrize(("code", "dialect", "words"), [
    (0, "pbspro", ""),
    (3, "torque", ""),
    (-29, "pbspro", "WALLTIME exceeded (Exit_status -29)"),
    (-11, "torque", "WALLTIME exceeded (exit_status -11)"),
    (-11, "pbspro", "JOB_EXEC_RERUN"),           # -11 means walltime only in Torque
    (-27, "pbspro", "exceeding a limit: JOB_EXEC_KILL_MEM"),
    (-1, "pbspro", "could not run the job: JOB_EXEC_FAIL1"),
    (265, "pbspro", "killed by SIGKILL (Exit_status 265)"),
    (271, "torque", "killed by SIGTERM (exit_status 271)"),
])
def test_exit_statuses(code: int, dialect: str, words: str) -> None:
    reason = exit_reason(code, dialect)
    assert words in reason if words else reason == ""
    key = "Exit_status" if dialect == "pbspro" else "exit_status"
    found = job_state({"job_state": "F", key: str(code)}, dialect)
    assert found.exit_code == code and found.state == DONE


# -- qsub output: job ids and errors --------------------------------------------------------

@pytest.mark.parametrize("stdout", [
    "2032.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov\n",
    "40.pbs\n", "80005196.gadi-pbs\n", "3481331.egeon2\n", "491375.barnacle.ucsd.edu\n",
    "4\n",  # slurm-wlm-torque
])
def test_job_id_from_qsub(stdout: str) -> None:
    sched = scheduler("pbspro", ok(stdout))
    assert sched.submit("/r/hpclaunch_x.sh") == stdout.strip()
    assert sched.transport.calls == [
        ["qsub", "-j", "oe", "-o", "/r/hpclaunch_x.pbs.out", "/r/hpclaunch_x.sh"]]


@pytest.mark.parametrize("stdout", [
    sections("pbspro_qsub_1.txt")["(b) interactive qsub -I"],
    "Submitted batch job 4\n", "4 5\n", "", "123[].server\n",
    sample("torque_qstat_table_1.txt").splitlines()[3],
])
def test_anything_but_a_job_id_is_refused(stdout: str) -> None:
    with pytest.raises(SubmitError, match="printed no job id"):
        scheduler("torque", ok(stdout)).submit("/r/hpclaunch_x.sh")


QSUB_ERRORS = [
    *[ok("", line + "\n", 1) for line in sample("pbspro_qsub_errors_1.txt").splitlines()
      if line.startswith("qsub:")],
    ok("", "qsub: Job exceeds queue resource limits MSG=cannot locate feasible nodes (nodes "
       "file is empty or all systems are busy)\n", 1),
    # slurm-wlm-torque prints its errors on stdout.
    ok(next(v for k, v in sections("slurmtorque_errors.txt").items() if "qsub" in k), "", 1),
]


@pytest.mark.parametrize("result", QSUB_ERRORS, ids=lambda r: (r.stderr or r.stdout)[:40])
def test_qsub_errors_keep_the_schedulers_words_on_one_line(result: Result) -> None:
    with pytest.raises(SubmitError) as err:
        scheduler("pbspro", result).submit("/r/hpclaunch_x.sh")
    message = str(err.value)
    assert "\n" not in message and message.startswith("qsub exited 1: ")
    words = (result.stderr or result.stdout).strip().splitlines()
    key = next(ln for ln in words if "error:" in ln or ln.startswith("qsub:")).strip(" '")
    assert key in message


# -- qdel --------------------------------------------------------------------------------

@pytest.mark.parametrize("result", [
    ok("", "", 1),                                   # slurm-wlm-torque: finished or unknown
    ok("", "qdel: Unknown Job Id 12.pbs\n", 153),
    ok("", "qdel: Job has finished 12.pbs\n", 35),
])
def test_qdel_of_a_finished_job_is_fine(result: Result) -> None:
    scheduler("pbspro", result).cancel("12.pbs")


@pytest.mark.parametrize("result", [
    ok("", "qdel: Unauthorized Request  12.pbs\n", 159),
    ok("", "pbs_iff: cannot connect to host\n", 1),
])
def test_qdel_errors_are_reported(result: Result) -> None:
    with pytest.raises(UserError, match="qdel exited"):
        scheduler("pbspro", result).cancel("12.pbs")


# -- rendering: golden files -----------------------------------------------------------------

POLARIS = dict(account="myproj", queue="debug", filesystems="home:eagle", gpus_per_node=4,
               cpus_per_task=64, time_limit="01:00:00",
               setup=["module use /soft/modulefiles", "module load conda/2024-04-29",
                      "conda activate base"])
GOLDEN_CASES = {
    "pbspro_dp4_throughput": ("pbspro", "dp4-throughput", "Qwen3-VL-2B", POLARIS, {}),
    "pbspro_single_gpu": ("pbspro", "single-gpu", "Qwen3-0.6B", {"gpus_per_node": 4}, {}),
    "pbspro_directives": ("pbspro", "single-gpu", "Qwen3-0.6B",
                          {**POLARIS, "skip_directives": ["-k", "-l place"],
                           "extra_directives": ["-l debug=true", "#PBS -m abe"]},
                          {"mem": "64G", "time-limit": "1-12:00:00", "queue": "preemptable"}),
    "torque_dp4_throughput": ("torque", "dp4-throughput", "Qwen3-VL-2B",
                              {"account": "dias01", "queue": "ProdQ", "gpus_per_node": 4,
                               "mem": "128G", "time_limit": "12:00:00"}, {}),
    "torque_single_gpu": ("torque", "single-gpu", "Qwen3-0.6B",
                          {"gpus_per_node": 1, "skip_directives": ["-j"],
                           "extra_directives": ["-m n"]}, {"cpus-per-task": 2}),
}


def render(case: str, **changes: object) -> str:
    dialect, preset, model, profile, overrides = GOLDEN_CASES[case]
    cluster = ClusterProfile(name="site", scheduler="pbs", pbs_dialect=dialect,
                             **{**profile, **changes})  # type: ignore[arg-type]
    plan = build(model=model, preset=load_preset(preset), cluster=cluster,
                 name=case.replace("_", "-"), overrides=dict(overrides))
    return PBSScheduler(cluster, CannedTransport()).render(plan, RESULTS)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_scripts(case: str, update_golden: bool) -> None:
    script = render(case)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "bash", "-e", "SC2016", "-"], input=script,
                       text=True, check=True)
    assert_golden(GOLDEN / f"{case}.sh", script, update_golden)


def header(script: str) -> list[str]:
    return [ln for ln in script.splitlines() if ln.startswith("#PBS")]


def test_pbspro_header_has_what_a_polaris_like_site_requires() -> None:
    lines = header(render("pbspro_dp4_throughput"))
    assert lines == [
        "#PBS -N pbspro-dp4-throughput",
        "#PBS -l select=1:ncpus=64:ngpus=4",
        "#PBS -l place=scatter",
        "#PBS -l filesystems=home:eagle",
        "#PBS -l walltime=01:00:00",
        "#PBS -A myproj",
        "#PBS -q debug",
        "#PBS -k doe",
        "#PBS -j oe",
        f"#PBS -o {RESULTS}/hpclaunch_pbspro-dp4-throughput.pbs.out",
    ]


def test_torque_header_uses_nodes_ppn_gpus_and_no_pbspro_only_lines() -> None:
    lines = header(render("torque_dp4_throughput"))
    assert "#PBS -l nodes=1:gpus=4" in lines  # no ppn: the profile sets no cpus-per-task
    assert "#PBS -l nodes=1:ppn=8:gpus=4" in header(render("torque_dp4_throughput",
                                                           cpus_per_task=8))
    assert "#PBS -l mem=128gb" in lines and "#PBS -A dias01" in lines
    assert "#PBS -q ProdQ" in lines and "#PBS -l walltime=12:00:00" in lines
    assert not [ln for ln in lines if "select=" in ln or "-k " in ln or "place=" in ln]


def test_skip_and_extra_directives() -> None:
    lines = header(render("pbspro_directives"))
    assert "#PBS -k doe" not in lines and "#PBS -l place=scatter" not in lines
    assert lines[-2:] == ["#PBS -l debug=true", "#PBS -m abe"]
    assert "#PBS -l select=1:ncpus=64:ngpus=1:mem=64gb" in lines
    assert "#PBS -l walltime=36:00:00" in lines and "#PBS -q preemptable" in lines


def test_job_runs_from_pbs_o_workdir_and_records_the_pbs_job_id() -> None:
    script = render("torque_single_gpu")
    assert 'JOB_ID="${PBS_JOBID:-$$}"' in script
    workdir = script.index('cd "$PBS_O_WORKDIR"')
    assert script.rindex("#PBS") < workdir < script.index('cd "$RESULTS_DIR"')


@pytest.mark.parametrize(("changes", "words"), [
    ({"account": "my proj"}, "-A value 'my proj'"),
    ({"queue": "debug;rm -rf ~"}, "-q value"),
    ({"filesystems": "home:$(id)"}, "filesystems: expected a PBS resource value"),
    ({"filesystems": "home,walltime=999:00:00"}, "without commas"),
    ({"time_limit": "1 hour"}, "HH:MM:SS"),
    ({"mem": "lots"}, "mem: expected a memory size"),
    ({"partition": "gpu"}, "PBS has queues, not partitions"),
])
def test_unsafe_or_wrong_values_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(UserError, match=None) as err:
        render("pbspro_single_gpu", **changes)
    assert words in str(err.value)


def test_filesystems_is_refused_for_torque() -> None:
    with pytest.raises(UserError, match="filesystems is a PBS Pro resource"):
        render("torque_single_gpu", filesystems="home")


def test_results_dir_with_a_space_is_refused_before_anything_is_written() -> None:
    cluster = ClusterProfile(name="site", scheduler="pbs", pbs_dialect="torque")
    plan = build(model="Qwen3-0.6B", preset=load_preset("single-gpu"), cluster=cluster,
                 name="x")
    with pytest.raises(UserError, match="-o value"):
        PBSScheduler(cluster, CannedTransport()).render(plan, "/scratch/my results")  # type: ignore[arg-type]


def test_dry_run_under_home_shows_the_tilde_path() -> None:
    cluster = ClusterProfile(name="site", scheduler="pbs", pbs_dialect="pbspro", host="login")
    plan = build(model="Qwen3-0.6B", preset=load_preset("single-gpu"), cluster=cluster,
                 name="x")
    script = PBSScheduler(replace(cluster), CannedTransport()).render(  # type: ignore[arg-type]
        plan, "~/hpclaunch_results")
    assert "#PBS -o ~/hpclaunch_results/hpclaunch_x.pbs.out" in header(script)


# -- what status makes of a finished PBS job ------------------------------------------------

@pytest.mark.parametrize(("attrs", "exit_file", "state", "words"), [
    # Only "C" and the job's own exit file: a clean stop, or vLLM failing.
    ({"job_state": "C"}, "0", "ENDED", "vLLM exited normally"),
    ({"job_state": "C"}, "1", "FAILED", "vLLM exited with status 1"),
    # PBS killed it or never ran it: the server's words, even without an exit file.
    ({"job_state": "F", "Exit_status": "-29"}, None, "FAILED", "WALLTIME exceeded"),
    ({"job_state": "C", "exit_status": "-11"}, "143", "FAILED", "WALLTIME exceeded"),
    ({"job_state": "F", "Exit_status": "-1"}, None, "FAILED", "JOB_EXEC_FAIL1"),
    ({"job_state": "F", "Exit_status": "-27"}, None, "FAILED", "JOB_EXEC_KILL_MEM"),
])
def test_finished_pbs_job_becomes_ended_or_failed(tmp_path: Path, attrs: dict[str, str],
                                                    exit_file: str | None, state: str,
                                                    words: str) -> None:
    from hpclaunch.endpoints.status import observe
    from hpclaunch.registry import Record
    from hpclaunch.remote.transport import LocalTransport

    dialect = "pbspro" if attrs["job_state"] == "F" else "torque"
    rec = Record(name="e", model="m", model_id="m", served_model_name="e", preset="p",
                 cluster="site", scheduler="pbs", pbs_dialect=dialect, job_id="7.pbs",
                 results_dir=str(tmp_path))
    if exit_file is not None:
        (tmp_path / "e.exit").write_text(exit_file + "\n")
    obs = observe(rec, job_state(attrs, dialect), LocalTransport(), probe=False)
    assert obs.state == state and words in obs.reason


def test_node_host_is_the_first_host_of_pbs_nodefile(tmp_path: Path) -> None:
    line = next(ln for ln in render("pbspro_single_gpu").splitlines()
                if ln.startswith("NODE_HOST="))
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x3006c0s13b0n0.hsn.cm.polaris.alcf.anl.gov\n" * 4 + "x3006c0s19b0n0\n")
    run = ["bash", "-c", f'set -uo pipefail; {line}; echo "$NODE_HOST"']
    with_file = subprocess.run(run, env={"PATH": "/usr/bin:/bin", "PBS_NODEFILE": str(nodefile)},
                               capture_output=True, text=True, check=True).stdout.strip()
    assert with_file == "x3006c0s13b0n0.hsn.cm.polaris.alcf.anl.gov"
    without = subprocess.run(run, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert without and without == subprocess.run(
        ["bash", "-c", "hostname -f 2>/dev/null || hostname"], capture_output=True, text=True,
        check=True).stdout.strip()


def test_no_cpu_count_is_invented_when_the_profile_sets_none() -> None:
    """A fixed 4 CPUs per GPU asked a 4-GPU job for 16 CPUs on nodes with fewer, and it never
    started: without cpus-per-task the chunk has no ncpus and the script says why."""
    script = render("pbspro_single_gpu", gpus_per_node=4)
    assert "#PBS -l select=1:ngpus=1" in header(script)
    assert "# Note: ncpus is left to the queue's default (default_chunk.ncpus)" in script
    chosen = render("pbspro_single_gpu", cpus_per_task=16)
    assert "#PBS -l select=1:ncpus=16:ngpus=1" in header(chosen) and "# Note" not in chosen
    torque = render("torque_dp4_throughput")
    assert "# Note: ppn is left to the queue's default" in torque


# -- states that cannot be read, mixed output, jobs that vanish --------------------------------

def test_a_record_whose_job_state_cannot_be_read_is_unknown_not_running() -> None:
    text = sample("pbspro_qstat_f_1.txt").replace("    job_state = R\n", "", 1)
    assert "job_state" not in parse_qstat_text(text)["69301.mycluster"]
    sched = scheduler("pbspro", ok(text))
    sched._json = False
    found = sched.states(["69301.mycluster"])["69301.mycluster"]
    assert found.state == UNKNOWN and not found.left_queue
    assert "no readable job_state" in found.reason and "asking again" in found.reason
    odd = job_state({"job_state": "Z"}, "pbspro")
    assert odd.state == UNKNOWN and "unknown PBS job_state 'Z'" in odd.reason


def test_an_unknown_state_keeps_the_endpoint_and_reports_it(tmp_path: Path) -> None:
    from hpclaunch.endpoints.status import apply, observe
    from hpclaunch.registry import READY, Record
    from hpclaunch.remote.transport import LocalTransport

    rec = Record(name="e", model="m", model_id="m", served_model_name="e", preset="p",
                 cluster="site", scheduler="pbs", pbs_dialect="pbspro", job_id="7.pbs",
                 results_dir=str(tmp_path), state=READY, host="x1", port=8000)
    obs = observe(rec, job_state({}, "pbspro"), LocalTransport(), probe=False)
    assert obs.state == "UNKNOWN" and "no readable job_state" in obs.reason
    changes = apply(rec, obs)
    assert changes["state"] == "UNKNOWN" and "ended" not in changes
    assert "host" not in changes and "port" not in changes  # last known address kept


@pytest.mark.parametrize("section", ["mixed table and JSON without Jobs (verbatim from the PR)",
                                     "table, JSON with the job, stray line after (built)"])
def test_openpbs_mixed_table_and_json_keeps_a_running_job_running(section: str) -> None:
    text = sections("openpbs_qstat_fF_json_mixed.txt")[section]
    sched = scheduler("pbspro", ok(text))
    states = sched.states(["2000.VMa"])
    assert states["2000.VMa"].state == RUNNING and states["2000.VMa"].native_state == "R"
    assert sched.transport.calls == [["qstat", "-f", "-x", "-F", "json", "2000.VMa"]]


def test_mixed_output_prefers_the_json_and_shows_the_pending_reason() -> None:
    text = sections("openpbs_qstat_fF_json_mixed.txt")[
        "table, JSON with the job, stray line after (built)"]
    jobs = parse_qstat_json(text)
    assert jobs["2001.VMa"]["Job_Name"] == "STDIN"  # from the JSON, not the table row
    found = match_jobs(jobs, ["2001.VMa"], "pbspro")["2001.VMa"]
    assert found.state == QUEUED
    assert found.reason == "Not Running: Insufficient amount of resource: ngpus (R: 4 A: 0 T: 4)"


def test_tables_are_read_by_column_whatever_the_format() -> None:
    table = sections("torque_qstat_table_1.txt")
    assert parse_qstat_table(table["(a) qstat -u wangq"]) == {"3754123.mskcc-fe1.loca": "R"}
    assert parse_qstat_table(table["(b) qstat -n1 (array subjobs, state C and Q)"]) == {
        "272[0].pitzer-batch.te": "C", "272[1].pitzer-batch.te": "Q"}


def test_pending_reason_from_job_comment_when_there_is_no_comment() -> None:
    found = job_state({"job_state": "Q", "Job_comment": "Not Running: queue debug is at its "
                       "max_run limit"}, "torque")
    assert found.reason == "Not Running: queue debug is at its max_run limit"


def _vanished(tmp_path: Path, scheduler_name: str, **fields: Any) -> Observation:
    """What a refresh makes of a job the scheduler no longer lists."""
    from hpclaunch.endpoints.status import observe
    from hpclaunch.registry import Record
    from hpclaunch.remote.transport import LocalTransport
    from hpclaunch.schedulers.base import MISSING, JobState

    rec = Record(name="e", model="m", model_id="m", served_model_name="e", preset="p",
                 cluster="site", scheduler=scheduler_name, job_id="7", results_dir=str(tmp_path),
                 **fields)
    return observe(rec, JobState(MISSING), LocalTransport(), probe=False)


def test_a_job_missing_once_without_exit_file_is_unknown_not_failed(tmp_path: Path) -> None:
    import time

    from hpclaunch.endpoints.status import MISSING_GRACE_S

    first = _vanished(tmp_path, "pbs", state="READY")
    assert first.state == "UNKNOWN" and "asking again" in first.reason
    recent = _vanished(tmp_path, "pbs", state="UNKNOWN", reason=first.reason,
                       updated=time.time() - 5)
    assert recent.state == "UNKNOWN"
    long_gone = _vanished(tmp_path, "pbs", state="UNKNOWN", reason=first.reason,
                          updated=time.time() - MISSING_GRACE_S - 1)
    assert long_gone.state == "FAILED"
    assert "left no exit status" in long_gone.reason
    # The exit file decides at once; and `ps` on this machine is not flaky.
    (tmp_path / "e.exit").write_text("0\n")
    assert _vanished(tmp_path, "pbs", state="READY").state == "ENDED"
    (tmp_path / "e.exit").unlink()
    assert _vanished(tmp_path, "local", state="READY").state == "FAILED"
