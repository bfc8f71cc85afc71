"""Endpoint names -> something a client can call, for Python callers.

``resolve("qwen-vl")`` is how eval scripts avoid pasting host:port pairs. It
reads the registry (fast, no scheduler call) unless asked to wait for READY.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.registry import READY, Record, Registry


@dataclass(frozen=True)
class Endpoint:
    """A named vLLM server: where it is, what it serves, and its key."""

    name: str
    base_url: str
    model: str
    api_key: str
    state: str
    job_id: str = ""
    cluster: str = ""
    simulated: bool = False
    reason: str = ""

    @classmethod
    def from_record(cls, rec: Record) -> Endpoint:
        return cls(name=rec.name, base_url=rec.url, model=rec.served_model_name,
                   api_key=rec.api_key, state=rec.state, job_id=rec.job_id,
                   cluster=rec.cluster, simulated=rec.simulated, reason=rec.reason)

    def __repr__(self) -> str:  # never print the key
        return (f"Endpoint(name={self.name!r}, base_url={self.base_url!r}, "
                f"model={self.model!r}, state={self.state!r})")

    def openai_client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client for this endpoint (needs the ``openai`` package)."""
        try:
            import openai
        except ImportError as exc:
            raise UserError("Endpoint.openai_client() needs the openai package: "
                            "pip install openai") from exc
        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)

    def chat(self, message: str, *, max_tokens: int = 64, timeout: float = 60.0) -> str:
        """Send one chat message and return the reply text (standard library only)."""
        import urllib.error
        import urllib.request

        if not self.base_url:
            raise UserError(f"{self.name} has no URL yet ({self.state}); "
                            f"hpclaunch wait {self.name}")
        body = json.dumps({"model": self.model, "max_tokens": max_tokens,
                           "messages": [{"role": "user", "content": message}]}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise UserError(f"{self.name}: server answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"{self.name}: cannot reach {self.base_url} ({exc}); "
                            f"check hpclaunch status {self.name}") from exc
        return str(data["choices"][0]["message"].get("content") or "")


def resolve(name: str, *, wait: bool = False, timeout: float = 1800.0,
            require_ready: bool = True) -> Endpoint:
    """The endpoint called ``name``.

    With ``wait=True`` this blocks until it is READY (or raises if it fails);
    otherwise it answers from the registry and, unless ``require_ready=False``,
    refuses an endpoint that is not READY so a script never talks to nothing.
    """
    if wait:
        from hpclaunch.api import wait as wait_ready

        rec = wait_ready(name, timeout=timeout)
    else:
        rec = Registry().get(name)
    if require_ready and rec.state != READY:
        raise UserError(f"endpoint {name!r} is {rec.state}"
                        f"{': ' + rec.reason if rec.reason else ''}; "
                        f"hpclaunch wait {name} first")
    return Endpoint.from_record(rec)


def list_endpoints(*, include_ended: bool = False) -> list[Endpoint]:
    """Registered endpoints as stored (no scheduler call)."""
    records = sorted(Registry().load().values(), key=lambda r: r.created)
    return [Endpoint.from_record(r) for r in records if include_ended or not r.final]
