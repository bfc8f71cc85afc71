"""Presets: named, reviewed vLLM layouts and flags, stored as YAML data.

A preset says *how* to serve (parallel layout, batch limits, memory fraction);
the cluster profile says *where*. User presets in ``<config_dir>/presets/``
override built-ins of the same name, so a site can tune a preset without forking.

Presets are data, so they cannot know the model. Two values depend on it, and a
preset writes ``auto`` for them; :func:`resolve_model_values` fills them in from
the model's facts when a plan is built, or says exactly what to pass instead:

``reasoning-parser: auto``
    vLLM's parser for the model's family (``qwen3``, ``deepseek_r1``, ...).
``speculative-config: {model: auto, ...}``
    a small draft model of the same family and tokenizer from the bundled catalog.

``requires:`` states what the preset assumes about the model (``reasoning: true``,
``vision: true``, ``quantization: awq``); preflight checks it. A preset never sets
the GPU count: the layout decides how many GPUs a job uses, the cluster profile how
many a node has.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.config import builtin_dir, config_dir
from hpclaunch.errors import UserError

LAYOUT_KEYS = {"dp": "dp", "tp": "tp", "pp": "pp", "nodes": "nodes",
               "data-parallel-size": "dp", "tensor-parallel-size": "tp",
               "pipeline-parallel-size": "pp"}
# Resource keys a preset may not set: the layout and the cluster profile decide them.
GPU_RESOURCE_KEYS = {"gpus-per-node", "gpus", "nodes", "gpu-type", "gres"}
AUTO = "auto"


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
    # Checked ``container:`` keys (image, shm-size, options): the profile's keys win.
    container: dict[str, Any] | None = None

    @property
    def layout_text(self) -> str:
        """``tp2 x dp2`` (inner to outer, size-1 axes left out), ``1 GPU`` for none."""
        parts = [f"{axis}{self.layout[axis]}" for axis in ("tp", "pp", "dp")
                 if self.layout.get(axis, 1) > 1]
        text = " x ".join(parts) or "1 GPU"
        nodes = self.layout.get("nodes", 1)
        return f"{text} on {nodes} nodes" if nodes > 1 else text

    @property
    def gpus(self) -> int:
        return self.layout["dp"] * self.layout["tp"] * self.layout["pp"]


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
    """Read one preset file: structure and types by its schema, values by their rules."""
    from hpclaunch.validate import schema, units

    source = str(path)
    data = schema.read_yaml(path)
    spec = schema.convert(data, schema.PresetSpec, source=source)
    preset = Preset(name=name, source=source, description=spec.description, when=spec.when,
                    tags=list(spec.tags or []), resources=dict(spec.resources or {}))
    for key in preset.resources:
        if str(key).replace("_", "-") in GPU_RESOURCE_KEYS:
            raise UserError(
                f"{path}: resources.{key}: a preset does not set the GPU count; the layout "
                "(dp x tp x pp) decides how many GPUs a job uses and the cluster profile how "
                "many a node has - remove it"
            )
    if spec.requires is not None:
        preset.requires = {key: value.lower() if isinstance(value, str) else value
                           for _, key, value in schema.given(spec.requires)}
    if spec.container is not None:
        from hpclaunch.config import container_changes

        preset.container = container_changes(spec.container, f"{source}: container")
    layout = {"dp": 1, "tp": 1, "pp": 1}
    for key, value in (spec.layout or {}).items():
        if key not in LAYOUT_KEYS:
            raise UserError(f"{path}: layout.{key}: unknown layout key; use dp, tp, pp, nodes")
        layout[LAYOUT_KEYS[key]] = units.check(value, units.positive_int,
                                               f"{source}: layout.{key}")
    vllm: dict[str, Any] = {}
    for key, value in (spec.vllm or {}).items():
        flag = str(key).lstrip("-").replace("_", "-")
        if flag in LAYOUT_KEYS:
            layout[LAYOUT_KEYS[flag]] = units.check(value, units.positive_int,
                                                    f"{source}: vllm.{key}")
        else:
            rule = units.FLAG_RULES.get(flag)
            if rule is not None:
                units.check(value, rule, f"{source}: vllm.{key}")
            vllm[flag] = value
    preset.layout = layout
    preset.vllm = vllm
    return preset


# --------------------------------------------------------------------------- model values


def resolve_model_values(flags: dict[str, Any], model_id: str, preset: str) -> dict[str, Any]:
    """``flags`` with every ``auto`` model-dependent value replaced, from the model's facts.

    Raises
    ------
    UserError
        When the value cannot be chosen (model unknown offline, a model that does not
        reason, no draft of the same family); the message names the ``--set`` to use.
    """
    out = dict(flags)
    if str(out.get("reasoning-parser", "")).lower() == AUTO:
        out["reasoning-parser"] = _reasoning_parser(model_id, preset)
    spec = out.get("speculative-config")
    if isinstance(spec, dict) and str(spec.get("model", "")).lower() == AUTO:
        out["speculative-config"] = {**spec, "model": _draft_model(model_id, preset)}
    return out


def _reasoning_parser(model_id: str, preset: str) -> str:
    from hpclaunch.planning.catalog import model_info

    info = model_info(model_id)
    fix = "pass --set reasoning-parser=NAME (qwen3, deepseek_r1, ...)"
    if info is None:
        raise UserError(f"preset {preset} picks --reasoning-parser from the model, but "
                        f"hpclaunch has no config.json for {model_id} offline; {fix}")
    if not info.reasoning:
        raise UserError(f"preset {preset} is for reasoning models and {model_id} does not "
                        "think before answering: use a preset without a parser (e.g. "
                        f"dp4-throughput), or {fix} if it does")
    if not info.reasoning_parser:
        raise UserError(f"preset {preset}: no reasoning parser known for the "
                        f"{info.family} family of {model_id}; {fix}")
    return info.reasoning_parser


def draft_model_for(model_id: str) -> str | None:
    """A catalog model to draft for ``model_id`` in speculative decoding, or None.

    It must share the tokenizer, so: same family (DeepSeek-R1 distills also the same base,
    Qwen or Llama), text-only, unquantized, at most a quarter of the target's parameters;
    the smallest such model, an instruct/chat build when the target is one.
    """
    from hpclaunch.planning.catalog import catalog_names, model_info

    target = model_info(model_id)
    if target is None or target.vision:
        return None

    def base(mid: str) -> str:
        name = mid.lower()
        return "llama" if "llama" in name else "qwen" if "qwen" in name else ""

    instruct = "instruct" in target.model_id.lower()
    seen: dict[str, Any] = {}
    for name in catalog_names():
        info = model_info(name)
        if info is not None:
            seen[info.model_id] = info
    candidates = [
        info for info in seen.values()
        if info.family == target.family and base(info.model_id) == base(target.model_id)
        and not info.vision and not info.quantization
        and info.params_b <= target.params_b / 4 and info.model_id != target.model_id
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda i: (("instruct" in i.model_id.lower()) != instruct, i.params_b))
    return str(candidates[0].model_id)


def _draft_model(model_id: str, preset: str) -> str:
    draft = draft_model_for(model_id)
    if draft is None:
        raise UserError(
            f"preset {preset} needs a draft model for {model_id} and the catalog has no smaller "
            "model of its family and tokenizer; pass --set 'speculative-config={\"model\": "
            "\"ORG/DRAFT\", \"num_speculative_tokens\": 5}'"
        )
    return draft
