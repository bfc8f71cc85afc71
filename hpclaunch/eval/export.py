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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import UserError
from hpclaunch.eval.files import ExportResult, atomic_write
from hpclaunch.eval.shell import env_all_text, json_text
from hpclaunch.eval.vf03_registry import DEFAULT_REGISTRY, ENV_REGISTRY_PATH, write_registry
from hpclaunch.eval.vf04_configs import DEFAULT_V1_DIR, write_v1_dir

if TYPE_CHECKING:
    from hpclaunch.registry import Record

FORMATS = ("vf-eval", "vf-eval-v1", "json", "env")


def default_path(fmt: str) -> Path | None:
    if fmt == "vf-eval":
        return Path(os.environ.get(ENV_REGISTRY_PATH) or DEFAULT_REGISTRY)
    if fmt == "vf-eval-v1":
        return DEFAULT_V1_DIR
    return None  # json / env: stdout


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
    records = registry.load()
    ready = [Endpoint.from_record(r) for r in sorted(records.values(), key=lambda r: r.name)
             if r.state == READY]
    return ready, records


def export(fmt: str = "vf-eval", path: Path | str | None = None, *,
           refresh: bool = True) -> ExportResult:
    """Write every READY endpoint in ``fmt`` to ``path`` (default: see :func:`default_path`)."""
    if fmt == "auto":
        fmt = auto_format()
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    endpoints, records = ready_endpoints(refresh=refresh)
    target = Path(path) if path is not None else default_path(fmt)
    if fmt == "vf-eval":
        assert target is not None
        return write_registry(target, endpoints, records)
    if fmt == "vf-eval-v1":
        assert target is not None
        return write_v1_dir(target, endpoints, records)
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
    if hint_name and hint_name not in result.written:
        echo(f"  {hint_name} is added once READY: hpclaunch wait {hint_name} --export")
