"""A tiny Hugging Face Hub on 127.0.0.1: the few routes ``snapshot_download`` uses, for
repos generated in the test, so prefetch, the cache scan and offline mode run the real
huggingface_hub code against real HTTP (point ``HF_ENDPOINT`` at :attr:`LocalHub.url`).

Routes: ``GET /api/models/{repo}/revision/{rev}`` (repo info: the commit), ``GET
/api/models/{repo}/tree/{rev}[/{path}]`` (the file list), ``HEAD|GET
/{repo}/resolve/{rev}/{file}`` (metadata headers, then the bytes). A gated repo answers
401 with ``X-Error-Code: GatedRepo`` unless the request carries the right token, as the
Hub does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(json.dumps(sorted((k, v.hex()) for k, v in self.files.items()))
                              .encode()).hexdigest()
        self.commit = self.commit or digest


@dataclass
class LocalHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str = "hf_local_test_token"
    requests: list[str] = field(default_factory=list)

    def start(self) -> LocalHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self.answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?", 1)[0]
                api = re.fullmatch(r"/api/models/(.+?/.+?)/(revision|tree)/([^/]+)(/.*)?", path)
                resolve = re.fullmatch(r"/(.+?/.+?)/resolve/([^/]+)/(.+)", path)
                repo_id = (api or resolve).group(1) if (api or resolve) else ""
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self.send(404, {"error": "Repository not found"},
                                     {"X-Error-Code": "RepoNotFound"}, body)
                if repo.gated and self.headers.get("authorization") != f"Bearer {hub.token}":
                    return self.send(401, {"error": f"Access to model {repo_id} is restricted"},
                                     {"X-Error-Code": "GatedRepo",
                                      "X-Error-Message": "Access to this model is restricted"},
                                     body)
                if api and api.group(2) == "revision":
                    return self.send(200, {"id": repo_id, "modelId": repo_id, "sha": repo.commit,
                                           "siblings": [{"rfilename": f} for f in repo.files],
                                           "gated": repo.gated, "private": False}, {}, body)
                if api:
                    return self.send(200, [{"type": "file", "path": name, "size": len(data),
                                            "oid": hashlib.sha1(data).hexdigest()}
                                           for name, data in sorted(repo.files.items())], {}, body)
                assert resolve is not None
                data = repo.files.get(resolve.group(3))
                if data is None:
                    return self.send(404, {"error": "Entry not found"},
                                     {"X-Error-Code": "EntryNotFound"}, body)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", repo.commit)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def send(self, status: int, payload: Any, headers: dict[str, str],
                     body: bool) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tiny_model(name: str = "tiny") -> dict[str, bytes]:
    """The files vLLM looks for first: a config, a tokenizer and small weights."""
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 2048,
              "torch_dtype": "bfloat16", "_name": name}
    return {"config.json": json.dumps(config).encode(),
            "tokenizer_config.json": b'{"model_max_length": 2048}',
            "model.safetensors": bytes(range(256)) * 64}
