"""``hpclaunch cluster check``: what a cluster offers, what its profile needs, how to fix the gap.

One remote command gathers the facts (scheduler commands and versions, partitions or
queues, the GPUs the scheduler reports, the vLLM executable or a container runtime,
the results directory's free space) so a check costs one round trip on one connection.
:func:`parse_facts` turns its output into :class:`SiteFacts` (a pure function, tested
on canned text) and :func:`assess` compares them with the profile, one row per item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.remote.transport import Transport

# $1: results dir (absolute), $2: the vLLM (or python) executable to look for. The
# profile's setup lines run first, in a subshell, as they will in the job.
PROBE = r"""
r=$1; v=$2
printf 'host %s\n' "$(uname -n 2>/dev/null)"
for c in sbatch sinfo squeue sacct scancel qsub qstat qdel pbsnodes apptainer singularity \
         podman docker enroot nvidia-smi; do
  p=$(command -v -- "$c" 2>/dev/null) && printf 'which %s %s\n' "$c" "$p"
done
if command -v sbatch >/dev/null 2>&1; then
  printf 'version sbatch %s\n' "$(sbatch --version 2>&1 | head -n 1)"
  sinfo -h -o 'partition %P %a %D %G' 2>/dev/null | head -n 200
fi
if command -v qstat >/dev/null 2>&1; then
  printf 'version qstat %s\n' "$(qstat --version 2>&1 | head -n 1)"
  qstat -Q 2>/dev/null | awk 'NR > 2 && NF { print "queue", $1 }' | head -n 200
fi
(
@SETUP@
p=$(command -v -- "$v" 2>/dev/null) && printf 'exe %s\n' "$p" &&
  printf 'exe-version %s\n' "$(timeout 60 "$v" --version 2>&1 | tail -n 1)"
) 2>/dev/null
d=$r
while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
printf 'results-parent %s\n' "$d"
if [ -w "$d" ]; then echo 'results-writable yes'; else echo 'results-writable no'; fi
df -Pk -- "$d" 2>/dev/null |
  awk 'NR == 2 { print "results-free-kb", $4; print "results-mount", $6 }'
