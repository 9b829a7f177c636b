"""Validated tasks, remembered: launching a task again skips PyYAML and pydantic.

Validating a task takes ~160 ms, nearly all of it importing PyYAML and pydantic and building
the schema's models. For a re-launch, whose snapshot rsync mostly hard-links, that is more
than everything else konduktor does in Python. So ``konduktor launch`` keeps the tasks it
validated last in ``$KONDUKTOR_HOME/task-cache.json`` and answers a task it has seen from
there.

* The key is a SHA-256 of everything validation reads: the task file's text, its path as
  given and resolved, the directory relative paths start from, ``$HOME`` (for ``~``), the
  command-line overrides (with the value ``--env K`` takes from the environment), and this
  konduktor: its version and the sizes and times of the task package's modules, so an edited
  checkout never reuses an old rule.
* What validation learnt from the file system (each local path of workdir and file_mounts,
  what it resolved to and whether it is a directory) is checked again on every hit: a deleted
  workdir or a symlink pointed elsewhere is validated afresh, with the usual messages.
* Secrets are never written. A task with ``secrets`` (in the file or by ``--secret``) is not
  cached, nor one given ``--env-file`` (a file of values outside the key).
* Only accepted tasks are cached, with their warnings (shown again on a hit); a refused task is
  validated every time.
* The file is JSON, written atomically, 0600. A damaged or foreign one (not ours, writable by
  others, too big, for another format) is ignored and rewritten. It keeps the last
  ``MAX_ENTRIES`` tasks validated; one that cannot be written is no error.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from konduktor_slurm import __version__
from konduktor_slurm.checkpoint import Checkpoint
from konduktor_slurm.private_files import read_json, write_atomically
from konduktor_slurm.task.model import Accelerator, Resources, SlurmOptions, Task, TaskOverrides

CACHE_NAME = "task-cache.json"
# Bump when the cached form of a task changes shape or meaning.
CACHE_FORMAT = 1
MAX_ENTRIES = 32
MAX_CACHE_BYTES = 1024 * 1024

# (path as written in the task, what it resolved to, "dir" or "file")
Fact = tuple[str, str, str]


# ---- the key ------------------------------------------------------------------------------


def cache_key(
    text: str,
    source: str,
    source_path: Path,
    base_dir: Path,
    overrides: TaskOverrides | None,
) -> str | None:
    """The key of this validation, or None when it must not be cached (secrets, an env file)."""
    given = None
    if overrides is not None:
        if overrides.secrets or overrides.env_file is not None:
            return None
        given = dict(vars(overrides))
        # `--env K` takes K's value from the environment: that value is part of the task.
        given["envs"] = [
            entry if "=" in entry else [entry, os.environ.get(entry)] for entry in overrides.envs
        ]
    material = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "code": _code_stamp(),
        "text": text,
        "source": source,
        "path": str(source_path),
        "base": str(base_dir),
        "home": os.environ.get("HOME"),
        "overrides": given,
    }
    # json.dumps writes ASCII: lone surrogates (undecodable bytes in names) are escaped.
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _code_stamp() -> list[list[Any]]:
    """Name, size and mtime of each module that decides what a task means."""
    here = Path(__file__).parent
    stamp = []
    for path in (*sorted(here.glob("*.py")), here.parent / "checkpoint.py"):
        try:
            info = os.stat(path)
        except OSError:
            continue
        stamp.append([path.name, info.st_size, info.st_mtime_ns])
    return stamp


# ---- reading and writing ------------------------------------------------------------------


def lookup(home: Path, key: str, base_dir: Path) -> Task | None:
    """The cached task for ``key`` if its local paths are still what they were, else None."""
    for entry in _entries(home):
        if not isinstance(entry, dict) or entry.get("key") != key:
            continue
        try:
            task = task_from_json(entry["task"])
            facts = [_fact(fact) for fact in entry["looked_at"]]
        except (KeyError, TypeError, ValueError):
            return None
        return task if all(_still_true(fact, base_dir) for fact in facts) else None
    return None


def remember(home: Path, key: str, task: Task, looked_at: list[Fact]) -> None:
    """Keep ``task`` (never one with secrets) as the newest entry."""
    if task.secrets:
        return
    entry = {
        "key": key,
        "task": task_to_json(task),
        "looked_at": [list(fact) for fact in dict.fromkeys(looked_at)],
    }
    kept = [e for e in _entries(home) if isinstance(e, dict) and e.get("key") != key]
    entries = [entry, *kept][:MAX_ENTRIES]
    while entries:
        text = json.dumps({"format": CACHE_FORMAT, "entries": entries})  # ASCII
        if len(text) <= MAX_CACHE_BYTES:
            write_atomically(home / CACHE_NAME, text)
            return
        entries.pop()


def _entries(home: Path) -> list[Any]:
    """The cache's entries, newest first; [] for a missing, damaged or untrusted cache."""
    payload = read_json(home / CACHE_NAME, MAX_CACHE_BYTES)
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        return []
    entries = payload.get("entries")
    return entries if isinstance(entries, list) else []


