"""Model + preset + overrides + cluster -> one concrete, immutable Plan.

Everything that decides what a job will run is computed here, once, so that
preflight checks, the rendered script, ``--dry-run`` and the registry all see the
same numbers.
"""

from __future__ import annotations

import difflib
import json
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.planning.presets import LAYOUT_KEYS, Preset, resolve_model_values

# --set keys that size the job rather than configure vLLM.
RESOURCE_KEYS = ("time-limit", "cpus-per-task", "mem", "partition", "account", "qos", "queue",
                 "gpus-per-node", "port", "filesystems")
# hpclaunch owns these flags: the port is chosen on the node, the key travels in
# the environment, the name is the endpoint's.
RESERVED_FLAGS = {"port": "the job picks the port on the node (use --set port=N to request one)",
                  "api-key": "the API key is set by hpclaunch through VLLM_API_KEY, never on a "
                             "command line",
                  "host": "set bind_host in the cluster profile"}
DEFAULT_PORT = 8000
RAW_STRING_KEYS = {"time-limit", "mem", "partition", "account", "qos", "queue", "filesystems"}


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one submit will run, fully resolved."""

    name: str
    model: str
    model_id: str
    served_model_name: str
    preset: str
    cluster: ClusterProfile
    dp: int = 1
    tp: int = 1
    pp: int = 1
    nodes: int = 1
    gpus_per_node_available: int | None = None
    vllm_command: tuple[str, ...] = ("vllm",)
    vllm_flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    port: int = DEFAULT_PORT
    simulate: bool = False
    results_dir: str = ""

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def gpus_per_node(self) -> int:
        return -(-self.gpus // self.nodes)

    @property
    def serve_argv(self) -> list[str]:
        """``vllm serve MODEL ...`` without ``--port`` (picked on the node)."""
        return [*self.vllm_command, "serve", self.model_id, *self.vllm_flags]

    @property
    def command_line(self) -> str:
        return shlex.join([*self.serve_argv, "--port", str(self.port)])

    def flag_value(self, flag: str) -> str | None:
        """The last value given for ``--flag`` in the rendered flags (None if absent)."""
        value = None
        flags = list(self.vllm_flags)
        for i, item in enumerate(flags):
            if item == f"--{flag}" and i + 1 < len(flags) and not flags[i + 1].startswith("--"):
                value = flags[i + 1]
            elif item == f"--{flag}":
                value = "true"
            elif item.startswith(f"--{flag}="):
                value = item.split("=", 1)[1]
        return value


def parse_assignments(items: list[str], what: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are read as YAML scalars (8192 -> int)."""
    import yaml

    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{what} takes KEY=VALUE, got {item!r}")
        name = key.strip().lstrip("-").replace("_", "-")
        if name in RAW_STRING_KEYS:
            # YAML 1.1 reads 1:00:00 as 3600 (base 60); a time limit stays as written.
            result[name] = value.strip()
            continue
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        result[name] = parsed
    return result


def _flag_to_args(flag: str, value: Any) -> list[str]:
    if value is None:
        return []
    if value is True:
        return [f"--{flag}"]
    if value is False:
        return [f"--no-{flag}"]
    if isinstance(value, (dict, list)):
        return [f"--{flag}", json.dumps(value, sort_keys=True, separators=(",", ":"))]
    return [f"--{flag}", str(value)]


def render_flags(layout: dict[str, int], flags: dict[str, Any]) -> list[str]:
    """Layout flags (sizes above 1) then the others, sorted: deterministic argv."""
    rendered: list[str] = []
    for key, flag in (("dp", "data-parallel-size"), ("tp", "tensor-parallel-size"),
                      ("pp", "pipeline-parallel-size")):
        if layout.get(key, 1) > 1:
            rendered += [f"--{flag}", str(layout[key])]
    for flag in sorted(flags):
        rendered += _flag_to_args(flag, flags[flag])
    return rendered


def _known_vllm_flags(version: str) -> set[str]:
    from hpclaunch.vllm.flags.catalogue import known_flags

    return {f.lstrip("-") for f in known_flags(version)}


def _split_extra_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UserError(f"--vllm-args: cannot split {text!r} ({exc})") from exc


