"""PBS Pro / OpenPBS and Torque: ``qsub``, one ``qstat -f`` for every job, ``qdel``.

The dialect comes from the cluster profile (``pbs_dialect``). Both print a job id
such as ``1234.pbs01`` on qsub's stdout and describe jobs in ``qstat -f`` text;
PBS Pro 18.1+ also speaks JSON (``qstat -f -x -F json``, ``-x`` adding finished
jobs), which is tried first and dropped for the rest of this instance's life
when qstat refuses it. Most ``qstat`` show a single letter for every finished
job, success and failure alike, so the job's own exit file and log decide
ENDED or FAILED (see :mod:`hpclaunch.endpoints.status`); ``Exit_status``, when qstat has
it, only refines the reason. Samples of every format, with their sources, are
in ``tests/data/pbs/``.
"""

from __future__ import annotations

import json
import logging
import re
import signal
from typing import TYPE_CHECKING, Any, ClassVar

from hpclaunch.errors import UserError
from hpclaunch.schedulers.base import (
    DONE,
    QUEUED,
    RUNNING,
    UNKNOWN,
    JobState,
    Scheduler,
    directive_value,
)
from hpclaunch.validate import units

if TYPE_CHECKING:
    from hpclaunch.planning.plan import Plan
    from hpclaunch.remote.transport import Result

log = logging.getLogger(__name__)

# When neither the preset nor the profile sets cpus-per-task, the select chunk carries
# no ncpus and the queue's default (default_chunk.ncpus, often 1) applies: a fixed
# "4 per GPU" asked a 4-GPU job for 16 CPUs on nodes with fewer, and it never started.
# PBS Pro and OpenPBS take a chunk without ncpus (select=1:ngpus=4), Torque a nodes spec
# without ppn. The rendered script says so.
CPU_NOTE = ("{what} is left to the queue's default ({where}); vLLM wants a few cores per "
            "GPU: set cpus-per-task in the cluster profile (or --set cpus-per-task=N) to ask "
            "for them")
CPU_DEFAULTS = {"pbspro": {"what": "ncpus", "where": "default_chunk.ncpus"},
                "torque": {"what": "ppn", "where": "resources_default.nodes, else 1"}}
QUEUED_STATES = {"Q": "queued", "H": "held", "W": "waiting for its start time",
                 "T": "in transit", "S": "suspended", "U": "suspended (workstation busy)",
                 "M": "moved to another server"}
RUNNING_STATES = {"R", "E", "B"}  # E = exiting: vLLM may still be writing its last lines
DONE_STATES = {"F", "C", "X"}
# Negative exit statuses are the server's JOB_EXEC_* codes (openpbs job.h, Torque 6).
EXEC_CODES = {
    "pbspro": {-1: "FAIL1", -2: "FAIL2", -3: "RETRY", -4: "INITABT", -5: "INITRST",
               -6: "INITRMG", -7: "BADRESRT", -10: "FAILUID", -11: "RERUN", -20: "RERUN_MS_FAIL",
               -24: "KILL_NCPUS_BURST", -25: "KILL_NCPUS_SUM", -26: "KILL_VMEM",
               -27: "KILL_MEM", -28: "KILL_CPUT", -29: "KILL_WALLTIME"},
    "torque": {-1: "FAIL1", -2: "FAIL2", -3: "RETRY", -4: "INITABT", -5: "INITRST",
               -6: "INITRMG", -7: "BADRESRT", -8: "CMDFAIL", -9: "STDOUTFAIL",
               -10: "OVERLIMIT_MEM", -11: "OVERLIMIT_WT", -12: "OVERLIMIT_CPUT"},
}
WALLTIME_CODES = {"pbspro": -29, "torque": -11}
# qdel exit codes for a job that already ended: unknown id (15001 % 256), PBS Pro
# history job (15139 % 256), and slurm-wlm-torque's silent 1.
GONE_CODES = {1, 35, 153}
GONE_WORDS = ("Unknown Job Id", "Job has finished", "invalid state for job - COMPLETE")
JOB_ID_LINE = re.compile(r"^Job Id:\s*(?P<id>\S+)\s*$")
ATTRIBUTE_LINE = re.compile(r"^(?P<indent>[ \t]+)(?P<key>[A-Za-z_][\w.]*) = ?(?P<value>.*)$")


class PBSScheduler(Scheduler):
    name: ClassVar[str] = "pbs"
    template: ClassVar[str] = "pbs.sh.j2"
    directive_prefix: ClassVar[str] = "#PBS"
    # "<seq>.<server>" (server may be a FQDN) or a bare "<seq>" (slurm-wlm-torque).
    job_id_regexp: ClassVar[str] = r"(?P<job_id>[0-9]+(?:\.[A-Za-z0-9][A-Za-z0-9_.-]*)?)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dialect = self.cluster.pbs_dialect
        if self.dialect not in EXEC_CODES:
            raise UserError(f"cluster {self.cluster.name!r}: pbs-dialect must be pbspro or "
                            f"torque, not {self.dialect!r}")
        self._json = self.dialect == "pbspro"  # until qstat refuses -F json


    # $PBS_NODEFILE has a line per CPU (Torque) or chunk: unique names, in order.
    node_list_command: ClassVar[str] = "awk '!seen[$0]++' \"$PBS_NODEFILE\""

    def node_launcher(self) -> str:
        """Torque's ``pbsdsh -h`` and PBS Pro's ``pbs_tmrsh`` (pbsdsh there takes only a node
        index) both start the task through the MOM, so ``qdel`` ends it on every node."""
        if self.dialect == "pbspro":
            return 'pbs_tmrsh "$1" /bin/bash "$2"'
        return 'pbsdsh -h "$1" /bin/bash "$2"'

    def template_context(self, plan: Plan) -> dict[str, Any]:
        notes = [] if self._cpus(plan) else [CPU_NOTE.format(**CPU_DEFAULTS[self.dialect])]
        return {"dialect": "PBS Pro" if self.dialect == "pbspro" else "Torque", "notes": notes}

    def _cpus(self, plan: Plan) -> Any:
        """CPUs per node the profile or ``--set`` asks for; None leaves the queue's default."""
        return plan.resources.get("cpus-per-task", self.cluster.cpus_per_task)

    def directives(self, plan: Plan) -> list[str]:
        """See :meth:`Scheduler.directives`; values are validated, never escaped."""
        cluster, res = self.cluster, plan.resources
        gpus = plan.gpus_per_node  # rendered with --simulate too: the job still asks for GPUs
        cpus = self._cpus(plan)
        mem = res.get("mem", cluster.mem)
        walltime = _walltime(res.get("time-limit") or cluster.time_limit)
        queue, account = res.get("queue", cluster.queue), res.get("account", cluster.account)
        filesystems = res.get("filesystems", cluster.filesystems)
        if res.get("partition", cluster.partition) and not queue:
            raise UserError("PBS has queues, not partitions: set queue (--set queue=NAME or "
                            "queue: in the cluster profile) instead of partition")
        lines: list[tuple[str, Any]] = [("-N", plan.name)]
        if self.dialect == "pbspro":
            chunk = f"{plan.nodes}{f':ncpus={cpus}' if cpus else ''}:ngpus={gpus}"
            if mem:
                chunk += f":mem={_memory(mem)}"
            lines += [("-l", f"select={chunk}"), ("-l", "place=scatter")]
            if filesystems:
                fs = units.check(filesystems, units.pbs_resource, "filesystems")
                lines.append(("-l", f"filesystems={fs}"))
        else:
            if filesystems:
                raise UserError("filesystems is a PBS Pro resource (ALCF); Torque has none: "
                                "remove it from the profile, or use pbs-dialect: pbspro")
            lines.append(("-l", f"nodes={plan.nodes}{f':ppn={cpus}' if cpus else ''}:gpus={gpus}"))
            if mem:
                lines.append(("-l", f"mem={_memory(mem)}"))
        if walltime:
            lines.append(("-l", f"walltime={walltime}"))
        lines += [("-A", account), ("-q", queue)]
        if self.dialect == "pbspro":
            lines.append(("-k", "doe"))  # write the output file directly, not at the end
        lines += [("-j", "oe"), ("-o", _output_path(plan.results_dir, plan.name))]
        return [f"#PBS {flag} {directive_value(flag, value)}" for flag, value in lines
                if value is not None and value != ""]

    def submit_argv(self, script_path: str) -> list[str]:
        # slurm-wlm-torque ignores `#PBS -o/-j` (and builds a shell string from its
        # arguments); on the command line both work everywhere.
        out = directive_value("-o", f"{script_path.rsplit('/', 1)[0]}/{_stem(script_path)}.pbs.out")
        return ["qsub", "-j", "oe", "-o", out, directive_value("script path", script_path)]

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["qdel", job_id]

    def cancel_error_is_benign(self, result: Result) -> bool:
        words = f"{result.stderr}\n{result.stdout}"
        if any(w.lower() in words.lower() for w in GONE_WORDS):
            return True
        return result.returncode in GONE_CODES and not words.strip()

    def status_argv(self, job_ids: list[str]) -> list[str]:
        if self._json:
            return ["qstat", "-f", "-x", "-F", "json", *job_ids]
        return ["qstat", "-f", *job_ids]

    def parse_status(self, result: Result, job_ids: list[str]) -> dict[str, JobState]:
        """See :meth:`Scheduler.parse_status`.

        Unknown ids make qstat exit 153 (``Unknown Job Id``) while it still prints the
        others: those are simply left out. Any other failure must not look like "all
        jobs ended", so it raises and no state changes.
        """
        jobs: dict[str, dict[str, Any]] | None = None
        if "json" in result.argv:
            jobs = self._json_jobs(result)
            if jobs is None:  # no JSON here: ask again, in text, this time and from now on
                result = self.run(self.status_argv(job_ids), timeout=60)
        if jobs is None:
            _check_qstat(result)
            jobs = parse_qstat_text(result.stdout)
        return match_jobs(jobs, job_ids, self.dialect)

    def _json_jobs(self, result: Result) -> dict[str, dict[str, Any]] | None:
        if result.returncode not in (0, 153) and "{" not in result.stdout:
            log.info("qstat has no JSON output (%s); using qstat -f text",
                     (result.stderr or result.stdout).strip()[:200])
            self._json = False
            return None
        if result.returncode == 153 and not result.stdout.strip():
            return {}  # none of the ids is known
        _check_qstat(result)
        try:
            return parse_qstat_json(result.stdout)
        except ValueError as exc:  # e.g. BASH_FUNC_* variables break it (openpbs #2541)
            log.warning("qstat printed invalid JSON (%s); using qstat -f text", exc)
            self._json = False
            return None


