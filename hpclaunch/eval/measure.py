"""What a server did during an eval: its own /metrics counters, sampled around the run.

A/B tables come from these numbers, not from what vf-eval prints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hpclaunch.endpoints.resolve import Endpoint


def _metrics_url(ep: Endpoint) -> str:
    base = ep.base_url[:-3] if ep.base_url.endswith("/v1") else ep.base_url
    return f"{base}/metrics"


def parse_metrics(text: str) -> dict[str, float]:
    """Counters of interest summed over all engines and labels."""
    from hpclaunch.vllm import metrics

    return metrics.parse_metrics(text).totals()


def read_metrics(ep: Endpoint, timeout: float = 2.0) -> dict[str, float] | None:
    import urllib.request

    req = urllib.request.Request(_metrics_url(ep),
                                 headers={"Authorization": f"Bearer {ep.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return parse_metrics(resp.read().decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def health_ok(ep: Endpoint, timeout: float = 2.0) -> bool:
    """``/health`` answers 200: alive, even where /metrics is not served."""
    import urllib.request

    base = ep.base_url[:-3] if ep.base_url.endswith("/v1") else ep.base_url
    req = urllib.request.Request(f"{base}/health",
                                 headers={"Authorization": f"Bearer {ep.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


# What the watch asks when the server stops answering: its state and reason, as
# ``hpclaunch status`` would say them (scheduler, log, /health).
StateCheck = Callable[[], tuple[str, str]]


class MetricsWatch:
    """Watches the endpoint while vf-eval runs: /metrics deltas, and whether it is alive.

    One request a second at most (vLLM logs every request; ~5/s filled its log). The busy
    window runs from the last poll before the server showed any activity to the first poll
    after the last activity, so it is exact to within two intervals.

    When neither /metrics nor /health answers ``misses`` polls in a row, ``check`` says
    what happened: FAILED or ENDED stops the run at once (``on_dead``); a server that
    is unreachable or UNHEALTHY gets ``grace`` seconds to come back (a loaded server
    can be slow to answer), then the run is stopped too. ``cause`` says why.
    """

    def __init__(self, ep: Endpoint, interval: float = 1.0, *, check: StateCheck | None = None,
                 on_dead: Callable[[], None] | None = None, misses: int = 2,
                 grace: float = 15.0) -> None:
        self.ep = ep
        self.interval = max(interval, 1.0)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.check, self.on_dead, self.misses, self.grace = check, on_dead, misses, grace
        self.cause: tuple[str, str] | None = None  # (state, reason) that stopped the run
        self._missed = 0
        self._silent_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> bool:
        values = read_metrics(self.ep)
        if values is not None:
            self.samples.append((time.monotonic(), values))
            return True
        return health_ok(self.ep)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._sample():
                self._missed, self._silent_since = 0, None
                continue
            self._missed += 1
            now = time.monotonic()
            self._silent_since = self._silent_since or now
            if self._missed % self.misses == 0 and self.check is not None:
                self._judge(now)
                if self.cause is not None:
                    return

    def _judge(self, now: float) -> None:
        assert self.check is not None
        try:
            state, reason = self.check()
        except Exception as exc:  # noqa: BLE001 - a failed check must not end the watch
            state, reason = "UNKNOWN", f"its state could not be read ({exc})"
        silent = now - (self._silent_since or now)
        if state in ("FAILED", "ENDED"):
            self.cause = (state, reason)
        elif silent >= self.grace:
            self.cause = (state if state != "READY" else "UNHEALTHY",
                          f"no answer from {self.ep.base_url} for {silent:.0f} s"
                          + (f" ({reason})" if reason else ""))
        if self.cause is not None and self.on_dead is not None:
            self.on_dead()

    def __enter__(self) -> MetricsWatch:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)
        if self.cause is None:
            self._sample()

    def delta(self, key: str) -> float | None:
        if len(self.samples) < 2:
            return None
        return self.samples[-1][1][key] - self.samples[0][1][key]

    def busy_seconds(self) -> float | None:
        active = [i for i in range(1, len(self.samples))
                  if self.samples[i][1]["running"] > 0
                  or any(self.samples[i][1][k] != self.samples[i - 1][1][k]
                         for k in ("requests", "gen_tokens", "prompt_tokens"))]
        if not active:
            return None
        start = self.samples[active[0] - 1][0]
        end = self.samples[active[-1]][0]
        return max(end - start, self.interval)


@dataclass
class RunStats:
    """One vf-eval run against one endpoint, as the server saw it."""

    name: str
    model_id: str
    layout: str
    returncode: int
    wall_s: float
    busy_s: float | None = None
    requests: float | None = None
    gen_tokens: float | None = None
    prompt_tokens: float | None = None

    def _per_s(self, value: float | None) -> float | None:
        span = self.busy_s or self.wall_s
        return value / span if value is not None and span > 0 else None

    @property
    def requests_per_s(self) -> float | None:
        return self._per_s(self.requests)

    @property
    def tokens_per_s(self) -> float | None:
        return self._per_s(self.gen_tokens)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def compare_table(runs: list[RunStats]) -> str:
    """Endpoints side by side; with two, a B/A column says which layout won."""
    rows: list[tuple[str, list[str], list[float | None]]] = []

    def row(label: str, values: list[float | None], digits: int = 1) -> None:
        rows.append((label, [_fmt(v, digits) for v in values], values))

    header = ["", *[r.name for r in runs]]
    text_rows = [["model", *[r.model_id for r in runs]], ["layout", *[r.layout for r in runs]],
                 ["vf-eval exit", *[str(r.returncode) for r in runs]]]
    row("wall time s", [r.wall_s for r in runs])
    row("server busy s", [r.busy_s for r in runs], 2)
    row("requests", [r.requests for r in runs], 0)
    row("requests/s", [r.requests_per_s for r in runs], 2)
    row("gen tokens", [r.gen_tokens for r in runs], 0)
    row("gen tokens/s", [r.tokens_per_s for r in runs])
    ratio = len(runs) == 2
    if ratio:
        header.append(f"{runs[1].name}/{runs[0].name}")
        for r in text_rows:
            r.append("")
    table = [header, *text_rows]
    for label, cells, values in rows:
        line = [label, *cells]
        if ratio:
            a, b = values
            line.append(f"{b / a:.2f}x" if a and b is not None else "-")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in table]
    lines.append("requests/s and tokens/s: over the server busy time (from each server's "
                 "/metrics, polled\nonce a second, so short runs are coarse), or over the wall "
                 "time when /metrics is unavailable")
    return "\n".join(lines)
