"""The log writer: every line the stand-in prints has vLLM 0.33's shape.

hpclaunch reads a stand-in's log with the same code as a real vLLM log, so the prefix,
level, timestamp and ``[file:line]`` parts must match exactly.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO


class Log:
    """vLLM 0.33 log lines: ``(<process> pid=<pid>) LEVEL MM-DD HH:MM:SS [file:line] msg``.

    Logger lines go to stdout, uvicorn lines and tracebacks to stderr, as in vLLM; every line
    is flushed because the job redirects both into one file that hpclaunch tails. One lock
    keeps lines from different threads whole.
    """

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def prefix(self, proc: str) -> str:
        return f"({proc} pid={self.pid}) "

    def write(self, text: str, stream: TextIO | None = None) -> None:
        target = stream or self.out
        with self._lock:
            target.write(text if text.endswith("\n") else text + "\n")
            target.flush()

    def progress(self, text: str) -> None:
        """A tqdm bar update on stderr, written as is: tqdm ends an update with ``\r`` or
        a newline of its own, and the bar lines carry no process prefix."""
        with self._lock:
            self.err.write(text)
            self.err.flush()

    def log(self, proc: str, level: str, src: str, msg: str) -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        head = f"{self.prefix(proc)}{level} {stamp} [{src}] "
        self.write("\r\n".join(head + line for line in msg.split("\n")))  # NewLineFormatter

    def info(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "INFO", src, msg)

    def warning(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "WARNING", src, msg)

    def error(self, proc: str, src: str, msg: str) -> None:
        self.log(proc, "ERROR", src, msg)

    def uvicorn(self, proc: str, msg: str) -> None:
        self.write(f"INFO:     {msg}", self.err)  # 0.33: uvicorn's own format, no prefix

    def traceback(self, proc: str, frames: list[tuple[str, int, str, str]], exc: str) -> None:
        """A Python traceback on stderr, as Python prints it (no vLLM prefix in 0.33)."""
        lines = ["Traceback (most recent call last):"]
        for path, lineno, func, code in frames:
            lines += [f'  File "{path}", line {lineno}, in {func}', f"    {code}"]
        lines += exc.split("\n")
        self.write("\n".join(lines), self.err)  # plain stderr: no prefix in 0.33
