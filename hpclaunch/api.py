"""The library behind the CLI: submit, plan, refresh, wait, stop, remove.

The CLI only parses arguments and prints what these return, so scripts and notebooks
get the same behaviour (and errors) as the command line. The work is done in
:mod:`hpclaunch.endpoints`; this module is the one place callers need to know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpclaunch.endpoints.lifecycle import connect, refresh, remove, stop, wait
from hpclaunch.request import SubmitRequest

if TYPE_CHECKING:
    from hpclaunch.endpoints.launch import PreflightFailed, SubmitResult
    from hpclaunch.registry import Registry

__all__ = ["PreflightFailed", "SubmitRequest", "SubmitResult", "connect", "plan", "refresh",
           "remove", "stop", "submit", "wait"]


def __getattr__(name: str) -> Any:
    # Submit's machinery (plan, preflight, render) loads on first use, so callers that only
    # refresh or stop - `hpclaunch endpoints` above all - do not pay for importing it.
    if name in ("PreflightFailed", "SubmitResult"):
        from hpclaunch.endpoints import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _request(request: SubmitRequest | str, fields: dict[str, Any]) -> SubmitRequest:
    if isinstance(request, SubmitRequest):
        if fields:
            raise TypeError(f"pass either a SubmitRequest or keywords, not both: {sorted(fields)}")
        return request
    return SubmitRequest(model=request, **fields)


def plan(request: SubmitRequest | str, /, **fields: Any) -> Any:
    """The checked-nothing plan for a request (``plan("Qwen3-0.6B", preset="single-gpu")``
    builds the request from keywords)."""
    from hpclaunch.endpoints.launch import build_plan

    return build_plan(_request(request, fields))


def submit(request: SubmitRequest | str, /, *, dry_run: bool = False,
           registry: Registry | None = None, **fields: Any) -> SubmitResult:
    """Plan, preflight, render and queue one endpoint; it is recorded as PENDING.

    ``submit(SubmitRequest(model=..., preset=...))``, or as before
    ``submit("Qwen3-0.6B", preset="single-gpu", name="q")``.
    """
    from hpclaunch.endpoints.launch import submit as _submit

    return _submit(_request(request, fields), dry_run=dry_run, registry=registry)
