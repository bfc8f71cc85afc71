"""The bundled model catalogue agrees with real config.json files (tests/data/planner/configs,
each with its source): every entry says what its model's config says, and no entry is
without a stored config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.planning.catalog import _catalog, model_info
from hpclaunch.planning.modelconfig import info_from_config
from hpclaunch.planning.modelinfo import ModelInfo

CONFIGS = Path(__file__).resolve().parents[2] / "data" / "planner" / "configs"

# stored config -> catalogue entries it vouches for. Besides the model itself: fine-tunes and
# distills, which keep their base model's attention shape (DeepSeek's R1 README names each
# distill's base); Thinking and Instruct releases of one Qwen3-VL size, which share one
# config; and a model checked against its own quantised build (see UNVOUCHED).
SOURCES: dict[str, list[str]] = {
    "qwen3-0.6b": ["Qwen/Qwen3-0.6B"],
    "qwen3-1.7b": ["Qwen/Qwen3-1.7B"],
    "qwen3-4b": ["Qwen/Qwen3-4B"],
    "qwen3-8b": ["Qwen/Qwen3-8B"],
    "qwen3-14b": ["Qwen/Qwen3-14B"],
    "qwen3-32b": ["Qwen/Qwen3-32B"],
    "qwen3-vl-2b-instruct": ["Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Thinking"],
    "qwen3-vl-4b-instruct": ["Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Thinking"],
    "qwen3-vl-8b-instruct": ["Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Thinking"],
    "qwen2.5-1.5b-instruct": ["Qwen/Qwen2.5-1.5B-Instruct"],
    # R1-Distill-Qwen-7B: base Qwen2.5-Math-7B, itself trained from Qwen2.5-7B (its model
    # card: base_model Qwen/Qwen2.5-7B) with the same shapes; its context is its own. The
    # 7B's and 14B's safetensors files (listed as 8.0 + 6.2 GB and 3 x 8.1 + 3.3 GB, in GiB, in
    # ZHUI/paddlenlp_model_readme deepseek-ai/*/index.md @ ffc26950e6a9f69fb01d7c9b64607770d729e56b)
    # hold the 7.62 B and 14.8 B bf16 parameters these configs count
    "qwen2.5-7b": ["Qwen/Qwen2.5-7B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"],
    "qwen2.5-14b": ["deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"],
    # R1-Distill-Qwen-32B's safetensors hold 32,763,876,352 BF16 parameters, exactly the count
    # of this Qwen2.5-32B config with its q/k/v biases and norms (the Hub's model listing in
    # daniel-p-green/alain-ai-learning-platform @ 522537bc54b2efa439c7755a8c5dedd6f8b001da,
    # out/research-deepseek-ai-deepseek-r1-distill-qwen-32b/sources/huggingface/model.json)
    "qwen2.5-32b": ["deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"],
    "deepseek-r1-distill-qwen-1.5b": ["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"],
    "llama-3.1-8b": ["meta-llama/Llama-3.1-8B-Instruct",
                     "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"],
    "llama-3.1-70b": ["meta-llama/Llama-3.1-70B-Instruct",
                      "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"],
    "llama-3.2-1b": ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"],
    "llama-3.2-3b": ["meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct"],
    "mistral-7b-instruct-v0.2-awq": ["TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
                                     "mistralai/Mistral-7B-Instruct-v0.2"],
    "mistral-7b-v0.3": ["mistralai/Mistral-7B-Instruct-v0.3"],
    "gpt-oss-120b": ["openai/gpt-oss-120b"],
}

FIELDS = ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "torch_dtype",
          "quantization", "sliding_window", "kinds", "kv_lora_rank")
# Fine-tunes may set their own context: the R1 distill's config says 131072 like its base,
# but Qwen2.5-7B-Instruct's says 32768 where the base Qwen2.5-7B says 131072. Compared for
# the models whose own config is stored only.
CONTEXT_FROM_BASE = {"deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                     "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "Qwen/Qwen2.5-7B-Instruct",
                     "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                     "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
                     "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"}
# What a stored copy cannot vouch for, and why. "weights" compares parameter counts instead
# of bytes (a quantised build stores fewer bytes for the same parameters).
UNVOUCHED: dict[str, dict[str, str]] = {
    "Qwen/Qwen2.5-1.5B-Instruct": {
        "torch_dtype": "the copy was re-saved in float16 by the project that holds it"},
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": {
        "torch_dtype": "the copy's torch_dtype was set to float16 for Ascend NPUs"},
    "mistralai/Mistral-7B-Instruct-v0.2": {
        "torch_dtype": "checked against TheBloke's AWQ build, cast to float16",
        "quantization": "checked against TheBloke's AWQ build",
        "weights": "checked against TheBloke's AWQ build"},
}


def stored(name: str) -> ModelInfo:
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    return info_from_config(cfg, str(cfg["_model_id"]))


def test_every_stored_config_says_where_it_was_found() -> None:
    for path in CONFIGS.glob("*.json"):
        source = json.loads(path.read_text())["_source"]
        assert source["repo"] and source["path"] and len(source["commit"]) == 40, path.name
        assert source.get("note"), path.name


def test_every_catalogue_entry_is_checked_against_a_stored_config() -> None:
    # A new entry needs its config.json in tests/data/planner/configs and a line in SOURCES:
    # the catalogue was once written from memory, and nothing unsourced goes back in.
    vouched = {model_id for ids in SOURCES.values() for model_id in ids}
    catalogue = {info.model_id for info in _catalog().models}
    assert sorted(catalogue - vouched) == []
    assert sorted(vouched - catalogue) == []
    assert {name for name in SOURCES} <= {p.stem for p in CONFIGS.glob("*.json")}
    assert set(UNVOUCHED) <= vouched


@pytest.mark.parametrize(("config", "model_id"),
                         [(c, m) for c, ids in SOURCES.items() for m in ids])
def test_catalogue_entry_matches_the_real_config(config: str, model_id: str) -> None:
    truth, entry = stored(config), model_info(model_id)
    assert entry is not None, f"{model_id} left the catalogue"
    for name in FIELDS:
        if name not in UNVOUCHED.get(model_id, {}):
            assert getattr(entry, name) == getattr(truth, name), f"{model_id}: {name}"
    if model_id not in CONTEXT_FROM_BASE:
        assert entry.max_position_embeddings == truth.max_position_embeddings, model_id


@pytest.mark.parametrize(("config", "model_id"),
                         [(c, m) for c, ids in SOURCES.items() for m in ids])
def test_catalogue_weights_agree_with_the_config_count_within_2_percent(
        config: str, model_id: str) -> None:
    # params_b in the catalogue came from checkpoint sizes, which count tied embeddings
    # twice (Qwen3-0.6B's 1.5 GB file is 1.11 GiB in vLLM: "Model loading took 1.1201 GiB"
    # in vllm-project/vllm#24577); the config count is independent of the files.
    truth, entry = stored(config), model_info(model_id)
    assert entry is not None
    if "weights" in UNVOUCHED.get(model_id, {}):
        assert entry.params_b == pytest.approx(truth.params_b, rel=0.02), model_id
    else:
        assert entry.weight_bytes == pytest.approx(truth.weight_bytes, rel=0.02), model_id
