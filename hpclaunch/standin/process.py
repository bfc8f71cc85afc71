"""One simulated ``vllm serve`` process: start-up lines, serving, stats lines, shutdown.

The start-up prints vLLM 0.33's lines in order, and stops at the first failure as vLLM would;
the port is bound early (a taken port fails before the model "loads") but listened on only
when "Application startup complete" is printed.
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time

from hpclaunch.planning import kv
from hpclaunch.planning.kv import GiB
from hpclaunch.standin.failures import Failures
from hpclaunch.standin.loading import WEIGHTS_SHARE, LoadingLines
from hpclaunch.standin.logwriter import Log
from hpclaunch.standin.memory import _gib
from hpclaunch.standin.rendezvous import Rendezvous, ray_holds, role_of
from hpclaunch.standin.server import ROUTES, Server
from hpclaunch.standin.settings import FAIL_MODES, VLLM_VERSION, Settings
from hpclaunch.standin.simulation import Simulation
from hpclaunch.vllm.flags.catalogue import parser_names

# vllm/entrypoints/common/startup.py: the logo, monochrome (not a terminal), version and model.
_LOGO = ("\n       █     █     █▄   ▄█\n ▄▄ ▄█ █     █     █ ▀▄▀ █  version %s\n"
         "  █▄█▀ █     █     █     █  model   %s\n   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀\n")


class StandIn(Simulation):
    """One simulated ``vllm serve`` process."""

    def __init__(self, settings: Settings, log: Log) -> None:
        super().__init__(settings, log)
        self.server: Server | None = None
        self.failures = Failures(self)
        self.exit_code = 0
        self.rendezvous = Rendezvous(role_of(settings.shown_args), log,
                                     lambda: self.signalled or self.stop.is_set())

    def run(self) -> int:
        s, log, mem = self.s, self.log, self.mem
        log.warning("APIServer", "standin.py:1",
                    "[hpclaunch_standin] SIMULATED vLLM stand-in (hpclaunch): no model is "
                    "loaded and no GPU is used; memory and KV numbers below are computed, "
                    f"not measured (simulated GPU: {s.gpu.name})")
        if s.fail == "exit":
            return 1
        if s.fail and s.fail not in FAIL_MODES:
            log.error("APIServer", "standin.py:2", f"HPCLAUNCH_STANDIN_FAIL={s.fail!r} is not "
                      f"one of {', '.join(FAIL_MODES)}")
            return 2
        log.info("APIServer", "startup.py:38", _LOGO % (VLLM_VERSION, s.model))
        log.info("APIServer", "startup.py:96", f"non-default args: {s.shown_args}")
        parsers = (parser_names(VLLM_VERSION) or {}).get("reasoning", ())
        if s.fail == "bad_parser" or (s.reasoning_parser and parsers
                                      and s.reasoning_parser not in parsers):
            return self.failures.fail_bad_parser()
        if not s.headless:
            if s.fail == "port_in_use":
                return self.failures.fail_port_in_use()
            try:
                self.server = Server(self)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return self.failures.fail_port_in_use()
                raise
        code = self._join()
        if code is not None:
            return code
        model_path = os.path.expanduser(s.model)
        if s.fail == "model_missing" or (s.model.startswith(("/", "./", "../", "~"))
                                         and not os.path.isdir(model_path)):
            return self.failures.fail_model_missing()
        if not mem.known_model:
            log.warning("APIServer", "standin.py:3",
                        f"[hpclaunch_standin] no facts for {s.model!r} in the catalog, a local "
                        "config.json or the HF cache; simulating a 0.5B model")
        if mem.max_len_error:
            return self.failures.fail_max_len()
        log.info("APIServer", "model.py:1672", f"Using max model len {mem.max_model_len}")
        code = self._start_engines()
        if code is not None:
            return code
        if s.headless:
            if self.rendezvous.role.what == "torch.distributed store":
                log.info("APIServer", "serve.py:242",
                         f"Launching vLLM (v{VLLM_VERSION}) headless multiproc executor, with "
                         f"head node address {self.rendezvous.role.address} for "
                         "torch.distributed process group.")
            else:
                log.info("APIServer", "serve.py:210",
                         f"Launching {s.dp_local} data parallel engine(s) in headless mode, "
                         f"with head node address {self.rendezvous.role.address or '127.0.0.1'}.")
            self.main_wait()
            log.info("APIServer", "serve.py:260", "Shutting down.")
            self.rendezvous.close()
            return self.exit_code
        code = self._serve()
        self.rendezvous.close()
        return code or self.exit_code

    def _join(self) -> int | None:
        """Multi-node: meet the other ranks (and Ray) before loading, as vLLM does."""
        rdv, s = self.rendezvous, self.s
        failed = rdv.start()
        if failed is None and rdv.role.kind != "worker" \
                and s.shown_args.get("distributed_executor_backend") == "ray":
            failed = ray_holds(s.tp * s.pp * s.dp, self.log,
                               lambda: self.signalled or self.stop.is_set())
        if failed == "stopped":
            return self._shutdown(serving=False)
        if failed is not None:
            return 1
        if rdv.peers:
            threading.Thread(target=self._watch_peers, name="peers", daemon=True).start()
        return None

    def _node_workers(self, workers: list[str]) -> list[str]:
        """vLLM's own multi-node launch: each node holds its share of the TP x PP workers."""
        nnodes = int(str(self.s.shown_args.get("nnodes") or 1))
        if nnodes <= 1 or len(workers) % nnodes:
            return workers
        per = len(workers) // nnodes
        rank = self.rendezvous.role.rank
        return workers[rank * per:(rank + 1) * per]

    def _watch_peers(self) -> None:
        rdv = self.rendezvous
        while not self.stop.is_set():
            if rdv.lost.wait(0.2):
                break
        else:
            return
        if self.signalled or self.stop.is_set():
            return
        who = "the head node" if rdv.role.kind == "worker" else f"node rank {rdv.lost_rank}"
        self.log.error("EngineCore_DP0", "multiproc_executor.py:561",
                       f"RuntimeError: connection to {who} was lost "
                       f"({rdv.role.what} {rdv.role.address}:{rdv.role.port}): a worker "
                       "process died")
        self.log.error("APIServer", "core_client.py:564",
                       "EngineDeadError: EngineCore encountered an issue. See stack trace "
                       "(above) for the root cause.")
        self.exit_code = 1
        self.dead.set()
        self.stop.set()

    def _start_engines(self) -> int | None:
        s, log, mem = self.s, self.log, self.mem
        load_secs = max(0.5, mem.weight_bytes_per_gpu / (2.5 * GiB))
        if s.load_seconds > 0:
            load_secs = s.load_seconds * WEIGHTS_SHARE
        loading = LoadingLines(s, mem, log, self.main_wait)
        for r in range(s.dp_start, s.dp_start + s.dp_local):
            proc = f"EngineCore_DP{r}"
            log.info(proc, "core.py:93", (
                f"Initializing a V1 LLM engine (v{VLLM_VERSION}) with config: "
                f"model='{s.model}', speculative_config=None, tokenizer='{s.model}', "
                f"dtype=torch.{mem.info.torch_dtype}, max_seq_len={mem.max_model_len}, "
                f"tensor_parallel_size={s.tp}, pipeline_parallel_size={s.pp}, "
                f"data_parallel_size={s.dp}, quantization={mem.info.quantization}, "
                f"enforce_eager={s.enforce_eager}, kv_cache_dtype={s.kv_cache_dtype}, "
                f"served_model_name={s.served_names[0]}, "
                f"enable_prefix_caching=True, enable_chunked_prefill=True"))
            workers = self._node_workers(self.workers(r))
            for w in workers:
                log.info(w, "gpu_model_runner.py:3338", f"Starting to load model {s.model}...")
            if s.fail == "oom" or mem.weight_bytes_per_gpu > s.gpu.memory_bytes - GiB // 2:
                return self.failures.fail_oom(r)
            if loading.shards():
                return self._shutdown(serving=False)
            for w in workers:
                log.info(w, "default_loader.py:308",
                         f"Loading weights took {load_secs:.2f} seconds")
                log.info(w, "gpu_model_runner.py:3420",
                         f"Model loading took {_gib(mem.weight_bytes_per_gpu)} GiB memory and "
                         f"{load_secs + 0.8:.6f} seconds")
            if not s.enforce_eager and loading.torch_compile(workers[0]):
                return self._shutdown(serving=False)
            available = mem.kv_bytes
            if s.fail == "no_kv_memory" or available <= 0:
                return self.failures.fail_no_kv_memory(r)
            for w in workers:
                log.info(w, "gpu_worker.py:359",
                         f"Available KV cache memory: {_gib(available)} GiB")
            needed = mem.bytes_per_token * math.ceil(mem.max_model_len / s.block_size) \
                * s.block_size
            if s.fail == "kv_too_small" and needed <= available:
                # As if other processes held memory: keep the numbers consistent with each
                # other, and small enough to trip the check.
                available = needed * 2 // 5
            if needed > available:
                return self.failures.fail_kv_too_small(r, available)
            conc = kv.max_concurrency(mem.tokens, mem.max_model_len, s.block_size)
            log.info(proc, "kv_cache_utils.py:1229",
                     f"GPU KV cache size: {mem.tokens:,} tokens, Maximum concurrency for "
                     f"{mem.max_model_len:,} tokens per request: {conc:.2f}x")
            if s.fail == "flashinfer":
                return self.failures.fail_flashinfer(r)
            if not s.enforce_eager:
                if loading.capture():
                    return self._shutdown(serving=False)
                for w in workers:
                    log.info(w, "gpu_model_runner.py:4244",
                             f"Graph capturing finished in 3 secs, took "
                             f"{_gib(mem.cuda_graph_bytes)} GiB")
            log.info(proc, "core.py:250", "init engine (profile, create kv cache, warmup model) "
                     f"took {load_secs + 6.5:.2f} s")
        return None

    def _serve(self) -> int:
        s, log = self.s, self.log
        assert self.server is not None
        if s.dp > 1 and s.api_server_count != 1:
            for i in range(s.api_server_count):
                log.warning(f"ApiServer_{i}", "loggers.py:1386",
                         "AsyncLLM created with api_server_count more than 1; disabling stats "
                         "logging to avoid incomplete stats.")
        host = s.host or "0.0.0.0"
        log.info("APIServer", "entry.py:139",
                 f"Starting vLLM server on http://{host}:{self.server.server_port}")
        log.info("APIServer", "launcher.py:37", "Available routes are:")
        for route, methods in ROUTES:
            log.info("APIServer", "launcher.py:45", f"Route: {route}, Methods: {methods}")
        if self.main_wait(s.startup_delay):
            return self._shutdown(serving=False)
        self.server.server_activate()  # listen only now: until here connections are refused
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="http", daemon=True)
        thread.start()
        log.uvicorn("APIServer", f"Started server process [{os.getpid()}]")
        log.uvicorn("APIServer", "Waiting for application startup.")
        log.uvicorn("APIServer", "Application startup complete.")
        if s.log_stats and not (s.dp > 1 and s.api_server_count != 1):
            threading.Thread(target=self._stats_loop, name="stats", daemon=True).start()
        if s.fail in ("crash_after_ready", "hang_after_ready"):
            threading.Thread(target=self._break_later, name="break", daemon=True).start()
        self.main_wait()
        return self._shutdown(serving=True)

    def main_wait(self, timeout: float | None = None) -> bool:
        """Wait on the main thread until stopped (True) or ``timeout`` passes (False).

        Polls a flag the signal handler sets, then sets ``stop`` for the other threads.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.signalled:
                self.stop.set()
            if self.stop.is_set():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _shutdown(self, serving: bool) -> int:
        log = self.log
        log.info("APIServer", "launcher.py:256", "[shutdown] API server: shutdown triggered")
        if self.server is not None:
            if serving:
                self.server.shutdown()
            self.server.server_close()
        log.uvicorn("APIServer", "Shutting down")
        log.uvicorn("APIServer", "Waiting for application shutdown.")
        log.uvicorn("APIServer", "Application shutdown complete.")
        return 0

    def _break_later(self) -> None:
        if self.stop.wait(self.s.crash_after):
            return
        if self.s.fail == "hang_after_ready":
            self.hung.set()
            return
        self.failures.engine_died()
        self.dead.set()

    def _stats_loop(self) -> None:
        s = self.s
        while not self.stop.wait(s.stats_interval):
            snapshot = self.engines.snapshot_interval()
            lines = []
            for engine, prompt, gen, show in snapshot:
                if show:
                    lines.append((engine, prompt, gen))
            if not lines:
                continue
            if s.aggregate_stats and len(snapshot) > 1:
                prompt = sum(p for _, p, _ in lines)
                gen = sum(g for _, _, g in lines)
                running = sum(e.running for e, _, _ in lines)
                waiting = sum(e.waiting for e, _, _ in lines)
                usage = sum(self.engines.usage(e) for e, _, _ in lines) / len(lines)
                self.log.info("APIServer", "loggers.py:236", (
                    f"{len(snapshot)} Engines Aggregated: " + self._stats_text(
                        prompt, gen, running, usage, waiting)))
                continue
            for engine, prompt, gen in lines:
                self.log.info("APIServer", "loggers.py:236", f"Engine {engine.rank:03d}: "
                              + self._stats_text(prompt, gen, engine.running,
                                                 self.engines.usage(engine), engine.waiting))

    def _stats_text(self, prompt: int, gen: int, running: int, usage: float,
                    waiting: int = 0) -> str:
        interval = self.s.stats_interval
        return (f"Avg prompt throughput: {prompt / interval:.1f} tokens/s, "
                f"Avg generation throughput: {gen / interval:.1f} tokens/s, "
                f"Running: {running} reqs, Waiting: {waiting} reqs, "
                f"GPU KV cache usage: {usage * 100:.1f}%, Prefix cache hit rate: 0.0%")
