"""KV-cache arithmetic, checked against numbers vLLM printed."""

from __future__ import annotations

import dataclasses

import pytest

from hpclaunch.errors import UserError
from hpclaunch.planning.catalog import model_info
from hpclaunch.planning.kv import (
    GPUS,
    GiB,
    activation_bytes_guess,
    estimate_kv_cache_bytes,
    gpu_named,
    kv_bytes_per_token,
    kv_tokens,
    max_concurrency,
)
from hpclaunch.planning.modelinfo import ModelInfo


def _info(name: str) -> ModelInfo:
    info = model_info(name)
    assert info is not None, name
    return info


# ----------------------------------------------------------------- the guide's data point


def test_qwen3_vl_2b_stores_114688_bytes_per_token() -> None:
    # 2 (K, V) x 28 layers x 8 KV heads x 128 head_dim x 2 bytes: the text model only.
    assert kv_bytes_per_token(_info("Qwen3-VL-2B")) == 114_688


def test_37_15_gib_of_kv_cache_gives_vllms_printed_8_49x_at_40960_tokens() -> None:
    # Guide 003's log: "Available KV cache memory: 37.15 GiB" and "Maximum concurrency for
    # 40,960 tokens per request: 8.49x" for Qwen3-VL-2B-Thinking. No "4x for vision" needed.
    per_token = kv_bytes_per_token(_info("Qwen/Qwen3-VL-2B-Thinking"))
    tokens = kv_tokens(37.15 * GiB, per_token)
    assert 347_800 <= tokens < 347_900  # vLLM printed 347,8xx tokens
    concurrency = max_concurrency(tokens, 40_960)
    assert concurrency == pytest.approx(8.49, rel=0.01)
    assert f"{concurrency:.2f}" == "8.49"


def test_a_vision_model_needs_no_more_kv_per_token_than_its_text_twin() -> None:
    # Guide 003 reads its "~4.4 GB per request at 40K" as "3-4x a text model". That figure is
    # just 40,960 x 114,688 B = 4.375 GiB (= 37.15 / 8.49): the text model's own arithmetic.
    vl = _info("Qwen3-VL-2B")
    text_twin = dataclasses.replace(vl, vision=False, model_id="text/twin")
    assert kv_bytes_per_token(vl) == kv_bytes_per_token(text_twin)
    per_request_gib = kv_bytes_per_token(vl) * 40_960 / GiB
    assert per_request_gib == pytest.approx(37.15 / 8.49, rel=0.01)


# ----------------------------------------------------------------- parallelism and dtypes


def test_tensor_parallel_splits_kv_heads_across_ranks() -> None:
    info = _info("meta-llama/Llama-3.1-70B-Instruct")  # 8 KV heads
    one = kv_bytes_per_token(info)
    assert kv_bytes_per_token(info, tp=2) == one // 2
    assert kv_bytes_per_token(info, tp=8) == one // 8


def test_more_ranks_than_kv_heads_replicates_one_head_per_rank() -> None:
    info = _info("Qwen/Qwen2.5-1.5B-Instruct")  # 2 KV heads
    assert kv_bytes_per_token(info, tp=4) == kv_bytes_per_token(info, tp=2)
    assert kv_bytes_per_token(info, tp=3) == kv_bytes_per_token(info, tp=2)  # ceil(2/3) = 1


def test_pipeline_parallel_splits_layers() -> None:
    info = _info("Qwen/Qwen3-8B")  # 36 layers
    assert kv_bytes_per_token(info, pp=2) == kv_bytes_per_token(info) // 2
    assert kv_bytes_per_token(info, pp=5) == kv_bytes_per_token(info) * 8 // 36  # ceil(36/5)=8


def test_fp8_kv_cache_halves_the_bytes_per_token() -> None:
    info = _info("Qwen/Qwen3-8B")
    assert kv_bytes_per_token(info, kv_cache_dtype="fp8") * 2 == kv_bytes_per_token(info)
    assert kv_bytes_per_token(info, kv_cache_dtype="fp8_e5m2") * 2 == kv_bytes_per_token(info)


def test_unmodelled_kv_dtypes_are_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="nvfp4"):
        kv_bytes_per_token(_info("Qwen/Qwen3-8B"), kv_cache_dtype="nvfp4")


def test_sliding_window_models_refuse_the_simple_arithmetic() -> None:
    hybrid = dataclasses.replace(_info("Qwen/Qwen3-8B"), sliding_window_or_hybrid=True)
    with pytest.raises(ValueError, match="sliding-window or hybrid"):
        kv_bytes_per_token(hybrid)


# ----------------------------------------------------------------- blocks and concurrency


