"""Presets: every guide configuration loads, renders to flags today's vLLM accepts, follows the
naming scheme, and gets its model-dependent values from the model, not from the guide."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.planning.plan import build, render_flags
from hpclaunch.planning.presets import draft_model_for, load_preset, preset_names
from hpclaunch.vllm.flags.check import check_args

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "presets" / "flags.txt"

# A model each preset is meant for (its "requires:" holds for it).
LLAMA_AWQ_CONFIG = {  # casperhansen/llama-3.1-8b-instruct-awq's config.json, abridged
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 131072, "vocab_size": 128256,
    "torch_dtype": "float16",
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
}
EXAMPLE_MODEL = {
    "awq-dp4-memory": "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "mistral7b-awq-32k": "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "mistral7b-awq-32k-fp8kv": "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "mistral7b-awq-32k-offload": "TheBloke/Mistral-7B-Instruct-v0.2-AWQ",
    "rtx5090-extended-awq": "<llama-3.1-8b-awq>",
    "reasoning-dp4": "Qwen/Qwen3-VL-2B-Thinking",
    "vl-dp4": "Qwen/Qwen3-VL-2B-Instruct",
    "specdec-dp4": "Qwen/Qwen3-8B",
    "tp4-throughput": "meta-llama/Llama-3.1-70B-Instruct",
    "tp4-lowlatency-large": "meta-llama/Llama-3.1-70B-Instruct",
    "tp2dp2-throughput": "meta-llama/Llama-3.1-8B-Instruct",
    "tp2-balanced": "meta-llama/Llama-3.1-8B-Instruct",
    "rtx5090-fast": "meta-llama/Llama-3.1-8B-Instruct",
    "rtx5090-balanced": "meta-llama/Llama-3.1-8B-Instruct",
    "rtx5090-high-concurrency": "meta-llama/Llama-3.1-8B-Instruct",
    "rtx5090-fp8-throughput": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "rtx4090-small": "Qwen/Qwen2.5-1.5B-Instruct",
    "rtx4090-balanced": "Qwen/Qwen2.5-7B-Instruct",
}
DEFAULT_MODEL = "Qwen/Qwen3-4B"

# The configurations the guides in /work/shared/seeds describe, by the name each got.
GUIDE_PRESETS = {
    # 003: small models, medium, large, special configurations
    "dp4-throughput", "tp2dp2-balanced", "tp4-lowlatency", "tp4-debug", "tp2dp2-throughput",
    "tp2-balanced", "tp4-throughput", "tp4-lowlatency-large", "vl-dp4", "reasoning-dp4",
    "awq-dp4-memory", "longctx-dp2", "specdec-dp4",
    # 000: RTX 5090 profiles; 001: the RTX 5090 FP8 service
    "rtx5090-fast", "rtx5090-balanced", "rtx5090-extended-awq", "rtx5090-high-concurrency",
    "rtx5090-fp8-throughput",
    # 002: RTX 4090; 004: Mistral-7B AWQ at 32k
    "rtx4090-small", "rtx4090-balanced",
    "mistral7b-awq-32k", "mistral7b-awq-32k-fp8kv", "mistral7b-awq-32k-offload",
}
NAME_SCHEME = re.compile(
    r"^(?:(?:vl|reasoning|awq|longctx|specdec)-)?(?:tp\d+)?(?:pp\d+)?(?:dp\d+)?"
    r"(?:-(?:throughput|balanced|lowlatency|debug|memory)(?:-large)?)?(?:-\d+nodes)?$"
    r"|^(?:rtx\d{4}|mistral7b-awq)-[a-z0-9-]+$|^single-gpu$"
)


def example_model(name: str, tmp_path: Path) -> str:
    model = EXAMPLE_MODEL.get(name, DEFAULT_MODEL)
    if model == "<llama-3.1-8b-awq>":
        local = tmp_path / "llama-3.1-8b-instruct-awq"
        local.mkdir(exist_ok=True)
        (local / "config.json").write_text(json.dumps(LLAMA_AWQ_CONFIG))
        return str(local)
    return model


def cluster(**kw: object) -> ClusterProfile:
    return ClusterProfile(name="test", scheduler="slurm", gpus_per_node=4, **kw)  # type: ignore[arg-type]


def test_every_guide_configuration_is_a_preset() -> None:
    assert set(preset_names()) >= GUIDE_PRESETS


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_with_description_when_and_a_scheme_name(name: str) -> None:
    preset = load_preset(name)
    assert preset.description and "\n" not in preset.description
    assert len(preset.when) > 40, "say when to use it, and where it comes from"
    assert NAME_SCHEME.match(name), f"{name} does not follow the naming scheme in README"
    layout = next((part for part in name.split("-")
                   if part and re.fullmatch(r"(tp\d+)?(pp\d+)?(dp\d+)?", part)), None)
    if layout:  # the name's layout is the preset's layout
        for axis in ("tp", "pp", "dp"):
            match = re.search(rf"{axis}(\d+)", layout)
            assert preset.layout[axis] == (int(match.group(1)) if match else 1), name
    else:
        assert preset.gpus == 1, f"{name}: a multi-GPU preset names its layout"


@pytest.mark.parametrize("name", [n for n in preset_names() if load_preset(n).layout["dp"] > 1])
def test_data_parallel_presets_keep_per_engine_stats(name: str) -> None:
    # vLLM 0.33 turns the "Engine 000" stats lines off with more than one API server,
    # and api-server-count defaults to the DP size.
    assert load_preset(name).vllm.get("api-server-count") == 1


@pytest.mark.parametrize("name", preset_names())
def test_preset_renders_flags_current_vllm_accepts(name: str, tmp_path: Path) -> None:
    plan = build(model=example_model(name, tmp_path), preset=load_preset(name),
                 cluster=cluster(), name="x")
    assert check_args(list(plan.vllm_flags), "0.33.0") == []
    assert "auto" not in " ".join(plan.vllm_flags).replace("kv-cache-dtype auto", "")
    assert plan.gpus == load_preset(name).gpus


def test_rendered_flags_match_golden(tmp_path: Path, update_golden: bool) -> None:
    lines = []
    for name in preset_names():
        preset = load_preset(name)
        lines.append(f"{name}: {' '.join(render_flags(preset.layout, preset.vllm))}")
    text = "\n".join(lines) + "\n"
    if update_golden:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"no golden file {GOLDEN}; create it with pytest --update-golden"
    assert text == GOLDEN.read_text(), (
        "preset flags changed; if intended: "
        "pytest tests/unit/planning/test_presets.py --update-golden")


def test_speculative_decoding_uses_todays_json_with_a_draft_of_the_same_family() -> None:
    plan = build(model="Qwen3-8B", preset=load_preset("specdec-dp4"), cluster=cluster())
    flags = list(plan.vllm_flags)
    assert "--speculative-model" not in flags and "--num-speculative-tokens" not in flags
    spec = json.loads(flags[flags.index("--speculative-config") + 1])
    assert spec == {"model": "Qwen/Qwen3-0.6B", "num_speculative_tokens": 5}


@pytest.mark.parametrize(("target", "draft"), [
    ("Qwen/Qwen3-32B", "Qwen/Qwen3-0.6B"),
    ("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.2-1B-Instruct"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    # same family name, other tokenizer: a Llama distill never drafts with a Qwen one
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
    ("mistralai/Mistral-7B-Instruct-v0.3", None),
    ("Qwen/Qwen3-VL-8B-Instruct", None),
])
def test_draft_model_choice(target: str, draft: str | None) -> None:
    assert draft_model_for(target) == draft


def test_no_draft_is_a_clear_error_naming_the_set() -> None:
    with pytest.raises(UserError, match=r"speculative-config=.*num_speculative_tokens"):
        build(model="mistralai/Mistral-7B-Instruct-v0.3", preset=load_preset("specdec-dp4"),
              cluster=cluster())


@pytest.mark.parametrize(("model", "parser"), [
    ("Qwen/Qwen3-VL-2B-Thinking", "qwen3"),
    ("Qwen3-4B", "qwen3"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek_r1"),  # vLLM's name, not deepseek-r1
])
def test_reasoning_parser_comes_from_the_model_family(model: str, parser: str) -> None:
    plan = build(model=model, preset=load_preset("reasoning-dp4"), cluster=cluster())
    assert plan.flag_value("reasoning-parser") == parser


def test_reasoning_preset_on_a_model_that_does_not_reason_says_what_to_do() -> None:
    with pytest.raises(UserError, match="does not think.*dp4-throughput.*--set reasoning-parser"):
        build(model="Qwen/Qwen3-VL-2B-Instruct", preset=load_preset("reasoning-dp4"),
              cluster=cluster())


def test_reasoning_parser_for_a_model_unknown_offline_asks_for_it() -> None:
    with pytest.raises(UserError, match="no config.json.*--set reasoning-parser=NAME"):
        build(model="someorg/private-thinker", preset=load_preset("reasoning-dp4"),
              cluster=cluster())


def test_an_explicit_parser_wins_over_auto() -> None:
    plan = build(model="someorg/private-thinker", preset=load_preset("reasoning-dp4"),
                 cluster=cluster(), overrides={"reasoning-parser": "deepseek_r1"})
    assert plan.flag_value("reasoning-parser") == "deepseek_r1"


def write_user_preset(home: Path, name: str, text: str) -> None:
    presets = home / "config" / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    (presets / f"{name}.yaml").write_text(text)


def test_a_preset_may_not_set_the_gpu_count(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    write_user_preset(tmp_path, "eight", "description: x\nlayout: {dp: 8}\n"
                                         "resources: {gpus-per-node: 8}\n")
    with pytest.raises(UserError, match="does not set the GPU count.*cluster profile"):
        load_preset("eight")


def test_requires_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    write_user_preset(tmp_path, "odd", "description: x\nrequires: {gpu: h100}\n")
    with pytest.raises(UserError, match=r"requires\.gpu: unknown key.*quantization"):
        load_preset("odd")
    write_user_preset(tmp_path, "odd", "description: x\nrequires: {reasoning: yes-please}\n")
    with pytest.raises(UserError, match=r"requires\.reasoning: expected true or false"):
        load_preset("odd")


def test_user_preset_overrides_builtin_of_the_same_name(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    write_user_preset(tmp_path, "vl-dp4", "description: site tuned\nlayout: {dp: 2}\n"
                                          "vllm: {max-num-seqs: 20, api-server-count: 1}\n")
    preset = load_preset("vl-dp4")
    assert preset.description == "site tuned" and preset.layout["dp"] == 2
    assert preset.source.startswith(str(tmp_path))
