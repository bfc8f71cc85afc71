"""stats / advise / watch against a running stand-in with four data-parallel engines."""

from __future__ import annotations

import time

from tests.conftest import HPC


def serve(hpc: HPC, name: str) -> None:
    hpc("submit", "Qwen3-VL-2B", "--preset", "dp4-throughput", "--simulate", "--name", name,
        "--set", "max-model-len=40960", "--env", "VLLM_LOG_STATS_INTERVAL=0.3")
    hpc("wait", name, "--timeout", "60")
    for i in range(3):
        hpc("chat", name, f"message {i}")


def test_stats_prefers_metrics_and_reports_every_engine(hpc: HPC) -> None:
    serve(hpc, "st")
    data = hpc("stats", "st", "--json").json()
    assert data["source"] == "metrics"
    assert [e["engine"] for e in data["engines"]] == ["000", "001", "002", "003"]
    assert data["startup"]["max_concurrency_for_tokens"] == 40960
    assert len(data["startup"]["max_concurrency_per_engine"]) == 4


def test_stats_from_the_log_lines(hpc: HPC) -> None:
    serve(hpc, "sl")
    deadline = time.time() + 20
    while time.time() < deadline:
        data = hpc("stats", "sl", "--source", "log", "--json").json()
        if data["engines"]:
            break
        time.sleep(0.5)
    assert data["source"] == "log"
    assert data["engines"][0]["engine"] == "000"
    assert data["engines"][0]["age_s"] is not None


def test_advise_recommends_max_num_seqs_from_capacity(hpc: HPC) -> None:
    serve(hpc, "ad")
    tips = hpc("advise", "ad", "--json").json()
    codes = {t["code"] for t in tips}
    assert codes, "a server with startup facts must get capacity advice"
    text = hpc("stats", "ad", "--advice").stdout
    assert "max-num-seqs" in text


def test_watch_prints_one_table(hpc: HPC) -> None:
    serve(hpc, "wa")
    out = hpc("watch", "--count", "1", "--interval", "0.1").stdout
    assert "wa" in out and "READY" in out and "ENGINES" in out
