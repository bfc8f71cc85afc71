"""Fidelity to real vLLM: what hpclaunch reads is what vLLM's source prints, serves and accepts.

The oracle is tests/data/vllm-source/ (written from vLLM's wheels by
scripts/refresh_vllm_facts.py; each entry names its file and line).  Every line below is
rendered from a real format string with realistic arguments and the real log prefix of that
version, then parsed by hpclaunch.  A version bump is a refresh plus this file going red or
green.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hpclaunch.vllm.logs.failures import RULES
from hpclaunch.vllm.logs.lines import strip_prefix
from hpclaunch.vllm.logs.parse import parse
from hpclaunch.vllm.logs.read import LogChunk
from hpclaunch.vllm.logs.report import LogReport
from tests.unit.vllm.logsamples import NOW
from tests.unit.vllm.vllmsource import (
    FSTRING_VALUES,
    MODEL,
    SOURCE,
    VERSIONS,
    facts,
    level_of,
    log_line,
    render,
    sites,
)


def parse_lines(*lines: str) -> LogReport:
    data = ("\n".join(lines) + "\n").encode()
    return parse(LogChunk.from_bytes(data, b"", len(data)), now=NOW)


def each_site(wanted: dict[str, Any]) -> list[Any]:
    """pytest params: one per (version, fact, source site) for the facts in ``wanted``."""
    return [pytest.param(v, fact, site, id=f"{v}-{fact}-{site['file']}:{site['line']}")
            for v in VERSIONS for fact in wanted for site in sites(v, fact)]


def test_every_version_snapshot_names_its_wheel_and_commit() -> None:
    for v in VERSIONS:
        meta = facts(f"vllm-{v}")["_provenance"]
        assert meta["version"] == v and meta["sha256"] and meta["source"].endswith(".whl")
    assert facts("vllm-0.33.0")["_provenance"]["commit"] == "g4ba787ec9"
    assert sorted(p.name for p in SOURCE.glob("vllm-*.json")) == sorted(
        f"vllm-{v}.json" for v in VERSIONS)


# What hpclaunch must learn from each startup line (fact -> check of the parsed report).
STARTUP: dict[str, Callable[[LogReport, str], object]] = {
    "server_version": lambda r, v: r.version == v,
    "logo": lambda r, v: r.version == v and r.served_model == MODEL,
    "non_default_args": lambda r, v: r.served_model == "qwen3",
    "engine_config": lambda r, v: r.version == v and r.served_model == "qwen3",
    "model_loading": lambda r, v: (r.startup.model_load_gib, r.startup.model_load_seconds)
    == (4.27, 12.345678),
    "kv_memory": lambda r, v: r.startup.kv_cache_gib == [37.15],
    "v0_kv_memory": lambda r, v: r.startup.kv_cache_gib == [54.97],
    "kv_cache_size": lambda r, v: r.startup.kv_cache_tokens == [347808],
    "max_concurrency": lambda r, v: r.startup.max_concurrency == [8.49]
    and r.startup.for_tokens == 40960,
    "gpu_blocks": lambda r, v: r.startup.gpu_blocks == [21738],
    "graph_capture": lambda r, v: (r.startup.graph_capture_seconds,
                                   r.startup.graph_capture_gib) == (9.0, 0.52),
    "init_engine": lambda r, v: r.startup.init_engine_seconds == 45.67,
    "server_start": lambda r, v: r.listen_url == "http://0.0.0.0:8000",
    "stats_disabled": lambda r, v: r.startup.stats_disabled,
    # Printed (by vLLM, and so by the stand-in) but carrying nothing hpclaunch needs:
    # they must only count as a started server and never as a failure.
    "start_loading": lambda r, v: r.started,
    "weights_took": lambda r, v: r.started,
    "max_model_len_used": lambda r, v: r.started,
    "routes": lambda r, v: r.started,
    "route": lambda r, v: r.started,
    "headless": lambda r, v: r.started,
}


@pytest.mark.parametrize(("version", "fact", "site"), each_site(STARTUP))
def test_each_startup_line_is_read_from_the_real_format(version: str, fact: str,
                                                        site: dict[str, Any]) -> None:
    line = log_line(version, level_of(site["call"]) or "INFO", render(site, version, fact))
    r = parse_lines(line)
    assert STARTUP[fact](r, version), (line, r)
    assert r.failure is None and r.started


def test_the_facts_hpclaunch_relies_on_exist_in_every_version() -> None:
    needed = {"kv_cache_size", "max_concurrency", "model_loading", "init_engine",
              "server_start", "engine_config", "server_version", "route", "kv_too_small",
              "no_kv_memory", "max_model_len_too_long", "bad_reasoning_parser", "oom_sampler",
              "engine_start_failed", "engine_init_failed", "engine_dead", "model_not_found"}
    for v in VERSIONS:
        assert needed <= set(facts(f"vllm-{v}")["logs"]), v
    assert sites("0.33.0", "logo") and sites("0.33.0", "kv_memory")


# ------------------------------------------------------------------------- stats lines

PART_ARGS: dict[str, tuple[Any, ...]] = {
    "Avg prompt throughput: %.1f tokens/s": (1234.5,),
    "Avg generation throughput: %.1f tokens/s": (567.8,),
    "Running: %d reqs": (12,),
    "Waiting: %d reqs": (3,),
    "Deferred: %d reqs": (2,),
    "KV fetch: %d waiting to start, %d in progress, %d completed waiting": (1, 2, 3),
    "Preemptions: %d": (5,),
    "%s KV cache usage: %.1f%%": ("GPU", 45.6),
    "Prefix cache hit rate: %.1f%%": (12.3,),
    "Corrupted: %d reqs": (0,),
    "External prefix cache hit rate: %.1f%%": (7.5,),
    "MM cache hit rate: %.1f%%": (50.0,),
}
V1_LINE = (0, 1234.5, 567.8, 12, 3, 45.6, 12.3)
V0_LINE = (1234.5, 567.8, 12, 0, 3, 45.6, 0.0)  # Running, Swapped, Pending, GPU/CPU KV


def stats_params() -> list[Any]:
    out = []
    for v in VERSIONS:
        for site in facts(f"vllm-{v}")["stats_line"]:
            out.append(pytest.param(v, site, id=f"{v}-{site['file']}:{site['line']}"))
    return out


@pytest.mark.parametrize(("version", "site"), stats_params())
def test_each_stats_line_gives_the_numbers(version: str, site: dict[str, Any]) -> None:
    parts: list[str] = site["parts"]
    if len(parts) == 1:  # one literal: 0.11/0.8 V1 ("Engine %03d: ..."), or V0
        v1 = parts[0].startswith("Engine")
        lines = [parts[0] % (V1_LINE if v1 else V0_LINE)]
        engines = {"000" if v1 else "0": lines[0]}
    else:  # 0.33 builds it from parts: every optional field present, and none
        missing = [p for p in parts if p not in PART_ARGS]
        assert not missing, f"new stats fields need realistic arguments: {missing}"
        core = [p for p in parts if p.split(":")[0] in (
            "Avg prompt throughput", "Avg generation throughput", "Running", "Waiting",
            "%s KV cache usage")]
        engines = {}
        for key, chosen in (("000", parts), ("001", core)):
            prefix = render(sites(version, "stats_prefix_engine")[0], version,
                            "stats_prefix_engine").replace("000", key)
            args = [a for p in chosen for a in PART_ARGS[p]]
            engines[key] = prefix + ", ".join(chosen) % tuple(args)
        agg = render(sites(version, "stats_prefix_aggregated")[0], version,
                     "stats_prefix_aggregated")
        engines["aggregated"] = agg + ", ".join(core) % tuple(
            a for p in core for a in PART_ARGS[p])
    r = parse_lines(*(log_line(version, "INFO", text) for text in engines.values()))
    for key, text in engines.items():
        st = r.stats[key]
        assert (st.prompt_tps, st.gen_tps, st.running, st.kv_usage_pct) == (
            1234.5, 567.8, 12, 45.6), text
        assert st.waiting == 3
        if "Preemptions" in text:
            assert st.preemptions == 5
        if "Prefix cache hit rate: 12.3" in text:
            assert st.prefix_hit_pct == 12.3
        if "Deferred" in text:
            assert (st.deferred, st.external_prefix_hit_pct, st.mm_hit_pct) == (2, 7.5, 50.0)
    if "aggregated" in engines:
        assert r.stats["aggregated"].n_engines == 4


@pytest.mark.parametrize("version", [v for v in VERSIONS if sites(v, "v0_prefix_hit")])
def test_the_v0_prefix_hit_line_follows_its_stats_line(version: str) -> None:
    v0 = next(s for s in facts(f"vllm-{version}")["stats_line"] if "Swapped" in s["parts"][0])
    r = parse_lines(log_line(version, "INFO", v0["parts"][0] % V0_LINE),
                    log_line(version, "INFO", render(sites(version, "v0_prefix_hit")[0],
                                                     version, "v0_prefix_hit")))
    assert r.stats["0"].prefix_hit_pct == 12.3 and r.stats["0"].waiting == 3


# ------------------------------------------------------------------------- failures

# fact -> (how vLLM prints it, the failure code hpclaunch must give).  "raise X": the text is
# an exception message, printed as the last line of a traceback; "log": a logger.error /
# logger.exception message.
FAILURES: dict[str, tuple[str, str]] = {
    "kv_too_small": ("raise ValueError", "kv_too_small"),
    "no_kv_memory": ("raise ValueError", "no_kv_memory"),
    "max_model_len_too_long": ("raise ValueError", "max_model_len_too_long"),
    "bad_reasoning_parser": ("raise KeyError", "bad_reasoning_parser"),
    "oom_loading": ("log", "cuda_oom"),
    "oom_sampler": ("raise RuntimeError", "cuda_oom"),
    "gpu_busy": ("raise ValueError", "cuda_oom"),
    "engine_start_failed": ("log", "engine_start_failed"),
    "engine_init_failed": ("raise RuntimeError", "engine_start_failed"),
    "engine_dead": ("raise vllm.v1.engine.exceptions.EngineDeadError", "engine_dead"),
    "model_not_found": ("raise ValueError", "model_not_found"),
}
def failure_text(version: str, fact: str, site: dict[str, Any]) -> list[str]:
    how, _code = FAILURES[fact]
    extra = {}
    if fact == "kv_too_small" and sites(version, "kv_estimate"):
        extra["estimated_msg"] = render(sites(version, "kv_estimate")[0], version,
                                        "kv_estimate")
    message = render(site, version, fact, **extra)
    if how == "log":
        return [log_line(version, "ERROR", message, proc="EngineCore_DP0")]
    exc = how.split(" ", 1)[1]
    shown = repr(message) if exc == "KeyError" else message  # str(KeyError) is the repr
    return ["Traceback (most recent call last):",
            '  File "/opt/venv/lib/python3.12/site-packages/vllm/x.py", line 1, in f',
            "    raise " + exc.rsplit(".", 1)[-1] + "(", f"{exc}: {shown}"]


@pytest.mark.parametrize(("version", "fact", "site"), each_site(FAILURES))
def test_each_failure_vllm_prints_gets_its_code(version: str, fact: str,
                                                site: dict[str, Any]) -> None:
    lines = failure_text(version, fact, site)
    r = parse_lines(log_line(version, "INFO", "Using max model len 262144"), *lines)
    assert r.failure is not None and r.failure.code == FAILURES[fact][1], (lines, r.failure)
    for number in ("262144", "29000", "34736", "256", "0.92", "Qwen/Qwen3-8b-Instruct"):
        if number in "\n".join(lines) and fact not in ("engine_init_failed", "engine_dead"):
            assert number in r.failure.reason + r.failure.fix, (number, r.failure)


def test_every_vllm_failure_rule_is_hit_by_a_real_vllm_message() -> None:
    """Rows of origin "vllm" must each match some message rendered from vLLM's source, and
    every such message must be diagnosed by a "vllm" row; the other rows name the program
    whose text they match (argparse, torch, Slurm...) and are specified by the sample logs
    of test_logs_failures.py."""
    hit = set()
    for version, fact, site in (p.values for p in each_site(FAILURES)):
        for line in failure_text(version, fact, site):
            level, msg = strip_prefix(line)[1:]
            for i, rule in enumerate(RULES):
                m = rule.pattern.search(msg) if any(n in msg for n in rule.needles) else None
                if m is not None and rule.apply(m, level) is not None:
                    hit.add(i)
                    assert rule.origin == "vllm", (rule.code, rule.origin, msg)
                    break
    unhit = [(r.code, r.origin) for i, r in enumerate(RULES) if i not in hit]
    assert all(origin != "vllm" for _code, origin in unhit), unhit


def test_a_max_model_len_warning_is_not_a_failure() -> None:
    # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1: vLLM logs the same message as a warning and goes on.
    for v in VERSIONS:
        for site in sites(v, "max_model_len_too_long"):
            text = render(site, v, "max_model_len_too_long")
            assert parse_lines(log_line(v, "WARNING", text)).failure is None


def test_the_rendering_really_uses_the_source_strings() -> None:
    # A guard for this file itself: an altered format string must change what is parsed.
    site = dict(sites("0.33.0", "kv_cache_size")[0])
    site["format"] = site["format"].replace("KV cache size", "KV cache capacity")
    r = parse_lines(log_line("0.33.0", "INFO", render(site, "0.33.0", "kv_cache_size")))
    assert r.startup.kv_cache_tokens == []
    assert FSTRING_VALUES["max_model_len"] == "262144"


@pytest.mark.parametrize("site", sites("0.33.0", "shutdown"),
                         ids=lambda s: f"{s['file']}:{s['line']}")
def test_errors_after_a_0_33_shutdown_line_are_not_a_failure(site: dict[str, Any]) -> None:
    # Requests cut off by a stop log errors; vLLM 0.33 announces the stop with these lines.
    text = site["format"] % ("drain", 30) if site["style"] == "percent" else site["format"]
    r = parse_lines(log_line("0.33.0", "INFO", "Application startup complete."),
                    log_line("0.33.0", "INFO", text),
                    log_line("0.33.0", "ERROR", "EngineCore failed to start."))
    assert r.failure is None, text
