"""The simulated engines: token counting, per-engine counters, /metrics and the replies.

Counters move as requests run, so the stats lines and ``/metrics`` show what a real engine
would: running requests, KV cache usage, token totals.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from hpclaunch.standin.latency import LatencyModel
from hpclaunch.standin.logwriter import Log
from hpclaunch.standin.memory import plan_memory
from hpclaunch.standin.settings import Settings

_WORD = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Deterministic stand-in tokenizer: words and punctuation marks."""
    return len(_WORD.findall(text))


@dataclass
class EngineStats:
    """Counters of one DP engine, as its stats logger and /metrics would show them."""

    rank: int
    prompt_tokens: int = 0
    generation_tokens: int = 0
    running: int = 0
    waiting: int = 0
    running_tokens: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    interval_prompt: int = 0
    interval_generation: int = 0
    interval_requests: int = 0
    was_active: bool = False


class Engines:
    """Request placement over the local DP engines, and the time requests take there.

    Round robin over the engines; at most ``max_num_seqs`` requests run on one engine and
    the rest wait for a slot in arrival order (a threading semaphore wakes waiters first in,
    first out), as vLLM's scheduler queues them. Steps take what the latency model says.
    """

    def __init__(self, ranks: list[int], total_tokens: int, max_num_seqs: int = 256,
                 latency: LatencyModel | None = None) -> None:
        self.stats = [EngineStats(r) for r in ranks]
        self.total_tokens = max(1, total_tokens)
        self.latency = latency or LatencyModel()
        self._slots = {r: threading.Semaphore(max(1, max_num_seqs)) for r in ranks}
        self._lock = threading.Lock()
        self._next = itertools.cycle(range(len(self.stats)))

    def start(self, prompt_tokens: int) -> EngineStats:
        """Place a request: wait for a slot, then for its prefill. Blocks while queued."""
        with self._lock:
            engine = self.stats[next(self._next)]
            engine.waiting += 1
        self._slots[engine.rank].acquire()
        with self._lock:
            engine.waiting -= 1
            engine.running += 1
            engine.running_tokens += prompt_tokens
            engine.prompt_tokens += prompt_tokens
            engine.interval_prompt += prompt_tokens
            engine.interval_requests += 1
            running = engine.running
        delay = self.latency.prefill_seconds(prompt_tokens, running)
        if delay:
            time.sleep(delay)
        return engine

    def token(self, engine: EngineStats) -> None:
        """One decode step of one request (it sleeps as long as the step takes)."""
        delay = self.latency.step_seconds(engine.running)
        if delay:
            time.sleep(delay)
        with self._lock:
            engine.generation_tokens += 1
            engine.interval_generation += 1
            engine.running_tokens += 1

    def finish(self, engine: EngineStats, prompt_tokens: int, generated: int,
               reason: str) -> None:
        with self._lock:
            engine.running -= 1
            engine.running_tokens -= prompt_tokens + generated
            engine.finished[reason] = engine.finished.get(reason, 0) + 1
        self._slots[engine.rank].release()

    def usage(self, engine: EngineStats) -> float:
        return min(1.0, max(0, engine.running_tokens) / self.total_tokens)

    def snapshot_interval(self) -> list[tuple[EngineStats, int, int, bool]]:
        """(engine, prompt tokens, generated tokens, log it?) since the last call.

        Like vLLM, a line is logged while an engine has work, plus one more after it went
        idle (so the log shows throughput falling to zero), then nothing while idle.
        """
        out = []
        with self._lock:
            for e in self.stats:
                active = e.interval_requests > 0 or e.running > 0 or e.interval_generation > 0
                out.append((e, e.interval_prompt, e.interval_generation, active or e.was_active))
                e.was_active = active
                e.interval_prompt = e.interval_generation = e.interval_requests = 0
        return out


