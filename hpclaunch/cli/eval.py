"""CLI: ``export``, ``env`` and ``eval`` - endpoint names for eval tools.

Thin wrappers over :mod:`hpclaunch.eval.export` and :mod:`hpclaunch.eval.runner`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

EPILOG_EXPORT = """\b
Examples:
  hpclaunch export                      # ./configs/endpoints.toml, vf-eval's default
  vf-eval my-env -m qwen-vl             # finds qwen-vl there; keys: hpclaunch env --all
  hpclaunch export --format vf-eval-v1  # verifiers 0.4: configs/hpclaunch/NAME.toml
  hpclaunch export --format json --path endpoints.json
"""

EPILOG_ENV = """\b
Examples:
  eval "$(hpclaunch env qwen-vl)"       # OPENAI_BASE_URL, OPENAI_API_KEY, ...
  eval "$(hpclaunch env --all)"         # the key variables an exported registry names
"""

EPILOG_EVAL = """\b
Examples:
  hpclaunch eval qwen-vl my-env -n 100 -r 3
  hpclaunch eval qwen-thinking my-env -n 50       # adds use_think false, -t 32768
  hpclaunch eval qwen-tp my-env -n 100 --compare qwen-dp   # A/B table
  hpclaunch eval qwen-vl my-env --dry-run         # print the vf-eval command only

\b
Arguments after ENV go to vf-eval unchanged, except the ones hpclaunch sets from
the endpoint (-m, -e, -b, -k, -p). hpclaunch's own options are long-only and may
come anywhere; put vf-eval arguments after `--` if one of them looks like one.
"""


def _err(message: str) -> None:
    click.echo(message, err=True)


@cli.command("export", epilog=EPILOG_EXPORT)
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "vf-eval", "vf-eval-v1", "json", "env"]),
              help="auto: the format the installed vf-eval reads (0.3.x registry when unsure).")
@click.option("--path", type=click.Path(path_type=Path),
              help="File (vf-eval, json, env) or directory (vf-eval-v1). Default: "
                   "./configs/endpoints.toml ($HPCLAUNCH_VF_ENDPOINTS), ./configs/hpclaunch/, "
                   "stdout for json and env.")
@click.option("--cached", is_flag=True, help="Use stored states; ask no scheduler.")
def export_cmd(fmt: str, path: Path | None, cached: bool) -> None:
    """Write every READY endpoint where vf-eval (or a script) finds it by name.

    The vf-eval registry keeps your own [[endpoint]] entries and drops the ones
    hpclaunch wrote for endpoints that have ended. Files name the key variables
    (HPCLAUNCH_KEY_<NAME>); `hpclaunch env --all` exports the keys.
    """
    from hpclaunch.eval.export import export

    result = export(fmt, path, refresh=not cached)
    for warning in result.warnings:
        _err(f"warning: {warning}")
    if result.path is None:
        click.echo(result.text, nl=False)
    _err(f"exported {result.summary()}")


@cli.command("env", epilog=EPILOG_ENV)
@click.argument("name", required=False)
@click.option("--all", "all_ready", is_flag=True,
              help="Export the key variable of every READY endpoint.")
@click.option("--wait", "wait_ready", is_flag=True, help="Wait for NAME to be READY first.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds for --wait.")
def env_cmd(name: str | None, all_ready: bool, wait_ready: bool, timeout: float) -> None:
    """Print shell exports for endpoint NAME: use it as eval "$(hpclaunch env NAME)".

    OPENAI_BASE_URL, OPENAI_API_KEY, HPCLAUNCH_KEY_<NAME> (what an exported
    registry's `key` names) and HPCLAUNCH_MODEL (the served model name).
    """
    from hpclaunch.eval.export import env_all_text, env_text, ready_endpoints

    if all_ready == bool(name):
        raise UserError("give an endpoint NAME or --all (not both)")
    if all_ready:
        endpoints, _ = ready_endpoints()
        if not endpoints:
            _err("no READY endpoints")
        click.echo(env_all_text(endpoints), nl=False)
        return
    from hpclaunch.endpoints.resolve import resolve

    assert name is not None
    click.echo(env_text(resolve(name, wait=wait_ready, timeout=timeout)), nl=False)


@cli.command("eval", epilog=EPILOG_EVAL,
             context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("env_id", metavar="ENV")
@click.argument("vf_args", nargs=-1, type=click.UNPROCESSED, metavar="[VF_EVAL_ARGS]...")
@click.option("--compare", "others", multiple=True, metavar="NAME2",
              help="Also run on NAME2 (repeatable) and print a side-by-side table.")
@click.option("--dry-run", is_flag=True, help="Print the vf-eval command; run nothing.")
@click.option("--wait-timeout", default=1800.0, show_default=True,
              help="Seconds to wait for a PENDING/STARTING endpoint.")
@click.option("--reasoning-max-tokens", default=32768, show_default=True,
              help="Max tokens for servers with --reasoning-parser (capped by the context).")
@click.option("--vf-eval", "vf_exec", metavar="PATH",
              help="vf-eval executable (default: $HPCLAUNCH_VF_EVAL, this venv's, PATH).")
def eval_cmd(name: str, env_id: str, vf_args: tuple[str, ...], others: tuple[str, ...],
             dry_run: bool, wait_timeout: float, reasoning_max_tokens: int,
             vf_exec: str | None) -> None:
    """Run vf-eval ENV on endpoint NAME: checked name, right format, key in its environment.

    Refuses unknown, FAILED and ENDED names (vf-eval itself would send an unknown
    name to a hosted provider), waits for one that is still starting, detects the
    verifiers generation (0.3.x registry or 0.4.x config file) and applies the
    reasoning rule: a server with --reasoning-parser gets use_think false and a
    large max tokens; use_think true against it is refused.
    """
    from hpclaunch.eval import runner as evalrun
    from hpclaunch.eval.measure import compare_table
    from hpclaunch.eval.vfeval import detect_vf_eval

    vf = detect_vf_eval(vf_exec)
    assert vf is not None
    if others:
        if dry_run:
            raise UserError("--dry-run shows one command; drop --compare to see it")
        runs = evalrun.compare([name, *others], env_id, list(vf_args), vf=vf,
                               wait_timeout=wait_timeout,
                               max_tokens_default=reasoning_max_tokens, echo=_err)
        click.echo(compare_table(runs))
        failed = [r.name for r in runs if r.returncode != 0]
        if failed:
            raise UserError(f"vf-eval failed on {', '.join(failed)} (see its output above)")
        return
    result = evalrun.run_eval(name, env_id, list(vf_args), vf=vf, wait_timeout=wait_timeout,
                              dry_run=dry_run, max_tokens_default=reasoning_max_tokens,
                              echo=_err)
    if isinstance(result, evalrun.EvalCommand):
        click.echo(result.shell())
        return
    from hpclaunch.cli.fleet import gpus_held

    gpus = gpus_held(name)
    _err(f"GPU-hours held for the run: {gpus * result.wall_s / 3600:.3f} "
         f"({gpus} GPU(s) x {result.wall_s:.0f} s)")
    if result.returncode != 0:
        sys.exit(result.returncode)
