"""verifiers 0.4.x: no registry, one config file per run (``vf-eval TASKSET @ NAME.toml``).

hpclaunch writes one file per endpoint in a directory; a file carries a header line
so that files the user wrote are never touched.

Out of the box against a self-hosted server: 0.4's default agent harness and runtime
need a Prime account ("not authenticated with prime"), so every file sets the harness
to ``null`` (the model is called directly) and the runtime to ``subprocess``, the same
as ``--env.agent.harness.id null --env.agent.runtime.type subprocess``. Flags on the
command line still override the file.

Fail closed: the file of a name that is no longer READY stays, with a top-level key
0.4 does not know (``hpclaunch_refused = "why"``): its config validation refuses the
file before any request ("Extra inputs are not permitted", exit 1) and prints the
reason. A name that never had a file fails too (``Config file not found``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpclaunch.endpoints.resolve import Endpoint, key_var
from hpclaunch.errors import UserError
from hpclaunch.eval.files import FAIL_CLOSED_URL, ExportResult, atomic_write, refusal, toml_str

if TYPE_CHECKING:
    from hpclaunch.registry import Record

V1_HEADER = "# written by hpclaunch export for endpoint "


def v1_config(ep: Endpoint, *, max_tokens: int | None = None) -> str:
    """The ``vf-eval TASKSET @ FILE`` config for ``ep`` (verifiers 0.4.x).

    ``push = false``: 0.4 uploads results by default, which nobody wants from a
    private cluster endpoint. With ``--reasoning-parser`` on the server, a large
    ``max_tokens`` (the guides' rule); otherwise the server's default. The agent
    section is what lets 0.4 run without a hosted account.
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
    return "\n".join(lines + SELF_HOSTED_AGENT) + "\n"


# What 0.4 needs to run with no Prime account (see the module docstring).
SELF_HOSTED_AGENT = [
    "",
    "[env.agent.harness]",
    'id = "null"',
    "",
    "[env.agent.runtime]",
    'type = "subprocess"',
]


def refused_config(name: str, rec: Record | None) -> str:
    """A file for ``name`` that 0.4 refuses before any request, saying why."""
    state, why = refusal(name, rec)
    return "\n".join([
        f"{V1_HEADER}{name}; rewritten on each export",
        f"# {state}: this file fails on purpose (0.4 rejects the unknown key below), so that",
        "# vf-eval stops instead of running. It becomes a working config when "
        f"{name} is READY.",
        f"hpclaunch_refused = {toml_str(why)}",
        f"model = {toml_str(name)}",
        "push = false",
        "",
        "[client]",
        f"base_url = {toml_str(FAIL_CLOSED_URL)}",
        f"api_key_var = {toml_str(key_var(name))}",
    ]) + "\n"


def write_v1_dir(directory: Path, endpoints: list[Endpoint],
                 records: dict[str, Record]) -> ExportResult:
    """One ``NAME.toml`` per READY endpoint; names no longer READY keep a refusing file.

    A file we did not write (no header line) is never overwritten or removed.
    """
    directory = Path(directory)
    if directory.suffix == ".toml":
        raise UserError(f"--format vf-eval-v1 writes one file per endpoint: --path takes a "
                        f"directory, not {directory}")
    result = ExportResult(directory, "vf-eval-v1")
    directory.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {ep.name: v1_config(ep) for ep in endpoints}
    old = {target.stem for target in directory.glob("*.toml") if _ours_v1(target)}
    ended = {name for name, rec in records.items() if rec.final}
    for name in sorted((old | ended) - set(texts)):
        rec = records.get(name)
        if rec is not None and not rec.final and rec.url:
            result.kept.append(name)  # a missed health check: keep its working file
            continue
        texts[name] = refused_config(name, rec)
        result.refused[name] = refusal(name, rec)[0]
    for name, text in sorted(texts.items()):
        target = directory / f"{name}.toml"
        if target.exists() and not _ours_v1(target):
            result.warnings.append(f"{target} was not written by hpclaunch; left as it is")
            result.refused.pop(name, None)
            continue
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            atomic_write(target, text)
        if name not in result.refused:
            result.written.append(name)
    return result


def _ours_v1(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().startswith(V1_HEADER)
    except (OSError, UnicodeDecodeError):
        return False
