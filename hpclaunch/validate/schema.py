"""Typed schemas of the files users write (clusters.yaml, presets), checked with msgspec.

Validate at the edge, once: a file is read, its structure and types are checked against a
``msgspec.Struct``, the values against :mod:`hpclaunch.validate.units`, and code past this point
trusts its types. Whatever a file holds (a list where a mapping belongs, ``four`` for a
count, bytes that are not UTF-8, a directory) ends in one line naming the file and the
field's path, ``clusters.yaml: clusters.a100.gpus-per-node: expected a positive integer,
got 'four'``, never in "internal error".

msgspec rather than pydantic: it imports in a few milliseconds, converts the dicts PyYAML
gives without a model layer, and says where a value failed (``$.setup[1]``). This module
is imported only where a file is read, so ``hpclaunch --help`` does not pay for it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from hpclaunch.errors import UserError
from hpclaunch.validate.units import Invalid, shown

T = TypeVar("T")
Rule = Callable[[Any], Any]


# --------------------------------------------------------------------------- reading

def read_yaml(path: Path) -> Any:
    """A YAML file's data, or a one-line :class:`UserError` for anything unreadable."""
    import yaml

    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a YAML file: remove or rename it") \
            from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the "
                        "file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: not valid YAML ({problem})") from exc


def _loader() -> Any:
    """PyYAML's safe loader without YAML 1.1's base-60 numbers: an unquoted ``1:00:00``
    stays the time limit the user wrote, not 3600."""
    import yaml

    class Loader(yaml.SafeLoader):
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            tag = super().resolve(kind, value, implicit)
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in value:
                return "tag:yaml.org,2002:str"
            return tag

    return Loader


# --------------------------------------------------------------------------- checking

def convert(data: Any, kind: type[T], *, source: str, prefix: str = "",
            rules: dict[str, Rule] | None = None) -> T:
    """``data`` as ``kind`` (a Struct), or a one-line error naming ``source`` and the path.

    ``rules`` maps a field's key to its value rule: a field that has one is described by
    the rule on a type error too (``expected a positive integer``, not ``expected int``).
    """
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise UserError(f"{source}: {describe(exc, data, kind, prefix, rules or {})}") from None


def given(spec: msgspec.Struct) -> list[tuple[str, str, Any]]:
    """``(attribute, key as written, value)`` of the fields a file set (not None)."""
    return [(f.name, f.encode_name, getattr(spec, f.name))
            for f in msgspec.structs.fields(spec) if getattr(spec, f.name) is not None]


_AT = re.compile(r"^(?P<message>.*?)(?: - at (?P<path>.*))?$")
_KEY_AT = re.compile(r"^`key` in `(?P<path>[^`]*)`$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def describe(exc: msgspec.ValidationError, data: Any, kind: type, prefix: str,
             rules: dict[str, Rule]) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.gpus-per-node``` in the user's words."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, where = match.group("message"), match.group("path") or "`$`"
    key_error = _KEY_AT.match(where)
    where = key_error.group("path") if key_error else where.strip("`")
    steps = [(name, index) for name, index in _STEP.findall(where[1:])]
    path = prefix
    value: Any = data
    owner: Any = kind  # the type at the current step, to describe what was expected
    for name, index in steps:
        if name:
            path = f"{path}.{name}" if path else name
            field = _field(owner, name)
            owner = field.type if field is not None else None
            value = value.get(name) if isinstance(value, dict) else None
        else:
            path += f"[{index}]"
            if index.isdigit() and isinstance(value, list) and int(index) < len(value):
                value = value[int(index)]
            owner = _item_type(owner)
    label = f"{path}: " if path else ""
    if key_error:
        return f"{label}keys must be strings (quote them)"
    unknown = re.match(r"Object contains unknown field `(.*)`", message)
    if unknown:
        allowed = [f.encode_name for f in msgspec.structs.fields(_struct(owner))] \
            if _struct(owner) else []
        near = difflib.get_close_matches(unknown.group(1), allowed, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"allowed: {', '.join(allowed)}"
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return f"{key}: unknown key ({hint})"
    name = steps[-1][0] if steps and steps[-1][0] else ""
    if name in rules:
        try:
            rules[name](value)
        except Invalid as invalid:
            return f"{label}{invalid}"
    expected = _expected(owner)
    fix = ""
    if expected.startswith("a list") and isinstance(value, str):
        fix = f"; write a list: {json.dumps([value], ensure_ascii=False)}"
    return f"{label}expected {expected}, got {shown(value)}{fix}"


def _struct(kind: Any) -> Any:
    for option in (kind, *get_args(kind)):
        if isinstance(option, type) and issubclass(option, msgspec.Struct):
            return option
    return None


def _field(owner: Any, encode_name: str) -> Any:
    struct = _struct(owner)
    if struct is None:
        return None
    return next((f for f in msgspec.structs.fields(struct) if f.encode_name == encode_name),
                None)


def _item_type(kind: Any) -> Any:
    for option in (kind, *get_args(kind)):
        if get_origin(option) is list:
            return get_args(option)[0]
        if get_origin(option) is dict:
            return get_args(option)[1]
    return None


_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          type(None): "nothing"}


