"""Start-up facts for `stats`: a V0 server, which prints "# GPU blocks: N" and no token count,
still reports its KV cache size in tokens, and in GiB from its memory profiling summary."""

from __future__ import annotations

from hpclaunch.endpoints.stats import startup_facts
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk

# The V0 lines of vllm-project/vllm#10517 (Llama-3.1-8B on an RTX 3090, vLLM 0.6.x).
V0_LOG = (
    "INFO 12-02 10:00:45 worker.py:232] Memory profiling results: total_gpu_memory=23.58GiB "
    "initial_memory_usage=15.34GiB peak_torch_memory=17.06GiB memory_usage_post_profile=15.35GiB"
    " non_torch_memory=0.35GiB kv_cache_size=3.81GiB gpu_memory_utilization=0.90\n"
    "INFO 12-02 10:00:45 gpu_executor.py:113] # GPU blocks: 1952, # CPU blocks: 2048\n"
    "INFO 12-02 10:00:45 gpu_executor.py:117] Maximum concurrency for 20000 tokens per "
    "request: 1.56x\n"
)


def test_v0_block_count_becomes_a_token_count() -> None:
    data = V0_LOG.encode()
    facts = startup_facts(parse(LogChunk.from_bytes(data, b"", len(data))))
    assert facts["kv_cache_tokens_per_engine"] == [1952 * 16]
    assert facts["max_concurrency_per_engine"] == [1.56]


def test_v0_profiling_summary_gives_the_kv_size_in_gib() -> None:
    # 0.6 says "kv_cache_size=3.81GiB"; 0.7-0.8 say "the rest of the memory reserved for KV
    # Cache is 54.97GiB." (checked against 0.8.5's format string in tests/unit/vllm).
    data = V0_LOG.encode()
    facts = startup_facts(parse(LogChunk.from_bytes(data, b"", len(data))))
    assert facts["kv_cache_gib"] == [3.81]
    assert facts["kv_cache_tokens_per_engine"] == [31232]


def test_a_kv_cache_size_that_is_not_a_gib_figure_is_not_memory() -> None:
    line = "INFO 12-02 10:00:45 x.py:1] config: kv_cache_size=None, kv_cache_dtype=auto\n"
    facts = startup_facts(parse(LogChunk.from_bytes(line.encode(), b"", len(line))))
    assert "kv_cache_gib" not in facts


def test_v0_0_8_profiling_summary_line_gives_the_kv_size_in_gib() -> None:
    # A real 0.8 V0 worker line, from vllm-project/vllm#14447 (4 x RTX 3090, TP=4).
    line = ("(VllmWorkerProcess pid=521) INFO 04-12 08:21:19 [worker.py:267] model weights take "
            "21.21GiB; non_torch_memory takes 0.20GiB; PyTorch activation peak memory takes "
            "0.37GiB; the rest of the memory reserved for KV Cache is 1.57GiB.\n")
    facts = startup_facts(parse(LogChunk.from_bytes(line.encode(), b"", len(line))))
    assert facts["kv_cache_gib"] == [1.57]
