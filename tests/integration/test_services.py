"""The real services that the integration tests run on, as ``scripts/services.sh`` starts them.

Checks that the single-node Slurm, the torque ``qsub``/``qstat``/``qdel`` wrappers over it (with
the PBS_* TaskProlog) and the loopback sshd behave the way the rest of the suite relies on. Every
test here submits real jobs or opens real connections: nothing is faked.

A service that is not up fails the test under ``CI=true`` and skips it elsewhere; either way the
message names the command that starts it. The ``HPCLAUNCH_TEST_*`` variables printed by
``bash scripts/services.sh env`` are used when set; the defaults match that script.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_HINT = "bash scripts/services.sh start"

PARTITION = os.environ.get("HPCLAUNCH_TEST_SLURM_PARTITION", "debug")
GPU_PARTITION = os.environ.get("HPCLAUNCH_TEST_SLURM_GPU_PARTITION", "gpu")
SSH_HOST = os.environ.get("HPCLAUNCH_TEST_SSH_HOST", "127.0.0.1")
SSH_PORT = int(os.environ.get("HPCLAUNCH_TEST_SSH_PORT", "2222"))
SSH_USER = os.environ.get("HPCLAUNCH_TEST_SSH_USER", "root")
SSH_KEY = os.environ.get("HPCLAUNCH_TEST_SSH_KEY", "/etc/ssh/hpclaunch-test/id_ed25519")
SSH_KNOWN_HOSTS = os.environ.get(
    "HPCLAUNCH_TEST_SSH_KNOWN_HOSTS", "/etc/ssh/hpclaunch-test/known_hosts"
)

UP_STATES = {"idle", "mixed", "allocated", "completing"}
TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "PREEMPTED",
}  # fmt: skip
JOB_TIMEOUT_S = 60.0


def _unavailable(service: str, why: str) -> None:
    """Fail under CI (a missing service is a broken setup there), skip elsewhere."""
    message = f"{service} is not up ({why}); start it with `{START_HINT} {service}` in {REPO}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 30.0, **kwargs):
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def _job_fields(job_id: str) -> dict[str, str] | None:
    """``scontrol show job -o`` as a dict, or None once Slurm no longer knows the job."""
    proc = _run(["scontrol", "show", "job", "-o", job_id])
    if proc.returncode != 0:
        return None
    return dict(re.findall(r"(\S+?)=(\S*)", proc.stdout))


def _sacct_state(job_id: str) -> str | None:
    proc = _run(["sacct", "-c", "-P", "-n", "-j", job_id, "-o", "jobid,state,exitcode"])
    for line in proc.stdout.splitlines():
        jid, state, _exit = line.split("|")
        if jid == job_id:
            return state.split()[0]
    return None


def _wait_state(job_id: str, wanted: set[str], timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
    """Poll ``scontrol show job`` until the job's state is in ``wanted``; return its fields."""
    deadline = time.monotonic() + timeout
    fields: dict[str, str] | None = None
    while time.monotonic() < deadline:
        fields = _job_fields(job_id)
        if fields is not None and fields.get("JobState") in wanted:
            return fields
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not in {sorted(wanted)} after {timeout} s: {fields}")


def _wait_done(job_id: str) -> dict[str, str]:
    return _wait_state(job_id, TERMINAL_STATES)


