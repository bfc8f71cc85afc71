"""The verifiers 0.3.x endpoint registry: a TOML file of ``[[endpoint]]`` tables.

hpclaunch writes it to an absolute path (``$XDG_STATE_HOME/hpclaunch/exports/endpoints.toml``
by default, see :mod:`hpclaunch.eval.export`) and prints ``vf-eval ENV -m NAME -e PATH``:
vf-eval's own default, ``./configs/endpoints.toml``, depends on the directory it runs in,
and run anywhere else it finds no registry and sends every name to a hosted provider.

The registry file is shared with the user, so merging is conservative: every
entry hpclaunch writes sits between ``# >>> hpclaunch: endpoint NAME`` and
``# <<< hpclaunch: endpoint NAME`` comment lines (comments survive every TOML
reader and need no extra key that some verifiers version might reject). Text
outside those blocks is kept byte for byte; our blocks are rewritten from the
registry. The file is replaced atomically, and a file that is not valid TOML is left
alone.

Fail closed: vf-eval 0.3 sends a ``-m`` name that its registry does not list to a
hosted provider (prime's pinference by default) and exits 0. So the block of a name
that was exported once and is no longer READY never vanishes: it becomes two
``[[endpoint]]`` tables with the same id and different models, which vf-eval 0.3.1
refuses before it sends anything ("Endpoint alias 'NAME' maps to multiple model
ids [...]", exit 1), and the model strings say why. An address nothing listens on
alone would not do: vf-eval retries it for a minute, scores 0 and exits 0.
The same goes for FAILED/ENDED endpoints hpclaunch still lists. A typo that was
never a name cannot be caught here; ``hpclaunch eval`` refuses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch.endpoints.resolve import Endpoint, key_var
from hpclaunch.errors import UserError
from hpclaunch.eval.files import (
    FAIL_CLOSED_URL,
    ExportResult,
    atomic_write,
    check_toml,
    load_toml,
    refusal,
    toml_str,
)

if TYPE_CHECKING:
    from hpclaunch.registry import Record


BEGIN = "# >>> hpclaunch: endpoint "
END = "# <<< hpclaunch: endpoint "
BEGIN_RE = re.compile(r"^# >>> hpclaunch: endpoint (\S+)")
REGISTRY_HEADER = (
    "# vf-eval endpoint registry (verifiers 0.3.x): vf-eval ENV -m NAME -e THIS_FILE\n"
    "# Blocks between '# >>> hpclaunch' and '# <<< hpclaunch' lines are rewritten by\n"
    "# `hpclaunch export`; add your own [[endpoint]] entries outside them.\n"
    "# Keys: eval \"$(hpclaunch env --all)\" exports the variables named by `key`.\n"
)


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


def refused_block(name: str, rec: Record | None) -> str:
    """A block for ``name`` that makes vf-eval 0.3 stop at once, saying why (see above)."""
    state, why = refusal(name, rec)
    table = (
        "[[endpoint]]\n"
        f"endpoint_id = {toml_str(name)}\n"
        "model = {model}\n"
        f"url = {toml_str(FAIL_CLOSED_URL)}\n"
        f"key = {toml_str(key_var(name))}\n"
    )
    return (
        f"{BEGIN}{name} (rewritten by hpclaunch export; edit outside this block)\n"
        f"# {state}: this entry fails on purpose, so that vf-eval stops instead of sending\n"
        f"# {name!r} to a hosted provider. It becomes a working entry when {name} is READY.\n"
        + table.replace("{model}", toml_str(f"refused by hpclaunch: {why}"))
        + table.replace("{model}", toml_str(f"{name} is {state}, not a live endpoint"))
        + f"{END}{name}\n"
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
    old block of ours, and every FAILED/ENDED endpoint in ``records``, gets a block
    that fails closed (:func:`refused_block`).
    """
    result = ExportResult(Path(path), "vf-eval")
    user_text, ours = split_registry(text, path)
    user_doc = check_toml(user_text, Path(path)) or {}
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
    ended = {name for name, rec in records.items() if rec.final}
    for name in sorted((set(ours) | ended) - set(blocks) - user_ids):
        rec = records.get(name)
        if rec is not None and not rec.final and rec.url:
            blocks[name] = registry_block(Endpoint.from_record(rec))
            result.kept.append(name)
        else:
            blocks[name] = refused_block(name, rec)
            result.refused[name] = refusal(name, rec)[0]
    if not user_text.strip():
        user_text = REGISTRY_HEADER
    body = user_text.rstrip("\n") + "\n"
    if blocks:
        body += "\n" + "\n".join(blocks[name] for name in sorted(blocks))
    doc = load_toml(body)
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
