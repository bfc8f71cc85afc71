"""A stand-in for the ``apptainer``/``singularity``/``docker`` commands (not installable
here): parses the command line as strictly as the real tool would read it, records it,
then runs the command on the host with the environment the container would get.

Installed under the runtime's name in a directory put first on PATH; ``SHIM_STATE`` is
where it records (``calls.jsonl``) and keeps the pid of each named container, so that
``docker stop NAME`` ends exactly that server, as the real one would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

STATE = Path(os.environ["SHIM_STATE"])


def record(entry: dict) -> None:
    with (STATE / "calls.jsonl").open("a") as out:
        out.write(json.dumps(entry) + "\n")


def fail(message: str) -> None:
    record({"error": message, "argv": sys.argv})
    print(f"shim: {message}", file=sys.stderr)
    sys.exit(125)


def check_bind(bind: str) -> None:
    parts = bind.split(":")
    if not 1 <= len(parts) <= 3 or not Path(parts[0]).exists() or not parts[-1 if len(parts) < 3
                                                                            else 1].startswith("/"):
        fail(f"bad or missing bind source: {bind!r}")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        fail(f"bad bind option: {bind!r}")


def apptainer(runtime: str, args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=runtime, allow_abbrev=False)
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("exec", allow_abbrev=False)
    ex.add_argument("--nv", action="store_true")
    ex.add_argument("--rocm", action="store_true")
    ex.add_argument("--bind", "-B", action="append", default=[])
    ex.add_argument("--cleanenv", "-e", action="store_true")
    ex.add_argument("--containall", "-C", action="store_true")
    ex.add_argument("image")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    for bind in opts.bind:
        check_bind(bind)
    prefix = "APPTAINERENV_" if runtime == "apptainer" else "SINGULARITYENV_"
    # --cleanenv: only the prefixed variables cross, without their prefix.
    env = {} if opts.cleanenv else {k: v for k, v in os.environ.items()
                                    if not k.startswith(prefix)}
    env.update({k[len(prefix):]: v for k, v in os.environ.items() if k.startswith(prefix)})
    env.setdefault("PATH", "/usr/bin:/bin")
    record({"runtime": runtime, "argv": args, "env_names": sorted(env)})
    os.execvpe(opts.command[0], opts.command, env)


def docker(runtime: str, args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=runtime, allow_abbrev=False)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", allow_abbrev=False)
    run.add_argument("--rm", action="store_true")
    run.add_argument("--name", required=True)
    run.add_argument("--network", choices=["host"], required=True)
    run.add_argument("--ipc", choices=["host"])
    run.add_argument("--shm-size")
    run.add_argument("--gpus")
    run.add_argument("--device", action="append", default=[])
    run.add_argument("--env", "-e", action="append", default=[])
    run.add_argument("--volume", "-v", action="append", default=[])
    run.add_argument("--ulimit", action="append", default=[])
    run.add_argument("--entrypoint", required=True)
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    stop = sub.add_parser("stop", allow_abbrev=False)
    stop.add_argument("-t", "--time", type=int, required=True)
    stop.add_argument("name")
    opts = parser.parse_args(args)
    if opts.cmd == "stop":
        record({"runtime": runtime, "argv": args})
        pidfile = STATE / f"{opts.name}.pid"
        if not pidfile.exists():
            fail(f"no such container: {opts.name}")
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + opts.time
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        return
    for bind in opts.volume:
        check_bind(bind)
    if any("=" in name for name in opts.env):
        fail(f"a value on the command line: {opts.env}")
    # Only the named variables cross (with the host's values), as `docker run -e NAME` does.
    env = {name: os.environ[name] for name in opts.env if name in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    record({"runtime": runtime, "argv": args, "env_names": sorted(env)})
    (STATE / f"{opts.name}.pid").write_text(str(os.getpid()))
    os.execvpe(opts.entrypoint, [opts.entrypoint, *opts.command], env)


def main() -> None:
    runtime = sys.argv[1]  # the wrapper passes the name it was called by
    if runtime in ("apptainer", "singularity"):
        apptainer(runtime, sys.argv[2:])
    else:
        docker(runtime, sys.argv[2:])


if __name__ == "__main__":
    main()
