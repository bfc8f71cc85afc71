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

from hpclaunch.config import ClusterProfile, Container, container_changes, merge_container
from hpclaunch.errors import UserError
from hpclaunch.planning.multinode import JOB_OWNED_FLAGS, Launch, check_layout, worker_flags
from hpclaunch.planning.presets import LAYOUT_KEYS, Preset, resolve_model_values
from hpclaunch.validate import units

# --set keys that size the job rather than configure vLLM.
RESOURCE_KEYS = ("time-limit", "cpus-per-task", "mem", "partition", "account", "qos", "queue",
                 "gpus-per-node", "port", "filesystems")
# hpclaunch owns these flags: the port is chosen on the node, the key travels in
# the environment, the name is the endpoint's.
RESERVED_FLAGS = {"port": "the job picks the port on the node (use --set port=N to request one)",
                  "api-key": "the API key is set by hpclaunch through VLLM_API_KEY, never on a "
                             "command line",
                  "host": "set bind_host in the cluster profile",
                  "served-model-name": "the endpoint name is the served model name, so that "
                                       "clients can ask for it by name; use --name"}
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
    container: Container | None = None

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def gpus_per_node(self) -> int:
        return -(-self.gpus // self.nodes)

    @property
    def launch(self) -> Launch | None:
        """How the nodes start (None on one node); :mod:`hpclaunch.planning.multinode`."""
        return check_layout(self.dp, self.tp, self.pp, self.nodes,
                            self.flag_value("distributed-executor-backend"))

    @property
    def worker_argv(self) -> list[str]:
        """What the other nodes run: the head's argv minus API-server-only flags."""
        return worker_flags(self.serve_argv)

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


def _as_is(value: Any) -> Any:
    return value


def _resource_rule(key: str, scheduler: str) -> Any:
    """The rule of a resource key; ``gpus-per-node`` is a request here (``h100:4`` too),
    where clusters.yaml's is the size of a node."""
    if key == "gpus-per-node":
        return units.gpu_request
    return units.resource_rule(key, scheduler) or _as_is


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


def _check_flag_values(args: list[str]) -> None:
    """``--vllm-args`` values meet the same range rules as presets and ``--set``."""
    for i, arg in enumerate(args):
        flag = _long_flag_name(arg)
        rule = units.FLAG_RULES.get(flag or "")
        if rule is None or arg.startswith("--no-"):
            continue
        value = arg.split("=", 1)[1] if "=" in arg else (
            args[i + 1] if i + 1 < len(args) else "")
        units.check(value, rule, f"--vllm-args {arg.split('=', 1)[0]}")


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
    served_name: str | None = None,
) -> Plan:
    """Resolve everything a job needs; raises :class:`UserError` on bad input."""
    from hpclaunch.planning.catalog import resolve_model_id
    from hpclaunch.registry import check_name

    model_id = resolve_model_id(model)
    endpoint = check_name(_default_name(model_id) if name is None else name)
    layout = dict(preset.layout)
    for key in preset.vllm:
        if key in RESERVED_FLAGS:
            raise UserError(f"preset {preset.name}: vllm.{key}: {RESERVED_FLAGS[key]}")
    flags = dict(preset.vllm)
    resources = {k.replace("_", "-"): v for k, v in preset.resources.items()}
    known = _known_vllm_flags(cluster.vllm_version)
    port = DEFAULT_PORT
    overrides = dict(overrides or {})
    container = _container(preset, cluster, overrides)
    for key, value in resources.items():
        resources[key] = units.check(value, _resource_rule(key, cluster.scheduler),
                                     f"{preset.source}: resources.{key}")
    for key, value in overrides.items():
        if key in LAYOUT_KEYS:
            layout[LAYOUT_KEYS[key]] = units.check(value, units.positive_int, f"--set {key}")
        elif key == "port":
            if not isinstance(value, int) or not 1024 <= value <= 65535:
                raise UserError(f"--set port= takes a port number 1024-65535, not {value!r}")
            port = value
        elif key in RESOURCE_KEYS:
            resources[key] = units.check(value, _resource_rule(key, cluster.scheduler),
                                         f"--set {key}")
        elif key in RESERVED_FLAGS:
            raise UserError(f"--set {key}: {RESERVED_FLAGS[key]}")
        elif key in known:
            flags[key] = units.check(value, units.FLAG_RULES.get(key, _as_is), f"--set {key}")
        else:
            choices = sorted(set(LAYOUT_KEYS) | set(RESOURCE_KEYS) | known)
            near = difflib.get_close_matches(key, choices, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UserError(
                f"--set {key}: not a layout key (dp, tp, pp, nodes), a resource key "
                f"({', '.join(RESOURCE_KEYS)}) or a vLLM {cluster.vllm_version} flag{hint}"
            )
    extra = _split_extra_args(vllm_args) if vllm_args else []
    _check_flag_values(extra)
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
    served = endpoint if served_name is None else check_name(served_name)
    rendered: list[str] = ["--served-model-name", served, "--host", cluster.bind_host]
    rendered += render_flags(layout, flags)
    rendered += extra
    nodes = layout.get("nodes", 1)
    if nodes > 1:
        rendered = _multinode_flags(layout, flags, extra, rendered)

    simulate = cluster.simulate if simulate is None else simulate
    command = tuple(cluster.vllm_command)
    if simulate:
        python = sys.executable if cluster.host is None else cluster.python
        command = (container.python if container else python, "-m", "hpclaunch.standin")
    merged_env = {**_cache_env(cluster), **cluster.env, **(env or {})}
    for key in env or {}:
        units.check(key, units.env_name, "--env")
    if "VLLM_API_KEY" in merged_env:
        raise UserError("--env VLLM_API_KEY: hpclaunch sets each endpoint's key itself")
    return Plan(
        name=endpoint,
        model=model,
        model_id=model_id,
        served_model_name=served,
        preset=preset.name,
        cluster=cluster,
        dp=layout["dp"],
        tp=layout["tp"],
        pp=layout["pp"],
        nodes=nodes,
        gpus_per_node_available=cluster.gpus_per_node if gpus_per_node is None
        else units.check(gpus_per_node, units.positive_int, "--gpus-per-node"),
        vllm_command=command,
        vllm_flags=tuple(rendered),
        env=merged_env,
        resources=resources,
        port=port,
        simulate=simulate,
        results_dir=results_dir,
        container=container,
    )


def _container(preset: Preset, cluster: ClusterProfile,
               overrides: dict[str, Any]) -> Container | None:
    """The preset's ``container:`` keys, then the profile's, then ``--set container=``
    (removed from ``overrides``): the site knows its runtime and images best."""
    layers = [(preset.container, preset.container is not None),
              (cluster.container, cluster.container is not None)]
    if "container" in overrides:
        layers.append((container_changes(overrides.pop("container"), "--set container"), True))
    return merge_container(layers, "container")


def _cache_env(cluster: ClusterProfile) -> dict[str, str]:
    """The Hugging Face cache a job reads, and offline mode for nodes without internet
    (the weights were fetched on the login node by ``hpclaunch prefetch``)."""
    env = {"HF_HOME": cluster.hf_home} if cluster.hf_home else {}
    if cluster.offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env

def _multinode_flags(layout: dict[str, int], flags: dict[str, Any], extra: list[str],
                     rendered: list[str]) -> list[str]:
    """Refuse flags the per-node launch owns; name the executor for vLLM's own launch."""
    given = set(flags) | {f for arg in extra if (f := _long_flag_name(arg))}
    for flag in JOB_OWNED_FLAGS:
        if flag in given:
            raise UserError(f"--{flag}: the job sets it on each node of a multi-node layout; "
                            "remove it (see docs/multi-node.md)")
    backend = flags.get("distributed-executor-backend")
    for i, arg in enumerate(extra):
        if _long_flag_name(arg) == "distributed-executor-backend":
            backend = arg.split("=", 1)[1] if "=" in arg else next(iter(extra[i + 1:i + 2]),
                                                                     None)
    if backend not in (None, "mp", "ray"):
        raise UserError(f"--distributed-executor-backend {backend}: a multi-node layout runs "
                        "with mp (vLLM's own launch, the default) or ray")
    launch = check_layout(layout["dp"], layout["tp"], layout["pp"], layout["nodes"],
                          str(backend) if backend else None)
    if backend is None and launch is not None and launch.mode != "dp":
        rendered = [*rendered, "--distributed-executor-backend", "mp"]
    return rendered


def _default_name(model_id: str) -> str:
    """``Qwen/Qwen3-VL-2B-Instruct`` -> ``qwen3-vl-2b-instruct``."""
    base = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("-._")
    return (cleaned or "endpoint")[:63]
