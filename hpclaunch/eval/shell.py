"""Endpoints as text for scripts: JSON for other tools, shell lines for ``eval``.

Files hold key variable *names*, never keys; ``hpclaunch env`` prints the keys.
"""

from __future__ import annotations

import json
import shlex

from hpclaunch.endpoints.resolve import Endpoint


def json_text(endpoints: list[Endpoint]) -> str:
    """Endpoints for other tools: no keys, only the variable that holds each."""
    return json.dumps([{
        "name": ep.name, "model": ep.model, "model_id": ep.model_id, "url": ep.base_url,
        "key_var": ep.key_var, "state": ep.state, "reasoning_parser": ep.reasoning_parser,
        "layout": ep.layout,
    } for ep in endpoints], indent=2) + "\n"


def env_text(ep: Endpoint) -> str:
    """Shell lines for ``eval "$(hpclaunch env NAME)"``: an OpenAI client just works."""
    pairs = [("OPENAI_BASE_URL", ep.base_url), ("OPENAI_API_KEY", ep.api_key),
             (ep.key_var, ep.api_key), ("HPCLAUNCH_MODEL", ep.model)]
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)


def env_all_text(endpoints: list[Endpoint]) -> str:
    """Every endpoint's key variable: what a registry's ``key = ...`` lines name."""
    return "".join(f"export {ep.key_var}={shlex.quote(ep.api_key)}\n" for ep in endpoints)
