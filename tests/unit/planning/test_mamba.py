"""Hybrid models (Mamba2, gated delta nets): how vLLM fits their recurrent state into the KV pool.

The model facts are the real config excerpts in tests/data/planner/configs/; the numbers the
tests expect follow from vLLM's source (``_align_hybrid_block_size``, ``MambaSpec``) and are
checked against real logs in test_real_logs.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hpclaunch.planning import kv
from hpclaunch.planning.capacity import capacity
from hpclaunch.planning.kvplan import layout_for
from hpclaunch.planning.kvspec import kv_layout, token_bytes
from hpclaunch.planning.mamba import hybrid_blocks, prefix_caching_default
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.modelinfo import ModelInfo, RecurrentState

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs"


def _info(name: str) -> ModelInfo:
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    return info_from_config(cfg, str(cfg["_model_id"]))


def _state(info: ModelInfo) -> RecurrentState:
    assert info.recurrent is not None
    return info.recurrent


# ----------------------------------------------------------------- the state itself


def test_a_gated_delta_net_state_is_its_conv_window_plus_a_float32_ssm_matrix() -> None:
    # Qwen3.6-35B-A3B: conv over 2 x 16 x 128 key + 32 x 128 value channels, 3 steps, bf16;
    # SSM 32 value heads x 128 x 128 in float32 (the config's mamba_ssm_dtype).
    state = _state(_info("qwen3.6-35b-a3b"))
    assert state.page_bytes(1) == (2 * 16 * 128 + 32 * 128) * 3 * 2 + 32 * 128 * 128 * 4
    assert state.page_bytes(2) == state.page_bytes(1) // 2


def test_mamba2_widens_its_groups_to_a_multiple_of_tp() -> None:
    # vLLM's extra_groups_for_head_shards: 1 group on TP 2 becomes 2, so each rank keeps a
    # whole group; 8 groups on TP 2 split evenly.
    one_group = RecurrentState(kind="mamba2", heads=8, head_dim=64, groups=1, state=128,
                               conv_kernel=4, conv_bytes=2, ssm_bytes=4)
    conv_tp2 = (8 * 64 + 2 * 2 * 128) // 2 * 3 * 2
    assert one_group.page_bytes(2) == conv_tp2 + 4 * 64 * 128 * 4
    nano = _state(_info("nemotron-3-nano-4b"))
    assert nano.page_bytes(2) == nano.page_bytes(1) // 2


def test_nemotron_h_reads_its_layer_kinds_from_the_override_pattern() -> None:
    # M = Mamba2, * = attention, - = MLP (no cache): 21 + 4 + 17 = 42 layers.
    info = _info("nemotron-3-nano-4b")
    assert (info.kinds.count("linear"), info.kinds.count("full"),
            info.kinds.count("none")) == (21, 4, 17)
    assert [i for i, k in enumerate(info.kinds) if k == "full"] == [12, 17, 24, 32]


def test_nemotron_h_also_reads_a_layers_block_type_list() -> None:
    cfg = json.loads((CONFIGS / "nemotron-3-nano-4b.json").read_text())
    names = {"M": "mamba", "*": "attention", "-": "mlp"}
    listed = [names[c] for c in cfg.pop("hybrid_override_pattern")]
    info = info_from_config({**cfg, "layers_block_type": listed}, "x/nemotron-h")
    assert info.kinds == _info("nemotron-3-nano-4b").kinds


def test_a_qwen3_next_config_without_layer_types_uses_full_attention_interval() -> None:
    cfg = json.loads((CONFIGS / "qwen3.6-35b-a3b.json").read_text())
    text = {**cfg["text_config"], "model_type": "qwen3_next"}
    flat = {k: v for k, v in text.items() if k != "layer_types"}
    info = info_from_config({**flat, "model_type": "qwen3_next"}, "Qwen/Qwen3-Next-like")
    assert info.kinds[3] == "full" and info.kinds[:3] == ("linear",) * 3
    assert info.kinds.count("full") == 10 and info.recurrent is not None


# ----------------------------------------------------------------- block size and padding


def test_the_attention_block_is_raised_until_one_attention_page_holds_a_state() -> None:
    state = RecurrentState(kind="gdn", heads=32, head_dim=128, groups=16, state=128,
                           conv_kernel=4, conv_bytes=2, ssm_bytes=4)
    per_token = 2 * 2 * 256 * 2  # 2 KV heads of 256, K and V, bf16
    hb = hybrid_blocks(state, tp=1, token_bytes=per_token, block_size=16, version="0.33.0",
                       prefix_caching=False)
    assert hb.block_size % 16 == 0
    assert hb.block_size * per_token >= state.page_bytes(1)
    assert (hb.block_size - 16) * per_token < state.page_bytes(1)  # the smallest such block


def test_the_state_page_is_padded_to_exactly_the_attention_page() -> None:
    info = _info("nemotron-3-nano-4b")
    hb = hybrid_blocks(_state(info), tp=1, token_bytes=token_bytes(info, 1, 1),
                       block_size=16, version="0.13.0", prefix_caching=False)
    assert hb.page == hb.block_size * token_bytes(info, 1, 1)
    assert hb.page > hb.state_page and f"{hb.padding_pct:.2f}" == "0.35"  # as logged


def test_a_larger_block_size_from_the_user_is_kept_and_sets_the_alignment() -> None:
    info = _info("nemotron-3-nano-4b")
    per_token = token_bytes(info, 1, 1)
    kept = hybrid_blocks(_state(info), tp=1, token_bytes=per_token, block_size=2048,
                         version="0.33.0", prefix_caching=False)
    assert kept.block_size == 2048
    coarse = hybrid_blocks(_state(info), tp=1, token_bytes=per_token, block_size=64,
                           version="0.33.0", prefix_caching=False)
    assert coarse.block_size % 64 == 0 and coarse.block_size >= 992


def test_a_smaller_kv_dtype_needs_a_longer_block_for_the_same_state() -> None:
    info = _info("qwen3.6-35b-a3b")
    fp8 = hybrid_blocks(_state(info), tp=1, token_bytes=token_bytes(info, 1, 1),
                        block_size=16, version="0.24.0", prefix_caching=True)
    bf16 = hybrid_blocks(_state(info), tp=1, token_bytes=token_bytes(info, 1, 2),
                         block_size=16, version="0.24.0", prefix_caching=True)
    assert (bf16.block_size, fp8.block_size) == (1056, 2096)  # 66 and 131 pages of 16


# ----------------------------------------------------------------- blocks per request


@pytest.mark.parametrize(("version", "caching", "kind", "hopper", "mode", "blocks"), [
    ("0.13.0", False, "mamba2", False, "none", 1),   # one state per request
    ("0.24.0", True, "gdn", False, "align", 2),      # current + last cached state
    ("0.33.0", True, "mamba2", False, "align", 3),   # 0.33: + the prefill checkpoint
    ("0.33.0", True, "gdn", False, "align", 2),      # GDN on Triton/FLA exports none
    ("0.33.0", True, "gdn", True, "align", 3),       # GDN on FlashInfer (Hopper) does
    ("0.25.0", True, "mamba2", False, "all", 0),     # Mamba2 before 0.33: a state per block
])
def test_each_recurrent_group_takes_the_blocks_its_cache_mode_needs(
        version: str, caching: bool, kind: str, hopper: bool, mode: str, blocks: int) -> None:
    state = RecurrentState(kind=kind, heads=32, head_dim=128, groups=16, state=128,
                           conv_kernel=4, conv_bytes=2, ssm_bytes=4)
    hb = hybrid_blocks(state, tp=1, token_bytes=1024, block_size=16, version=version,
                       prefix_caching=caching, hopper=hopper)
    assert (hb.mode, hb.state_blocks) == (mode, blocks)


def test_mamba2_all_mode_rounds_blocks_to_its_chunk_and_grows_with_the_request() -> None:
    # 0.13 / 0.25 with prefix caching: the block is a multiple of the 256-token SSD chunk
    # (2,024,448 B of state / 2,048 B per token = 989 tokens -> 1024), and each Mamba group
    # holds one state per block of the request, as an attention group does.
    info = _info("nemotron-3-nano-4b")
    hb = hybrid_blocks(_state(info), tp=1, token_bytes=2048, block_size=16, version="0.25.0",
                       prefix_caching=True)
    assert hb.mode == "all" and hb.block_size == 1024
    layout = kv_layout(info, tp=1, pp=1, dtype_bytes=1, block_size=hb.block_size,
                       state_blocks=hb.state_blocks)
    assert layout.blocks_per_request(8192, in_flight=0) == 7 * 8  # 1 + 6 groups x 8 blocks


def test_flashinfer_gdn_checkpoints_align_blocks_to_64_tokens_in_0_33() -> None:
    state = _state(_info("qwen3.6-35b-a3b"))
    hb = hybrid_blocks(state, tp=1, token_bytes=1024, block_size=16, version="0.33.0",
                       prefix_caching=True, hopper=True)
    assert hb.block_size % 64 == 0


def test_prefix_caching_is_on_by_default_for_hybrids_in_0_33_but_not_0_25() -> None:
    assert prefix_caching_default("0.33.0") and prefix_caching_default("0.28.0")
    assert not prefix_caching_default("0.25.0") and not prefix_caching_default("0.19.0")


def test_versions_without_gdn_prefix_caching_turn_the_flag_off() -> None:
    # 0.13 caches prefixes only for models with SupportsMambaPrefixCaching (Mamba2); for a
    # gated delta net it logs "Hybrid or mamba-based model detected without support for
    # prefix caching: disabling": one state block per group.
    state = _state(_info("qwen3.6-35b-a3b"))
    hb = hybrid_blocks(state, tp=1, token_bytes=1024, block_size=16, version="0.13.0",
                       prefix_caching=True)
    assert hb.mode == "none" and hb.state_blocks == 1
    assert "turns prefix caching off" in hb.steps[-1]


@pytest.mark.parametrize(("argv", "expected"), [
    ([], None), (["--enable-prefix-caching"], True), (["--no-enable-prefix-caching"], False)])
def test_the_prefix_caching_flag_is_read_in_both_spellings(argv: list[str],
                                                            expected: bool | None) -> None:
    from hpclaunch.planning.settings import settings_from_flags

    for version in ("0.33.0", "0.13.0"):  # a bundled flag snapshot and the lenient reader
        assert settings_from_flags(argv, version).enable_prefix_caching is expected


def test_a_recurrent_groups_blocks_do_not_grow_with_the_request_length() -> None:
    info = _info("nemotron-3-nano-4b")
    layout = kv_layout(info, tp=1, pp=1, dtype_bytes=1, block_size=992, state_blocks=1)
    short, long = (layout.blocks_per_request(n, in_flight=0) for n in (992, 992 * 100))
    assert long - short == 99  # only the one attention group grows


def test_mlp_blocks_take_no_page_and_recurrent_layers_are_grouped_like_attention() -> None:
    # 4 attention + 21 Mamba layers: groups of 4, the Mamba ones padded to 24 (vLLM logs
    # "Add 3 padding layers"); the 17 MLP blocks are not in any group.
    info = _info("nemotron-3-nano-4b")
    layout = kv_layout(info, tp=1, pp=1, dtype_bytes=1, block_size=992, state_blocks=1)
    assert len(layout.groups) == 7 and layout.padded_layers == 3
    assert sum(len(g.layers) for g in layout.groups) == 25
    assert layout.model_block_bytes() == 4 * 992 * 2048


# ----------------------------------------------------------------- the plan


def test_every_hybrid_step_is_listed_in_the_assumptions() -> None:
    report = capacity(_info("qwen3.6-35b-a3b"), model_id="q", kv_cache_bytes=6 * kv.GiB,
                      version="0.33.0")
    text = "\n".join(report.assumptions)
    for needle in ("gdn state per recurrent layer", "attention block size raised to",
                   "padded by", "mamba cache mode 'align'", "30 linear",
                   "each recurrent group takes"):
        assert needle in text, needle
    assert report.block_size > 16 and report.kv_tokens


def test_recurrent_layers_of_an_unmodelled_family_are_refused_with_a_reason() -> None:
    jamba_like = replace(_info("nemotron-3-nano-4b"), recurrent=None, family="jamba",
                         model_id="ai21labs/Jamba-like")
    layout, why, _ = layout_for(jamba_like, tp=1, pp=1, kv_cache_dtype="auto", block_size=16)
    assert layout is None
    assert "'jamba' is not modelled" in why and "\n" not in why


def test_more_sequences_than_blocks_is_flagged_as_a_start_up_failure() -> None:
    # 0.20+ raises "max_num_seqs (N) exceeds available Mamba cache blocks (M)" with FULL
    # CUDA graphs. 6.01 GiB of Qwen3.6-35B-A3B (fp8 KV) on an H100 is 298 blocks of 2112
    # tokens (FlashInfer GDN prefill: 64-token alignment); the big-GPU default is 1024.
    info = _info("qwen3.6-35b-a3b")
    from hpclaunch.planning.settings import ServeSettings

    many = capacity(info, model_id="q", kv_cache_bytes=6.01 * kv.GiB, version="0.33.0",
                    gpu=kv.gpu_named("H100-80GB"),
                    settings=ServeSettings(max_model_len=8192, kv_cache_dtype="fp8"))
    assert any("max_num_seqs (1024) exceeds the 298 blocks" in n for n in many.notes)
    eager = capacity(info, model_id="q", kv_cache_bytes=6.01 * kv.GiB, version="0.33.0",
                     gpu=kv.gpu_named("H100-80GB"),
                     settings=ServeSettings(max_model_len=8192, kv_cache_dtype="fp8",
                                            enforce_eager=True, max_num_seqs=1024))
    assert not any("exceeds" in n for n in eager.notes)


def test_a_catalogue_entry_can_carry_a_hybrids_state_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bundled catalogue is JSON: a "recurrent" object becomes the same record the
    # config reader builds, so a catalogued hybrid is sized like one read from config.json.
    from hpclaunch.planning import catalog

    state = _state(_info("nemotron-3-nano-4b"))
    entry = {"model_id": "x/hybrid", "family": "nemotron_h", "params_b": 4.0,
             "torch_dtype": "bfloat16", "num_layers": 2, "num_attention_heads": 1,
             "num_kv_heads": 1, "head_dim": 128, "max_position_embeddings": 4096,
             "layer_types": ["linear", "full"], "recurrent": state.__dict__}
    monkeypatch.setattr(catalog, "_data_text", lambda _name: json.dumps({"models": [entry]}))
    catalog._catalog.cache_clear()
    try:
        assert catalog.model_info("x/hybrid").recurrent == state
    finally:
        catalog._catalog.cache_clear()


def test_the_mamba_dtype_flags_resize_the_state_as_vllms_dtype_calculator_does() -> None:
    from hpclaunch.planning.mamba import with_state_dtypes

    state = _state(_info("qwen3.6-35b-a3b"))  # conv bf16, SSM float32 from the config
    assert with_state_dtypes(state, "auto", "auto") == (state, "")
    halved, step = with_state_dtypes(state, "auto", "bfloat16")
    assert (halved.conv_bytes, halved.ssm_bytes) == (2, 2) and "--mamba-ssm-cache-dtype" in step
    # --mamba-cache-dtype alone sets both: the SSM state follows it under "auto"
    everything, _ = with_state_dtypes(state, "float32", "auto")
    assert (everything.conv_bytes, everything.ssm_bytes) == (4, 4)
    assert halved.page_bytes(1) < state.page_bytes(1) < everything.page_bytes(1)
