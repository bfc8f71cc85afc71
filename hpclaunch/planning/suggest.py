"""The guides' decision tree as code: model facts in, a preset and its reasons out.

Guide 003's tree, made explicit and checked against the planner::

    one GPU (workstation)  -> the RTX 5090 / RTX 4090 / Mistral-AWQ profiles, else single-gpu
    < 7 B parameters       -> data parallelism: reasoning-dp4, vl-dp4, longctx-dp2 (> 100k
                              context), awq-dp4-memory (AWQ checkpoint), else dp4-throughput
                              (tp4-lowlatency / tp2dp2-balanced for other goals)
    7-20 B                 -> tp2dp2-throughput (tp2-balanced for latency or balance)
    20-80 B                -> tp4-throughput (tp4-lowlatency-large for latency)

Reasoning models outside the small class keep their layout and get ``--set
reasoning-parser``. DP presets follow the node's GPU count (``--set dp=``) instead of the
guides' four. With a GPU type the choice is checked: weights that do not fit move up a size
class, and a ``--max-num-seqs`` far above the KV capacity is lowered to the guide's rule.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.planning.modelinfo import ModelInfo

__all__ = ["GOALS", "Suggestion", "suggest"]

GOALS = ("throughput", "balanced", "latency")
SMALL_B, MEDIUM_B, LARGE_B = 7.0, 20.0, 80.0
LONG_CONTEXT = 100_000
GUIDE_GPUS_PER_NODE = 4


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """A preset for a model, the ``--set`` overrides it needs, and why."""

    model: str
    model_id: str
    preset: str
    sets: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        argv = ["hpclaunch", "submit", self.model, "--preset", self.preset]
        for key, value in self.sets.items():
            argv += ["--set", f"{key}={value}"]
        return shlex.join(argv)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "model_id": self.model_id, "preset": self.preset,
                "sets": dict(self.sets), "reasons": list(self.reasons),
                "alternatives": list(self.alternatives), "command": self.command}


def _size_class(params_b: float) -> str:
    if params_b < SMALL_B:
        return "small"
    if params_b < MEDIUM_B:
        return "medium"
    if params_b < LARGE_B:
        return "large"
    return "huge"


def _workstation(info: ModelInfo, gpu: str | None, context: int | None, goal: str,
                 reasons: list[str]) -> str:
    awq = (info.quantization or "").startswith("awq")
    squashed = (gpu or "").upper().replace(" ", "").replace("-", "")
    if squashed.startswith("RTX5090"):
        if awq and (context or 0) > 64_000:
            reasons.append("RTX 5090 with an AWQ checkpoint and more than 64k context: guide "
                           "000's extended profile (AWQ frees memory for a 100k context)")
            return "rtx5090-extended-awq"
        if (context or 0) > 32_768:
            reasons.append("RTX 5090, 32-64k context: guide 000's balanced profile")
            return "rtx5090-balanced"
        if goal == "throughput":
            reasons.append("RTX 5090, many users, up to 32k context: guide 000's high-"
                           "concurrency profile (16 sequences)")
            return "rtx5090-high-concurrency"
        reasons.append("RTX 5090 up to 32k context: guide 000's fastest profile (9 sequences)")
        return "rtx5090-fast"
    if squashed.startswith("RTX4090"):
        if info.params_b < 3:
            reasons.append("RTX 4090 with a model under 3 B: guide 002's small-model "
                           "throughput settings")
            return "rtx4090-small"
        reasons.append("RTX 4090 with a 3-14 B model: guide 002's recommended settings")
        return "rtx4090-balanced"
    if info.family == "mistral" and awq:
        reasons.append("a Mistral-7B AWQ build on one GPU: guide 004's 32k profile")
        return "mistral7b-awq-32k"
    reasons.append("one GPU: the generic single-GPU preset")
    return "single-gpu"


def _node(info: ModelInfo, size: str, context: int | None, goal: str,
          reasons: list[str], sets: dict[str, Any]) -> str:
    awq = (info.quantization or "").startswith("awq")
    if size == "small":
        reasons.append(f"{info.params_b:g} B parameters (< {SMALL_B:g} B): one GPU holds the "
                       "whole model, so data parallelism (a full copy per GPU) beats tensor "
                       "parallelism, which only adds communication")
        if info.reasoning:
            reasons.append(f"a reasoning model: reasoning-dp4 adds --reasoning-parser "
                           f"{info.reasoning_parser or '(set one)'} and a 40k context for "
                           "long thinking")
            return "reasoning-dp4"
        if info.vision:
            reasons.append("vision-language: vl-dp4 (larger prefill chunks for image tokens). "
                           "KV per token is the text model's - the guide's '4x more KV' is "
                           "wrong - so size --max-num-seqs with hpclaunch plan")
            return "vl-dp4"
        if (context or 0) > LONG_CONTEXT:
            reasons.append(f"context above {LONG_CONTEXT:,} tokens: longctx-dp2 (small prefill "
                           "chunks, few sequences, chunked prefill)")
            return "longctx-dp2"
        if awq:
            reasons.append("an AWQ checkpoint: awq-dp4-memory (4-bit weights, big batch)")
            return "awq-dp4-memory"
        if goal == "latency":
            reasons.append("goal latency: tp4-lowlatency (the guide's low-latency choice; "
                           "per-request speed, less total throughput)")
            return "tp4-lowlatency"
        if goal == "balanced":
            reasons.append("goal balanced: tp2dp2-balanced")
            return "tp2dp2-balanced"
        return "dp4-throughput"
    if size == "medium":
        reasons.append(f"{info.params_b:g} B parameters ({SMALL_B:g}-{MEDIUM_B:g} B): TP=2 "
                       "splits the weights so each GPU keeps room for KV cache")
        preset = "tp2dp2-throughput" if goal == "throughput" else "tp2-balanced"
        reasons.append(f"goal {goal}: {preset}")
    else:
        reasons.append(f"{info.params_b:g} B parameters ({MEDIUM_B:g}-{LARGE_B:g} B): TP=4 is "
                       "needed to hold the weights (~35 GB per GPU for 70 B in 16 bit)")
        preset = "tp4-lowlatency-large" if goal == "latency" else "tp4-throughput"
        if size == "huge":
            reasons.append(f"more than {LARGE_B:g} B is beyond the guides' tree: 16-bit weights "
                           "outgrow a node of four 80 GB GPUs; use an AWQ/FP8 build")
    if info.reasoning:
        if info.reasoning_parser:
            sets["reasoning-parser"] = info.reasoning_parser
            reasons.append(f"a reasoning model: --set reasoning-parser={info.reasoning_parser} "
                           "(reasoning-dp4 is for models under 7 B)")
        else:
            reasons.append("a reasoning model with no known parser: add --set "
                           "reasoning-parser=NAME")
    if info.vision:
        reasons.append("vision-language: the vision encoder adds weights, not KV cache")
    return preset


def _fit_node(preset_name: str, gpus: int, sets: dict[str, Any], reasons: list[str]) -> None:
    """Scale data parallelism to the node instead of the guides' four GPUs."""
    from hpclaunch.planning.presets import load_preset

    preset = load_preset(preset_name)
    group = preset.layout["tp"] * preset.layout["pp"]
    nodes = preset.layout.get("nodes", 1)
    if preset.gpus == gpus * nodes or gpus < 1:
        return
    if nodes > 1:
        if preset.gpus // nodes > gpus:
            reasons.append(f"{preset_name} needs {preset.gpus // nodes} GPUs on each of {nodes} "
                           f"nodes and a node has {gpus}: use nodes with more GPUs")
        return
    if preset.layout["dp"] > 1 and gpus >= group:
        dp = gpus // group
        if dp != preset.layout["dp"]:
            sets["dp"] = dp
            reasons.append(f"the node has {gpus} GPUs: --set dp={dp} (the preset's "
                           f"{preset.layout['dp']} assumes the guides' {GUIDE_GPUS_PER_NODE})")
    elif preset.gpus > gpus and preset.layout["dp"] == 1 and preset.layout["tp"] % gpus == 0:
        # Tensor parallel stays inside a node; the pipeline crosses nodes.
        span = preset.layout["tp"] // gpus
        sets.update(tp=gpus, pp=preset.layout["pp"] * span, nodes=span)
        reasons.append(f"{preset_name} needs {preset.gpus} GPUs and a node has {gpus}: span "
                       f"{span} nodes with tp={gpus} inside each and pp={sets['pp']} across "
                       f"them (--set tp={gpus} --set pp={sets['pp']} --set nodes={span})")
    elif preset.gpus > gpus:
        reasons.append(f"{preset_name} needs {preset.gpus} GPUs and the node has {gpus}: "
                       "it will not fit; use a node with more GPUs or a quantized build")
    elif preset.layout["dp"] == 1 and gpus >= 2 * group:
        reasons.append(f"the node has {gpus} GPUs: --set dp={gpus // group} would run "
                       f"{gpus // group} copies for more throughput")


