"""One object for "serve this model with this preset, here": what submit and plan take.

vLLM's ``EngineArgs`` and submitit's ``update_parameters`` carry one object through many
layers instead of repeating a dozen keywords in every signature; this is hpclaunch's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """What a user asked for, before any default is filled in.

    ``None`` means "the profile's or the preset's value"; planning decides, not the caller.
    """

    model: str
    preset: str
    cluster: str | None = None
    name: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    vllm_args: str = ""
    env: dict[str, str] = field(default_factory=dict)
    simulate: bool | None = None
    gpus_per_node: int | None = None
    scheduler: str | None = None
    pbs_dialect: str | None = None
    gpu: str | None = None
    """GPU model for the memory checks (``H100-80GB``); the profile's ``gpu-model`` otherwise."""
    served_name: str | None = None
    """The served model name; the endpoint name unless replicas of a fleet share one."""
