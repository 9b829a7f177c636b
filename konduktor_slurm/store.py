"""The local job store: SQLite under ``$KONDUKTOR_HOME`` (default ``~/.konduktor``).

It remembers what Slurm forgets (the task, resources, the konduktor name, who stopped a job)
and what Slurm would make us ask again (terminal states are never queried twice). Every
state change is kept as a transition with a timestamp, for ``status JOB`` and reports.

What can go wrong with the file is a ``StoreError`` (one line: the file, what is wrong, what
to do), never a traceback:

- damaged (garbage, truncated, empty, missing tables) or foreign (another program's SQLite
  database): ``konduktor store rebuild`` keeps it aside and re-records the jobs from Slurm;
- written by a newer konduktor (``PRAGMA user_version`` above ours): refused, untouched;
- unreadable or read-only (file, directory, or ``KONDUKTOR_HOME`` being a file): named;
- locked by another process: waited for (a line on stderr after a second), then named.

A damaged *value* in one row (a ``state`` that is no lifecycle state, invalid JSON in
``extra``/``user_stop``, NULL or text where a number belongs) does not stop the others from
being read: the row is read with the damaged values replaced by safe defaults (an unknown
state becomes PENDING and is asked of Slurm again), a row without a usable name is skipped,
and one warning line names them (``Store.damage`` holds the details; ``konduktor store
check`` lists them).

The schema is versioned with ``PRAGMA user_version`` and stamped with ``PRAGMA
application_id``; ``MIGRATIONS`` brings an older store up to date in one transaction when it
is opened. The project's first release wrote version 0 (no stamp).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from konduktor_slurm.checkpoint import Checkpoint
from konduktor_slurm.lifecycle import State, UserStop
from konduktor_slurm.service.errors import EXIT_STORE, EXIT_STORE_LOCKED, KonduktorError

# ---- errors -------------------------------------------------------------------------------

# Exit codes (README "Exit codes", service/errors.py): 6 the store cannot be used until
# someone acts (the message says what to do); 7 it is locked by another process (try again).

REBUILD_HINT = "run `konduktor store rebuild` to keep it aside and re-record your jobs from Slurm"


class StoreError(KonduktorError):
    """The job store cannot be used; ``str()`` is the one line to show.

    Any command that meets it, even one that does not catch it, prints ``Error: <line>``
    and exits with ``exit_code`` instead of a traceback: the CLI's group turns every
    KonduktorError into that (cli.LazyCommands.invoke).
    """

    exit_code = EXIT_STORE

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message.replace("\n", " "))  # one line, whatever SQLite said
        self.path = path


class StoreDamagedError(StoreError):
    """Not readable as a store: garbage, truncated, empty, or konduktor's tables damaged."""


class StoreForeignError(StoreError):
    """An SQLite database (or a directory) that is not a konduktor job store."""


class StoreTooNewError(StoreError):
    """Written by a newer konduktor (a store version this one does not know); left untouched."""


class StoreAccessError(StoreError):
    """A permission or path problem: nothing is wrong with the data."""


class StoreUnreadableError(StoreAccessError):
    """The file (or its directory) cannot be read, or ``KONDUKTOR_HOME`` is not a directory."""


class StoreReadOnlyError(StoreAccessError):
    """The store can be read but not written (file, directory or file system read-only)."""


class StoreLockedError(StoreError):
    """Another process held the store locked for longer than ``LOCK_WAIT_SECONDS``."""

    exit_code = EXIT_STORE_LOCKED


# ---- schema and migrations ------------------------------------------------------------------

# "KOND": marks the file as a konduktor store (PRAGMA application_id; 0 in the first release).
APPLICATION_ID: Final = 0x4B4F4E44

# The first release's tables (version 0, commit 17a4669), unchanged since. IF NOT EXISTS:
# step 1 creates them in a new file and leaves a first-release store's tables as they are.
_FIRST_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS jobs (
        name TEXT PRIMARY KEY,
        task_name TEXT NOT NULL,
        user TEXT NOT NULL,
        slurm_job_id TEXT,
        resources TEXT NOT NULL,
        num_nodes INTEGER NOT NULL,
        gpus_per_node INTEGER NOT NULL DEFAULT 0,
        job_dir TEXT NOT NULL,
        log_path TEXT NOT NULL,
        max_restarts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        submitted_at REAL,
        start_time REAL,
        end_time REAL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        terminal INTEGER NOT NULL DEFAULT 0,
        hidden INTEGER NOT NULL DEFAULT 0,
        user_stop TEXT,
        extra TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at)",
    """CREATE TABLE IF NOT EXISTS transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_name TEXT NOT NULL REFERENCES jobs (name),
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS transitions_by_job ON transitions (job_name, at)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


# A job not known to be finished (a damaged ``terminal`` reads as not finished).
_OPEN: Final = "terminal IS NOT 1"


class Migration(NamedTuple):
    """One step: run ``statements`` on a store at ``version - 1`` to reach ``version``."""

    version: int
    why: str
    statements: tuple[str, ...]


# Append only: a step, once released, never changes. Each step runs inside the one
# transaction that opens an older store (DDL and PRAGMA user_version are transactional in
# SQLite), so a store is at one version or the next, never in between.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "the first release's tables, stamped as a konduktor store", _FIRST_TABLES),
    Migration(
        2,
        "find a job by its Slurm job id without reading every row (logs/status/stop <id>)",
        ("CREATE INDEX IF NOT EXISTS jobs_by_slurm_id ON jobs (slurm_job_id)",),
    ),
    Migration(
        3,
        "how a task checkpoints (stop --mode checkpoint) and its event_callback, run once per "
        "state change: a transition is claimed by setting notified (0 = its callback is due)",
        (
            "ALTER TABLE jobs ADD COLUMN checkpoint TEXT",
            "ALTER TABLE jobs ADD COLUMN event_callback TEXT",
            # Earlier changes are not due: their jobs had no callback konduktor kept.
            "ALTER TABLE transitions ADD COLUMN notified INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX IF NOT EXISTS transitions_due ON transitions (id) WHERE notified = 0",
        ),
    ),
    Migration(
        4,
        "a report reads the changes and the runs of its window, not every row of a big store",
        (
            "CREATE INDEX IF NOT EXISTS transitions_by_time ON transitions (at)",
            "CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (end_time)",
            # The few unfinished jobs among many finished ones, newest first (status,
            # report, waiters): the WHERE is the one their queries use.
            f"CREATE INDEX IF NOT EXISTS jobs_open ON jobs (created_at) WHERE {_OPEN}",
            # Jobs per state, counted from the index alone.
            "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, hidden)",
        ),
    ),
    Migration(
        5,
        "the automatic prune after every report counts and picks its candidates from indexes, "
        "not by reading every row of a big store",
        (
            # Finished, unpruned jobs that are no sweep variant (the partial index's WHERE is
            # the one _PRUNABLE repeats, term for term: only then does SQLite use it), in the
            # order a prune takes them: counted from the index alone, the oldest read first.
            "CREATE INDEX IF NOT EXISTS jobs_prunable ON jobs (end_time, name) WHERE "
            "terminal = 1 AND typeof(extra) = 'text' AND instr(extra, '\"pruned_at\"') = 0 "
            "AND instr(extra, '\"sweep\"') = 0",
            # The unpruned rows that may be sweep variants, read whole (their sweep decides).
            "CREATE INDEX IF NOT EXISTS jobs_unpruned_sweeps ON jobs (name) WHERE "
            "typeof(extra) = 'text' AND instr(extra, '\"pruned_at\"') = 0 "
            "AND instr(extra, '\"sweep\"') > 0",
            # A task's newest job (which prune keeps for last) from the index alone.
            "CREATE INDEX IF NOT EXISTS jobs_by_task ON jobs (task_name, created_at, name)",
        ),
    ),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

# ---- locking --------------------------------------------------------------------------------

# A status from cron and one from a person may overlap: wait for the lock, briefly. After
# NOTICE_AFTER the user is told on stderr what is being waited for.
LOCK_WAIT_SECONDS: Final = 5.0
NOTICE_AFTER_SECONDS: Final = 1.0

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100
# SQLite keeps these beside the database; they belong to it (see recovery.keep_aside).
COMPANION_SUFFIXES: Final = ("-wal", "-shm", "-journal")


def warn_on_stderr(message: str) -> None:
    """The default for ``Store(notify=...)``: with no logging configured (the CLI), Python's
    last-resort handler prints the bare message on stderr. (logging is imported here, when
    there is something to say: it costs a status' start-up several milliseconds.)"""
    import logging

    logging.getLogger(__name__).warning(message)


# ---- records --------------------------------------------------------------------------------


@dataclass
class JobRecord:
    """One job as the store keeps it: what was launched and its last known state."""

    name: str
    task_name: str
    user: str
    resources: str
    num_nodes: int
    job_dir: str
    log_path: str
    state: str
    created_at: float
    gpus_per_node: int = 0
    max_restarts: int = 0
    slurm_job_id: str | None = None
    submitted_at: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    detail: str = ""
    terminal: bool = False
    hidden: bool = False
    user_stop: UserStop | None = None
    extra: dict = field(default_factory=dict)
    # How the task saves its work (None: it does not say); set at launch.
    checkpoint: Checkpoint | None = None
    # The task's event_callback: a command run here at each state change (None: none).
    event_callback: str | None = None


class Transition(NamedTuple):
    """One change of a job's lifecycle state, as the store recorded it."""

    job_name: str
    state: str
    detail: str
    at: float


class DueEvent(NamedTuple):
    """A state change whose event_callback is due, claimed by one process (see
    ``Store.claim_due_events``): it runs the callback, and no other process will."""

    id: int
    job_name: str
    old_state: str  # "" for the job's first state
    state: str
    detail: str
    at: float
    command: str


_COLUMNS = (
    "name",
    "task_name",
    "user",
    "slurm_job_id",
    "resources",
    "num_nodes",
    "gpus_per_node",
    "job_dir",
    "log_path",
    "max_restarts",
    "created_at",
    "submitted_at",
    "start_time",
    "end_time",
    "state",
    "detail",
    "terminal",
    "hidden",
    "user_stop",
    "extra",
    "checkpoint",
    "event_callback",
)
_SELECT_JOBS = f"SELECT {','.join(_COLUMNS)} FROM jobs"
# What _decode_transition reads, and the id (a report's cursor) last.
_SELECT_TRANSITIONS: Final = "SELECT job_name, state, detail, at, id FROM transitions"
# The tables konduktor reads and their columns: a store without them is damaged.
_REQUIRED_TABLES: Final = {
    "jobs": frozenset(_COLUMNS),
    "transitions": frozenset({"id", "job_name", "state", "detail", "at", "notified"}),
    "meta": frozenset({"key", "value"}),
}

# What a refresh from Slurm writes; user_stop and hidden belong to stop/start/down.
REFRESH_COLUMNS = ("start_time", "end_time", "state", "detail", "terminal", "extra")


def _to_row(job: JobRecord) -> tuple:
    values = []
    for column in _COLUMNS:
        value = getattr(job, column)
        if column in ("user_stop", "checkpoint"):
            value = None if value is None else json.dumps(value.to_json())
        elif column == "extra":
            value = json.dumps(value)
        elif column in ("terminal", "hidden"):
            value = int(value)
        values.append(value)
    return tuple(values)


class _Undecodable(str):
    """A TEXT value that is not UTF-8 (read with replacement characters, marked damaged)."""


def _text_factory(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw.decode("utf-8", "replace"))


def _is_text(value: object) -> bool:
    return isinstance(value, str) and not isinstance(value, _Undecodable)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e13  # epoch seconds until the year 318857; beyond is garbage
    )


