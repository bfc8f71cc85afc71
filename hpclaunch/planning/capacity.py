"""KV-capacity planner: what a layout holds, computed from the model's own numbers.

The guides size servers by guessing ("~1.5 GB per request", "VL models need 4x more KV") and
then tell readers to trust vLLM's startup line instead::

    GPU KV cache size: 347,808 tokens, Maximum concurrency for 40,960 tokens per request: 8.49x

That line is arithmetic, not a measurement (see :mod:`hpclaunch.planning.kv`): given the KV memory
vLLM reports, the planner reproduces it to the printed precision; without it, the planner
estimates that memory the way vLLM's profiler finds it (GPU total x gpu-memory-utilization,
minus weights, activation peak, non-torch memory and CUDA graphs) and says so. From the
concurrency it gives the guide's ``--max-num-seqs`` rule (capacity x DP, rounded down) and
lists every assumption, so a reviewer can see where a number came from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hpclaunch.errors import UserError
from hpclaunch.planning import kv
from hpclaunch.planning.models import ModelInfo

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.planning.plan import Plan

__all__ = ["CapacityReport", "ServeSettings", "capacity", "profile_gpu", "report_for_plan",
           "resolve_gpu", "settings_from_flags"]

# vLLM raises its scheduler defaults on big GPUs (>= 70 GiB, not A100): usage context
# "OPENAI_API_SERVER" gets 8192 batched tokens and 1024 sequences instead of 2048 and 256.
_BIG_GPU_BYTES = 70 * kv.GiB


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """The ``vllm serve`` settings that change capacity, as the flags give them.

    ``None`` means "vLLM's default", which may depend on the GPU.
    """

    max_model_len: int | None = None
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_dtype: str = "auto"
    block_size: int = kv.DEFAULT_BLOCK_SIZE
    enforce_eager: bool = False
    quantization: str | None = None
    attention_backend: str | None = None
    reasoning_parser: str | None = None
    kv_offloading_size: float | None = None


def _to_int(value: Any) -> int | None:
    from hpclaunch.vllm.flags.values import human_readable_int

    if value in (None, "", "None"):
        return None
    try:
        return human_readable_int(str(value))
    except ValueError:
        return None


def _to_float(value: Any) -> float | None:
    if value in (None, "", "None"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def settings_from_flags(argv: list[str] | tuple[str, ...], version: str) -> ServeSettings:
    """Read the capacity-relevant settings from a ``vllm serve`` argument list.

    Uses the version's real parser (aliases such as ``-q``, ``--max_model_len``, prefixes);
    an argument list it rejects is read leniently instead, since preflight reports the bad
    flag itself and the planner should still say what it can.
    """
    from hpclaunch.vllm.flags.argparser import parse_serve_args

    try:
        args = parse_serve_args(list(argv), version)
    except UserError:
        args = _lenient_args(list(argv))
    mml = args.get("max_model_len")
    auto = str(mml).strip().lower() in ("auto", "-1")
    return ServeSettings(
        max_model_len=None if auto else _to_int(mml),
        max_model_len_auto=auto,
        max_num_seqs=_to_int(args.get("max_num_seqs")),
        max_num_batched_tokens=_to_int(args.get("max_num_batched_tokens")),
        gpu_memory_utilization=_to_float(args.get("gpu_memory_utilization")),
        kv_cache_dtype=str(args.get("kv_cache_dtype") or "auto"),
        block_size=_to_int(args.get("block_size")) or kv.DEFAULT_BLOCK_SIZE,
        enforce_eager=bool(args.get("enforce_eager")),
        quantization=(str(args["quantization"]).lower()
                      if args.get("quantization") not in (None, "", "None") else None),
        attention_backend=(str(args["attention_backend"])
                           if args.get("attention_backend") not in (None, "") else None),
        reasoning_parser=(str(args["reasoning_parser"])
                          if args.get("reasoning_parser") not in (None, "") else None),
        kv_offloading_size=_to_float(args.get("kv_offloading_size")),
    )


def _lenient_args(argv: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("--"):
            continue
        name, eq, value = token[2:].partition("=")
        dest = name.replace("-", "_")
        if eq:
            out[dest] = value
        elif i < len(argv) and not argv[i].startswith("-"):
            out[dest] = argv[i]
            i += 1
        else:
            out[dest] = True
    return out


def profile_gpu(cluster: ClusterProfile, gpu: str | None = None) -> tuple[kv.GPU | None, str]:
    """The GPU to plan for: ``gpu`` (``--gpu``), else the profile's ``gpu_model``, else its
    ``gpu_type`` when that names one GPU unambiguously; ``(None, why)`` otherwise."""
    if gpu:
        return resolve_gpu(gpu, strict=True)
    if cluster.gpu_model:
        try:
            return kv.gpu_named(cluster.gpu_model), ""
        except UserError as exc:
            raise UserError(f"cluster {cluster.name!r}: gpu_model: {exc}") from None
    return resolve_gpu(cluster.gpu_type, strict=False)


def resolve_gpu(name: str | None, *, strict: bool) -> tuple[kv.GPU | None, str]:
    """The GPU for ``name``, or ``(None, why)``.

    ``strict`` (a name the user typed with ``--gpu``) raises on an unknown name; a cluster
    profile's ``gpu_type`` is often a Slurm gres name (``a100``) that does not say the
    memory size, so it only yields a note: memory checks are skipped rather than guessed.
    """
    if not name:
        return None, ("no GPU model known: pass --gpu (e.g. H100-80GB) or set gpu_model in "
                      "clusters.yaml to estimate memory")
    try:
        return kv.gpu_named(name), ""
    except UserError as exc:
        if strict:
            raise
        return None, (f"gpu_type {name!r} of the cluster profile does not say the memory "
                      f"size ({exc}); pass --gpu or set gpu_model to one of: "
                      f"{', '.join(kv.GPUS)}")


@dataclass(frozen=True, kw_only=True)
class CapacityReport:
    """What one layout of one model holds. Memory numbers are per GPU; tokens per engine.

    An engine is one data-parallel replica (its ``tp x pp`` GPUs share one KV cache, each
    holding its share of the KV heads or layers), which is what vLLM prints one line for.
    """

    model_id: str
    preset: str
    dp: int
    tp: int
    pp: int
    nodes: int = 1
    gpus_per_node: int = 1
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    gpu_memory_utilization: float | None = None
    weights_bytes: int | None = None
    weights_per_gpu_bytes: int | None = None
    kv_bytes_per_token: int | None = None
    kv_cache_bytes: int | None = None
    kv_cache_source: str = ""  # "reported" (--kv-cache-gib), "estimated", "" (unknown)
    kv_tokens: int | None = None
    max_model_len: int | None = None
    max_model_len_source: str = ""
    max_concurrency: float | None = None
    max_num_seqs: int | None = None
    max_num_seqs_default: bool = False
    block_size: int = kv.DEFAULT_BLOCK_SIZE
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def capacity(self) -> float | None:
        """Full-length requests the whole server holds at once (all engines)."""
        return None if self.max_concurrency is None else self.max_concurrency * self.dp

    @property
    def recommended_max_num_seqs(self) -> int | None:
        """The guide's rule: capacity x DP, rounded down."""
        cap = self.capacity
        return None if cap is None else math.floor(cap + 1e-9)

    @property
    def per_engine_max_num_seqs(self) -> int | None:
        """vLLM applies ``--max-num-seqs`` per engine: the value that gives the guide's total."""
        return None if self.max_concurrency is None else math.floor(self.max_concurrency + 1e-9)

    @property
    def fits_one_request(self) -> bool | None:
        return None if self.max_concurrency is None else self.max_concurrency >= 1

    @property
    def kv_cache_size_line(self) -> str | None:
        """vLLM's own line, as it would print it."""
        if self.kv_tokens is None or self.max_concurrency is None or not self.max_model_len:
            return None
        return (f"GPU KV cache size: {self.kv_tokens:,} tokens, Maximum concurrency for "
                f"{self.max_model_len:,} tokens per request: {self.max_concurrency:.2f}x")

    @property
    def concurrency_line(self) -> str | None:
        if self.max_concurrency is None or not self.max_model_len:
            return None
        return (f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
                f"{self.max_concurrency:.2f}x")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gpus=self.gpus, capacity=self.capacity,
                    recommended_max_num_seqs=self.recommended_max_num_seqs,
                    per_engine_max_num_seqs=self.per_engine_max_num_seqs,
                    concurrency_line=self.concurrency_line)
        return data

    def lines(self) -> list[str]:
        """The human-readable report, one fact per line."""
        gib = kv.GiB
        out = [
            f"model:              {self.model_id}",
            f"preset:             {self.preset}",
            f"layout:             DP {self.dp} x TP {self.tp} x PP {self.pp} = {self.gpus} GPU"
            f"{'s' if self.gpus != 1 else ''} ({self.gpus_per_node} per node, "
            f"{self.nodes} node{'s' if self.nodes != 1 else ''})",
            "GPU:                " + (f"{self.gpu} ({self.gpu_memory_bytes / gib:.2f} GiB)"
                                       if self.gpu and self.gpu_memory_bytes else "unknown"),
        ]
        if self.weights_per_gpu_bytes is not None and self.weights_bytes is not None:
            out.append(f"weights per GPU:    {self.weights_per_gpu_bytes / gib:.2f} GiB "
                       f"(of {self.weights_bytes / gib:.2f} GiB)")
        if self.kv_bytes_per_token is not None:
            out.append(f"KV per token:       {self.kv_bytes_per_token:,} B per GPU")
        if self.kv_cache_bytes is not None:
            out.append(f"KV cache per GPU:   {self.kv_cache_bytes / gib:.2f} GiB "
                       f"({self.kv_cache_source})")
        if self.kv_tokens is not None:
            out.append(f"KV tokens/engine:   {self.kv_tokens:,}")
        if self.max_model_len:
            out.append(f"max-model-len:      {self.max_model_len:,} ({self.max_model_len_source})")
        if self.concurrency_line:
            out.append(f"predicted vLLM:     {self.concurrency_line}  (per engine)")
            out.append(f"server capacity:    {self.capacity:.2f} full-length requests "
                       f"({self.dp} engine{'s' if self.dp != 1 else ''})")
            out.append(f"--max-num-seqs:     {self.recommended_max_num_seqs} recommended "
                       f"(capacity x DP, rounded down); per engine: "
                       f"{self.per_engine_max_num_seqs}")
            if self.max_num_seqs is not None:
                origin = "vLLM default" if self.max_num_seqs_default else "configured"
                out.append(f"                    {self.max_num_seqs} {origin}")
        if self.assumptions:
            out.append("assumptions:")
            out += [f"  - {a}" for a in self.assumptions]
        if self.notes:
            out.append("notes:")
            out += [f"  - {n}" for n in self.notes]
        return out


