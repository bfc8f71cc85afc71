"""`hpclaunch bench` against stand-ins whose latency grows with load, through the CLI.

The stand-in's steps slow down with the batch and at most --max-num-seqs requests run,
so the checks are about shapes (throughput flattens, queueing shows in time to first
token), never about constants.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import HPC, one_line_error

# 10 ms a decode step alone; a step at batch b takes 10 * (1 + b / 16) ms.
SLOW = ("--env", "HPCLAUNCH_STANDIN_TOKEN_DELAY=0.01")


def serve(hpc: HPC, name: str, max_num_seqs: int, *extra: str) -> None:
    hpc("submit", "Qwen3-0.6B", "--preset", "single-gpu", "--scheduler", "local",
        "--simulate", "--name", name, "--set", f"max-num-seqs={max_num_seqs}", *SLOW, *extra)
    hpc("wait", name, "-q")


def levels(out: dict, index: int = 0) -> dict[int, dict]:
    return {lv["concurrency"]: lv for lv in out["sweeps"][index]["levels"]}


def test_a_sweep_shows_saturation_and_queueing(hpc: HPC, tmp_path: Path) -> None:
    serve(hpc, "small", 4)
    csv_path, png = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    run = hpc("bench", "small", "-c", "1,4,16", "-n", "16", "--max-tokens", "8",
              "--prompt-tokens", "32", "--stream", "--json", "--csv", str(csv_path),
              "--plot", str(png))
    out = json.loads(run.stdout)
    lv = levels(out)
    assert all(x["ok"] == 16 and x["errors"] == {} for x in lv.values())
    # Tokens are the server's usage: every reply ran to max_tokens.
    assert all(x["output_tokens"] == 16 * 8 for x in lv.values())
    # Four requests share a batch: throughput rises well past one request's...
    assert lv[4]["tok_per_s"] > 2 * lv[1]["tok_per_s"]
    # ...but only 4 run at once, so 16 clients add queueing, not throughput.
    assert lv[16]["tok_per_s"] < 1.5 * lv[4]["tok_per_s"]
    assert lv[16]["ttft_p50"] > 3 * lv[4]["ttft_p50"]
    assert lv[16]["latency_p50"] > 2 * lv[4]["latency_p50"]
    # Streaming measures the gaps between tokens: about one step, slower with the batch.
    assert 0.005 < lv[1]["itl_p50"] < lv[4]["itl_p95"] < 0.5

    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["endpoint"], r["concurrency"]) for r in rows] == [
        ("small", "1"), ("small", "4"), ("small", "16")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "recorded in" in run.stderr

    history = hpc("bench", "--history", "small").stdout
    assert "single-gpu" in history and "1,4,16" in history

    table = hpc("bench", "small", "-c", "1,2", "-n", "4", "--max-tokens", "4").stdout
    assert table.splitlines()[1].split()[:3] == ["conc", "requests", "req/s"]
    assert "TTFT P50 ms" in table and "4/4" in table
    assert len(hpc("bench", "--history", "small", "--json").json()) == 2


def test_two_endpoints_side_by_side_with_their_ratio(hpc: HPC) -> None:
    serve(hpc, "wide", 4)
    serve(hpc, "narrow", 1)
    run = hpc("bench", "wide", "narrow", "-c", "1,4", "-n", "8", "--max-tokens", "6",
              "--no-record")
    text = run.stdout
    assert "A = wide" in text and "B = narrow" in text and "B/A" in text
    compared = text[text.index("B/A"):].splitlines()
    row = next(line.split() for line in compared if line.split()[:1] == ["4"])
    a_req, b_req, ratio = float(row[1]), float(row[2]), float(row[3].rstrip("x"))
    # One request at a time on B: at 4 clients it serves far fewer than A.
    assert ratio < 0.6 and abs(ratio - b_req / a_req) < 0.02
    assert "recorded in" not in run.stderr


def test_failed_requests_are_counted_by_type_and_stop_the_sweep(hpc: HPC) -> None:
    serve(hpc, "short", 4, "--set", "max-model-len=512")
    out = hpc("bench", "short", "-c", "1,4", "-n", "3", "--prompt-tokens", "600",
              "--json", "--no-record").json()
    (only,) = out["sweeps"][0]["levels"]  # nothing got through: no second level
    assert only["ok"] == 0 and only["errors"] == {"HTTP 400": 3}


def test_a_guide_profile_runs_its_levels_and_checks_its_targets(hpc: HPC) -> None:
    serve(hpc, "g", 64)
    out = hpc("bench", "g", "--profile", "guide-004", "-n", "4", "--max-tokens", "4",
              "--json", "--no-record").json()
    sweep = out["sweeps"][0]
    assert [lv["concurrency"] for lv in sweep["levels"]] == [2, 10, 20, 40]
    assert sweep["workload"]["api"] == "completions" and sweep["workload"]["profile"]
    targets = {(t["concurrency"], t["metric"]): t for t in out["targets"]}
    assert set(targets) == {(20, "req_per_s"), (20, "latency_p95")}
    assert targets[(20, "latency_p95")]["met"] is True  # 4 short replies: well under 10 s


def test_bad_input_is_one_line(hpc: HPC, tmp_path: Path) -> None:
    assert "no endpoint named 'ghost'" in one_line_error(hpc("bench", "ghost", ok=False))
    assert "--concurrency" in one_line_error(hpc("bench", "x", "-c", "1,a", ok=False))
    assert "at most two" in one_line_error(hpc("bench", "a", "b", "c", ok=False))
    assert "guide-002" in one_line_error(hpc("bench", "x", "--profile", "guide-9", ok=False))
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "hi"}\n{"messages": 3}\n')
    err = one_line_error(hpc("bench", "x", "--dataset", str(data), ok=False))
    assert "line 2" in err and '"messages"' in err


def test_plot_without_matplotlib_says_how_to_install_it(hpc: HPC, tmp_path: Path) -> None:
    fake = tmp_path / "no-mpl" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    hpc.env["PYTHONPATH"] = f"{fake.parent}:{hpc.env.get('PYTHONPATH', '')}"
    err = one_line_error(hpc("bench", "x", "--plot", str(tmp_path / "p.png"), ok=False))
    assert "pip install 'hpclaunch[plot]'" in err
