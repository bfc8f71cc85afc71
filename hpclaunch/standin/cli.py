"""The stand-in's entry point: ``python -m hpclaunch.standin serve MODEL [vllm serve flags]``.

Arguments are parsed with the real flag snapshot, so an unknown flag exits 2 with vLLM's own
message, exactly as a job would see from ``vllm serve``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.standin.logwriter import Log
from hpclaunch.standin.process import StandIn
from hpclaunch.standin.settings import VLLM_VERSION, parse_settings
from hpclaunch.vllm.flags.argparser import build_serve_parser
from hpclaunch.vllm.flags.catalogue import serve_defaults


def _usage_error(message: str) -> int:
    sys.stderr.write("usage: python -m hpclaunch.standin serve [model_tag] [options]\n"
                     f"vllm: error: {message}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in; returns the process exit code (2 for bad arguments, as vLLM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "serve":
        return _usage_error("the stand-in only implements `serve` (python -m "
                            "hpclaunch.standin serve MODEL [flags])")
    version = os.environ.get("HPCLAUNCH_STANDIN_VLLM_VERSION") or VLLM_VERSION
    parser = build_serve_parser(version)
    namespace = parser.parse_args(args[1:])  # exits 2 with vLLM's message on a bad flag
    log = Log()
    try:
        settings = parse_settings(vars(namespace), serve_defaults(version))
    except (UserError, ValueError) as exc:
        log.error("APIServer", "standin.py:2", f"[hpclaunch_standin] {exc}")
        return 1
    standin = StandIn(settings, log)

    def on_signal(signum: int, _frame: Any) -> None:
        # Only a flag: Event.set() here can deadlock on the lock the interrupted
        # main thread holds inside Event.wait(); the main thread sets the event.
        standin.signalled = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return standin.run()


if __name__ == "__main__":
    sys.exit(main())
