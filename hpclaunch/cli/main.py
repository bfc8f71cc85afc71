"""The ``hpclaunch`` command: parse, call :mod:`hpclaunch.api`, print.

Nothing here decides anything; errors the user can fix are printed as one line
(``--debug`` shows the traceback). Heavy modules are imported inside commands so
that reading the registry stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from hpclaunch.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UserError


class LazyGroup(click.Group):
    """Commands of each area live in their own module, imported only when one of
    them runs (or help lists them), so `hpclaunch endpoints` pays for nothing else."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            import importlib

            importlib.import_module(f"hpclaunch.{LAZY_COMMANDS[cmd_name]}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, envvar="HPCLAUNCH_DEBUG",
              help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="hpclaunch")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Launch vLLM servers on Slurm, PBS or this machine, and use them by name.

    \b
      hpclaunch submit Qwen3-VL-2B --preset dp4-throughput --name qwen-vl
      hpclaunch wait qwen-vl
      hpclaunch endpoints
      vf-eval my-env -m qwen-vl

    Files: registry in $XDG_STATE_HOME/hpclaunch, presets and clusters.yaml in
    $XDG_CONFIG_HOME/hpclaunch ($HPCLAUNCH_HOME moves both).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug



LAZY_COMMANDS = {
    **dict.fromkeys(["submit", "wait", "endpoints", "status", "stop", "rm", "chat",
                     "completion"], "cli.endpoints"),
    "logs": "cli.logs",
    "plan": "cli.plan", "check": "cli.plan", "suggest": "cli.plan", "presets": "cli.plan",
    "stats": "cli.stats", "watch": "cli.stats", "advise": "cli.stats",
    "export": "cli.eval", "env": "cli.eval", "eval": "cli.eval",
    "tunnel": "cli.ssh",
    "bench": "cli.bench",
    "login": "cli.login", "logout": "cli.login",
    "cluster": "cli.cluster",
    "prefetch": "cli.prefetch",
    "scale": "cli.fleet",
}


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, no traceback unless --debug."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or \
        os.environ.get("HPCLAUNCH_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="hpclaunch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            raise
        for line in str(exc).splitlines() or ["error"]:
            click.echo(f"hpclaunch: {line}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - last line of defence for a CLI
        if debug:
            raise
        click.echo(f"hpclaunch: internal error: {type(exc).__name__}: {exc} "
                   "(rerun with --debug for a traceback, and please report it)", err=True)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
