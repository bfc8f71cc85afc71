"""Values of ``vllm serve`` flags, checked the way vLLM's own type functions would.

Values stay strings (the planner compares and re-renders them); only their shape is checked,
so a typo fails before submission and not on the compute node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from hpclaunch.vllm.flags.catalogue import FlagSpec

__all__ = ["human_readable_int", "value_checker"]

_LOWER_TYPE = "lower().replace('-', '_')"
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


def value_checker(spec: FlagSpec) -> Callable[[str], str] | None:
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

