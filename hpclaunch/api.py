"""The library behind the CLI: submit, plan, refresh, wait, stop, remove.

The CLI only parses arguments and prints what these return, so scripts and notebooks
get the same behaviour (and errors) as the command line. The work is done in
:mod:`hpclaunch.endpoints`; this module is the one place callers need to know.
"""

from __future__ import annotations

from typing import Any

from hpclaunch.endpoints.launch import PreflightFailed, SubmitResult, build_plan
from hpclaunch.endpoints.launch import submit as _submit
from hpclaunch.endpoints.lifecycle import connect, refresh, remove, stop, wait
from hpclaunch.registry import Registry
from hpclaunch.request import SubmitRequest

__all__ = ["PreflightFailed", "SubmitRequest", "SubmitResult", "connect", "plan", "refresh",
           "remove", "stop", "submit", "wait"]


def _request(request: SubmitRequest | str, fields: dict[str, Any]) -> SubmitRequest:
    if isinstance(request, SubmitRequest):
        if fields:
            raise TypeError(f"pass either a SubmitRequest or keywords, not both: {sorted(fields)}")
        return request
    return SubmitRequest(model=request, **fields)


def plan(request: SubmitRequest | str, /, **fields: Any) -> Any:
    """The checked-nothing plan for a request (``plan("Qwen3-0.6B", preset="single-gpu")``
    builds the request from keywords)."""
    return build_plan(_request(request, fields))


def submit(request: SubmitRequest | str, /, *, dry_run: bool = False,
           registry: Registry | None = None, **fields: Any) -> SubmitResult:
    """Plan, preflight, render and queue one endpoint; it is recorded as PENDING.

    ``submit(SubmitRequest(model=..., preset=...))``, or as before
    ``submit("Qwen3-0.6B", preset="single-gpu", name="q")``.
    """
    return _submit(_request(request, fields), dry_run=dry_run, registry=registry)
