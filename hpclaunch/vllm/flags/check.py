"""Every problem vLLM would have with a ``vllm serve`` argv, found before the job queues.

Beyond what argparse reports, removed flags name their replacement (``REMOVED`` is the
table: flag -> what happened and what to write instead), near misses get "did you mean",
and values, hard choices and registered parser names are checked.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from hpclaunch.vllm.flags.catalogue import (
    DEFAULT_VERSION,
    FlagSpec,
    FlagTable,
    available_versions,
    flag_table,
    looks_like_option,
    normalise,
    parser_names,
    resolve_option,
)
from hpclaunch.vllm.flags.values import value_checker

__all__ = ["REMOVED", "FlagProblem", "check_args"]

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


def _value_problem(spec: FlagSpec, option: str, value: str) -> FlagProblem | None:
    check = value_checker(spec)
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


def _did_you_mean(table: FlagTable, option: str) -> list[str]:
    pool = [o for o in table.options if o.startswith("--")]
    return difflib.get_close_matches(option, pool, n=3, cutoff=0.6)


def _speculative_hint(argv: Sequence[str]) -> str:
    """Turn ``--speculative-model X --num-speculative-tokens N`` into the JSON that replaces it."""
    found: dict[str, str] = {}
    for i, token in enumerate(argv):
        name, eq, value = normalise(token).partition("=")
        if name in ("--speculative-model", "--num-speculative-tokens"):
            if not eq and i + 1 < len(argv) and not looks_like_option(argv[i + 1]):
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
    table = flag_table(version)
    parsers = parser_names(table.version)
    problems: list[FlagProblem] = []
    positionals = 0
    given = {normalise(t).split("=", 1)[0] for t in argv}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            positionals += len(argv) - i
            i = len(argv)
            continue
        if not looks_like_option(token):
            positionals += 1
            if positionals > 1:
                problems.append(FlagProblem(token, f"unexpected argument {token!r}: vllm serve "
                                            "takes one model and flags; is a flag missing "
                                            "before it?"))
            continue
        written, eq, inline = token.partition("=")
        option = normalise(written)
        base, dot, _ = option.partition(".") if option.startswith("--") else (option, "", "")
        found = resolve_option(table, base)
        if isinstance(found, list):
            if not eq and i < len(argv) and not looks_like_option(argv[i]):
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
            while i < len(argv) and not looks_like_option(argv[i]) and argv[i] != "--":
                values.append(argv[i])
                i += 1
                if spec.nargs is None:
                    break
        elif spec.nargs == "?" and not eq and i < len(argv) and not looks_like_option(argv[i]):
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


def _unknown(table: FlagTable, written: str, option: str, candidates: list[str],
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
                 if v != table.version and option in flag_table(v).options]
    near = _did_you_mean(table, option)
    if option.startswith("--no-") and (option[5:] and f"--{option[5:]}" in table.specs):
        spec = table.specs[f"--{option[5:]}"]
        return FlagProblem(written, f"{written}: {spec.name} is a plain switch with no --no- "
                           "form; leave it out to keep it off", None)
    for prefix, inverse in (("--disable-", "--enable-"), ("--enable-", "--disable-")):
        twin = table.specs.get(inverse + option[len(prefix):]) if option.startswith(
            prefix) else None
        if twin is not None and twin.kind == "bool":
            # Before ~0.2x vLLM's switches had only argparse's --no- form: no enable/disable pair.
            return FlagProblem(written, f"{written} is not a vLLM {table.version} flag: its "
                               f"switch is {twin.name}, turned off with --no-{twin.name[2:]}",
                               f"--no-{twin.name[2:]}")
    if elsewhere:
        return FlagProblem(written, f"{written} is not a vLLM {table.version} flag (it exists "
                           f"in vLLM {', '.join(elsewhere)})", near[0] if near else None)
    guess = f"; did you mean {' or '.join(near)}?" if near else ""
    return FlagProblem(written, f"{written} is not a vllm serve flag in vLLM "
                       f"{table.version}{guess}", near[0] if near else None)

