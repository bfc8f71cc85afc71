"""Llama 4's chunked local attention, as vLLM sizes it: the layers with RoPE attend within
chunks of ``attention_chunk_size`` tokens and, in 0.10.0 and from 0.14, get KV groups of their
own that hold one chunk plus the batch in flight; in 0.10.2-0.13 vLLM turns the hybrid manager
off for them and they keep every token like the NoPE (full attention) layers."""

from __future__ import annotations

from typing import Any

from hpclaunch.planning import kv
from hpclaunch.planning.capacity import capacity
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.settings import ServeSettings

GiB = kv.GiB

# The shape of Llama 4 Scout's text_config (48 layers, 8 KV heads of 128, chunks of 8192, an
# empty no_rope_layers meaning NoPE on every 4th layer); only the keys the planner reads.
SCOUT_SHAPE: dict[str, Any] = {
    "architectures": ["Llama4ForConditionalGeneration"],
    "model_type": "llama4",
    "text_config": {
        "model_type": "llama4_text", "attention_chunk_size": 8192, "head_dim": 128,
        "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
        "max_position_embeddings": 10485760, "no_rope_layers": [], "num_attention_heads": 40,
        "num_hidden_layers": 48, "num_key_value_heads": 8, "num_local_experts": 16,
        "num_experts_per_tok": 1, "interleave_moe_layer_step": 1, "torch_dtype": "bfloat16",
        "vocab_size": 202048,
    },
    "vision_config": {"hidden_size": 1408, "num_hidden_layers": 34, "intermediate_size": 5632},
}


def plan(version: str, max_model_len: int = 131072, mnbt: int = 8192):
    info = info_from_config(SCOUT_SHAPE, "llama4-scout-shape")
    settings = ServeSettings(max_model_len=max_model_len, max_num_batched_tokens=mnbt)
    return capacity(info, model_id=info.model_id, tp=4, settings=settings,
                    kv_cache_bytes=20 * GiB, version=version)


def test_every_fourth_layer_is_full_attention_and_the_rest_chunked() -> None:
    info = info_from_config(SCOUT_SHAPE, "llama4-scout-shape")
    assert info.kinds.count("chunked") == 36 and info.kinds.count("full") == 12
    assert [i for i, k in enumerate(info.kinds) if k == "full"][:3] == [3, 7, 11]
    assert info.attention_chunk_size == 8192


def test_an_explicit_no_rope_list_is_followed() -> None:
    cfg = {**SCOUT_SHAPE, "text_config": {**SCOUT_SHAPE["text_config"],
                                          "no_rope_layers": [1, 0] * 24}}
    info = info_from_config(cfg, "alternating")
    assert info.kinds[:4] == ("chunked", "full", "chunked", "full")


def test_from_0_14_chunked_layers_hold_one_chunk_plus_the_batch_in_flight() -> None:
    report = plan("0.33.0")
    assert report.max_concurrency is not None
    # 4 groups of 12 layers (3 chunked, 1 full); a 131,072-token request needs 8,192 blocks
    # in the full group and cdiv(8192 + 2 x 8192 in flight, 16) = 1,536 in each chunked one
    page = 16 * 2 * 2 * 128 * 2                     # 8 KV heads / TP 4, bf16
    blocks = int(20 * GiB // (12 * page))
    assert report.max_concurrency == blocks / (8192 + 3 * 1536)
    assert any("chunked local attention, chunks of 8192" in a for a in report.assumptions)


def test_0_14_to_0_25_keep_one_batch_not_the_async_two() -> None:
    report = plan("0.25.0")
    page = 16 * 2 * 2 * 128 * 2
    blocks = int(20 * GiB // (12 * page))
    assert report.max_concurrency == blocks / (8192 + 3 * 1024)   # cdiv(8192 + 8192, 16)


def test_before_0_14_chunked_layers_keep_every_token_like_full_ones() -> None:
    old = plan("0.13.0")
    assert old.max_concurrency is not None
    page = 16 * 2 * 2 * 128 * 2
    blocks = int(20 * GiB // (48 * page))          # one group of all 48 layers
    assert old.max_concurrency == blocks / 8192
    assert any("hybrid KV manager off" in a for a in old.assumptions)
    new = plan("0.33.0")
    assert new.max_concurrency is not None and new.max_concurrency > 2 * old.max_concurrency


def test_0_10_0_kept_chunked_layers_apart_and_0_10_2_did_not() -> None:
    # 0.10.0 disabled the hybrid manager for chunked attention only with EAGLE; 0.10.2 added
    # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE with a default of 0.
    page = 16 * 2 * 2 * 128 * 2
    assert plan("0.10.0").max_concurrency == int(20 * GiB // (12 * page)) / (8192 + 3 * 1024)
    assert plan("0.10.2").max_concurrency == int(20 * GiB // (48 * page)) / 8192


def test_a_request_shorter_than_a_chunk_costs_the_same_in_every_group() -> None:
    report = plan("0.33.0", max_model_len=4096)
    page = 16 * 2 * 2 * 128 * 2
    blocks = int(20 * GiB // (12 * page))
    assert report.max_concurrency == blocks / (4 * 256)
