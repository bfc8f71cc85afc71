"""vLLM's first step on a compute node without internet, done for real: resolve the model
through huggingface_hub in offline mode (the job's HF_HOME and HF_HUB_OFFLINE=1), then serve
with the stand-in. A model missing from the cache fails with huggingface_hub's own words,
as vLLM would print them.

Used as a cluster profile's ``vllm-command``: ``python offline_vllm.py serve MODEL ...``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "the job did not set HF_HUB_OFFLINE=1"
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(argv[1])
    except Exception as exc:  # noqa: BLE001 - printed as vLLM's traceback ends
        print(f"(APIServer pid={os.getpid()}) {type(exc).__module__}.{type(exc).__name__}: "
              f"{exc}", flush=True)
        sys.exit(1)
    with open(os.path.join(path, "config.json")) as config:
        print(f"hpclaunch-test: offline weights from {path}: {config.read()[:40]}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "hpclaunch.standin", *argv])


if __name__ == "__main__":
    main()
