"""Run vf-eval against an endpoint by name, the way the guides do it, minus the traps.

Traps this module exists for:

* vf-eval 0.3.x sends a name it does not find in its registry to a hosted provider,
  so a typo'd endpoint name quietly evaluates someone else's model. We refuse
  unknown and non-READY names before vf-eval runs.
* verifiers 0.3.x and 0.4.x take endpoints differently (a TOML ``[[endpoint]]``
  registry and ``-m NAME`` vs a per-run config file ``@ FILE``). We read which
  generation the ``vf-eval`` on PATH is from its console script, without
  importing verifiers (that costs seconds).
* The reasoning rule (guide 003): with ``--reasoning-parser`` on the server, vLLM
  already separates the reasoning, so the environment must not parse ``<think>``
  tags (``use_think: false``) and the answer needs room (max tokens 32768 by
  default, capped by the server's context). ``use_think: true`` against such a
  server is refused, as is a max-tokens value the server would reject.
* Keys go to vf-eval through its environment, never its command line.

A/B compare runs the same eval on several endpoints one after the other and reads
the servers' own ``/metrics`` counters, so requests/s and tokens/s are what the
servers did, whatever vf-eval prints.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import EndpointStateError, UserError
from hpclaunch.eval.measure import MetricsWatch, RunStats
from hpclaunch.eval.vfeval import (
    REASONING_MAX_TOKENS,
    VfEval,
    detect_vf_eval,
    reasoning_max_tokens,
    server_max_model_len,
)

# vf-eval 0.3.x options that hpclaunch eval sets itself from the endpoint.
LEGACY_RESERVED = {
    "-m": "--model", "--model": "--model", "-e": "--endpoints-path",
    "--endpoints-path": "--endpoints-path", "-b": "--api-base-url",
    "--api-base-url": "--api-base-url", "-k": "--api-key-var", "--api-key-var": "--api-key-var",
    "-p": "--provider", "--provider": "--provider",
}
V1_RESERVED = ("-m", "--model", "--client.base-url", "--client.base_url",
               "--client.api-key-var", "--client.api_key_var", "@")


def _reasoning_refusal(ep: Endpoint, what: str) -> UserError:
    return UserError(
        f"{ep.name} runs vLLM with --reasoning-parser {ep.reasoning_parser}, which already "
        f"separates the reasoning from the answer, so {what} would make the environment look "
        "for <think> tags that never arrive; drop it (hpclaunch eval sets use_think false), "
        "or serve without --reasoning-parser")


# -- vf-eval arguments ----------------------------------------------------------------------


def _option_values(args: list[str], names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Values of an option in argparse spellings (``-a V``, ``--x V``, ``--x=V``, ``-aV``),
    and the arguments without it."""
    values: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        matched = False
        for name in names:
            if arg == name:
                if i + 1 >= len(args):
                    raise UserError(f"{name} needs a value")
                values.append(args[i + 1])
                i += 2
                matched = True
            elif name.startswith("--") and arg.startswith(name + "="):
                values.append(arg.split("=", 1)[1])
                i += 1
                matched = True
            elif len(name) == 2 and not arg.startswith("--") and arg.startswith(name) \
                    and len(arg) > 2:
                values.append(arg[2:])
                i += 1
                matched = True
            if matched:
                break
        if not matched:
            rest.append(arg)
            i += 1
    return values, rest


def _has_option(args: list[str], names: tuple[str, ...] | dict[str, str]) -> str | None:
    for arg in args:
        head = arg.split("=", 1)[0]
        if head in names:
            return head
        if len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and arg[:2] in names:
            return arg[:2]
    return None


def _json_object(text: str, option: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{option} takes a JSON object, got {text!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise UserError(f"{option} takes a JSON object, got {text!r}")
    return value


def _as_int(text: object, option: str) -> int:
    try:
        return int(str(text))
    except ValueError as exc:
        raise UserError(f"{option} takes a whole number, got {text!r}") from exc


def _check_max_tokens(ep: Endpoint, value: int, context: int | None, option: str) -> None:
    if context and value >= context:
        raise UserError(f"{option} {value} leaves no room for the prompt in {ep.name}'s "
                        f"context of {context} tokens (--max-model-len); use a smaller value")


@dataclass
class EvalCommand:
    """What to run: argv (no secrets), extra environment (the key), files to write first."""

    argv: list[str]
    env: dict[str, str]
    files: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        return shlex.join(self.argv)


def refuse_reserved(name: str, args: list[str], vf: VfEval) -> None:
    """Refuse vf-eval options that hpclaunch sets from the endpoint (before any state check)."""
    if vf.generation == "0.4":
        clash = _has_option(args, V1_RESERVED)
        if clash:
            raise UserError(f"hpclaunch eval sets {clash} from endpoint {name} (in the config "
                            "file it passes with @); leave it out, or run vf-eval directly")
        return
    clash = _has_option(args, LEGACY_RESERVED)
    if clash:
        raise UserError(f"hpclaunch eval sets vf-eval's {LEGACY_RESERVED[clash]} from endpoint "
                        f"{name}; leave {clash} out (or run vf-eval directly)")


def build_command(ep: Endpoint, env_id: str, vf_args: list[str], vf: VfEval, workdir: Path,
                  *, max_tokens_default: int = REASONING_MAX_TOKENS,
                  context: int | None = None) -> EvalCommand:
    """The vf-eval command for ``ep``; pure apart from nothing - files are only listed."""
    if vf.generation == "0.4":
        return _build_v1(ep, env_id, list(vf_args), vf, workdir, max_tokens_default, context)
    return _build_legacy(ep, env_id, list(vf_args), vf, workdir, max_tokens_default, context)


def _build_legacy(ep: Endpoint, env_id: str, args: list[str], vf: VfEval, workdir: Path,
                  max_tokens_default: int, context: int | None) -> EvalCommand:
    from hpclaunch.eval.vf03_registry import REGISTRY_HEADER, registry_block

    refuse_reserved(ep.name, args, vf)
    registry = workdir / "endpoints.toml"
    cmd = EvalCommand(argv=[], env={ep.key_var: ep.api_key},
                      files={registry: REGISTRY_HEADER + "\n" + registry_block(ep)})
    context = context or ep.max_model_len
    if ep.reasoning_parser:
        env_values, args = _option_values(args, ("-a", "--env-args"))
        env_args = _json_object(env_values[-1], "-a/--env-args") if env_values else {}
        if env_args.get("use_think"):
            raise _reasoning_refusal(ep, "-a '{\"use_think\": true}'")
        env_args["use_think"] = False
        args = ["-a", json.dumps(env_args, separators=(",", ":")), *args]
        sampling_values, _ = _option_values(args, ("-S", "--sampling-args"))
        sampling = _json_object(sampling_values[-1], "-S/--sampling-args") \
            if sampling_values else {}
        t_values, _ = _option_values(args, ("-t", "--max-tokens"))
        if "max_tokens" in sampling:  # -S keys override -t in vf-eval
            _check_max_tokens(ep, _as_int(sampling["max_tokens"], "-S max_tokens"), context,
                              "-S max_tokens")
        elif t_values:
            value = _as_int(t_values[-1], "-t/--max-tokens")
            _check_max_tokens(ep, value, context, "-t/--max-tokens")
            if value < 1024:
                cmd.notes.append(f"-t {value} is small for a reasoning model: the reasoning "
                                 "may use it all up (the guides use 32768)")
        else:
            max_tokens = reasoning_max_tokens(ep, max_tokens_default, context)
            args = ["-t", str(max_tokens), *args]
            cmd.notes.append(f"{ep.name} serves with --reasoning-parser {ep.reasoning_parser}: "
                             f"use_think false, max tokens {max_tokens}")
    cmd.argv = [vf.path, env_id, "-m", ep.name, "-e", str(registry), *args]
    return cmd


def _build_v1(ep: Endpoint, env_id: str, args: list[str], vf: VfEval, workdir: Path,
              max_tokens_default: int, context: int | None) -> EvalCommand:
    from hpclaunch.eval.vf04_configs import v1_config

    refuse_reserved(ep.name, args, vf)
    if _has_option(args, ("-a", "--env-args")):
        raise UserError("verifiers 0.4 has no -a/--env-args: pass environment fields as "
                        "--env.taskset.FIELD VALUE")
    cmd = EvalCommand(argv=[], env={ep.key_var: ep.api_key})
    context = context or ep.max_model_len
    max_tokens: int | None = None
    if ep.reasoning_parser:
        for spelling in ("--env.taskset.use_think", "--env.taskset.use-think"):
            values, _ = _option_values(args, (spelling,))
            if values and values[-1].strip().lower() in ("true", "1", "yes"):
                raise _reasoning_refusal(ep, f"{spelling} {values[-1]}")
        user, _ = _option_values(args, ("--sampling.max-tokens", "--sampling.max_tokens"))
        if user:
            _check_max_tokens(ep, _as_int(user[-1], "--sampling.max-tokens"), context,
                              "--sampling.max-tokens")
        else:
            max_tokens = reasoning_max_tokens(ep, max_tokens_default, context)
            cmd.notes.append(f"{ep.name} serves with --reasoning-parser {ep.reasoning_parser}: "
                             f"max tokens {max_tokens} (verifiers 0.4 has no use_think switch: "
                             "make sure the taskset does not parse <think> tags)")
    config = workdir / f"{ep.name}.toml"
    cmd.files[config] = v1_config(ep, max_tokens=max_tokens)
    if not _has_option(args, ("--push", "--no-push")):
        args.append("--no-push")  # 0.4 uploads results by default
    cmd.argv = [vf.path, env_id, "@", str(config), *args]
    return cmd


def ready_endpoint(name: str, timeout: float, echo: Callable[[str], None]) -> Endpoint:
    """Refuse unknown, FAILED, ENDED and UNHEALTHY names at once; wait for PENDING/STARTING.

    The state is asked afresh (one scheduler call and a /health probe): a stored READY
    may be a server that died since the last look.
    """
    from hpclaunch.endpoints.lifecycle import refresh
    from hpclaunch.endpoints.resolve import resolve
    from hpclaunch.registry import READY, UNHEALTHY, Registry

    if Registry().get(name).kind != "endpoint":  # unknown: "did you mean" (exit 3)
        raise UserError(f"{name!r} is an eval job, not an endpoint")
    rec = refresh([name])[0]
    if rec.final or rec.state == UNHEALTHY:
        raise EndpointStateError(
            f"endpoint {name!r} is {rec.state}{': ' + rec.reason if rec.reason else ''}; "
            f"nothing was run (hpclaunch status {name})", state=rec.state)
    if rec.state != READY:
        echo(f"waiting for {name} ({rec.state}) to be READY (at most {timeout:.0f} s)")
    return resolve(name, wait=rec.state != READY, timeout=timeout)


def _state_now(name: str) -> tuple[str, str]:
    from hpclaunch.endpoints.lifecycle import refresh

    rec = refresh([name])[0]
    return rec.state, rec.reason


def _run_watched(cmd: EvalCommand, ep: Endpoint) -> tuple[int, MetricsWatch]:
    """Run vf-eval while watching ``ep``; stop vf-eval if the endpoint dies under it.

    vf-eval itself goes on through a dead server (every rollout an error, reward 0,
    exit 0), so the watch is what turns a dead endpoint into a failed eval.
    """
    env = {**os.environ, **cmd.env}
    proc = subprocess.Popen(cmd.argv, env=env)

    def stop_vf_eval() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    with MetricsWatch(ep, check=lambda: _state_now(ep.name), on_dead=stop_vf_eval) as watch:
        try:
            returncode = proc.wait()
        except BaseException:  # Ctrl-C: vf-eval must not outlive us
            stop_vf_eval()
            raise
    return returncode, watch


def run_eval(name: str, env_id: str, vf_args: list[str], *, vf: VfEval | None = None,
             wait_timeout: float = 1800.0, dry_run: bool = False,
             max_tokens_default: int = REASONING_MAX_TOKENS,
             echo: Callable[[str], None] = print) -> RunStats | EvalCommand:
    """Run vf-eval on endpoint ``name`` (its output goes to this process's stdout/stderr).

    Raises :class:`EndpointStateError` (exit 5 FAILED, 6 ENDED, 4 UNHEALTHY) when the
    endpoint dies during the run, naming the cause; vf-eval is stopped then.
    """
    vf = vf or detect_vf_eval()
    assert vf is not None
    refuse_reserved(name, vf_args, vf)
    ep = ready_endpoint(name, wait_timeout, echo)
    context = server_max_model_len(ep) if ep.reasoning_parser else None
    with tempfile.TemporaryDirectory(prefix="hpclaunch-eval-") as tmp:
        cmd = build_command(ep, env_id, vf_args, vf, Path(tmp),
                            max_tokens_default=max_tokens_default, context=context)
        for note in cmd.notes:
            echo(note)
        if dry_run:
            for path, text in cmd.files.items():
                echo(f"# {path} (written for the run, removed after it):\n{text.rstrip()}")
            return cmd
        for path, text in cmd.files.items():
            path.write_text(text, encoding="utf-8")
        echo(f"running (verifiers {vf.version or vf.generation + '.x'}): {cmd.shell()}")
        start = time.monotonic()
        returncode, watch = _run_watched(cmd, ep)
        wall = time.monotonic() - start
    if watch.cause is not None:
        state, reason = watch.cause
        raise EndpointStateError(
            f"endpoint {name!r} went {state} during the eval ({reason}); vf-eval was stopped "
            f"after {wall:.0f} s, its results are incomplete (hpclaunch status {name})",
            state=state if state != "READY" else "UNHEALTHY")
    return RunStats(name=ep.name, model_id=ep.model_id, layout=ep.layout_label,
                    returncode=returncode, wall_s=wall, busy_s=watch.busy_seconds(),
                    requests=watch.delta("requests"), gen_tokens=watch.delta("gen_tokens"),
                    prompt_tokens=watch.delta("prompt_tokens"))


def compare(names: list[str], env_id: str, vf_args: list[str], *, vf: VfEval | None = None,
            wait_timeout: float = 1800.0, max_tokens_default: int = REASONING_MAX_TOKENS,
            echo: Callable[[str], None] = print) -> list[RunStats]:
    """The same eval on each endpoint in turn (never at once: they would share this CPU)."""
    from hpclaunch.registry import Registry

    if len(set(names)) != len(names):
        raise UserError(f"compare needs different endpoints, got {' '.join(names)}")
    records = Registry().load()
    for name in names:  # fail on a typo before spending minutes on the first run
        if name not in records:
            Registry().get(name)
    models = {records[n].model_id for n in names}
    if len(models) > 1:
        echo(f"note: comparing different models ({', '.join(sorted(models))}); an A/B of "
             "layouts is meaningful for one model")
    vf = vf or detect_vf_eval()
    runs = []
    for name in names:
        stats = run_eval(name, env_id, vf_args, vf=vf, wait_timeout=wait_timeout,
                         max_tokens_default=max_tokens_default, echo=echo)
        assert isinstance(stats, RunStats)
        runs.append(stats)
    return runs
