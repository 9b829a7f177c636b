"""How a problem with a task (or a config file) is reported: file, line, field, message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

COMMAND_LINE = "command line"


class TaskIssue(NamedTuple):
    """One problem with a task: where it is, which field, and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class TaskError(Exception):
    """The task cannot be used. ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[TaskIssue]) -> None:
        self.issues: list[TaskIssue] = list(issues)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