def _check_qstat(result: Result) -> None:
    """Raise unless qstat answered (perhaps only for some ids)."""
    if result.returncode in (0, 153):
        return
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if errors and all("Unknown Job Id" in ln for ln in errors):
        return
    words = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
    raise UserError(f"qstat exited {result.returncode}: {words[0].strip()} "
                    "(endpoint states were not updated; is the PBS server reachable?)")



def _stem(script_path: str) -> str:
    base = script_path.rsplit("/", 1)[-1]
    return base[:-3] if base.endswith(".sh") else base


def _output_path(results_dir: str, name: str) -> str:
    return f"{results_dir.rstrip('/') or '.'}/hpclaunch_{name}.pbs.out"


def _walltime(text: Any) -> str:
    """A time limit as PBS ``HH:MM:SS`` (Slurm's ``D-HH:MM:SS`` converted); empty: none."""
    return str(units.check(text, lambda v: units.time_limit(v, "pbs"), "time-limit"))


def _memory(text: Any) -> str:
    """Slurm-style ``64G`` (or PBS ``64gb``) -> PBS ``64gb``; a bare number is MB, as in Slurm."""
    return str(units.check(text, lambda v: units.memory(v, "pbs"), "mem"))


# -- parsing (pure functions, tested on real samples) --------------------------------

