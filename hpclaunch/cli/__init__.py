"""The ``hpclaunch`` command: click commands only (parse, call :mod:`hpclaunch.api`, print).

Each area's commands live in their own module and load only when one of them runs.
"""

from hpclaunch.cli.main import cli, main

__all__ = ["cli", "main"]
