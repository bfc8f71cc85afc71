"""Where hpclaunch keeps its files, and the cluster profiles users configure.

Paths follow the XDG base-directory spec so that a login node's home stays tidy;
``HPCLAUNCH_HOME`` moves everything (state and config) under one folder, which is
what tests and throw-away demos want.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.validate import units

SCHEDULERS = ("local", "slurm", "pbs")
PBS_DIALECTS = ("pbspro", "torque")
TRANSPORTS = ("paramiko", "openssh")


def state_dir() -> Path:
    """Registry and local results live here (``$XDG_STATE_HOME/hpclaunch``)."""
    home = os.environ.get("HPCLAUNCH_HOME")
    if home:
        return Path(home).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hpclaunch"


def config_dir() -> Path:
    """User presets and ``clusters.yaml`` live here (``$XDG_CONFIG_HOME/hpclaunch``)."""
    home = os.environ.get("HPCLAUNCH_HOME")
    if home:
        return Path(home).expanduser() / "config"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hpclaunch"


def builtin_dir(kind: str) -> Path:
    """Directory of the built-in ``presets`` or ``job_templates``.

    Both live at the top of the repository (reviewers find them there) and are mapped
    into the package as ``hpclaunch.builtin_presets`` / ``hpclaunch.builtin_templates``
    when built, so a plain ``pip install .`` carries them inside the wheel.
    """
    import importlib.util

    package = {"presets": "builtin_presets", "job_templates": "builtin_templates"}[kind]
    try:
        spec = importlib.util.find_spec(f"hpclaunch.{package}")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    # A source checkout used without installing (PYTHONPATH=.).
    return Path(__file__).resolve().parent.parent / kind


@dataclass(kw_only=True)
class ClusterProfile:
    """One place jobs can run: a scheduler, how to reach it, and site quirks.

    Field names are snake_case here and kebab-case or snake_case in YAML.
    """

    name: str = "local"
    scheduler: str = "local"
    pbs_dialect: str = "pbspro"
    # SSH: "user@host" or "host"; None runs commands on this machine.
    host: str | None = None
    port: int | None = None
    user: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    # "paramiko" (built in, one connection per call) or "openssh" (the system ssh through a
    # master connection that `hpclaunch login` opens, for sites with MFA).
    transport: str = "paramiko"
    # How long an idle `hpclaunch login` master stays open (ssh's ControlPersist).
    control_persist: str = "8h"
    # Where jobs write logs, endpoint files and keys; must be visible to both the
    # compute node and the machine hpclaunch runs on (a shared filesystem).
    results_dir: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    queue: str | None = None
    time_limit: str = "04:00:00"
    gpus_per_node: int | None = None
    gpu_type: str | None = None
    # GPU model for memory checks and planning (H100-80GB, A100-40GB, RTX5090); gpu_type is
    # the scheduler's gres name (h100), which does not say the memory size.
    gpu_model: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    # Slurm sites accept one of "--gres=gpu:N" ("gres") or "--gpus-per-node=N".
    gpu_directive: str = "gres"
    filesystems: str | None = None
    extra_directives: list[str] = field(default_factory=list)
    skip_directives: list[str] = field(default_factory=list)
    # Shell lines run before vLLM starts (module load, conda activate). They are
    # the user's own shell code, so they are the one thing rendered verbatim.
    setup: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    vllm_command: list[str] = field(default_factory=lambda: ["vllm"])
    python: str = "python3"
    bind_host: str = "0.0.0.0"
    url_host: str | None = None
    simulate: bool = False
    vllm_version: str = "0.33.0"
    # Run vLLM inside a container (docs/containers.md): the checked ``container:`` keys,
    # merged over a preset's at plan time; None runs vLLM on the node itself.
    container: dict[str, Any] | None = None
    # A Hugging Face cache both the login node and the compute nodes see, and whether the
    # compute nodes lack internet (jobs then get HF_HUB_OFFLINE=1; docs/offline-nodes.md).
    hf_home: str | None = None
    offline: bool = False
    # Environment of the scheduler's own commands (sbatch, squeue, scancel, qsub, ...), e.g.
    # SLURM_CONF for one of several clusters reached from one login node. Jobs inherit it
    # through sbatch/qsub, so srun inside the job talks to the same cluster.
    scheduler_env: dict[str, str] = field(default_factory=dict)
    # A fleet's router job (partition, time-limit, cpus, mem, python, port,
    # health-check-interval), kebab-case keys as written; see hpclaunch.fleet.router.
    router: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, name: str, data: Any, source: str) -> ClusterProfile:
        """A profile from its clusters.yaml body: types by the schema, values by their rules.

        Keys may be kebab-case or snake_case; every error names ``clusters.<name>.<key>``.
        """
        from hpclaunch.validate import schema

        prefix = f"clusters.{name}"
        if isinstance(data, dict):
            data = {str(key).replace("_", "-"): value for key, value in data.items()}
        scheduler = str(data.get("scheduler") or "local") if isinstance(data, dict) else "local"
        rules = _value_rules(scheduler)
        spec = schema.convert(data, schema.ClusterSpec, source=source, prefix=prefix,
                              rules=rules)
        kwargs: dict[str, Any] = {"name": name}
        for attr, key, value in schema.given(spec):
            rule = rules.get(key)
            if rule is not None:
                value = units.check(value, rule, f"{source}: {prefix}.{key}")
            kwargs[attr] = value
        if "router" in kwargs:
            kwargs["router"] = {key: value for _, key, value in schema.given(kwargs["router"])}
        for field_name, key_name in (("env", "env"), ("scheduler_env", "scheduler-env")):
            for key, value in kwargs.get(field_name, {}).items():
                units.check(key, units.env_name, f"{source}: {prefix}.{key_name}")
                kwargs[field_name][key] = units.check(value, units.env_value,
                                                      f"{source}: {prefix}.{key_name}.{key}")
        for key in ("partition", "account", "qos", "queue"):
            if key in kwargs:
                kwargs[key] = str(kwargs[key])
        command = kwargs.get("vllm_command")
        if isinstance(command, str):  # one string in YAML: split as a shell would
            import shlex

            try:
                kwargs["vllm_command"] = shlex.split(command)
            except ValueError as exc:
                raise UserError(f"{source}: {prefix}.vllm-command: cannot split {command!r} "
                                f"({exc}); write a list: [vllm]") from None
        if "container" in kwargs:
            kwargs["container"] = container_changes(kwargs["container"],
                                                    f"{source}: {prefix}.container")
        profile = cls(**kwargs)
        if profile.host and "@" in profile.host and not profile.user:
            profile.user, profile.host = profile.host.split("@", 1)
        return profile


def _value_rules(scheduler: str) -> dict[str, Callable[[Any], Any]]:
    """clusters.yaml keys whose values have a rule in :mod:`hpclaunch.validate.units`."""
    rules: dict[str, Callable[[Any], Any]] = {
        key: rule for key in units.RESOURCE_RULES
        if (rule := units.resource_rule(key, scheduler)) is not None
    }
    return {**rules, "gpus-per-node": units.positive_int, "port": units.port,
            "hf-home": units.host_path}


RUNTIMES = ("apptainer", "singularity", "podman", "docker")


@dataclass(frozen=True, kw_only=True)
class Container:
    """Where vLLM runs inside a job: the runtime, its image, and what it sees of the node.

    ``binds`` are ``SRC:DST[:ro]``; ``shm_size`` empty means ``--ipc=host`` (Podman and
    Docker); ``python`` is the image's interpreter, used only when the job runs the
    stand-in (``--simulate``).
    """

    runtime: str
    image: str
    binds: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    gpus: str = "nvidia"
    shm_size: str = ""
    python: str = "python3"


_CONTAINER_RULES: dict[str, Callable[[Any], Any]] = {
    "image": units.container_image,
    "shm-size": lambda value: units.memory(value, "slurm"),
    "python": units.container_image,  # one word, like an image
}
_CONTAINER_LIST_RULES = {"binds": units.bind_mount, "options": units.runtime_option}
_OFF = (None, False, "", "none", "off")


def container_changes(data: Any, where: str) -> dict[str, Any] | None:
    """A ``container:`` mapping checked key by key, as attribute -> value; None for
    ``none``/``false`` (no container). Errors read ``<where>.<key>: expected ...``."""
    from hpclaunch.validate import schema

    if isinstance(data, str) and data.strip().lower() in _OFF or data in _OFF:
        return None
    if isinstance(data, dict):
        data = {str(key).replace("_", "-"): value for key, value in data.items()}
    source, _, prefix = where.rpartition(": ")
    spec = schema.convert(data, schema.ContainerSpec, source=source or where, prefix=prefix,
                          rules=_CONTAINER_RULES)
    changes: dict[str, Any] = {}
    for attr, key, value in schema.given(spec):
        if key in _CONTAINER_LIST_RULES:
            value = tuple(units.check(item, _CONTAINER_LIST_RULES[key], f"{where}.{key}")
                          for item in value)
        elif key in _CONTAINER_RULES:
            value = units.check(value, _CONTAINER_RULES[key], f"{where}.{key}")
        changes[attr] = value
    return changes


def merge_container(layers: list[tuple[dict[str, Any] | None, bool]],
                    where: str) -> Container | None:
    """The container a job uses: each layer's keys over the ones before (preset, then
    profile, then ``--set``). A layer ``(None, True)`` is an explicit ``none``: it clears
    what came before. The result needs a runtime and an image."""
    merged: dict[str, Any] | None = None
    for changes, given in layers:
        if not given:
            continue
        merged = None if changes is None else {**(merged or {}), **changes}
    if merged is None:
        return None
    missing = [key for key in ("runtime", "image") if key not in merged]
    if missing:
        raise UserError(f"{where}: needs {' and '.join(missing)} (e.g. runtime: podman, "
                        "image: docker.io/vllm/vllm-openai:latest)")
    return Container(**merged)


def _builtin_profiles() -> dict[str, ClusterProfile]:
    """Profiles that exist without any config: this machine, for real or simulated."""
    return {
        "local": ClusterProfile(name="local", scheduler="local", bind_host="127.0.0.1",
                                url_host="127.0.0.1", time_limit=""),
    }


def clusters_file() -> Path:
    return config_dir() / "clusters.yaml"


def load_clusters() -> tuple[dict[str, ClusterProfile], str]:
    """All profiles (built-in, then the user's file) and the default profile's name."""
    profiles = _builtin_profiles()
    default = "local"
    path = clusters_file()
    if not path.exists():
        return profiles, default
    from hpclaunch.validate import schema

    data = schema.read_yaml(path)
    top = schema.convert({} if data is None else data, schema.ClustersFile, source=str(path))
    for name, body in (top.clusters or {}).items():
        profiles[name] = ClusterProfile.from_mapping(name, body, str(path))
    default = top.default or default
    if default not in profiles:
        raise UserError(f"{path}: default cluster {default!r} is not defined")
    return profiles, default


def with_scheduler(profile: ClusterProfile, scheduler: str | None,
                   pbs_dialect: str | None) -> ClusterProfile:
    """The profile with the scheduler a submit (or a stored record) asks for."""
    changes: dict[str, Any] = {}
    if scheduler and scheduler != profile.scheduler:
        changes["scheduler"] = scheduler
    if pbs_dialect and pbs_dialect != profile.pbs_dialect:
        changes["pbs_dialect"] = pbs_dialect
    return replace(profile, **changes) if changes else profile


def get_cluster(name: str | None) -> ClusterProfile:
    """The named profile, or the default one; unknown names list the known ones."""
    profiles, default = load_clusters()
    key = name or default
    if key not in profiles:
        raise UserError(
            f"unknown cluster {key!r}; known: {', '.join(sorted(profiles))} "
            f"(define it in {clusters_file()})"
        )
    return profiles[key]


def save_cluster(name: str, settings: dict[str, Any], *, make_default: bool = False,
                 replace: bool = False) -> Path:
    """Add (or with ``replace``, overwrite) cluster ``name`` in clusters.yaml.

    The settings are validated as a profile first; the file is rewritten atomically
    and the previous one kept as ``clusters.yaml.bak`` (comments do not survive).
    """
    import re

    import yaml

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise UserError(f"cluster name {name!r}: use letters, digits, '.', '_' and '-'")
    path = clusters_file()
    ClusterProfile.from_mapping(name, settings, f"cluster {name}")
    data: dict[str, Any] = {}
    if path.exists():
        load_clusters()  # refuse to rewrite a file that does not parse
        data = yaml.safe_load(path.read_text()) or {}
    clusters = data.setdefault("clusters", {}) or {}
    data["clusters"] = clusters
    if name in clusters and not replace:
        raise UserError(f"cluster {name} is already in {path}; add --force to replace it")
    clusters[name] = settings
    if make_default or "default" not in data:
        data["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    if path.exists():
        os.replace(path, path.with_name(path.name + ".bak"))
    os.replace(tmp, path)
    return path
