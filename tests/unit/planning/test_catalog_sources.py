"""The bundled model catalogue agrees with real config.json files (tests/data/planner/configs,
each with its source): every entry listed here says what the model's own config says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.planning.catalog import model_info
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.modelinfo import ModelInfo

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs"

# stored config -> catalogue entries with that architecture (fine-tunes and distills keep
# their base model's attention shape, context length and dtype)
SOURCES: dict[str, list[str]] = {
    "qwen3-0.6b": ["Qwen/Qwen3-0.6B"],
    "qwen3-1.7b": ["Qwen/Qwen3-1.7B"],
    "qwen3-4b": ["Qwen/Qwen3-4B"],
    "qwen3-8b": ["Qwen/Qwen3-8B"],
    "qwen3-14b": ["Qwen/Qwen3-14B"],
    "qwen3-32b": ["Qwen/Qwen3-32B"],
    "qwen2.5-7b": ["Qwen/Qwen2.5-7B-Instruct"],
    "llama-3.1-8b": ["meta-llama/Llama-3.1-8B-Instruct",
                     "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"],
    "llama-3.1-70b": ["meta-llama/Llama-3.1-70B-Instruct",
                      "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"],
    "llama-3.2-1b": ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"],
    "llama-3.2-3b": ["meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct"],
    "mistral-7b-v0.3": ["mistralai/Mistral-7B-Instruct-v0.3"],
    "gpt-oss-120b": ["openai/gpt-oss-120b"],
    # Thinking and Instruct releases of Qwen3-VL share one architecture and config
    "qwen3-vl-2b-instruct": ["Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Thinking"],
    "qwen3-vl-4b-instruct": ["Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Thinking"],
    "qwen3-vl-8b-instruct": ["Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Thinking"],
}

FIELDS = ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "torch_dtype",
          "quantization", "sliding_window", "kinds", "kv_lora_rank")
# Fine-tunes may set their own context: the R1 distill's config says 131072 like its base,
# but Qwen2.5-7B-Instruct's says 32768 where the base Qwen2.5-7B says 131072. Compared for
# the models whose own config is stored only.
CONTEXT_FROM_BASE = {"deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                     "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "Qwen/Qwen2.5-7B-Instruct"}


def stored(name: str) -> ModelInfo:
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    return info_from_config(cfg, str(cfg["_model_id"]))


def test_every_stored_config_says_where_it_was_found() -> None:
    for path in CONFIGS.glob("*.json"):
        source = json.loads(path.read_text())["_source"]
        assert source["repo"] and source["path"] and len(source["commit"]) == 40, path.name


@pytest.mark.parametrize(("config", "model_id"),
                         [(c, m) for c, ids in SOURCES.items() for m in ids])
def test_catalogue_entry_matches_the_real_config(config: str, model_id: str) -> None:
    truth, entry = stored(config), model_info(model_id)
    assert entry is not None, f"{model_id} left the catalogue"
    for name in FIELDS:
        assert getattr(entry, name) == getattr(truth, name), f"{model_id}: {name}"
    if model_id not in CONTEXT_FROM_BASE:
        assert entry.max_position_embeddings == truth.max_position_embeddings, model_id


def test_catalogue_weights_agree_with_the_config_count_within_2_percent() -> None:
    # params_b in the catalogue came from checkpoint sizes, which count tied embeddings
    # twice (Qwen3-0.6B's 1.5 GB file is 1.11 GiB in vLLM: "Model loading took 1.1201 GiB"
    # in vllm-project/vllm#24577); the config count is independent of the files.
    for config, ids in SOURCES.items():
        truth = stored(config)
        for model_id in ids:
            entry = model_info(model_id)
            assert entry is not None
            assert entry.weight_bytes == pytest.approx(truth.weight_bytes, rel=0.02), model_id