def _expected(kind: Any) -> str:
    """A type in words: ``list[str] | None`` -> ``a list of strings``."""
    if kind is None or kind is Any:
        return "a valid value"
    origin = get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(kind))
    if origin is list:
        return f"a list of {_expected(get_args(kind)[0]).removeprefix('a ')}s" \
            if get_args(kind)[0] is str else "a list"
    if origin is dict:
        return "a mapping (key: value lines)"
    if origin is Union or type(kind).__name__ == "UnionType":
        words = [_expected(a) for a in get_args(kind) if a is not type(None)]
        return " or ".join(dict.fromkeys(words))
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return "a mapping (key: value lines)"
    return _WORDS.get(kind, getattr(kind, "__name__", str(kind)))


# --------------------------------------------------------------------------- clusters.yaml

Text = str | int  # account and project ids are often numbers; YAML then reads an int


class ClustersFile(msgspec.Struct, forbid_unknown_fields=True):
    """The top of clusters.yaml; each cluster's body is checked on its own (its name is
    part of every error path)."""

    clusters: dict[str, Any] | None = None
    default: str | None = None


class RouterSpec(msgspec.Struct, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """A fleet's router job (hpclaunch.fleet): a small CPU job that outlives the replicas."""

    partition: Text | None = None
    queue: Text | None = None
    account: Text | None = None
    qos: Text | None = None
    time_limit: str | int | None = None
    cpus: int | None = None
    mem: str | int | None = None
    python: str | None = None
    port: int | None = None
    health_check_interval: int | None = None


class ClusterSpec(msgspec.Struct, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """One cluster profile as written; ``None`` (or absent) keeps the profile's default.

    Fields mirror :class:`hpclaunch.config.ClusterProfile` (a test keeps them equal).
    """

    scheduler: Literal["local", "slurm", "pbs"] | None = None
    pbs_dialect: Literal["pbspro", "torque"] | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    transport: Literal["paramiko", "openssh"] | None = None
    control_persist: str | None = None
    results_dir: str | None = None
    partition: Text | None = None
    account: Text | None = None
    qos: Text | None = None
    queue: Text | None = None
    time_limit: str | int | None = None
    gpus_per_node: int | None = None
    gpu_type: str | None = None
    gpu_model: str | None = None
    cpus_per_task: int | None = None
    mem: str | int | None = None
    gpu_directive: Literal["gres", "gpus-per-node"] | None = None
    filesystems: str | None = None
    extra_directives: list[str] | None = None
    skip_directives: list[str] | None = None
    setup: list[str] | None = None
    env: dict[str, Any] | None = None
    vllm_command: list[str] | str | None = None
    python: str | None = None
    bind_host: str | None = None
    url_host: str | None = None
    simulate: bool | None = None
    vllm_version: str | None = None
    container: Any = None  # a mapping, checked as ContainerSpec under its own path
    hf_home: str | None = None
    offline: bool | None = None
    scheduler_env: dict[str, Any] | None = None
    router: RouterSpec | None = None


class ContainerSpec(msgspec.Struct, kw_only=True, rename="kebab", forbid_unknown_fields=True):
    """``container:`` in a profile, a preset or ``--set container=``; later ones override
    earlier ones key by key (a preset's image over a profile's runtime)."""

    runtime: Literal["apptainer", "singularity", "podman", "docker"] | None = None
    image: str | None = None
    binds: list[str] | None = None
    options: list[str] | None = None
    gpus: Literal["nvidia", "rocm", "none"] | None = None
    shm_size: str | int | None = None
    python: str | None = None


# --------------------------------------------------------------------------- presets

class RequiresSpec(msgspec.Struct, forbid_unknown_fields=True):
    """What a preset assumes about the model; preflight checks it."""

    reasoning: bool | None = None
    vision: bool | None = None
    quantization: str | None = None


class PresetSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A preset file. ``layout`` and ``vllm`` keys are checked by the preset loader
    (layout axes; vLLM flags against the cluster's vLLM version at plan time)."""

    description: str = ""
    when: str = ""
    layout: dict[str, Any] | None = None
    vllm: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    requires: RequiresSpec | None = None
    tags: list[str] | None = None
    container: Any = None
