"""Commands that decide before anything runs: ``presets``, ``plan``, ``check``, ``suggest``.

Thin wrappers: the work is in :mod:`hpclaunch.planning.presets`, :mod:`hpclaunch.planning.capacity`,
:mod:`hpclaunch.planning.preflight` and :mod:`hpclaunch.planning.suggest`.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

from hpclaunch.cli.common import complete_presets, table
from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

_PLAN_EPILOG = """\b
Examples:
  hpclaunch plan Qwen3-VL-2B --preset vl-dp4 --gpu H100-80GB
  hpclaunch plan Qwen/Qwen3-VL-2B-Thinking --preset vl-dp4 --kv-cache-gib 37.15
  hpclaunch plan Llama-3.1-70B-Instruct --preset tp4-throughput --gpu A100-40GB --max-model-len 16k
"""

_CHECK_EPILOG = """\b
Examples:
  hpclaunch check Qwen3-8B --preset reasoning-dp4 --gpu H100-80GB
  hpclaunch check Qwen3-8B --preset single-gpu --vllm-args "--swap-space 4"
"""

_SUGGEST_EPILOG = """\b
Examples:
  hpclaunch suggest Qwen3-VL-2B
  hpclaunch suggest Qwen/Qwen3-8B --gpu A100-40GB --gpus-per-node 8 --context 32768
  hpclaunch suggest meta-llama/Llama-3.1-8B-Instruct --gpu RTX5090 --gpus-per-node 1
