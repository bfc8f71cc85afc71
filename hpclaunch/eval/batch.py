"""``hpclaunch eval NAME ENV --submit``: vf-eval as its own (CPU) batch job.

Login nodes kill long processes, so a long eval runs as a job next to its endpoint.
Two halves, one module:

* :func:`submit_eval_job` (login side) refuses a dead endpoint, writes the job's spec -
  endpoint, key, vf-eval command - to a 0600 file (the key is never on a command
  line or in the script), renders ``eval.sh.j2`` and records the job in the registry
  as ``kind="eval"``, so ``endpoints`` and ``status`` show it with its own state
  (PENDING -> RUNNING -> ENDED when vf-eval exits 0, FAILED otherwise) and its log.
* :func:`main` (``python -m hpclaunch.eval.batch SPEC`` inside the job) waits for the
  endpoint to be READY (the endpoint job's own files and ``/health``), runs vf-eval with
  the command :func:`hpclaunch.eval.runner.build_command` builds, watches the endpoint,
  and exits 5 (FAILED) or 6 (ENDED) when the endpoint goes away under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import (
    EXIT_ENDED,
    EXIT_FAILED,
    EXIT_NOT_READY,
    EndpointStateError,
    UserError,
)
from hpclaunch.eval.measure import MetricsWatch, health_ok
from hpclaunch.eval.vfeval import VfEval

SPEC, LOG, EXIT = "eval.spec.json", "eval.log", "eval.exit"


def _job_name(endpoint: str, taken: set[str]) -> str:
    for n in range(1, 1000):
        name = f"{endpoint[:50]}-eval-{n}"
        if name not in taken:
            return name
    raise UserError(f"too many eval jobs for {endpoint}: hpclaunch rm some old ones")


def submit_eval_job(name: str, env_id: str, vf_args: list[str], *, vf: VfEval,
                    cluster: str | None = None, wait_timeout: float = 1800.0,
                    max_tokens_default: int = 32768) -> Any:
    """Queue vf-eval on endpoint ``name`` as a batch job; returns its registry record."""
    from hpclaunch.config import get_cluster, with_scheduler
    from hpclaunch.endpoints.launch import default_results_dir
    from hpclaunch.endpoints.lifecycle import refresh
    from hpclaunch.registry import UNHEALTHY, Record, Registry
    from hpclaunch.remote.connect import transport_for
    from hpclaunch.schedulers import scheduler_for
    from hpclaunch.schedulers.render import Raw, render_template

    registry = Registry()
    target = registry.get(name)
    if target.kind != "endpoint":
        raise UserError(f"{name} is an eval job, not an endpoint")
    target = refresh([name], registry=registry)[0]
    if target.final or target.state == UNHEALTHY:
        raise EndpointStateError(f"endpoint {name!r} is {target.state}: {target.reason}; "
                                 "no eval job was submitted", state=target.state)
    profile = get_cluster(cluster or target.cluster)
    if not cluster:
        profile = with_scheduler(profile, target.scheduler, target.pbs_dialect)
    python = sys.executable if profile.host is None else profile.python
    job = _job_name(name, set(registry.load()))
    transport = transport_for(profile)
    try:
        job_dir = f"{transport.expanduser(default_results_dir(profile))}/{job}"
        transport.makedirs(job_dir)
        spec = {"job": job, "endpoint": target.to_json(), "env_id": env_id,
                "vf_args": list(vf_args), "vf": [vf.path, vf.generation, vf.version],
                "wait_timeout": wait_timeout, "max_tokens_default": max_tokens_default}
        transport.write_file(f"{job_dir}/{SPEC}", json.dumps(spec).encode(), 0o600)
        backend = scheduler_for(profile, transport)
        script = render_template("eval.sh.j2", {
            "name": job, "endpoint": name, "job_dir": job_dir, "python": python,
            "setup": list(profile.setup), "spec": f"{job_dir}/{SPEC}",
            "log": f"{job_dir}/{LOG}", "exit_file": f"{job_dir}/{EXIT}",
            "directives": [Raw(d) for d in backend.cpu_directives(job, job_dir)]})
        script_path = f"{job_dir}/hpclaunch_{job}.sh"
        transport.write_file(script_path, script.encode(), 0o700)
        job_id = backend.submit(script_path)
    finally:
        transport.close()
    label = f"vf-eval {env_id} on {name}"
    record = Record(kind="eval", name=job, model=env_id, model_id=label,
                    served_model_name=label, preset="eval", cluster=profile.name,
                    scheduler=profile.scheduler, pbs_dialect=target.pbs_dialect,
                    job_id=job_id, results_dir=job_dir, log_path=f"{job_dir}/{LOG}",
                    script_path=script_path, simulated=target.simulated, reason="submitted")
    registry.add(record)
    return record


# -- inside the job ------------------------------------------------------------------------


def _endpoint_now(rec: dict[str, Any]) -> tuple[str, str]:
    """(url, why not usable) from the endpoint job's own files: no registry on a node."""
    name = rec["name"]
    # The endpoint job's files: <results>/<name>[.<submission id>].{exit,endpoint.json}.
    tag = f"{name}.{rec['submission']}" if rec.get("submission") else name
    results = Path(rec["results_dir"])
    exit_file = results / f"{tag}.exit"
    if exit_file.exists():
        code = exit_file.read_text().strip() or "?"
        return "", f"its job ended (exit status {code}; hpclaunch status {name})"
    try:
        info = json.loads((results / f"{tag}.endpoint.json").read_text())
    except (OSError, ValueError):
        return "", "not started yet"
    if str(info.get("job_id", "")).split(".")[0] != rec["job_id"].split(".")[0]:
        return "", "not started yet"  # a previous job's file
    return f"http://{info.get('host') or rec['host']}:{info['port']}/v1", ""


