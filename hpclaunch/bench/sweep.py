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
from hpclaunch.endpoints.resolve import Endpoint, resolve
from hpclaunch.registry import Record, Registry


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
                 preset=rec.preset, layout=endpoint.layout_label, simulated=endpoint.simulated)
