"""Weight bytes by tensor kind: each quantisation format charged what it stores, the tensors
it leaves in 16 bit charged 2 bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpclaunch.planning.hybridweights import recurrent_params
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.modelinfo import ModelInfo, RecurrentState
from hpclaunch.planning.weights import mxfp4_expert_bytes, quant_format, vision_params, weight_bytes

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs"


def config(name: str) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return cfg


@pytest.mark.parametrize(("qc", "name", "bytes_per_param"), [
    (None, "", 2.0),
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8", 1.0),
    ({"quant_method": "mxfp4"}, "mxfp4", 4.25 / 8),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", 4.5 / 8),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "awq",
     (4 + (16 + 4) / 128) / 8),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True}, "gptq",
     (4 + 16 / 128) / 8),
    ({"quant_method": "gptq", "bits": 8, "group_size": -1, "sym": True}, "gptq", 1.0),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes", (4 + 0.5) / 8),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes", 1.0),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float"}}}}, "fp8", 1.0),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "float", "group_size": 16}}}}, "nvfp4", 4.5 / 8),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int", "group_size": 128, "symmetric": True}}}},
     "int", (4 + 16 / 128) / 8),
])
def test_each_format_costs_its_values_plus_scales(qc: dict[str, Any] | None, name: str,
                                                  bytes_per_param: float) -> None:
    fmt = quant_format({"quantization_config": qc} if qc else {})
    assert fmt.name == name
    assert fmt.bytes_per_param == pytest.approx(bytes_per_param, rel=1e-3)


def test_awq_leaves_embeddings_and_lm_head_in_16_bit() -> None:
    # Mistral-7B with TheBloke's AWQ settings (4 bit, group 128): the checkpoint is 4.15 GB.
    cfg = {**config("mistral-7b-v0.3"), "vocab_size": 32000,
           "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    total, note = weight_bytes(cfg, quant_format(cfg))
    assert total == pytest.approx(4.15e9, rel=0.02)
    assert "embeddings" in note


def test_mxfp4_quantises_only_the_experts() -> None:
    cfg = config("gpt-oss-120b")
    total, _ = weight_bytes(cfg, quant_format(cfg))
    experts = mxfp4_expert_bytes(36, 128, 2880, 2880, tp=1)
    rest = total - experts
    # attention, embeddings, lm_head and routers stay bf16: ~4 GiB of the ~66
    assert 3.5 * 2**30 < rest < 4.5 * 2**30


def test_mxfp4_padding_depends_on_the_kernel_and_tp() -> None:
    marlin_tp2 = mxfp4_expert_bytes(36, 128, 2880, 2880, tp=2)
    triton_tp2 = mxfp4_expert_bytes(36, 128, 2880, 2880, tp=2, marlin=False)
    assert marlin_tp2 > triton_tp2  # hidden 2880 -> 3072, shard 1440 -> 1536 on Marlin
    assert triton_tp2 == int(36 * 128 * 3 * 2880 * 1472 * 4.25 / 8)  # shard 1440 -> 1472


def test_fp8_moe_counts_experts_attention_and_bf16_embeddings() -> None:
    cfg = config("qwen3-235b-a22b-fp8")
    total, _ = weight_bytes(cfg, quant_format(cfg))
    # ~235 B parameters, nearly all FP8: about 220 GiB
    assert 215 * 2**30 < total < 225 * 2**30


def test_a_qwen_vl_vision_tower_counts_its_patch_mergers_and_position_table() -> None:
    vision = config("qwen3-vl-4b-instruct")["vision_config"]
    hidden, depth, inter = vision["hidden_size"], vision["depth"], vision["intermediate_size"]
    blocks = depth * (4 * hidden * hidden + 2 * hidden * inter)
    merged = hidden * 4  # 2 x 2 patches merged into one token
    merger = merged * merged + merged * vision["out_hidden_size"]
    embeddings = 3 * 2 * 16 * 16 * hidden + 2304 * hidden  # Conv3d patch embed + 48 x 48 table
    # one merger for the output and one per DeepStack layer (5, 11, 17)
    assert vision_params(vision) == blocks + 4 * merger + embeddings
    without_deepstack = {k: v for k, v in vision.items() if k != "deepstack_visual_indexes"}
    assert vision_params(vision) - vision_params(without_deepstack) == 3 * merger


def test_a_vision_tower_without_merger_keys_is_its_blocks() -> None:
    vision = {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096}
    assert vision_params(vision) == 24 * (4 * 1024 * 1024 + 2 * 1024 * 4096)


def _stored(name: str) -> ModelInfo:
    path = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs" / f"{name}.json"
    cfg = json.loads(path.read_text())
    return info_from_config(cfg, cfg["_model_id"])


@pytest.mark.parametrize(("config", "low", "high"), [
    ("nemotron-3-nano-4b", 3.8, 4.2),          # 21 Mamba2, 4 attention, 17 MLP blocks
    ("nemotron-3-nano-30b-a3b", 30.0, 33.0),   # 23 Mamba2, 6 attention, 23 MoE blocks
    ("qwen3.6-35b-a3b", 33.0, 36.0),           # 30 gated delta nets, 10 gated attention
])
def test_a_hybrid_counts_each_block_once_as_what_it_is(config: str, low: float,
                                                       high: float) -> None:
    # Counting every layer as attention + MLP made Nemotron-3-Nano-30B-A3B a 101 B model
    # and the 4B one 7.4 B; each Nemotron-H block is one mixer, attention, MLP or MoE.
    info = _stored(config)
    assert low <= info.params_b <= high
    assert info.weight_bytes == pytest.approx(info.params_b * 1e9 * 2, rel=0.01)


def test_mamba2_and_gated_delta_net_mixers_count_their_projections() -> None:
    mamba = RecurrentState(kind="mamba2", heads=96, head_dim=80, groups=8, state=128,
                           conv_kernel=4, conv_bytes=2, ssm_bytes=4)
    # in_proj to z, x (2 x 7680), B, C (2 x 8 x 128), dt (96); out_proj 7680 x hidden
    assert recurrent_params(3136, mamba) == (3136 * (2 * 7680 + 2048 + 96) + 9728 * 4
                                             + 7680 * 3136 + 3 * 96 + 7680)
    gdn = RecurrentState(kind="gdn", heads=32, head_dim=128, groups=16, state=128,
                         conv_kernel=4, conv_bytes=2, ssm_bytes=4)
    # in_proj_qkvz: q, k (2 x 2048), v, z (2 x 4096); in_proj_ba: 2 x 32; out_proj 4096 x h
    assert recurrent_params(2048, gdn) == (2048 * 12288 + 2048 * 64 + 8192 * 4
                                           + 4096 * 2048 + 64 + 128)
