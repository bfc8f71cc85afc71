"""Which ``vf-eval`` would run, which verifiers generation it is, and the reasoning rule.

Read by both the exports (what to write for a server with ``--reasoning-parser``) and the
runner, so it sits below both.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.errors import UserError

REASONING_MAX_TOKENS = 32768
ENV_VF_EVAL = "HPCLAUNCH_VF_EVAL"  # path of the vf-eval to run, when not the one on PATH


@dataclass(frozen=True)
class VfEval:
    """The vf-eval executable and which verifiers generation it belongs to."""

    path: str
    generation: str  # "0.3": TOML registry, -m NAME; "0.4": config file, @ FILE
    version: str = ""


def find_vf_eval(explicit: str | None = None) -> str | None:
    """``--vf-eval``, then $HPCLAUNCH_VF_EVAL, then the one next to this Python, then PATH."""
    for candidate in (explicit, os.environ.get(ENV_VF_EVAL)):
        if candidate:
            found = shutil.which(candidate)
            if not found:
                raise UserError(f"vf-eval {candidate!r} is not an executable; fix "
                                f"--vf-eval / ${ENV_VF_EVAL}")
            return found
    sibling = Path(sys.executable).with_name("vf-eval")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("vf-eval")


def generation_from_script(path: str) -> str | None:
    """Generation from a console script's import line (pip/uv write one), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if b"verifiers.v1" in head:
        return "0.4"
    if b"verifiers" in head:  # verifiers.legacy.scripts.eval (0.3) or verifiers.scripts.eval
        return "0.3"
    return None


def generation_from_version(version: str) -> str:
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return "0.4" if tuple(parts) >= (0, 4) else "0.3"


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verifiers")
    except PackageNotFoundError:
        return ""


def detect_vf_eval(explicit: str | None = None, *, required: bool = True) -> VfEval | None:
    """Which vf-eval would run and whether it reads a registry (0.3) or a config (0.4)."""
    path = find_vf_eval(explicit)
    if path is None:
        if required:
            raise UserError("vf-eval not found: pip install 'verifiers==0.3.1' (or a 0.4.x), "
                            f"or point --vf-eval / ${ENV_VF_EVAL} at it")
        return None
    version = _installed_version() if Path(path).parent == Path(sys.executable).parent else ""
    generation = generation_from_script(path) or (
        generation_from_version(version) if version else "0.3")
    return VfEval(path=path, generation=generation, version=version)


def server_max_model_len(ep: Endpoint, timeout: float = 5.0) -> int | None:
    """Context length the server reports in /v1/models (vLLM does); None if it does not."""
    import urllib.request

    req = urllib.request.Request(f"{ep.base_url}/models",
                                 headers={"Authorization": f"Bearer {ep.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read())
        for model in data.get("data", []):
            if model.get("id") == ep.model and isinstance(model.get("max_model_len"), int):
                return int(model["max_model_len"])
    except (OSError, ValueError, AttributeError):
        return None
    return None


def reasoning_max_tokens(ep: Endpoint, default: int = REASONING_MAX_TOKENS,
                         context: int | None = None) -> int:
    """``default`` unless the server's context is too small to hold it plus a prompt.

    vLLM rejects a request whose max tokens exceed the context minus the prompt, so
    on a 16k server the default becomes 8192 (half, or all but 8k, whichever is more).
    """
    context = context or ep.max_model_len
    if not context:
        return default
    return max(1, min(default, max(context // 2, context - 8192)))