def _read_when_present(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.read_text()


def _sbatch(tmp_path: Path, *args: str) -> str:
    proc = _run(["sbatch", "--parsable", f"--chdir={tmp_path}", *args], cwd=tmp_path)
    assert proc.returncode == 0, f"sbatch {args} exited {proc.returncode}: {proc.stderr}"
    job_id = proc.stdout.strip()
    assert re.fullmatch(r"\d+", job_id), f"sbatch --parsable printed {proc.stdout!r}"
    return job_id


@pytest.fixture(scope="module")
def slurm() -> None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        _unavailable("slurm", "sbatch/sinfo are not installed")
    proc = _run(["sinfo", "-h", "-o", "%T"])
    states = {s.rstrip("*~#!%$@^-") for s in proc.stdout.split()}
    if proc.returncode != 0 or not states & UP_STATES:
        output = (proc.stdout + proc.stderr).strip()
        _unavailable("slurm", f"sinfo -h -o %T exited {proc.returncode}: {output!r}")


@pytest.fixture(scope="module")
def pbs(slurm: None) -> None:
    missing = [cmd for cmd in ("qsub", "qstat", "qdel") if shutil.which(cmd) is None]
    if missing:
        _unavailable("slurm", f"{', '.join(missing)} not installed (package slurm-wlm-torque)")


@pytest.fixture(scope="module")
def ssh_server() -> None:
    for path in (SSH_KEY, SSH_KNOWN_HOSTS):
        if not Path(path).is_file():
            _unavailable("sshd", f"{path} does not exist")
    try:
        socket.create_connection((SSH_HOST, SSH_PORT), timeout=3).close()
    except OSError as exc:
        _unavailable("sshd", f"nothing listens on {SSH_HOST}:{SSH_PORT}: {exc}")


def _ssh_client(known_hosts: str = SSH_KNOWN_HOSTS):
    import paramiko  # a dependency of hpclaunch itself
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        SSH_HOST,
        port=SSH_PORT,
        username=SSH_USER,
        key_filename=SSH_KEY,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def _ssh_exec(client, command: str) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=30)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


# ------------------------------------------------------------------------------------------ slurm


@pytest.mark.slurm
def test_sbatch_parsable_gives_bare_id_and_job_completes(slurm, tmp_path):
    job_id = _sbatch(tmp_path, "-o", "out.%j", "--wrap", "echo hi")
    fields = _wait_done(job_id)
    assert fields["JobState"] == "COMPLETED", fields
    assert fields["ExitCode"] == "0:0"
    assert _read_when_present(tmp_path / f"out.{job_id}") == "hi\n"
    # Without slurmdbd, `sacct -c` reads the jobcomp/filetxt log (written as the job ends).
    deadline = time.monotonic() + 10
    while _sacct_state(job_id) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _sacct_state(job_id) == "COMPLETED"


@pytest.mark.slurm
def test_failed_job_is_failed_with_exit_code(slurm, tmp_path):
    job_id = _sbatch(tmp_path, "-o", "/dev/null", "--wrap", "exit 3")
    fields = _wait_done(job_id)
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "3:0")


@pytest.mark.slurm
def test_gres_gpu_job_sees_four_gpus(slurm, tmp_path):
    job_id = _sbatch(
        tmp_path, "--gres=gpu:4", "-o", "out.%j", "--wrap",
        "echo ON_NODE=${SLURM_GPUS_ON_NODE:-} JOB_GPUS=${SLURM_JOB_GPUS:-}",
    )  # fmt: skip
    assert _wait_done(job_id)["JobState"] == "COMPLETED"
    out = _read_when_present(tmp_path / f"out.{job_id}")
    assert "ON_NODE=4" in out or re.search(r"JOB_GPUS=0,1,2,3\b", out), out


@pytest.mark.slurm
def test_gpus_per_node_job_runs_in_gpu_partition(slurm, tmp_path):
    job_id = _sbatch(
        tmp_path, "--gpus-per-node=4", "-p", GPU_PARTITION, "-o", "out.%j", "--wrap",
        "echo ON_NODE=${SLURM_GPUS_ON_NODE:-} PART=$SLURM_JOB_PARTITION",
    )  # fmt: skip
    assert _wait_done(job_id)["JobState"] == "COMPLETED"
    out = _read_when_present(tmp_path / f"out.{job_id}")
    assert f"ON_NODE=4 PART={GPU_PARTITION}" in out


