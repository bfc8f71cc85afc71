"""Bounded reads of a vLLM log: its head and its tail, never the whole file.

Those logs can grow to gigabytes over a long run, and may sit on a remote cluster: startup
facts are near the start, the latest stats and the cause of death near the end.
:func:`read_head_tail` reads at most ``head_bytes + tail_bytes`` of a local file, and
:meth:`LogChunk.from_bytes` lets a remote transport (SFTP seek) build the same object from
bytes it read itself, with the same rules for cut lines, rotation and non-UTF-8 bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["HEAD_BYTES", "TAIL_BYTES", "LogChunk", "read_head_tail"]

HEAD_BYTES = 256 * 1024
TAIL_BYTES = 256 * 1024

@dataclass(frozen=True)
class LogChunk:
    """The part of a log that was read: its start, its end, and what is known of the file.

    Parameters
    ----------
    head
        Text from the start of the file.  When the file is small enough to read whole, the whole
        file is here and ``tail`` is empty, so no line is ever seen twice.
    tail
        Text from the end of the file, starting at a line boundary; empty for a small file.
    size
        File size in bytes when it was read.
    exists
        False when the file is missing (not created yet, or removed).
    mtime
        Modification time (seconds since the epoch) or None.
    skipped
        Bytes between the end of ``head`` and the start of ``tail`` that were not read.
    """

    head: str
    tail: str
    size: int
    exists: bool
    mtime: float | None
    skipped: int = 0

    @classmethod
    def missing(cls) -> LogChunk:
        """A chunk for a log file that does not exist (yet)."""
        return cls(head="", tail="", size=0, exists=False, mtime=None)

    @classmethod
    def from_bytes(
        cls, head: bytes, tail: bytes, size: int, mtime: float | None = None
    ) -> LogChunk:
        """Build a chunk from raw bytes read by any transport.

        ``head`` must be the first ``len(head)`` bytes of the file and ``tail`` its last
        ``len(tail)`` bytes (a file of ``size`` bytes).  Overlap is allowed and removed.  When a gap
        separates them, the line cut at the end of ``head`` and the line cut at the start of
        ``tail`` are dropped, so a half line can never match a pattern; a reader that starts the
        tail one byte early (as :func:`read_head_tail` does) loses no complete line that way.
        Bytes that are not UTF-8 become U+FFFD instead of raising.
        """
        tail_start = size - len(tail)
        if tail_start <= len(head):
            whole = head + tail[len(head) - tail_start :] if tail else head
            return cls(head=_decode(whole), tail="", size=size, exists=True, mtime=mtime)
        cut = head.rfind(b"\n")
        head = head[: cut + 1]  # (cut == -1) -> b"": a head without a newline is one partial line
        nl = tail.find(b"\n")
        tail = tail[nl + 1 :] if nl >= 0 else b""
        skipped = size - len(tail) - len(head)
        return cls(
            head=_decode(head),
            tail=_decode(tail),
            size=size,
            exists=True,
            mtime=mtime,
            skipped=skipped,
        )


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read_head_tail(
    path: str | os.PathLike[str],
    head_bytes: int = HEAD_BYTES,
    tail_bytes: int = TAIL_BYTES,
) -> LogChunk:
    """Read at most ``head_bytes`` from the start and ``tail_bytes`` (+1) from the end of a file.

    The size is taken once, from the open file, so a log that keeps growing while we read is
    bounded by what it was at that moment; a log that shrank (rotated, truncated, rewritten by a
    restarted job) is simply read as it is now, since nothing here keeps offsets between calls.
    A missing file gives ``LogChunk(exists=False)`` rather than an error: a queued job has no log.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if size <= head_bytes + tail_bytes:
                data = f.read(size)
                return LogChunk.from_bytes(data, b"", len(data), st.st_mtime)
            head = f.read(head_bytes)
            # One byte before the tail tells whether the tail starts on a line boundary.
            start = size - tail_bytes - 1
            f.seek(start)
            tail = f.read(tail_bytes + 1)
            return LogChunk.from_bytes(head, tail, start + len(tail), st.st_mtime)
    except FileNotFoundError:
        return LogChunk.missing()

