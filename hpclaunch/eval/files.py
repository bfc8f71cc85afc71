"""Writing files that other tools read: atomic replacement, TOML strings, and what
one export did.

Shared by the verifiers 0.3 registry (:mod:`hpclaunch.eval.vf03_registry`), the 0.4
per-endpoint configs (:mod:`hpclaunch.eval.vf04_configs`) and the export entry point.
No TOML writer dependency: we only ever write strings and numbers in fixed shapes, and
each writer reads its output back with a real parser.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpclaunch.errors import UserError

if TYPE_CHECKING:
    from hpclaunch.registry import Record


# An address nothing listens on (TCP port 9, "discard", is closed on any sane host):
# a client pointed here fails at once, on this machine, and sends nothing anywhere.
FAIL_CLOSED_URL = "http://127.0.0.1:9/v1"


@dataclass
class ExportResult:
    """What one export did, for a one-line summary, the command to use, and tests."""

    path: Path | None
    fmt: str
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ours, live but not READY right now
    refused: dict[str, str] = field(default_factory=dict)  # name -> state; entry fails closed
    warnings: list[str] = field(default_factory=list)
    usage: list[str] = field(default_factory=list)  # the exact commands that use the file(s)
    text: str = ""  # for json/env without a path: what to print

    def summary(self) -> str:
        where = str(self.path) if self.path else "stdout"
        parts = [f"{len(self.written)} endpoint(s) -> {where} ({self.fmt})"]
        if self.written:
            parts.append("written: " + ", ".join(self.written))
        if self.kept:
            parts.append("kept (not READY now): " + ", ".join(self.kept))
        if self.refused:
            parts.append("fail closed (vf-eval stops on these names): " + ", ".join(
                f"{name} {state}" for name, state in sorted(self.refused.items())))
        return "; ".join(parts)


def refusal(name: str, rec: Record | None) -> tuple[str, str]:
    """The state and the sentence a fail-closed entry for ``name`` carries."""
    if rec is None:
        return "UNKNOWN", (f"endpoint {name} is not known to hpclaunch any more (removed); "
                           "submit it again, then hpclaunch export")
    reason = " ".join(rec.reason.split())[:200]
    detail = f" ({reason})" if reason else ""
    if rec.final:
        return rec.state, (f"endpoint {name} is {rec.state}{detail}; hpclaunch status {name}")
    return rec.state, (f"endpoint {name} is {rec.state}, not READY{detail}; "
                       f"hpclaunch wait {name} --export")


# -- TOML ---------------------------------------------------------------------------------


def toml_str(value: str) -> str:
    """A TOML basic string. JSON escapes are valid TOML escapes; DEL is not allowed raw."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def load_toml(text: str) -> dict[str, Any] | None:
    """Parse TOML when a parser is available (tomllib from 3.11, tomli before)."""
    try:
        import tomllib as toml_reader
    except ImportError:  # Python 3.10
        try:
            import tomli as toml_reader  # type: ignore[no-redef,unused-ignore]
        except ImportError:
            return None
    return toml_reader.loads(text)


def check_toml(text: str, path: Path) -> dict[str, Any] | None:
    try:
        return load_toml(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise UserError(f"{path} is not valid TOML ({exc}); it was left untouched: fix it, "
                        "or pass another --path") from exc


# -- files ----------------------------------------------------------------------------------


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
