#!/usr/bin/env python3
"""Regenerate tests/data/vllm-source/<package>-<version>.json from vLLM's (or uvicorn's) source.

hpclaunch never runs real vLLM in its tests, so every log line it parses, every metric it reads,
every route it probes and every flag it renders is checked against the source of the vLLM
versions it supports.  This script reads that source statically (``ast``; vLLM is never
imported or installed) and writes, per version, the exact format strings with file, line and
the source excerpt, the Prometheus metric names with their labels, the HTTP routes, and the
``vllm serve`` flag names.  ``tests/unit/vllm/test_vllm_source.py`` then fails wherever
hpclaunch or its stand-in disagree.

uvicorn prints the readiness line (``Application startup complete.``) and the access log;
the same script reads those from a uvicorn wheel.  One command per version (a wheel from
``pip download --no-deps vllm==X``, or a checkout)::

    python scripts/refresh_vllm_facts.py /tmp/vllm-0.33.0-*.whl
    python scripts/refresh_vllm_facts.py ~/src/vllm --version 0.34.0
    python scripts/refresh_vllm_facts.py /tmp/uvicorn-0.54.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its helper modules, when imported

from vllm_facts_api import metrics, parser_names, routes, serve_flags  # noqa: E402
from vllm_facts_ast import (  # noqa: E402
    Files,
    call_name,
    excerpt,
    message_site,
    package_files,
    parents,
    template,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "vllm-source"
DATA = Path(__file__).resolve().parent.parent / "hpclaunch" / "vllm" / "data"

# Log messages hpclaunch reads or its stand-in prints: id -> substrings that find the format
# string in any version (wording drifts, so several; "=text" must be the whole literal).
# Every site found is kept.
LOG_FACTS: dict[str, tuple[str, ...]] = {
    "line_format": ("%(levelname)s %(asctime)s ",),
    "date_format": ("=%m-%d %H:%M:%S",),  # "=": the whole literal, not a part of it
    "process_prefix": ("pid=%(process)d)", " pid={pid})"),
    "server_version": ("server version %s", "vLLM API server version"),
    "logo": ("version ${w}%s${r}",),
    "non_default_args": ("non-default args: ",),
    "engine_config": ("LLM engine (v%s) with config: ",),
    "max_model_len_used": ("Using max model len ",),
    "start_loading": ("Starting to load model %s",),
    "weights_took": ("Loading weights took %.2f seconds",),
    "model_loading": ("Model loading took ",),
    "kv_memory": ("Available KV cache memory: ",),
    # V0's profiling summary (0.7-0.8; 0.6 printed "kv_cache_size=%.2fGiB" instead).
    "v0_kv_memory": ("the rest of the memory reserved for KV Cache is ",),
    "kv_cache_size": ("KV cache size: %s tokens",),
    "max_concurrency": ("Maximum concurrency for %s tokens per request",),
    "gpu_blocks": ("# %s blocks: %d", "# GPU blocks: %d"),
    "graph_capture": ("Graph capturing finished in ",),
    "init_engine": ("init engine (profile, create kv cache, warmup model) took",),
    "server_start": ("Starting vLLM server on ", "Starting vLLM API server "),
    "routes": ("Available routes are:",),
    "route": ("Route: %s, Methods: %s",),
    "stats_prefix_engine": ("Engine %03d: Avg", "Engine {:03d}: "),
    "v0_prefix_hit": ("Prefix cache hit rate: GPU: ",),
    "stats_prefix_aggregated": (" Engines Aggregated: ",),
    "stats_disabled": ("api_server_count more than 1",),
    "headless": ("data parallel engine(s) in headless mode",),
    "shutdown": ("shutting down FastAPI HTTP server", "Shutting down FastAPI HTTP server",
                 "Shutting down.", "[shutdown] API server: "),
    "kv_too_small": ("max seq len (",),
    "kv_estimate": ("the estimated maximum model length is {",),
    "no_kv_memory": ("No available memory for the cache blocks",),
    "max_model_len_too_long": ("User-specified max_model_len (",),
    "max_model_len_raised": ("{msg} To allow overriding this maximum",),
    "max_model_len_caution": ("must be used with extreme caution",),
    "bad_reasoning_parser": ("invalid reasoning parser: ",),
    "oom_loading": ("Failed to load model - not enough GPU memory",),
    "oom_loading_logged": ("{msg} (original error: {e})",),
    "attention_backend": ("Using %s attention backend", "=Using %s backend."),
    "oom_sampler": ("out of memory occurred when warming up sampler with",),
    "gpu_busy": ("is less than desired GPU memory utilization",),
    "engine_start_failed": ("EngineCore failed to start",),
    "engine_init_failed": ("Engine core initialization failed",),
    "engine_fatal": ("EngineCore encountered a fatal error",),
    "output_handler_failed": ("AsyncLLM output_handler failed",),
    "engine_dead": ("EngineCore encountered an issue. See stack trace",),
    "model_not_found": ("Invalid repository ID or local directory specified",),
}
# uvicorn's own lines, which vLLM's API server prints through it.
UVICORN_FACTS: dict[str, tuple[str, ...]] = {
    "line_format": ("%(levelprefix)s %(message)s",),
    "access_format": ('%(levelprefix)s %(client_addr)s - "%(request_line)s"',),
    "access_line": ('%s - "%s %s HTTP/%s" %d',),
    "started_process": ("=Started server process [%d]",),
    "startup_waiting": ("=Waiting for application startup.",),
    "startup_complete": ("=Application startup complete.",),
    "running_on": ("Uvicorn running on {addr_format}",),
    "shutting_down": ("=Shutting down",),
    "shutdown_waiting": ("=Waiting for application shutdown.",),
    "shutdown_complete": ("=Application shutdown complete.",),
}

def unpack(source: Path, tmp: Path) -> tuple[Path, str]:
    """The directory that holds the package, and which package it is (vllm or uvicorn): a
    checkout as is, a wheel unzipped (its .py files only)."""
    if source.is_dir():
        return source, "vllm" if (source / "vllm").is_dir() else "uvicorn"
    with zipfile.ZipFile(source) as whl:
        names = [n for n in whl.namelist() if n.endswith(".py")]
        package = "vllm" if any(n.startswith("vllm/") for n in names) else "uvicorn"
        for name in names:
            if name.startswith(package + "/"):
                whl.extract(name, tmp)
    return tmp, package


def provenance(root: Path, package: str, source: Path, version: str | None) -> dict[str, Any]:
    where = root / package / ("_version.py" if package == "vllm" else "__init__.py")
    text = where.read_text()
    found = re.search(r"__version__ = (?:version = )?['\"]([^'\"]+)['\"]", text)
    commit = re.search(r"commit_id = '([^']+)'", text)
    meta: dict[str, Any] = {
        "package": package,
        "version": version or (found[1] if found else "unknown"),
        "commit": commit[1] if commit else None,
        "source": source.name,
        "generated_by": "scripts/refresh_vllm_facts.py",
    }
    if source.is_file():
        meta["sha256"] = hashlib.sha256(source.read_bytes()).hexdigest()
    return meta


def log_facts(files: Files,
              wanted: dict[str, tuple[str, ...]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {fact: [] for fact in wanted}
    for rel, text, tree in files:
        # A cheap filter on the anchors' first words (an anchor may span implicitly joined
        # literals, so the whole of it need not appear in the file's text).
        if not any(a.lstrip("=")[:10] in text for anchors in wanted.values() for a in anchors):
            continue
        up, lines = parents(tree), text.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text_of_node = node.value
            elif isinstance(node, ast.JoinedStr):  # anchors may span an f-string's pieces
                text_of_node = (template(node) or ("", ""))[1]
            else:
                continue
            for fact, anchors in wanted.items():
                if not any(text_of_node == a[1:] if a.startswith("=") else a in text_of_node
                           for a in anchors):
                    continue
                expr, stmt = message_site(node, up)
                made = template(expr)
                if made is None:
                    continue
                site = {"file": rel, "line": stmt.lineno, "call": call_name(stmt, expr, up),
                        "style": made[0], "format": made[1], "excerpt": excerpt(lines, stmt)}
                if site not in found[fact]:
                    found[fact].append(site)
    return {fact: sites for fact, sites in found.items() if sites}


def stats_parts(files: Files) -> list[dict[str, Any]]:
    """The periodic stats line: built from ``log_parts`` (0.9+) or one literal (0.8)."""
    out = []
    for rel, text, tree in files:
        if "Avg prompt throughput" not in text or "metrics" not in rel:
            continue
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            found = [n for n in ast.walk(fn) if isinstance(n, ast.Constant)
                     and isinstance(n.value, str) and re.search(r"%[.\d]*[dfs]", n.value)
                     and ("log_parts" in ast.unparse(fn) or "Avg prompt" in n.value)]
            found.sort(key=lambda n: (n.lineno, n.col_offset))  # the order they are joined in
            parts = [str(n.value) for n in found]
            if any("Avg prompt throughput" in p for p in parts):
                out.append({"file": rel, "line": fn.lineno, "function": fn.name, "parts": parts})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a vLLM or uvicorn wheel (.whl), or a checkout")
    ap.add_argument("--version", help="version to record (default: from vllm/_version.py)")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="directory for <package>-<version>.json")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="hpclaunch's bundled data: vllm-<version>-parsers.json is written "
                         "there when a serve-flags snapshot of that version exists")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root, package = unpack(args.source, Path(tmp))
        files = package_files(root, package)
        wanted = LOG_FACTS if package == "vllm" else UVICORN_FACTS
        facts: dict[str, Any] = {"_provenance": provenance(root, package, args.source,
                                                           args.version),
                                 "logs": log_facts(files, wanted)}
        if package == "vllm":
            facts |= {"stats_line": stats_parts(files), "metrics": metrics(files),
                      "routes": routes(files), "serve_flags": serve_flags(files),
                      "parsers": parser_names(files)}
    version = facts["_provenance"]["version"]
    missing = sorted(set(wanted) - set(facts["logs"]))
    facts["_provenance"]["absent"] = missing  # facts this version does not print at all
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{package}-{version}.json"
    target.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts = ", ".join(f"{len(facts[k])} {k}" for k in ("metrics", "routes", "serve_flags")
                       if k in facts)
    if "parsers" in facts and (args.data / f"vllm-{version}-serve-flags.json").exists():
        parsers = args.data / f"vllm-{version}-parsers.json"
        parsers.write_text(json.dumps(facts["parsers"], indent=1) + "\n", encoding="utf-8")
        print(f"{parsers}: {len(facts['parsers']['reasoning'])} reasoning and "
              f"{len(facts['parsers']['tool'])} tool parsers")
    print(f"{target}: {len(facts['logs'])} log facts ({len(missing)} absent: "
          f"{', '.join(missing) or '-'}){', ' + counts if counts else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
