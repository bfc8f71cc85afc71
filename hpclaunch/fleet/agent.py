"""The replica's side job: join the router when healthy, leave it before stopping.

The job script writes this file next to its other files and runs it beside vLLM
(``job_templates/_serve.sh.j2``), so it must run on a compute node that has
nothing but a Python 3: standard library only, no hpclaunch import. Configuration
comes from the environment the job script sets (``HPC_*``).

Why in the job: a replica knows first when its server is healthy and when it is
told to go (scancel, walltime, preemption, idle stop), and the job needs no
daemon anywhere else to keep the router's list right.

- Joins with ``POST /add_worker`` once ``/health`` answers 200 and the router has
  written its endpoint file; once per router (a new router job is joined again),
  so a removal made from outside (``hpclaunch scale``) is not undone.
- On SIGTERM (the job script's trap) or when the server died: ``POST
  /remove_worker``, then waits until vLLM's running+waiting gauges are 0 (bounded
  by ``HPC_DRAIN_S``) so in-flight requests finish, then exits.
- Walltime relay: on SIGUSR1 (Slurm's ``--signal=B:USR1@LEAD`` through the job's
  trap) it first waits, up to ``HPC_RELAY_WAIT_S``, until the router has another
  healthy worker (the successor), so that the name never points at nothing.
- Preemption on Slurm: during a preemption's GraceTime no signal reaches a batch job's
  processes (Slurm signals job steps; ours has none), and at its end every process gets
  SIGTERM at once, vLLM included. So under Slurm (``SLURM_JOB_ID`` set, ``scontrol`` on
  PATH) it asks ``scontrol show job`` every ``HPC_PREEMPT_POLL_S`` seconds whether
  ``PreemptTime`` is set; once it is, it writes the reason, leaves, drains and sends
  SIGTERM to the server within the grace time.
- Idle stop: when ``HPC_IDLE_STOP_S`` > 0 and vLLM's request counters in
  ``/metrics`` have not moved for that long, writes the reason file, leaves,
  drains and sends SIGTERM to the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

_SAMPLE = re.compile(r"^(vllm:(?:request_success_total|num_requests_running|"
                     r"num_requests_waiting))(?:\{[^}]*\})?\s+([-+0-9.eE]+)", re.M)
_PREEMPT = re.compile(r"(?:^|\s)PreemptTime=(\S+)")
_stop = False
_relay = False


def _on_term(_signum: int, _frame: object) -> None:
    global _stop
    _stop = True


def _on_relay(_signum: int, _frame: object) -> None:
    global _stop, _relay
    _stop = _relay = True


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} hpclaunch-agent: {message}", flush=True)


def http(method: str, url: str, key: str = "", timeout: float = 3.0) -> tuple[int, str]:
    """(status, body); (0, reason) when nothing answers."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return 0, str(exc)


def load_counters(text: str) -> tuple[float, float]:
    """(requests finished so far, requests in flight) summed over engines."""
    done = busy = 0.0
    for name, value in _SAMPLE.findall(text):
        if name.endswith("_total"):
            done += float(value)
        else:
            busy += float(value)
    return done, busy


def router_base(path: str) -> tuple[str, str]:
    """(base URL, identity) of the router from its endpoint file; ("", "") until it exists."""
    try:
        with open(path) as fh:
            data = json.load(fh)
        return f"http://{data['host']}:{int(data['port'])}", f"{data.get('job_id')}:{data['port']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "", ""


def preempt_time(scontrol_text: str) -> str:
    """Slurm's PreemptTime from ``scontrol show job -o``; "" while the job is not preempted."""
    match = _PREEMPT.search(scontrol_text)
    value = match.group(1) if match else ""
    return "" if value in ("", "None", "Unknown") else value


def slurm_preempted(job_id: str) -> str:
    """When Slurm chose to preempt this job, or "" (also when scontrol does not answer)."""
    try:
        proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return preempt_time(proc.stdout) if proc.returncode == 0 else ""


def human(seconds: float) -> str:
    """``1800`` -> ``30m``, ``5400`` -> ``1h30m``, ``4`` -> ``4s``: as --idle-stop is written."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Agent:
    def __init__(self, env: dict[str, str]) -> None:
        self.worker = env["HPC_WORKER_URL"]
        self.local = f"http://127.0.0.1:{env['HPC_LOCAL_PORT']}"
        self.pid = int(env["HPC_VLLM_PID"])
        self.router_file = env["HPC_ROUTER_FILE"]
        self.reason_file = env.get("HPC_REASON_FILE", "")
        self.idle_s = float(env.get("HPC_IDLE_STOP_S") or 0)
        self.drain_s = float(env.get("HPC_DRAIN_S") or 30)
        self.poll = float(env.get("HPC_POLL_S") or 1)
        self.relay_wait_s = float(env.get("HPC_RELAY_WAIT_S") or 0)
        self.key = env.get("VLLM_API_KEY", "")
        self.slurm_job = env.get("SLURM_JOB_ID", "") if shutil.which("scontrol") else ""
        self.preempt_poll = float(env.get("HPC_PREEMPT_POLL_S") or 2)
        self.next_preempt_check = 0.0
        self.preempted = ""
        self.router = ""
        self.joined_to = ""
        self.healthy = False
        self.last_done: float | None = None
        self.last_active = time.monotonic()

    def step(self) -> str:
        """One look around; returns "" to go on, or why to leave."""
        if not alive(self.pid):
            return "the server exited"
        if self.slurm_job and time.monotonic() >= self.next_preempt_check:
            self.next_preempt_check = time.monotonic() + self.preempt_poll
            self.preempted = slurm_preempted(self.slurm_job)
            if self.preempted:
                return "preempted"
        if not self.healthy:
            self.healthy = http("GET", f"{self.local}/health")[0] == 200
            self.last_active = time.monotonic()
            return ""
        base, ident = router_base(self.router_file)
        if base and ident != self.joined_to:
            status, body = http("POST", f"{base}/add_worker?url="
                                f"{urllib.parse.quote(self.worker, safe='')}", self.key)
            if status == 200 or "already exists" in body:
                self.router, self.joined_to = base, ident
                log(f"joined {base} as {self.worker}")
            else:
                log(f"add_worker to {base} answered {status}: {body[:200]}")
        if self.idle_s > 0:
            status, text = http("GET", f"{self.local}/metrics")
            if status == 200:
                done, busy = load_counters(text)
                if busy > 0 or done != self.last_done:
                    self.last_done, self.last_active = done, time.monotonic()
            if time.monotonic() - self.last_active >= self.idle_s:
                return "idle"
        return ""

    def others_healthy(self) -> int:
        status, body = http("GET", f"{self.router}/workers", self.key)
        try:
            workers = json.loads(body).get("workers") or [] if status == 200 else []
        except (ValueError, AttributeError):
            return 0
        return sum(1 for w in workers if isinstance(w, dict) and w.get("is_healthy")
                   and w.get("url") != self.worker)

    def leave(self) -> None:
        if self.router and _relay:
            deadline = time.monotonic() + self.relay_wait_s
            while not self.others_healthy() and time.monotonic() < deadline:
                time.sleep(0.5)
            log(f"relay: {self.others_healthy()} other healthy worker(s) at the router")
        if self.router:
            status, body = http("POST", f"{self.router}/remove_worker?url="
                                f"{urllib.parse.quote(self.worker, safe='')}", self.key)
            log(f"left {self.router} ({status} {body[:100]})")
            self.router = ""
            time.sleep(0.5)  # a request the router sent just before is counted by now
        started = time.monotonic()
        while alive(self.pid) and time.monotonic() < started + self.drain_s:
            status, text = http("GET", f"{self.local}/metrics", timeout=2.0)
            if status != 200 or load_counters(text)[1] == 0:
                break
            time.sleep(0.2)
        # Says whether in-flight requests could finish: a server that a job-wide signal
        # stopped before the drain could not let them.
        log(f"drained in {time.monotonic() - started:.1f} s" if alive(self.pid)
            else "the server had stopped before the drain")

    def run(self) -> int:
        why = ""
        while not _stop and not why:
            why = self.step()
            if not why:
                time.sleep(self.poll)
        if why == "preempted":
            log(f"preempted by Slurm at {self.preempted}: leaving within the grace time")
        self.leave()
        if why in ("idle", "preempted"):
            reason = (f"idle stop: no requests for {human(self.idle_s)}" if why == "idle" else
                      f"preempted by Slurm at {self.preempted}: left the router and drained")
            log(reason)
            if self.reason_file:
                with open(self.reason_file, "w") as fh:
                    fh.write(reason + "\n")
            os.kill(self.pid, signal.SIGTERM)
        return 0


def main() -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGUSR1, _on_relay)
    return Agent(dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main())
