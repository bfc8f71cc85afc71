"""Checks that can fail before a job waits hours in a queue.

Each rule returns :class:`Problem` objects whose message names the fix. Errors stop
``submit``; warnings are printed and the job goes ahead; notes say what could not be
checked (no GPU type, a model with no offline facts) instead of guessing.

Rules that depend on the real hardware (GPU count, memory, the GPU generation, a shared
GPU) are skipped for ``--simulate`` runs; the rest (flags, parser, context length, TP vs
attention heads, quantization) run always, because the stand-in would fail on them too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpclaunch.planning.kv import GPU
    from hpclaunch.planning.modelinfo import ModelInfo
    from hpclaunch.planning.plan import Plan
    from hpclaunch.planning.report import CapacityReport
    from hpclaunch.planning.settings import ServeSettings

ERROR, WARNING, NOTE = "error", "warning", "note"

# Quantization methods that read pre-quantized weights: they cannot convert a 16-bit
# checkpoint on load (fp8 can, so it is not listed).
_PREQUANTIZED = {"awq": "awq", "awq_marlin": "awq", "auto_awq": "awq",
                 "gptq": "gptq", "gptq_marlin": "gptq", "auto_gptq": "gptq"}
# "far above capacity": the guide's own example calls 3x over capacity bad.
MAX_NUM_SEQS_FACTOR = 2.0
GMU_SHARED_LIMIT = 0.95
FLASHINFER_MIN_SEQS = 9


@dataclass(frozen=True)
class Problem:
    level: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


@dataclass
class Context:
    """Everything the rules look at, computed once per check."""

    plan: Plan
    info: ModelInfo | None
    settings: ServeSettings
    gpu: GPU | None
    gpu_note: str
    report: CapacityReport
    requires: dict[str, object]

    @property
    def hardware(self) -> bool:
        """Real hardware runs this plan (not the stand-in)."""
        return not self.plan.simulate

    @property
    def name(self) -> str:
        return self.plan.model_id


Rule = Callable[[Context], list[Problem]]


# --------------------------------------------------------------------------- rules


def check_flags(ctx: Context) -> list[Problem]:
    """Unknown flags (with "did you mean"), removed ones (with the replacement), bad values,
    and unknown reasoning parser names, as the cluster's vLLM version would see them."""
    from hpclaunch.vllm.flags.check import check_args

    out = []
    for p in check_args(list(ctx.plan.vllm_flags), ctx.plan.cluster.vllm_version):
        rule = "reasoning-parser" if str(p.flag).startswith("--reasoning") else "vllm-flag"
        message = str(p)
        if rule == "reasoning-parser" and ctx.info is not None and ctx.info.reasoning_parser \
                and ctx.info.reasoning_parser not in message:
            message += f"; {ctx.name} uses {ctx.info.reasoning_parser}"
        out.append(Problem(ERROR, rule, message))
    return out


def check_gpu_request(ctx: Context) -> list[Problem]:
    """An explicit GPU request (``--set gpus-per-node=N``) must match DP x TP x PP."""
    plan = ctx.plan
    requested = plan.resources.get("gpus-per-node")
    if requested is None:
        return []
    fix = ("drop gpus-per-node (hpclaunch requests what the layout needs) or change the "
           "layout with --set dp=/tp=/pp=")
    count = int(str(requested).rsplit(":", 1)[-1])  # units.gpu_request checked it in build()
    if count * plan.nodes != plan.gpus:
        return [Problem(ERROR, "gpu-request",
                        f"layout dp={plan.dp} x tp={plan.tp} x pp={plan.pp} needs {plan.gpus} "
                        f"GPU{'s' if plan.gpus != 1 else ''} but gpus-per-node={count} "
                        f"requests {count * plan.nodes}; {fix}")]
    return []