def _wait_ready(rec: dict[str, Any], timeout: float) -> Endpoint:
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        url, why = _endpoint_now(rec)
        if why.startswith("its job ended"):
            raise EndpointStateError(f"endpoint {rec['name']!r} {why}", state="FAILED")
        if url:
            ep = Endpoint(name=rec["name"], base_url=url, model=rec["served_model_name"],
                          api_key=rec["api_key"], state="READY", model_id=rec["model_id"],
                          vllm_args=tuple(rec["vllm_args"]), layout=dict(rec["layout"]))
            if health_ok(ep):
                return ep
            why = f"{url} does not answer /health yet"
        if why != said:
            print(f"hpclaunch: waiting for {rec['name']}: {why}", flush=True)
            said = why
        if time.monotonic() > deadline:
            raise EndpointStateError(f"endpoint {rec['name']!r} was not READY after "
                                     f"{timeout:.0f} s ({why})", state="STARTING")
        time.sleep(2.0)


def run_job(spec: dict[str, Any], job_dir: Path) -> int:
    from hpclaunch.eval.runner import build_command

    rec = spec["endpoint"]
    ep = _wait_ready(rec, float(spec["wait_timeout"]))
    vf = VfEval(*spec["vf"])
    args = list(spec["vf_args"])
    if not any(a in ("-o", "--output-dir") or a.startswith("--output-dir=") for a in args):
        args += ["-o", str(job_dir / "results")]
        if vf.generation == "0.3" and "-s" not in args and "--save-results" not in args:
            args.append("-s")
    cmd = build_command(ep, spec["env_id"], args, vf, job_dir,
                        max_tokens_default=int(spec["max_tokens_default"]))
    for path, text in cmd.files.items():
        path.write_text(text, encoding="utf-8")
    print(f"hpclaunch: {ep.name} is READY at {ep.base_url}; running {cmd.shell()}", flush=True)
    proc = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env})

    def check() -> tuple[str, str]:
        _, why = _endpoint_now(rec)
        if why:  # vLLM exits 0 on the SIGTERM of a stop or scancel (143 from bash)
            stopped = why.startswith(("its job ended (exit status 0;", "its job ended (exit "
                                      "status 143;"))
            return ("ENDED" if stopped else "FAILED"), why
        return ("READY" if health_ok(ep) else "UNHEALTHY"), ""

    with MetricsWatch(ep, check=check, on_dead=proc.terminate) as watch:
        returncode = proc.wait()
    if watch.cause is not None:
        state, reason = watch.cause
        print(f"hpclaunch: endpoint {ep.name!r} went {state} during the eval ({reason}); "
              "vf-eval was stopped, its results are incomplete", flush=True)
        return {"FAILED": EXIT_FAILED, "ENDED": EXIT_ENDED}.get(state, EXIT_NOT_READY)
    print(f"hpclaunch: vf-eval exited {returncode}; results in {job_dir / 'results'}",
          flush=True)
    return returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    try:
        return run_job(spec, spec_path.parent)
    except UserError as exc:
        print(f"hpclaunch: {exc}", flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
