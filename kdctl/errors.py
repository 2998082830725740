"""Errors kdctl shows to users: each names the field, the value and the fix."""

from __future__ import annotations


class KdctlError(Exception):
    """A problem the user can fix. The CLI prints it without a traceback and exits 1."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SpecError(KdctlError):
    """Several problems found in one spec; all are reported together."""

    def __init__(self, problems: list[str], source: str = "spec") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")
