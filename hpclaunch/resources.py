"""Find the data hpclaunch ships: ``presets/`` and ``job_templates/``.

Both live at the top of the repository (reviewers find them there) and are mapped
into the package as ``hpclaunch.builtin_presets`` / ``hpclaunch.builtin_templates``
when built,
so a plain ``pip install .`` carries them inside the wheel.
"""

from __future__ import annotations

from pathlib import Path


def builtin_dir(kind: str) -> Path:
    """Directory of the built-in ``presets`` or ``job_templates``."""
    import importlib.util

    package = {"presets": "builtin_presets", "job_templates": "builtin_templates"}[kind]
    try:
        spec = importlib.util.find_spec(f"hpclaunch.{package}")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    # A source checkout used without installing (PYTHONPATH=.).
    return Path(__file__).resolve().parent.parent / kind
