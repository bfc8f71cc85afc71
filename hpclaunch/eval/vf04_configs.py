"""verifiers 0.4.x: no registry, one config file per run (``vf-eval TASKSET @ NAME.toml``).

hpclaunch writes one file per endpoint in a directory (``./configs/hpclaunch/`` by
default); a file carries a header line so that files the user wrote are never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import UserError
from hpclaunch.eval.files import ExportResult, atomic_write, toml_str

if TYPE_CHECKING:
    from hpclaunch.registry import Record

DEFAULT_V1_DIR = Path("configs/hpclaunch")
V1_HEADER = "# written by hpclaunch export for endpoint "


def v1_config(ep: Endpoint, *, max_tokens: int | None = None) -> str:
    """The ``vf-eval TASKSET @ FILE`` config for ``ep`` (verifiers 0.4.x).

    ``push = false``: 0.4 uploads results by default, which nobody wants from a
    private cluster endpoint. With ``--reasoning-parser`` on the server, a large
    ``max_tokens`` (the guides' rule); otherwise the server's default.
    """
    if max_tokens is None and ep.reasoning_parser:
        from hpclaunch.eval.vfeval import reasoning_max_tokens

        max_tokens = reasoning_max_tokens(ep)
    lines = [
        f"{V1_HEADER}{ep.name}; rewritten on each export",
        f"# vf-eval TASKSET @ THIS_FILE   (key: eval \"$(hpclaunch env {ep.name})\")",
        f"model = {toml_str(ep.model)}",
        "push = false",
        "",
        "[client]",
        f"base_url = {toml_str(ep.base_url)}",
        f"api_key_var = {toml_str(ep.key_var)}",
    ]
    if max_tokens is not None:
        lines += ["", "[sampling]", f"max_tokens = {int(max_tokens)}"]
    return "\n".join(lines) + "\n"


def write_v1_dir(directory: Path, endpoints: list[Endpoint],
                 records: dict[str, Record]) -> ExportResult:
    """One ``NAME.toml`` per READY endpoint; our files of ended endpoints are removed.

    A file we did not write (no header line) is never overwritten or removed.
    """
    directory = Path(directory)
    if directory.suffix == ".toml":
        raise UserError(f"--format vf-eval-v1 writes one file per endpoint: --path takes a "
                        f"directory, not {directory}")
    result = ExportResult(directory, "vf-eval-v1")
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {ep.name: ep for ep in endpoints}
    for ep in endpoints:
        target = directory / f"{ep.name}.toml"
        if target.exists() and not _ours_v1(target):
            result.warnings.append(f"{target} was not written by hpclaunch; left as it is")
            continue
        text = v1_config(ep)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            atomic_write(target, text)
        result.written.append(ep.name)
    for target in sorted(directory.glob("*.toml")):
        name = target.stem
        if name in wanted or not _ours_v1(target):
            continue
        rec = records.get(name)
        if rec is not None and not rec.final and rec.url:
            result.kept.append(name)
            continue
        target.unlink()
        result.dropped.append(name)
    return result


def _ours_v1(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().startswith(V1_HEADER)
    except (OSError, UnicodeDecodeError):
        return False
