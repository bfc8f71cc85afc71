"""Fidelity to real vLLM: the /metrics series, HTTP routes and serve flags hpclaunch relies on
exist, with those names, labels and methods, in each supported version's source."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from hpclaunch.vllm.flags.catalogue import available_versions, flag_table, parser_names
from hpclaunch.vllm.metrics import CACHE_INFO, CACHE_INFO_LABELS, ENGINE_LABEL, SERIES
from tests.unit.vllm.vllmsource import VERSIONS, facts

GOLDEN_PRESETS = Path(__file__).resolve().parents[2] / "golden" / "presets" / "flags.txt"
# What hpclaunch requests itself: status probes /health, stats scrape /metrics, evals read
# /v1/models (context length) and resolve() posts chat completions.
ROUTES = {"/health": "GET", "/metrics": "GET", "/v1/models": "GET",
          "/v1/chat/completions": "POST"}
# Flags the planner adds to every server besides the preset's own (plan.py, serve template).
ALWAYS_RENDERED = ("--served-model-name", "--host", "--port", "--data-parallel-size",
                   "--tensor-parallel-size", "--pipeline-parallel-size")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_series_hpclaunch_reads_has_a_source_in_each_version(version: str) -> None:
    metrics = facts(f"vllm-{version}")["metrics"]
    # Each EngineSample field is fed by at least one series this version defines.
    for field in set(SERIES.values()):
        names = [n for n, f in SERIES.items() if f == field and n in metrics]
        assert names, f"vLLM {version} defines none of the series for {field}"
    labelled = [d for n in SERIES if n in metrics for d in metrics[n]
                if isinstance(d["labels"], list)]
    assert labelled and all(ENGINE_LABEL in d["labels"] for d in labelled)
    assert set(CACHE_INFO_LABELS) | {ENGINE_LABEL} <= set(metrics[CACHE_INFO][0]["labels"])


def test_every_series_name_hpclaunch_knows_exists_in_some_version() -> None:
    defined = {n for v in VERSIONS for n in facts(f"vllm-{v}")["metrics"]}
    assert set(SERIES) | {CACHE_INFO} <= defined


def test_the_v1_series_carry_model_and_engine_labels() -> None:
    metrics = facts("vllm-0.33.0")["metrics"]
    for name in SERIES:
        if name in metrics:
            labels = metrics[name][0]["labels"]
            extra = ["finished_reason"] if name == "vllm:request_success_total" else []
            assert labels == ["model_name", "engine", *extra], (name, labels)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_routes_hpclaunch_calls_exist(version: str) -> None:
    routes = facts(f"vllm-{version}")["routes"]
    for path, method in ROUTES.items():
        assert method in routes[path]["methods"], (version, path, routes.get(path))


@pytest.mark.parametrize("version", ["0.33.0", "0.11.0"])
def test_health_answers_503_once_the_engine_is_dead(version: str) -> None:
    # status maps 503 to a dead engine (FAILED/UNHEALTHY), 200 to READY.
    assert facts(f"vllm-{version}")["routes"]["/health"]["status_codes"] == [200, 503]


@pytest.mark.parametrize("version", available_versions())
def test_each_bundled_flag_snapshot_has_exactly_the_flags_of_the_source(version: str) -> None:
    source = facts(f"vllm-{version}")["serve_flags"]
    table = flag_table(version)
    assert set(table.specs) == set(source)
    for name, spec in table.specs.items():
        assert sorted(spec.aliases) == sorted(source[name]["aliases"]), name
        # A switch (--x / --no-x, and from 0.2x --enable-x / --disable-x) or a value: the
        # source says which, from the action or the annotation of the field it comes from.
        assert spec.kind == source[name]["kind"], (name, spec.kind, source[name])
        assert sorted(spec.negations) == sorted(source[name]["negations"]), name
        if source[name]["number_type"] is not None:  # int, float, human-readable int
            assert spec.type == source[name]["number_type"], (name, spec.type)
        if "default" in source[name]:  # a literal default (the planner reads some of them)
            assert spec.default == source[name]["default"], (name, spec.default)


def test_every_flag_the_presets_render_exists_in_vllm_0_33() -> None:
    source = facts("vllm-0.33.0")["serve_flags"]
    rendered = set(ALWAYS_RENDERED)
    for line in GOLDEN_PRESETS.read_text().splitlines():
        _name, _, flags = line.partition(": ")
        rendered |= {t.split("=", 1)[0] for t in shlex.split(flags) if t.startswith("--")}
    missing = sorted(f for f in rendered
                     if f not in source and not (f.startswith("--no-") and f"--{f[5:]}" in source))
    assert not missing, missing
    assert len(rendered) > 15  # the golden file was read


@pytest.mark.parametrize("version", VERSIONS)
def test_the_flags_hpclaunch_always_renders_exist_in_every_version(version: str) -> None:
    source = facts(f"vllm-{version}")["serve_flags"]
    assert [f for f in ALWAYS_RENDERED if f not in source] == []


@pytest.mark.parametrize("version", available_versions())
def test_the_bundled_parser_names_are_the_ones_vllm_registers(version: str) -> None:
    bundled = parser_names(version)
    assert bundled is not None
    source = facts(f"vllm-{version}")["parsers"]
    assert {kind: sorted(names) for kind, names in bundled.items()} == source