"""

# Container runtimes, and how vllm_command runs vLLM with each.
RUNTIMES = {
    "apptainer": "[apptainer, exec, --nv, IMAGE.sif, vllm]",
    "singularity": "[singularity, exec, --nv, IMAGE.sif, vllm]",
    "podman": "[podman, run, --rm, --device, nvidia.com/gpu=all, --network, host, IMAGE, vllm]",
    "docker": "[docker, run, --rm, --gpus, all, --network, host, IMAGE, vllm]",
    "enroot": "[enroot, start, --rw, CONTAINER, vllm]",
}


@dataclass
class SiteFacts:
    """What the login node reported."""

    host: str = ""
    which: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # partition -> gres strings of its node groups; the default partition is marked.
    partitions: dict[str, list[str]] = field(default_factory=dict)
    default_partition: str | None = None
    queues: list[str] = field(default_factory=list)
    exe: str | None = None
    exe_version: str = ""
    results_parent: str = ""
    results_writable: bool = False
    results_free_kb: int | None = None
    results_mount: str = ""

    def gpu_types(self, partition: str | None = None) -> dict[str, int]:
        """GPU type -> GPUs per node from the gres of ``partition`` (all when None);
        an untyped ``gpu:4`` is type ``""``."""
        found: dict[str, int] = {}
        for name, gres_list in self.partitions.items():
            if partition and name != partition:
                continue
            for gres in gres_list:
                for item in gres.split(","):
                    parts = item.split("(")[0].split(":")
                    if parts[0] != "gpu" or len(parts) < 2:
                        continue
                    kind, count = (parts[1], parts[2]) if len(parts) > 2 else ("", parts[1])
                    if count.isdigit():
                        found[kind] = max(found.get(kind, 0), int(count))
        return found


def parse_facts(text: str) -> SiteFacts:
    facts = SiteFacts()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "host":
            facts.host = rest
        elif key == "which" and " " in rest:
            name, path = rest.split(" ", 1)
            facts.which[name] = path
        elif key == "version" and " " in rest:
            name, version = rest.split(" ", 1)
            facts.versions[name] = version.strip()
        elif key == "partition" and rest.split():
            fields = rest.split()
            name = fields[0].rstrip("*")
            if fields[0].endswith("*"):
                facts.default_partition = name
            facts.partitions.setdefault(name, []).append(fields[3] if len(fields) > 3 else "")
        elif key == "queue" and rest:
            facts.queues.append(rest.strip())
        elif key == "exe":
            facts.exe = rest
        elif key == "exe-version":
            facts.exe_version = rest.strip()
        elif key == "results-parent":
            facts.results_parent = rest
        elif key == "results-writable":
            facts.results_writable = rest.strip() == "yes"
        elif key == "results-free-kb" and rest.strip().isdigit():
            facts.results_free_kb = int(rest)
        elif key == "results-mount":
            facts.results_mount = rest
    return facts


@dataclass(frozen=True)
class Row:
    status: str  # "ok", "warn", "missing" or "note"
    item: str
    detail: str
    fix: str = ""


def gather(profile: ClusterProfile, transport: Transport, results_dir: str) -> tuple[
        SiteFacts, float]:
    """Run the probe (one command); the facts and the seconds it took."""
    exe = profile.python if profile.simulate else (profile.vllm_command or ["vllm"])[0]
    script = PROBE.replace("@SETUP@", "\n".join(profile.setup) or ":")
    started = time.monotonic()
    result = transport.run(["sh", "-c", script, "sh", results_dir, exe], timeout=180)
    if result.returncode != 0 and not result.stdout:
        raise UserError(f"the check script failed on {profile.name} "
                        f"(exit {result.returncode}): {result.stderr.strip()[:200]}")
    return parse_facts(result.stdout), time.monotonic() - started


def assess(profile: ClusterProfile, facts: SiteFacts, results_dir: str) -> list[Row]:
    """One row per thing the profile needs, with a fix for each one that is missing."""
    rows = _scheduler_rows(profile, facts)
    rows += _exe_rows(profile, facts)
    rows += _results_rows(facts, results_dir)
    return rows


def _scheduler_rows(profile: ClusterProfile, facts: SiteFacts) -> list[Row]:
    rows: list[Row] = []
    if profile.scheduler == "local":
        return [Row("ok", "scheduler", "local (jobs run on this host, no queue)")]
    needed = {"slurm": ["sbatch", "squeue", "scancel"], "pbs": ["qsub", "qstat", "qdel"]}
    names = needed[profile.scheduler]
    absent = [c for c in names if c not in facts.which]
    other = "pbs" if profile.scheduler == "slurm" else "slurm"
    if absent:
        hint = (f"; {needed[other][0]} is there: set scheduler: {other}"
                if needed[other][0] in facts.which else "")
        rows.append(Row("missing", "scheduler", f"{', '.join(absent)} not on PATH for "
                        "non-interactive ssh", "load the scheduler's module where "
                        "non-interactive shells see it (~/.bashrc, above any "
                        f"'interactive only' return){hint}"))
    else:
        version = facts.versions.get("sbatch" if profile.scheduler == "slurm" else "qstat", "")
        rows.append(Row("ok", names[0], f"{facts.which[names[0]]} ({version or 'version ?'})"))
    if profile.scheduler == "slurm" and not absent:
        rows += _partition_rows(profile, facts)
    if profile.scheduler == "pbs" and not absent:
        queues = ", ".join(facts.queues) or "none reported"
        if profile.queue and profile.queue not in facts.queues and facts.queues:
            rows.append(Row("missing", "queue", f"{profile.queue} is not among: {queues}",
                            f"set queue: one of {queues}"))
        else:
            rows.append(Row("ok", "queues", queues))
    return rows


def _partition_rows(profile: ClusterProfile, facts: SiteFacts) -> list[Row]:
    rows: list[Row] = []
    names = [f"{p} (default)" if p == facts.default_partition else p for p in facts.partitions]
    listing = ", ".join(names) or "none reported"
    if profile.partition and profile.partition not in facts.partitions:
        rows.append(Row("missing", "partition", f"{profile.partition} is not among: {listing}",
                        f"set partition: one of {', '.join(facts.partitions)}"))
    else:
        rows.append(Row("ok", "partitions", listing))
    # An unknown partition was reported above; judge GPUs over the known ones then.
    partition = profile.partition if profile.partition in facts.partitions else \
        facts.default_partition
    gpus = facts.gpu_types(partition)
    where = partition or "any partition"
    shown = ", ".join(f"{k or 'untyped'} x{n}" for k, n in sorted(gpus.items()))
    if not gpus:
        rows.append(Row("missing", "gpus", f"the scheduler reports no GPU gres in {where}",
                        "pick a GPU partition (partition: ...), or ask the admins how GPUs "
                        "are requested there (gpu_directive: gpus-per-node?)"))
    elif profile.gpu_type and profile.gpu_type not in gpus:
        rows.append(Row("missing", "gpu-type", f"{profile.gpu_type} is not among: {shown}",
                        f"set gpu_type: one of {', '.join(k for k in gpus if k)} (or remove it)"))
    else:
        rows.append(Row("ok", "gpus", f"{shown} per node in {where}"))
    return rows


def _exe_rows(profile: ClusterProfile, facts: SiteFacts) -> list[Row]:
    runtimes = [r for r in RUNTIMES if r in facts.which]
    if profile.simulate:
        if facts.exe:
            return [Row("ok", "python", f"{facts.exe} (simulate: the stand-in runs, no vLLM)")]
        return [Row("missing", "python", f"{profile.python} not found (simulate: true runs "
                    "the stand-in with it)", "set python: to a Python 3 on the cluster")]
    exe = (profile.vllm_command or ["vllm"])[0]
    if facts.exe:
        return [Row("ok", "vllm", f"{facts.exe} ({facts.exe_version or 'version ?'})")]
    if runtimes:
        return [Row("warn", "vllm", f"{exe} not found, but {', '.join(runtimes)} is",
                    f"to run vLLM in a container set vllm_command: {RUNTIMES[runtimes[0]]}")]
    return [Row("missing", "vllm", f"{exe} not found on the login node (after setup lines)",
                "add the module load / conda activate lines to setup:, or set vllm_command:")]


def _results_rows(facts: SiteFacts, results_dir: str) -> list[Row]:
    if not facts.results_parent:
        return [Row("missing", "results-dir", f"{results_dir}: no answer about it", "")]
    free = (f"{facts.results_free_kb / 1024**2:.1f} GiB free on {facts.results_mount}"
            if facts.results_free_kb is not None else "free space unknown")
    exists = facts.results_parent.rstrip("/") == results_dir.rstrip("/")
    state = "exists" if exists else f"will be created under {facts.results_parent}"
    if not facts.results_writable:
        return [Row("missing", "results-dir", f"{results_dir}: {facts.results_parent} is not "
                    "writable", "set results_dir: to a directory you can write on a "
                    "filesystem the compute nodes mount (scratch, project space)")]
    low = facts.results_free_kb is not None and facts.results_free_kb < 1024**2
    return [Row("warn" if low else "ok", "results-dir", f"{results_dir} ({state}; {free})",
                "free some space: logs and endpoint files go there" if low else ""),
            Row("note", "shared", "not checked: that compute nodes see the results dir "
                "(if they do not, hpclaunch wait never sees the job's log)")]
