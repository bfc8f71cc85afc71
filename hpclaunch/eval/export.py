"""Write READY endpoints where eval tools look for them.

Formats
-------
``vf-eval``
    The verifiers 0.3.x registry: a TOML file of ``[[endpoint]]`` tables, by default
    ``./configs/endpoints.toml`` - the path ``vf-eval`` itself reads when no ``-e``
    is given, so ``vf-eval ENV -m NAME`` works from that directory.
``vf-eval-v1``
    verifiers 0.4.x has no registry; it takes one config file per run
    (``vf-eval TASKSET @ NAME.toml``). One file per endpoint in a directory.
``json``
    A list of endpoints (name, URL, model, key *variable*) for other scripts.
``env``
    ``export HPCLAUNCH_KEY_<NAME>=...`` lines: the keys the registry names.

The registry file is shared with the user, so merging is conservative: every
entry hpclaunch writes sits between ``# >>> hpclaunch: endpoint NAME`` and
``# <<< hpclaunch: endpoint NAME`` comment lines (comments survive every TOML
reader and need no extra key that some verifiers version might reject). Text
outside those blocks is kept byte for byte; our blocks are rewritten from the
registry, and blocks of endpoints that ended or were removed are dropped. The
file is replaced atomically, and a file that is not valid TOML is left alone.

Files hold key variable *names*, never keys; ``hpclaunch env`` prints the keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.registry import Record

FORMATS = ("vf-eval", "vf-eval-v1", "json", "env")
DEFAULT_REGISTRY = Path("configs/endpoints.toml")  # vf-eval 0.3.x's own default (-e)
DEFAULT_V1_DIR = Path("configs/hpclaunch")
ENV_REGISTRY_PATH = "HPCLAUNCH_VF_ENDPOINTS"  # where `submit/wait --export` write

BEGIN = "# >>> hpclaunch: endpoint "
END = "# <<< hpclaunch: endpoint "
BEGIN_RE = re.compile(r"^# >>> hpclaunch: endpoint (\S+)")
V1_HEADER = "# written by hpclaunch export for endpoint "
REGISTRY_HEADER = (
    "# vf-eval endpoint registry (verifiers 0.3.x): vf-eval ENV -m NAME -e THIS_FILE\n"
    "# Blocks between '# >>> hpclaunch' and '# <<< hpclaunch' lines are rewritten by\n"
    "# `hpclaunch export`; add your own [[endpoint]] entries outside them.\n"
    "# Keys: eval \"$(hpclaunch env --all)\" exports the variables named by `key`.\n"
)


@dataclass
class ExportResult:
    """What one export did, for a one-line summary and for tests."""

    path: Path | None
    fmt: str
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ours, live but not READY right now
    dropped: list[str] = field(default_factory=list)  # ours, endpoint ended or removed
    warnings: list[str] = field(default_factory=list)
    text: str = ""  # for json/env without a path: what to print

    def summary(self) -> str:
        where = str(self.path) if self.path else "stdout"
        parts = [f"{len(self.written)} endpoint(s) -> {where} ({self.fmt})"]
        if self.written:
            parts.append("written: " + ", ".join(self.written))
        if self.kept:
            parts.append("kept (not READY now): " + ", ".join(self.kept))
        if self.dropped:
            parts.append("dropped (ended): " + ", ".join(self.dropped))
        return "; ".join(parts)


# -- TOML writing (the few shapes we need; no TOML writer dependency) ---------------------


def toml_str(value: str) -> str:
    """A TOML basic string. JSON escapes are valid TOML escapes; DEL is not allowed raw."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


def _load_toml(text: str) -> dict[str, Any] | None:
    """Parse TOML when a parser is available (tomllib from 3.11, tomli before)."""
    try:
        import tomllib as toml_reader
    except ImportError:  # Python 3.10
        try:
            import tomli as toml_reader  # type: ignore[no-redef,unused-ignore]
        except ImportError:
            return None
    return toml_reader.loads(text)


def _check_toml(text: str, path: Path) -> dict[str, Any] | None:
    try:
        return _load_toml(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise UserError(f"{path} is not valid TOML ({exc}); it was left untouched: fix it, "
                        "or pass another --path") from exc


# -- the verifiers 0.3.x registry ---------------------------------------------------------


def registry_block(ep: Endpoint) -> str:
    """One ``[[endpoint]]`` table for ``ep``, between our marker comments."""
    return (
        f"{BEGIN}{ep.name} (rewritten by hpclaunch export; edit outside this block)\n"
        "[[endpoint]]\n"
        f"endpoint_id = {toml_str(ep.name)}\n"
        f"model = {toml_str(ep.model)}\n"
        f"url = {toml_str(ep.base_url)}\n"
        f"key = {toml_str(ep.key_var)}\n"
        f"{END}{ep.name}\n"
    )


def split_registry(text: str, path: Path | str = "registry") -> tuple[str, dict[str, str]]:
    """The user's part of a registry file and our blocks by endpoint name.

    The user's part keeps every byte outside our blocks (a blank line right after a
    block is taken with it, so repeated exports do not pile up blank lines).
    """
    lines = text.splitlines(keepends=True)
    user: list[str] = []
    ours: dict[str, str] = {}
    i = 0
    while i < len(lines):
        match = BEGIN_RE.match(lines[i])
        if not match:
            user.append(lines[i])
            i += 1
            continue
        name = match.group(1)
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].rstrip("\r\n") == f"{END}{name}"), None)
        if end is None:
            raise UserError(
                f"{path}: the hpclaunch block for {name!r} (line {i + 1}) has no "
                f"'{END}{name}' line; restore it or delete the block, then export again"
            )
        ours[name] = "".join(lines[i:end + 1])
        i = end + 1
        if i < len(lines) and not lines[i].strip():
            i += 1
    return "".join(user), ours


