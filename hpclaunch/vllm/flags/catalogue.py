"""The ``vllm serve`` flag catalogue: one snapshot per vLLM version, and looking flags up in it.

A snapshot (``hpclaunch/vllm/data/vllm-<version>-serve-flags.json``) lists every option the
version's parser registers, with its aliases, ``--no-`` negations, kind, type and default.
Lookups follow argparse's rules: ``_`` = ``-`` in long names, exact names first, then an
unambiguous prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError

__all__ = [
    "DEFAULT_VERSION",
    "FlagSpec",
    "FlagTable",
    "available_versions",
    "flag_spec",
    "flag_table",
    "known_flags",
    "looks_like_option",
    "normalise",
    "parser_names",
    "resolve_option",
    "resolve_version",
    "serve_defaults",
]

DEFAULT_VERSION = "0.33.0"
_DATA = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class FlagSpec:
    """One ``vllm serve`` flag as the snapshot describes it.

    ``kind`` is ``"bool"`` (``--x`` / ``--no-x`` pairs), ``"store_true"`` (``--x`` only) or
    ``"value"``. ``nargs`` is argparse's (``None``, ``"?"``, ``"+"``); ``choices`` only lists
    hard choices, not the hints vLLM shows in ``--help``.
    """

    name: str
    dest: str
    kind: str
    type: str | None
    nargs: str | None
    choices: tuple[str, ...] | None
    aliases: tuple[str, ...]
    negations: tuple[str, ...]
    default: Any
    optional: bool
    append: bool
    const: Any = None

    @property
    def takes_json(self) -> bool:
        """Config-object flags also accept vLLM's dotted form ``--flag.key value``."""
        return bool(self.type) and "json" in str(self.type)


def _data_dir_files() -> list[str]:
    try:
        root = resources.files("hpclaunch.vllm").joinpath("data")
        return [entry.name for entry in root.iterdir()]
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return [p.name for p in _DATA.iterdir()]


def _data_text(name: str) -> str:
    """A bundled data file through importlib.resources, with a fallback for 3.11's namespace
    package quirk (resources cannot read an ``__init__``-less package from a relative path)."""
    try:
        return resources.files("hpclaunch.vllm").joinpath("data").joinpath(name).read_text("utf-8")
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return (_DATA / name).read_text("utf-8")


@lru_cache(maxsize=1)
def available_versions() -> tuple[str, ...]:
    """vLLM versions with a bundled flag snapshot, oldest first."""
    found = []
    for name in _data_dir_files():
        match = re.fullmatch(r"vllm-(.+)-serve-flags\.json", name)
        if match:
            found.append(match.group(1))
    return tuple(sorted(found, key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v))))


def resolve_version(version: str) -> str:
    """``0.33.0``, ``v0.33.0`` and ``0.33`` all mean the 0.33.0 snapshot; anything else is an
    error rather than a silent guess, since flags differ between minor releases."""
    wanted = version.strip().lstrip("vV")
    versions = available_versions()
    if wanted in versions:
        return wanted
    same_minor = [v for v in versions if v.split(".")[:2] == wanted.split(".")[:2]]
    if len(wanted.split(".")) == 2 and same_minor:
        return same_minor[-1]
    raise UserError(f"no vLLM flag snapshot for version {version!r}; bundled: "
                    f"{', '.join(versions)}. Set the cluster's vllm_version to one of them")


def _spec_from_entry(name: str, entry: dict[str, Any]) -> FlagSpec:
    action = entry.get("action")
    if action == "BooleanOptionalAction":
        kind = "bool"
    elif action == "store_true":
        kind = "store_true"
    else:
        kind = "value"
    nargs = entry.get("nargs")
    if action and "LoRAParserAction" in str(action):
        nargs = "+"
    choices = entry.get("choices")
    hard = tuple("None" if c is None else str(c) for c in choices) if isinstance(
        choices, list) else None
    dest = entry.get("dest") or name.lstrip("-").replace("-", "_")
    return FlagSpec(
        name=name, dest=dest, kind=kind, type=entry.get("type"), nargs=nargs, choices=hard,
        aliases=tuple(entry.get("aliases") or ()), negations=tuple(entry.get("negations") or ()),
        default=entry.get("default"), optional=bool(entry.get("optional")),
        append=action == "append", const=entry.get("const"),
    )


