"""Which ``vllm serve`` flags exist in a given vLLM version, and what to say about the rest.

A wrong flag costs a researcher a queue wait: the job starts hours later and dies in a
second with ``vllm serve: error: unrecognized arguments: --swap-space 4``. The guides this
project replaces list flags that were removed years ago (``--swap-space``,
``--speculative-model``) or never existed (``--quantized-kv-cache``). So every flag is
checked before submission against a snapshot of that version's parser
(``data/vllm-<version>-serve-flags.json``, read statically from vLLM's source), with
argparse's own rules: ``--x=v`` and ``--x v``, short aliases (``-tp``), ``--no-x``
negations, ``_`` = ``-`` in names, and unambiguous prefixes.

:func:`build_serve_parser` builds an argparse parser that accepts exactly those flags, so
the test stand-in fails on a bad flag exactly as vLLM does (exit 2, same message).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from hpclaunch.errors import UserError

__all__ = [
    "DEFAULT_VERSION",
    "REMOVED",
    "FlagProblem",
    "FlagSpec",
    "available_versions",
    "build_serve_parser",
    "check_args",
    "flag_spec",
    "human_readable_int",
    "known_flags",
    "parse_serve_args",
    "parser_names",
    "serve_defaults",
]

DEFAULT_VERSION = "0.33.0"

_SPEC_TEMPLATE = '\'{"model": "<draft-model>", "num_speculative_tokens": <N>}\''

REMOVED: dict[str, str] = {
    "--swap-space": "removed after vLLM 0.11 (the V1 engine has no CPU swap space): drop it; "
                    "to spill KV cache into CPU memory use --kv-offloading-size <GiB>",
    "--calculate-kv-scales": "removed after vLLM 0.11: drop it and use --kv-cache-dtype fp8 "
                             "(scales come from the checkpoint)",
    "--enable-reasoning": "removed by vLLM 0.11: --reasoning-parser <name> alone enables "
                          "reasoning output",
    "--num-scheduler-steps": "removed by vLLM 0.11 (multi-step scheduling left with the V0 "
                             "engine): drop it",
    "--max-seq-len-to-capture": "removed by vLLM 0.11: drop it, or size CUDA graphs with "
                                "--max-cudagraph-capture-size <N>",
    "--preemption-mode": "removed by vLLM 0.11 (V1 always preempts by recomputation): drop it",
    "--speculative-model": f"removed by vLLM 0.8.5: use --speculative-config {_SPEC_TEMPLATE}",
    "--num-speculative-tokens": "removed by vLLM 0.8.5: use --speculative-config "
                                f"{_SPEC_TEMPLATE}",
    "--quantized-kv-cache": "never existed in vLLM: use --kv-cache-dtype fp8",
    "--rope-scaling": "removed after vLLM 0.11: use --hf-overrides "
                      "'{\"rope_scaling\": {...}}'",
    "--rope-theta": "removed after vLLM 0.11: use --hf-overrides '{\"rope_theta\": <value>}'",
    "--task": "removed after vLLM 0.11: use --runner (generate/pooling) and --convert",
    "--cuda-graph-sizes": "renamed after vLLM 0.11: use --cudagraph-capture-sizes",
    "--use-v2-block-manager": "removed in vLLM 0.7 (the v2 block manager is the only one): "
                              "drop it",
}

# What to write instead of a REMOVED flag, when there is one thing to write.
_REPLACEMENTS: dict[str, str] = {
    "--swap-space": "--kv-offloading-size <GiB>",
    "--calculate-kv-scales": "--kv-cache-dtype fp8",
    "--enable-reasoning": "--reasoning-parser <name>",
    "--max-seq-len-to-capture": "--max-cudagraph-capture-size <N>",
    "--quantized-kv-cache": "--kv-cache-dtype fp8",
    "--rope-scaling": "--hf-overrides '{\"rope_scaling\": {...}}'",
    "--rope-theta": "--hf-overrides '{\"rope_theta\": <value>}'",
    "--task": "--runner <generate|pooling>",
    "--cuda-graph-sizes": "--cudagraph-capture-sizes",
}


@dataclass(frozen=True)
class FlagProblem:
    """One thing wrong with a ``vllm serve`` argument list.

    ``flag`` is the argument as written; ``message`` is a complete sentence that names it
    (so it can be shown alone); ``suggestion`` is the replacement to use, or ``None`` when
    there is nothing sensible to offer.
    """

    flag: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        if not self.suggestion or self.suggestion in self.message:
            return self.message
        return f"{self.message} (use: {self.suggestion})"


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


# --------------------------------------------------------------------------- snapshots


def _data_dir_files() -> list[str]:
    try:
        root = resources.files("hpclaunch.vllm").joinpath("data")
        return [entry.name for entry in root.iterdir()]
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return [p.name for p in (Path(__file__).resolve().parent / "data").iterdir()]


def _data_text(name: str) -> str:
    """A bundled data file through importlib.resources, with a fallback for 3.11's namespace
    package quirk (resources cannot read an ``__init__``-less package from a relative path)."""
    try:
        return resources.files("hpclaunch.vllm").joinpath("data").joinpath(name).read_text("utf-8")
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return (Path(__file__).resolve().parent / "data" / name).read_text("utf-8")


@lru_cache(maxsize=1)
def available_versions() -> tuple[str, ...]:
    """vLLM versions with a bundled flag snapshot, oldest first."""
    found = []
    for name in _data_dir_files():
        match = re.fullmatch(r"vllm-(.+)-serve-flags\.json", name)
        if match:
            found.append(match.group(1))
    return tuple(sorted(found, key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v))))


def _resolve_version(version: str) -> str:
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


_LOWER_TYPE = "lower().replace('-', '_')"


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
class _Table:
    version: str
    specs: dict[str, FlagSpec]  # canonical --name -> spec
    options: dict[str, tuple[FlagSpec, bool]]  # every option string -> (spec, is_negation)
    model_tag: FlagSpec | None


@cache
def _table(version: str) -> _Table:
    resolved = _resolve_version(version)
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
    return _Table(resolved, specs, options, model_tag)


def known_flags(version: str = DEFAULT_VERSION) -> frozenset[str]:
    """Canonical long names (``--max-model-len``) of every ``vllm serve`` flag of a version.

    Aliases (``-tp``) and negations (``--no-enforce-eager``) are accepted by
    :func:`check_args` but not listed, so callers can offer these names as settable keys.
    """
    return frozenset(_table(version).specs)


def serve_defaults(version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """dest -> default of every flag whose default is a plain value (not a code expression)."""
    out: dict[str, Any] = {}
    for spec in _table(version).specs.values():
        if not (isinstance(spec.default, str) and spec.default.startswith("<")):
            out.setdefault(spec.dest, spec.default)
    return out


@cache
def parser_names(version: str = DEFAULT_VERSION) -> dict[str, tuple[str, ...]] | None:
    """Registered ``reasoning`` and ``tool`` parser names, when the snapshot has them."""
    resolved = _resolve_version(version)
    name = f"vllm-{resolved}-parsers.json"
    if name not in _data_dir_files():
        return None
    raw = json.loads(_data_text(name))
    return {kind: tuple(names) for kind, names in raw.items()}


# --------------------------------------------------------------------------- values


_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT])")


def human_readable_int(text: str) -> int:
    """Parse vLLM's human-readable integers: ``32k`` = 32,000, ``32K`` = 32,768.

    Lower-case suffixes are decimal and upper-case ones binary, as in vLLM's own parser,
    which surprises people who write ``--max-model-len 32k`` expecting 32,768.
    """
    value = text.strip()
    match = _HUMAN_INT.fullmatch(value)
    if not match:
        return int(value)
    number, suffix = match.groups()
    if suffix.islower():
        return int(float(number) * 1000 ** ("kmgt".index(suffix) + 1))
    if "." in number:
        raise ValueError(f"{text!r}: binary suffixes take whole numbers")
    return int(number) * 1024 ** ("KMGT".index(suffix) + 1)


def _checker(spec: FlagSpec) -> Callable[[str], str] | None:
    """Validator for a value: checks it the way vLLM's type function would, returns the text.

    Values stay strings (the planner compares and re-renders them); only their shape is
    checked, so a typo fails here and not on the compute node.
    """
    kind = str(spec.type or "")

    def tolerant(check: Callable[[str], object], name: str) -> Callable[[str], str]:
        def convert(text: str) -> str:
            if spec.optional and text in ("", "None"):
                return text
            check(text)
            return text

        convert.__name__ = name  # argparse says "invalid <name> value: 'x'"
        return convert

    if kind == "int":
        return tolerant(int, "int")
    if kind == "float":
        return tolerant(float, "float")
    if kind == "human_readable_int":
        return tolerant(human_readable_int, "human_readable_int")
    if kind == "human_readable_int_or_auto":
        return tolerant(lambda t: t == "auto" or human_readable_int(t),
                        "human_readable_int_or_auto")
    if kind in ("json", "<override: json.loads>", "<override: optional_type(json.loads)>"):
        return tolerant(json.loads, "loads")
    if _LOWER_TYPE in kind:
        def lowered(text: str) -> str:
            return text.lower().replace("-", "_")

        lowered.__name__ = "str"
        return lowered
    return None


def _value_problem(spec: FlagSpec, option: str, value: str) -> FlagProblem | None:
    check = _checker(spec)
    if check is not None:
        try:
            value = check(value)
        except (ValueError, TypeError):
            what = {"int": "a whole number", "float": "a number"}.get(str(spec.type),
                                                                     f"a {spec.type} value")
            if "human_readable_int" in str(spec.type):
                what = "a whole number such as 8192 or 32k"
            elif "json" in str(spec.type):
                what = "valid JSON"
            return FlagProblem(option, f"{option} expects {what}, not {value!r}")
    if spec.choices is not None and value not in spec.choices:
        near = difflib.get_close_matches(value, spec.choices, n=1)
        return FlagProblem(option, f"{option} {value!r} is not one of "
                           f"{', '.join(spec.choices)}",
                           f"{option} {near[0]}" if near else None)
    return None


# --------------------------------------------------------------------------- checking


def _normalise(option: str) -> str:
    """vLLM treats ``_`` and ``-`` alike in long flag names (``--max_model_len``); the keys of
    a dotted JSON flag (``--compilation-config.cudagraph_mode``) are field names and stay."""
    if option.startswith("--"):
        base, dot, keys = option[2:].partition(".")
        return "--" + base.replace("_", "-") + dot + keys
    return option


def _looks_like_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not re.fullmatch(r"-\d+(\.\d+)?", token)


def _match(table: _Table, option: str) -> tuple[FlagSpec, bool] | list[str]:
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


def _did_you_mean(table: _Table, option: str) -> list[str]:
    pool = [o for o in table.options if o.startswith("--")]
    return difflib.get_close_matches(option, pool, n=3, cutoff=0.6)


def _speculative_hint(argv: Sequence[str]) -> str:
    """Turn ``--speculative-model X --num-speculative-tokens N`` into the JSON that replaces it."""
    found: dict[str, str] = {}
    for i, token in enumerate(argv):
        name, eq, value = _normalise(token).partition("=")
        if name in ("--speculative-model", "--num-speculative-tokens"):
            if not eq and i + 1 < len(argv) and not _looks_like_option(argv[i + 1]):
                value = argv[i + 1]
            found[name] = value
    model = found.get("--speculative-model") or "<draft-model>"
    tokens = found.get("--num-speculative-tokens") or "<N>"
    body = {"model": model, "num_speculative_tokens": int(tokens) if tokens.isdigit() else tokens}
    return "--speculative-config '" + json.dumps(body) + "'"


def check_args(argv: Sequence[str], version: str = DEFAULT_VERSION) -> list[FlagProblem]:
    """Every problem vLLM ``version`` would have with ``vllm serve [MODEL] argv``.

    Understands what vLLM's argparse does: ``--x=v`` and ``--x v``, aliases, ``--no-x``,
    ``_``/``-``, unambiguous prefixes, ``--json-flag.key v``, ``nargs='+'`` lists. Beyond
    argparse it flags removed flags with their replacement, near misses with "did you mean",
    value types, hard choices and (for snapshots that list them) reasoning/tool parser
    names. One positional argument (the model) is allowed.
    """
    table = _table(version)
    parsers = parser_names(table.version)
    problems: list[FlagProblem] = []
    positionals = 0
    given = {_normalise(t).split("=", 1)[0] for t in argv}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            positionals += len(argv) - i
            i = len(argv)
            continue
        if not _looks_like_option(token):
            positionals += 1
            if positionals > 1:
                problems.append(FlagProblem(token, f"unexpected argument {token!r}: vllm serve "
                                            "takes one model and flags; is a flag missing "
                                            "before it?"))
            continue
        written, eq, inline = token.partition("=")
        option = _normalise(written)
        base, dot, _ = option.partition(".") if option.startswith("--") else (option, "", "")
        found = _match(table, base)
        if isinstance(found, list):
            if not eq and i < len(argv) and not _looks_like_option(argv[i]):
                i += 1  # its value, most likely
            problems.append(_unknown(table, written, base, found, argv))
            continue
        spec, negated = found
        if spec.kind != "value" or negated:
            if eq and not dot:
                problems.append(FlagProblem(written, f"{written} is a switch and takes "
                                            "no value", written))
            continue
        if dot and not spec.takes_json:
            problems.append(FlagProblem(written, f"{written}: {spec.name} is not a JSON config "
                                        "flag, so it has no .key form"))
        values: list[str] = [inline] if eq else []
        if spec.nargs == "+" or (not eq and spec.nargs is None):
            while i < len(argv) and not _looks_like_option(argv[i]) and argv[i] != "--":
                values.append(argv[i])
                i += 1
                if spec.nargs is None:
                    break
        elif spec.nargs == "?" and not eq and i < len(argv) and not _looks_like_option(argv[i]):
            values.append(argv[i])
            i += 1
        if not values and spec.nargs != "?":
            problems.append(FlagProblem(written, f"{written} expects a value"))
            continue
        if dot:
            continue
        for value in values:
            problem = _value_problem(spec, written, value)
            if problem is None and parsers:
                problem = _parser_problem(spec, written, value, parsers, given)
            if problem is not None:
                problems.append(problem)
    return problems


def _parser_problem(spec: FlagSpec, option: str, value: str,
                    parsers: dict[str, tuple[str, ...]], given: set[str]) -> FlagProblem | None:
    if spec.name == "--reasoning-parser":
        kind = "reasoning"
    elif spec.name == "--tool-call-parser" and "--tool-parser-plugin" not in given:
        kind = "tool"
    else:
        return None
    names = parsers.get(kind, ())
    if not value or value in names:
        return None
    near = difflib.get_close_matches(value.replace("-", "_"), names, n=1, cutoff=0.6)
    return FlagProblem(option, f"{option} {value!r} is not a registered {kind} parser "
                       f"in vLLM",
                       f"{spec.name} {near[0]}" if near else None)


def _unknown(table: _Table, written: str, option: str, candidates: list[str],
             argv: Sequence[str]) -> FlagProblem:
    if len(candidates) > 1:
        shown = ", ".join(candidates[:6]) + (", ..." if len(candidates) > 6 else "")
        return FlagProblem(written, f"{written} is ambiguous: it could match {shown}", None)
    if option in REMOVED:
        hint = REMOVED[option]
        suggestion = _REPLACEMENTS.get(option)
        if option in ("--speculative-model", "--num-speculative-tokens"):
            suggestion = _speculative_hint(argv)
        return FlagProblem(written, f"{written} is not a vLLM {table.version} flag: {hint}",
                           suggestion)
    elsewhere = [v for v in available_versions()
                 if v != table.version and option in _table(v).options]
    near = _did_you_mean(table, option)
    if option.startswith("--no-") and (option[5:] and f"--{option[5:]}" in table.specs):
        spec = table.specs[f"--{option[5:]}"]
        return FlagProblem(written, f"{written}: {spec.name} is a plain switch with no --no- "
                           "form; leave it out to keep it off", None)
    if elsewhere:
        return FlagProblem(written, f"{written} is not a vLLM {table.version} flag (it exists "
                           f"in vLLM {', '.join(elsewhere)})", near[0] if near else None)
    guess = f"; did you mean {' or '.join(near)}?" if near else ""
    return FlagProblem(written, f"{written} is not a vllm serve flag in vLLM "
                       f"{table.version}{guess}", near[0] if near else None)


# --------------------------------------------------------------------------- argparse


class _HelpAction(argparse.Action):
    """``-h`` / ``--help[=all|<group>]``: vLLM accepts a value, plain argparse would not."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.print_help()
        parser.exit(0)


