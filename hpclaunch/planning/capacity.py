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

from typing import TYPE_CHECKING, Any

from hpclaunch.errors import UserError
from hpclaunch.planning import kv
from hpclaunch.planning.kvplan import kv_numbers, layout_for
from hpclaunch.planning.kvspec import rules_for
from hpclaunch.planning.mamba import max_num_seqs_problem
from hpclaunch.planning.modelinfo import ModelInfo
from hpclaunch.planning.report import CapacityReport
from hpclaunch.planning.settings import ServeSettings, settings_from_flags
from hpclaunch.planning.weights import uses_marlin
from hpclaunch.planning.weights import weights_per_gpu as per_gpu_weights

if TYPE_CHECKING:
    from hpclaunch.config import ClusterProfile
    from hpclaunch.planning.plan import Plan

__all__ = ["capacity", "profile_gpu", "report_for_plan", "resolve_gpu"]


# vLLM raises its scheduler defaults on big GPUs (>= 70 GiB, not A100): usage context
# "OPENAI_API_SERVER" gets 8192 batched tokens and 1024 sequences instead of 2048 and 256.
_BIG_GPU_BYTES = 70 * kv.GiB


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
    version: str = "0.33.0",
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
    version
        The vLLM version whose arithmetic to follow (:func:`hpclaunch.planning.kvspec.rules_for`).
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
    weights_per_gpu = per_gpu_weights(info, tp, pp, gpu=gpu.name if gpu else None,
                                      version=version)
    if info.weight_note:
        assumptions.append(f"weights by tensor kind: {info.weight_note}; split over "
                           f"TP {tp} x PP {pp}")
        if info.padded_experts:
            kernel = ("Marlin" if uses_marlin(gpu.name if gpu else None, version)
                      else "OAI Triton")
            assumptions.append(f"MXFP4 experts padded as vLLM {version}'s {kernel} MoE kernel "
                               f"needs on this GPU: {weights_per_gpu / kv.GiB:.2f} GiB per GPU")
    else:
        bits = (f"{info.quantization} ({info.bytes_per_param:.3f} B/param incl. scales)"
                if info.quantization
                else f"{info.torch_dtype} ({info.bytes_per_param:g} B/param)")
        assumptions.append(f"weights: {info.params_b:g} B parameters x {bits}, split over "
                           f"TP {tp} x PP {pp}")
    if s.quantization and s.quantization != (info.quantization or ""):
        assumptions.append(f"--quantization {s.quantization} is not modelled: weights are "
                           "counted as the checkpoint stores them")
    base.update(weights_bytes=weights, weights_per_gpu_bytes=weights_per_gpu)

    hopper = gpu is not None and gpu.name.startswith(("H100", "H200"))  # SM90
    layout, why, steps = layout_for(info, tp=tp, pp=pp, kv_cache_dtype=s.kv_cache_dtype,
                                    block_size=s.block_size, version=version,
                                    prefix_caching=s.enable_prefix_caching, hopper=hopper,
                                    mamba_dtypes=(s.mamba_cache_dtype, s.mamba_ssm_cache_dtype))
    if layout is None:
        notes.append(why)
    else:
        assumptions.extend(steps)
        base["block_size"] = layout.block_size
        base["kv_bytes_per_token"] = max(layout.stage_block_bytes(i)
                                         for i in range(pp)) // layout.block_size
    if info.vision:
        assumptions.append("vision encoder: costs weights and activation memory, not KV cache; "
                           "KV per token is the text model's (the guide's 'VL models need 4x "
                           "more KV cache' is wrong)")

    mnbt = s.max_num_batched_tokens or (8192 if big else 2048)
    kv_bytes: float | None = None
    if kv_cache_bytes is not None:
        kv_bytes = kv_cache_bytes
        base["kv_cache_source"] = "reported by vLLM"
        assumptions.append(f"KV cache memory per GPU: {kv_cache_bytes / kv.GiB:.2f} GiB as "
                           "vLLM reported it ('Available KV cache memory')")
        if tp * pp > 1:
            assumptions.append(_workers_note(version))
    elif gpu is not None:
        activation = kv.activation_bytes_guess(info, mnbt, tp)
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

    if s.max_model_len_auto:
        mml, base["max_model_len_source"] = info.max_position_embeddings, "auto; model limit"
    elif s.max_model_len:
        mml, base["max_model_len_source"] = s.max_model_len, "--max-model-len"
    else:
        mml = info.max_position_embeddings
        base["max_model_len_source"] = "model's limit: vLLM's default without --max-model-len"

    if layout is not None and kv_bytes is not None and mml:
        nums = kv_numbers(layout, kv_bytes=kv_bytes, max_model_len=mml,
                          max_num_batched_tokens=mnbt, pp=pp, version=version,
                          hybrid_manager_off=s.hybrid_kv_cache_manager_off)
        if s.max_model_len_auto and nums.max_model_len_that_fits < mml:
            mml = max(1, nums.max_model_len_that_fits)
            base["max_model_len_source"] = "auto: the longest that fits the KV cache"
            nums = kv_numbers(layout, kv_bytes=kv_bytes, max_model_len=mml,
                              max_num_batched_tokens=mnbt, pp=pp, version=version,
                              hybrid_manager_off=s.hybrid_kv_cache_manager_off)
        assumptions.extend(nums.assumptions)
        if "linear" in layout.kinds:
            notes.append(max_num_seqs_problem(version, max_num_seqs=max_num_seqs,
                                              num_blocks=nums.num_blocks,
                                              enforce_eager=s.enforce_eager))
        base.update(kv_tokens=nums.kv_tokens, max_concurrency=nums.max_concurrency,
                    fits=nums.fits, max_model_len_that_fits=nums.max_model_len_that_fits,
                    kv_needed_bytes=nums.needed_bytes)
        assumptions.append("capacity counts every request at the full max-model-len; shorter "
                           "requests fit more")
        if dp > 1:
            assumptions.append("vLLM applies --max-num-seqs to each engine (each DP rank has "
                               "its own scheduler); the guide's capacity x DP counts the whole "
                               "server, so the per-engine value gives the same total")
    base["max_model_len"] = mml
    if s.kv_offloading_size:
        assumptions.append(f"--kv-offloading-size {s.kv_offloading_size:g} GiB of KV in CPU "
                           "memory is not counted: the GPU cache alone is what vLLM reports")
    return CapacityReport(**base, assumptions=assumptions, notes=[n for n in notes if n])


def _workers_note(version: str) -> str:
    """With several workers vLLM sizes one pool by the worker with the least KV memory, and
    which worker's lines reach the log depends on the version."""
    if rules_for(version).report_per_worker:
        return ("several workers: each prints its own 'Available KV cache memory' and its own "
                "'GPU KV cache size'; the engine keeps the smallest, so give the smallest "
                "figure to get the pool (any worker's figure gives that worker's line)")
    return ("several workers: only the first worker's 'Available KV cache memory' is printed, "
            "but the pool is the smallest worker's: vLLM's token line can be lower than "
            "planned by the spread between workers (0.9-1.2 % in real TP logs)")


def report_for_plan(plan: Plan, *, gpu: str | None = None, kv_cache_gib: float | None = None,
                    info: ModelInfo | None = None) -> CapacityReport:
    """Capacity of a built plan. ``gpu`` (a name) overrides the profile's GPU."""
    from hpclaunch.planning.catalog import model_info
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
        default_gpu_memory_utilization=default_gmu, gpu_note=why, version=version,
    )
