"""What vLLM 0.33 prints when it fails: the tracebacks and error lines, and the exit code.

Each failure mode (``HPCLAUNCH_STANDIN_FAIL`` or a real condition such as weights larger
than the GPU) prints the lines hpclaunch's failure rules must recognise in a real log.
"""

from __future__ import annotations

import math

from hpclaunch.planning import kv
from hpclaunch.standin.memory import _gib
from hpclaunch.standin.settings import VLLM_VERSION
from hpclaunch.standin.simulation import Simulation
from hpclaunch.vllm.flags.catalogue import parser_names

_DOCS = "https://docs.vllm.ai/en/latest/configuration/conserving_memory/"
_SITE = "/opt/venv/lib/python3.12/site-packages"


class Failures:
    """The failure output of one stand-in; every ``fail_*`` returns the exit code."""

    def __init__(self, sim: Simulation) -> None:
        self.s, self.log, self.mem = sim.s, sim.log, sim.mem
        self._workers = sim.workers

    def _api_failure(self, frames: list[tuple[str, int, str, str]], exc: str) -> int:
        """An exception in the API server process before the engine starts: exit 1."""
        base = [
            ("/opt/venv/bin/vllm", 10, "<module>", "sys.exit(main())"),
            (f"{_SITE}/vllm/entrypoints/cli/main.py", 73, "main", "args.dispatch_function(args)"),
            (f"{_SITE}/vllm/entrypoints/cli/serve.py", 112, "cmd", "uvloop.run(run_server(args))"),
        ]
        self.log.traceback("APIServer", base + frames, exc)
        return 1

    def _engine_failure(self, rank: int, frames: list[tuple[str, int, str, str]],
                        exc: str) -> int:
        """An exception inside EngineCore during start-up, as vLLM 0.33 reports it: the
        engine logs it, its process dies, and the API server raises RuntimeError. Exit 1."""
        proc = f"EngineCore_DP{rank}"
        core = [(f"{_SITE}/vllm/v1/engine/core.py", 857, "run_engine_core",
                 "engine_core = EngineCoreProc(*args, **kwargs)")]
        lines = ["EngineCore failed to start.", "Traceback (most recent call last):"]
        for path, lineno, func, code in core + frames:
            lines += [f'  File "{path}", line {lineno}, in {func}', f"    {code}"]
        lines += exc.split("\n")
        self.log.error(proc, "core.py:866", "\n".join(lines))
        self.log.write(f"Process {proc}:", self.log.err)
        self.log.traceback(proc, core + frames, exc)
        self.log.traceback("APIServer", [
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1963, "run_server_worker",
             "async with build_async_engine_client("),
            (f"{_SITE}/vllm/v1/engine/utils.py", 1012, "wait_for_engine_startup",
             'raise RuntimeError('),
        ], "RuntimeError: Engine core initialization failed. See root cause above. "
           f"Failed core proc(s): {{'{proc}': 1}}")
        return 1

    def fail_port_in_use(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1905, "setup_server",
             "sock = create_server_socket(sock_addr)"),
            (f"{_SITE}/vllm/entrypoints/openai/api_server.py", 1872, "create_server_socket",
             "sock.bind(addr)"),
        ], "OSError: [Errno 98] Address already in use")

    def fail_model_missing(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/transformers_utils/config.py", 633, "get_config",
             "raise ValueError("),
        ], f"ValueError: Invalid repository ID or local directory specified: '{self.s.model}'.\n"
           "Please verify the following requirements:\n"
           "1. Provide a valid Hugging Face repository ID.\n"
           "2. Specify a local directory that contains a recognized configuration file.\n"
           "   - For Hugging Face models: ensure the presence of a 'config.json'.\n"
           "   - For Mistral models: ensure the presence of a 'params.json'.")

    def fail_bad_parser(self) -> int:
        names = (parser_names(VLLM_VERSION) or {}).get("reasoning", ())
        given = self.s.reasoning_parser or "deepseek-r1"
        return self._api_failure([
            (f"{_SITE}/vllm/entrypoints/openai/cli_args.py", 402, "validate_parsed_serve_args",
             "raise KeyError("),
        ], f"KeyError: 'invalid reasoning parser: {given} (chose from {{ {','.join(names)} }})'")

    def fail_max_len(self) -> int:
        return self._api_failure([
            (f"{_SITE}/vllm/engine/arg_utils.py", 1421, "create_model_config",
             "return ModelConfig("),
        ], "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
           f"  Value error, {self.mem.max_len_error} [type=value_error, "
           "input_value=ArgsKwargs((), {...}), input_type=ArgsKwargs]")

    def fail_oom(self, rank: int) -> int:
        worker = self._workers(rank)[0]
        total = self.s.gpu.memory_gib
        torch_error = ("CUDA out of memory. Tried to allocate 128.00 MiB. GPU 0 "
           f"has a total capacity of {total:.2f} GiB of which 16.00 MiB is free. Including "
           f"non-PyTorch memory, this process has {total - 0.02:.2f} GiB memory in use. Of the "
           f"allocated memory {total - 0.55:.2f} GiB is allocated by PyTorch, and 21.04 MiB is "
           "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try "
           "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  "
           "See documentation for Memory Management  "
           "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
        self.log.error(worker, "gpu_model_runner.py:5086",
                       "Failed to load model - not enough GPU memory. Try lowering "
                       "--gpu-memory-utilization to free memory for weights, increasing "
                       "--tensor-parallel-size, or using --quantization. See "
                       f"{_DOCS} for more tips. (original error: {torch_error})")
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/worker/gpu_model_runner.py", 3431, "load_model",
             "self.model = model_loader.load_model("),
            (f"{_SITE}/torch/nn/modules/module.py", 1355, "convert",
             "return t.to(device, dtype if t.is_floating_point() else None)"),
        ], f"torch.OutOfMemoryError: {torch_error}")

    def fail_kv_too_small(self, rank: int, available: int) -> int:
        m = self.mem
        needed = m.bytes_per_token * math.ceil(m.max_model_len / self.s.block_size) \
            * self.s.block_size
        estimate = kv.kv_tokens(available, m.bytes_per_token, self.s.block_size)
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/core/kv_cache_utils.py", 719, "check_enough_kv_cache_memory",
             "raise ValueError("),
        ], f"ValueError: To serve at least one request with the model's max seq len "
           f"({m.max_model_len}), ({_gib(needed)} GiB KV cache is needed, which is larger than "
           f"the available KV cache memory ({_gib(available)} GiB). Based on the available "
           f"memory, the estimated maximum model length is {estimate}. Try increasing "
           "`gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
           "decreasing `max_model_len` when initializing the "
           f"engine. See {_DOCS} for more details.")

    def fail_no_kv_memory(self, rank: int) -> int:
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/core/kv_cache_utils.py", 701, "check_enough_kv_cache_memory",
             "raise ValueError("),
        ], "ValueError: No available memory for the cache blocks. Try increasing "
           "`gpu_memory_utilization` when initializing the engine (this flag also controls CPU "
           "memory reservation on the CPU backend, despite its name). See "
           f"{_DOCS} for more details.")

    def fail_flashinfer(self, rank: int) -> int:
        n = self.s.max_num_seqs if self.s.max_num_seqs < 9 else 8
        self.log.info(self._workers(rank)[0], "cuda.py:508", "Using FLASHINFER attention backend "
                      "out of potential backends: ['FLASHINFER', 'TRITON_ATTN'].")
        return self._engine_failure(rank, [
            (f"{_SITE}/vllm/v1/worker/gpu_model_runner.py", 4210, "capture_model",
             "self._capture_cudagraphs("),
            (f"{_SITE}/vllm/v1/attention/backends/flashinfer.py", 712, "build",
             "self.paged_kv_indptr_np[:num_reqs + 1] = paged_kv_indptr"),
        ], f"ValueError: could not broadcast input array from shape (9,) into shape ({n},)")

    def engine_died(self) -> None:
        """An engine dies after readiness: its fatal error, then the API server's."""
        rank = self.s.dp_start
        self.log.error(f"EngineCore_DP{rank}", "core.py:933",
                       "EngineCore encountered a fatal error.\n"
                       "Traceback (most recent call last):\n"
                       f'  File "{_SITE}/vllm/v1/engine/core.py", line 924, in run_busy_loop\n'
                       "    self._process_engine_step()\n"
                       "RuntimeError: CUDA error: an illegal memory access was encountered")
        self.log.error("APIServer", "async_llm.py:525", "AsyncLLM output_handler failed.\n"
                       "Traceback (most recent call last):\n"
                       f'  File "{_SITE}/vllm/v1/engine/async_llm.py", line 480, in '
                       "output_handler\n"
                       "    outputs = await engine_core.get_output_async()\n"
                       "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an "
                       "issue. See stack trace (above) for the root cause.")
