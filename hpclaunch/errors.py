"""Errors hpclaunch shows to users.

Every failure a user can cause or fix (bad preset, unknown endpoint, scheduler
rejection, corrupt registry) is a :class:`UserError`: the CLI prints its message
as one line on stderr and exits non-zero, without a traceback.
"""

from __future__ import annotations


class HpclaunchError(Exception):
    """Base of every error hpclaunch raises on purpose."""


class UserError(HpclaunchError):
    """A one-line error the CLI prints without traceback; the message says what to do."""


class SubmitError(UserError):
    """The scheduler refused a job script.

    Carries the command and its output so that ``--debug`` can show them, while
    the one-line message keeps the scheduler's own words.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
        script_path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.argv = argv or []
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.script_path = script_path