class Simulation:
    """The state requests see: settings, memory, engine counters and the health flags.

    The HTTP server reads it; :class:`hpclaunch.standin.process.StandIn` adds the start-up
    and shutdown around it.
    """

    def __init__(self, settings: Settings, log: Log) -> None:
        self.s = settings
        self.log = log
        self.mem = plan_memory(settings)
        # The head's API server fronts every engine, those of headless nodes included.
        ranks = list(range(settings.dp)) if not settings.headless \
            else list(range(settings.dp_start, settings.dp_start + settings.dp_local))
        latency = LatencyModel(settings.token_delay, settings.batch_saturation,
                               settings.prefill_delay)
        self.engines = Engines(ranks, self.mem.tokens, settings.max_num_seqs, latency)
        self.stop = threading.Event()
        self.signalled = False  # set by the SIGTERM/SIGINT handler
        self.dead = threading.Event()
        self.hung = threading.Event()
        self._record_lock = threading.Lock()
        self.created = int(time.time())

    def workers(self, rank: int) -> list[str]:
        """Process names that load weights for one engine (vLLM names TP/PP workers)."""
        if self.s.tp * self.s.pp == 1:
            return [f"EngineCore_DP{rank}"]
        names = []
        for p in range(self.s.pp):
            for t in range(self.s.tp):
                name = "Worker"
                if self.s.dp > 1:
                    name += f"_DP{rank}"
                if self.s.pp > 1:
                    name += f"_PP{p}"
                names.append(f"{name}_TP{t}" if self.s.tp > 1 else name)
        return names

    def record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        path = self.s.record_path
        if not path:
            return
        entry = {
            "time": time.time(),
            "method": handler.command,
            "path": handler.path,
            "model": (body or {}).get("model") if isinstance(body, dict) else None,
            "authorization": handler.headers.get("Authorization"),
        }
        with self._record_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self.s.api_keys:
            return True
        header = handler.headers.get("Authorization") or ""
        return header in {f"Bearer {k}" for k in self.s.api_keys}

    def metrics(self) -> str:
        name = self.s.served_names[0]
        out: list[str] = []

        def family(metric: str, kind: str, help_text: str, values: list[tuple[str, float]]
                   ) -> None:
            out.append(f"# HELP {metric} {help_text}")
            out.append(f"# TYPE {metric} {kind}")
            for labels, value in values:
                out.append(f"{metric}{{{labels}}} {float(value)}")

        engines = self.engines.stats

        def lab(e: EngineStats, extra: str = "") -> str:
            return f'{extra}engine="{e.rank}",model_name="{name}"'

        family("vllm:num_requests_running", "gauge",
               "Number of requests in model execution batches.",
               [(lab(e), e.running) for e in engines])
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               [(lab(e), e.waiting) for e in engines])
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               [(lab(e), self.engines.usage(e)) for e in engines])
        family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
               [(lab(e), e.prompt_tokens) for e in engines])
        family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
               [(lab(e), e.generation_tokens) for e in engines])
        family("vllm:request_success_total", "counter",
               "Count of successfully processed requests.",
               [(lab(e, f'finished_reason="{reason}",'), e.finished.get(reason, 0))
                for e in engines for reason in ("stop", "length")])
        blocks = self.mem.tokens // self.s.block_size
        family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig",
               [(f'block_size="{self.s.block_size}",cache_dtype="{self.s.kv_cache_dtype}",'
                 f'engine="{e.rank}",gpu_memory_utilization="{self.s.gpu_util}",'
                 f'num_gpu_blocks="{blocks}"', 1) for e in engines])
        return "\n".join(out) + "\n"

    def models_body(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": served, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.s.model, "parent": None, "max_model_len": self.mem.max_model_len,
            "permission": [{
                "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                "created": self.created, "allow_create_engine": False, "allow_sampling": True,
                "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                "allow_fine_tuning": False, "organization": "*", "group": None,
                "is_blocking": False,
            }],
        } for served in self.s.served_names]}

    def generate(self, prompt_tokens: int, last_text: str, max_tokens: int | None
                 ) -> tuple[list[str], list[str], str]:
        """(reasoning pieces, answer pieces, finish reason) for a request.

        The answer echoes the last user message, so tests can check what arrived; pieces are
        "tokens" (a word with its trailing space) and the answer is cut at ``max_tokens``.
        """
        reasoning = []
        if self.s.reasoning_parser:
            reasoning = re.findall(r"\S+\s*", "The user asked me to repeat their message.")
        answer = re.findall(r"\S+\s*", f"You said: {last_text or '(nothing)'}")
        budget = max_tokens if max_tokens is not None else \
            max(1, self.mem.max_model_len - prompt_tokens)
        if len(reasoning) >= budget:
            return reasoning[:budget], [], "length"
        budget -= len(reasoning)
        if len(answer) > budget:
            return reasoning, answer[:budget], "length"
        return reasoning, answer, "stop"