class _ParseError(Exception):
    pass


class ServeArgumentParser(argparse.ArgumentParser):
    """argparse with vLLM's FlexibleArgumentParser pre-processing (``_`` -> ``-`` in long
    names, dotted JSON keys folded into one JSON value) and, optionally, errors raised
    instead of exiting."""

    def __init__(self, *args: Any, raise_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raise_errors = raise_errors

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        raw = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(_preprocess(raw), namespace)

    def error(self, message: str) -> NoReturn:
        if self.raise_errors:
            raise _ParseError(message)
        super().error(message)


def _preprocess(argv: list[str]) -> list[str]:
    """Normalise ``--max_model_len`` to ``--max-model-len`` and turn ``--cfg.a.b v`` into
    ``--cfg '{"a": {"b": v}}'``, as vLLM's parser does before argparse sees the list."""
    out: list[str] = []
    dotted: dict[str, dict[str, Any]] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            out.extend(argv[i - 1:])
            break
        if not token.startswith("--"):
            out.append(token)
            continue
        name, eq, value = token.partition("=")
        name = _normalise(name)
        base, dot, keys = name.partition(".")
        if not dot:
            out.append(f"{name}={value}" if eq else name)
            continue
        if not eq:
            if i < len(argv) and not _looks_like_option(argv[i]):
                value = argv[i]
                i += 1
            else:
                value = "true"
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        node = dotted.setdefault(base, {})
        *parents, leaf = keys.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = parsed
    for base, body in dotted.items():
        out += [base, json.dumps(body)]
    return out


def build_serve_parser(version: str = DEFAULT_VERSION, *,
                       raise_errors: bool = False) -> ServeArgumentParser:
    """An argparse parser for ``vllm serve [model_tag] [options]`` of that vLLM version.

    Accepts exactly that version's flags, aliases and negations, with argparse's prefix
    matching; an unknown flag exits 2 with vLLM's own ``vllm serve: error: unrecognized
    arguments: ...``. Values are kept as the strings given (checked for type and hard
    choices), switches as ``True``/``False``, ``nargs='+'`` flags as lists. Defaults are
    left out (``argparse.SUPPRESS``) so the namespace shows only what was passed; see
    :func:`serve_defaults` for the rest.
    """
    table = _table(version)
    parser = ServeArgumentParser(
        prog="vllm serve", usage="vllm serve [model_tag] [options]", add_help=False,
        argument_default=argparse.SUPPRESS, raise_errors=raise_errors,
        description=f"Flags of vLLM {table.version} (hpclaunch snapshot).",
    )
    parser.add_argument("-h", "--help", nargs="?", action=_HelpAction, default=argparse.SUPPRESS,
                        help="show this help and exit")
    parser.add_argument("model_tag", nargs="?", help="model name or path")
    taken: set[str] = {"-h", "--help"}
    for spec in table.specs.values():
        positive = [o for o in (spec.name, *spec.aliases) if o not in taken]
        negative = [o for o in spec.negations if o not in taken]
        taken.update(positive, negative)
        if spec.kind in ("bool", "store_true"):
            if positive:
                parser.add_argument(*positive, dest=spec.dest, action="store_true")
            if negative:
                parser.add_argument(*negative, dest=spec.dest, action="store_false")
            continue
        if not positive:
            continue
        kwargs: dict[str, Any] = {"dest": spec.dest, "metavar": spec.dest.upper()}
        check = _checker(spec)
        if check is not None:
            kwargs["type"] = check
        if spec.choices is not None:
            kwargs["choices"] = list(spec.choices)
        if spec.append:
            kwargs["action"] = "append"
        elif spec.nargs is not None:
            kwargs["nargs"] = spec.nargs
            if spec.nargs == "?":
                kwargs["const"] = spec.const if spec.const is not None else ""
        parser.add_argument(*positive, **kwargs)
    return parser


def parse_serve_args(argv: Sequence[str], version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """dest -> value for the flags ``argv`` sets (``{"tensor_parallel_size": "2", ...}``).

    The planner uses it to read what a preset or override already sets. A positional model
    comes back as ``model_tag``.

    Raises
    ------
    UserError
        With argparse's message plus the replacement or "did you mean" from
        :func:`check_args`.
    """
    parser = build_serve_parser(version, raise_errors=True)
    try:
        namespace, extra = parser.parse_known_args(list(argv))
    except _ParseError as exc:
        raise UserError(_with_hints(f"vllm serve {_table(version).version}: {exc}", argv,
                                    version)) from None
    if extra:
        message = f"vllm serve {_table(version).version}: unrecognized arguments: {' '.join(extra)}"
        raise UserError(_with_hints(message, argv, version))
    return vars(namespace)


def _with_hints(message: str, argv: Sequence[str], version: str) -> str:
    problems = check_args(argv, version)
    if not problems:
        return message
    return message + " (" + "; ".join(str(p) for p in problems) + ")"


def flag_spec(option: str, version: str = DEFAULT_VERSION) -> FlagSpec | None:
    """The flag an option string means in that version (alias, negation or prefix), if any."""
    found = _match(_table(version), _normalise(option.split("=", 1)[0]))
    return None if isinstance(found, list) else found[0]