def capacity(
    info: ModelInfo | None,
    *,
    model_id: str,
    preset: str = "",
    dp: int = 1,
    tp: int = 1,
    pp: int = 1,
    nodes: int = 1,
    settings: ServeSettings | None = None,
    gpu: kv.GPU | None = None,
    kv_cache_bytes: float | None = None,
    default_gpu_memory_utilization: float = 0.92,
    gpu_note: str = "",
) -> CapacityReport:
    """Capacity of ``dp x tp x pp`` serving ``info`` with ``settings``.

    Parameters
    ----------
    kv_cache_bytes
        KV memory per GPU as vLLM reported it ("Available KV cache memory: 37.15 GiB").
        When given, the prediction is exact; otherwise it is estimated from ``gpu``.
    default_gpu_memory_utilization
        vLLM's default for the cluster's version (0.92 in 0.33, 0.9 before).
    gpu_note
        Why no GPU is known, shown when memory cannot be estimated.
    """
    s = settings or ServeSettings()
    gpus_per_node = -(-(dp * tp * pp) // max(nodes, 1))
    assumptions: list[str] = []
    notes: list[str] = []
    base: dict[str, Any] = dict(model_id=model_id, preset=preset, dp=dp, tp=tp, pp=pp,
                                nodes=nodes, gpus_per_node=gpus_per_node,
                                block_size=s.block_size)
    gmu = s.gpu_memory_utilization or default_gpu_memory_utilization
    big = gpu is not None and gpu.memory_bytes >= _BIG_GPU_BYTES and not gpu.name.startswith(
        "A100")
    max_num_seqs = s.max_num_seqs if s.max_num_seqs is not None else (1024 if big else 256)
    base.update(gpu=gpu.name if gpu else None, gpu_memory_bytes=gpu.memory_bytes if gpu else None,
                gpu_memory_utilization=gmu, max_num_seqs=max_num_seqs,
                max_num_seqs_default=s.max_num_seqs is None)
    if info is None:
        notes.append(f"no facts about {model_id} offline (not in the catalog, a local "
                     "directory or the Hugging Face cache): KV and memory figures need its "
                     "config.json")
        if kv_cache_bytes is None and not gpu:
            notes.append(gpu_note)
        return CapacityReport(**base, assumptions=assumptions, notes=notes)

    weights = info.weight_bytes
    weights_per_gpu = weights // (tp * pp)
    bits = (f"{info.quantization} ({info.bytes_per_param:.3f} B/param incl. scales)"
            if info.quantization else f"{info.torch_dtype} ({info.bytes_per_param:g} B/param)")
    assumptions.append(f"weights: {info.params_b:g} B parameters x {bits}, split over "
                       f"TP {tp} x PP {pp}")
    if s.quantization and s.quantization != (info.quantization or ""):
        assumptions.append(f"--quantization {s.quantization} is not modelled: weights are "
                           "counted as the checkpoint stores them")
    base.update(weights_bytes=weights, weights_per_gpu_bytes=weights_per_gpu)

    bpt: int | None
    try:
        bpt = kv.kv_bytes_per_token(info, tp, s.kv_cache_dtype, pp)
    except ValueError as exc:
        bpt = None
        notes.append(str(exc))
    if bpt is not None:
        heads = math.ceil(info.num_kv_heads / tp)
        layers = math.ceil(info.num_layers / pp)
        dtype_bytes = kv.kv_dtype_bytes(info, s.kv_cache_dtype)
        assumptions.append(
            f"KV per token per GPU = 2 (K, V) x {layers} layers x {heads} KV heads "
            f"({info.num_kv_heads} / TP {tp}, at least 1) x head_dim {info.head_dim} x "
            f"{dtype_bytes} B (kv-cache-dtype {s.kv_cache_dtype}) = {bpt:,} B")
    if info.vision:
        assumptions.append("vision encoder: costs weights and activation memory, not KV cache; "
                           "KV per token is the text model's (the guide's 'VL models need 4x "
                           "more KV cache' is wrong)")
    base["kv_bytes_per_token"] = bpt

    kv_bytes: float | None = None
    if kv_cache_bytes is not None:
        kv_bytes = kv_cache_bytes
        base["kv_cache_source"] = "reported by vLLM"
        assumptions.append(f"KV cache memory per GPU: {kv_cache_bytes / kv.GiB:.2f} GiB as "
                           "vLLM reported it ('Available KV cache memory')")
    elif gpu is not None:
        mnbt = s.max_num_batched_tokens or (8192 if big else 2048)
        activation = kv.activation_bytes_guess(info, mnbt)
        non_torch = kv.DEFAULT_NON_TORCH_BYTES + (kv.GiB // 2 if tp * pp > 1 else 0)
        graphs = 0 if s.enforce_eager else kv.DEFAULT_CUDA_GRAPH_BYTES
        kv_bytes = kv.estimate_kv_cache_bytes(gpu, gmu, weights_per_gpu, activation,
                                              non_torch, graphs)
        base["kv_cache_source"] = "estimated"
        g = kv.GiB
        assumptions.append(
            f"KV cache memory per GPU estimated as vLLM's profiler finds it: {gpu.name} "
            f"{gpu.memory_bytes / g:.2f} GiB x gpu-memory-utilization {gmu:g} - weights "
            f"{weights_per_gpu / g:.2f} - activation peak {activation / g:.2f} (profile at "
            f"{mnbt} batched tokens) - non-torch {non_torch / g:.2f} - CUDA graphs "
            f"{graphs / g:.2f} GiB; typically within 1-3 GiB of vLLM's 'Available KV cache "
            "memory' (pass it with --kv-cache-gib for an exact figure)")
    else:
        notes.append(gpu_note)
    if kv_bytes is not None:
        base["kv_cache_bytes"] = int(kv_bytes)

    tokens = kv.kv_tokens(kv_bytes, bpt, s.block_size) if (kv_bytes is not None and bpt) \
        else None
    base["kv_tokens"] = tokens
    if tokens is not None:
        assumptions.append(f"tokens rounded down to whole {s.block_size}-token blocks, as "
                           "vLLM allocates them")

    if s.max_model_len_auto:
        if tokens is not None:
            mml = max(s.block_size, min(info.max_position_embeddings, tokens))
            base["max_model_len_source"] = "auto: the longest that fits the KV cache"
        else:
            mml, base["max_model_len_source"] = info.max_position_embeddings, "auto; model limit"
    elif s.max_model_len:
        mml, base["max_model_len_source"] = s.max_model_len, "--max-model-len"
    else:
        mml = info.max_position_embeddings
        base["max_model_len_source"] = "model's limit: vLLM's default without --max-model-len"
    base["max_model_len"] = mml

    if tokens is not None and mml:
        base["max_concurrency"] = kv.max_concurrency(tokens, mml, s.block_size)
        assumptions.append("capacity counts every request at the full max-model-len; shorter "
                           "requests fit more")
        if dp > 1:
            assumptions.append("vLLM applies --max-num-seqs to each engine (each DP rank has "
                               "its own scheduler); the guide's capacity x DP counts the whole "
                               "server, so the per-engine value gives the same total")
    if s.kv_offloading_size:
        assumptions.append(f"--kv-offloading-size {s.kv_offloading_size:g} GiB of KV in CPU "
                           "memory is not counted: the GPU cache alone is what vLLM reports")
    return CapacityReport(**base, assumptions=assumptions, notes=[n for n in notes if n])


def report_for_plan(plan: Plan, *, gpu: str | None = None, kv_cache_gib: float | None = None,
                    info: ModelInfo | None = None) -> CapacityReport:
    """Capacity of a built plan. ``gpu`` (a name) overrides the profile's GPU."""
    from hpclaunch.planning.models import model_info
    from hpclaunch.vllm.flags.catalogue import serve_defaults

    if kv_cache_gib is not None and kv_cache_gib <= 0:
        raise UserError(f"--kv-cache-gib must be positive, not {kv_cache_gib}")
    the_gpu, why = profile_gpu(plan.cluster, gpu)
    version = plan.cluster.vllm_version
    default_gmu = float(serve_defaults(version).get("gpu_memory_utilization") or 0.9)
    return capacity(
        info if info is not None else model_info(plan.model_id),
        model_id=plan.model_id, preset=plan.preset, dp=plan.dp, tp=plan.tp, pp=plan.pp,
        nodes=plan.nodes, settings=settings_from_flags(plan.vllm_flags, version), gpu=the_gpu,
        kv_cache_bytes=kv_cache_gib * kv.GiB if kv_cache_gib is not None else None,
        default_gpu_memory_utilization=default_gmu, gpu_note=why,
    )
