"""This machine as a scheduler: the job script runs as a detached process group.

For a workstation with one or a few GPUs (the RTX 4090/5090 guides). The job id is
the script's pid, which is also its process group id, so ``stop`` ends vLLM and
everything it started.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from hpclaunch.schedulers.base import MISSING, RUNNING, JobState, Scheduler

if TYPE_CHECKING:
    from hpclaunch.remote.transport import Result

# `setsid` makes the script a session and process-group leader; the outer bash
# exits at once, so the job is nobody's child and leaves no zombie behind.
# The pid is printed once setsid has made it a group leader (at most ~1 s): a `stop`
# right after submit must find the group, or it would kill nothing.
# The job starts with no signal blocked although submit holds SIGHUP/INT/TERM while it
# queues: LocalTransport clears the mask for every child (transport._clear_signal_mask).
_LAUNCH = ('setsid bash "$0" >"$0.out" 2>&1 </dev/null & pid=$!; '
           'for _ in $(seq 200); do read -r _ _ _ _ pgrp _ <"/proc/$pid/stat" 2>/dev/null '
           '|| break; [ "$pgrp" = "$pid" ] && break; sleep 0.005; done; echo "$pid"')
# SIGTERM to the whole group, then SIGKILL if vLLM has not exited within 10 s
# (a server stuck in shutdown must not outlive `hpclaunch stop`).
_CANCEL = ('kill -TERM -- "-$0" 2>/dev/null || exit 0; '
           'for _ in $(seq 50); do kill -0 -- "-$0" 2>/dev/null || exit 0; sleep 0.2; done; '
           'kill -KILL -- "-$0" 2>/dev/null; exit 0')


class LocalScheduler(Scheduler):
    name: ClassVar[str] = "local"
    template: ClassVar[str] = "local.sh.j2"
    job_id_regexp: ClassVar[str] = r"(?P<job_id>[0-9]+)"

    def submit_argv(self, script_path: str) -> list[str]:
        return ["bash", "-c", _LAUNCH, script_path]

    def cancel_argv(self, job_id: str) -> list[str]:
        return ["bash", "-c", _CANCEL, job_id]

    def status_argv(self, job_ids: list[str]) -> list[str]:
        return ["ps", "-o", "pid=,stat=,etimes=", "-p", ",".join(job_ids)]

    def parse_status(self, result: Result, job_ids: list[str]) -> dict[str, JobState]:
        states: dict[str, JobState] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[0] not in job_ids:
                continue
            # A zombie has exited; its exit status is in the job's own exit file.
            # The job's start by this machine's clock (ps's elapsed seconds), for GPU-hours.
            start = time.time() - int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0.0
            if parts[1].startswith("Z"):
                states[parts[0]] = JobState(MISSING, native_state=parts[1])
            else:
                states[parts[0]] = JobState(RUNNING, node="localhost", native_state=parts[1],
                                            start=start)
        return states
