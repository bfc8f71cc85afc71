"""Loading progress read from vLLM's start-up output, fed as it grows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpclaunch.vllm.progress import (
    COMPILE,
    GRAPHS,
    KV,
    MAX_READ,
    SERVER,
    WEIGHTS,
    LoadTracker,
    LogFollower,
)

P = "(Worker_TP0 pid=41) INFO 11-26 08:00:00 "
SHARDS = [f"Loading safetensors checkpoint shards: {100 * n // 8:3d}% Completed | {n}/8 "
          f"[00:{4 * n:02d}<00:{4 * (8 - n):02d},  4.00s/it]\n" for n in range(9)]
COMPILE_LINES = (
    f"{P}[backends.py:1069] Using cache directory: /root/.cache/vllm/torch_compile_cache/"
    "0123456789/rank_0_0/backbone for vLLM's torch.compile\n"
    f"{P}[backends.py:1128] Dynamo bytecode transform time: 6.20 s\n"
    f"{P}[monitor.py:53] torch.compile took 31.50 s in total\n")
CAPTURE = "".join(
    f"Capturing CUDA graphs (decode, FULL): {100 * n // 35:3d}%|{'█' * (n * 10 // 35):10}| "
    f"{n}/35 [00:{n // 7:02d}<00:{(35 - n) // 7:02d},  7.00it/s]\r" for n in range(0, 36, 5))


def fed(*chunks: str) -> LoadTracker:
    tracker = LoadTracker(clock=lambda: 100.0)
    for chunk in chunks:
        tracker.feed(chunk)
    return tracker


def test_before_any_loading_line_there_is_no_phase() -> None:
    progress = fed(f"{P}[utils.py:253] non-default args: {{}}\n").progress()
    assert progress.phase == "" and progress.line() == ""


def test_the_shard_bar_gives_percent_count_and_tqdms_own_eta() -> None:
    progress = fed(*SHARDS[:4]).progress()
    assert (progress.phase, progress.percent) == (WEIGHTS, 37.0)
    assert progress.detail == "3/8 shards" and progress.eta == 20
    assert progress.line() == "loading weights 37% (3/8 shards), ETA 0:20"


def test_loading_weights_took_finishes_the_phase_with_vllms_time() -> None:
    progress = fed(*SHARDS, f"{P}[default_loader.py:384] Loading weights took 32.10 seconds\n"
                   ).progress()
    assert progress.percent == 100 and dict(progress.done) == {WEIGHTS: 32.1}


def test_phases_follow_vllms_order_to_the_api_server() -> None:
    tracker = fed(*SHARDS)
    seen = []
    for chunk in (COMPILE_LINES,
                  f"{P}[gpu_worker.py:359] Available KV cache memory: 37.15 GiB\n",
                  CAPTURE + "\n",
                  f"{P}[core.py:250] init engine (profile, create kv cache, warmup model) "
                  "took 80.12 s\n"):
        tracker.feed(chunk)
        seen.append(tracker.progress().phase)
    assert seen == [COMPILE, KV, GRAPHS, SERVER]
    assert dict(tracker.progress().done)[COMPILE] == 31.5


def test_a_capture_bar_split_by_carriage_returns_shows_its_newest_update() -> None:
    # tqdm writes "\r" + update: the newest update has no terminator yet.
    progress = fed(*SHARDS, COMPILE_LINES, CAPTURE[:-1]).progress()
    assert progress.phase == GRAPHS and progress.percent == 100
    assert progress.detail == "decode, FULL 35/35 graphs"


def test_the_phase_never_goes_back_when_engines_interleave() -> None:
    progress = fed(*SHARDS, COMPILE_LINES, SHARDS[2]).progress()
    assert progress.phase == COMPILE


def test_a_phase_without_a_bar_says_how_long_it_has_run() -> None:
    now = [100.0]
    tracker = LoadTracker(clock=lambda: now[0])
    tracker.feed(COMPILE_LINES.split("\n")[0] + "\n")
    now[0] = 145.0
    assert tracker.progress().line() == "torch.compile, 0:45 so far"


def test_older_wording_is_read_too() -> None:
    # vLLM 0.8-0.11: "torch.compile takes"; V0 "Capturing the model for CUDA graphs".
    tracker = fed(f"{P}[monitor.py:33] torch.compile takes 21.60 s in total\n")
    assert dict(tracker.progress().done) == {COMPILE: 21.6}
    tracker.feed(f"{P}[model_runner.py:1311] Capturing the model for CUDA graphs. This may "
                 "lead to unexpected consequences if the model is not static.\n")
    assert tracker.progress().phase == GRAPHS


def test_lines_split_across_reads_are_joined() -> None:
    text = "".join(SHARDS[:6])
    tracker = fed(text[:37], text[37:101], text[101:])
    assert tracker.progress().detail == "5/8 shards"


@dataclass
class _St:
    size: int


class Files:
    """The two transport calls the follower uses, on a local file, counting bytes read."""

    def __init__(self) -> None:
        self.read = 0

    def stat(self, path: str) -> _St | None:
        p = Path(path)
        return _St(p.stat().st_size) if p.exists() else None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        self.read += len(data)
        return data


def test_the_follower_reads_only_what_the_log_gained(tmp_path: Path) -> None:
    log, files, follower = tmp_path / "vllm.log", Files(), LogFollower()
    assert follower.poll(files, str(log)).phase == ""  # no log yet
    log.write_text("".join(SHARDS[:3]))
    assert follower.poll(files, str(log)).detail == "2/8 shards"
    with log.open("a") as f:
        f.write("".join(SHARDS[3:]))
    assert follower.poll(files, str(log)).percent == 100
    assert files.read == log.stat().st_size  # each byte read once
    follower.poll(files, str(log))
    assert files.read == log.stat().st_size  # an unchanged log costs a stat


def test_a_huge_log_is_read_from_its_tail_only(tmp_path: Path) -> None:
    log, files = tmp_path / "vllm.log", Files()
    filler = f"{P}[loggers.py:1] padding line of a long start-up\n" * (3 * MAX_READ // 60)
    log.write_text(filler + "".join(SHARDS[:5]))
    progress = LogFollower().poll(files, str(log))
    assert progress.detail == "4/8 shards" and files.read <= MAX_READ


def test_a_replaced_log_starts_over(tmp_path: Path) -> None:
    log, files, follower = tmp_path / "vllm.log", Files(), LogFollower()
    log.write_text("".join(SHARDS) + COMPILE_LINES)
    assert follower.poll(files, str(log)).phase == COMPILE
    log.write_text(SHARDS[1])
    assert follower.poll(files, str(log)).detail == "1/8 shards"
