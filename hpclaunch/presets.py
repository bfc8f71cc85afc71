"""Presets: named, reviewed vLLM layouts and flags, stored as YAML data.

A preset says *how* to serve (parallel layout, batch limits, memory fraction);
the cluster profile says *where*. User presets in ``<config_dir>/presets/``
override built-ins of the same name, so a site can tune a preset without forking.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.config import config_dir
from hpclaunch.errors import UserError
from hpclaunch.resources import builtin_dir

LAYOUT_KEYS = {"dp": "dp", "tp": "tp", "pp": "pp",
               "data-parallel-size": "dp", "tensor-parallel-size": "tp",
               "pipeline-parallel-size": "pp"}
PRESET_KEYS = {"description", "when", "layout", "vllm", "resources", "requires", "tags"}


@dataclass(kw_only=True)
class Preset:
    """A preset as loaded; ``vllm`` maps long flag names (no dashes) to values."""

    name: str
    description: str = ""
    when: str = ""
    layout: dict[str, int] = field(default_factory=lambda: {"dp": 1, "tp": 1, "pp": 1})
    vllm: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    requires: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    source: str = ""


def preset_dirs() -> list[Path]:
    """User directory first: its presets win over built-ins of the same name."""
    return [config_dir() / "presets", builtin_dir("presets")]


def _preset_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in reversed(preset_dirs()):
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found[path.stem] = path
    return found


def preset_names() -> list[str]:
    return sorted(_preset_files())


def load_preset(name: str) -> Preset:
    """Load and validate one preset; unknown names list the nearest ones."""
    files = _preset_files()
    if name not in files:
        near = difflib.get_close_matches(name, list(files), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UserError(f"unknown preset {name!r}{hint} (hpclaunch presets lists all)")
    return parse_preset(name, files[name])


def parse_preset(name: str, path: Path) -> Preset:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{where}: preset is not valid YAML ({problem})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset must be a YAML mapping (description, layout, vllm)")
    unknown = set(data) - PRESET_KEYS
    if unknown:
        raise UserError(
            f"{path}: unknown preset key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(PRESET_KEYS))}"
        )
    preset = Preset(name=name, source=str(path))
    preset.description = str(data.get("description", ""))
    preset.when = str(data.get("when", ""))
    preset.tags = list(data.get("tags") or [])
    preset.resources = dict(data.get("resources") or {})
    preset.requires = dict(data.get("requires") or {})
    layout = {"dp": 1, "tp": 1, "pp": 1}
    for key, value in (data.get("layout") or {}).items():
        if key not in LAYOUT_KEYS:
            raise UserError(f"{path}: unknown layout key {key!r}; use dp, tp, pp")
        layout[LAYOUT_KEYS[key]] = _positive_int(value, f"{path}: layout.{key}")
    vllm: dict[str, Any] = {}
    for key, value in (data.get("vllm") or {}).items():
        flag = str(key).lstrip("-").replace("_", "-")
        if flag in LAYOUT_KEYS:
            layout[LAYOUT_KEYS[flag]] = _positive_int(value, f"{path}: vllm.{key}")
        else:
            vllm[flag] = value
    preset.layout = layout
    preset.vllm = vllm
    return preset


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what} must be a positive whole number, not {value!r}")
    return value