def check_gpu_count(ctx: Context) -> list[Problem]:
    plan = ctx.plan
    if not ctx.hardware:
        return []
    have = plan.gpus_per_node_available
    if have is None:
        return [Problem(ERROR, "gpu-count",
                        f"cluster {plan.cluster.name!r} does not say how many GPUs a node has; "
                        "set gpus_per_node in clusters.yaml or pass --gpus-per-node N "
                        "(or --simulate to run the stand-in)")]
    if plan.gpus_per_node > have:
        return [Problem(ERROR, "gpu-count",
                        f"layout dp={plan.dp} x tp={plan.tp} x pp={plan.pp} needs "
                        f"{plan.gpus_per_node} GPUs per node but {plan.cluster.name!r} has {have}; "
                        "pick a smaller preset or --set dp=/tp= to fit")]
    return []


def _tp_ok(tp: int, heads: int, kv_heads: int) -> bool:
    if heads % tp:
        return False
    return kv_heads % tp == 0 if kv_heads >= tp else tp % kv_heads == 0


def check_tp_heads(ctx: Context) -> list[Problem]:
    """vLLM splits attention heads evenly over TP ranks (KV heads too, or replicates them
    when there are fewer KV heads than ranks): anything else fails while loading."""
    info, tp = ctx.info, ctx.plan.tp
    if info is None or tp == 1:
        return []
    heads, kv_heads = info.num_attention_heads, info.num_kv_heads
    if _tp_ok(tp, heads, kv_heads):
        return []
    valid = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= heads and _tp_ok(n, heads, kv_heads)]
    what = (f"the {heads} attention heads" if heads % tp else
            f"the {kv_heads} KV heads (nor is it a multiple of them)")
    return [Problem(ERROR, "tp-heads",
                    f"tp={tp} does not divide {what} of {ctx.name}: use --set tp= with one of "
                    f"{', '.join(map(str, valid))}")]


def check_max_model_len(ctx: Context) -> list[Problem]:
    info, s = ctx.info, ctx.settings
    if info is None or not s.max_model_len or s.max_model_len <= info.max_position_embeddings:
        return []
    limit = info.max_position_embeddings
    if ctx.plan.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") == "1":
        return [Problem(WARNING, "max-model-len",
                        f"--max-model-len {s.max_model_len:,} is above {ctx.name}'s limit of "
                        f"{limit:,}; VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 lets vLLM start, but "
                        "positions past the limit give garbage unless the model is set up for "
                        f"them (rope scaling): keep --set max-model-len={limit} otherwise")]
    return [Problem(ERROR, "max-model-len",
                    f"--max-model-len {s.max_model_len:,} is above {ctx.name}'s limit of "
                    f"{limit:,} (max_position_embeddings) and vLLM refuses it at start: use "
                    f"--set max-model-len={limit} or a model with a longer context")]


def check_reasoning_parser(ctx: Context) -> list[Problem]:
    info, parser = ctx.info, ctx.settings.reasoning_parser
    if info is None or not parser:
        return []
    if not info.reasoning:
        return [Problem(ERROR, "reasoning-parser",
                        f"--reasoning-parser {parser} on {ctx.name}, which does not think "
                        "before answering: drop it with --set reasoning-parser=null, or serve "
                        "a thinking variant of the model")]
    from hpclaunch.vllm.flags.catalogue import parser_names

    registered = (parser_names(ctx.plan.cluster.vllm_version) or {}).get("reasoning")
    if registered and parser not in registered:
        return []  # check_flags reports the unknown name
    if info.reasoning_parser and parser != info.reasoning_parser:
        return [Problem(WARNING, "reasoning-parser",
                        f"--reasoning-parser {parser} differs from {info.reasoning_parser}, the "
                        f"parser of {ctx.name}'s {info.family} family: thinking may leak into "
                        f"answers; use --set reasoning-parser={info.reasoning_parser}")]
    return []


