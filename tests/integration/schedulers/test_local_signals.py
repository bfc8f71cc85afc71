"""A local job hears `stop`: submit blocks SIGTERM while it queues, and the job must not
inherit that mask (it would then only die by SIGKILL, 10 s later, without shutting down)."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import HPC
from tests.integration.endpoints.test_spine import submit

SIGTERM_BIT = 1 << (15 - 1)


def test_a_local_server_gets_sigterm_and_shuts_down_on_stop(hpc: HPC) -> None:
    submit(hpc, "sig")
    assert "READY" in hpc("wait", "sig", "--timeout", "60").stdout
    pid = subprocess.run(["pgrep", "-f", "served-model-name sig "], capture_output=True,
                         text=True, check=False).stdout.split()[0]
    with open(f"/proc/{pid}/status") as status:
        blocked = next(int(line.split()[1], 16) for line in status if line.startswith("SigBlk"))
    assert not blocked & SIGTERM_BIT
    started = time.monotonic()
    hpc("stop", "sig")
    assert time.monotonic() - started < 8  # the SIGKILL fallback comes after 10 s
    log = next((hpc.home / "results").glob("vllm_sig.*_realtime.log")).read_text()
    assert "Shutting down" in log
