"""vLLM's hybrid KV cache manager, on and off: with it (from 0.9) sliding-window layers keep
only their window; without it (before 0.9, ``--disable-hybrid-kv-cache-manager``, a KV
connector) every layer of a model that mixes full and sliding attention is sized as full.

Sources: 0.8.5 ``vllm/v1/core/kv_cache_utils.py`` (``get_kv_cache_config`` always calls
``unify_hybrid_kv_cache_specs``; "Maximum concurrency" = tokens / max_model_len); 0.9.1 and
0.11.0 (unify only when ``disable_hybrid_kv_cache_manager``; the start-up check runs first,
on each layer's own spec). The memory and lengths are those of the real Gemma 3 27B log in
tests/data/planner/cases.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.planning import kv
from hpclaunch.planning.capacity import capacity
from hpclaunch.planning.kvplan import kv_numbers, layout_for
from hpclaunch.planning.kvspec import KVLayout, rules_for
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.settings import ServeSettings, settings_from_flags

DATA = Path(__file__).resolve().parents[2] / "data" / "planner"
CASE = next(c for c in json.loads((DATA / "cases.json").read_text())["cases"]
            if c["id"] == "swa-gemma-3-27b-vl-v011")
KV_BYTES = CASE["expect"]["available_kv_gib"] * kv.GiB
LEN, BATCH = CASE["max_model_len"], CASE["max_num_batched_tokens"]


def gemma3_27b() -> KVLayout:
    cfg = json.loads((DATA / "configs" / "gemma-3-27b-it.json").read_text())
    layout, why, _ = layout_for(info_from_config(cfg, cfg["_model_id"]), tp=1, pp=1,
                                kv_cache_dtype="auto", block_size=16)
    assert layout is not None, why
    return layout


def test_the_hybrid_manager_arrives_in_0_9() -> None:
    assert not rules_for("0.8.5").hybrid_allocator
    assert rules_for("0.9.1").hybrid_allocator and rules_for("0.11.0").hybrid_allocator
    assert rules_for("0.33.0").hybrid_allocator


def test_before_0_9_every_layer_is_sized_as_full_attention() -> None:
    layout = gemma3_27b()
    old = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=LEN,
                     max_num_batched_tokens=BATCH, pp=1, version="0.8.5")
    # one group of all 62 layers: a block costs 62 pages, and the cache holds blocks x 16
    blocks = int(KV_BYTES // (62 * layout.page_bytes))
    assert old.kv_tokens == blocks * 16
    assert old.max_concurrency == pytest.approx(blocks * 16 / LEN)
    assert any("sized as full attention" in a for a in old.assumptions)


def test_long_requests_fit_far_more_often_with_the_hybrid_manager() -> None:
    # At 131,072 tokens a sliding layer keeps 1023 + 8192 tokens, a full layer all of them.
    layout = gemma3_27b()
    length = 131_072
    on = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=length,
                    max_num_batched_tokens=BATCH, pp=1, version="0.11.0")
    off = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=length,
                     max_num_batched_tokens=BATCH, pp=1, version="0.11.0",
                     hybrid_manager_off=True)
    on_blocks = int(KV_BYTES // (10 * layout.page_bytes))  # 7 groups of 10 layers
    off_blocks = int(KV_BYTES // (62 * layout.page_bytes))  # one group of 62
    sliding_pages = -(-(1023 + BATCH) // 16) + 1
    assert on.max_concurrency == pytest.approx(on_blocks / (length // 16 + 6 * sliding_pages))
    assert off.max_concurrency == pytest.approx(off_blocks / (length // 16))
    assert on.max_concurrency > 4 * off.max_concurrency
    # the start-up check is the same: vLLM runs it on each layer's own spec first
    assert off.needed_bytes == on.needed_bytes


def test_short_requests_gain_nothing_and_pay_for_the_padding_layers() -> None:
    # At 4,096 tokens (the real log) a sliding layer holds min(1023 + 8192, 4096) tokens,
    # like a full one, so the 8 padding layers of the hybrid groups are pure loss.
    layout = gemma3_27b()
    on = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=LEN,
                    max_num_batched_tokens=BATCH, pp=1, version="0.11.0")
    off = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=LEN,
                     max_num_batched_tokens=BATCH, pp=1, version="0.11.0",
                     hybrid_manager_off=True)
    assert off.max_concurrency > on.max_concurrency
    # on: blocks of 10 layers, 256 + 6 x 257 per request; off: blocks of 62, 256 per request
    assert off.max_concurrency / on.max_concurrency == pytest.approx(
        10 * (256 + 6 * 257) / (62 * 256), rel=1e-3)


def test_the_start_up_check_counts_real_layers_not_padding() -> None:
    # check_enough_kv_cache_memory sums each layer's max_memory_usage_bytes: 10 full layers
    # of 256 pages, 52 sliding layers of min(1023 + 8192, 4096) / 16 + 1 = 257 pages. The 8
    # padding layers vLLM adds to its groups are not in that sum.
    layout = gemma3_27b()
    nums = kv_numbers(layout, kv_bytes=KV_BYTES, max_model_len=LEN,
                      max_num_batched_tokens=BATCH, pp=1, version="0.11.0")
    assert layout.padded_layers == 8
    assert nums.needed_bytes == layout.page_bytes * (10 * 256 + 52 * 257)


def test_a_model_of_one_kind_is_unchanged_by_turning_the_manager_off() -> None:
    cfg = json.loads((DATA / "configs" / "mistral-7b-v0.1.json").read_text())
    layout, why, _ = layout_for(info_from_config(cfg, cfg["_model_id"]), tp=1, pp=1,
                                kv_cache_dtype="auto", block_size=16)
    assert layout is not None, why
    assert layout.unified() is layout  # every layer sliding: vLLM keeps them sliding


@pytest.mark.parametrize("flags", [
    ["--disable-hybrid-kv-cache-manager"],
    ["--kv-transfer-config", '{"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}'],
])
def test_serve_flags_that_turn_the_manager_off_reach_the_plan(flags: list[str]) -> None:
    settings = settings_from_flags(["--max-model-len", str(LEN),
                                    "--max-num-batched-tokens", str(BATCH), *flags], "0.11.0")
    assert settings.hybrid_kv_cache_manager_off
    cfg = json.loads((DATA / "configs" / "gemma-3-27b-it.json").read_text())
    info = info_from_config(cfg, cfg["_model_id"])
    on = capacity(info, model_id="g", tp=1, pp=1, kv_cache_bytes=KV_BYTES, version="0.11.0",
                  settings=ServeSettings(max_model_len=LEN, max_num_batched_tokens=BATCH))
    off = capacity(info, model_id="g", tp=1, pp=1, kv_cache_bytes=KV_BYTES, version="0.11.0",
                   settings=settings)
    assert on.kv_tokens is not None and off.kv_tokens is not None
    page = 16 * 2 * 16 * 128 * 2
    assert on.kv_tokens == int(KV_BYTES // (10 * page)) // 7 * 16  # 0.11: per group
    assert off.kv_tokens == int(KV_BYTES // (62 * page)) * 16
    assert any("hybrid KV cache manager off" in a for a in off.assumptions)
