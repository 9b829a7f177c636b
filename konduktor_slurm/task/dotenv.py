"""``--env-file``: dotenv files (``KEY=VALUE`` lines)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from konduktor_slurm.task.errors import TaskError, TaskIssue
from konduktor_slurm.task.source import read_source

FLAG = "--env-file"


class EnvLine(NamedTuple):
    key: str
    value: str
    line: int


def read_env_file(path: Path) -> tuple[list[EnvLine], list[TaskIssue]]:
    """The entries of a dotenv file, and the problems found, each with its line.

    Blank lines and '#' comments are skipped, an optional ``export `` prefix is dropped and
    one pair of matching quotes around the value is removed. Values are otherwise verbatim:
    no escapes, no interpolation, no inline comments (a '#' inside a value is kept).
    """
    file = str(path)
    try:
        text = read_source(path, "env file")
    except TaskError as exc:
        return [], [issue._replace(field=FLAG) for issue in exc.issues]
    entries: list[EnvLine] = []
    issues: list[TaskIssue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, eq, value = line.partition("=")
        if not eq:
            issues.append(TaskIssue(file, number, FLAG, f"expected KEY=VALUE, got {line!r}"))
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        entries.append(EnvLine(key, value, number))
    return entries, issues