def check_quantization(ctx: Context) -> list[Problem]:
    info, method = ctx.info, ctx.settings.quantization
    if info is None or not method or method not in _PREQUANTIZED:
        return []
    wanted = _PREQUANTIZED[method]
    have = (info.quantization or "").lower()
    if have.startswith(wanted):
        return []
    stored = f"{have}-quantized" if have else f"{info.torch_dtype}, not quantized"
    return [Problem(ERROR, "quantization",
                    f"--quantization {method} needs an {wanted.upper()} checkpoint and "
                    f"{ctx.name} is {stored}: serve an {wanted.upper()} build of the model "
                    "(e.g. TheBloke/Mistral-7B-Instruct-v0.2-AWQ), or drop it with "
                    "--set quantization=null" + (f" / --set quantization={have}" if have else ""))]


def check_requires(ctx: Context) -> list[Problem]:
    """What the preset assumes about the model (its ``requires:``); flags that would fail
    are errors in their own rules, so this only warns about a poor fit."""
    info, req, preset = ctx.info, ctx.requires, ctx.plan.preset
    if info is None or not req:
        return []
    out = []
    if req.get("vision") and not info.vision:
        out.append(Problem(WARNING, "preset-requires",
                           f"preset {preset} is for vision-language models and {ctx.name} is "
                           "text-only: dp4-throughput (or hpclaunch suggest) fits it better"))
    if req.get("reasoning") and not info.reasoning and not ctx.settings.reasoning_parser:
        out.append(Problem(WARNING, "preset-requires",
                           f"preset {preset} is sized for reasoning models (long outputs, few "
                           f"sequences) and {ctx.name} does not reason: hpclaunch suggest "
                           f"{ctx.plan.model} picks a better preset"))
    quant = req.get("quantization")
    if quant and not (info.quantization or "").startswith(str(quant)) \
            and not ctx.settings.quantization:
        out.append(Problem(WARNING, "preset-requires",
                           f"preset {preset} assumes a {str(quant).upper()} checkpoint and "
                           f"{ctx.name} is not one: its memory sizing will not hold; use an "
                           f"{str(quant).upper()} build or another preset"))
    return out


def check_weights_fit(ctx: Context) -> list[Problem]:
    r = ctx.report
    if not ctx.hardware or ctx.gpu is None or r.weights_per_gpu_bytes is None:
        return []
    usable = ctx.gpu.memory_bytes * (r.gpu_memory_utilization or 0.9)
    if r.weights_per_gpu_bytes <= usable:
        return []
    gib = 1 << 30
    need = math.ceil(r.weights_per_gpu_bytes * ctx.plan.tp * ctx.plan.pp / (usable * 0.7))
    tp = 1 << max(0, need - 1).bit_length()
    return [Problem(ERROR, "weights-fit",
                    f"{ctx.name}'s weights need ~{r.weights_per_gpu_bytes / gib:.1f} GiB per GPU "
                    f"with tp={ctx.plan.tp} x pp={ctx.plan.pp}, more than the "
                    f"{usable / gib:.1f} GiB vLLM may use of one {ctx.gpu.name} "
                    f"(gpu-memory-utilization {r.gpu_memory_utilization:g}): use tp={tp} or more"
                    f"{' (e.g. tp4-throughput)' if tp <= 4 else ''}, an AWQ/FP8 checkpoint, or "
                    "a larger GPU")]


