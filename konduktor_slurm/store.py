"""The local job store: SQLite under ``$KONDUKTOR_HOME`` (default ``~/.konduktor``).

It remembers what Slurm forgets (the task, resources, the konduktor name, who stopped a job)
and what Slurm would make us ask again (terminal states are never queried twice). Every
state change is kept as a transition with a timestamp, for ``status JOB`` and reports.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from konduktor_slurm.lifecycle import State, UserStop

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
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
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name TEXT NOT NULL REFERENCES jobs (name),
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_job ON transitions (job_name, at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class JobRecord:
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


@dataclass(frozen=True)
class Transition:
    job_name: str
    state: str
    detail: str
    at: float


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
)


# What a refresh from Slurm writes; user_stop and hidden belong to stop/start/down.
REFRESH_COLUMNS = ("start_time", "end_time", "state", "detail", "terminal", "extra")


def _to_row(job: JobRecord) -> tuple:
    values = []
    for column in _COLUMNS:
        value = getattr(job, column)
        if column == "user_stop":
            value = None if value is None else json.dumps(value.to_json())
        elif column == "extra":
            value = json.dumps(value)
        elif column in ("terminal", "hidden"):
            value = int(value)
        values.append(value)
    return tuple(values)


def _from_row(row: sqlite3.Row) -> JobRecord:
    data = {column: row[column] for column in _COLUMNS}
    data["terminal"] = bool(data["terminal"])
    data["hidden"] = bool(data["hidden"])
    data["user_stop"] = _user_stop(data["user_stop"])
    data["state"] = State(data["state"])
    data["extra"] = json.loads(data["extra"] or "{}")
    return JobRecord(**data)


def _user_stop(text: str | None) -> UserStop | None:
    return UserStop.from_json(json.loads(text)) if text else None


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A status from cron and one from a person may overlap: wait for the lock, briefly.
        self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested uses join the outer one (a refresh of 200 jobs is one
        commit, not 200)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, job: JobRecord) -> None:
        placeholders = ",".join("?" for _ in _COLUMNS)
        with self.transaction():
            self._db.execute(
                f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({placeholders})", _to_row(job)
            )
            self._record_transition(job.name, job.state, job.detail, job.created_at)

    def remove(self, name: str) -> None:
        """Forget a job that never reached Slurm (a name given back at launch)."""
        with self.transaction():
            self._db.execute("DELETE FROM transitions WHERE job_name=?", (name,))
            self._db.execute("DELETE FROM jobs WHERE name=?", (name,))

    def save(self, job: JobRecord, columns: Iterable[str] = _COLUMNS[1:]) -> None:
        """Write ``columns`` of ``job`` (default: every field); ``set_state`` for states."""
        wanted = tuple(columns)
        values = dict(zip(_COLUMNS, _to_row(job), strict=True))
        assignments = ",".join(f"{column}=?" for column in wanted)
        self._db.execute(
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
            row = self._db.execute("SELECT state FROM jobs WHERE name=?", (job.name,)).fetchone()
            changed = state != (row[0] if row else job.state)
            job.state, job.detail = state, detail
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
        for name, user_stop, hidden in self._db.execute(query, tuple(by_name)):
            by_name[name].user_stop = _user_stop(user_stop)
            by_name[name].hidden = bool(hidden)

    def _record_transition(self, name: str, state: str, detail: str, at: float) -> None:
        self._db.execute(
            "INSERT INTO transitions (job_name, state, detail, at) VALUES (?,?,?,?)",
            (name, state, detail, at),
        )

    def get(self, name: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
        return _from_row(row) if row else None

    def jobs(self, include_hidden: bool = False) -> list[JobRecord]:
        query = "SELECT * FROM jobs"
        if not include_hidden:
            query += " WHERE hidden=0"
        query += " ORDER BY created_at DESC"
        return [_from_row(row) for row in self._db.execute(query)]

    def last_user(self) -> str | None:
        """The account of the newest job: over SSH, the remote user, known without connecting."""
        row = self._db.execute("SELECT user FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM jobs")]

    def transitions(self, names: Iterable[str] | None = None) -> list[Transition]:
        if names is None:
            rows = self._db.execute("SELECT * FROM transitions ORDER BY at, id")
        else:
            wanted = list(names)
            marks = ",".join("?" for _ in wanted)
            rows = self._db.execute(
                f"SELECT * FROM transitions WHERE job_name IN ({marks}) ORDER BY at, id", wanted
            )
        return [Transition(r["job_name"], r["state"], r["detail"], r["at"]) for r in rows]

    def transitions_after(self, last_id: int) -> tuple[list[Transition], int]:
        """Transitions recorded after id ``last_id`` (a report's cursor), and the newest id.

        Ids, not times: two transitions may share a timestamp, and clocks move; an id is
        reported once and only once.
        """
        rows = self._db.execute(
            "SELECT * FROM transitions WHERE id > ? ORDER BY id", (last_id,)
        ).fetchall()
        newest = rows[-1]["id"] if rows else last_id
        return [Transition(r["job_name"], r["state"], r["detail"], r["at"]) for r in rows], newest

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )
