"""The router job: the real ``vllm-router`` (PyPI) in front of a fleet's replicas.

It runs where clients reach it and where it outlives any replica: a local process
group for the local scheduler, its own small CPU job on Slurm (the profile's
``router:`` settings: partition, time-limit, cpus, mem). It starts with no workers;
each replica adds itself when healthy (:mod:`hpclaunch.fleet.agent`).

vllm-router 0.1.17 checks client keys with ``--api-key`` but not its admin routes
(``/add_worker`` answers anyone who can reach the port): bind it where only the
cluster network reaches it (``bind_host``), and see docs/fleets.md.
"""

from __future__ import annotations

from typing import Any

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.schedulers.base import directive_value

DEFAULT_PORT = 30000
DEFAULT_HEALTH_CHECK_S = 5
DEFAULT_TIME_LIMIT = "1-00:00:00"

# Runs where the transport runs (this machine or the login node): POST to the router's
# admin API. The URL is an argument, nothing reaches a shell.
ADMIN_SCRIPT = """
import sys, urllib.error, urllib.parse, urllib.request
base, action, worker = sys.argv[1:4]
url = f"{base}/{action}?url={urllib.parse.quote(worker, safe='')}"
try:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"),
                                timeout=5) as r:
        print(r.status, r.read().decode()[:200])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode()[:200])
except OSError as exc:
    print(0, exc)
"""


def settings(profile: ClusterProfile) -> dict[str, Any]:
    """The profile's ``router:`` settings; the Python that has vllm-router is this one
    when jobs run on this machine's filesystem (as the stand-in's is), else ``python``."""
    import sys

    cfg = dict(profile.router)
    cfg.setdefault("python", sys.executable if profile.host is None else profile.python)
    return cfg


def directives(profile: ClusterProfile, name: str, results_dir: str) -> list[str]:
    """``#SBATCH`` lines for the router's CPU job; nothing for the local scheduler."""
    if profile.scheduler == "local":
        return []
    if profile.scheduler != "slurm":
        raise UserError(f"cluster {profile.name!r}: fleets run their router on Slurm or on "
                        f"this machine (local); {profile.scheduler} is not supported yet")
    cfg = settings(profile)
    out = results_dir.rstrip("/") or "."
    options = {
        "job-name": f"hpcl-{name}-router",
        "partition": cfg.get("partition", profile.partition),
        "account": cfg.get("account", profile.account),
        "qos": cfg.get("qos", profile.qos),
        "time": cfg.get("time-limit", DEFAULT_TIME_LIMIT),
        "nodes": 1, "ntasks-per-node": 1,
        "cpus-per-task": cfg.get("cpus", 1),
        "mem": cfg.get("mem", "1G"),
        "chdir": out,
        "output": f"{out}/hpclaunch_{name}-router.%j.out",
        "error": f"{out}/hpclaunch_{name}-router.%j.err",
    }
    return [f"#SBATCH --{key}={directive_value(f'router.{key}', value)}"
            for key, value in sorted(options.items()) if value not in (None, "")]


def render(profile: ClusterProfile, name: str, files: str, results_dir: str) -> str:
    from hpclaunch.schedulers.render import Raw, render_template

    cfg = settings(profile)
    return render_template("router.sh.j2", {
        "name": name, "files": files, "results_dir": results_dir,
        "python": cfg["python"],
        "port": int(cfg.get("port", DEFAULT_PORT)),
        "bind_host": profile.bind_host,
        "url_host": profile.url_host or "",
        "health_check_interval": int(cfg.get("health-check-interval", DEFAULT_HEALTH_CHECK_S)),
        "setup": list(profile.setup),
        "directives": [Raw(d) for d in directives(profile, name, results_dir)],
    })


def admin(transport: Any, python: str, base_url: str, action: str, worker_url: str) -> str:
    """``add_worker``/``remove_worker`` from where the transport runs; the router's answer."""
    result = transport.run([python, "-c", ADMIN_SCRIPT, base_url, action, worker_url],
                           timeout=30)
    return (result.stdout.strip() or result.stderr.strip())[:200]
