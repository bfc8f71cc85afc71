"""Where hpclaunch keeps its files, and the cluster profiles users configure.

Paths follow the XDG base-directory spec so that a login node's home stays tidy;
``HPCLAUNCH_HOME`` moves everything (state and config) under one folder, which is
what tests and throw-away demos want.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.validate import units

SCHEDULERS = ("local", "slurm", "pbs")
PBS_DIALECTS = ("pbspro", "torque")


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
    port: int = 22
    user: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
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
        for key, value in kwargs.get("env", {}).items():
            units.check(key, units.env_name, f"{source}: {prefix}.env")
            kwargs["env"][key] = units.check(value, units.env_value,
                                             f"{source}: {prefix}.env.{key}")
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
    return {**rules, "gpus-per-node": units.positive_int, "port": units.port}


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
