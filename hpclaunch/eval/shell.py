"""Endpoints as text for scripts: JSON for other tools, shell lines for ``eval``.

Files hold key variable *names*, never keys; ``hpclaunch env`` prints the keys.
"""

from __future__ import annotations

import json
import shlex

from hpclaunch.endpoints.resolve import Endpoint
from hpclaunch.eval.files import FAIL_CLOSED_URL


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


def refused_env_text(message: str, exit_code: int) -> str:
    """What ``eval "$(hpclaunch env NAME)"`` runs when NAME cannot be used.

    Printing nothing would let a script carry on with ``OPENAI_BASE_URL`` unset, and
    OpenAI clients would then send the prompts (and the user's own key) to
    api.openai.com. So the statement points the client variables at an address that
    fails locally, and ends with a failing command: under ``set -e`` the script stops
    here, and without it ``$?`` says why (the exit codes of ``hpclaunch``).
    """
    reason = " ".join(message.split())[:300]
    return (f"# hpclaunch env refused: {reason}\n"  # one line: split() removed newlines
            f"export OPENAI_BASE_URL={shlex.quote(FAIL_CLOSED_URL)} "
            "OPENAI_API_KEY=hpclaunch-refused HPCLAUNCH_MODEL=; "
            f"(exit {int(exit_code) or 1})\n")
