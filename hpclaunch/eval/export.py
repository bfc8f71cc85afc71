"""Write READY endpoints where eval tools look for them: the ``hpclaunch export`` entry point.

Formats
-------
``vf-eval``
    The verifiers 0.3.x registry (:mod:`hpclaunch.eval.vf03_registry`).
``vf-eval-v1``
    verifiers 0.4.x per-endpoint config files (:mod:`hpclaunch.eval.vf04_configs`).
``json``
    A list of endpoints (name, URL, model, key *variable*) for other scripts.
``env``
    ``export HPCLAUNCH_KEY_<NAME>=...`` lines: the keys the registry names.

Where: absolute paths, whatever the current directory, so the printed command works
from anywhere - ``$XDG_STATE_HOME/hpclaunch/exports/endpoints.toml`` (0.3) and
``.../exports/vf04/NAME.toml`` (0.4), moved by ``$HPCLAUNCH_VF_ENDPOINTS`` /
``$HPCLAUNCH_VF_CONFIGS`` or ``--path``. json and env go to stdout unless given a path.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import UserError
from hpclaunch.eval.files import ExportResult, atomic_write
from hpclaunch.eval.shell import env_all_text, json_text
from hpclaunch.eval.vf03_registry import write_registry
from hpclaunch.eval.vf04_configs import write_v1_dir

if TYPE_CHECKING:
    from hpclaunch.registry import Record

FORMATS = ("vf-eval", "vf-eval-v1", "json", "env")
ENV_REGISTRY_PATH = "HPCLAUNCH_VF_ENDPOINTS"  # the 0.3 registry file
ENV_CONFIGS_DIR = "HPCLAUNCH_VF_CONFIGS"  # the directory of 0.4 config files


def default_path(fmt: str) -> Path | None:
    """Where ``fmt`` goes without ``--path`` (absolute; None: stdout)."""
    from hpclaunch.config import state_dir

    if fmt == "vf-eval":
        path = os.environ.get(ENV_REGISTRY_PATH) or state_dir() / "exports" / "endpoints.toml"
    elif fmt == "vf-eval-v1":
        path = os.environ.get(ENV_CONFIGS_DIR) or state_dir() / "exports" / "vf04"
    else:
        return None
    return Path(path).expanduser().absolute()


def usage_lines(result: ExportResult) -> list[str]:
    """The exact commands that use what ``result`` wrote (paths quoted for a shell)."""
    if result.path is None or result.fmt not in ("vf-eval", "vf-eval-v1"):
        return []
    keys = 'eval "$(hpclaunch env --all)"   # the keys the files name'
    if result.fmt == "vf-eval":
        name = result.written[0] if len(result.written) == 1 else "NAME"
        return [keys, f"vf-eval ENV -m {name} -e {shlex.quote(str(result.path))}"]
    names = result.written or ["NAME"]
    return [keys, *(f"vf-eval TASKSET @ {shlex.quote(str(result.path / (n + '.toml')))}"
                    for n in names)]


def auto_format() -> str:
    """The vf-eval format that the installed verifiers reads (0.3.x when unsure)."""
    from hpclaunch.eval.vfeval import detect_vf_eval

    found = detect_vf_eval(required=False)
    return "vf-eval-v1" if found is not None and found.generation == "0.4" else "vf-eval"


def ready_endpoints(*, refresh: bool = True) -> tuple[list[Endpoint], dict[str, Record]]:
    """READY endpoints and all records; live states are refreshed first (one scheduler
    call per cluster) so that an endpoint that just ended is not exported."""
    from hpclaunch.registry import READY, Registry

    registry = Registry()
    if refresh:
        from hpclaunch.endpoints.lifecycle import refresh as refresh_states

        refresh_states(registry=registry)
    # Eval jobs (hpclaunch eval --submit) share the registry but are not endpoints; a fleet
    # is exported once, by its name (the router, the fleet key), not its replicas.
    records = {n: r for n, r in registry.load().items() if r.kind == "endpoint"}
    ready = [Endpoint.from_record(r) for r in sorted(records.values(), key=lambda r: r.name)
             if r.state == READY and r.role != "replica"]
    return ready, records


def export(fmt: str = "vf-eval", path: Path | str | None = None, *,
           refresh: bool = True) -> ExportResult:
    """Write every READY endpoint in ``fmt`` to ``path`` (default: see :func:`default_path`)."""
    if fmt == "auto":
        fmt = auto_format()
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    endpoints, records = ready_endpoints(refresh=refresh)
    target = Path(path).expanduser().absolute() if path is not None else default_path(fmt)
    if fmt in ("vf-eval", "vf-eval-v1"):
        assert target is not None
        write = write_registry if fmt == "vf-eval" else write_v1_dir
        result = write(target, endpoints, records)
        result.usage = usage_lines(result)
        return result
    text = json_text(endpoints) if fmt == "json" else env_all_text(endpoints)
    result = ExportResult(target, fmt, written=[ep.name for ep in endpoints], text=text)
    if target is not None:
        atomic_write(target, text, secret=fmt == "env")  # env lines hold keys
    return result


def export_after_command(echo: Callable[[str], None], *, hint_name: str = "") -> None:
    """``submit --export`` / ``wait --export``: refresh the default export, report on stderr.

    A failed export is reported but does not fail the command it follows: the job
    was submitted (or is READY) either way, and ``hpclaunch export`` can retry.
    """
    try:
        result = export("auto")
    except UserError as exc:
        echo(f"warning: export failed: {exc}")
        return
    for warning in result.warnings:
        echo(f"warning: {warning}")
    echo(f"exported {result.summary()}")
    for line in result.usage:
        echo(f"  {line}")
    if hint_name and hint_name not in result.written:
        echo(f"  {hint_name} is added once READY: hpclaunch wait {hint_name} --export")
