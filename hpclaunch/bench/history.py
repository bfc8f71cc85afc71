"""Sweeps kept beside the endpoint: ``<results dir>/<name>.bench.jsonl``, one sweep a line.

The file sits with the endpoint's log and job script (on the cluster, through the same
transport), outlives ``stop`` and a resubmission under the same name, and records the preset
and layout of each run, so "did my new preset help?" is ``hpclaunch bench --history NAME``.
"""

from __future__ import annotations

import json

from hpclaunch.bench.results import Sweep
from hpclaunch.endpoints.lifecycle import connect
from hpclaunch.errors import UserError
from hpclaunch.registry import Record, Registry


def bench_path(rec: Record) -> str:
    return f"{rec.results_dir.rstrip('/')}/{rec.name}.bench.jsonl"


def save(sweep: Sweep, rec: Record) -> str:
    """Append ``sweep`` to the endpoint's history; returns the file's path."""
    if not rec.results_dir:
        raise UserError(f"{rec.name} has no results dir in the registry; nothing recorded")
    path = bench_path(rec)
    with connect(rec) as transport:
        old = transport.read_text(path) or ""
        if old and not old.endswith("\n"):
            old += "\n"
        line = json.dumps(sweep.to_json(), sort_keys=True)
        transport.write_file(path, (old + line + "\n").encode(), 0o644)
    return path


def load(name: str, registry: Registry | None = None) -> list[Sweep]:
    """Earlier sweeps of endpoint ``name``, oldest first (a damaged line is skipped)."""
    rec = (registry or Registry()).get(name)
    if not rec.results_dir:
        return []
    with connect(rec) as transport:
        text = transport.read_text(bench_path(rec)) or ""
    sweeps = []
    for line in text.splitlines():
        try:
            sweeps.append(Sweep.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            continue
    return sweeps
