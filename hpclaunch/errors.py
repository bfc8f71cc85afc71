"""Errors hpclaunch shows to users.

Every failure a user can cause or fix (bad preset, unknown endpoint, scheduler
rejection, corrupt registry) is a :class:`UserError`: the CLI prints its message
as one line on stderr and exits non-zero, without a traceback.

Exit codes are a contract for scripts (``hpclaunch wait q && vf-eval ...``,
``set -e``), one meaning each, the same for every command:

====  ==========================================================================
0     ok; for a command about one endpoint: it is READY
1     any other error the message explains (bad input, scheduler refusal, ...)
2     usage error (unknown option, missing argument), printed by click
3     no endpoint of that name (``did you mean`` in the message)
4     the endpoint exists but is not READY (PENDING, STARTING, UNHEALTHY, UNKNOWN)
5     the endpoint FAILED (also: it died during ``hpclaunch eval``)
6     the endpoint ENDED (stopped, or its job finished)
70    internal error (a bug: rerun with ``--debug`` and report it)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations


class HpclaunchError(Exception):
    """Base of every error hpclaunch raises on purpose."""


EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_NOT_FOUND, EXIT_NOT_READY, EXIT_FAILED, EXIT_ENDED = 3, 4, 5, 6
EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130


class UserError(HpclaunchError):
    """A one-line error the CLI prints without traceback; the message says what to do."""

    exit_code = EXIT_ERROR


class NotFoundError(UserError):
    """No endpoint has that name."""

    exit_code = EXIT_NOT_FOUND


class EndpointStateError(UserError):
    """The endpoint exists but cannot be used now; the exit code says why (see the table)."""

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state
        self.exit_code = exit_code_for_state(state)


def exit_code_for_state(state: str) -> int:
    """The exit code a command about one endpoint returns for its state."""
    return {"READY": EXIT_OK, "FAILED": EXIT_FAILED, "ENDED": EXIT_ENDED}.get(
        state, EXIT_NOT_READY)


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