@pytest.mark.slurm
def test_more_gpus_than_the_node_has_is_rejected_at_submit(slurm, tmp_path):
    proc = _run(["sbatch", "--parsable", "--gres=gpu:5", "--wrap", "true"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Requested node configuration is not available" in proc.stderr


@pytest.mark.slurm
def test_advertised_cpus_and_a_bigger_job_stays_pending(slurm, tmp_path):
    proc = _run(["sinfo", "-h", "-p", PARTITION, "-o", "%c"])
    cpus = int(proc.stdout.split()[0])
    assert cpus == int(os.environ.get("HPCLAUNCH_TEST_SLURM_CPUS", cpus))
    assert cpus >= (os.cpu_count() or 1)
    job_id = _sbatch(tmp_path, f"--cpus-per-task={cpus + 1}", "-o", "/dev/null", "--wrap", "true")
    try:
        time.sleep(1.0)  # several scheduling passes
        fields = _job_fields(job_id)
        assert fields is not None
        assert (fields["JobState"], fields["Reason"]) == ("PENDING", "PartitionConfig"), fields
    finally:
        _run(["scancel", job_id])
    assert _wait_done(job_id)["JobState"] == "CANCELLED"


@pytest.mark.slurm
def test_plain_slurm_jobs_get_no_pbs_variables(slurm, tmp_path):
    job_id = _sbatch(
        tmp_path, "-o", "out.%j", "--wrap",
        "env | grep ^PBS_; srun bash -c 'env | grep ^PBS_ || true'; echo end",
    )  # fmt: skip
    assert _wait_done(job_id)["JobState"] == "COMPLETED"
    assert _read_when_present(tmp_path / f"out.{job_id}") == "end\n"


# -------------------------------------------------------------------------------------------- pbs

PBS_SCRIPT = """\
#!/bin/bash
#PBS -N hpcl-svc
#PBS -l walltime=00:05:00
echo "PBS_JOBID=$PBS_JOBID"
echo "PBS_JOBNAME=$PBS_JOBNAME"
echo "PBS_O_WORKDIR=$PBS_O_WORKDIR"
echo "PBS_NP=$PBS_NP"
echo "PBS_QUEUE=$PBS_QUEUE"
echo "PBS_NODEFILE=$PBS_NODEFILE"
echo "NODES=$(tr '\\n' ' ' < "$PBS_NODEFILE")"
{command}
"""


def _qsub(tmp_path: Path, command: str = "true", *args: str) -> tuple[str, Path]:
    script = tmp_path / "job.sh"
    script.write_text(PBS_SCRIPT.format(command=command))
    proc = _run(["qsub", *args, script.name], cwd=tmp_path)
    assert proc.returncode == 0, f"qsub exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    assert re.fullmatch(r"\d+\n", proc.stdout), f"qsub printed {proc.stdout!r}"
    return proc.stdout.strip(), script


def _qstat_f(job_id: str) -> dict[str, str]:
    """Parse ``qstat -f`` text: ``Job Id: N`` then indented ``key = value`` lines."""
    proc = _run(["qstat", "-f", job_id])
    assert proc.returncode == 0, f"qstat -f {job_id} exited {proc.returncode}: {proc.stderr}"
    lines = proc.stdout.splitlines()
    header = re.fullmatch(r"Job Id:\s*(\S+)", lines[0])
    assert header, proc.stdout
    attrs = {"Job Id": header.group(1)}
    for line in lines[1:]:
        if not line.strip():
            continue
        key, sep, value = line.strip().partition(" = ")
        assert sep, f"unparsed qstat -f line {line!r} in:\n{proc.stdout}"
        attrs[key] = value
    return attrs


@pytest.mark.pbs
@pytest.mark.slurm
def test_qsub_gives_bare_number_and_job_looks_pbs_shaped(pbs, tmp_path):
    job_id, script = _qsub(tmp_path, "srun bash -c 'echo STEP_PBS_JOBID=$PBS_JOBID'")
    fields = _wait_done(job_id)
    assert fields["JobState"] == "COMPLETED", fields
    assert fields["TimeLimit"] == "00:05:00"  # from the #PBS line, read by sbatch
    assert fields["JobName"] == "hpcl-svc"
    # qsub always passes `-o <script>.o<id>`.
    out = _read_when_present(tmp_path / f"{script.name}.o{job_id}")
    env = dict(line.split("=", 1) for line in out.splitlines())
    hostname = _run(["scontrol", "show", "hostnames", fields["NodeList"]]).stdout.split()
    assert env["PBS_JOBID"] == job_id
    assert env["PBS_JOBNAME"] == "hpcl-svc"
    assert env["PBS_O_WORKDIR"] == str(tmp_path)
    assert env["PBS_NP"] == "1"
    assert env["PBS_QUEUE"] == PARTITION
    assert env["PBS_NODEFILE"].endswith(f".{job_id}")
    assert env["NODES"].split() == hostname
    assert env["STEP_PBS_JOBID"] == job_id  # steps inherit the batch script's variables


@pytest.mark.pbs
@pytest.mark.slurm
def test_qstat_f_parses_and_qdel_cancels(pbs, tmp_path):
    job_id, _script = _qsub(tmp_path, "sleep 120")
    try:
        _wait_state(job_id, {"RUNNING"})
        attrs = _qstat_f(job_id)
        assert attrs["Job Id"] == job_id
        assert attrs["job_state"] == "R"
        assert attrs["Job_Name"] == "hpcl-svc"
        assert attrs["queue"] == PARTITION
        assert attrs["Resource_List.walltime"] == "00:05:00"
        assert re.fullmatch(r"\S+/\d+", attrs["exec_host"]), attrs

        proc = _run(["qdel", job_id])
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    finally:
        _run(["scancel", job_id])
    assert _wait_done(job_id)["JobState"] == "CANCELLED"
    # Finished jobs all read C, whatever their outcome; qdel of a finished job exits 1.
    assert _qstat_f(job_id)["job_state"] == "C"
    assert _run(["qdel", job_id]).returncode == 1


@pytest.mark.pbs
@pytest.mark.slurm
def test_qstat_of_unknown_job_exits_153(pbs):
    proc = _run(["qstat", "-f", "987654321"])
    assert (proc.returncode, proc.stdout) == (153, "")


# -------------------------------------------------------------------------------------------- ssh


@pytest.mark.ssh
def test_paramiko_connects_with_known_hosts_and_reject_policy(ssh_server):
    client = _ssh_client()
    try:
        status, out, err = _ssh_exec(client, "hostname")
    finally:
        client.close()
    assert (status, err) == (0, "")
    assert out.strip() == socket.gethostname()


@pytest.mark.ssh
def test_paramiko_refuses_a_host_missing_from_known_hosts(ssh_server, tmp_path):
    import paramiko  # a dependency of hpclaunch itself
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _ssh_client(str(empty))


@pytest.mark.ssh
def test_sftp_reads_a_file_by_offset(ssh_server, tmp_path):
    log = tmp_path / "server.log"
    log.write_text("starting\nUvicorn running on http://127.0.0.1:8000\n")
    client = _ssh_client()
    try:
        with client.open_sftp() as sftp, sftp.open(str(log)) as remote:
            remote.seek(len("starting\n"))
            assert remote.read().decode() == "Uvicorn running on http://127.0.0.1:8000\n"
    finally:
        client.close()


@pytest.mark.ssh
def test_openssh_client_uses_the_same_key_and_known_hosts(ssh_server):
    proc = _run(
        [
            "ssh", "-F", "/dev/null", "-i", SSH_KEY, "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={SSH_KNOWN_HOSTS}", "-p", str(SSH_PORT),
            f"{SSH_USER}@{SSH_HOST}", "echo ok",
        ]
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


@pytest.mark.ssh
@pytest.mark.slurm
def test_sbatch_and_scontrol_work_over_ssh(ssh_server, slurm, tmp_path):
    client = _ssh_client()
    try:
        status, out, err = _ssh_exec(
            client, f"cd {tmp_path} && sbatch --parsable -o /dev/null --wrap 'echo hi'"
        )
        assert status == 0, err
        job_id = out.strip()
        assert re.fullmatch(r"\d+", job_id), out
        assert _wait_done(job_id)["JobState"] == "COMPLETED"
        status, out, _err = _ssh_exec(client, f"scontrol show job -o {job_id}")
        assert status == 0
        assert "JobState=COMPLETED" in out
    finally:
        client.close()