"""


def _plan(model: str, preset: str, cluster: str | None, sets: tuple[str, ...], vllm_args: str,
          gpus_per_node: int | None, simulate: bool | None = None,
          max_model_len: str | None = None, envs: tuple[str, ...] = ()) -> Any:
    from hpclaunch import api
    from hpclaunch.cli.endpoints import raw_assignments
    from hpclaunch.planning.plan import parse_assignments
    from hpclaunch.vllm.flags.values import human_readable_int

    overrides = parse_assignments(list(sets))
    if max_model_len is not None:
        try:
            overrides["max-model-len"] = human_readable_int(max_model_len)
        except ValueError:
            raise UserError(f"--max-model-len takes a number of tokens (40960, 32k, 32K), "
                            f"not {max_model_len!r}") from None
    return api.plan(api.SubmitRequest(
        model=model, preset=preset, cluster=cluster, overrides=overrides, vllm_args=vllm_args,
        env=raw_assignments(list(envs), "--env"), simulate=simulate,
        gpus_per_node=gpus_per_node))


_common = [
    click.option("--preset", "-p", required=True, shell_complete=complete_presets,
                 help="Preset name (hpclaunch presets)."),
    click.option("--gpu", help="GPU model, e.g. H100-80GB, A100-40GB, RTX5090 (default: the "
                               "cluster profile's gpu_model)."),
    click.option("--cluster", "-c", help="Cluster profile (default: the default one)."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="Override a preset value, as for submit. Repeatable."),
    click.option("--vllm-args", default="", metavar='"ARGS"', help="Extra vLLM flags."),
    click.option("--gpus-per-node", type=int, help="GPUs per node, if the profile does not say."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def _with_common(fn: Any) -> Any:
    for option in reversed(_common):
        fn = option(fn)
    return fn


@cli.command("plan", epilog=_PLAN_EPILOG)
@click.argument("model")
@_with_common
@click.option("--max-model-len", help="Context length to plan for (overrides the preset).")
@click.option("--kv-cache-gib", type=float,
              help="KV memory per GPU that vLLM reported ('Available KV cache memory: X GiB'): "
                   "the prediction is then exact. With several workers, give the smallest.")
def plan_command(model: str, preset: str, gpu: str | None, cluster: str | None,
                 sets: tuple[str, ...], vllm_args: str, gpus_per_node: int | None,
                 as_json: bool, max_model_len: str | None, kv_cache_gib: float | None) -> None:
    """Capacity of MODEL under a preset: layout, weights and KV per GPU, the "Maximum
    concurrency" line vLLM will print, and the --max-num-seqs to use."""
    from hpclaunch.planning.capacity import report_for_plan

    plan = _plan(model, preset, cluster, sets, vllm_args, gpus_per_node,
                 max_model_len=max_model_len)
    report = report_for_plan(plan, gpu=gpu, kv_cache_gib=kv_cache_gib)
    if as_json:
        data = report.to_dict()
        data["vllm_flags"] = list(plan.vllm_flags)
        click.echo(json.dumps(data, indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if report.fits is False:
        # vLLM refuses to start here; say so with the length its own check would accept.
        longest = report.max_model_len_that_fits or 0
        hint = f"use --max-model-len {longest} or less, " if longest else ""
        raise UserError(
            f"{plan.model_id} does not fit: one request of {report.max_model_len:,} tokens "
            f"needs {(report.kv_needed_bytes or 0) / (1 << 30):.2f} GiB of KV cache per GPU, "
            f"{(report.kv_cache_bytes or 0) / (1 << 30):.2f} GiB is there "
            f"({report.kv_cache_source}); {hint}more tensor parallelism, or a higher "
            "gpu-memory-utilization")


@cli.command("check", epilog=_CHECK_EPILOG)
@click.argument("model")
@_with_common
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the job, as for submit. Repeatable.")
@click.option("--simulate/--no-simulate", default=None,
              help="Check for the stand-in: hardware checks (GPU count, memory) are skipped.")
def check_command(model: str, preset: str, gpu: str | None, cluster: str | None,
                  sets: tuple[str, ...], vllm_args: str, gpus_per_node: int | None,
                  as_json: bool, envs: tuple[str, ...], simulate: bool | None) -> None:
    """Run the preflight checks submit runs, and nothing else; exit 1 on an error."""
    from hpclaunch.planning.preflight import ERROR, check

    plan = _plan(model, preset, cluster, sets, vllm_args, gpus_per_node, simulate=simulate,
                 envs=envs)
    problems = check(plan, gpu=gpu)
    errors = sum(p.level == ERROR for p in problems)
    if as_json:
        click.echo(json.dumps({"ok": not errors, "simulated": plan.simulate,
                               "problems": [{"level": p.level, "check": p.check,
                                             "message": p.message} for p in problems]},
                              indent=2))
    else:
        for problem in problems:
            click.echo(str(problem))
        if plan.simulate:
            click.echo("simulated run: GPU count and memory checks skipped (the stand-in "
                       "emulates the GPU)")
        warnings = len(problems) - errors - sum(p.level == "note" for p in problems)
        verdict = "would be refused" if errors else "ok to submit"
        click.echo(f"{plan.model_id} with {plan.preset}: {errors} error(s), {warnings} "
                   f"warning(s) - {verdict}")
    if errors:
        sys.exit(1)


@cli.command("suggest", epilog=_SUGGEST_EPILOG)
@click.argument("model")
@click.option("--gpu", help="GPU model (H100-80GB, RTX5090, ...): checks the choice.")
@click.option("--gpus-per-node", type=int, help="GPUs per node (default: the profile's, else 4).")
@click.option("--context", help="Longest request (prompt + output) in tokens, e.g. 32768 or 32K.")
@click.option("--goal", type=click.Choice(["throughput", "balanced", "latency"]),
              default="throughput", show_default=True)
@click.option("--cluster", "-c", help="Cluster profile to take GPU count and type from.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def suggest_command(model: str, gpu: str | None, gpus_per_node: int | None,
                    context: str | None, goal: str, cluster: str | None,
                    as_json: bool) -> None:
    """Pick a preset for MODEL with the guides' decision tree, and say why."""
    from hpclaunch.config import get_cluster
    from hpclaunch.planning.capacity import profile_gpu
    from hpclaunch.planning.suggest import suggest
    from hpclaunch.vllm.flags.values import human_readable_int

    profile = get_cluster(cluster)
    found, _ = profile_gpu(profile, gpu)
    gpu = found.name if found else None
    tokens = None
    if context is not None:
        try:
            tokens = human_readable_int(context)
        except ValueError:
            raise UserError(f"--context takes a number of tokens, not {context!r}") from None
    result = suggest(model, gpus_per_node=gpus_per_node or profile.gpus_per_node, gpu=gpu,
                     context=tokens, goal=goal, vllm_version=profile.vllm_version)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"preset: {result.preset}")
    for reason in result.reasons:
        click.echo(f"  - {reason}")
    click.echo(f"run:    {result.command}")
    click.echo(f"check:  hpclaunch plan {shlex.quote(result.model)} --preset {result.preset}"
               + "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in result.sets.items())
               + (f" --gpu {gpu}" if gpu else " --gpu YOUR_GPU"))
    if result.alternatives:
        click.echo(f"also:   {', '.join(result.alternatives)}")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def presets(ctx: click.Context, as_json: bool) -> None:
    """List presets (built-in and from the config dir); `presets show NAME` for one.

    \b
    Names: [FEATURE-]LAYOUT-GOAL for node presets (dp4-throughput, tp2dp2-balanced,
    reasoning-dp4, awq-dp4-memory) and GPU-GOAL / MODEL-... for one-GPU profiles
    (rtx5090-fast, mistral7b-awq-32k). LAYOUT lists tp, pp, dp inner to outer.
    """
    if ctx.invoked_subcommand:
        return
    from hpclaunch.planning.presets import load_preset, preset_names

    loaded = [load_preset(name) for name in preset_names()]
    if as_json:
        click.echo(json.dumps([{"name": p.name, "layout": p.layout, "gpus": p.gpus,
                                "description": p.description, "when": p.when,
                                "requires": p.requires, "tags": p.tags, "source": p.source}
                               for p in loaded], indent=2))
        return
    rows = [[p.name, p.layout_text, str(p.gpus), p.description] for p in loaded]
    click.echo(table(rows, ["PRESET", "LAYOUT", "GPUS", "DESCRIPTION"]))


@presets.command("show")
@click.argument("name", shell_complete=complete_presets)
@click.option("--model", "-m", help="Resolve the preset's 'auto' values for this model.")
def presets_show(name: str, model: str | None) -> None:
    """Print the preset's YAML and the vLLM flags it renders."""
    from pathlib import Path

    from hpclaunch.planning.plan import render_flags
    from hpclaunch.planning.presets import AUTO, load_preset, resolve_model_values

    p = load_preset(name)
    click.echo(f"# {p.source}")
    click.echo(Path(p.source).read_text().rstrip())
    flags = dict(p.vllm)
    if model:
        from hpclaunch.planning.catalog import resolve_model_id

        flags = resolve_model_values(flags, resolve_model_id(model), p.name)
    click.echo(f"\n# vLLM flags{f' for {model}' if model else ''}: "
               f"{shlex.join(render_flags(p.layout, flags))}")
    if not model and AUTO in json.dumps(flags):
        click.echo(f"# 'auto' values are chosen from the model when a plan is built "
                   f"(hpclaunch presets show {name} --model MODEL)")
