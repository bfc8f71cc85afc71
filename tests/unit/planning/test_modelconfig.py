"""Model facts from a config.json: local directories, nested VL configs, the HF cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.planning.catalog import model_info


def _write_config(directory: Path, config: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


VL_CONFIG = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "model_type": "qwen3_vl",
    "image_token_id": 151655,
    "text_config": {
        "model_type": "qwen3_vl_text", "hidden_size": 2048, "intermediate_size": 6144,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "max_position_embeddings": 262144, "vocab_size": 151936,
        "tie_word_embeddings": True, "dtype": "bfloat16",
    },
    "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096},
}


def test_a_vl_config_is_read_from_its_nested_text_config(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path / "my-vl-Thinking", VL_CONFIG)
    info = model_info(str(model_dir))
    assert info is not None
    assert info.model_id == str(model_dir)
    assert (info.num_layers, info.num_attention_heads, info.num_kv_heads, info.head_dim) == \
        (28, 16, 8, 128)
    assert info.max_position_embeddings == 262144
    assert info.torch_dtype == "bfloat16"
    assert info.vision
    assert info.family == "qwen3_vl"
    assert info.reasoning and info.reasoning_parser == "qwen3"  # "Thinking" in the name
    # Text ~1.7B + vision tower ~0.3B, estimated from the architecture.
    assert 1.8 < info.params_b < 2.3


def test_missing_kv_heads_and_head_dim_take_transformers_defaults(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path / "old-mha", {
        "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22,
        "num_attention_heads": 32, "max_position_embeddings": 2048, "torch_dtype": "float16",
    })
    info = model_info(str(model_dir))
    assert info is not None
    assert info.num_kv_heads == 32  # no GQA
    assert info.head_dim == 2048 // 32
    assert not info.vision and not info.sliding_window_or_hybrid


def test_a_quantization_config_sets_method_and_bits(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path / "awq-model", {
        "model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768,
        "torch_dtype": "float16", "sliding_window": None,
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
    })
    info = model_info(str(model_dir))
    assert info is not None
    assert (info.quantization, info.quant_bits) == ("awq", 4)
    assert info.bytes_per_param < 1


def test_the_safetensors_index_size_gives_the_parameter_count(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path / "sized", {
        "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "torch_dtype": "bfloat16",
        "max_position_embeddings": 32768, "sliding_window": 32768, "use_sliding_window": False,
    })
    (model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 3_088_000_000}, "weight_map": {}}))
    info = model_info(str(model_dir))
    assert info is not None
    assert info.params_b == pytest.approx(1.544, abs=0.001)
    assert info.weight_bytes == pytest.approx(3_088_000_000, rel=1e-3)
    assert not info.sliding_window_or_hybrid  # Qwen2's window is off unless enabled


def test_sliding_window_and_hybrid_models_are_flagged(tmp_path: Path) -> None:
    gemma = _write_config(tmp_path / "gemma", {
        "model_type": "gemma3_text", "hidden_size": 1152, "num_hidden_layers": 26,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
        "max_position_embeddings": 32768, "sliding_window": 512,
    })
    mixed = _write_config(tmp_path / "mixed", {
        "model_type": "newthing", "hidden_size": 1024, "num_hidden_layers": 4,
        "num_attention_heads": 8, "max_position_embeddings": 4096,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
    })
    for directory in (gemma, mixed):
        info = model_info(str(directory))
        assert info is not None and info.sliding_window_or_hybrid, directory.name


def test_a_config_without_attention_numbers_gives_none(tmp_path: Path) -> None:
    model_dir = _write_config(tmp_path / "broken", {"model_type": "llama"})
    assert model_info(str(model_dir)) is None


# ----------------------------------------------------------------- HF cache


def _fake_snapshot(hub: Path, model_id: str, revision: str, config: dict[str, object]) -> Path:
    repo = hub / ("models--" + model_id.replace("/", "--"))
    snapshot = _write_config(repo / "snapshots" / revision, config)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_a_model_downloaded_before_is_found_in_the_hf_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    _fake_snapshot(home / "hub", "acme/Tiny-VL-Chat", "0123abc", VL_CONFIG)
    info = model_info("acme/Tiny-VL-Chat")
    assert info is not None
    assert info.model_id == "acme/Tiny-VL-Chat"
    assert (info.num_layers, info.num_kv_heads) == (28, 8)
    assert model_info("acme/not-downloaded") is None


def test_the_snapshot_refs_main_points_at_wins(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hubcache"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    base = {"model_type": "llama", "hidden_size": 1024, "num_attention_heads": 8,
            "max_position_embeddings": 4096}
    _fake_snapshot(hub, "acme/two-revs", "old", {**base, "num_hidden_layers": 4})
    _fake_snapshot(hub, "acme/two-revs", "new", {**base, "num_hidden_layers": 12})
    info = model_info("acme/two-revs")
    assert info is not None and info.num_layers == 12


def test_the_catalog_wins_over_the_cache_and_unknown_names_give_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    _fake_snapshot(tmp_path / "hub", "Qwen/Qwen3-8B", "x", {
        "model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 1, "max_position_embeddings": 64})
    info = model_info("Qwen/Qwen3-8B")
    assert info is not None and info.num_layers == 36
    assert model_info("no-such-alias") is None


# ----------------------------------------------------------------- layer kinds (real configs)

PLANNER_CONFIGS = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs"


def _real(name: str) -> dict[str, object]:
    cfg: dict[str, object] = json.loads((PLANNER_CONFIGS / f"{name}.json").read_text())
    return cfg


@pytest.mark.parametrize(("name", "sliding", "full", "window"), [
    ("gemma-3-1b-it", 22, 4, 512),      # sliding_window_pattern 6: every 6th layer is full
    ("gemma-3-27b-it", 52, 10, 1024),   # no sliding_window_pattern: transformers' default 6
    ("gemma-2-9b", 21, 21, 4096),       # Gemma 2 alternates, starting with sliding
    ("mistral-7b-v0.1", 32, 0, 4096),   # one window on every layer
    ("gpt-oss-120b", 18, 18, 128),      # layer_types listed
    ("qwen2.5-7b", 0, 28, None),        # sliding_window set but use_sliding_window false
    ("qwen3-8b", 0, 36, None),
])
def test_layer_kinds_are_read_as_vllm_reads_them(name: str, sliding: int, full: int,
                                                 window: int | None) -> None:
    from hpclaunch.planning.modelconfig import info_from_config

    info = info_from_config(_real(name), name)
    assert info.kinds.count("sliding") == sliding and info.kinds.count("full") == full
    assert info.sliding_window == window


def test_gemma3_groups_pad_the_sliding_layers_like_vllm() -> None:
    # 22 sliding + 4 full: groups of 4 layers; 22 sliding layers fill 6 groups with 2
    # padding layers (vLLM logs "Add 2 padding layers"), the 4 full layers one group.
    from hpclaunch.planning.kvspec import kv_layout
    from hpclaunch.planning.modelconfig import info_from_config

    info = info_from_config(_real("gemma-3-1b-it"), "google/gemma-3-1b-it")
    layout = kv_layout(info, tp=1, pp=1, dtype_bytes=2, block_size=16)
    assert len(layout.groups) == 7 and layout.padded_layers == 2
    assert {len(g.layers) for g in layout.groups} == {4, 3}
    assert layout.page_bytes == 16 * 1 * 2 * 256 * 2  # one KV head of 256, K and V, bf16
