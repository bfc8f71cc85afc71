"""HTTP GET over an already-open byte stream (an SSH channel, or ``ssh -W``'s socket).

A login node can reach compute nodes that the laptop running hpclaunch cannot, so
``/health`` probes travel inside the SSH connection; :mod:`http.client` does the
HTTP and this module only hands it the stream.
"""

from __future__ import annotations

import http.client
import logging
from typing import Any

log = logging.getLogger(__name__)


def get_over(stream: Any, host: str, port: int, path: str, headers: dict[str, str] | None,
             timeout: float, via: str) -> tuple[int, bytes]:
    """GET ``path`` from ``host:port`` over ``stream``; ``(0, b"")`` when it fails.

    The caller owns ``stream`` and closes it after this returns.
    """
    stream.settimeout(timeout)
    conn = _StreamHTTPConnection(stream, host, port, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, EOFError, http.client.HTTPException) as exc:
        log.debug("GET %s from %s:%s via %s failed: %r", path, host, port, via, exc)
        return 0, b""
    finally:
        conn.close()


class _StreamHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is a stream opened elsewhere."""

    def __init__(self, stream: Any, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._stream = stream

    def connect(self) -> None:
        self.sock = self._stream

    def close(self) -> None:
        # http.client closes its socket as soon as it has the headers of a
        # "Connection: close" response, relying on makefile() to keep a real socket
        # open for the body; closing a channel ends it at once, and a body that arrives
        # in a later packet is lost. The caller closes the stream instead.
        self.sock = None
        super().close()