def _describe(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, _Undecodable):
        return "text that is not UTF-8"
    if isinstance(value, bytes):
        return f"a {len(value)}-byte blob"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Known keys of ``extra`` (written by tracker.py) and what a valid value looks like; a value
# of another shape would break `status JOB`, so it is dropped as damage.
def _str_or_none(value: object) -> bool:
    return value is None or _is_text(value)


def _int_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _rank_codes(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(rank, str)
        and rank.isdigit()
        and isinstance(code, int)
        and not isinstance(code, bool)
        for rank, code in value.items()
    )


def _attempt(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    )


_EXTRA_SHAPES: Final[dict[str, Callable[[object], bool]]] = {
    "slurm_state": _str_or_none,
    "reason": _str_or_none,
    "priority": _int_or_none,
    "node_list": _str_or_none,
    "exit_code": _str_or_none,
    "rank_exit_codes": _rank_codes,
    "restarts": _int_or_none,
    "attempt": _attempt,
    "pruned_at": lambda value: _is_number(value),  # when the job's snapshot was removed
}


def _decode_json(text: object) -> tuple[object, str | None]:
    """(value, None) or (None, what is wrong)."""
    if not _is_text(text):
        return None, f"{_describe(text)} instead of JSON"
    try:
        return json.loads(text), None  # type: ignore[arg-type]
    except ValueError:  # JSONDecodeError, and RecursionError's cousin for absurd nesting
        return None, "not valid JSON"
    except RecursionError:
        return None, "JSON nested too deeply"


_STATES: Final = {state.value: state for state in State}


def _time_or_none(value: object) -> float | bool | None:
    """A sound time column as a float (None for NULL); False when it is not sound."""
    if value is None:
        return None
    kind = type(value)
    if (kind is float or kind is int) and -1e13 < value < 1e13:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    return False


def _sound_job(row: sqlite3.Row | tuple) -> JobRecord | None:
    """The record of a row in which every value has its expected type and shape, built
    without ``_decode_job``'s bookkeeping (a status of 10,000 jobs reads 10,000 rows); None
    for any other row, which ``_decode_job`` then reads value by value. Both give the same
    record for a sound row."""
    (name, task_name, user, slurm_job_id, resources, num_nodes, gpus_per_node, job_dir,
     log_path, max_restarts, created_at, submitted_at, start_time, end_time, state_text,
     detail, terminal, hidden, user_stop_text, extra_text, checkpoint_text,
     event_callback) = row  # fmt: skip
    str_ = str
    if not (
        type(name) is str_ and name and type(task_name) is str_ and type(user) is str_
        and type(resources) is str_ and type(job_dir) is str_ and type(log_path) is str_
        and type(detail) is str_ and type(extra_text) is str_
        and (slurm_job_id is None or type(slurm_job_id) is str_)
        and (event_callback is None or type(event_callback) is str_)
        and type(num_nodes) is int and num_nodes >= 1
        and type(gpus_per_node) is int and gpus_per_node >= 0
        and type(max_restarts) is int and max_restarts >= 0
        and (terminal == 0 or terminal == 1) and type(terminal) is int
        and (hidden == 0 or hidden == 1) and type(hidden) is int
    ):  # fmt: skip
        return None
    state = _STATES.get(state_text)
    created = _time_or_none(created_at)
    submitted, started, ended = (_time_or_none(v) for v in (submitted_at, start_time, end_time))
    if state is None or not created or False in (submitted, started, ended):
        return None  # created_at 0.0 too: _decode_job decides what that means
    user_stop = None
    if user_stop_text is not None:
        user_stop = _user_stop(user_stop_text) if type(user_stop_text) is str_ else None
        if user_stop is None:
            return None
    try:
        extra = json.loads(extra_text)
    except (ValueError, RecursionError):
        return None
    if type(extra) is not dict:
        return None
    for key, value in extra.items():
        shape = _EXTRA_SHAPES.get(key)
        if shape is not None and not shape(value):
            return None
    checkpoint = None
    if checkpoint_text is not None:
        data, wrong = _decode_json(checkpoint_text)
        checkpoint = None if wrong else Checkpoint.from_json(data)
        if checkpoint is None:
            return None
    return JobRecord(
        name=name,
        task_name=task_name,
        user=user,
        resources=resources,
        num_nodes=num_nodes,
        job_dir=job_dir,
        log_path=log_path,
        state=state,
        created_at=created,  # type: ignore[arg-type]
        gpus_per_node=gpus_per_node,
        max_restarts=max_restarts,
        slurm_job_id=slurm_job_id,
        submitted_at=submitted,  # type: ignore[arg-type]
        start_time=started,  # type: ignore[arg-type]
        end_time=ended,  # type: ignore[arg-type]
        detail=detail,
        terminal=terminal == 1,
        hidden=hidden == 1,
        user_stop=user_stop,
        extra=extra,
        checkpoint=checkpoint,
        event_callback=event_callback or None,
    )