# ---- what validation looked at ------------------------------------------------------------


def _fact(data: Any) -> Fact:
    if not (isinstance(data, list) and len(data) == 3 and all(isinstance(x, str) for x in data)):
        raise ValueError("damaged fact")
    return data[0], data[1], data[2]


def _still_true(fact: Fact, base_dir: Path) -> bool:
    """The path written in the task still resolves to the same place, of the same kind
    (as task/rules.py's local_path and _kind find them)."""
    written, resolved, kind = fact
    path = Path(os.path.expanduser(written))
    if not path.is_absolute():
        path = base_dir / path
    try:
        info = path.stat()
        now = str(path.resolve())
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL in a damaged entry
        return False
    return now == resolved and ("dir" if stat.S_ISDIR(info.st_mode) else "file") == kind


# ---- a task as JSON -----------------------------------------------------------------------

TASK_FIELDS = (
    "name",
    "run",
    "setup",
    "envs",
    "workdir",
    "file_mounts",
    "num_nodes",
    "resources",
    "slurm",
    "event_callback",
    "source",
    "warnings",
)
RESOURCES_FIELDS = ("cpus", "memory_gib", "accelerator", "max_restarts", "checkpoint")
SLURM_FIELDS = ("partition", "account", "qos", "time_limit", "constraint", "sbatch_options")


def task_to_json(task: Task) -> dict[str, Any]:
    """A task without its secrets, as JSON values (``task_from_json`` reads it back)."""
    res, slurm = task.resources, task.slurm
    accelerator = res.accelerator
    return {
        "name": task.name,
        "run": task.run,
        "setup": task.setup,
        "envs": dict(task.envs),
        "workdir": None if task.workdir is None else str(task.workdir),
        "file_mounts": {dest: str(src) for dest, src in task.file_mounts.items()},
        "num_nodes": task.num_nodes,
        "resources": {
            "cpus": res.cpus,
            "memory_gib": res.memory_gib,
            "accelerator": None
            if accelerator is None
            else {"name": accelerator.name, "count": accelerator.count},
            "max_restarts": res.max_restarts,
            "checkpoint": None if res.checkpoint is None else res.checkpoint.to_json(),
        },
        "slurm": {
            **{name: getattr(slurm, name) for name in SLURM_FIELDS[:-1]},
            "sbatch_options": [list(option) for option in slurm.sbatch_options],
        },
        "event_callback": task.event_callback,
        "source": None if task.source is None else str(task.source),
        "warnings": list(task.warnings),
    }


def task_from_json(data: Any) -> Task:
    """``task_to_json``'s output back to a Task; ValueError/TypeError for anything else."""
    task = _record(data, TASK_FIELDS)
    res = _record(task["resources"], RESOURCES_FIELDS)
    slurm = _record(task["slurm"], SLURM_FIELDS)
    accelerator = res["accelerator"]
    if accelerator is not None:
        accelerator = _record(accelerator, ("name", "count"))
        accelerator = Accelerator(_text(accelerator["name"]), _integer(accelerator["count"]))
    checkpoint = None
    if res["checkpoint"] is not None:
        checkpoint = Checkpoint.from_json(res["checkpoint"])
        if checkpoint is None:
            raise ValueError("damaged checkpoint")
    memory = res["memory_gib"]
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int | float)):
        raise ValueError("damaged memory")
    options = slurm["sbatch_options"]
    if not isinstance(options, list):
        raise ValueError("damaged sbatch_options")
    return Task(
        name=_text(task["name"]),
        run=_optional_text(task["run"]),
        setup=_optional_text(task["setup"]),
        envs=_text_mapping(task["envs"]),
        workdir=None if task["workdir"] is None else Path(_text(task["workdir"])),
        file_mounts={dest: Path(src) for dest, src in _text_mapping(task["file_mounts"]).items()},
        num_nodes=_integer(task["num_nodes"]),
        resources=Resources(
            cpus=None if res["cpus"] is None else _integer(res["cpus"]),
            memory_gib=memory,
            accelerator=accelerator,
            max_restarts=_integer(res["max_restarts"]),
            checkpoint=checkpoint,
        ),
        slurm=SlurmOptions(
            **{name: _optional_text(slurm[name]) for name in SLURM_FIELDS[:-1]},
            sbatch_options=tuple(_option(option) for option in options),
        ),
        event_callback=_optional_text(task["event_callback"]),
        source=None if task["source"] is None else Path(_text(task["source"])),
        warnings=tuple(_text(warning) for warning in _list(task["warnings"])),
    )


def _record(data: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != set(names):
        raise ValueError("damaged record")
    return data


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return value


def _text_mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a mapping of text")
    return dict(value)


def _option(value: Any) -> tuple[str, str | None]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("damaged sbatch option")
    return _text(value[0]), _optional_text(value[1])
