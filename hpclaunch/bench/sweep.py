"""One sweep against one named endpoint: its URL and key from the registry, then the load.

The endpoint is found by name with :func:`hpclaunch.endpoints.resolve` (so a tunnel's URL
is used where one is open, and a name that is not READY is refused before anything is
sent); the key never leaves this process.
"""

from __future__ import annotations

import time

from hpclaunch.bench.load import OnResult, run_sweep
from hpclaunch.bench.results import Sweep
from hpclaunch.bench.workload import Workload
from hpclaunch.endpoints.resolve import Endpoint, flag_value, resolve
from hpclaunch.registry import Record, Registry

# The flags that most change a sweep, kept with it so the history tells runs apart.
KEY_FLAGS = ("--max-num-seqs", "--max-num-batched-tokens", "--max-model-len",
             "--gpu-memory-utilization", "--kv-cache-dtype")


def key_flags(endpoint: Endpoint) -> str:
    """``max-num-seqs=8 max-model-len=8192`` - the key flags the endpoint was started with."""
    pairs = ((flag, flag_value(endpoint.vllm_args, flag)) for flag in KEY_FLAGS)
    return " ".join(f"{flag[2:]}={value}" for flag, value in pairs if value is not None)


def find(name: str) -> tuple[Endpoint, Record]:
    """The READY endpoint called ``name`` and its record (for the preset and results dir)."""
    return resolve(name), Registry().get(name)


def sweep(target: tuple[Endpoint, Record], workload: Workload,
          on_result: OnResult | None = None) -> Sweep:
    endpoint, rec = target
    started = time.time()
    levels = run_sweep(endpoint.base_url, endpoint.api_key, endpoint.model, workload,
                       on_result)
    return Sweep(endpoint=endpoint.name, model=endpoint.model_id or endpoint.model,
                 started=started, workload=workload.describe(), levels=levels,
                 preset=rec.preset, layout=endpoint.layout_label, flags=key_flags(endpoint),
                 simulated=endpoint.simulated)
