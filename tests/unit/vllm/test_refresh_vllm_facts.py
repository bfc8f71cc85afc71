"""scripts/refresh_vllm_facts.py: what it reads from a vLLM source tree or wheel, on a tiny one."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "refresh_vllm_facts.py"
TREE = {
    "vllm/_version.py": "__version__ = version = '9.9.9'\n__commit_id__ = commit_id = 'gabc'\n",
    "vllm/v1/core/kv_cache_utils.py": '''
def log_capacity(n, m, c):
    logger.info_once(
        "%s KV cache size: %s tokens, "
        "Maximum concurrency for %s tokens per request: %.2fx", "GPU", n, m, c)

def check(max_model_len, estimated_max_len):
    estimated_msg = ("Based on the available memory, "
                     f"the estimated maximum model length is {estimated_max_len}. ")
    raise ValueError(f"To serve at least one request with the model's max seq len "
                     f"({max_model_len}), {estimated_msg}")
''',
    "vllm/v1/metrics/loggers.py": '''
class Logger:
    def log(self):
        log_parts = ["Avg prompt throughput: %.1f tokens/s", "Running: %d reqs"]
        if self.preempted:
            log_parts.append("Preemptions: %d")
        log_parts.append("%s KV cache usage: %.1f%%")
        log_fn(self.log_prefix + ", ".join(log_parts), *args)

    def setup(self):
        labelnames = ["model_name", "engine"]
        self._gauge_cls(name="vllm:num_requests_running", labelnames=labelnames)
        self._counter_cls(name="vllm:prompt_tokens", labelnames=labelnames + ["source"])
''',
    "vllm/entrypoints/serve/health.py": '''
@router.get("/health")
async def health(request):
    try:
        return Response(status_code=200)
    except EngineDeadError:
        return Response(status_code=503)
''',
    "vllm/engine/arg_utils.py": '''
def add_cli_args(parser):
    model_kwargs = get_kwargs(ModelConfig)
    parser.add_argument("--tensor-parallel-size", "-tp", type=int)
    parser.add_argument("--max-model-len", **model_kwargs["max_model_len"])
    parser.add_argument("--enable-prefix-caching",
                        **{**model_kwargs["enable_prefix_caching"], "default": None})
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--gpu-memory-utilization", **model_kwargs["gpu_memory_utilization"])
''',
    "vllm/config/model.py": '''
class ModelConfig:
    max_model_len: SkipValidation[int] = None
    enable_prefix_caching: bool | None = True
    gpu_memory_utilization: float = Field(default=0.92, gt=0, le=1)
''',
    "vllm/reasoning/__init__.py": '''
_REASONING_PARSERS_TO_REGISTER = {"deepseek_r1": ("m", "C"), "qwen3": ("m", "D")}
''',
    "vllm/tool_parsers/hermes.py": '''
@ToolParserManager.register_module(["hermes", "hermes2"])
class Hermes:
    pass
''',
    "vllm/tests/test_x.py": 'logger.info("Maximum concurrency for %s tokens per request: x")\n',
}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refresh_vllm_facts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tree(root: Path) -> Path:
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def refresh(script: ModuleType, source: Path, out: Path) -> dict:
    assert script.main([str(source), "--out", str(out), "--data", str(out)]) == 0
    return json.loads((out / "vllm-9.9.9.json").read_text())


def test_a_checkout_gives_format_strings_metrics_routes_and_flags_with_lines(
        script: ModuleType, tmp_path: Path) -> None:
    facts = refresh(script, write_tree(tmp_path / "src"), tmp_path / "out")
    assert facts["_provenance"]["version"] == "9.9.9" and facts["_provenance"]["commit"] == "gabc"
    [site] = facts["logs"]["kv_cache_size"]
    assert site["format"] == ("%s KV cache size: %s tokens, Maximum concurrency for %s tokens "
                              "per request: %.2fx")
    assert (site["file"], site["line"], site["call"], site["style"]) == (
        "vllm/v1/core/kv_cache_utils.py", 3, "logger.info_once", "percent")
    assert "KV cache size" in site["excerpt"]
    assert facts["logs"]["max_concurrency"] == [site]  # the tests/ copy is not vLLM's
    [kv] = facts["logs"]["kv_too_small"]
    assert kv["style"] == "fstring" and "({max_model_len}), {estimated_msg}" in kv["format"]
    assert facts["logs"]["kv_estimate"][0]["format"].endswith("is {estimated_max_len}. ")
    assert facts["stats_line"][0]["parts"] == [
        "Avg prompt throughput: %.1f tokens/s", "Running: %d reqs", "Preemptions: %d",
        "%s KV cache usage: %.1f%%"]
    assert facts["metrics"]["vllm:num_requests_running"][0]["labels"] == ["model_name", "engine"]
    assert facts["metrics"]["vllm:prompt_tokens_total"][0]["labels"] == [
        "model_name", "engine", "source"]
    assert facts["routes"]["/health"]["methods"] == ["GET"]
    assert facts["routes"]["/health"]["status_codes"] == [200, 503]
    assert facts["serve_flags"]["--tensor-parallel-size"]["aliases"] == ["-tp"]
    flags = facts["serve_flags"]
    assert (flags["--max-model-len"]["kind"], flags["--max-model-len"]["field"]) == (
        "value", "ModelConfig.max_model_len")
    assert flags["--max-model-len"]["number_type"] == "int"  # no human_readable_int here
    assert flags["--tensor-parallel-size"]["number_type"] == "int"  # type=int
    assert flags["--enable-prefix-caching"]["kind"] == "bool"
    # no EnableDisableAction in this tree: argparse's --no- form only
    assert flags["--enable-prefix-caching"]["negations"] == ["--no-enable-prefix-caching"]
    assert flags["--headless"]["kind"] == "store_true" and flags["--headless"]["negations"] == []
    gmu = flags["--gpu-memory-utilization"]
    assert (gmu["number_type"], gmu["default"]) == ("float", 0.92)
    assert flags["--enable-prefix-caching"]["default"] is None  # the call overrides True
    assert facts["parsers"] == {"reasoning": ["deepseek_r1", "qwen3"],
                                "tool": ["hermes", "hermes2"]}
    assert "server_version" in facts["_provenance"]["absent"]


def test_a_wheel_gives_the_same_facts_and_its_checksum(script: ModuleType,
                                                       tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src")
    wheel = tmp_path / "vllm-9.9.9-cp38-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        for rel in TREE:
            whl.write(tree / rel, rel)
    from_tree = refresh(script, tree, tmp_path / "a")
    from_wheel = refresh(script, wheel, tmp_path / "b")
    assert from_wheel["_provenance"]["sha256"] and from_wheel["_provenance"]["source"] == wheel.name
    for key in ("logs", "stats_line", "metrics", "routes", "serve_flags", "parsers"):
        assert from_wheel[key] == from_tree[key]