def parse_qstat_text(text: str) -> dict[str, dict[str, str]]:
    """``qstat -f`` text -> {job id: {attribute: value}}.

    Attributes are indented (4 spaces in PBS Pro and Torque, a TAB in
    slurm-wlm-torque); long values wrap onto TAB-indented lines, and multi-line
    values (Torque ``sched_hint``, PBS ``Variable_List``) even onto unindented
    ones and blank lines. A line that is not an attribute at the job's own
    indentation continues the previous value.
    """
    jobs: dict[str, dict[str, str]] = {}
    attrs: dict[str, str] | None = None
    indent, key = "", ""
    for line in text.splitlines():
        head = JOB_ID_LINE.match(line)
        if head:
            attrs = jobs.setdefault(head.group("id"), {})
            indent, key = "", ""
            continue
        if attrs is None:
            continue  # banner or comment before the first job
        match = ATTRIBUTE_LINE.match(line)
        if match and (not indent or match.group("indent") == indent):
            indent, key = match.group("indent"), match.group("key")
            attrs[key] = match.group("value").strip()
        elif key and line.strip():
            # A TAB wrap cuts mid-word ("PTOs" + "caletest"); a raw newline does not.
            sep = "" if line.startswith("\t") else "\n"
            attrs[key] += sep + line.lstrip("\t")
    return jobs


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f -F json`` -> {job id: attributes}; no "Jobs" key means no job matched.

    OpenPBS 23.06 can print its plain table before the JSON and leave the jobs out of the
    JSON (openpbs PR #2675/#2676; sample ``openpbs_qstat_fF_json_mixed.txt``): the JSON
    object is read where it starts a line, text around it is skipped, and jobs only the
    table lists keep the table's state letter, so a running job stays running.
    """
    start = re.search(r"^\{", text, re.MULTILINE)
    if start is None:
        raise ValueError("no JSON object in qstat output")
    data, end = json.JSONDecoder().raw_decode(text, start.start())
    jobs = (data.get("Jobs") or {}) if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        raise ValueError("qstat JSON has no Jobs mapping")
    found = {str(k): v for k, v in jobs.items() if isinstance(v, dict)}
    stray = text[:start.start()] + text[end:]
    if stray.strip():
        log.info("qstat printed text around its JSON (openpbs #2675); reading its table too")
        for job_id, letter in parse_qstat_table(stray).items():
            if not any(same_job(job_id, known) for known in found):
                found[job_id] = {"job_state": letter}
    return found


def parse_qstat_table(text: str) -> dict[str, str]:
    """{job id: state letter} from qstat's plain tables (default and ``-a``/``-u``).

    Columns are where the dashes under the header are (names such as ``Time Use`` have
    spaces); the state is the column headed ``S``. Ids may be truncated (``123.serv*``).
    """
    lines = text.splitlines()
    states: dict[str, str] = {}
    for i, line in enumerate(lines):
        if i == 0 or not re.fullmatch(r"[- ]*-[- ]*", line):
            continue
        spans = [m.span() for m in re.finditer(r"-+", line)]
        titles = [lines[i - 1][a:b].strip() for a, b in spans]
        if "S" not in titles:
            continue
        column = spans[titles.index("S")]
        for row in lines[i + 1:]:
            if not row[:1].isdigit():  # rows start with the job id; anything else ends them
                break
            job_id, letter = row.split()[0].rstrip("*"), row[column[0]:column[1]].strip()
            if letter:
                states[job_id] = letter
    return states


def same_job(a: str, b: str) -> bool:
    """``1234.pbs01`` is ``1234.pbs01.hsn.cm`` is ``1234``: servers print the suffix differently."""
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def match_jobs(jobs: dict[str, dict[str, Any]], job_ids: list[str],
               dialect: str) -> dict[str, JobState]:
    """States of the ``job_ids`` found in parsed qstat output (matched by sequence number)."""
    by_seq = {jid.split(".", 1)[0]: attrs for jid, attrs in jobs.items()}
    return {jid: job_state(by_seq[jid.split(".", 1)[0]], dialect)
            for jid in job_ids if jid.split(".", 1)[0] in by_seq}


def _get(attrs: dict[str, Any], key: str) -> Any:
    """Attribute by case-insensitive name (PBS Pro ``Exit_status``, Torque ``exit_status``)."""
    for name, value in attrs.items():
        if name.lower() == key.lower():
            return value
    return None


def job_state(attrs: dict[str, Any], dialect: str) -> JobState:
    """One job's qstat attributes -> a coarse :class:`JobState`."""
    letter = str(_get(attrs, "job_state") or "").strip()
    # PBS Pro/OpenPBS write why a job waits in ``comment``; some sites' hooks and
    # Torque builds use ``Job_comment``.
    comment = " ".join(str(_get(attrs, "comment") or _get(attrs, "Job_comment") or "").split())
    exec_host = str(_get(attrs, "exec_host") or "")
    node = exec_host.split("+", 1)[0].split("/", 1)[0].strip()
    if letter in QUEUED_STATES:
        reason = QUEUED_STATES[letter] if letter != "Q" else ""
        reason = "; ".join(r for r in (reason, comment) if r)
        return JobState(QUEUED, reason=reason, native_state=letter)
    if letter in RUNNING_STATES:
        return JobState(RUNNING, node=node, native_state=letter)
    if letter in DONE_STATES:
        code = _int(_get(attrs, "exit_status"))
        reason = exit_reason(code, dialect)
        if comment and not reason:
            reason = comment
        return JobState(DONE, reason=reason, exit_code=code, node=node, native_state=letter)
    # A letter this code has not met, or none at all (a record cut short, a wrapped line):
    # running would never end, done could end a live server. Ask again next time.
    log.warning("PBS job state %r cannot be read; reporting it as unknown", letter)
    what = f"unknown PBS job_state {letter!r}" if letter else "no readable job_state"
    return JobState(UNKNOWN, reason=f"qstat shows {what}; asking again on the next refresh",
                    node=node, native_state=letter)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def exit_reason(code: int | None, dialect: str) -> str:
    """Words for an ``Exit_status``; empty for a plain exit code (the exit file says more)."""
    if code is None or 0 <= code < 256:
        return ""
    key = "Exit_status" if dialect == "pbspro" else "exit_status"
    if code >= 256:
        try:
            name = signal.Signals(code - 256).name
        except ValueError:
            name = f"signal {code - 256}"
        return f"killed by {name} ({key} {code})"
    if code == WALLTIME_CODES[dialect]:
        return f"WALLTIME exceeded ({key} {code}): ask for more with --set time-limit=HH:MM:SS"
    name = EXEC_CODES[dialect].get(code, "")
    if name.startswith(("KILL", "OVERLIMIT")):
        return f"PBS killed the job for exceeding a limit: JOB_EXEC_{name} ({key} {code})"
    return f"PBS could not run the job: JOB_EXEC_{name or 'error'} ({key} {code})"
