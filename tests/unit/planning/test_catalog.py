"""The model catalogue: short names, aliases and the facts of the models researchers serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.errors import UserError
from hpclaunch.planning.catalog import catalog_names, model_info, resolve_model_id
from hpclaunch.planning.modelinfo import ModelInfo
from hpclaunch.vllm.flags.catalogue import parser_names

REQUIRED_CATALOG = [
    "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "Qwen/Qwen3-14B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen/Qwen3-VL-2B-Thinking", "Qwen/Qwen3-VL-4B-Thinking", "Qwen/Qwen3-VL-8B-Thinking",
    "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.3",
    "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
]


def _all_catalog() -> list[ModelInfo]:
    infos = [model_info(name) for name in catalog_names()]
    return [i for i in infos if i is not None]


# ----------------------------------------------------------------- resolve_model_id


def test_a_catalog_alias_resolves_to_the_full_id_whatever_its_case() -> None:
    assert resolve_model_id("Qwen3-VL-2B") == "Qwen/Qwen3-VL-2B-Instruct"
    assert resolve_model_id("qwen3-vl-2b") == "Qwen/Qwen3-VL-2B-Instruct"
    assert resolve_model_id("  deepseek-r1-distill-qwen-7b ") == \
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_any_org_slash_name_id_is_passed_through_untouched() -> None:
    # vLLM accepts any Hub id; private or new models must not be blocked by our catalog.
    assert resolve_model_id("my-lab/secret-model-v9") == "my-lab/secret-model-v9"
    assert resolve_model_id("qwen/qwen3-8b") == "qwen/qwen3-8b"


def test_an_existing_local_directory_is_returned_as_given(tmp_path: Path) -> None:
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    assert resolve_model_id(str(model_dir)) == str(model_dir)


def test_a_missing_local_path_is_a_user_error_not_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_id(str(tmp_path / "nope"))


def test_an_unknown_bare_name_lists_the_nearest_catalog_names() -> None:
    with pytest.raises(UserError) as err:
        resolve_model_id("Qwen3-VL-2B-Instruc")
    message = str(err.value)
    assert "Qwen3-VL-2B-Instruct" in message
    assert "org/name" in message  # and says what else would work
    assert "\n" not in message


def test_an_unknown_name_with_nothing_close_still_says_what_to_do() -> None:
    with pytest.raises(UserError, match="Hugging Face id"):
        resolve_model_id("zzzzqqqq")


# ----------------------------------------------------------------- the bundled catalog


@pytest.mark.parametrize("model_id", REQUIRED_CATALOG)
def test_the_catalog_knows_the_models_researchers_serve(model_id: str) -> None:
    info = model_info(model_id)
    assert info is not None and info.model_id == model_id


def test_qwen3_vl_2b_has_the_text_models_attention_shape() -> None:
    info = model_info("Qwen3-VL-2B")
    assert info is not None
    assert (info.num_layers, info.num_attention_heads, info.num_kv_heads, info.head_dim) == \
        (28, 16, 8, 128)
    assert info.max_position_embeddings == 262144
    assert info.torch_dtype == "bfloat16"
    assert info.vision and not info.reasoning


def test_every_catalog_entry_is_internally_consistent() -> None:
    infos = _all_catalog()
    assert len({i.model_id for i in infos}) >= len(REQUIRED_CATALOG)
    for info in infos:
        assert info.num_attention_heads % info.num_kv_heads == 0, info.model_id
        assert info.head_dim in (64, 128, 256), info.model_id
        assert info.params_b > 0.3, info.model_id
        assert info.max_position_embeddings >= 32768, info.model_id
        assert info.reasoning == (info.reasoning_parser is not None), info.model_id


def test_every_catalog_reasoning_parser_is_registered_in_vllm() -> None:
    # The guides' "deepseek-r1" is not a vLLM parser; the catalog must use real names.
    registered = set((parser_names("0.33.0") or {})["reasoning"])
    parsers = {i.reasoning_parser for i in _all_catalog() if i.reasoning_parser}
    assert parsers and parsers <= registered
    r1 = model_info("DeepSeek-R1-Distill-Llama-8B")
    assert r1 is not None and r1.reasoning_parser == "deepseek_r1"


def test_thinking_and_instruct_variants_differ_only_in_reasoning() -> None:
    instruct = model_info("Qwen/Qwen3-VL-4B-Instruct")
    thinking = model_info("Qwen/Qwen3-VL-4B-Thinking")
    assert instruct is not None and thinking is not None
    assert (instruct.reasoning, thinking.reasoning) == (False, True)
    assert thinking.reasoning_parser == "qwen3"
    assert instruct.num_layers == thinking.num_layers


def test_catalog_names_are_short_names_that_resolve() -> None:
    names = catalog_names()
    assert "Qwen3-VL-2B" in names
    for name in names:
        assert "/" not in name
        assert "/" in resolve_model_id(name)


# ----------------------------------------------------------------- weight bytes


def test_unquantized_weights_cost_two_bytes_per_parameter() -> None:
    info = model_info("meta-llama/Llama-3.1-8B-Instruct")
    assert info is not None
    assert info.weight_bytes == pytest.approx(info.params_b * 1e9 * 2, rel=1e-6)


def test_awq_weights_are_about_half_a_byte_per_parameter_plus_overhead() -> None:
    awq = model_info("TheBloke/Mistral-7B-Instruct-v0.2-AWQ")
    full = model_info("mistralai/Mistral-7B-Instruct-v0.2")
    assert awq is not None and full is not None
    assert awq.quantization == "awq"
    # The real checkpoint is 4.15 GB of safetensors.
    assert awq.weight_bytes == pytest.approx(4.15e9, rel=0.05)
    assert 0.25 < awq.weight_bytes / full.weight_bytes < 0.35


def test_float32_checkpoints_are_counted_at_16_bit_as_vllm_serves_them() -> None:
    info = ModelInfo(model_id="x/y", family="llama", params_b=1.0, torch_dtype="float32",
                     num_layers=2, num_attention_heads=4, num_kv_heads=4, head_dim=64,
                     max_position_embeddings=4096)
    assert info.weight_bytes == 2 * 10**9
