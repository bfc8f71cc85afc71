"""CLI: ``export``, ``env`` and ``eval`` - endpoint names for eval tools.

Thin wrappers over :mod:`hpclaunch.eval.export`, :mod:`hpclaunch.eval.shell` and
:mod:`hpclaunch.eval.runner`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hpclaunch.cli.main import cli
from hpclaunch.errors import UserError

EPILOG_EXPORT = """\b
Examples:
  hpclaunch export                      # prints the vf-eval command to use, e.g.:
  vf-eval my-env -m qwen-vl -e ~/.local/state/hpclaunch/exports/endpoints.toml
  hpclaunch export --format vf-eval-v1  # verifiers 0.4: .../exports/vf04/NAME.toml
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
  hpclaunch eval qwen-vl my-env -n 500 --submit   # as a CPU batch job on the cluster

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
                   "$XDG_STATE_HOME/hpclaunch/exports/endpoints.toml ($HPCLAUNCH_VF_ENDPOINTS), "
                   ".../exports/vf04/ ($HPCLAUNCH_VF_CONFIGS), stdout for json and env.")
@click.option("--cached", is_flag=True, help="Use stored states; ask no scheduler.")
def export_cmd(fmt: str, path: Path | None, cached: bool) -> None:
    """Write every READY endpoint where vf-eval (or a script) finds it by name.

    Prints the exact vf-eval command to use (absolute paths: it works from any
    directory). The vf-eval registry keeps your own [[endpoint]] entries; a name
    hpclaunch wrote once that is no longer READY keeps an entry that makes vf-eval
    stop with the reason (never a fall back to a hosted provider). Files name the key
    variables (HPCLAUNCH_KEY_<NAME>); `hpclaunch env --all` exports the keys.
    """
    from hpclaunch.eval.export import export

    result = export(fmt, path, refresh=not cached)
    for warning in result.warnings:
        _err(f"warning: {warning}")
    if result.path is None:
        click.echo(result.text, nl=False)
    _err(f"exported {result.summary()}")
    for line in result.usage:
        click.echo(line)


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
    When NAME cannot be used (unknown, not READY, FAILED, ENDED), stdout gets a
    statement that fails (so `set -e` stops the script) and points OpenAI clients at
    an address nothing listens on, never at their hosted default.
    """
    from hpclaunch.eval.export import ready_endpoints
    from hpclaunch.eval.shell import env_all_text, env_text, refused_env_text

    try:
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
    except UserError as exc:
        click.echo(refused_env_text(str(exc), exc.exit_code), nl=False)
        raise


class PassThroughCommand(click.Command):
    """A command whose unknown arguments belong to another program (vf-eval).

    click reads ``-mother`` as the bundle ``-m -o -t -h -e -r`` and its ``-h`` prints
    help and exits 0, so a vf-eval argument could silently end the run. hpclaunch's own
    options here are long-only: those are taken out, and everything else is handed
    on as positional arguments, exactly as typed. ``-h``/``--help`` alone still help.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        before_dashes = args[:args.index("--")] if "--" in args else args
        if "-h" in before_dashes or "--help" in before_dashes:
            return super().parse_args(ctx, args)
        options = [p for p in self.params if isinstance(p, click.Option)]
        long_opts = {o for p in options for o in p.opts if o.startswith("--")}
        flags = {o for p in options if p.is_flag for o in p.opts}
        own: list[str] = []
        rest: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                rest.extend(args[i + 1:])
                break
            head = arg.split("=", 1)[0]
            if head in long_opts:
                own.append(arg)
                if "=" not in arg and head not in flags and i + 1 < len(args):
                    own.append(args[i + 1])
                    i += 1
            else:
                rest.append(arg)
            i += 1
        return super().parse_args(ctx, [*own, "--", *rest])


@cli.command("eval", cls=PassThroughCommand, epilog=EPILOG_EVAL)
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
@click.option("--submit", "as_job", is_flag=True,
              help="Run vf-eval as its own CPU batch job on the cluster (login nodes kill "
                   "long processes); it shows in endpoints/status with its own state and log.")
@click.option("--cluster", metavar="C", help="With --submit: the cluster profile for the job "
                                             "(default: the endpoint's).")
def eval_cmd(name: str, env_id: str, vf_args: tuple[str, ...], others: tuple[str, ...],
             dry_run: bool, wait_timeout: float, reasoning_max_tokens: int,
             vf_exec: str | None, as_job: bool, cluster: str | None) -> None:
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
    if cluster and not as_job:
        raise UserError("--cluster goes with --submit (the endpoint says where it runs)")
    if as_job:
        if others or dry_run:
            raise UserError("--submit runs one eval as a job; drop --compare / --dry-run")
        from hpclaunch.eval.batch import submit_eval_job
        from hpclaunch.eval.runner import refuse_reserved

        refuse_reserved(name, list(vf_args), vf)
        job = submit_eval_job(name, env_id, list(vf_args), vf=vf, cluster=cluster,
                              wait_timeout=wait_timeout,
                              max_tokens_default=reasoning_max_tokens)
        click.echo(f"submitted {job.name}: job {job.job_id} on {job.cluster} ({job.scheduler}), "
                   f"vf-eval {env_id} on {name}")
        click.echo(f"  log: {job.log_path}")
        click.echo(f"  next: hpclaunch status {job.name}   (results: {job.results_dir}/results)")
        return
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
