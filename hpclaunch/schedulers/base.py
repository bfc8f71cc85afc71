"""What every scheduler shares; a backend supplies argv builders and parsers.

A backend is mostly data (``template``, ``job_id_regexp``, ``STATE_MAP``) plus
small hooks that return argv lists or parse text. Submitting, error reporting,
skip/extra directives and batching of status queries live here once, so that
error messages do not drift between backends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hpclaunch.errors import SubmitError, UserError

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.planning.plan import Plan
    from hpclaunch.remote.transport import Result, Transport

# Coarse job states, the same for every scheduler.
QUEUED, RUNNING, DONE, MISSING = "queued", "running", "done", "missing"
# The scheduler lists the job but its state cannot be read: neither running (it would
# never end) nor done (it may be serving); kept, asked again, reported.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class JobState:
    """One job as the scheduler sees it.

    ``state`` is QUEUED, RUNNING, DONE (left the queue and the scheduler says how),
    MISSING (the scheduler no longer knows the job: the job's own files decide) or
    UNKNOWN (listed, with a state that cannot be read).
    ``reason`` keeps the scheduler's words (``Resources``, ``TIMEOUT``, ``CANCELLED``).
    """

    state: str
    reason: str = ""
    exit_code: int | None = None
    node: str = ""
    native_state: str = ""
    # When the job started and stopped running, by the scheduler's clock (epoch seconds;
    # 0 when it does not say): GPU-hours are counted from these.
    start: float = 0.0
    end: float = 0.0

    @property
    def left_queue(self) -> bool:
        return self.state in (DONE, MISSING)


# Safe characters for values that go into #SBATCH/#PBS directive lines, which the
# scheduler (not a shell) parses: anything else is refused rather than escaped.
DIRECTIVE_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:,=/@+%-]+$")


def directive_value(key: str, value: Any) -> str:
    """``value`` if it is safe in a directive line; a results dir under ``~`` (seen
    only in --dry-run, before the transport expands it) is shown as is."""
    text = str(value)
    if text.startswith("~/"):
        return "~/" + directive_value(key, text[2:])
    if not DIRECTIVE_VALUE_RE.match(text):
        raise UserError(
            f"{key} value {text!r} has characters a job directive cannot carry safely; "
            "use letters, digits and . _ : , = / @ + % -"
        )
    return text


class Scheduler:
    """Base class; see :class:`hpclaunch.schedulers.local.LocalScheduler` for a small one."""

    name: ClassVar[str] = ""
    template: ClassVar[str] = ""
    directive_prefix: ClassVar[str] = ""
    job_id_regexp: ClassVar[str] = r"(?P<job_id>\S+)"
    status_batch_size: ClassVar[int] = 200

    def __init__(self, cluster: ClusterProfile, transport: Transport) -> None:
        self.cluster = cluster
        self.transport = transport

    # -- hooks a backend overrides -------------------------------------------------
    def directives(self, plan: Plan) -> list[str]:
        """Scheduler header lines for ``plan`` (with the prefix, e.g. ``#SBATCH``)."""
        return []

    def cpu_directives(self, name: str, job_dir: str) -> list[str]:
        """Header lines for a CPU-only helper job (an eval job) writing into ``job_dir``."""
        return []

    def submit_argv(self, script_path: str) -> list[str]:
        raise NotImplementedError

    def cancel_argv(self, job_id: str) -> list[str]:
        raise NotImplementedError

    def status_argv(self, job_ids: list[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, result: Result, job_ids: list[str]) -> dict[str, JobState]:
        """Map the status command's output to states; ids it omits are left out."""
        raise NotImplementedError

    def finished_states(self, job_ids: list[str]) -> dict[str, JobState]:
        """Ask the scheduler's history about jobs the queue no longer shows."""
        return {}

    def template_context(self, plan: Plan) -> dict[str, Any]:
        return {}

    # Multi-node: bash that prints the job's nodes (first = head), and the body of
    # ``run_on_node NODE SCRIPT`` that runs SCRIPT there through the scheduler's launcher.
    node_list_command: ClassVar[str] = ""
    node_launch_command: ClassVar[str] = ""

    def multinode_context(self, plan: Plan) -> dict[str, Any] | None:
        """What ``_multinode.sh.j2`` needs, or None for a one-node plan."""
        launch = plan.launch
        if launch is None:
            return None
        if not self.node_launcher():
            raise UserError(f"--set nodes={plan.nodes}: the {self.name} scheduler runs on one "
                            "machine; use a Slurm or PBS cluster profile for multi-node layouts")
        import os

        from hpclaunch.planning.multinode import worker_flags
        from hpclaunch.schedulers.render import Raw

        # The stand-in's python brings its venv's own ray; a real job finds it on PATH.
        ray = [os.path.join(os.path.dirname(plan.vllm_command[0]), "ray")] if plan.simulate \
            else ["ray"]
        return {"mode": launch.mode, "nodes": launch.nodes, "gpus": plan.gpus,
                "gpus_per_node": launch.gpus_per_node, "dp_local": launch.dp_local,
                "worker_argv": worker_flags(plan.serve_argv), "ray_command": ray,
                "node_list": Raw(self.node_list_command),
                "launcher": Raw(self.node_launcher())}

    def node_launcher(self) -> str:
        return self.node_launch_command

    # -- shared machinery ------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float = 60) -> Result:
        """A scheduler command, under the profile's ``scheduler-env`` when it has one."""
        env = self.cluster.scheduler_env
        if env:
            return self.transport.run(
                ["env", *(f"{k}={v}" for k, v in sorted(env.items())), *argv], timeout=timeout)
        return self.transport.run(argv, timeout=timeout)

    def header(self, plan: Plan) -> list[str]:
        """Backend directives minus the profile's ``skip_directives``, plus its extras."""
        skip = [s.strip() for s in self.cluster.skip_directives if s.strip()]
        lines = [
            line for line in self.directives(plan)
            if not any(_directive_body(line, self.directive_prefix).startswith(s) for s in skip)
        ]
        for extra in self.cluster.extra_directives:
            extra = extra.strip()
            if not extra:
                continue
            if "\n" in extra:
                raise UserError(f"extra_directives entry {extra!r} spans lines")
            if not extra.startswith("#"):
                extra = f"{self.directive_prefix} {extra}"
            lines.append(extra)
        return lines

    def render(self, plan: Plan, results_dir: str, *, submission: str = "",
               extra: dict[str, Any] | None = None) -> str:
        from dataclasses import replace

        from hpclaunch.schedulers.container import launch
        from hpclaunch.schedulers.render import Raw, render_template

        # Directives (output files, working dir) name files in the results dir.
        plan = replace(plan, results_dir=results_dir)

        context: dict[str, Any] = {
            "name": plan.name,
            "submission": submission,
            "model_id": plan.model_id,
            "preset": plan.preset,
            "results_dir": results_dir,
            "port": plan.port,
            "python": self.cluster.python,
            "serve_argv": plan.serve_argv,
            "env": sorted(plan.env.items()),
            "setup": list(self.cluster.setup),
            "url_host": self.cluster.url_host or "",
            "directives": [Raw(d) for d in self.header(plan)],
            "container": launch(plan, results_dir, submission),
            "mn": self.multinode_context(plan),
            # A fleet replica's side job (hpclaunch.fleet.agent): joins the router when
            # the server is healthy, leaves it before the server stops, idle stop.
            "agent": "", "agent_env": [],
        }
        context.update(self.template_context(plan))
        context.update(extra or {})
        # A fleet's replica adds its own directive lines (relay: --signal, --dependency).
        context["directives"] += [Raw(d) for d in context.pop("more_directives", [])]
        return render_template(self.template, context)

    def submit(self, script_path: str) -> str:
        """Submit a written script; returns the job id or raises :class:`SubmitError`."""
        argv = self.submit_argv(script_path)
        result = self.run(argv, timeout=120)
        out = result.stdout.strip()
        if result.returncode != 0:
            words = (result.stderr.strip() or out or "no output").splitlines()
            raise SubmitError(
                f"{argv[0]} exited {result.returncode}: {' / '.join(w.strip() for w in words)}",
                argv=argv, returncode=result.returncode, stdout=result.stdout,
                stderr=result.stderr, script_path=script_path,
            )
        match = re.fullmatch(self.job_id_regexp, out)
        if not match:
            raise SubmitError(
                f"{argv[0]} printed no job id matching {self.job_id_regexp!r}: {out[:200]!r}",
                argv=argv, returncode=result.returncode, stdout=result.stdout,
                stderr=result.stderr, script_path=script_path,
            )
        return match.group("job_id")

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """States of all ``job_ids``: one status call per batch, then one history call
        for the ids the queue no longer shows; ids nobody knows are MISSING."""
        found: dict[str, JobState] = {}
        ids = list(dict.fromkeys(job_ids))
        for start in range(0, len(ids), self.status_batch_size):
            batch = ids[start:start + self.status_batch_size]
            result = self.run(self.status_argv(batch), timeout=60)
            found.update(self.parse_status(result, batch))
        gone = [i for i in ids if i not in found]
        if gone:
            found.update(self.finished_states(gone))
        for job_id in ids:
            found.setdefault(job_id, JobState(MISSING))
        return found

    def cancel(self, job_id: str) -> None:
        argv = self.cancel_argv(job_id)
        result = self.run(argv, timeout=60)
        if result.returncode != 0 and not self.cancel_error_is_benign(result):
            words = (result.stderr.strip() or result.stdout.strip() or "no output")
            raise UserError(f"{argv[0]} exited {result.returncode}: {words.splitlines()[0]}")

    def cancel_error_is_benign(self, result: Result) -> bool:
        """True when cancel failed only because the job already ended."""
        return False


def _directive_body(line: str, prefix: str) -> str:
    body = line[len(prefix):] if prefix and line.startswith(prefix) else line
    return body.strip()
