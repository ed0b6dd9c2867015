"""The error model every secai command shares.

One rule (applied by `secai.cli.Command.main`):
- A user error is an exception deriving from `UserError`: bad input, a bad setting, a missing model,
  a failed step the user can act on. It is reported as one line, `secai-x: error: <message>`, with no
  Python type name, and exits 1 — or 2 for a `UsageError` (a flag or flag combination that makes no
  sense). Domain modules derive their own errors from these (TrainError, FetchError, FixRuleError, ...).
- Anything else is a bug: one line `secai-x: error: internal error: <Type>: <message> (-v shows the
  traceback)`, exit 1; the traceback is printed only under -v.
- Ctrl-C exits 130. A count is never an exit code.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    """An error the user can act on: reported as its message alone, exit 1."""

    exit_code = EXIT_ERROR


class UsageError(UserError):
    """A flag, or a combination of flags, that the command cannot run with: exit 2."""

    exit_code = EXIT_USAGE


class InputError(UserError):
    """Bad input: reported as `FILE:LINE: reason` (LINE omitted when unknown)."""

    def __init__(self, file: str, line: int | None, reason: str):
        super().__init__(reason)
        self.file, self.line, self.reason = file, line, reason

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"