@dataclass(frozen=True)
class FlagTable:
    """One version's flags, indexed by every option string that reaches them."""

    version: str
    specs: dict[str, FlagSpec]  # canonical --name -> spec
    options: dict[str, tuple[FlagSpec, bool]]  # every option string -> (spec, is_negation)
    model_tag: FlagSpec | None


@cache
def flag_table(version: str) -> FlagTable:
    resolved = resolve_version(version)
    raw = json.loads(_data_text(f"vllm-{resolved}-serve-flags.json"))
    specs: dict[str, FlagSpec] = {}
    options: dict[str, tuple[FlagSpec, bool]] = {}
    model_tag = None
    for name, entry in raw.items():
        if name == "_meta":
            continue
        spec = _spec_from_entry(name, entry)
        if not name.startswith("-"):
            model_tag = spec
            continue
        specs[name] = spec
        # First registration wins, as it would in argparse if vLLM had not deduplicated
        # (0.11 lists --disable-log-requests both alone and as a negation).
        for opt in (name, *spec.aliases):
            options.setdefault(opt, (spec, False))
        for opt in spec.negations:
            options.setdefault(opt, (spec, True))
    return FlagTable(resolved, specs, options, model_tag)


def known_flags(version: str = DEFAULT_VERSION) -> frozenset[str]:
    """Canonical long names (``--max-model-len``) of every ``vllm serve`` flag of a version.

    Aliases (``-tp``) and negations (``--no-enforce-eager``) are accepted by
    :func:`check_args` but not listed, so callers can offer these names as settable keys.
    """
    return frozenset(flag_table(version).specs)


def serve_defaults(version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """dest -> default of every flag whose default is a plain value (not a code expression)."""
    out: dict[str, Any] = {}
    for spec in flag_table(version).specs.values():
        if not (isinstance(spec.default, str) and spec.default.startswith("<")):
            out.setdefault(spec.dest, spec.default)
    return out


@cache
def parser_names(version: str = DEFAULT_VERSION) -> dict[str, tuple[str, ...]] | None:
    """Registered ``reasoning`` and ``tool`` parser names, when the snapshot has them."""
    resolved = resolve_version(version)
    name = f"vllm-{resolved}-parsers.json"
    if name not in _data_dir_files():
        return None
    raw = json.loads(_data_text(name))
    return {kind: tuple(names) for kind, names in raw.items()}


def normalise(option: str) -> str:
    """vLLM treats ``_`` and ``-`` alike in long flag names (``--max_model_len``); the keys of
    a dotted JSON flag (``--compilation-config.cudagraph_mode``) are field names and stay."""
    if option.startswith("--"):
        base, dot, keys = option[2:].partition(".")
        return "--" + base.replace("_", "-") + dot + keys
    return option


def looks_like_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not re.fullmatch(r"-\d+(\.\d+)?", token)


def resolve_option(table: FlagTable, option: str) -> tuple[FlagSpec, bool] | list[str]:
    """Resolve one option string like argparse: exact, else unique long-option prefix.

    Returns the match, or the list of candidate option strings (empty = unknown, several =
    ambiguous).
    """
    if option in table.options:
        return table.options[option]
    if not option.startswith("--") or len(option) < 3:
        return []
    candidates = sorted(o for o in table.options if o.startswith(option))
    if len(candidates) == 1:
        return table.options[candidates[0]]
    return candidates


def flag_spec(option: str, version: str = DEFAULT_VERSION) -> FlagSpec | None:
    """The flag an option string means in that version (alias, negation or prefix), if any."""
    found = resolve_option(flag_table(version), normalise(option.split("=", 1)[0]))
    return None if isinstance(found, list) else found[0]
