"""Commands on one endpoint's life: submit, wait, endpoints, status, logs, stop, rm, chat."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from hpclaunch.cli.common import (
    complete_names,
    complete_presets,
    human_age,
    state_label,
    table,
)
from hpclaunch.cli.main import cli
from hpclaunch.errors import EndpointStateError, UserError

EPILOG_SUBMIT = """\b
Examples:
  hpclaunch submit Qwen3-VL-2B --preset dp4-throughput
  hpclaunch submit Qwen/Qwen3-8B --preset tp2-balanced --name q8 --cluster mycluster
  hpclaunch submit Qwen3-0.6B --preset single-gpu --simulate       # stand-in, no GPU
  hpclaunch submit Qwen3-0.6B --preset single-gpu --set max-num-seqs=64 --dry-run
"""



@cli.command(epilog=EPILOG_SUBMIT)
@click.argument("model")
@click.option("--preset", "-p", required=True, shell_complete=complete_presets,
              help="Preset name (hpclaunch presets lists them).")
@click.option("--name", "-n", help="Endpoint name (default: derived from the model).")
@click.option("--cluster", "-c", help="Cluster profile from clusters.yaml (default: its default).")
@click.option("--scheduler", type=click.Choice(["local", "slurm", "pbs"]),
              help="Override the profile's scheduler.")
@click.option("--pbs-dialect", type=click.Choice(["pbspro", "torque"]),
              help="With --scheduler pbs: which PBS.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a preset value: dp/tp/pp, a resource (time-limit, partition, ...) "
                   "or any vLLM flag (max-num-seqs=256). Repeatable.")
@click.option("--vllm-args", default="", metavar='"ARGS"', help="Extra vLLM flags, verbatim.")
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the job. Repeatable.")
@click.option("--gpus-per-node", type=int, help="GPUs per node, if the profile does not say.")
@click.option("--gpu", "gpu_model", metavar="MODEL",
              help="GPU model for the memory checks (H100-80GB, A100-40GB, RTX5090, ...), "
                   "if the profile's gpu-model does not say.")
@click.option("--simulate/--no-simulate", default=None,
              help="Run hpclaunch's vLLM stand-in instead of vLLM (no GPU; for demos and tests).")
@click.option("--dry-run", is_flag=True, help="Print the job script; submit nothing.")
@click.option("--wait", "wait_ready", is_flag=True, help="Wait until READY after submitting.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds for --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the new endpoint as JSON.")
@click.option("--export", "export_after", is_flag=True,
              help="Update the vf-eval endpoints file afterwards (see hpclaunch export).")
@click.option("--replicas", type=int, help="A fleet: K replicas behind vllm-router, one name.")
@click.option("--replicas-restart", is_flag=True, help="Replace fleet replicas that fail.")
@click.option("--idle-stop", metavar="DURATION", help="Stop after no requests for this long (30m).")
@click.option("--relay", is_flag=True, help="Slurm: a successor takes over before the time limit.")
def submit(model: str, preset: str, name: str | None, cluster: str | None,
           scheduler: str | None, pbs_dialect: str | None, sets: tuple[str, ...],
           vllm_args: str, envs: tuple[str, ...], gpus_per_node: int | None,
           gpu_model: str | None,
           simulate: bool | None, dry_run: bool, wait_ready: bool, timeout: float,
           as_json: bool, export_after: bool, replicas: int | None, replicas_restart: bool,
           idle_stop: str | None, relay: bool) -> None:
    """Render a vLLM job for MODEL with a preset and submit it.

    MODEL is a catalog alias (Qwen3-VL-2B), a Hugging Face id (Qwen/Qwen3-8B) or a
    local path. Every value is checked before anything is queued.
    """
    from hpclaunch import api
    from hpclaunch.planning.plan import parse_assignments

    overrides = parse_assignments(list(sets))
    env = raw_assignments(list(envs), "--env")
    request = api.SubmitRequest(
        model=model, preset=preset, cluster=cluster, name=name, overrides=overrides,
        scheduler=scheduler, pbs_dialect=pbs_dialect, vllm_args=vllm_args, env=env,
        simulate=simulate, gpus_per_node=gpus_per_node, gpu=gpu_model)
    from hpclaunch.cli.fleet import submit_extras

    rec = submit_extras(request, replicas, replicas_restart, idle_stop, relay, dry_run)
    if isinstance(rec, str):  # a dry run of a fleet or an idle stop
        click.echo(rec, nl=False)
        return
    if rec is None:
        result = api.submit(request, dry_run=dry_run)
        for warning in result.warnings:
            click.echo(warning, err=True)
        if dry_run:
            click.echo(result.script, nl=False)
            return
        rec = result.record
    assert rec is not None
    if as_json and not wait_ready:
        click.echo(json.dumps(rec.public(), indent=2))
        return
    sim = " (simulated: hpclaunch stand-in, no GPU)" if rec.simulated else ""
    click.echo(f"submitted {rec.name}: job {rec.job_id} on {rec.cluster} "
               f"({rec.scheduler}){sim}", err=as_json)
    if not wait_ready:  # with --wait the next step is already under way
        click.echo(f"  next: hpclaunch wait {rec.name}", err=as_json)
    try:
        if wait_ready:
            _wait_and_report(rec.name, timeout, as_json)
    finally:
        if export_after:
            from hpclaunch.eval.export import export_after_command

            export_after_command(lambda m: click.echo(m, err=True), hint_name=rec.name)


def raw_assignments(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _wait_and_report(name: str, timeout: float, as_json: bool, quiet: bool = False) -> None:
    from hpclaunch import api

    last = {"line": "", "phase": "", "loading": ""}
    tty = sys.stderr.isatty()
    started = time.monotonic()

    def loading(progress: Any) -> None:
        # A terminal gets the phase in its live line; a log file one line per phase.
        last["loading"] = progress.line()
        if not tty and progress.phase and progress.phase != last["phase"]:
            last["phase"] = progress.phase
            click.echo(f"{name}: STARTING {human_age(time.monotonic() - started)} - "
                       f"{last['loading']}", err=True)

    def progress(rec: Any, elapsed: float) -> None:
        if quiet:
            return
        line = f"{rec.name}: {rec.state} {human_age(elapsed)}"
        if tty and rec.state == "STARTING" and last["loading"]:
            line += f" - {last['loading']}"
        elif rec.reason:
            line += f" - {rec.reason}"
        if line.split(" ", 2)[1:2] == last["line"].split(" ", 2)[1:2] and not tty and \
                rec.reason and last["line"].endswith(rec.reason):
            return
        if tty:
            click.echo("\r\033[K" + line[:150], nl=False, err=True)
        else:
            click.echo(line, err=True)
        last["line"] = line

    rec = api.wait(name, timeout=timeout, on_progress=progress,
                   on_loading=None if quiet else loading)
    if tty and not quiet:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(rec.public(), indent=2))
    elif rec.state == "READY":
        click.echo(f"{rec.name} is READY at {rec.url} (model {rec.served_model_name!r})")
    if rec.state != "READY":
        raise EndpointStateError(f"{rec.name} is {rec.state}: {rec.reason}", state=rec.state)


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.option("--timeout", default=1800.0, show_default=True,
              help="Give up (exit 1) after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint as JSON when done.")
@click.option("--export", "export_after", is_flag=True,
              help="Then update the vf-eval endpoints file (see hpclaunch export).")
def wait(name: str, timeout: float, quiet: bool, as_json: bool, export_after: bool) -> None:
    """Wait until endpoint NAME is READY; exit 1 if it fails or the timeout passes.

    \b
    Example:
      hpclaunch wait qwen-vl --timeout 3600 && vf-eval my-env -m qwen-vl
    """
    try:
        _wait_and_report(name, timeout, as_json, quiet)
    finally:
        if export_after:
            from hpclaunch.eval.export import export_after_command

            export_after_command(lambda m: click.echo(m, err=True))


@cli.command()
@click.option("--all", "-a", "show_all", is_flag=True, help="Include ENDED and FAILED endpoints.")
@click.option("--cached", is_flag=True, help="Show stored states; ask no scheduler.")
@click.option("--json", "as_json", is_flag=True, help="JSON list (no API keys).")
@click.option("--usage", is_flag=True, help="GPU-hours per endpoint and per fleet.")
def endpoints(show_all: bool, cached: bool, as_json: bool, usage: bool) -> None:
    """List endpoints: NAME MODEL STATE URL JOB NODE AGE.

    Live entries are refreshed with one scheduler call per cluster.
    """
    from hpclaunch.registry import Registry

    registry = Registry()
    stale: set[str] = set()  # states the scheduler could not confirm: shown as last known
    if cached:
        records = list(registry.load().values())
    else:
        from hpclaunch import api

        warnings: list[str] = []
        records = api.refresh(registry=registry, warnings=warnings, stale=stale)
        for warning in warnings:
            click.echo(f"hpclaunch: warning: {warning}", err=True)
    from hpclaunch.cli import fleet

    by_name = {r.name: r for r in records} if cached else \
        fleet.refresh_fleets({r.name: r for r in records})
    if usage:
        click.echo(table(fleet.usage_rows(by_name), ["NAME", "KIND", "STATE", "GPUS", "GPU-H"]))
        return
    fleets = fleet.fleet_rows(by_name)  # a fleet is one row; its replicas: status NAME
    records = [by_name[r.name] for r in records if r.role != "replica" and r.name in by_name]
    hidden = [] if show_all else [r for r in records if r.final]
    records = [r for r in records if show_all or not r.final]
    records.sort(key=lambda r: r.created)
    if as_json:
        click.echo(json.dumps([{**r.public(), "stale": r.name in stale} for r in records],
                              indent=2))
        return
    if not records:
        click.echo(_nothing_live(hidden))
        return
    now = time.time()
    rows = [[r.name, r.served_model_name if r.served_model_name == r.model_id else
             f"{r.model_id}", fleets.get(r.name, state_label(r))
             + (" (last known)" if r.name in stale else ""),
             r.url or "-", r.job_id or "-", r.host or "-",
             human_age(now - r.created)] for r in records]
    click.echo(table(rows, ["NAME", "MODEL", "STATE", "URL", "JOB", "NODE", "AGE"]))


def _nothing_live(hidden: list[Any]) -> str:
    """Say what ``--all`` would show: FAILED ones are hidden too, not only ENDED ones."""
    if not hidden:
        return "no endpoints"
    counts = {s: sum(r.state == s for r in hidden) for s in ("FAILED", "ENDED")}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"no live endpoints ({', '.join(parts)}: hpclaunch endpoints --all shows them)"


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.option("--json", "as_json", is_flag=True, help="JSON object (no API key).")
def status(name: str, as_json: bool) -> None:
    """State, job, node, port, log path and the last stats line of NAME.

    Exits 0 when READY, 4 not ready yet (or UNHEALTHY), 5 FAILED, 6 ENDED, 3 unknown name.
    """
    from hpclaunch import api

    observations: dict[str, Any] = {}
    rec = api.refresh([name], observations=observations)[0]
    obs = observations.get(name)
    report = getattr(obs, "report", None)
    stats_line = _stats_summary(report)
    if as_json:
        data = rec.public()
        data["last_stats"] = stats_line
        click.echo(json.dumps(data, indent=2))
        _exit_for_state(rec)
        return
    fields = [
        ("name", rec.name), ("state", state_label(rec)), ("reason", rec.reason or "-"),
        ("model", rec.model_id), ("served as", rec.served_model_name), ("preset", rec.preset),
        ("cluster", f"{rec.cluster} ({rec.scheduler})"), ("job", rec.job_id),
        ("node", rec.host or "-"), ("port", str(rec.port or "-")), ("url", rec.url or "-"),
        ("log", rec.log_path or "-"), ("last stats", stats_line or "-"),
    ]
    for key, value in fields:
        click.echo(f"{key + ':':<12} {value}")
    from hpclaunch.cli.fleet import print_fleet_status

    print_fleet_status(name)  # replicas of a fleet; GPU-hours
    _exit_for_state(rec)


def _exit_for_state(rec: Any) -> None:
    """``status`` is a check scripts can branch on: 0 only when READY (see the exit codes);
    for an eval job, 0 once vf-eval finished with status 0."""
    from hpclaunch.errors import exit_code_for_state

    if rec.kind == "eval" and rec.state == "ENDED" and rec.reason.startswith("vf-eval finished"):
        return
    code = exit_code_for_state(rec.state)
    if code:
        sys.exit(code)


def _stats_summary(report: Any) -> str:
    if report is None or not getattr(report, "stats", None):
        return ""
    parts = []
    for engine, st in sorted(report.stats.items()):
        parts.append(f"engine {engine}: prompt {st.prompt_tps:.1f} tok/s, gen {st.gen_tps:.1f} "
                     f"tok/s, running {st.running}, waiting {st.waiting}, "
                     f"KV {st.kv_usage_pct:.1f}%")
    return "; ".join(parts)


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names)
def stop(names: tuple[str, ...]) -> None:
    """Cancel the jobs of NAMES; entries stay as ENDED (endpoints --all shows them)."""
    from hpclaunch.cli.fleet import stop_any

    for name in names:
        for rec in stop_any(name):  # a fleet: its replicas leave the router first
            click.echo(f"{rec.name}: {rec.state} ({rec.reason})")


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete_names)
def rm(names: tuple[str, ...]) -> None:
    """Forget ended endpoints NAMES (their files in the results dir stay)."""
    from hpclaunch.cli.fleet import remove_any

    for name in names:
        for removed in remove_any(name):  # a fleet: its ended replicas too
            click.echo(f"removed {removed}")


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.argument("message", default="Say hello in five words.")
@click.option("--max-tokens", default=64, show_default=True)
def chat(name: str, message: str, max_tokens: int) -> None:
    """Send one chat MESSAGE to endpoint NAME and print the reply (a smoke test).

    \b
    Example:
      hpclaunch chat qwen-vl "What is 2+2?"
    """
    from hpclaunch.endpoints.resolve import resolve

    click.echo(resolve(name).chat(message, max_tokens=max_tokens))


# `presets` and `presets show` live in cli_plan.py with plan, check and suggest.


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (endpoint and preset names complete too).

    \b
    Examples:
      eval "$(hpclaunch completion bash)"          # in ~/.bashrc
      hpclaunch completion zsh > ~/.zfunc/_hpclaunch
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        raise UserError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "hpclaunch", "_HPCLAUNCH_COMPLETE").source())


# Command name -> the module that registers it on `cli` when imported.
