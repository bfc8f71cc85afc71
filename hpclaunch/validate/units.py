"""The values users write by hand, one rule each: time limits, memory, counts, fractions,
variable names, PBS resource values.

clusters.yaml, presets, ``--set``, ``--env`` and ``--gpus-per-node`` all reach the same
rule, so a value is refused in the same words wherever it was written, and before anything
is queued: a site or vLLM refusing it later costs a queue wait, and some values are not
refused at all (Slurm reads ``--time=25:99`` as 26:39; a comma in a PBS resource value
adds a resource). A rule returns the value the way the scheduler wants it, or raises
:class:`Invalid`, whose text reads ``expected X, got Y``; the caller puts the place in
front (``clusters.yaml: clusters.a100.mem: expected ...``).

Pure Python: the schema module (msgspec) and the planner both use these rules, and
neither should pay for the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hpclaunch.errors import UserError

# Longest value quoted back in an error: the message stays one readable line.
SHOWN_CHARS = 60


def shown(value: Any) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` with the full length said."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    size = f" ({len(value):,} characters)" if isinstance(value, str) else ""
    return f"{text[:SHOWN_CHARS]}...{size}"


class Invalid(ValueError):
    """A value broke its rule; ``str()`` is ``expected <what>, got <value>[; <fix>]``."""

    def __init__(self, expected: str, value: Any, fix: str = "") -> None:
        self.expected, self.value, self.fix = expected, value, fix
        super().__init__(f"expected {expected}, got {shown(value)}" + (f"; {fix}" if fix else ""))


def check(value: Any, rule: Callable[[Any], Any], where: str) -> Any:
    """``rule(value)``, or a one-line :class:`UserError`: ``<where>: expected X, got Y``."""
    try:
        return rule(value)
    except Invalid as exc:
        raise UserError(f"{where}: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------- counts, fractions

def positive_int(value: Any) -> int:
    """CPU and GPU counts, ``max-num-seqs``: a whole number >= 1 (``true`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid("a positive integer", value)
    return value


def fraction(value: Any) -> float:
    """``gpu-memory-utilization``: vLLM accepts (0, 1]; 0 or 1.5 fail on the node."""
    if not _is_number(value) or not 0 < value <= 1:
        raise Invalid("a fraction in (0, 1] such as 0.9", value)
    return float(value)


def port(value: Any) -> int:
    """An SSH port in a cluster profile."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid("a port number 1-65535", value)
    return value


def gpu_request(value: Any) -> int | str:
    """``--set gpus-per-node=``: a count, or Slurm's ``TYPE:COUNT`` (``h100:4``)."""
    if isinstance(value, str) and ":" in value:
        kind, _, count = value.rpartition(":")
        if re.fullmatch(r"[A-Za-z0-9_.-]+", kind) and count.isdigit() and int(count) >= 1:
            return value
        raise Invalid("a positive integer or TYPE:COUNT such as h100:4", value)
    try:
        return positive_int(value)
    except Invalid:
        raise Invalid("a positive integer or TYPE:COUNT such as h100:4", value) from None


# ------------------------------------------------------------------------- time limits

_MMSS = r"[0-5]?\d"
_HOURS_IN_DAY = r"(?:[01]?\d|2[0-3])"
# sbatch --time: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
# "days-hours:minutes" and "days-hours:minutes:seconds" (sbatch(1)), or no limit.
SLURM_TIME = re.compile(
    rf"\d+|\d+:{_MMSS}|\d+:{_MMSS}:{_MMSS}"
    rf"|\d+-{_HOURS_IN_DAY}(?::{_MMSS}(?::{_MMSS})?)?|UNLIMITED|INFINITE",
    re.IGNORECASE,
)
# PBS walltime: [[hours:]minutes:]seconds; Slurm's days form is taken too and converted.
PBS_TIME = re.compile(rf"(?:(?:(\d+):)?(\d+):)?(\d+)|(\d+)-({_HOURS_IN_DAY}):({_MMSS}):({_MMSS})")
TIME_FORMATS = {
    "slurm": "a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)",
    "pbs": "a PBS walltime ([[HH:]MM:]SS, or D-HH:MM:SS)",
}


def time_limit(value: Any, scheduler: str) -> str:
    """A time limit in a form the scheduler accepts; PBS gets ``HH:MM:SS``.

    The local scheduler takes Slurm's forms (profiles move between the two); an empty
    value means none. A YAML integer is minutes for Slurm and seconds for PBS, as the
    schedulers read a bare number.
    """
    if value is None or value == "":
        return ""
    expected = TIME_FORMATS["pbs" if scheduler == "pbs" else "slurm"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid(expected, value)
    text = str(value).strip()
    if scheduler != "pbs":
        if not SLURM_TIME.fullmatch(text):
            raise Invalid(expected, value)
        return text
    match = PBS_TIME.fullmatch(text)
    if not match:
        raise Invalid(expected, value)
    hours, minutes, seconds, days, d_hours, d_minutes, d_seconds = match.groups()
    if days is not None:
        total = ((int(days) * 24 + int(d_hours)) * 60 + int(d_minutes)) * 60 + int(d_seconds)
    else:
        # Only the leading field may exceed 59 (90:00 is 90 minutes; 25:99 is a typo).
        trailing = [int(f) for f in (minutes if hours else None, seconds if minutes else None)
                    if f is not None]
        if any(f > 59 for f in trailing):
            raise Invalid(expected, value)
        total = (int(hours or 0) * 60 + int(minutes or 0)) * 60 + int(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


# ------------------------------------------------------------------------- memory

MEMORY = re.compile(r"(\d+)\s*([KMGT]?)(B?)", re.IGNORECASE)


def memory(value: Any, scheduler: str) -> str:
    """``64G`` (Slurm: a number and K, M, G or T; a bare number is MB) -> ``64G`` for
    Slurm, ``64gb`` for PBS (whose bare number would be bytes)."""
    text = str(value).strip() if isinstance(value, (str, int)) \
        and not isinstance(value, bool) else ""
    match = MEMORY.fullmatch(text)
    if not match:
        raise Invalid("a memory size such as 64G, 512M or 0 (a number with K, M, G or T)",
                      value)
    number, unit = match.group(1), match.group(2).upper()
    if scheduler == "pbs":
        return f"{number}{(unit or 'M').lower()}b"
    return f"{number}{unit}"


# ------------------------------------------------------------------------- names, values

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def env_name(name: Any) -> str:
    """A variable name ``export`` accepts: ASCII letters, digits and ``_``, not digit-first."""
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise Invalid("a shell variable name (letters A-Z, digits and _, not starting with a "
                      "digit)", name)
    return name


def env_value(value: Any) -> str:
    """A variable's value: text or a number (YAML ``4`` is fine); lists and mappings are not."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid("a string or a number (quote it)", value)
    return str(value)


# Linux's PATH_MAX and NAME_MAX: a longer path cannot exist, and os.stat raises on it.
PATH_MAX, NAME_MAX = 4096, 255


def model_name(value: Any) -> str:
    """A model id or path that could exist within the OS's limits (any characters: a
    quoted path survives as data, so only its length is refused)."""
    text = value if isinstance(value, str) else ""
    if (not text.strip() or len(text) > PATH_MAX
            or any(len(part.encode()) > NAME_MAX for part in text.split("/"))):
        raise Invalid(f"a model id (org/name), a catalog name or a path (at most {PATH_MAX} "
                      f"characters, {NAME_MAX} bytes between slashes)", value)
    return text


PBS_RESOURCE = re.compile(r"[A-Za-z0-9_.:@/%+-]+")


def pbs_resource(value: Any) -> str:
    """A value inside ``#PBS -l``: a comma would start another resource
    (``filesystems=home,walltime=999:00:00``), so only a plain word passes."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not PBS_RESOURCE.fullmatch(text):
        raise Invalid("a PBS resource value without commas, spaces or shell characters "
                      "(letters, digits and . _ : @ / % + -)", value)
    return text


# ------------------------------------------------------------------------- containers, caches

def container_image(value: Any) -> str:
    """A ``.sif`` path, ``docker://...`` or an image name: one word (it is one argv entry)."""
    if not isinstance(value, str) or not value.strip() or len(value) > PATH_MAX \
            or any(c.isspace() for c in value):
        raise Invalid("an image: a .sif path, docker://vllm/vllm-openai:TAG or an image name "
                      "(no spaces)", value)
    return value


def host_path(value: Any) -> str:
    """``hf-home``: an absolute path the job, its container and the login node all see
    (``~`` would mean another home inside a container, so it is refused)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > PATH_MAX \
            or any(c in value for c in "\n\0"):
        raise Invalid("an absolute path such as /scratch/alice/hf", value)
    return value


BIND_OPTIONS = {"ro", "rw", "z", "Z"}


def bind_mount(value: Any) -> str:
    """``SRC[:DST[:ro]]`` -> ``SRC:DST[:ro]``: one form every runtime reads the same way.

    A bare ``SRC`` would be an anonymous volume for Docker, so DST defaults to SRC; a
    comma would split Apptainer's ``--bind`` list, so it is refused.
    """
    expected = "a bind SRC[:DST[:ro]] of absolute paths such as /scratch:/scratch:ro"
    if not isinstance(value, str) or "," in value or any(c in value for c in "\n\0"):
        raise Invalid(expected, value)
    parts = value.split(":")
    if len(parts) > 3 or (len(parts) == 3 and parts[2] not in BIND_OPTIONS):
        raise Invalid(expected, value)
    src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
    if not src.startswith("/") or not dst.startswith("/"):
        raise Invalid(expected, value)
    return ":".join([src, dst, *parts[2:]])


def runtime_option(value: Any) -> str:
    """One extra argv entry for the runtime (``--cleanenv``, ``--ulimit=memlock=-1``)."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\0" in value:
        raise Invalid("one runtime option per list entry, such as --ulimit=memlock=-1", value)
    return value


# ------------------------------------------------------------------------- rule tables

def _numeric(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A vLLM flag's range rule: applied to numbers (also written as text, ``"1.5"``);
    anything else is left to the flag's type check, which knows the vLLM version."""

    def rule(value: Any) -> Any:
        number = value
        if isinstance(value, str):
            try:
                number = float(value) if "." in value or "e" in value.lower() else int(value)
            except ValueError:
                return value
        if not _is_number(number):
            return value
        check(number)
        return value

    return rule


def _at_least_one(value: Any) -> Any:
    if value < 1 or value != int(value):
        raise Invalid("a positive integer", value)
    return value


# vLLM flags whose range vLLM checks only on the node (after the queue wait).
FLAG_RULES: dict[str, Callable[[Any], Any]] = {
    "gpu-memory-utilization": _numeric(fraction),
    "max-num-seqs": _numeric(_at_least_one),
    "max-num-batched-tokens": _numeric(_at_least_one),
    "max-model-len": _numeric(_at_least_one),
}

# Job resources, in clusters.yaml, presets' ``resources:`` and ``--set``: key ->
# rule(value, scheduler). Scheduler-free rules ignore the second argument.
def _any_scheduler(rule: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def checked(value: Any, scheduler: str) -> Any:
        return rule(value)

    return checked


RESOURCE_RULES: dict[str, Callable[[Any, str], Any]] = {
    "time-limit": time_limit,
    "mem": memory,
    "cpus-per-task": _any_scheduler(positive_int),
    "filesystems": _any_scheduler(pbs_resource),
}


def resource_rule(key: str, scheduler: str) -> Callable[[Any], Any] | None:
    """The rule of a resource key for one scheduler, or None when the key has none."""
    rule = RESOURCE_RULES.get(key)
    if rule is None:
        return None
    return lambda value: rule(value, scheduler)
