"""Endpoint names -> something a client can call, for Python callers.

``resolve("qwen-vl")`` is how eval scripts avoid pasting host:port pairs. It
reads the registry (fast, no scheduler call) unless asked to wait for READY.
Where an SSH tunnel for the endpoint is open (``hpclaunch.remote.tunnel``), the URL is
the tunnel's, because that is the one that works from this machine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hpclaunch.errors import EndpointStateError, UserError
from hpclaunch.registry import FINAL_STATES, READY, Record, Registry

KEY_VAR_PREFIX = "HPCLAUNCH_KEY_"


def key_var(name: str) -> str:
    """Name of the environment variable that holds endpoint ``name``'s API key.

    vf-eval registries name a variable rather than holding the key, so the key
    never lands in a file someone may commit: ``qwen3-thinking`` ->
    ``HPCLAUNCH_KEY_QWEN3_THINKING``.
    """
    return KEY_VAR_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _tunnel_url(name: str) -> str | None:
    """The local URL of an open SSH tunnel to ``name``, if the tunnel module exists."""
    try:
        from hpclaunch.remote.tunnel import tunnel_url  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        return tunnel_url(name) or None
    except Exception:  # noqa: BLE001 - a broken tunnel record must not hide the endpoint
        return None


def flag_value(args: list[str] | tuple[str, ...], flag: str) -> str | None:
    """Value of ``--flag V`` or ``--flag=V`` in a vLLM argv (the last one wins, as in argparse)."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


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
    model_id: str = ""
    direct_url: str = ""
    vllm_args: tuple[str, ...] = ()
    layout: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: Record) -> Endpoint:
        tunnel = _tunnel_url(rec.name) if rec.url else None
        return cls(name=rec.name, base_url=tunnel or rec.url, model=rec.served_model_name,
                   api_key=rec.api_key, state=rec.state, job_id=rec.job_id,
                   cluster=rec.cluster, simulated=rec.simulated, reason=rec.reason,
                   model_id=rec.model_id, direct_url=rec.url,
                   vllm_args=tuple(rec.vllm_args), layout=dict(rec.layout))

    def __repr__(self) -> str:  # never print the key
        return (f"Endpoint(name={self.name!r}, base_url={self.base_url!r}, "
                f"model={self.model!r}, state={self.state!r})")

    @property
    def key_var(self) -> str:
        """Environment variable that carries this endpoint's key (see :func:`key_var`)."""
        return key_var(self.name)

    @property
    def reasoning_parser(self) -> str | None:
        """The server's ``--reasoning-parser``, if any: it decides the client's use_think."""
        return flag_value(self.vllm_args, "--reasoning-parser")

    @property
    def max_model_len(self) -> int | None:
        value = flag_value(self.vllm_args, "--max-model-len")
        try:
            return int(value) if value else None
        except ValueError:
            return None

    @property
    def layout_label(self) -> str:
        """``dp4 tp1 pp1`` - how the A/B table tells two endpoints of one model apart."""
        label = " ".join(f"{k}{self.layout[k]}" for k in ("dp", "tp", "pp") if k in self.layout)
        nodes = self.layout.get("nodes", 1)
        return f"{label} on {nodes} nodes" if nodes > 1 else label

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

    With ``wait=True`` this blocks until it is READY (or raises if it fails or has
    ended); otherwise it answers from the registry and, unless
    ``require_ready=False``, refuses an endpoint that is not READY so a script never
    talks to nothing. An unknown name is always an error (with "did you mean").
    """
    if wait:
        from hpclaunch.endpoints.lifecycle import wait as wait_ready

        rec = Registry().get(name)  # unknown names fail here, before any scheduler call
        if rec.state not in FINAL_STATES:
            rec = wait_ready(name, timeout=timeout)
    else:
        rec = Registry().get(name)
    if rec.kind != "endpoint":
        raise UserError(f"{name!r} is an eval job ({rec.model_id}), not an endpoint; "
                        f"hpclaunch status {name} shows it")
    if require_ready and rec.state != READY:
        hint = (f"submit it again (hpclaunch submit ... --name {name})" if rec.final
                else f"hpclaunch wait {name} first")
        raise EndpointStateError(f"endpoint {name!r} is {rec.state}"
                                 f"{': ' + rec.reason if rec.reason else ''}; {hint}",
                                 state=rec.state)
    return Endpoint.from_record(rec)


def list_endpoints(*, include_ended: bool = False) -> list[Endpoint]:
    """Registered endpoints as stored (no scheduler call)."""
    records = sorted(Registry().load().values(), key=lambda r: r.created)
    # A fleet's replicas are reached through the fleet's name (its router), not one by one.
    return [Endpoint.from_record(r) for r in records
            if (include_ended or not r.final) and r.role != "replica"]
