"""hpclaunch: launch vLLM servers on HPC schedulers and use them by name.

>>> from hpclaunch import resolve
>>> ep = resolve("qwen-vl")          # doctest: +SKIP
>>> ep.openai_client().models.list() # doctest: +SKIP

Importing this package is cheap: the submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Endpoint", "SubmitRequest", "list_endpoints", "resolve", "submit", "UserError"]

if TYPE_CHECKING:
    from hpclaunch.api import submit
    from hpclaunch.endpoints.resolve import Endpoint, list_endpoints, resolve
    from hpclaunch.errors import UserError
    from hpclaunch.request import SubmitRequest

_LAZY = {
    "Endpoint": "hpclaunch.endpoints.resolve",
    "resolve": "hpclaunch.endpoints.resolve",
    "list_endpoints": "hpclaunch.endpoints.resolve",
    "submit": "hpclaunch.api",
    "UserError": "hpclaunch.errors",
    "SubmitRequest": "hpclaunch.request",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpclaunch' has no attribute {name!r}")
