"""The planner against real vLLM logs: given the KV memory vLLM reported, it prints vLLM's
numbers (tokens, concurrency, the start-up check and its longest length) within 1 %.

Every case is in tests/data/planner/cases.json with its source; the model facts come from the
real config.json excerpts in tests/data/planner/configs/.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hpclaunch.planning import kv
from hpclaunch.planning.capacity import capacity
from hpclaunch.planning.kvplan import layout_for
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.modelinfo import ModelInfo
from hpclaunch.planning.report import CapacityReport
from hpclaunch.planning.settings import ServeSettings

DATA = Path(__file__).resolve().parents[2] / "data" / "planner"
GiB = kv.GiB


@cache
def config(name: str) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((DATA / "configs" / f"{name}.json").read_text())
    return cfg


def info(name: str) -> ModelInfo:
    cfg = config(name)
    return info_from_config(cfg, str(cfg["_model_id"]))


CASES: dict[str, dict[str, Any]] = {
    c["id"]: c for c in json.loads((DATA / "cases.json").read_text())["cases"]}


def replay(case_id: str, *, version: str | None = None) -> tuple[CapacityReport, dict[str, Any]]:
    case = CASES[case_id]
    expect = case["expect"]
    report = replay_with(case_id, expect.get("available_kv_gib", 0) * GiB, version=version)
    return report, expect


def replay_with(case_id: str, kv_cache_bytes: float, *,
                version: str | None = None) -> CapacityReport:
    case = CASES[case_id]
    settings = ServeSettings(max_model_len=case["max_model_len"],
                             max_num_batched_tokens=case.get("max_num_batched_tokens"),
                             block_size=case.get("block_size", kv.DEFAULT_BLOCK_SIZE),
                             kv_cache_dtype=case.get("kv_cache_dtype", "auto"),
                             enable_prefix_caching=case.get("enable_prefix_caching"),
                             mamba_ssm_cache_dtype=case.get("mamba_ssm_cache_dtype", "auto"))
    return capacity(info(case["config"]), model_id=case["config"], tp=case["tp"],
                    pp=case["pp"], settings=settings, kv_cache_bytes=kv_cache_bytes,
                    version=version or case["vllm_version"])


def within(got: float, want: float, rel: float = 0.01) -> bool:
    return abs(got - want) <= rel * abs(want)


def test_every_case_names_its_source_and_a_stored_config() -> None:
    for case in CASES.values():
        assert case["source"].get("url") or case["source"].get("commit"), case["id"]
        assert (DATA / "configs" / f"{case['config']}.json").is_file(), case["id"]
        assert case["log"], case["id"]


@pytest.mark.parametrize("case_id", ["dense-qwen3-14b", "dense-qwen3-0.6b",
                                     "mxfp4-hybrid-gpt-oss-120b-tp2", "swa-gemma-3-1b-v013",
                                     "swa-gemma-3-27b-vl-v011", "swa-medgemma-27b-fp8kv-v026",
                                     "hybrid-gdn-qwen3.6-35b-a3b",
                                     "hybrid-gdn-qwen3.6-35b-a3b-second-run",
                                     "hybrid-mamba2-nemotron-3-nano-4b",
                                     "hybrid-mamba2-nemotron-cascade-2-30b-a3b"])
def test_tokens_and_concurrency_match_the_printed_lines(case_id: str) -> None:
    report, expect = replay(case_id)
    assert report.kv_tokens is not None and report.max_concurrency is not None
    assert within(report.kv_tokens, expect["kv_tokens"])
    assert within(report.max_concurrency, expect["max_concurrency"])
    assert report.fits


def test_a_vision_language_model_is_sized_by_its_nested_text_config() -> None:
    # GLM-4.1V-9B-Thinking: the KV comes from text_config (40 layers, 2 KV heads of 128), the
    # vision tower costs weights only. vLLM 0.11 printed 425,424 tokens from 16.23 GiB.
    report, expect = replay("vl-glm-4.1v-9b")
    assert report.kv_tokens is not None and report.max_concurrency is not None
    assert report.kv_bytes_per_token == 40 * 2 * 2 * 128 * 2
    assert within(report.kv_tokens, expect["kv_tokens"])
    assert within(report.kv_tokens / 16, expect["gpu_blocks"])
    assert within(report.max_concurrency, expect["max_concurrency"])
    assert report.fits
    assert any("vision encoder" in a for a in report.assumptions)


def test_sliding_window_layers_cost_only_their_window() -> None:
    # gpt-oss-120b: 18 sliding (window 128) + 18 full layers, two KV groups. vLLM 0.12 prints
    # blocks // 2 groups x 16 tokens; a full-attention model of 36 layers would hold half.
    report, _ = replay("mxfp4-hybrid-gpt-oss-120b-tp2")
    assert report.kv_tokens == pytest.approx(131_024, rel=0.001)
    assert any("18 sliding, 18 full" in a or "18 full, 18 sliding" in a
               for a in report.assumptions)


@pytest.mark.parametrize("case_id", ["hybrid-mamba2-nemotron-3-nano-4b",
                                     "hybrid-mamba2-nemotron-cascade-2-30b-a3b"])
def test_a_mamba2_hybrid_gets_vllms_block_size_padding_and_padding_layers(case_id: str) -> None:
    # Nemotron-3-Nano-4B on vLLM 0.13: "Setting attention block size to 992 tokens",
    # "Padding mamba page size by 0.35%", "Add 3 padding layers"; 4 attention and 21 Mamba
    # layers in 7 groups of 4, one block per Mamba group, tokens = blocks // 7 x 992.
    # Nemotron-Cascade-2-30B-A3B on 0.19.1: 4176 tokens, 0.19 %, 1 padding layer (6 + 23).
    report, expect = replay(case_id)
    assert report.block_size == expect["attention_block_size"]
    text = "\n".join(report.assumptions)
    assert f"padded by {expect['mamba_padding_pct']:.2f} %" in text
    assert f"({expect['padding_layers']} padding layers)" in text
    assert report.kv_tokens is not None and report.kv_tokens % report.block_size == 0


def test_a_gated_delta_net_hybrid_holds_two_blocks_per_group_with_prefix_caching() -> None:
    # Qwen3.6-35B-A3B on vLLM 0.24 with --enable-prefix-caching: 300 blocks of 10 layers x
    # 2096 tokens; a 131,072-token request takes 63 attention blocks + 3 groups x 2 states.
    report, expect = replay("hybrid-gdn-qwen3.6-35b-a3b")
    assert report.block_size == 2096
    assert any("a request of 131,072 tokens takes 69 blocks" in a for a in report.assumptions)
    case = CASES["hybrid-gdn-qwen3.6-35b-a3b"]
    without = capacity(info(case["config"]), model_id=case["config"],
                       settings=ServeSettings(max_model_len=131072, kv_cache_dtype="fp8",
                                              enable_prefix_caching=False),
                       kv_cache_bytes=expect["available_kv_gib"] * GiB, version="0.24.0")
    assert without.max_concurrency == pytest.approx(300 / 66)  # one state per group


def test_v0_block_count_and_concurrency_match() -> None:
    report, expect = replay("v0-llama-3.1-8b")
    assert report.kv_tokens is not None and report.max_concurrency is not None
    assert within(report.kv_tokens / 16, expect["gpu_blocks"])
    assert within(report.max_concurrency, expect["max_concurrency"])


def test_below_one_request_gives_vllms_own_longest_length_and_no_zero_seqs() -> None:
    report, expect = replay("v0-llama-3.1-8b-too-long")
    assert report.fits is False and report.fits_one_request is False
    assert report.max_model_len_that_fits is not None
    assert within(report.max_model_len_that_fits, expect["max_model_len_that_fits"])
    assert report.recommended_max_num_seqs is None and report.per_engine_max_num_seqs is None
    text = "\n".join(report.lines())
    assert "recommended" not in text and "does not fit" in text


def test_mla_caches_one_latent_per_token_not_per_head() -> None:
    report, expect = replay("mla-deepseek-v2-lite")
    assert report.kv_needed_bytes is not None
    assert within(report.kv_needed_bytes / GiB, expect["needed_gib"])
    assert report.fits is False
    # 27 layers x (kv_lora_rank 512 + rope 64) x 2 B, whatever the 16 heads
    assert report.kv_bytes_per_token == 27 * 576 * 2


def test_pp_check_counts_the_whole_model_in_0_15_as_the_log_shows() -> None:
    report, expect = replay("pp-qwen3-coder-30b-fp8")
    assert report.kv_needed_bytes is not None and report.max_model_len_that_fits is not None
    assert within(report.kv_needed_bytes / GiB, expect["needed_gib"])
    assert within(report.max_model_len_that_fits, expect["max_model_len_that_fits"])
    assert report.fits is False


def test_pp_check_counts_one_stage_from_0_17_on() -> None:
    old, _ = replay("pp-qwen3-coder-30b-fp8")
    new, _ = replay("pp-qwen3-coder-30b-fp8", version="0.33.0")
    assert old.kv_needed_bytes is not None and new.kv_needed_bytes is not None
    # two stages of 24 layers: half the whole model's 48, plus 0.33's one null block
    assert new.kv_needed_bytes == pytest.approx(old.kv_needed_bytes / 2, rel=1e-6)
    assert new.max_model_len_that_fits is not None and old.max_model_len_that_fits is not None
    assert new.max_model_len_that_fits == pytest.approx(2 * old.max_model_len_that_fits,
                                                        rel=0.01)


def test_every_worker_prints_the_tokens_its_own_memory_holds() -> None:
    # vLLM 0.10, eight workers, a MoE model: each "GPU KV cache size" line the engine prints is
    # exactly what that worker's own memory holds, and the pool is the smallest of them.
    case = CASES["moe-int8-tp8-qwen3-30b-a3b-every-worker"]
    workers = case["expect"]["workers"]
    assert len(workers) == case["tp"] == 8
    pool = []
    for w in workers:
        report = replay_with(case["id"], w["available_bytes"])
        assert report.kv_tokens == w["kv_tokens"], f"rank {w['rank']}"
        assert report.max_concurrency is not None
        assert f"{report.max_concurrency:.2f}" == f"{w['max_concurrency']:.2f}", w["rank"]
        pool.append(report.kv_tokens)
    assert min(pool) == case["expect"]["pool_kv_tokens"]
    # the workers' memory differs by 5 %: pairing one worker's memory line with another's
    # token line is off by that much
    memory = [w["available_bytes"] for w in workers]
    assert max(memory) / min(memory) > 1.05


def test_the_tp4_moe_fp8_quote_pairs_lines_of_two_workers() -> None:
    # The issue's +1.1 %: "Available KV cache memory: 8.11 GiB" and "GPU KV cache size:
    # 178,880 tokens" from a 0.10 TP=4 server, which prints both lines once per worker.
    # 178,880 tokens is what 8.018 GiB ("8.02") holds; 8.11 GiB holds 1.1 % more. Neither is a
    # planner error: each worker's line follows from its own memory, as above.
    report, expect = replay("moe-fp8-tp4-qwen3-235b")
    assert report.kv_tokens is not None
    assert 180_816 <= report.kv_tokens <= 181_040       # the range "8.11" covers
    assert replay_with("moe-fp8-tp4-qwen3-235b", 8.018 * GiB).kv_tokens == expect["kv_tokens"]
    assert any("each prints its own" in a for a in report.assumptions)


def test_from_0_12_the_printed_memory_is_the_first_workers_and_the_pool_the_smallest() -> None:
    report = replay_with("moe-fp8-tp4-qwen3-235b", 8.11 * GiB, version="0.33.0")
    assert any("only the first worker's" in a for a in report.assumptions)
    single, _ = replay("dense-qwen3-14b")
    assert not any("several workers" in a for a in single.assumptions)


@pytest.mark.parametrize("case_id", ["mxfp4-hybrid-gpt-oss-120b-tp2",
                                     "mxfp4-gpt-oss-120b-one-h100", "dense-qwen3-0.6b",
                                     "v0-llama-3.1-8b"])
def test_weights_per_gpu_match_what_vllm_loaded(case_id: str) -> None:
    # "Model loading took X GiB" (V0 printed GiB as "GB"); MXFP4 experts padded for Marlin,
    # the kernel these logs name; tied embeddings counted once.
    report, expect = replay(case_id)
    assert report.weights_per_gpu_bytes is not None
    assert within(report.weights_per_gpu_bytes / GiB, expect["weights_per_gpu_gib"])


@pytest.mark.parametrize(("case_id", "full", "sliding"), [
    ("swa-gemma-3-1b-v013", 4, 22), ("swa-gemma-3-27b-vl-v011", 10, 52)])
def test_gemma_3_keeps_one_global_layer_in_six_and_pads_groups_as_vllm_warned(
        case_id: str, full: int, sliding: int) -> None:
    # Gemma 3's config.json has no sliding_window_pattern (transformers' default: 6). vLLM
    # groups the layers by the global count and warns "Add N padding layers".
    case = CASES[case_id]
    layout, why, _ = layout_for(info(case["config"]), tp=case["tp"], pp=case["pp"],
                                kv_cache_dtype="auto", block_size=16)
    assert layout is not None, why
    kinds = [g.kind for g in layout.groups]
    assert sum(len(g.layers) for g in layout.groups if g.kind == "full") == full
    assert sum(len(g.layers) for g in layout.groups if g.kind == "sliding") == sliding
    assert kinds.count("full") == 1 and kinds.count("sliding") == -(-sliding // full)
    assert layout.padded_layers == case["expect"]["padding_layers"]


def test_gemma_3_block_count_matches_the_engines_num_gpu_blocks() -> None:
    # One block holds a page of each of the 10 layers of a group: 89,994 blocks in 109.86 GiB.
    case = CASES["swa-gemma-3-27b-vl-v011"]
    layout, why, _ = layout_for(info(case["config"]), tp=1, pp=1, kv_cache_dtype="auto",
                                block_size=16)
    assert layout is not None, why
    blocks = layout.num_blocks(case["expect"]["available_kv_gib"] * GiB)
    assert within(blocks, case["expect"]["gpu_blocks"], rel=0.001)


def test_async_scheduling_keeps_two_batches_of_a_sliding_window_in_flight_in_0_26() -> None:
    # 0.26 turns async scheduling on by default: a sliding layer holds window - 1 + 2 x 2048
    # tokens. With one batch in flight (0.25's rule) vLLM would have printed ~3.29x, not 2.87x.
    report, expect = replay("swa-medgemma-27b-fp8kv-v026")
    older, _ = replay("swa-medgemma-27b-fp8kv-v026", version="0.25.0")
    assert report.max_concurrency is not None and older.max_concurrency is not None
    assert within(report.max_concurrency, expect["max_concurrency"])
    assert not within(older.max_concurrency, expect["max_concurrency"], rel=0.05)


@pytest.mark.parametrize("case_id", ["swa-gemma-3-1b-v013", "swa-gemma-3-27b-vl-v011"])
def test_gemma_weights_take_transformers_defaults_for_what_config_json_omits(
        case_id: str) -> None:
    # Gemma 3's config.json leaves out tie_word_embeddings and (27B) vocab_size: transformers
    # ties the head and uses 262,208 tokens. Counting an untied head, or a 32,000-token
    # vocabulary, was 26 % over (1B) and 5 % under (27B) what vLLM loaded. What remains
    # (-2.8 %, -1.4 %) is memory vLLM counts with the weights beyond the parameters.
    report, _ = replay(case_id)
    loaded = float(CASES[case_id]["log"][[i for i, line in enumerate(CASES[case_id]["log"])
                                          if "Model loading took" in line][0]]
                   .split("took ")[1].split(" GiB")[0])
    assert report.weights_per_gpu_bytes is not None
    assert within(report.weights_per_gpu_bytes / GiB, loaded, rel=0.03)