def _check_with_planner(info: ModelInfo, preset_name: str, sets: dict[str, Any], gpu_name: str,
                        version: str, reasons: list[str]) -> str | None:
    """Weights fit? Else the next size class. Sets max-num-seqs to the guide's rule when the
    preset's is far above capacity. Returns a replacement preset, or None."""
    from hpclaunch.planning import kv
    from hpclaunch.planning.capacity import capacity
    from hpclaunch.planning.plan import render_flags
    from hpclaunch.planning.preflight import FLASHINFER_MIN_SEQS, MAX_NUM_SEQS_FACTOR
    from hpclaunch.planning.presets import load_preset, resolve_model_values
    from hpclaunch.planning.settings import settings_from_flags
    from hpclaunch.vllm.flags.catalogue import serve_defaults

    gpu = kv.gpu_named(gpu_name)
    preset = load_preset(preset_name)
    layout = dict(preset.layout)
    flags = dict(preset.vllm)
    for key, value in sets.items():
        if key in layout or key == "nodes":
            layout[key] = value
        else:
            flags[key] = value
    with contextlib.suppress(UserError):  # an unresolved "auto" does not change capacity
        flags = resolve_model_values(flags, info.model_id, preset_name)
    settings = settings_from_flags(render_flags(layout, flags), version)
    default_gmu = float(serve_defaults(version).get("gpu_memory_utilization") or 0.9)
    report = capacity(info, model_id=info.model_id, preset=preset_name, dp=layout["dp"],
                      tp=layout["tp"], pp=layout["pp"], settings=settings, gpu=gpu,
                      default_gpu_memory_utilization=default_gmu)
    usable = gpu.memory_bytes * (report.gpu_memory_utilization or default_gmu)
    if report.weights_per_gpu_bytes is not None and report.weights_per_gpu_bytes > usable:
        bigger = {"dp4-throughput": "tp2dp2-throughput", "reasoning-dp4": "tp2dp2-throughput",
                  "vl-dp4": "tp2dp2-throughput", "awq-dp4-memory": "tp2dp2-throughput",
                  "longctx-dp2": "tp2dp2-throughput", "tp2dp2-balanced": "tp4-lowlatency",
                  "tp2dp2-throughput": "tp4-throughput", "tp2-balanced": "tp4-throughput",
                  # One node cannot hold it: span two (tensor parallel inside each node).
                  "tp4-throughput": "tp4pp2-2nodes", "tp4-lowlatency-large": "tp4pp2-2nodes",
                  "tp4-lowlatency": "tp4pp2-2nodes", "tp4pp2-2nodes": "tp8pp2-2nodes"}
        nxt = bigger.get(preset_name)
        reasons.append(f"on {gpu.name} the weights need {report.weights_per_gpu_bytes / kv.GiB:.1f}"
                       f" GiB per GPU with {preset.layout_text}, more than the "
                       f"{usable / kv.GiB:.1f} GiB vLLM may use"
                       + (f": moving up to {nxt}" if nxt else ""))
        return nxt
    if report.concurrency_line is None:
        return None
    rec = report.recommended_max_num_seqs
    if rec is None or rec < 1:  # vLLM's start-up check fails: its longest length, rounded
        fits = (report.max_model_len_that_fits or 0) // 1024 * 1024
        reasons.append(f"on {gpu.name} (estimated) one request of {report.max_model_len:,} "
                       "tokens does not fit the KV cache"
                       + (f": --set max-model-len={fits}" if fits else
                          ": add tensor parallelism or use a larger GPU"))
        if fits:
            sets["max-model-len"] = fits
        return None
    reasons.append(f"on {gpu.name} (estimated): {report.concurrency_line} per engine, so "
                   f"--max-num-seqs {rec} by the guide's rule (capacity x DP)")
    seqs = report.max_num_seqs
    floor = FLASHINFER_MIN_SEQS if gpu.name.upper().startswith("RTX50") else 1
    if seqs is not None and seqs > MAX_NUM_SEQS_FACTOR * rec and max(rec, floor) < seqs:
        sets["max-num-seqs"] = max(rec, floor)
        reasons.append(f"the preset's {seqs} sequences are far above that: --set "
                       f"max-num-seqs={max(rec, floor)}"
                       + (f" (not below {floor}: guide 000's FlashInfer minimum on this GPU)"
                          if rec < floor else ""))
    elif rec < floor <= (seqs or 0):
        reasons.append(f"keeping {seqs} sequences, not {rec}: guide 000's FlashInfer minimum on "
                       "this GPU; full-length requests beyond the capacity wait for KV memory")
    return None