def test_tokens_are_whole_blocks_rounded_down() -> None:
    per_token = 1000
    assert kv_tokens(16 * per_token * 10, per_token) == 160
    assert kv_tokens(16 * per_token * 10 - 1, per_token) == 144
    assert kv_tokens(16 * per_token * 10, per_token, block_size=32) == 160
    assert kv_tokens(-5, per_token) == 0


def test_a_partial_block_per_request_costs_a_whole_block() -> None:
    assert max_concurrency(1600, 160) == 10
    assert max_concurrency(1600, 161) == pytest.approx(100 / 11)


# ----------------------------------------------------------------- GPUs


def test_the_gpu_catalog_has_the_common_cards_with_plausible_sizes() -> None:
    for name, marketed_gb in [("H100-80GB", 80), ("H100-94GB", 94), ("H200", 141),
                              ("A100-40GB", 40), ("A100-80GB", 80), ("L40S", 48), ("A10G", 24),
                              ("RTX4090", 24), ("RTX5090", 32), ("RTX3090", 24),
                              ("V100-32GB", 32)]:
        gpu = GPUS[name]
        assert gpu.name == name
        # CUDA reports a bit less than the marketing size (whose "GB" is often GiB), never more.
        assert 0.9 * marketed_gb < gpu.memory_gib < marketed_gb, name


def test_gpu_names_forgive_case_punctuation_and_unique_parts() -> None:
    assert gpu_named("h100_80gb").name == "H100-80GB"
    assert gpu_named("rtx 4090").name == "RTX4090"
    assert gpu_named("h200").name == "H200"
    assert gpu_named("5090").name == "RTX5090"


def test_an_ambiguous_or_unknown_gpu_says_which_names_exist() -> None:
    with pytest.raises(UserError, match="A100-40GB.*A100-80GB"):
        gpu_named("a100")
    with pytest.raises(UserError) as err:
        gpu_named("H10O-80GB")
    assert "H100-80GB" in str(err.value)


# ----------------------------------------------------------------- memory left for the cache


def test_the_estimate_reproduces_vllms_own_memory_breakdown() -> None:
    # vLLM's profiling log for an 8B model on one H100 at 0.90: "total_gpu_memory (79.19GiB)
    # x gpu_memory_utilization (0.90) = 71.27GiB; model weights take 14.99GiB; non_torch_memory
    # takes 0.12GiB; PyTorch activation peak memory takes 1.19GiB; the rest of the memory
    # reserved for KV Cache is 54.97GiB."
    gpu = dataclasses.replace(GPUS["H100-80GB"], memory_bytes=int(79.19 * GiB))
    kv = estimate_kv_cache_bytes(gpu, 0.90, int(14.99 * GiB), activation_bytes=int(1.19 * GiB),
                                 non_torch_bytes=int(0.12 * GiB), cuda_graph_bytes=0)
    assert kv / GiB == pytest.approx(54.97, abs=0.01)


def test_default_estimate_for_llama_8b_is_within_a_few_percent_of_that_log() -> None:
    info = _info("meta-llama/Llama-3.1-8B-Instruct")
    activation = activation_bytes_guess(info, max_num_batched_tokens=8192)
    assert activation / GiB == pytest.approx(1.19, abs=0.5)
    kv = estimate_kv_cache_bytes(GPUS["H100-80GB"], 0.90, info.weight_bytes, activation)
    assert kv / GiB == pytest.approx(54.97, rel=0.03)


def test_more_utilisation_means_more_kv_and_weights_come_out_of_it() -> None:
    gpu = GPUS["L40S"]
    low = estimate_kv_cache_bytes(gpu, 0.80, 4 * GiB)
    high = estimate_kv_cache_bytes(gpu, 0.95, 4 * GiB)
    assert high - low == pytest.approx(0.15 * gpu.memory_bytes, abs=2)
    assert estimate_kv_cache_bytes(gpu, 0.95, 6 * GiB) == high - 2 * GiB


def test_weights_larger_than_the_budget_leave_zero_not_negative() -> None:
    assert estimate_kv_cache_bytes(GPUS["A10G"], 0.9, 140 * GiB) == 0


def test_utilisation_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError):
        estimate_kv_cache_bytes(GPUS["H200"], 1.5, GiB)


def test_vision_models_reserve_more_activation_memory() -> None:
    vl = _info("Qwen3-VL-2B")
    text = dataclasses.replace(vl, vision=False)
    assert activation_bytes_guess(vl) > activation_bytes_guess(text) + GiB
    assert activation_bytes_guess(text, 16384) > activation_bytes_guess(text, 8192)
