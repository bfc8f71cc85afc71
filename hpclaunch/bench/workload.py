"""What a sweep sends: the levels, the bounds, and the request bodies.

A request is either a synthetic prompt of about ``prompt_tokens`` words (one token each in
the tokenizers vLLM serves, near enough; the server's ``usage`` has the true count) or a line
of a JSONL dataset. Each prompt starts with its request number, so vLLM's prefix cache
cannot answer a sweep from the first request's blocks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError

APIS = ("chat", "completions")
LEVEL_SECONDS_CAP = 600.0  # no level runs longer unless --duration says so
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
          "seven", "wizards", "quietly", "judge", "every", "box", "of", "mixed", "liquor")


@dataclass(frozen=True)
class Prompt:
    """One dataset line: a prompt or chat messages, and its own max_tokens if it has one."""

    text: str = ""
    messages: tuple[dict[str, Any], ...] = ()
    max_tokens: int | None = None


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A sweep's shape; every level sends the same kind of request."""

    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    requests: int | None = None  # per level; None: 4 per concurrent client, at least 16
    duration: float | None = None  # per level, seconds
    prompt_tokens: int = 128
    max_tokens: int = 128
    stream: bool = False
    api: str = "chat"
    prompt_template: str = ""  # a guide's literal prompt, "{i}" is the request number
    dataset: tuple[Prompt, ...] = ()
    dataset_name: str = ""
    timeout: float = 300.0
    profile: str = ""

    def __post_init__(self) -> None:
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise UserError("--concurrency takes positive integers, e.g. 1,4,16,64")
        if self.requests is not None and self.requests < 1:
            raise UserError("--requests must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise UserError("--duration must be a positive number of seconds")
        if self.prompt_tokens < 1 or self.max_tokens < 1:
            raise UserError("--prompt-tokens and --max-tokens must be at least 1")
        if self.api not in APIS:
            raise UserError(f"--api must be one of {', '.join(APIS)}, not {self.api!r}")

    def level_requests(self, concurrency: int) -> int | None:
        """How many requests one level sends (None: as many as its duration allows)."""
        if self.requests is not None:
            return self.requests
        return None if self.duration is not None else max(16, 4 * concurrency)

    def level_seconds(self) -> float:
        return self.duration if self.duration is not None else LEVEL_SECONDS_CAP

    def path(self) -> str:
        return "/chat/completions" if self.api == "chat" else "/completions"

    def body(self, i: int, model: str) -> dict[str, Any]:
        """The JSON body of request number ``i``."""
        max_tokens = self.max_tokens
        if self.dataset:
            item = self.dataset[i % len(self.dataset)]
            max_tokens = item.max_tokens or max_tokens
            messages = list(item.messages) or [{"role": "user", "content": item.text}]
            text = item.text or " ".join(str(m.get("content", "")) for m in messages)
        else:
            text = (self.prompt_template.replace("{i}", str(i)) if self.prompt_template
                    else f"Request {i}: " + " ".join(
                        _WORDS[k % len(_WORDS)] for k in range(self.prompt_tokens)))
            messages = [{"role": "user", "content": text}]
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0.0,
                                # vLLM's extra: every reply runs to max_tokens, so levels
                                # and endpoints compare the same work.
                                "ignore_eos": True}
        if self.api == "chat":
            body["messages"] = messages
        else:
            body["prompt"] = text
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def describe(self) -> dict[str, Any]:
        """What the sweep sent, for its record (the dataset by name, not by content)."""
        data = asdict(self)
        data.pop("dataset")
        data["concurrency"] = list(self.concurrency)
        return data


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise UserError(f"--concurrency takes integers separated by commas (1,4,16), "
                        f"not {text!r}") from None
    if not levels or min(levels) < 1:
        raise UserError(f"--concurrency takes positive integers (1,4,16), not {text!r}")
    return levels


def load_dataset(path: Path) -> tuple[Prompt, ...]:
    """A JSONL file: one object a line with ``prompt`` or ``messages`` (and ``max_tokens``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"--dataset {path}: {exc.strerror or exc}") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise UserError(f"--dataset {path} line {n}: not JSON; write one object a "
                            'line, e.g. {"prompt": "..."}') from None
        if not isinstance(item, dict):
            raise UserError(f"--dataset {path} line {n}: expected an object with "
                            '"prompt" or "messages"')
        text, messages, limit = item.get("prompt"), item.get("messages"), item.get("max_tokens")
        if not isinstance(text, str) and not (isinstance(messages, list) and messages):
            raise UserError(f"--dataset {path} line {n}: needs \"prompt\" (a string) or "
                            "\"messages\" (a list of {role, content})")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise UserError(f"--dataset {path} line {n}: max_tokens must be a positive integer")
        prompts.append(Prompt(text if isinstance(text, str) else "",
                              tuple(messages) if isinstance(messages, list) else (), limit))
    if not prompts:
        raise UserError(f"--dataset {path} has no prompts")
    return tuple(prompts)
