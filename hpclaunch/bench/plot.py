"""A sweep as a PNG: throughput and P95 latency against concurrency, one line per endpoint.

matplotlib is the ``plot`` extra (``pip install 'hpclaunch[plot]'``): it is large and only
this needs it, so it is imported here, when a plot is asked for, and its absence is a
one-line error that says how to install it.
"""

from __future__ import annotations

from pathlib import Path

from hpclaunch.bench.results import Sweep
from hpclaunch.errors import UserError

INSTALL = "pip install 'hpclaunch[plot]'"


def require_matplotlib() -> None:
    """Fail before a sweep, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"--plot needs matplotlib: {INSTALL}") from None


def write_png(sweeps: list[Sweep], path: Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display on a login node
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    streamed = False
    for n, sweep in enumerate(sweeps):
        color = f"C{n}"
        levels = [lv for lv in sweep.levels if lv.ok]
        x = [lv.concurrency for lv in levels]
        left.plot(x, [lv.tok_per_s for lv in levels], "o-", color=color, label=sweep.label)
        right.plot(x, [lv.latency_p95 for lv in levels], "o-", color=color,
                   label=f"{sweep.label} latency P95")
        if any(lv.ttft_p95 is not None for lv in levels):
            streamed = True
            right.plot(x, [lv.ttft_p95 for lv in levels], "s--", color=color, alpha=0.7,
                       label=f"{sweep.label} TTFT P95")
    for ax, ylabel, heading in (
            (left, "output tokens/s", "Throughput"),
            (right, "seconds", "P95 latency" + (" and time to first token" if streamed else ""))):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.set_title(heading)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ticks = sorted({lv.concurrency for s in sweeps for lv in s.levels})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.legend(fontsize=8)
    first = sweeps[0]
    w = first.workload
    fig.suptitle(f"{first.model}: ~{w['prompt_tokens']} prompt tokens, "
                 f"max_tokens {w['max_tokens']}" + (" (simulated)" if first.simulated else ""))
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise UserError(f"--plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
