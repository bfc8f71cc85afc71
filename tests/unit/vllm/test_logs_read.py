"""Specification of hpclaunch.vllm.logs.read: bounded reads, awkward bytes, half-written lines."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import HEAD_BYTES, TAIL_BYTES, LogChunk, read_head_tail
from tests.unit.vllm.logsamples import (
    NOW,
    STATS_033,
    parse_bytes,
    parse_text,
    sample_bytes,
)


def test_crlf_and_bare_cr_line_endings_parse_like_lf() -> None:
    lf = sample_bytes("ok_v033_single.log")
    crlf = lf.replace(b"\n", b"\r\n")
    # 0.33 multi-line messages repeat the prefix after \r\n; progress bars redraw with \r.
    crlf = crlf.replace(
        b"Capturing CUDA graphs (decode, FULL): 100%",
        b"Capturing CUDA graphs (decode, FULL): 10%\rCapturing CUDA graphs (decode, FULL): 100%",
    )
    a, b = parse_bytes(lf), parse_bytes(crlf)
    assert b.ready_line and b.failure is None
    assert b.startup == a.startup
    assert b.stats == a.stats
    assert all("\r" not in line for line in b.last_lines(50))


def test_non_utf8_bytes_do_not_break_parsing() -> None:
    data = (
        sample_bytes("ok_v033_single.log").replace(
            b"Loading weights took", b"\xff\xfe\xc3 Loading weights took"
        )
        + b"\n(APIServer pid=1) INFO 11-25 12:03:00 [x.py:1] caf\xe9 \x80\n"
    )
    r = parse_bytes(data)
    assert r.ready_line and r.stats["000"].running == 8
    assert "\ufffd" in r.last_lines(1)[0]


@pytest.mark.parametrize(
    "cut", ["Running: 1", "Running: 12 reqs, Waiting: 0 reqs, GPU KV cache usage: 4", "Engine 0"]
)
def test_a_half_written_last_line_never_produces_numbers(cut: str) -> None:
    complete = STATS_033.replace("12:02:15", "12:02:05").replace("Running: 12", "Running: 3")
    partial = STATS_033[: STATS_033.index(cut) + len(cut)]
    r = parse_text(complete + "\n" + partial)  # no newline: still being written
    assert r.stats["000"].running == 3
    assert r.stats["000"].timestamp == datetime(2026, 11, 25, 12, 2, 5)
    # once the line is finished it counts
    assert parse_text(complete + "\n" + STATS_033 + "\n").stats["000"].running == 12


def test_a_half_written_readiness_line_is_not_readiness() -> None:
    assert not parse_text(
        "INFO:     Waiting for application startup.\nINFO:     Application startup complete"
    ).ready_line
    assert parse_text("INFO:     Application startup complete.\n").ready_line


# --------------------------------------------------------------------------------------------
# Bounded reads
# --------------------------------------------------------------------------------------------


def test_missing_file_is_an_empty_chunk_not_an_error(tmp_path: Path) -> None:
    chunk = read_head_tail(tmp_path / "vllm_x_port8000_realtime.log")
    assert chunk == LogChunk(head="", tail="", size=0, exists=False, mtime=None)
    r = parse(chunk)
    assert not r.exists and not r.started and r.failure is None and r.stats == {}


def test_small_file_is_read_whole_into_head_only(tmp_path: Path) -> None:
    path = tmp_path / "small.log"
    data = sample_bytes("ok_v033_single.log")
    path.write_bytes(data)
    chunk = read_head_tail(path, head_bytes=len(data) // 2, tail_bytes=len(data) - len(data) // 2)
    assert chunk.head == data.decode() and chunk.tail == "" and chunk.skipped == 0
    assert chunk.size == len(data) and chunk.exists
    assert chunk.mtime == pytest.approx(os.path.getmtime(path))


def test_large_file_keeps_whole_lines_on_both_sides_of_the_gap(tmp_path: Path) -> None:
    lines = [f"line {i:06d} " + "x" * (i % 50) for i in range(20000)]
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    chunk = read_head_tail(path, head_bytes=4096, tail_bytes=4096)
    head, tail = chunk.head.split("\n"), chunk.tail.split("\n")
    assert head[-1] == "" and tail[-1] == ""  # both end on a line boundary
    assert head[:-1] == lines[: len(head) - 1]
    assert tail[:-1] == lines[-(len(tail) - 1) :]
    assert len(chunk.head.encode()) <= 4096 and len(chunk.tail.encode()) <= 4097
    assert chunk.skipped == chunk.size - len(chunk.head.encode()) - len(chunk.tail.encode())


def test_a_tail_that_starts_exactly_on_a_line_keeps_that_line(tmp_path: Path) -> None:
    head_part = b"a" * 99 + b"\n"  # 100 bytes
    tail_part = b"first whole line\nsecond\n"
    path = tmp_path / "edge.log"
    path.write_bytes(head_part + b"b" * 999 + b"\n" + tail_part)
    chunk = read_head_tail(path, head_bytes=100, tail_bytes=len(tail_part))
    assert chunk.tail == tail_part.decode()


def test_from_bytes_drops_the_cut_lines_and_removes_overlap() -> None:
    data = b"one\ntwo\nthree\nfour\n"
    # overlapping head and tail: same as the whole file
    assert LogChunk.from_bytes(data[:12], data[6:], len(data)).head == data.decode()
    # a gap: the head's cut last line and the tail's cut first line are dropped
    c = LogChunk.from_bytes(data[:6], data[-7:], len(data))
    assert (c.head, c.tail) == ("one\n", "four\n")
    assert c.skipped == len(data) - len("one\n") - len("four\n")


def test_a_shrunken_log_is_simply_read_again(tmp_path: Path) -> None:
    path = tmp_path / "rotated.log"
    path.write_bytes(sample_bytes("ok_v033_single.log") * 40)
    assert read_head_tail(path, 8192, 8192).skipped > 0
    path.write_bytes(sample_bytes("fail_port_in_use.log"))  # the job restarted and rewrote it
    r = parse(read_head_tail(path, 8192, 8192))
    assert r.failure is not None and r.failure.code == "port_in_use" and not r.ready_line


def test_50_mb_log_reads_only_head_and_tail_and_finds_both_ends(tmp_path: Path) -> None:
    path = tmp_path / "vllm_big_port8000_realtime.log"
    startup = sample_bytes("ok_v033_single.log")
    filler = (STATS_033.replace("Running: 12", "Running: 1") + "\n").encode()
    final = STATS_033.replace("12:02:15", "22:59:50").replace("Running: 12", "Running: 77") + "\n"
    with open(path, "wb") as f:
        f.write(startup)
        f.write(filler * (50 * 1024 * 1024 // len(filler)))
        f.write(final.encode())
    size = path.stat().st_size
    assert size > 50 * 1024 * 1024

    chunk = read_head_tail(path)
    assert chunk.size == size
    assert len(chunk.head.encode()) <= HEAD_BYTES
    assert len(chunk.tail.encode()) <= TAIL_BYTES + 1
    assert chunk.skipped >= size - HEAD_BYTES - TAIL_BYTES - 1

    r = parse(chunk, now=NOW)
    assert r.ready_line and r.failure is None
    assert r.startup.max_concurrency == [8.49]
    assert r.stats["000"].running == 77
    assert r.stats["000"].timestamp == datetime(2026, 11, 25, 22, 59, 50)