def suggest(model: str, *, gpus_per_node: int | None = None, gpu: str | None = None,
            context: int | None = None, goal: str = "throughput",
            vllm_version: str = "0.33.0", info: ModelInfo | None = None) -> Suggestion:
    """Pick a preset for ``model`` the way guide 003's decision tree does, with reasons.

    Parameters
    ----------
    gpus_per_node
        GPUs a node (or workstation) has; the guides assume 4.
    gpu
        GPU model (``H100-80GB``, ``RTX5090``); picks workstation profiles and lets the
        planner check the choice.
    context
        The longest request (prompt + output) the server must take; becomes
        ``--max-model-len``.
    goal
        ``throughput`` (batch evals), ``balanced`` or ``latency`` (interactive).
    """
    from hpclaunch.planning.catalog import model_info, resolve_model_id

    if goal not in GOALS:
        raise UserError(f"--goal must be one of {', '.join(GOALS)}, not {goal!r}")
    model_id = resolve_model_id(model)
    info = info or model_info(model_id)
    if info is None:
        raise UserError(f"no facts about {model_id} offline (catalog, local directory or "
                        "Hugging Face cache), so its size is unknown: download its config.json "
                        "once, or pick by size - < 7 B dp4-throughput, 7-20 B "
                        "tp2dp2-throughput, 20-70 B tp4-throughput")
    reasons: list[str] = []
    sets: dict[str, Any] = {}
    gpus = gpus_per_node or GUIDE_GPUS_PER_NODE
    if gpus_per_node is None:
        reasons.append(f"GPUs per node unknown: assuming the guides' {GUIDE_GPUS_PER_NODE} "
                       "(pass --gpus-per-node or set gpus_per_node in the cluster profile)")
    if context is not None:
        if context < 1:
            raise UserError(f"--context must be a positive number of tokens, not {context}")
        if context > info.max_position_embeddings:
            reasons.append(f"{context:,} tokens is above {model_id}'s limit of "
                           f"{info.max_position_embeddings:,}: capped")
            context = info.max_position_embeddings
    size = _size_class(info.params_b)
    if gpus == 1:
        preset = _workstation(info, gpu, context, goal, reasons)
        if info.reasoning and info.reasoning_parser:
            sets["reasoning-parser"] = info.reasoning_parser
            reasons.append(f"a reasoning model: --set reasoning-parser={info.reasoning_parser}")
    else:
        preset = _node(info, size, context, goal, reasons, sets)
    from hpclaunch.planning.presets import load_preset

    preset_flags = load_preset(preset).vllm
    if context is not None and preset_flags.get("max-model-len") != context:
        sets["max-model-len"] = context
        reasons.append(f"--set max-model-len={context}: what you need, not the model's "
                       f"{info.max_position_embeddings:,} (a longer limit reserves KV for it)")
    elif context is None and "max-model-len" not in preset_flags \
            and info.max_position_embeddings > 65_536:
        reasons.append(f"no --context given: vLLM will reserve for {model_id}'s full "
                       f"{info.max_position_embeddings:,} tokens; pass --context N to size for "
                       "what you need")
    _fit_node(preset, gpus, sets, reasons)
    if gpu:
        # Up a size class while the weights do not fit, as far as two 8-GPU nodes.
        for _ in range(4):
            replacement = _check_with_planner(info, preset, sets, gpu, vllm_version, reasons)
            if not replacement or (replacement == "tp8pp2-2nodes" and gpus < 8):
                break
            preset = replacement
            sets.pop("dp", None)
            _fit_node(preset, gpus, sets, reasons)
    alternatives = [p for p in _alternatives(size, info) if p != preset]
    return Suggestion(model=model, model_id=model_id, preset=preset, sets=sets,
                      reasons=reasons, alternatives=alternatives)


def _alternatives(size: str, info: ModelInfo) -> list[str]:
    base = {"small": ["dp4-throughput", "tp2dp2-balanced", "tp4-lowlatency"],
            "medium": ["tp2dp2-throughput", "tp2-balanced"],
            "large": ["tp4-throughput", "tp4-lowlatency-large"],
            "huge": ["tp4-throughput"]}[size]
    if info.reasoning and size == "small":
        base = ["reasoning-dp4", *base]
    if info.vision and size == "small":
        base = ["vl-dp4", *base]
    return base[:4]
