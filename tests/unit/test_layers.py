"""The layers are a contract: import-linter keeps them, and breaks on an upward import.

The contract itself is in pyproject.toml ([tool.importlinter]); docs/layout.md says what
each room owns. Here the real tool runs on the real tree, then on a copy of it with one
deliberate upward import, which must fail and be named.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_tree_keeps_its_layers() -> None:
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "hpclaunch", tmp_path / "hpclaunch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    metrics = tmp_path / "hpclaunch" / "vllm" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n\ndef _up() -> None:\n"
                       "    from hpclaunch import api  # noqa: F401 - the deliberate violation\n")
    out = lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout
    assert "hpclaunch.vllm.metrics -> hpclaunch.api" in out.stdout


def test_the_product_never_imports_the_standin(tmp_path: Path) -> None:
    shutil.copytree(REPO / "hpclaunch", tmp_path / "hpclaunch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    status = tmp_path / "hpclaunch" / "endpoints" / "status.py"
    status.write_text(status.read_text() + "\n\nimport hpclaunch.standin  # noqa: E402,F401\n")
    out = lint(tmp_path)
    assert out.returncode != 0 and "hpclaunch.endpoints.status -> hpclaunch.standin" in out.stdout
