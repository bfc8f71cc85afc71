"""CLI: ``bench`` - load sweeps against named endpoints (see :mod:`hpclaunch.bench`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from hpclaunch.cli.common import complete_names
from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

EPILOG_BENCH = """\b
Examples:
  hpclaunch bench qwen-vl                          # levels 1,4,16,64, a table
  hpclaunch bench qwen-vl -c 1,8,32 -n 200 --stream --plot sweep.png
  hpclaunch bench qwen-tp qwen-dp --duration 60    # side by side, B/A ratios
  hpclaunch bench qwen-vl --profile guide-002      # the 4090 guide's test and targets
  hpclaunch bench --history qwen-vl                # earlier sweeps of this name

\b
Each level runs until its requests (--requests, default 4 per concurrent client, at
least 16) or its time (--duration) is used up. Tokens are the server's `usage`.
--plot needs matplotlib: pip install 'hpclaunch[plot]'.
"""


def _workload(opts: dict[str, Any]) -> Any:
    from hpclaunch.bench.profiles import profile
    from hpclaunch.bench.workload import Workload, load_dataset, parse_levels

    fields: dict[str, Any] = {}
    if opts["profile"]:
        p = profile(opts["profile"])
        fields.update(concurrency=p.concurrency, prompt_tokens=p.prompt_tokens,
                      max_tokens=p.max_tokens, stream=p.stream, api=p.api,
                      requests=p.requests, prompt_template=p.prompt_template, profile=p.name)
    if opts["concurrency"]:
        fields["concurrency"] = parse_levels(opts["concurrency"])
    for key in ("requests", "duration", "prompt_tokens", "max_tokens", "stream", "api"):
        if opts[key] is not None:
            fields[key] = opts[key]
    if opts["prompt_tokens"] is not None:
        fields["prompt_template"] = ""
    if opts["dataset"] is not None:
        fields.update(dataset=load_dataset(opts["dataset"]), dataset_name=opts["dataset"].name)
    return Workload(timeout=opts["timeout"], **fields)


def _run_with_bar(target: Any, workload: Any) -> Any:
    from hpclaunch.bench.sweep import sweep

    name = target[0].name

    counts = [workload.level_requests(c) for c in workload.concurrency]
    by_time = None in counts
    length = int(10 * workload.level_seconds() * len(counts)) if by_time else sum(
        c or 0 for c in counts)
    level, done, level_start = -1, 0, time.monotonic()
    with click.progressbar(length=length, label=name, file=sys.stderr, show_pos=not by_time,
                           show_eta=True, width=30) as bar:

        def on_result(concurrency: int, _result: Any) -> None:
            nonlocal level, done, level_start
            index = workload.concurrency.index(concurrency)
            if index != level:
                level, level_start = index, time.monotonic()
                bar.label = f"{name} c={concurrency}"
            if by_time:
                spent = min(workload.level_seconds(), time.monotonic() - level_start)
                target = int(10 * (index * workload.level_seconds() + spent))
            else:
                target = done + 1
            if target > done:
                bar.update(target - done)
                done = target

        result = sweep(target, workload, on_result)
        bar.update(max(0, length - done))
    return result


@cli.command(epilog=EPILOG_BENCH)
@click.argument("names", nargs=-1, required=True, metavar="NAME [NAME2]",
                shell_complete=complete_names)
@click.option("--concurrency", "-c", help="Concurrency levels, comma-separated [1,4,16,64].")
@click.option("--requests", "-n", type=click.IntRange(min=1),
              help="Requests per level [4 per concurrent client, at least 16].")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Seconds per level (with --requests, whichever ends first).")
@click.option("--prompt-tokens", type=click.IntRange(min=1),
              help="Synthetic prompt size in words, ~tokens [128].")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Tokens per reply [128].")
@click.option("--dataset", type=click.Path(dir_okay=False, path_type=Path),
              help='JSONL prompts: {"prompt": ...} or {"messages": [...]} a line.')
@click.option("--stream/--no-stream", default=None,
              help="Stream replies: adds time to first token and inter-token latency.")
@click.option("--api", type=click.Choice(["chat", "completions"]),
              help="/v1/chat/completions or /v1/completions [chat].")
@click.option("--profile", help="A guide's load test: guide-001, guide-002, guide-004.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0,
              show_default=True, help="Seconds one request may take.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweeps as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write one CSV row per endpoint and level.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw throughput and P95 latency against concurrency (PNG).")
@click.option("--history", is_flag=True, help="List NAME's recorded sweeps; send nothing.")
@click.option("--no-record", is_flag=True, help="Do not add this sweep to NAME's history.")
def bench(names: tuple[str, ...], as_json: bool, csv_path: Path | None,
          plot_path: Path | None, history: bool, no_record: bool, **opts: Any) -> None:
    """Load sweep of endpoint NAME (and NAME2, side by side): req/s, tokens/s, latency."""
    from hpclaunch.bench import report

    if history:
        if len(names) != 1:
            raise UserError("bench --history takes one endpoint name")
        from hpclaunch.bench.history import load

        sweeps = load(names[0])
        click.echo(json.dumps([s.to_json() for s in sweeps], indent=2) if as_json
                   else report.history(names[0], sweeps))
        return
    if len(names) > 2:
        raise UserError(f"bench compares at most two endpoints, got {len(names)}: "
                        f"{' '.join(names)}")
    if plot_path is not None:
        from hpclaunch.bench.plot import require_matplotlib

        require_matplotlib()
    from hpclaunch.bench.sweep import find

    workload = _workload(opts)
    idle = [c for c in workload.concurrency if (workload.level_requests(c) or c) < c]
    if idle:
        click.echo(f"warning: --requests {workload.requests} is below concurrency "
                   f"{','.join(map(str, idle))}: only {workload.requests} clients send there",
                   err=True)
    targets = [find(name) for name in names]  # every name checked before any load
    sweeps = [_run_with_bar(target, workload) for target in targets]
    _record(sweeps, no_record)
    _print(sweeps, workload, as_json)
    if csv_path is not None:
        report.write_csv(sweeps, csv_path)
        click.echo(f"wrote {csv_path}", err=True)
    if plot_path is not None:
        from hpclaunch.bench.plot import write_png

        write_png(sweeps, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


def _record(sweeps: list[Any], no_record: bool) -> None:
    if no_record:
        return
    from hpclaunch.bench.history import save
    from hpclaunch.registry import Registry

    registry = Registry()
    for s in sweeps:
        try:
            click.echo(f"recorded in {save(s, registry.get(s.endpoint))}", err=True)
        except (UserError, OSError) as exc:
            click.echo(f"warning: {s.endpoint}: sweep not recorded ({exc})", err=True)


def _print(sweeps: list[Any], workload: Any, as_json: bool) -> None:
    from hpclaunch.bench import report
    from hpclaunch.bench.profiles import PROFILES, check

    profile = PROFILES.get(workload.profile)
    if as_json:
        out: dict[str, Any] = {"sweeps": [s.to_json() for s in sweeps]}
        if profile is not None:
            out["targets"] = [
                {"endpoint": s.endpoint, "concurrency": t.concurrency, "metric": t.metric,
                 "op": t.op, "value": t.value, "measured": value, "met": met,
                 "guide": t.says} for s in sweeps for t, value, met in check(profile, s)]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo("\n\n".join(report.table(s) for s in sweeps))
    if len(sweeps) == 2:
        click.echo("\n" + report.side_by_side(*sweeps))
    if profile is not None:
        click.echo("\n" + profile.source)
        for s in sweeps:
            if profile.targets:
                click.echo(report.targets(profile, s))