def check_kv_fit(ctx: Context) -> list[Problem]:
    r = ctx.report
    if not ctx.hardware or ctx.gpu is None or r.kv_cache_bytes is None \
            or r.kv_tokens is None or r.max_concurrency is None:
        return []
    if check_weights_fit(ctx) or ctx.settings.max_model_len_auto:
        return []  # already refused, or vLLM sizes the context to what fits
    gib = 1 << 30
    if r.kv_cache_bytes <= 0:
        return [Problem(ERROR, "kv-fit",
                        f"no memory left for the KV cache on one {ctx.gpu.name} after "
                        f"{ctx.name}'s weights and activations (estimated): use more tensor "
                        "parallelism (--set tp=), a quantized checkpoint, or raise "
                        "--set gpu-memory-utilization=")]
    if r.fits_one_request:
        return []
    mml = r.max_model_len or 0
    need = r.kv_needed_bytes or (r.kv_bytes_per_token or 0) * mml
    # The length vLLM's own check would accept (its binary search), rounded down to 1K when
    # that still leaves something, so the suggestion is a round number that also fits.
    longest = r.max_model_len_that_fits or 0
    longest = (longest // 1024) * 1024 or longest
    hint = f"use --set max-model-len={longest}, " if longest else ""
    return [Problem(ERROR, "kv-fit",
                    f"one request of {mml:,} tokens needs {need / gib:.2f} GiB of KV cache per "
                    f"GPU but only ~{r.kv_cache_bytes / gib:.2f} GiB is left on one {ctx.gpu.name} "
                    f"({r.kv_cache_source}); vLLM would stop at start: {hint}more tensor "
                    "parallelism, or a higher gpu-memory-utilization")]


def check_max_num_seqs(ctx: Context) -> list[Problem]:
    """vLLM applies --max-num-seqs to each engine (every DP rank schedules on its
    own), so the flag is compared with one engine's capacity; the guide's rule
    (capacity x DP) is the same total, quoted alongside."""
    r, s = ctx.report, ctx.settings
    refusal = next((n for n in r.notes if "will refuse to start" in n), None)
    if ctx.hardware and refusal:  # a hybrid: one Mamba block per decoding sequence
        return [Problem(WARNING, "max-num-seqs", f"{refusal} (from {r.kv_cache_source} KV "
                        "memory; re-plan with the logged --kv-cache-gib)")]
    if not ctx.hardware or s.max_num_seqs is None or r.per_engine_max_num_seqs is None \
            or r.max_concurrency is None or r.max_concurrency < 1:
        return []
    limit = max(r.per_engine_max_num_seqs, 1)
    if s.max_num_seqs <= MAX_NUM_SEQS_FACTOR * limit:
        return []
    total = (f"; the guide's rule gives {r.recommended_max_num_seqs} for the whole server "
             f"({r.dp} engines x {r.max_concurrency:.2f})") if r.dp > 1 else ""
    return [Problem(WARNING, "max-num-seqs",
                    f"max-num-seqs {s.max_num_seqs} is {s.max_num_seqs / limit:.0f}x what one "
                    f"engine's KV cache holds: ~{r.max_concurrency:.2f} requests of "
                    f"{r.max_model_len:,} tokens on {ctx.gpu.name if ctx.gpu else 'this GPU'} "
                    f"({r.kv_cache_source}){total}; requests beyond that wait for KV memory: "
                    f"use --set max-num-seqs={limit} (vLLM applies it per engine), or a "
                    "shorter --set max-model-len= if requests are shorter")]


def _blackwell_consumer(gpu: GPU | None) -> bool:
    return gpu is not None and gpu.name.upper().replace(" ", "").startswith("RTX50")


def check_flashinfer(ctx: Context) -> list[Problem]:
    """Guide 000: FlashInfer's warm-up on RTX 50xx failed below 9 sequences. A bug of one
    backend on one GPU generation, so a warning, and none with another backend."""
    if not ctx.hardware or not _blackwell_consumer(ctx.gpu):
        return []
    backend = (ctx.settings.attention_backend
               or ctx.plan.env.get("VLLM_ATTENTION_BACKEND") or "").upper()
    seqs = ctx.report.max_num_seqs
    if (backend and backend != "FLASHINFER") or seqs is None or seqs >= FLASHINFER_MIN_SEQS:
        return []
    how = "with FlashInfer" if backend else "if vLLM picks FlashInfer"
    assert ctx.gpu is not None
    return [Problem(WARNING, "flashinfer",
                    f"max-num-seqs {seqs} < {FLASHINFER_MIN_SEQS} {how} on an {ctx.gpu.name} "
                    "(Blackwell consumer GPU): some vLLM versions fail its warm-up with 'could "
                    "not broadcast input array from shape (9,)'; use --set max-num-seqs=9 or "
                    "--set attention-backend=FLASH_ATTN")]


def check_gpu_memory_utilization(ctx: Context) -> list[Problem]:
    gmu = ctx.settings.gpu_memory_utilization
    if not ctx.hardware or gmu is None or gmu <= GMU_SHARED_LIMIT \
            or ctx.plan.cluster.scheduler != "local":
        return []
    return [Problem(WARNING, "gpu-memory-utilization",
                    f"gpu-memory-utilization {gmu:g} on a shared GPU (local scheduler: the "
                    "display and other processes use it too) leaves them no room, and vLLM "
                    "fails at start if that much is not free: use --set "
                    f"gpu-memory-utilization={GMU_SHARED_LIMIT:g} or lower")]


def notes(ctx: Context) -> list[Problem]:
    out = []
    if ctx.info is None:
        out.append(Problem(NOTE, "model-facts",
                           f"no config.json for {ctx.name} offline (catalog, local directory "
                           "or Hugging Face cache): heads, context, parser, quantization and "
                           "memory checks skipped; download it once or pass a local path"))
    if ctx.hardware and ctx.gpu is None and ctx.info is not None:
        out.append(Problem(NOTE, "gpu-memory", f"memory checks skipped: {ctx.gpu_note}"))
    moe = ctx.info is not None and ctx.info.experts_per_token
    if ctx.hardware and moe and ctx.report.kv_cache_source == "estimated":
        out.append(Problem(NOTE, "kv-estimate", f"{ctx.name} is a mixture of experts: real "
                           "MoE logs had 4-6.5 GiB less KV memory than estimated (docs/"
                           "planner-accuracy.md); re-plan with the logged --kv-cache-gib"))
    if ctx.hardware and ctx.info is not None and ctx.report.kv_bytes_per_token is None:
        why = "; ".join(ctx.report.notes) or "its KV layout is not modelled"
        out.append(Problem(NOTE, "kv-estimate", f"KV capacity checks skipped for {ctx.name}: "
                           f"{why}; read vLLM's printed KV cache size"))
    return out


RULES: list[Rule] = [
    check_flags, check_gpu_request, check_gpu_count, check_tp_heads, check_max_model_len,
    check_reasoning_parser, check_quantization, check_requires, check_weights_fit, check_kv_fit,
    check_max_num_seqs, check_flashinfer, check_gpu_memory_utilization, notes,
]


def context(plan: Plan, *, gpu: str | None = None) -> Context:
    """Model facts, flag settings, GPU and capacity for ``plan``, computed once."""
    from hpclaunch.errors import UserError
    from hpclaunch.planning.capacity import profile_gpu, report_for_plan
    from hpclaunch.planning.catalog import model_info
    from hpclaunch.planning.presets import load_preset
    from hpclaunch.planning.settings import settings_from_flags

    info = model_info(plan.model_id)
    the_gpu, why = profile_gpu(plan.cluster, gpu)
    try:
        requires = dict(load_preset(plan.preset).requires)
    except UserError:
        requires = {}
    return Context(plan=plan, info=info,
                   settings=settings_from_flags(plan.vllm_flags, plan.cluster.vllm_version),
                   gpu=the_gpu, gpu_note=why,
                   report=report_for_plan(plan, gpu=gpu, info=info), requires=requires)


def check(plan: Plan, *, gpu: str | None = None) -> list[Problem]:
    """Every rule, in order; callers decide what errors mean.

    ``gpu`` names the GPU model (``H100-80GB``); by default the cluster profile's
    ``gpu_model`` (or an unambiguous ``gpu_type``) is used.
    """
    ctx = context(plan, gpu=gpu)
    problems: list[Problem] = []
    for rule in RULES:
        problems.extend(rule(ctx))
    return problems
