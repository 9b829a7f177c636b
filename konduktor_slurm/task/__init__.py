"""Konduktor task YAML -> a validated, immutable ``Task``.

Everything the launch path needs to know about a task is decided here, up front, so that a
bad task fails on the user's machine with a message that points at the file, line and field,
instead of failing later inside Slurm.

The rooms of this package:

* ``model``: the ``Task`` records the rest of konduktor reads (and ``TaskOverrides``).
* ``errors``: ``TaskIssue`` (file, line, field, message) and ``TaskError``.
* ``source``: YAML that remembers the line of every key.
* ``schema``: the pydantic models; ``rules``: the value rules they use.
* ``compat``: what happens to Konduktor and SkyPilot fields with no Slurm meaning.
* ``checker``: the error style shared with config.yaml (pydantic errors -> issues).
* ``overrides`` / ``dotenv``: command-line flags and ``--env-file``.
* ``cache``: validated tasks remembered, so a re-launch skips PyYAML and pydantic.
* ``validate``: the flow that ties them together.

Importing this package costs nothing: PyYAML and pydantic are imported only when a task is
parsed, so commands that never parse one (``konduktor status``) never pay ~100 ms for them.
Relative paths (workdir, file_mounts sources) are relative to the directory konduktor runs in,
as in Konduktor and SkyPilot.
"""

from __future__ import annotations

from pathlib import Path

from konduktor_slurm.task.errors import COMMAND_LINE, TaskError, TaskIssue
from konduktor_slurm.task.model import Accelerator, Resources, SlurmOptions, Task, TaskOverrides

__all__ = [
    "COMMAND_LINE",
    "Accelerator",
    "Resources",
    "SlurmOptions",
    "Task",
    "TaskError",
    "TaskIssue",
    "TaskOverrides",
    "load_task",
    "parse_task",
    "task_from_data",
]


def load_task(
    path: Path,
    overrides: TaskOverrides | None = None,
    base_dir: Path | None = None,
    cache_home: Path | None = None,
) -> Task:
    """Read and validate a task YAML file. Raises ``TaskError`` listing every issue.

    Relative paths in the task resolve against ``base_dir`` (default: the current directory).
    With ``cache_home``, a task validated before with the same inputs comes from the task
    cache there (see ``task/cache.py``), without importing PyYAML or pydantic.
    """
    from konduktor_slurm.task.source import read_source

    path = Path(path)
    source = str(path)
    text = read_source(path)
    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    source_path = path.absolute().resolve()
    key = None
    if cache_home is not None:
        from konduktor_slurm.task import cache

        key = cache.cache_key(text, source, source_path, base, overrides)
        task = cache.lookup(cache_home, key, base) if key is not None else None
        if task is not None:
            return task

    from konduktor_slurm.task.validate import build_task

    looked_at: list[tuple[str, str, str]] = []
    task = build_task(text, source, base, overrides, source_path, looked_at)
    if key is not None and cache_home is not None:
        cache.remember(cache_home, key, task, looked_at)
    return task


def task_from_data(
    data: dict,
    source: str = "<python>",
    base_dir: Path | None = None,
    overrides: TaskOverrides | None = None,
) -> Task:
    """Validate a task given as a mapping (the fields of a task YAML), e.g. built in Python
    or from a command given to ``launch`` instead of a file."""
    import copy

    from konduktor_slurm.task.source import Positions
    from konduktor_slurm.task.validate import build_task_from_data

    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    return build_task_from_data(copy.deepcopy(data), Positions(), source, base, overrides, None)


def parse_task(
    text: str,
    source: str = "<string>",
    base_dir: Path | None = None,
    overrides: TaskOverrides | None = None,
) -> Task:
    """Validate task YAML given as text. Relative paths resolve against ``base_dir``
    (default: the current directory). ``source`` only names the text in messages."""
    from konduktor_slurm.task.validate import build_task

    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    return build_task(text, source, base, overrides, None)
