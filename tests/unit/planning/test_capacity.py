"""The planner reproduces what vLLM prints, from the model's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.planning import kv
from hpclaunch.planning.capacity import capacity, report_for_plan
from hpclaunch.planning.catalog import model_info
from hpclaunch.planning.plan import build
from hpclaunch.planning.presets import load_preset
from hpclaunch.planning.settings import ServeSettings, settings_from_flags


def plan_for(model: str, preset: str, **overrides: object):
    cluster = ClusterProfile(name="test", scheduler="slurm", gpus_per_node=4)
    return build(model=model, preset=load_preset(preset), cluster=cluster, name="x",
                 overrides=dict(overrides))


def test_guide_data_point_qwen3_vl_2b() -> None:
    # Guide 003: "Available KV cache: 37.15 GB per GPU ... Maximum concurrency: 8.49 requests
    # per GPU @ 40K context", vLLM printing
    # "GPU KV cache size: 347,808 tokens, Maximum concurrency for 40,960 tokens per request: 8.49x"
    report = report_for_plan(plan_for("Qwen/Qwen3-VL-2B-Thinking", "vl-dp4"), kv_cache_gib=37.15)
    assert report.max_concurrency == pytest.approx(8.49, rel=0.01)
    assert report.concurrency_line == \
        "Maximum concurrency for 40,960 tokens per request: 8.49x"
    assert report.kv_cache_size_line == ("GPU KV cache size: 347,808 tokens, Maximum "
                                         "concurrency for 40,960 tokens per request: 8.49x")
    assert report.kv_bytes_per_token == 114_688
    # The guide's rule: capacity x DP rounded down (8.49 x 4 = 33.96 -> 33).
    assert report.recommended_max_num_seqs == 33
    assert report.per_engine_max_num_seqs == 8
    assert report.dp == 4 and report.gpus == 4


def test_vision_models_do_not_need_4x_kv() -> None:
    # Guide 003 says VL models use "3-4x more KV cache" than text models of the same size.
    # Qwen3-VL-2B's language model has Qwen3-1.7B's attention shape: the same bytes per token.
    vl = model_info("Qwen/Qwen3-VL-2B-Instruct")
    text = model_info("Qwen/Qwen3-1.7B")
    assert vl is not None and text is not None and vl.vision and not text.vision
    assert kv.kv_bytes_per_token(vl) == kv.kv_bytes_per_token(text) == 114_688
    report = report_for_plan(plan_for("Qwen/Qwen3-VL-2B-Instruct", "vl-dp4"), kv_cache_gib=37.15)
    assert any("4x more KV cache' is wrong" in a for a in report.assumptions)


def test_second_real_data_point_glm_4_1v(tmp_path: Path) -> None:
    # vLLM 0.11 serving zai-org/GLM-4.1V-9B-Thinking (tests/data/logs/ok_v011.log):
    # "Available KV cache memory: 16.23 GiB", "GPU KV cache size: 425,424 tokens",
    # "Maximum concurrency for 65,536 tokens per request: 6.49x". Its text model: 40 layers,
    # 2 KV heads of 128 (40,960 B per token; 425,424 x 40,960 B = 16.229 GiB, as printed).
    local = tmp_path / "GLM-4.1V-9B-Thinking"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({
        "model_type": "glm4v", "vision_config": {"hidden_size": 1536, "depth": 24},
        "text_config": {"model_type": "glm4v_text", "hidden_size": 4096,
                        "num_hidden_layers": 40, "num_attention_heads": 32,
                        "num_key_value_heads": 2, "head_dim": 128,
                        "max_position_embeddings": 65536, "torch_dtype": "bfloat16",
                        "intermediate_size": 13696, "vocab_size": 151552}}))
    report = report_for_plan(plan_for(str(local), "single-gpu", **{"max-model-len": 65536}),
                             kv_cache_gib=16.23)
    assert report.kv_bytes_per_token == 40_960
    assert report.kv_tokens == pytest.approx(425_424, rel=0.001)
    assert report.max_concurrency == pytest.approx(6.49, rel=0.01)


def test_tensor_parallel_splits_kv_heads_and_replicates_when_too_few() -> None:
    info = model_info("Qwen/Qwen2.5-1.5B-Instruct")  # 2 KV heads
    assert info is not None
    one = capacity(info, model_id=info.model_id, tp=1, kv_cache_bytes=10 * kv.GiB)
    two = capacity(info, model_id=info.model_id, tp=2, kv_cache_bytes=10 * kv.GiB)
    four = capacity(info, model_id=info.model_id, tp=4, kv_cache_bytes=10 * kv.GiB)
    assert two.kv_bytes_per_token == one.kv_bytes_per_token // 2
    assert four.kv_bytes_per_token == two.kv_bytes_per_token  # one head per rank, replicated


def test_fp8_kv_cache_halves_bytes_per_token() -> None:
    info = model_info("meta-llama/Llama-3.1-8B-Instruct")
    assert info is not None
    auto = capacity(info, model_id=info.model_id, kv_cache_bytes=20 * kv.GiB,
                    settings=ServeSettings(max_model_len=32768))
    fp8 = capacity(info, model_id=info.model_id, kv_cache_bytes=20 * kv.GiB,
                   settings=ServeSettings(max_model_len=32768, kv_cache_dtype="fp8"))
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.max_concurrency == pytest.approx(2 * auto.max_concurrency, rel=0.001)


def test_estimate_without_reported_memory_names_its_assumptions() -> None:
    report = report_for_plan(plan_for("meta-llama/Llama-3.1-70B-Instruct", "tp4-throughput"),
                             gpu="H100-80GB")
    assert report.kv_cache_source == "estimated"
    assert report.gpu == "H100-80GB" and report.tp == 4
    # 70.6 B params x 2 B / 4 GPUs
    assert report.weights_per_gpu_bytes == pytest.approx(70.554e9 * 2 / 4, rel=0.01)
    # 2 x 80 layers x (8 KV heads / 4) x 128 x 2 B
    assert report.kv_bytes_per_token == 81_920
    assert report.max_model_len == 131_072 and "model's limit" in report.max_model_len_source
    text = "\n".join(report.assumptions)
    assert "gpu-memory-utilization 0.95" in text and "activation peak" in text
    assert "CUDA graphs" in text and "--kv-cache-gib" in text
    assert report.max_concurrency is not None and 1 < report.max_concurrency < 10


def test_enforce_eager_frees_the_cuda_graph_pool() -> None:
    with_graphs = report_for_plan(plan_for("Qwen3-4B", "tp4-lowlatency"), gpu="A100-80GB")
    eager = report_for_plan(plan_for("Qwen3-4B", "tp4-debug"), gpu="A100-80GB")
    assert eager.kv_cache_bytes is not None and with_graphs.kv_cache_bytes is not None
    assert eager.kv_cache_bytes > with_graphs.kv_cache_bytes


def test_without_a_gpu_it_says_what_is_missing_instead_of_guessing() -> None:
    report = report_for_plan(plan_for("Qwen3-4B", "dp4-throughput"))
    assert report.kv_bytes_per_token == 147_456
    assert report.kv_cache_bytes is None and report.max_concurrency is None
    assert any("--gpu" in note for note in report.notes)
    assert report.recommended_max_num_seqs is None


def test_unknown_gpu_name_from_the_user_is_an_error_listing_known_ones() -> None:
    with pytest.raises(UserError, match="H100-80GB"):
        report_for_plan(plan_for("Qwen3-4B", "dp4-throughput"), gpu="H1000")


def test_ambiguous_gpu_type_in_the_profile_is_a_note_not_a_guess() -> None:
    cluster = ClusterProfile(name="t", scheduler="slurm", gpus_per_node=4, gpu_type="a100")
    plan = build(model="Qwen3-4B", preset=load_preset("dp4-throughput"), cluster=cluster)
    report = report_for_plan(plan)
    assert report.gpu is None
    assert any("a100" in n and "--gpu" in n and "gpu_model" in n for n in report.notes)


def test_profile_gpu_model_is_what_memory_is_planned_for() -> None:
    # gpu_type stays the scheduler's gres name; gpu_model says which GPU that is.
    cluster = ClusterProfile(name="t", scheduler="slurm", gpus_per_node=4, gpu_type="a100",
                             gpu_model="A100-40GB")
    plan = build(model="Qwen3-4B", preset=load_preset("dp4-throughput"), cluster=cluster)
    assert report_for_plan(plan).gpu == "A100-40GB"
    assert report_for_plan(plan, gpu="H100-80GB").gpu == "H100-80GB"  # --gpu wins
    typo = ClusterProfile(name="t", scheduler="slurm", gpus_per_node=4, gpu_model="A100-4GB")
    plan = build(model="Qwen3-4B", preset=load_preset("dp4-throughput"), cluster=typo)
    with pytest.raises(UserError, match="gpu_model"):
        report_for_plan(plan)


def test_max_model_len_auto_fits_the_cache() -> None:
    report = report_for_plan(plan_for("Qwen/Qwen3-VL-2B-Instruct", "single-gpu",
                                      **{"max-model-len": "auto"}), kv_cache_gib=3.0)
    tokens = report.kv_tokens
    # vLLM 0.33 auto-fits against the pool less the null block: one block below the pool.
    assert tokens is not None and report.max_model_len == report.max_model_len_that_fits
    assert tokens - 16 <= report.max_model_len < tokens < 262_144
    assert report.fits and report.max_concurrency == pytest.approx(1.0, abs=1e-3)


def test_unknown_model_reports_layout_and_what_is_missing() -> None:
    report = report_for_plan(plan_for("someorg/unknown-model", "tp2dp2-throughput"),
                             gpu="H100-80GB")
    assert (report.dp, report.tp, report.gpus) == (2, 2, 4)
    assert report.kv_bytes_per_token is None and report.max_concurrency is None
    assert any("config.json" in n for n in report.notes)


def test_hybrid_models_whose_layer_kinds_are_unknown_get_no_estimate() -> None:
    info = model_info("Qwen/Qwen3-4B")
    assert info is not None
    from dataclasses import replace

    hybrid = replace(info, sliding_window_or_hybrid=True, model_id="x/mamba-like")
    report = capacity(hybrid, model_id="x/mamba-like", kv_cache_bytes=10 * kv.GiB)
    assert report.max_concurrency is None and report.fits is None
    assert any("not modelled" in n for n in report.notes)


def test_settings_read_aliases_and_human_numbers() -> None:
    s = settings_from_flags(["-q", "awq", "--max_model_len", "32K", "--max-num-seqs=9",
                             "--kv-cache-dtype", "fp8", "--enforce-eager"], "0.33.0")
    assert (s.quantization, s.max_model_len, s.max_num_seqs) == ("awq", 32768, 9)
    assert s.kv_cache_dtype == "fp8" and s.enforce_eager


def test_lines_show_every_figure_the_issue_asks_for() -> None:
    report = report_for_plan(plan_for("Qwen/Qwen3-VL-2B-Thinking", "vl-dp4"), kv_cache_gib=37.15)
    text = "\n".join(report.lines())
    for needle in ("DP 4 x TP 1 x PP 1 = 4 GPUs", "4 per node, 1 node", "weights per GPU",
                   "KV per token:       114,688 B", "KV tokens/engine:   347,808",
                   "Maximum concurrency for 40,960 tokens per request: 8.49x",
                   "33 recommended", "assumptions:"):
        assert needle in text


def test_recurrent_layers_of_an_unmodelled_family_are_refused_not_guessed() -> None:
    info = model_info("Qwen/Qwen3-4B")
    assert info is not None
    from dataclasses import replace

    kinds = tuple("full" if i % 4 == 3 else "linear" for i in range(info.num_layers))
    hybrid = replace(info, layer_types=kinds, sliding_window_or_hybrid=True,
                     model_id="x/qwen3-next-like")
    report = capacity(hybrid, model_id="x/qwen3-next-like", kv_cache_bytes=10 * kv.GiB)
    assert report.kv_tokens is None and report.fits is None
    assert any("recurrent" in n and "not modelled" in n for n in report.notes)