def _decode_job(row: sqlite3.Row | tuple) -> tuple[JobRecord | None, list[str]]:
    """A record from a row, and what was damaged in it (empty for a sound row).

    Damaged values are replaced by safe defaults; a row without a usable name is None.
    """
    sound = _sound_job(row)
    if sound is not None:
        return sound, []
    # Read by column name: a row of _SELECT_JOBS, as a Row or as a plain tuple.
    by_name = row if isinstance(row, sqlite3.Row) else dict(zip(_COLUMNS, row, strict=True))
    return _decode_job_carefully(by_name)


def _decode_job_carefully(row: Mapping[str, Any]) -> tuple[JobRecord | None, list[str]]:
    """``_decode_job`` value by value, naming each damaged one."""
    problems: list[str] = []
    name = row["name"]
    if not _is_text(name) or not name:
        return None, [f"name is {_describe(name)}: row skipped"]

    def text(column: str, default: str) -> str:
        value = row[column]
        if _is_text(value):
            return value
        problems.append(f"{column} is {_describe(value)}")
        return default

    def number(column: str, default: float | None, *, required: bool = False) -> float | None:
        value = row[column]
        if _is_number(value):
            return float(value)
        if value is None and not required:
            return None
        problems.append(f"{column} is {_describe(value)}")
        return default

    def count(column: str, default: int, minimum: int) -> int:
        value = row[column]
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        problems.append(f"{column} is {_describe(value)}")
        return default

    def flag(column: str) -> bool:
        value = row[column]
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        problems.append(f"{column} is {_describe(value)}")
        return False

    slurm_job_id = row["slurm_job_id"]
    if slurm_job_id is not None and not _is_text(slurm_job_id):
        problems.append(f"slurm_job_id is {_describe(slurm_job_id)}")
        slurm_job_id = str(slurm_job_id) if isinstance(slurm_job_id, int) else None
    submitted_at = number("submitted_at", None)
    start_time = number("start_time", None)
    end_time = number("end_time", None)
    created_at = number("created_at", None, required=True)
    if created_at is None:
        created_at = submitted_at or start_time or 0.0
    terminal = flag("terminal")

    detail = text("detail", "")
    state_text = row["state"]
    try:
        state = State(state_text)
    except ValueError:
        problems.append(f"state is {_describe(state_text)}, not a lifecycle state")
        # Not knowing the state, assume the job may still run: a refresh asks Slurm again
        # and records what it says. A job that never reached Slurm cannot be followed.
        state, terminal = (State.PENDING, False) if slurm_job_id else (State.FAILED, True)
        detail = f"unknown state {_describe(state_text)} in the store" + (
            "; asking Slurm" if slurm_job_id else ""
        )

    user_stop = None
    if row["user_stop"] is not None:
        data, wrong = _decode_json(row["user_stop"])
        user_stop = None if wrong else UserStop.from_json(data)
        if user_stop is None:
            problems.append(f"user_stop is {wrong or 'not a stop record'}")

    checkpoint = None
    if row["checkpoint"] is not None:
        data, wrong = _decode_json(row["checkpoint"])
        checkpoint = None if wrong else Checkpoint.from_json(data)
        if checkpoint is None:
            problems.append(f"checkpoint is {wrong or 'not a checkpoint setting'}")
    event_callback = row["event_callback"]
    if event_callback is not None and not _is_text(event_callback):
        problems.append(f"event_callback is {_describe(event_callback)}")
        event_callback = None

    extra: dict[str, Any] = {}
    data, wrong = _decode_json(row["extra"])
    if wrong:
        problems.append(f"extra is {wrong}")
    elif not isinstance(data, dict):
        problems.append(f"extra is {_describe(data)}, not a JSON object")
    else:
        for key, value in data.items():
            shape = _EXTRA_SHAPES.get(key)
            if shape is not None and not shape(value):
                problems.append(f"extra.{key} is {_describe(value)}")
                continue
            extra[key] = value

    name_default = name.rsplit("-", 1)[0]
    job = JobRecord(
        name=name,
        task_name=text("task_name", name_default),
        user=text("user", ""),
        resources=text("resources", "-"),
        num_nodes=count("num_nodes", 1, minimum=1),
        job_dir=text("job_dir", ""),
        log_path=text("log_path", ""),
        state=state,
        created_at=created_at,
        gpus_per_node=count("gpus_per_node", 0, minimum=0),
        max_restarts=count("max_restarts", 0, minimum=0),
        slurm_job_id=slurm_job_id,
        submitted_at=submitted_at,
        start_time=start_time,
        end_time=end_time,
        detail=detail,
        terminal=terminal,
        hidden=flag("hidden"),
        user_stop=user_stop,
        extra=extra,
        checkpoint=checkpoint,
        event_callback=event_callback or None,
    )
    return job, problems


def _user_stop(text: object) -> UserStop | None:
    if text is None:
        return None
    data, wrong = _decode_json(text)
    return None if wrong else UserStop.from_json(data)


def _decode_transition(row: tuple) -> Transition | None:
    """A transition from a row of ``_SELECT_TRANSITIONS``; None when it is unreadable."""
    job_name, state, detail, at = row[0], row[1], row[2], row[3]
    if type(job_name) is str and type(state) is str and type(at) is float and -1e13 < at < 1e13:
        return Transition(job_name, state, detail if type(detail) is str else "", at)
    if not (_is_text(job_name) and _is_text(state) and _is_number(at)):
        return None
    return Transition(job_name, state, detail if _is_text(detail) else "", float(at))


# ---- opening the file -------------------------------------------------------------------------


def _owner(st: os.stat_result) -> str:
    try:
        import pwd

        return pwd.getpwuid(st.st_uid).pw_name
    except (ImportError, KeyError):
        return f"uid {st.st_uid}"


def _mode(st: os.stat_result) -> str:
    return f"mode {stat.filemode(st.st_mode)}, owner {_owner(st)}"


def _mode_of(path: Path) -> str:
    try:
        return _mode(os.stat(path))
    except OSError as exc:
        return exc.strerror or "cannot stat"


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def prepare_home(home: Path) -> None:
    """Make ``KONDUKTOR_HOME`` exist as a directory, or raise StoreUnreadableError why not."""
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise StoreUnreadableError(
            f"{home} is a file, not a directory; konduktor keeps its job store in it. "
            f"Move the file aside (mv {home} {home}.bak) or set KONDUKTOR_HOME to a directory",
            home / "state.db",
        ) from None
    except NotADirectoryError:
        raise StoreUnreadableError(
            f"cannot create {home}: a part of that path is a file, not a directory. "
            "Set KONDUKTOR_HOME to a directory",
            home / "state.db",
        ) from None
    except OSError as exc:
        raise StoreUnreadableError(
            f"cannot create {home} for the job store: {exc.strerror}. "
            "Set KONDUKTOR_HOME to a directory you may write",
            home / "state.db",
        ) from None


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):  # SQLite would create the file at the far end of it
            raise StoreUnreadableError(
                f"the job store {path} is a symbolic link to {os.readlink(path)}, which does "
                f"not exist. Remove the link (rm {path}) or restore what it points to",
                path,
            ) from None
        return False
    except OSError as exc:
        raise StoreUnreadableError(
            f"cannot look at the job store {path}: {exc.strerror}. Check the permissions of "
            f"{path.parent} (ls -ld {path.parent})",
            path,
        ) from None
    return True


