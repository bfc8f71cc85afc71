"""Formatting and completion helpers shared by the command modules."""

from __future__ import annotations

from typing import Any

import click


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def state_label(rec: Any) -> str:
    return f"{rec.state} (simulated)" if rec.simulated else rec.state


def complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Endpoint names for shell completion, from the registry alone (fast)."""
    try:
        from hpclaunch.registry import Registry

        return [n for n in sorted(Registry().load()) if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print a traceback
        return []


def complete_presets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    try:
        from hpclaunch.planning.presets import preset_names

        return [n for n in preset_names() if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []


