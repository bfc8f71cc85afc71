"""Sweeps as text: one table, two endpoints side by side with their ratio, CSV, history.

Latency is in seconds, time to first token and inter-token latency in milliseconds: the
units each is usually quoted in. A dash is a number the sweep could not measure (no
streaming, no successful request).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from hpclaunch.bench.profiles import Profile, check
from hpclaunch.bench.results import LevelResult, Sweep

Column = tuple[str, Callable[[LevelResult], float | None], str]
COLUMNS: tuple[Column, ...] = (
    ("req/s", lambda lv: lv.req_per_s, "{:.2f}"),
    ("out tok/s", lambda lv: lv.tok_per_s, "{:.1f}"),
    ("lat P50 s", lambda lv: lv.latency_p50, "{:.3f}"),
    ("P95", lambda lv: lv.latency_p95, "{:.3f}"),
    ("P99", lambda lv: lv.latency_p99, "{:.3f}"),
    ("TTFT P50 ms", lambda lv: _ms(lv.ttft_p50), "{:.1f}"),
    ("P95", lambda lv: _ms(lv.ttft_p95), "{:.1f}"),
    ("ITL P50 ms", lambda lv: _ms(lv.itl_p50), "{:.1f}"),
    ("P95", lambda lv: _ms(lv.itl_p95), "{:.1f}"),
)
CSV_FIELDS = ("endpoint", "concurrency", "requests", "ok", "seconds", "req_per_s", "tok_per_s",
              "output_tokens", "prompt_tokens", "latency_p50", "latency_p95", "latency_p99",
              "ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "errors")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _errors(level: LevelResult) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(level.errors.items())) or "0"


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.rstrip("x").replace(".", "", 1).replace("/", "", 1).isdigit()


def _grid(header: list[str], rows: list[list[str]]) -> str:
    """Columns of numbers right-aligned, columns of words left-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = [all(_numeric(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip()
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def title(sweep: Sweep) -> str:
    w = sweep.workload
    what = (f"dataset {w['dataset_name']}" if w.get("dataset_name")
            else f"~{w['prompt_tokens']} prompt tokens")
    extra = ", streamed" if w.get("stream") else ""
    profile = f" [profile {w['profile']}]" if w.get("profile") else ""
    sim = " (simulated)" if sweep.simulated else ""
    return (f"{sweep.label}{sim}: {sweep.model}, /v1/{'chat/' if w['api'] == 'chat' else ''}"
            f"completions, {what}, max_tokens {w['max_tokens']}{extra}{profile}")


def table(sweep: Sweep) -> str:
    header = ["conc", "requests", *(c[0] for c in COLUMNS), "errors"]
    rows = [[str(lv.concurrency), f"{lv.ok}/{lv.requests}",
             *(_fmt(get(lv), pattern) for _, get, pattern in COLUMNS), _errors(lv)]
            for lv in sweep.levels]
    return title(sweep) + "\n" + _grid(header, rows)


def side_by_side(a: Sweep, b: Sweep) -> str:
    """Levels both sweeps ran, with B / A for each number (above 1: B is higher)."""
    names = ("req/s", "out tok/s", "lat P95 s", "TTFT P95 ms")
    picked = [COLUMNS[0], COLUMNS[1], COLUMNS[3]] + ([COLUMNS[6]] if any(
        lv.ttft_p95 is not None for lv in a.levels + b.levels) else [])
    header = ["conc"]
    for name in names[:len(picked)]:
        header += [f"A {name}", f"B {name}", "B/A"]
    b_levels = {lv.concurrency: lv for lv in b.levels}
    rows = []
    for la in a.levels:
        lb = b_levels.get(la.concurrency)
        if lb is None:
            continue
        row = [str(la.concurrency)]
        for _, get, pattern in picked:
            va, vb = get(la), get(lb)
            ratio = vb / va if va and vb is not None else None
            row += [_fmt(va, pattern), _fmt(vb, pattern), _fmt(ratio, "{:.2f}x")]
        rows.append(row)
    return f"A = {title(a)}\nB = {title(b)}\n" + _grid(header, rows)


def targets(profile: Profile, sweep: Sweep) -> str:
    lines = []
    for t, value, met in check(profile, sweep):
        shown = "not measured" if value is None else f"{value:.3g}"
        lines.append(f"  {'met ' if met else 'MISS'} c={t.concurrency}: {t.metric} {shown} "
                     f"{t.op} {t.value:g}   (guide: {t.says})")
    return f"{profile.name} targets on {sweep.label}:\n" + "\n".join(lines) if lines else ""


def write_csv(sweeps: Iterable[Sweep], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for sweep in sweeps:
            for lv in sweep.levels:
                data = lv.to_json()
                row = {k: data.get(k) for k in CSV_FIELDS}
                row["endpoint"] = sweep.endpoint
                row["errors"] = ";".join(f"{k}={v}" for k, v in sorted(lv.errors.items()))
                writer.writerow(row)


def history(name: str, sweeps: list[Sweep]) -> str:
    """One line per earlier sweep: when, with what preset and layout, peak numbers."""
    if not sweeps:
        return f"no recorded sweeps for {name} (hpclaunch bench {name} records one)"
    header = ["when", "preset", "layout", "flags", "levels", "best req/s", "best tok/s",
              "P95 s @ max conc", "errors"]
    rows = []
    for s in sweeps:
        best = max(s.levels, key=lambda lv: lv.tok_per_s, default=None)
        top = s.levels[-1] if s.levels else None
        rows.append([
            time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)), s.preset or "-",
            s.layout or "-", s.flags or "-", ",".join(str(lv.concurrency) for lv in s.levels),
            _fmt(max((lv.req_per_s for lv in s.levels), default=None), "{:.2f}"),
            _fmt(best.tok_per_s if best else None, "{:.1f}"),
            _fmt(top.latency_p95 if top else None, "{:.3f}"),
            str(sum(sum(lv.errors.values()) for lv in s.levels))])
    return _grid(header, rows)