def check_file(path: Path) -> None:
    """Raise the StoreError that says why ``path`` cannot be a store, before SQLite sees it:
    SQLite's own messages ("file is not a database", "unable to open database file") name
    neither the file nor what to do, and a FIFO would make it wait forever."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise StoreForeignError(
            f"the job store {path} is a directory, not a konduktor job store; {REBUILD_HINT}",
            path,
        )
    if not stat.S_ISREG(st.st_mode):
        raise StoreForeignError(
            f"the job store {path} is not a regular file ({stat.filemode(st.st_mode)}); "
            f"{REBUILD_HINT}",
            path,
        )
    try:
        with open(path, "rb") as file:
            header = file.read(_HEADER_SIZE)
    except PermissionError:
        raise StoreUnreadableError(
            f"cannot read the job store {path}: permission denied ({_mode(st)}). Give your "
            f"account read and write access (chmod u+rw {path}, or chown it), "
            "or set KONDUKTOR_HOME to a directory of your own",
            path,
        ) from None
    except OSError as exc:
        raise StoreUnreadableError(
            f"cannot read the job store {path}: {exc.strerror}", path
        ) from None
    if not header:
        raise StoreDamagedError(f"the job store {path} is empty (0 bytes); {REBUILD_HINT}", path)
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreDamagedError(
            f"the job store {path} is not an SQLite database (damaged, or another kind of "
            f"file); {REBUILD_HINT}",
            path,
        )
    if len(header) < _HEADER_SIZE:
        raise StoreDamagedError(
            f"the job store {path} is truncated ({len(header)} bytes); {REBUILD_HINT}", path
        )
    _check_writable(path, st)


_OWNER_RW = stat.S_IRUSR | stat.S_IWUSR


def _check_writable(path: Path, st: os.stat_result) -> None:
    if _read_only_fs(path):
        raise StoreReadOnlyError(
            f"cannot write the job store {path}: it is on a read-only file system. konduktor "
            "records every state change there: set KONDUKTOR_HOME to a writable directory",
            path,
        )
    if not os.access(path, os.W_OK):
        raise StoreReadOnlyError(
            f"cannot write the job store {path}: it is read-only ({_mode(st)}). konduktor "
            f"records every state change there: make it writable (chmod u+w {path})",
            path,
        )
    for suffix in ("-wal", "-shm"):  # left behind by another account (`sudo konduktor`)
        companion = Path(f"{path}{suffix}")
        try:
            found = os.lstat(companion)
        except OSError:
            continue  # none: SQLite creates it
        # Another process of ours may remove it (closing the store last) and make it again at
        # any moment: one lstat judges our own file, where os.access, asking again by name,
        # could meet no file at all and call it read-only.
        if os.geteuid() == 0:
            continue  # root may write any file
        ours = found.st_uid == os.geteuid()
        if ours:
            usable = found.st_mode & _OWNER_RW == _OWNER_RW
        else:
            usable = os.access(companion, os.R_OK | os.W_OK) or not os.path.lexists(companion)
        if not usable:
            remedy = (
                f"Make it yours to write again (chmod u+rw {companion})"
                if ours
                else f"Give it back to your account (sudo chown $USER {companion})"
            )
            raise StoreReadOnlyError(
                f"cannot write the job store {path}: {companion.name} is read-only to you "
                f"({_mode(found)}); SQLite writes it beside the store, and it may hold "
                f"the store's latest changes. {remedy}",
                path,
            )
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreReadOnlyError(
            f"cannot write the job store {path}: its directory is read-only "
            f"({_mode(os.stat(directory))}) and SQLite keeps {path.name}-wal and "
            f"{path.name}-shm beside the store. Make it writable (chmod u+w {directory})",
            path,
        )


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """What an SQLite error means for the user, as a StoreError naming the file."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    what = str(exc)
    if _is_busy(exc):
        return StoreLockedError(
            f"the job store {path} is locked by another process (waited "
            f"{LOCK_WAIT_SECONDS:.0f} s). Try again; if it stays locked, find what holds it "
            f"open (fuser -v {path}) and let it finish",
            path,
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in what:
        return StoreDamagedError(f"the job store {path} is damaged ({what}); {REBUILD_HINT}", path)
    if code == sqlite3.SQLITE_READONLY:
        return StoreReadOnlyError(
            f"cannot write the job store {path} ({what}). Check that you may write it and "
            f"its {path.name}-wal and {path.name}-shm (ls -l {path.parent})",
            path,
        )
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return StoreUnreadableError(
            f"cannot open the job store {path} ({what}). Check that you may read and write "
            f"it, its directory, and {path.name}-wal and {path.name}-shm (ls -l {path.parent})",
            path,
        )
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        # SQLite says "disk I/O error" when the disk is full or the quota used up as it
        # grows the -shm file, which even a read needs (WAL): ask the file system itself.
        lack = _lack_of_space(path.parent)
        if lack is not None or code == sqlite3.SQLITE_FULL:
            return StoreError(
                f"cannot use the job store {path}: {lack or 'the disk is full'}. Free some "
                "space and run the command again (nothing in the store was lost)",
                path,
            )
    return StoreError(f"the job store {path} failed: {what}", path)


# The store's -shm grows 32 KiB at a time; a file system that cannot give this much is full.
_SPACE_PROBE_BYTES = 64 * 1024


def _lack_of_space(directory: Path) -> str | None:
    """Why ``directory`` cannot take a small new file, when it is for lack of space: its
    file system is full, or the user's quota there is used up; else None. The file is
    allocated, not just written: a write may be accepted and fail only at close."""
    probe = directory / f".konduktor-space-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # no inode left, or a quota on files
        return _space_text(exc.errno, directory)
    try:
        os.posix_fallocate(fd, 0, _SPACE_PROBE_BYTES)
    except OSError as exc:
        return _space_text(exc.errno, directory)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return None


def _space_text(code: int | None, directory: Path) -> str | None:
    if code == errno.ENOSPC:
        try:
            usage = os.statvfs(directory)
            free = f"{usage.f_bavail * usage.f_frsize // 1024} KiB free"
            if usage.f_files and not usage.f_favail:
                free = "no inodes free"
        except OSError:
            free = "no space free"
        return f"the file system holding {directory} is full ({free})"
    if code == errno.EDQUOT:
        return f"your disk quota on the file system holding {directory} is used up"
    return None


T = TypeVar("T")

# Raised as they are: a constraint (a name another launch took: launch handles it) or a
# programming error (a closed store, a bad parameter) is no fault of the file.
_NOT_THE_FILES_FAULT = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def _create(path: Path) -> None:
    """A new, empty store at ``path``, created whole: built under a temporary name and
    linked into place, so no process ever sees a half-made (or empty) file, and two
    processes creating one at once end with one store."""
    if not os.access(path.parent, os.W_OK | os.X_OK) or _read_only_fs(path.parent):
        raise StoreReadOnlyError(
            f"cannot create the job store {path}: its directory is read-only "
            f"({_mode_of(path.parent)}). Make it writable (chmod u+w {path.parent}) or set "
            "KONDUKTOR_HOME to a directory you may write",
            path,
        )
    temporary = path.with_name(f".{path.name}.new-{os.getpid()}-{os.urandom(3).hex()}")
    try:
        db = sqlite3.connect(str(temporary), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            _migrate(db, 0)
            db.execute("COMMIT")
        finally:
            db.close()
        os.chmod(temporary, 0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another konduktor created it first: use that one
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if not path.exists():  # no hard links on this file system
                os.replace(temporary, path)
    except sqlite3.Error as exc:
        raise store_error(path, exc) from None
    except OSError as exc:
        raise StoreReadOnlyError(
            f"cannot create the job store {path}: {exc.strerror}. Make {path.parent} "
            "writable or set KONDUKTOR_HOME to a directory you may write",
            path,
        ) from None
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{s}") for s in COMPANION_SUFFIXES)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Apply every step after ``version`` (inside the caller's transaction) and stamp it."""
    for migration in MIGRATIONS:
        if migration.version > version:
            for statement in migration.statements:
                db.execute(statement)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _columns(db: sqlite3.Connection, table: str) -> frozenset[str]:
    return frozenset(row[1] for row in db.execute(f"PRAGMA table_info({table})"))


def _shape(db: sqlite3.Connection) -> dict[str, tuple]:
    """Every table's columns as (name, type, NOT NULL, primary key): what tells the first
    release's store from a look-alike another tool made."""
    return {
        table: tuple(
            (row[1], str(row[2]).upper(), row[3], row[5])
            for row in db.execute(f"PRAGMA table_info({table})")
        )
        for table in _tables(db)
    }


@functools.cache
def _first_release_shape() -> dict[str, tuple]:
    db = sqlite3.connect(":memory:")
    try:
        for statement in _FIRST_TABLES:
            db.execute(statement)
        return _shape(db)
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> list[str]:
    return [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]


# ---- pruning (service/prune.py) ---------------------------------------------------------------

# SQLite allows 999 parameters per statement in older builds.
_MARKS_PER_STATEMENT: Final = 500

# Pruned rows are told by a substring test, not by parsing their JSON: after a while nearly
# every row of a large store is pruned. Damaged values (text where a number belongs, extra
# that is not JSON) make a row no candidate or a job of its own, never an error.
_UNPRUNED: Final = "typeof(extra) = 'text' AND instr(extra, '\"pruned_at\"') = 0"
# Finished unpruned jobs that cannot be sweep variants: migration 5's partial index
# jobs_prunable, whose WHERE this repeats term for term (SQLite uses a partial index only for
# a query that contains its WHERE). Nearly every candidate of a big store is one of them.
_PRUNABLE: Final = f"terminal = 1 AND {_UNPRUNED} AND instr(extra, '\"sweep\"') = 0"
# Those that ended (by Slurm's end time) before ?1: a range of that index. A text or blob
# end_time sorts after every number and NULL compares as nothing, so neither is in it.
_PLAIN_COUNT: Final = f"SELECT count(*) FROM jobs WHERE {_PRUNABLE} AND end_time < ?1"
_PLAIN_ROWS: Final = (
    "SELECT name, task_name, job_dir, end_time AS ended, NULL AS sweep FROM jobs "
    f"WHERE {_PRUNABLE} AND end_time < ?1 ORDER BY end_time, name"
)
# The other candidates, few: the unpruned rows that may be sweep variants (jobs_unpruned_sweeps)
# and the finished ones without a usable end time (cancelled before they ran, a failed
# submission, a damaged value: NULL, or text or blob, which sort after every number, so
# `>= ''` finds them in jobs_by_end), which ended at their last transition. A sweep comes
# with every variant, once every unpruned variant ended before ?1.
_OTHER_CANDIDATES: Final = f"""
WITH j AS (
    SELECT name, task_name, job_dir, terminal,
        CASE WHEN typeof(end_time) IN ('integer', 'real') THEN end_time
             ELSE (SELECT max(at) FROM transitions t WHERE t.job_name = jobs.name) END AS ended,
        CASE WHEN json_valid(extra) THEN json_extract(extra, '$.sweep') END AS sweep
    FROM jobs
    WHERE {_UNPRUNED} AND instr(extra, '"sweep"') > 0
    UNION ALL
    SELECT name, task_name, job_dir, terminal,
        (SELECT max(at) FROM transitions t WHERE t.job_name = jobs.name), NULL
    FROM jobs
    WHERE {_PRUNABLE} AND (end_time IS NULL OR end_time >= '')
)
SELECT name, task_name, job_dir, ended, sweep FROM j
WHERE (sweep IS NULL AND terminal = 1 AND ended < ?1)
    OR sweep IN (
        SELECT sweep FROM j WHERE sweep IS NOT NULL GROUP BY sweep
        HAVING min(coalesce(terminal = 1 AND ended < ?1, 0)) = 1
    )
ORDER BY ended, name
"""
# Plain candidates read per bounded prune beyond its limit: room for a few units holding
# their task's newest job (they go last) before another page is needed.
_PAGE_SLACK: Final = 32


def _sql_order(value: object) -> tuple[int, Any]:
    """``value`` as SQLite's ORDER BY places it (NULL, numbers, text, blobs), as a sort key
    that never compares two types (a damaged name is a blob or NULL)."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value) if isinstance(value, str) else (3, value)


def _row_order(row: sqlite3.Row) -> tuple[tuple[int, Any], tuple[int, Any]]:
    """Where ``ORDER BY ended, name`` puts a candidate row."""
    return _sql_order(row["ended"]), _sql_order(row["name"])


def _unit_key(name: object, sweep: object) -> tuple[str, object]:
    """What a candidate is pruned with: its sweep (one snapshot for every variant) or itself."""
    return ("sweep", sweep) if sweep is not None else ("job", name)


class PruneCandidate(NamedTuple):
    """A finished job whose snapshot may go (what ``Store.prune_candidates`` finds)."""

    name: str
    task_name: str
    job_dir: str
    ended: float  # when it ended (epoch seconds)
    sweep: str | None  # the grid sweep it is a variant of


# ---- the store --------------------------------------------------------------------------------


class StoreSummary(NamedTuple):
    """What ``konduktor store check`` shows."""

    path: Path
    size: int
    version: int
    integrity: tuple[str, ...]  # ("ok",) when PRAGMA integrity_check found nothing
    jobs_by_state: dict[str, int]
    hidden: int
    transitions: int
    damage: dict[str, tuple[str, ...]]

    @property
    def healthy(self) -> bool:
        return self.integrity == ("ok",) and not self.damage


class Store:
    """The job store at ``path``; opening it checks it, and upgrades an older one.

    ``notify`` receives the lines meant for the user while the store is in use (a wait for
    a lock, damaged rows); by default they go to stderr through ``logging``.
    """

    def __init__(self, path: Path, notify: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._notify = notify or warn_on_stderr
        # Damaged rows seen so far: job name (or a description) -> what is wrong.
        self.damage: dict[str, tuple[str, ...]] = {}
        self._reported: set[str] = set()
        prepare_home(path.parent)
        if not _exists(path):
            _create(path)
        check_file(path)
        try:
            self._db = sqlite3.connect(
                str(path), timeout=NOTICE_AFTER_SECONDS, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise store_error(path, exc) from None
        self._db.row_factory = sqlite3.Row
        self._db.text_factory = _text_factory
        try:
            self._attempt(self._open)
        except BaseException:
            self._db.close()
            raise
        self._db.text_factory = str  # from now on, see _fetch

    # ---- opening: recognise, refuse or upgrade, in that order, before writing anything

    def _open(self) -> None:
        db, path = self._db, self.path
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if application_id not in (0, APPLICATION_ID):
            raise StoreForeignError(
                f"{path} is not a konduktor job store (another program's database: "
                f"application id {application_id:#x}); {REBUILD_HINT}",
                path,
            )
        if application_id == 0 and version != 0:
            raise StoreForeignError(
                f"{path} is not a konduktor job store (another program's database, "
                f"version {version}); {REBUILD_HINT}",
                path,
            )
        if version > SCHEMA_VERSION:
            raise StoreTooNewError(
                f"the job store {path} was written by a newer konduktor-slurm (store version "
                f"{version}; this one knows up to {SCHEMA_VERSION}). Upgrade konduktor-slurm "
                "(pip install -U konduktor-slurm); the store was left unchanged",
                path,
            )
        if application_id == 0:
            self._check_first_release()
        if version < SCHEMA_VERSION:
            self._upgrade()
        self._check_tables()
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            # Readers never wait for a writer (a `status` beside a `logs --follow`).
            db.execute("PRAGMA journal_mode=WAL")

    def _check_first_release(self) -> None:
        """A store without konduktor's stamp is the first release's (its exact tables), an
        empty SQLite file (made by someone else: nothing to lose), or not ours."""
        tables = _tables(self._db)
        if not tables:
            return
        if _shape(self._db) != _first_release_shape():
            listed = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
            raise StoreForeignError(
                f"{self.path} is not a konduktor job store (it holds the tables {listed}); "
                f"{REBUILD_HINT}",
                self.path,
            )

    def _upgrade(self) -> None:
        """Every missing step, in one transaction; another process may have done it first."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                _migrate(db, version)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _check_tables(self) -> None:
        for table, columns in _REQUIRED_TABLES.items():
            missing = sorted(columns - _columns(self._db, table))
            if missing:
                what = (
                    f"table {table} is missing"
                    if missing == sorted(columns)
                    else (f"table {table} lacks {', '.join(missing)}")
                )
                raise StoreDamagedError(
                    f"the job store {self.path} is damaged ({what}); {REBUILD_HINT}", self.path
                )

    # ---- every SQLite call goes through here: errors become StoreErrors, locks are waited for

    def _attempt(self, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except _NOT_THE_FILES_FAULT:
            raise
        except sqlite3.Error as exc:
            if not _is_busy(exc) or self._db.in_transaction:
                raise store_error(self.path, exc) from None
        # Busy for NOTICE_AFTER_SECONDS already: say what we wait for, then wait the rest.
        self._notify(
            f"Waiting for the job store {self.path}: another process is using it "
            f"(up to {LOCK_WAIT_SECONDS:.0f} s)..."
        )
        rest_ms = int((LOCK_WAIT_SECONDS - NOTICE_AFTER_SECONDS) * 1000)
        self._db.execute(f"PRAGMA busy_timeout={rest_ms}")
        try:
            return operation()
        except _NOT_THE_FILES_FAULT:
            raise
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        finally:
            self._db.execute(f"PRAGMA busy_timeout={int(NOTICE_AFTER_SECONDS * 1000)}")

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        self._attempt(lambda: self._db.execute(sql, tuple(params)))

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._attempt(lambda: self._fetch(sql, tuple(params)))

    def _tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """``_rows`` as plain tuples, for the reads of thousands of rows (a report's window):
        a ``sqlite3.Row`` costs more to make and to read than the tuple it wraps."""
        return self._attempt(lambda: self._fetch(sql, tuple(params), plain=True))

    def _fetch(self, sql: str, params: tuple, plain: bool = False) -> list:
        """The rows of ``sql``, text decoded by SQLite's own (C) UTF-8 decoder; only when a
        value is not UTF-8 (a damaged row) is the query read again with ``_text_factory``,
        which keeps such a value readable and marks it. A Python callback for every value
        would cost a quarter of a report's time."""
        cursor = self._db.cursor()
        if plain:
            cursor.row_factory = None
        try:
            return cursor.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("Could not decode to UTF-8"):
                raise
        self._db.text_factory = _text_factory
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            self._db.text_factory = str

    def _report_damage(self, found: dict[str, list[str]]) -> None:
        """Remember damaged rows and tell the user once per store and row, in one line."""
        for label, problems in found.items():
            self.damage[label] = tuple(problems)
        new = [label for label in found if label not in self._reported]
        if not new:
            return
        self._reported.update(new)
        shown = "; ".join(f"{label} ({', '.join(found[label])})" for label in new[:3])
        more = f"; and {len(new) - 3} more" if len(new) > 3 else ""
        self._notify(
            f"Warning: the job store {self.path} has damaged values: {shown}{more}. Damaged "
            "values are shown as unknown; `konduktor store check` lists them and "
            "`konduktor store rebuild` re-records your jobs from Slurm."
        )

    def _decode_jobs(self, rows: list[sqlite3.Row] | list[tuple]) -> list[JobRecord]:
        jobs, damaged = [], {}
        for position, row in enumerate(rows):
            job, problems = _decode_job(row)
            if problems:
                damaged[job.name if job else f"row {position + 1} of jobs"] = problems
            if job is not None:
                jobs.append(job)
        if damaged:
            self._report_damage(damaged)
        return jobs

    # ---- the API the commands use

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one state of the store (a deferred transaction: in WAL mode
        it takes no lock that stops a writer); inside a transaction, that one's."""
        if self._db.in_transaction:
            yield
            return
        self._execute("BEGIN")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested uses join the outer one (a refresh of 200 jobs is one
        commit, not 200)."""
        if self._db.in_transaction:
            yield
            return
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise store_error(self.path, exc) from None

    def add(self, job: JobRecord) -> None:
        placeholders = ",".join("?" for _ in _COLUMNS)
        with self.transaction():
            self._execute(
                f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({placeholders})", _to_row(job)
            )
            self._record_transition(job.name, job.state, job.detail, job.created_at)

    def remove(self, name: str) -> None:
        """Forget a job that never reached Slurm (a name given back at launch)."""
        with self.transaction():
            self._execute("DELETE FROM transitions WHERE job_name=?", (name,))
            self._execute("DELETE FROM jobs WHERE name=?", (name,))

    def save(self, job: JobRecord, columns: Iterable[str] = _COLUMNS[1:]) -> None:
        """Write ``columns`` of ``job`` (default: every field); ``set_state`` for states."""
        wanted = tuple(columns)
        values = dict(zip(_COLUMNS, _to_row(job), strict=True))
        assignments = ",".join(f"{column}=?" for column in wanted)
        self._execute(
            f"UPDATE jobs SET {assignments} WHERE name=?",
            (*(values[column] for column in wanted), job.name),
        )

    def set_state(self, job: JobRecord, state: str, detail: str, at: float | None = None) -> bool:
        """Update what Slurm said about the job; record a transition only when its state changed.

        Compared with the stored state, not ``job.state``: another konduktor process (a
        ``logs --follow`` beside a ``status``) may have recorded the change already. Only the
        columns a refresh owns are written, so a concurrent ``stop`` or ``down`` is never
        undone by a process holding an older copy of the job.
        """
        at = time.time() if at is None else at
        with self.transaction():
            rows = self._rows(
                f"SELECT {','.join(REFRESH_COLUMNS)} FROM jobs WHERE name=?", (job.name,)
            )
            return self._apply_state(job, state, detail, at, rows[0] if rows else None)

    def set_states(
        self, changes: Iterable[tuple[JobRecord, str, str]], at: float | None = None
    ) -> None:
        """``set_state`` for many jobs (a refresh), reading their stored states at once."""
        at = time.time() if at is None else at
        changes = list(changes)
        with self.transaction():
            select = f"SELECT name, {','.join(REFRESH_COLUMNS)} FROM jobs"
            rows = self._rows_in(select, "name", (job.name for job, _, _ in changes))
            stored = {row[0]: row[1:] for row in rows}
            for job, state, detail in changes:
                self._apply_state(job, state, detail, at, stored.get(job.name))

    def _apply_state(
        self, job: JobRecord, state: str, detail: str, at: float, stored: Iterable | None
    ) -> bool:
        """Write what a refresh found about ``job`` against its ``stored`` refresh columns."""
        stored = None if stored is None else tuple(stored)
        changed = state != (stored[REFRESH_COLUMNS.index("state")] if stored else job.state)
        job.state, job.detail = state, detail
        values = dict(zip(_COLUMNS, _to_row(job), strict=True))
        if stored is None or stored != tuple(values[c] for c in REFRESH_COLUMNS):
            # Unchanged rows are not rewritten: a poll of 10,000 pending jobs writes none.
            self.save(job, REFRESH_COLUMNS)
        if changed:
            self._record_transition(job.name, state, detail, at)
        return changed

    def reload_user_fields(self, jobs: Iterable[JobRecord]) -> None:
        """Bring in ``user_stop``/``hidden`` that another process (``stop``, ``down``) set."""
        by_name = {job.name: job for job in jobs}
        if not by_name:
            return
        marks = ",".join("?" for _ in by_name)
        query = f"SELECT name, user_stop, hidden FROM jobs WHERE name IN ({marks})"
        for name, user_stop, hidden in self._rows(query, tuple(by_name)):
            if name in by_name:
                by_name[name].user_stop = _user_stop(user_stop)
                by_name[name].hidden = hidden == 1

    def reload(self, jobs: Iterable[JobRecord]) -> None:
        """Bring every field of ``jobs`` up to what the store holds now (another process's
        refresh), in place: callers keep their references."""
        by_name = {job.name: job for job in jobs}
        if not by_name:
            return
        marks = ",".join("?" for _ in by_name)
        rows = self._rows(f"{_SELECT_JOBS} WHERE name IN ({marks})", tuple(by_name))
        for fresh in self._decode_jobs(rows):
            if fresh.name in by_name:
                by_name[fresh.name].__dict__.update(fresh.__dict__)

    def unfinished_jobs(self) -> list[JobRecord]:
        """The jobs a refresh asks Slurm about: submitted and not known to be finished."""
        return self._decode_jobs(
            self._rows(f"{_SELECT_JOBS} WHERE {_OPEN} AND slurm_job_id IS NOT NULL")
        )

    def claim_poll(self, key: str, max_age: float, now: float) -> tuple[bool, str | None]:
        """Whether the caller should ask Slurm now: True (and the claim is recorded) unless
        another process did within ``max_age`` seconds; then (False, the error that poll met,
        or None). Atomic, so concurrent waiters of one store make one poll per interval."""
        with self.transaction():
            last: dict = {}
            with contextlib.suppress(ValueError, TypeError, RecursionError):
                decoded = json.loads(self.get_meta(key) or "{}")
                last = decoded if isinstance(decoded, dict) else {}
            at = last.get("at")
            # A claim from the future (the clock went back) is not trusted.
            if _is_number(at) and 0 <= now - at < max_age:
                error = last.get("error")
                return False, error if isinstance(error, str) else None
            self.set_meta(key, json.dumps({"at": now, "error": None}))
            return True, None

    def record_poll_error(self, key: str, at: float, error: str) -> None:
        """What the claimed poll met, for the waiters that share it."""
        self.set_meta(key, json.dumps({"at": at, "error": error}))

    def prune_candidates(
        self, cutoff: float, units: int | None = None
    ) -> tuple[list[PruneCandidate], int]:
        """Finished jobs whose snapshot may be pruned: not pruned yet, ended (by end_time,
        else their last transition) before ``cutoff``, oldest first; and how many units they
        make (a job, or a sweep: its variants share one snapshot and come only once every
        variant of the sweep qualifies). ``units``: only the candidates of that many units,
        every variant of a chosen sweep included (a bounded prune need not build 100,000
        records to use 100): the oldest, but units holding their task's newest job last, as
        ``service.prune.latest_last`` orders them (their snapshot is the one kept).

        Counted and picked from indexes (migration 5): a bounded prune of a store with 90,000
        candidates reads a page of them, not every row. A row whose ``extra`` is not JSON
        counts as a job of its own, not pruned.
        """
        with self._snapshot():  # the count and the pages agree, whatever others write
            plain = self._rows(_PLAIN_COUNT, (cutoff,))[0][0]
            others: dict[tuple[str, object], list[sqlite3.Row]] = {}  # ordered: first row first
            for row in self._rows(_OTHER_CANDIDATES, (cutoff,)):
                others.setdefault(_unit_key(row["name"], row["sweep"]), []).append(row)
            total = plain + len(others)
            if units is None or total <= units:
                rows = self._rows(_PLAIN_ROWS, (cutoff,))
                rows += [row for unit in others.values() for row in unit]
            else:
                rows = self._first_units(cutoff, units, list(others.values()))
        rows.sort(key=_row_order)
        found = [
            PruneCandidate(
                name=row["name"],
                task_name=row["task_name"],
                job_dir=row["job_dir"],
                ended=float(row["ended"]),
                sweep=row["sweep"],
            )
            for row in rows
            if _is_text(row["name"])
            and _is_text(row["task_name"])
            and _is_text(row["job_dir"])
            and _is_number(row["ended"])
            and (row["sweep"] is None or _is_text(row["sweep"]))
        ]
        return found, total

    def _first_units(
        self, cutoff: float, units: int, others: list[list[sqlite3.Row]]
    ) -> list[sqlite3.Row]:
        """The rows of the first ``units`` units, oldest first but those holding their task's
        newest job last: the plain candidates (a job each) read a page at a time in the
        index's order, merged with ``others`` (units, each its rows, oldest first)."""
        if units <= 0:
            return []
        tasks = {row["task_name"] for unit in others for row in unit}
        newest = self.newest_of_tasks(task for task in tasks if _is_text(task))
        free: list[list[sqlite3.Row]] = []  # in order, until there are ``units``
        holding: list[list[sqlite3.Row]] = []  # in order: taken only if too few are free

        def take(unit: list[sqlite3.Row]) -> bool:
            """Place ``unit``; True once there are enough free ones."""
            holds = any(newest.get(row["task_name"]) == row["name"] for row in unit)
            (holding if holds else free).append(unit)
            return len(free) >= units

        pending = iter(others)
        other = next(pending, None)
        page, offset = units + _PAGE_SLACK, 0
        while True:
            rows = self._rows(f"{_PLAIN_ROWS} LIMIT ?2 OFFSET ?3", (cutoff, page, offset))
            offset += len(rows)
            fresh = {row["task_name"] for row in rows} - newest.keys()
            newest.update(self.newest_of_tasks(task for task in fresh if _is_text(task)))
            for row in rows:
                while other is not None and _row_order(other[0]) < _row_order(row):
                    if take(other):
                        return [row for unit in free for row in unit]
                    other = next(pending, None)
                if take([row]):
                    return [row for unit in free for row in unit]
            if len(rows) < page:
                break
        while other is not None:
            if take(other):
                return [row for unit in free for row in unit]
            other = next(pending, None)
        chosen = free + holding[: units - len(free)]
        return [row for unit in chosen for row in unit]

    def newest_of_tasks(self, task_names: Iterable[str]) -> dict[str, str]:
        """The newest job (by creation; of two created at once, the last by name) of each of
        ``task_names``, finished or not: one look into the index jobs_by_task per task, not
        every job of the task."""
        wanted = sorted(set(task_names))
        newest: dict[str, str] = {}
        for start in range(0, len(wanted), _MARKS_PER_STATEMENT):
            chunk = wanted[start : start + _MARKS_PER_STATEMENT]
            for task, name in self._rows(
                "SELECT value, (SELECT name FROM jobs WHERE task_name = value "
                "ORDER BY created_at DESC, name DESC LIMIT 1) FROM json_each(?)",
                (json.dumps(chunk),),
            ):
                if _is_text(task) and _is_text(name):
                    newest[task] = name
        return newest

    def mark_pruned(self, names: Iterable[str], at: float) -> None:
        """Record in each job's ``extra`` that its snapshot was removed at ``at`` (only that
        key is written: a concurrent `down` or refresh loses nothing)."""
        wanted = list(names)
        with self.transaction():
            for start in range(0, len(wanted), _MARKS_PER_STATEMENT):
                chunk = wanted[start : start + _MARKS_PER_STATEMENT]
                marks = ",".join("?" for _ in chunk)
                self._execute(
                    "UPDATE jobs SET extra=json_set(extra, '$.pruned_at', ?) "
                    f"WHERE json_valid(extra) AND name IN ({marks})",
                    (at, *chunk),
                )

    def _record_transition(self, name: str, state: str, detail: str, at: float) -> None:
        # Due (notified = 0) only for a job with an event_callback: the partial index of
        # due changes stays as small as the callbacks not yet run.
        self._execute(
            "INSERT INTO transitions (job_name, state, detail, at, notified) VALUES "
            "(?, ?, ?, ?, COALESCE((SELECT event_callback IS NULL OR event_callback = '' "
            "FROM jobs WHERE name = ?), 1))",
            (name, state, detail, at, name),
        )

    def claim_due_events(self, names: Iterable[str] | None = None) -> list[DueEvent]:
        """The state changes whose event_callback has not run (of the jobs ``names``, or of
        every job), in order, now marked as this process's to run.

        One write transaction reads and marks them, so two processes (a ``logs --follow``
        and a ``report`` at the same moment) never claim the same change: each change's
        callback runs once.
        """
        wanted = None if names is None else list(names)
        if wanted == []:
            return []
        where = "t.notified = 0"
        params: list[Any] = []
        if wanted is not None:
            where += f" AND t.job_name IN ({','.join('?' for _ in wanted)})"
            params = wanted
        query = (
            "SELECT t.id, t.job_name, t.state, t.detail, t.at, j.event_callback, "
            "(SELECT p.state FROM transitions p WHERE p.job_name = t.job_name AND p.id < t.id "
            "ORDER BY p.id DESC LIMIT 1) AS old_state "
            f"FROM transitions t JOIN jobs j ON j.name = t.job_name WHERE {where} ORDER BY t.id"
        )
        with self.transaction():
            rows = self._rows(query, params)
            if rows:
                ids = [row["id"] for row in rows]
                marks = ",".join("?" for _ in ids)
                self._execute(f"UPDATE transitions SET notified = 1 WHERE id IN ({marks})", ids)
        events = []
        for row in rows:
            command, state, at = row["event_callback"], row["state"], row["at"]
            if not (_is_text(command) and command and _is_text(state) and _is_number(at)):
                continue  # a damaged row: its callback cannot run as it was meant
            old = row["old_state"]
            detail = row["detail"]
            events.append(
                DueEvent(
                    id=row["id"],
                    job_name=row["job_name"],
                    old_state=old if _is_text(old) else "",
                    state=state,
                    detail=detail if _is_text(detail) else "",
                    at=float(at),
                    command=command,
                )
            )
        return events

    def get(self, name: str) -> JobRecord | None:
        jobs = self._decode_jobs(self._rows(f"{_SELECT_JOBS} WHERE name=?", (name,)))
        return jobs[0] if jobs else None

    def get_by_slurm_id(self, job_id: str) -> JobRecord | None:
        """The job Slurm knows as ``job_id`` (the newest, if a reinstalled cluster reused it)."""
        rows = self._rows(
            f"{_SELECT_JOBS} WHERE slurm_job_id=? ORDER BY created_at DESC LIMIT 1", (job_id,)
        )
        jobs = self._decode_jobs(rows)
        return jobs[0] if jobs else None

    def jobs(self, include_hidden: bool = False) -> list[JobRecord]:
        query = _SELECT_JOBS
        if not include_hidden:
            query += " WHERE hidden IS NOT 1"
        query += " ORDER BY created_at DESC"
        return self._decode_jobs(self._rows(query))

    # ---- what a report reads: its window's share of a store that may hold years of jobs

    def open_jobs(self) -> list[JobRecord]:
        """Every job not known to be finished, submitted or not, hidden ones too; newest
        first. (A damaged ``terminal`` reads as not finished, as ``jobs`` reads it.)"""
        return self._decode_jobs(
            self._rows(f"{_SELECT_JOBS} WHERE {_OPEN} ORDER BY created_at DESC")
        )

    def jobs_named(self, names: Iterable[str]) -> list[JobRecord]:
        """The jobs called ``names`` (hidden ones too), newest first."""
        rows = self._rows_in(_SELECT_JOBS, "name", names, newest_first=True)
        return self._decode_jobs(rows)

    def jobs_with_slurm_ids(self, job_ids: Iterable[str]) -> list[JobRecord]:
        """The jobs Slurm knows as ``job_ids`` (hidden ones too), newest first."""
        rows = self._rows_in(_SELECT_JOBS, "slurm_job_id", job_ids, newest_first=True)
        return self._decode_jobs(rows)

    def known_slurm_ids(self, job_ids: Iterable[str]) -> set[str]:
        """Which of ``job_ids`` are jobs of this store."""
        rows = self._rows_in("SELECT slurm_job_id FROM jobs", "slurm_job_id", job_ids)
        return {row[0] for row in rows if _is_text(row[0])}

    def slurm_ids_ending_since(self, since: float) -> list[str]:
        """The Slurm ids of the jobs that may have a run ending after ``since``: those still
        going (no end time) and those that ended after it."""
        rows = self._rows(
            "SELECT slurm_job_id FROM jobs WHERE slurm_job_id IS NOT NULL "
            "AND (end_time IS NULL OR end_time >= ?)",
            (since,),
        )
        return [row[0] for row in rows if _is_text(row[0]) and row[0]]

    def first_created_at(self) -> float | None:
        """When the oldest job was created (None for an empty store)."""
        rows = self._rows(
            "SELECT min(created_at) FROM jobs WHERE typeof(created_at) IN ('integer', 'real')"
        )
        value = rows[0][0] if rows else None
        return float(value) if _is_number(value) else None

    def state_counts(self) -> dict[str, int]:
        """How many jobs (not taken down) are in each state, counted from an index, read as
        ``jobs()`` reads them: a state that is no lifecycle state counts as PENDING for a job
        that reached Slurm and as FAILED for one that did not (rows too damaged to have a
        name are counted too; ``konduktor store check`` names them)."""
        known = {state.value for state in State}
        counts: dict[str, int] = {}
        rows = self._rows("SELECT state, hidden, count(*) FROM jobs GROUP BY state, hidden")
        for state, hidden, count in rows:
            if isinstance(hidden, int) and hidden == 1:
                continue
            if state in known:
                counts[state] = counts.get(state, 0) + count
                continue
            for submitted, count_of in self._rows(
                "SELECT (typeof(slurm_job_id) = 'text' AND slurm_job_id != '') "
                "OR typeof(slurm_job_id) = 'integer', count(*) FROM jobs "
                "WHERE state IS ? AND hidden IS ? GROUP BY 1",
                (state, hidden),
            ):
                shown = State.PENDING.value if submitted else State.FAILED.value
                counts[shown] = counts.get(shown, 0) + count_of
        return counts

    def _rows_in(
        self, select: str, column: str, values: Iterable[str], newest_first: bool = False
    ) -> list[tuple]:
        """``select WHERE column IN (values)`` as tuples, in one query however many values:
        they go as one JSON array (SQLite caps the parameters of a statement, 999 on older
        builds), and SQLite sorts them (a report names 8,000 jobs: 17 chunked queries and a
        sort in Python cost twice as much)."""
        wanted = list(dict.fromkeys(values))
        if not wanted:
            return []
        order = " ORDER BY created_at DESC" if newest_first else ""
        return self._tuples(
            f"{select} WHERE {column} IN (SELECT value FROM json_each(?)){order}",
            (json.dumps(wanted),),
        )

    def last_user(self) -> str | None:
        """The account of the newest job: over SSH, the remote user, known without connecting."""
        rows = self._rows(
            "SELECT user FROM jobs WHERE typeof(user)='text' ORDER BY created_at DESC LIMIT 1"
        )
        return rows[0][0] if rows and _is_text(rows[0][0]) and rows[0][0] else None

    def names(self) -> list[str]:
        return [row[0] for row in self._rows("SELECT name FROM jobs") if _is_text(row[0])]

    def _transitions(self, rows: list[tuple]) -> list[Transition]:
        decoded = [_decode_transition(row) for row in rows]
        skipped = decoded.count(None)
        if skipped:
            self._report_damage({"history": [f"{skipped} unreadable transition(s) skipped"]})
        return [t for t in decoded if t is not None]

    def transitions(
        self, names: Iterable[str] | None = None, until: float | None = None
    ) -> list[Transition]:
        """Every transition, or those of the jobs ``names``, oldest first (as recorded, for
        one time); ``until``: only those at that time or before."""
        where = []
        params: list[Any] = []
        if names is not None:
            wanted = list(dict.fromkeys(names))
            if not wanted:
                return []
            where.append("job_name IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(wanted))
        if until is not None:
            where.append("at <= ?")
            params.append(until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._transitions(
            self._tuples(f"{_SELECT_TRANSITIONS}{clause} ORDER BY at, id", params)
        )

    def transitions_since(self, since: float) -> list[Transition]:
        """The transitions recorded at a time after ``since``, oldest first."""
        return self._transitions(
            self._tuples(f"{_SELECT_TRANSITIONS} WHERE at > ? ORDER BY at, id", (since,))
        )

    def transitions_after(self, last_id: int) -> tuple[list[Transition], int]:
        """Transitions recorded after id ``last_id`` (a report's cursor), and the newest id.

        Ids, not times: two transitions may share a timestamp, and clocks move; an id is
        reported once and only once.
        """
        rows = self._tuples(f"{_SELECT_TRANSITIONS} WHERE id > ? ORDER BY id", (last_id,))
        newest = rows[-1][4] if rows else last_id
        return self._transitions(rows), newest

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows and _is_text(rows[0][0]) else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # ---- `konduktor store check`

    def version(self) -> int:
        return self._rows("PRAGMA user_version")[0][0]

    def summary(self) -> StoreSummary:
        """PRAGMA integrity_check (every page, index and constraint) and what the store holds."""
        integrity = tuple(str(row[0]) for row in self._rows("PRAGMA integrity_check"))
        self.damage.clear()
        all_jobs = self.jobs(include_hidden=True)
        self.transitions()
        by_state: dict[str, int] = {}
        for job in all_jobs:
            by_state[str(job.state)] = by_state.get(str(job.state), 0) + 1
        count = self._rows("SELECT count(*) FROM transitions")[0][0]
        return StoreSummary(
            path=self.path,
            size=os.stat(self.path).st_size,
            version=self.version(),
            integrity=integrity,
            jobs_by_state=by_state,
            hidden=sum(1 for job in all_jobs if job.hidden),
            transitions=count,
            damage=dict(self.damage),
        )
