"""Start-up facts for `stats`: a V0 server, which prints "# GPU blocks: N" and no token count,
still reports its KV cache size in tokens."""

from __future__ import annotations

from hpclaunch.endpoints.stats import startup_facts
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk

# The V0 lines of vllm-project/vllm#10517 (Llama-3.1-8B on an RTX 3090, vLLM 0.6.x).
V0_LOG = (
    "INFO 12-02 10:00:45 gpu_executor.py:113] # GPU blocks: 1952, # CPU blocks: 2048\n"
    "INFO 12-02 10:00:45 gpu_executor.py:117] Maximum concurrency for 20000 tokens per "
    "request: 1.56x\n"
)


def test_v0_block_count_becomes_a_token_count() -> None:
    data = V0_LOG.encode()
    facts = startup_facts(parse(LogChunk.from_bytes(data, b"", len(data))))
    assert facts["kv_cache_tokens_per_engine"] == [1952 * 16]
    assert facts["max_concurrency_per_engine"] == [1.56]