def merge_registry(text: str, endpoints: list[Endpoint], records: dict[str, Record],
                   path: Path | str = "registry") -> tuple[str, ExportResult]:
    """New registry text: the user's entries as they were, then one block per endpoint.

    ``endpoints`` are the READY ones to write. An old block of ours whose endpoint
    is still live (known to the registry, not ENDED/FAILED) but not READY at this
    moment is rewritten from its record if the record has a URL - a server that
    misses one health check should not vanish from the eval config. Every other
    block of ours is dropped.
    """
    result = ExportResult(Path(path), "vf-eval")
    user_text, ours = split_registry(text, path)
    user_doc = _check_toml(user_text, Path(path)) or {}
    user_ids = {str(e.get("endpoint_id")) for e in user_doc.get("endpoint", [])
                if isinstance(e, dict)}
    blocks: dict[str, str] = {}
    for ep in endpoints:
        if ep.name in user_ids:
            result.warnings.append(
                f"{path}: endpoint_id {ep.name!r} is one of your own entries (outside the "
                "hpclaunch blocks); it was left as it is and hpclaunch's entry not added - "
                "remove or rename yours to let hpclaunch manage it")
            continue
        blocks[ep.name] = registry_block(ep)
        result.written.append(ep.name)
    for name in sorted(ours):
        if name in blocks:
            continue
        rec = records.get(name)
        if rec is not None and not rec.final and rec.url and name not in user_ids:
            blocks[name] = registry_block(Endpoint.from_record(rec))
            result.kept.append(name)
        else:
            result.dropped.append(name)
    if not user_text.strip():
        user_text = REGISTRY_HEADER
    body = user_text.rstrip("\n") + "\n"
    if blocks:
        body += "\n" + "\n".join(blocks[name] for name in sorted(blocks))
    doc = _load_toml(body)
    if doc is not None:  # our own output must read back as what we meant
        ids = [e.get("endpoint_id") for e in doc.get("endpoint", []) if isinstance(e, dict)]
        missing = set(blocks) - set(ids)
        if missing:
            raise UserError(f"{path}: after merging, entries {sorted(missing)} do not read "
                            "back; the file was left untouched (please report this)")
    return body, result


def write_registry(path: Path, endpoints: list[Endpoint],
                   records: dict[str, Record]) -> ExportResult:
    """Merge ``endpoints`` into the registry file at ``path`` and replace it atomically."""
    path = Path(path)
    if path.is_dir():  # vf-eval -e DIR means DIR/endpoints.toml
        path = path / "endpoints.toml"
    if path.suffix == ".py":
        raise UserError(f"{path}: vf-eval reads TOML registries only; use a .toml path")
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    text, result = merge_registry(old, endpoints, records, path)
    result.path = path
    if text != old:
        atomic_write(path, text)
    return result


# -- verifiers 0.4.x: one config file per endpoint ----------------------------------------


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


# -- json and shell --------------------------------------------------------------------------


def json_text(endpoints: list[Endpoint]) -> str:
    """Endpoints for other tools: no keys, only the variable that holds each."""
    return json.dumps([{
        "name": ep.name, "model": ep.model, "model_id": ep.model_id, "url": ep.base_url,
        "key_var": ep.key_var, "state": ep.state, "reasoning_parser": ep.reasoning_parser,
        "layout": ep.layout,
    } for ep in endpoints], indent=2) + "\n"


def env_text(ep: Endpoint) -> str:
    """Shell lines for ``eval "$(hpclaunch env NAME)"``: an OpenAI client just works."""
    pairs = [("OPENAI_BASE_URL", ep.base_url), ("OPENAI_API_KEY", ep.api_key),
             (ep.key_var, ep.api_key), ("HPCLAUNCH_MODEL", ep.model)]
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)


def env_all_text(endpoints: list[Endpoint]) -> str:
    """Every endpoint's key variable: what a registry's ``key = ...`` lines name."""
    return "".join(f"export {ep.key_var}={shlex.quote(ep.api_key)}\n" for ep in endpoints)


# -- entry points ------------------------------------------------------------------------------


def atomic_write(path: Path, text: str, *, secret: bool = False) -> None:
    """Replace ``path`` in one step (a reader sees the old or the new file, never half).

    An existing file keeps its permission bits and a new one gets 0644 (registries
    hold variable names, not keys); ``secret`` files are 0600 before a byte is written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    if secret:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
    # A fleet is exported once, by its name (the router, the fleet key); not its replicas.
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
