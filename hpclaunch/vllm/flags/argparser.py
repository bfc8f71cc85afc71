"""An argparse parser of exactly one vLLM version's ``vllm serve`` flags.

The stand-in builds its command line with it, so it fails on a bad flag exactly as vLLM does
(exit 2, same message); the planner uses :func:`parse_serve_args` to read what a preset or an
override already sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from hpclaunch.errors import UserError
from hpclaunch.vllm.flags.catalogue import (
    DEFAULT_VERSION,
    flag_table,
    looks_like_option,
    normalise,
)
from hpclaunch.vllm.flags.check import check_args
from hpclaunch.vllm.flags.values import value_checker

__all__ = ["ServeArgumentParser", "build_serve_parser", "parse_serve_args"]


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
        name = normalise(name)
        base, dot, keys = name.partition(".")
        if not dot:
            out.append(f"{name}={value}" if eq else name)
            continue
        if not eq:
            if i < len(argv) and not looks_like_option(argv[i]):
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
    table = flag_table(version)
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
        check = value_checker(spec)
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
        raise UserError(_with_hints(f"vllm serve {flag_table(version).version}: {exc}", argv,
                                    version)) from None
    if extra:
        resolved = flag_table(version).version
        message = f"vllm serve {resolved}: unrecognized arguments: {' '.join(extra)}"
        raise UserError(_with_hints(message, argv, version))
    return vars(namespace)


def _with_hints(message: str, argv: Sequence[str], version: str) -> str:
    problems = check_args(argv, version)
    if not problems:
        return message
    return message + " (" + "; ".join(str(p) for p in problems) + ")"