def _long_flag_name(arg: str) -> str | None:
    if not arg.startswith("--"):
        return None
    name = arg[2:].split("=", 1)[0].replace("_", "-")
    return name[3:] if name.startswith("no-") else name


def build(
    *,
    model: str,
    preset: Preset,
    cluster: ClusterProfile,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    vllm_args: str = "",
    env: dict[str, str] | None = None,
    simulate: bool | None = None,
    gpus_per_node: int | None = None,
    results_dir: str = "",
) -> Plan:
    """Resolve everything a job needs; raises :class:`UserError` on bad input."""
    from hpclaunch.planning.models import resolve_model_id
    from hpclaunch.registry import check_name

    model_id = resolve_model_id(model)
    endpoint = check_name(_default_name(model_id) if name is None else name)
    layout = dict(preset.layout)
    flags = dict(preset.vllm)
    resources = {k.replace("_", "-"): v for k, v in preset.resources.items()}
    known = _known_vllm_flags(cluster.vllm_version)
    port = DEFAULT_PORT
    for key, value in (overrides or {}).items():
        if key in LAYOUT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--set {key}= takes a positive whole number, not {value!r}")
            layout[LAYOUT_KEYS[key]] = value
        elif key == "port":
            if not isinstance(value, int) or not 1024 <= value <= 65535:
                raise UserError(f"--set port= takes a port number 1024-65535, not {value!r}")
            port = value
        elif key in RESOURCE_KEYS:
            resources[key] = value
        elif key in RESERVED_FLAGS:
            raise UserError(f"--set {key}: {RESERVED_FLAGS[key]}")
        elif key in known:
            flags[key] = value
        else:
            choices = sorted(set(LAYOUT_KEYS) | set(RESOURCE_KEYS) | known)
            near = difflib.get_close_matches(key, choices, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UserError(
                f"--set {key}: not a layout key (dp, tp, pp), a resource key "
                f"({', '.join(RESOURCE_KEYS)}) or a vLLM {cluster.vllm_version} flag{hint}"
            )
    extra = _split_extra_args(vllm_args) if vllm_args else []
    for arg in extra:
        flag = _long_flag_name(arg)
        if flag in RESERVED_FLAGS:
            raise UserError(f"--vllm-args {arg}: {RESERVED_FLAGS[flag]}")
        if flag in LAYOUT_KEYS:
            raise UserError(f"--vllm-args {arg}: set the layout with --set dp=N / tp=N / pp=N")
        if flag:
            flags.pop(flag, None)  # the explicit argument wins over the preset's value
    # Preset values written ``auto`` (reasoning parser, draft model) come from the model.
    flags = resolve_model_values(flags, model_id, preset.name)
    rendered: list[str] = ["--served-model-name", endpoint, "--host", cluster.bind_host]
    rendered += render_flags(layout, flags)
    rendered += extra

    simulate = cluster.simulate if simulate is None else simulate
    command = tuple(cluster.vllm_command)
    if simulate:
        python = sys.executable if cluster.host is None else cluster.python
        command = (python, "-m", "hpclaunch.standin")
    merged_env = {**cluster.env, **(env or {})}
    for key in merged_env:
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise UserError(f"--env {key!r}: not a valid environment variable name")
    if "VLLM_API_KEY" in merged_env:
        raise UserError("--env VLLM_API_KEY: hpclaunch sets each endpoint's key itself")
    return Plan(
        name=endpoint,
        model=model,
        model_id=model_id,
        served_model_name=endpoint,
        preset=preset.name,
        cluster=cluster,
        dp=layout["dp"],
        tp=layout["tp"],
        pp=layout["pp"],
        gpus_per_node_available=gpus_per_node or cluster.gpus_per_node,
        vllm_command=command,
        vllm_flags=tuple(rendered),
        env=merged_env,
        resources=resources,
        port=port,
        simulate=simulate,
        results_dir=results_dir,
    )


def _default_name(model_id: str) -> str:
    """``Qwen/Qwen3-VL-2B-Instruct`` -> ``qwen3-vl-2b-instruct``."""
    base = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("-._")
    return (cleaned or "endpoint")[:63]
