"""Where hpclaunch keeps its files, and the cluster profiles users configure.

Paths follow the XDG base-directory spec so that a login node's home stays tidy;
``HPCLAUNCH_HOME`` moves everything (state and config) under one folder, which is
what tests and throw-away demos want.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError

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
    # SSH: "user@host" or "host" (an alias of ~/.ssh/config works); None runs commands on
    # this machine. Unset port/user/ssh_key/known_hosts come from ~/.ssh/config.
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

    @classmethod
    def from_mapping(cls, name: str, data: dict[str, Any], source: str) -> ClusterProfile:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {"name": name}
        for key, value in (data or {}).items():
            attr = str(key).replace("-", "_")
            if attr not in known or attr == "name":
                import difflib

                near = difflib.get_close_matches(attr, sorted(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise UserError(f"{source}: cluster {name!r} has unknown key {key!r}{hint}")
            kwargs[attr] = value
        limit = kwargs.get("time_limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            # YAML 1.1 read an unquoted 1:00:00 as 3600 seconds: turn it back.
            kwargs["time_limit"] = f"{limit // 3600}:{limit % 3600 // 60:02d}:{limit % 60:02d}"
        profile = cls(**kwargs)
        if profile.scheduler not in SCHEDULERS:
            raise UserError(
                f"{source}: cluster {name!r}: scheduler must be one of {', '.join(SCHEDULERS)}"
            )
        if profile.transport not in TRANSPORTS:
            raise UserError(
                f"{source}: cluster {name!r}: transport must be one of {', '.join(TRANSPORTS)}"
            )
        if profile.pbs_dialect not in PBS_DIALECTS:
            raise UserError(
                f"{source}: cluster {name!r}: pbs-dialect must be one of {', '.join(PBS_DIALECTS)}"
            )
        command: Any = profile.vllm_command  # YAML may give one string
        if isinstance(command, str):
            import shlex

            profile.vllm_command = shlex.split(command)
        if profile.host and "@" in profile.host and not profile.user:
            profile.user, profile.host = profile.host.split("@", 1)
        return profile


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
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with a 'clusters:' key")
    for name, body in (data.get("clusters") or {}).items():
        if not isinstance(body, dict):
            raise UserError(f"{path}: cluster {name!r} must be a mapping of settings")
        profiles[str(name)] = ClusterProfile.from_mapping(str(name), body, str(path))
    default = str(data.get("default", default))
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
