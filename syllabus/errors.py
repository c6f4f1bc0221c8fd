"""One exception type for mistakes a user can fix.

The CLI turns a `UserError` into one clear message and exit status 2, never a
traceback, so every check in the library raises it with the file, node or option
at fault and a hint how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem in the user's input: bad file, bad option, unreachable server."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
