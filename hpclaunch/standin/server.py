"""The stand-in's HTTP server: the routes hpclaunch and its users touch, answered like vLLM.

``/health``, ``/v1/models``, ``/v1/chat/completions`` (plain and streaming),
``/v1/completions``, ``/metrics``: status codes, error bodies and access-log lines as vLLM's
uvicorn server gives them. The standard library's threading server is enough here.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hpclaunch.standin.settings import VLLM_VERSION
from hpclaunch.standin.simulation import EngineStats, Simulation, count_tokens

ROUTES = [
    ("/openapi.json", "HEAD, GET"), ("/docs", "HEAD, GET"), ("/health", "GET"),
    ("/load", "GET"), ("/ping", "POST"), ("/ping", "GET"), ("/version", "GET"),
    ("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
    ("/metrics", "GET"),
]


def _error_body(message: str, kind: str, code: int, param: str | None = None
                ) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _prompt_tokens(messages: list[Any]) -> int:
    """Tokens of the rendered chat: content tokens plus 4 per message for the template."""
    total = 2
    for message in messages:
        if isinstance(message, dict):
            total += 4 + count_tokens(_content_text(message.get("content")))
            parts = message.get("content")
            if isinstance(parts, list):
                total += 256 * sum(1 for p in parts if isinstance(p, dict)
                                   and p.get("type") in ("image_url", "input_image"))
    return total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    # --------------------------------------------------------------- plumbing

    def setup(self) -> None:
        super().setup()
        # As uvicorn (asyncio) does: without it a kept-alive client waits for the delayed
        # ACK (40 ms on Linux) between the headers and the body of every reply.
        if self.request.family in (socket.AF_INET, socket.AF_INET6):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - argparse name
        pass

    def _access(self, status: int) -> None:
        standin = self.server.standin
        if standin.s.access_log:
            phrase = HTTPStatus(status).phrase
            standin.log.write(
                f'INFO:     {self.client_address[0]}:'
                f'{self.client_address[1]} - "{self.command} {self.path} '
                f'{self.request_version}" {status} {phrase}')

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("server", "uvicorn")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._access(status)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _body(self) -> tuple[dict[str, Any] | None, str | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return None, f"Invalid JSON body: {exc}"
        if not isinstance(data, dict):
            return None, "The request body must be a JSON object"
        return data, None

    def _wait_if_hung(self) -> bool:
        standin = self.server.standin
        if standin.hung.is_set():
            standin.stop.wait()  # never answer; the connection dies with the process
            return True
        return False

    # --------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        standin = self.server.standin
        standin.record(self, None)
        path = self.path.split("?", 1)[0]
        if self._wait_if_hung():
            return
        if path in ("/health", "/ping"):
            self._send(503 if standin.dead.is_set() else 200, b"")
        elif path == "/metrics":
            self._send(200, standin.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/version":
            self._json(200, {"version": VLLM_VERSION})
        elif path == "/load":
            self._json(200, {"server_load": sum(e.running for e in standin.engines.stats)})
        elif path.startswith("/v1/") and not standin.authorised(self):
            self._json(401, {"error": "Unauthorized"})
        elif path == "/v1/models":
            self._json(200, standin.models_body())
        else:
            self._json(404, {"detail": "Not Found"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        standin = self.server.standin
        path = self.path.split("?", 1)[0]
        body, problem = self._body()
        standin.record(self, body)
        if self._wait_if_hung():
            return
        if path == "/ping":
            self._send(503 if standin.dead.is_set() else 200, b"")
            return
        if path.startswith("/v1/") and not standin.authorised(self):
            self._json(401, {"error": "Unauthorized"})
            return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._json(404, {"detail": "Not Found"})
            return
        if problem or body is None:
            self._json(400, _error_body(problem or "Request body is required",
                                        "BadRequestError", 400))
            return
        model = body.get("model")
        if model is not None and model not in standin.s.served_names:
            self._json(404, _error_body(f"The model `{model}` does not exist.", "NotFoundError",
                                        404, "model"))
            return
        if standin.dead.is_set():
            self._json(500, _error_body("EngineCore encountered an issue. See stack trace (above)"
                                        " for the root cause.", "InternalServerError", 500))
            return
        self._complete(path == "/v1/chat/completions", body)

    def _complete(self, chat: bool, body: dict[str, Any]) -> None:
        standin = self.server.standin
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._json(400, _error_body("messages: Field required", "BadRequestError", 400,
                                            "messages"))
                return
            prompt_tokens = _prompt_tokens(messages)
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            last = _content_text(users[-1].get("content")) if users else ""
        else:
            prompt = body.get("prompt")
            last = prompt if isinstance(prompt, str) else json.dumps(prompt)
            prompt_tokens = count_tokens(last) + 1
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        limit = standin.mem.max_model_len
        if prompt_tokens > limit:
            self._json(400, _error_body(
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt_tokens} input tokens. Please reduce the length of the input "
                "messages.", "BadRequestError", 400))
            return
        if max_tokens is not None:
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                self._json(400, _error_body("max_tokens must be at least 1, got "
                                            f"{max_tokens!r}.", "BadRequestError", 400))
                return
            if max_tokens > limit - prompt_tokens:
                self._json(400, _error_body(
                    f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                    f"model's maximum context length is {limit} tokens and your request has "
                    f"{prompt_tokens} input tokens ({max_tokens} > {limit} - {prompt_tokens}).",
                    "BadRequestError", 400))
                return
        n = body.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            self._json(400, _error_body(f"n must be at least 1, got {n!r}.", "BadRequestError",
                                        400, "n"))
            return
        reasoning, answer, reason = standin.generate(prompt_tokens, last, max_tokens)
        model = body.get("model") or standin.s.served_names[0]
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        engine = standin.engines.start(prompt_tokens)
        generated = 0
        finished = False

        def finish() -> None:
            # Before the last byte goes out, so a client that reads /metrics right after its
            # reply sees the request finished, as with vLLM.
            nonlocal finished
            if not finished:
                finished = True
                standin.engines.finish(engine, prompt_tokens, generated, reason)

        try:
            if body.get("stream"):
                options = body.get("stream_options") or {}

                def count(produced: int) -> None:
                    nonlocal generated
                    generated = produced
                    finish()

                self._stream(chat, request_id, model, n, reasoning, answer, reason,
                             prompt_tokens, bool(options.get("include_usage")), engine, count)
            else:
                for _ in range(n * (len(reasoning) + len(answer))):
                    self._tick(engine)
                    generated += 1
                usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + generated,
                         "completion_tokens": generated, "prompt_tokens_details": None}
                choices = [self._choice(chat, i, reasoning, answer, reason) for i in range(n)]
                finish()
                self._json(200, {
                    "id": request_id, "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()), "model": model, "choices": choices,
                    "usage": usage, "prompt_logprobs": None, "kv_transfer_params": None,
                })
        finally:
            finish()

    def _tick(self, engine: EngineStats) -> None:
        self.server.standin.engines.token(engine)

    def _choice(self, chat: bool, index: int, reasoning: list[str], answer: list[str],
                reason: str) -> dict[str, Any]:
        text = "".join(answer)
        if not chat:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": reason,
                    "stop_reason": None, "prompt_logprobs": None}
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                                   "annotations": None, "audio": None, "function_call": None,
                                   "tool_calls": []}
        if reasoning:
            # 0.33 names the field "reasoning"; older clients read "reasoning_content".
            message["reasoning_content"] = message["reasoning"] = "".join(reasoning).strip()
        return {"index": index, "message": message, "logprobs": None, "finish_reason": reason,
                "stop_reason": None, "token_ids": None}

    def _stream(self, chat: bool, request_id: str, model: str, n: int, reasoning: list[str],
                answer: list[str], reason: str, prompt_tokens: int, include_usage: bool,
                engine: EngineStats, done: Callable[[int], None]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("server", "uvicorn")
        self.end_headers()
        self.close_connection = True
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        generated = 0

        def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            payload: dict[str, Any] = {"id": request_id, "object": kind, "created": created,
                                       "model": model, "choices": choices}
            if usage is not None:
                payload["usage"] = usage
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        def piece(index: int, delta: dict[str, Any], finish: str | None = None
                  ) -> dict[str, Any]:
            if chat:
                return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"index": index, "text": delta.get("content", ""), "logprobs": None,
                    "finish_reason": finish, "stop_reason": None}

        try:
            for i in range(n):
                if chat:
                    event([piece(i, {"role": "assistant", "content": ""})])
                for kind_key, pieces in (("reasoning_content", reasoning), ("content", answer)):
                    for token in pieces:
                        self._tick(engine)
                        generated += 1
                        delta = {kind_key: token}
                        if kind_key == "reasoning_content":
                            delta["reasoning"] = token
                        event([piece(i, delta if chat else {"content": token})])
                event([piece(i, {}, reason)])
            done(generated)
            if include_usage:
                event([], {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens
                           + generated, "completion_tokens": generated})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            done(generated)
        self._access(200)


class Server(ThreadingHTTPServer):
    """Bound at construction (so a taken port fails before the model "loads", like vLLM)
    but listening only after :meth:`server_activate`, so early connections are refused."""

    daemon_threads = True

    def __init__(self, standin: Simulation) -> None:
        host = standin.s.host or ""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.standin = standin
        super().__init__((host, standin.s.port), _Handler, bind_and_activate=False)
        try:
            self.server_bind()
        except OSError:
            self.server_close()
            raise

    def server_activate(self) -> None:
        self.socket.listen(128)
