"""``stats``, ``watch`` and ``advise``: what a running server is doing, and how to tune it."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from hpclaunch.cli.common import complete_names
from hpclaunch.cli.main import cli


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _snapshot(name: str, previous: Any = None, use_metrics: bool = True) -> tuple[Any, Any, Any]:
    """(record, stats, metrics sample) for one endpoint, refreshed."""
    from hpclaunch import api
    from hpclaunch.endpoints.stats import collect
    from hpclaunch.endpoints.status import read_log

    observations: dict[str, Any] = {}
    rec = api.refresh([name], observations=observations)[0]
    obs = observations.get(name)
    with api.connect(rec) as transport:
        report = getattr(obs, "report", None)
        if report is None and rec.log_path:
            report = read_log(transport, rec.log_path)
        stats, sample = collect(rec, report, transport, previous, use_metrics=use_metrics)
    return rec, stats, (sample, report)


def _print_stats(stats: Any) -> None:
    click.echo(f"{stats.name}: {stats.state}  (source: {stats.source})")
    if stats.engines:
        rows = [[r.engine, _fmt(r.prompt_tps), _fmt(r.gen_tps), str(r.running), str(r.waiting),
                 _fmt(r.kv_usage_pct, "%"), _fmt(r.prefix_hit_pct, "%"),
                 _fmt(r.age_s, "s", 0)] for r in stats.engines]
        total = stats.total
        if total is not None and len(stats.engines) > 1:
            rows.append(["all", _fmt(total.prompt_tps), _fmt(total.gen_tps), str(total.running),
                         str(total.waiting), _fmt(total.kv_usage_pct, "%"), "", ""])
        from hpclaunch.cli.common import table

        click.echo(table(rows, ["ENGINE", "PROMPT tok/s", "GEN tok/s", "RUNNING", "WAITING",
                                 "KV", "PREFIX HIT", "AGE"]))
    if stats.note:
        click.echo(f"note: {stats.note}")
    facts = stats.startup
    if facts:
        parts = []
        if "kv_cache_tokens_per_engine" in facts:
            parts.append(f"KV cache {facts['kv_cache_tokens_per_engine'][0]:,} tokens/engine")
        if "max_concurrency_per_engine" in facts:
            conc = facts["max_concurrency_per_engine"]
            parts.append(f"max concurrency {conc[0]:.2f}x per engine at "
                         f"{facts.get('max_concurrency_for_tokens') or '?'} tokens "
                         f"({sum(conc):.2f}x over {len(conc)} engine(s))")
        if "model_load_gib" in facts:
            parts.append(f"weights {facts['model_load_gib']:.2f} GiB")
        if "startup_seconds" in facts:
            parts.append(f"engine init {facts['startup_seconds']:.1f} s")
        if parts:
            click.echo("startup: " + "; ".join(parts))


def _advice(rec: Any, report: Any) -> list[Any]:
    from hpclaunch.planning.catalog import model_info
    from hpclaunch.vllm.advice import advise

    if report is None:
        return []
    max_num_seqs = None
    args = list(rec.vllm_args)
    for i, arg in enumerate(args):
        if arg == "--max-num-seqs" and i + 1 < len(args) and args[i + 1].isdigit():
            max_num_seqs = int(args[i + 1])
        elif arg.startswith("--max-num-seqs=") and arg.split("=", 1)[1].isdigit():
            max_num_seqs = int(arg.split("=", 1)[1])
    try:
        info = model_info(rec.model_id)
    except Exception:  # noqa: BLE001 - advice works without model facts
        info = None
    return advise(report, max_num_seqs=max_num_seqs, dp=rec.layout.get("dp", 1),
                  tp=rec.layout.get("tp", 1), params_b=getattr(info, "params_b", None))


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.option("--advice", is_flag=True, help="Add the tuning advice and the numbers behind it.")
@click.option("--source", type=click.Choice(["auto", "log"]), default="auto", show_default=True,
              help="auto: /metrics when reachable, else the log's stats lines.")
@click.option("--json", "as_json", is_flag=True)
def stats(name: str, advice: bool, source: str, as_json: bool) -> None:
    """Throughput, queue and KV-cache usage of NAME, per engine and summed.

    \b
    Example:
      hpclaunch stats qwen-vl --advice
    """
    rec, result, (sample, report) = _snapshot(name, use_metrics=source == "auto")
    if sample is not None:
        time.sleep(1.0)  # token counters are totals: a second sample gives rates
        rec, result, (sample, report) = _snapshot(name, sample)
    tips = _advice(rec, report) if advice else []
    if as_json:
        data = result.to_json()
        if advice:
            data["advice"] = [{"level": a.level, "code": a.code, "message": a.message,
                               "numbers": a.numbers} for a in tips]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_stats(result)
    for tip in tips:
        numbers = ", ".join(f"{k}={v}" for k, v in tip.numbers.items())
        click.echo(f"{tip.level}: {tip.message}" + (f"  [{numbers}]" if numbers else ""))


@cli.command()
@click.argument("name", shell_complete=complete_names)
@click.option("--json", "as_json", is_flag=True)
def advise(name: str, as_json: bool) -> None:
    """Tuning advice for NAME from its log (KV usage, max-num-seqs, TP vs DP).

    \b
    Example:
      hpclaunch advise qwen-vl
    """
    rec, _, (_, report) = _snapshot(name, use_metrics=False)
    tips = _advice(rec, report)
    if as_json:
        click.echo(json.dumps([{"level": a.level, "code": a.code, "message": a.message,
                                "numbers": a.numbers} for a in tips], indent=2))
        return
    if not tips:
        click.echo(f"{name}: nothing to advise yet (no startup facts or stats in the log)")
    for tip in tips:
        numbers = ", ".join(f"{k}={v}" for k, v in tip.numbers.items())
        click.echo(f"{tip.level}: {tip.message}" + (f"  [{numbers}]" if numbers else ""))


@cli.command()
@click.argument("names", nargs=-1, shell_complete=complete_names)
@click.option("--interval", "-i", default=2.0, show_default=True, help="Seconds between updates.")
@click.option("--count", type=int, default=0,
              help="Stop after this many updates (0: until Ctrl-C).")
def watch(names: tuple[str, ...], interval: float, count: int) -> None:
    """A refreshing table of live endpoints (or NAMES): throughput, queue, KV usage.

    \b
    Example:
      hpclaunch watch              # every live endpoint, Ctrl-C to quit
    """
    import sys

    from hpclaunch.registry import Registry

    chosen = list(names) or [n for n, r in sorted(Registry().load().items()) if not r.final]
    previous: dict[str, Any] = {}
    shown = 0
    try:
        while True:
            lines: list[list[str]] = []
            for name in chosen:
                rec, result, (sample, _) = _snapshot(name, previous.get(name))
                previous[name] = sample
                total = result.total
                lines.append([name, rec.state, result.source, str(len(result.engines)),
                              _fmt(total.prompt_tps if total else None),
                              _fmt(total.gen_tps if total else None),
                              str(total.running) if total else "-",
                              str(total.waiting) if total else "-",
                              _fmt(total.kv_usage_pct if total else None, "%")])
            from hpclaunch.cli.common import table

            text = table(lines, ["NAME", "STATE", "SOURCE", "ENGINES", "PROMPT tok/s",
                                  "GEN tok/s", "RUNNING", "WAITING", "KV"])
            if sys.stdout.isatty():
                click.echo("\033[H\033[2J", nl=False)
            click.echo(f"{time.strftime('%H:%M:%S')}  (every {interval:g}s, Ctrl-C quits)")
            click.echo(text if lines else "no live endpoints")
            shown += 1
            if count and shown >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
