"""Versioned stores: a store written by the first release opens in this one with every job,
state change and report cursor intact; an upgrade is one transaction; a newer store is
refused untouched; stores are created whole, even by several processes at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from konduktor_slurm import store as store_module
from konduktor_slurm.lifecycle import State, UserStop
from konduktor_slurm.service.errors import KonduktorError
from konduktor_slurm.store import (
    APPLICATION_ID,
    EXIT_STORE,
    EXIT_STORE_LOCKED,
    MIGRATIONS,
    SCHEMA_VERSION,
    JobRecord,
    Migration,
    Store,
    StoreError,
    StoreLockedError,
    StoreTooNewError,
)
from tests.conftest import KONDUKTOR

# The first release's schema, verbatim from konduktor_slurm/store.py at commit 17a4669
# (`git show 17a4669:konduktor_slurm/store.py`); it opened stores with this `__init__`.
FIRST_RELEASE_SCHEMA = """
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

# Rows as the first release's _to_row wrote them: user_stop and extra as json.dumps of dicts,
# terminal and hidden as ints.
FIRST_RELEASE_JOBS = [
    {
        "name": "train-llm-1a2b",
        "task_name": "train-llm",
        "user": "alice",
        "slurm_job_id": "101",
        "resources": "2x(8CPU, 32GiMEM, H100:8)",
        "num_nodes": 2,
        "gpus_per_node": 8,
        "job_dir": "/home/alice/.konduktor/jobs/train-llm-1a2b",
        "log_path": "/home/alice/.konduktor/jobs/train-llm-1a2b/job.log",
        "max_restarts": 2,
        "created_at": 1_764_000_000.0,
        "submitted_at": 1_764_000_003.0,
        "start_time": 1_764_000_010.0,
        "end_time": 1_764_003_610.0,
        "state": "FAILED",
        "detail": "rank 1 exited 3",
        "terminal": 1,
        "hidden": 0,
        "user_stop": None,
        "extra": json.dumps(
            {
                "slurm_state": "FAILED",
                "exit_code": "3:0",
                "node_list": "node[1-2]",
                "rank_exit_codes": {"0": 0, "1": 3},
                "restarts": 0,
                "attempt": [3, 3],
            }
        ),
    },
    {
        "name": "sweep-9f00",
        "task_name": "sweep",
        "user": "alice",
        "slurm_job_id": "102",
        "resources": "1x(H100:1)",
        "num_nodes": 1,
        "gpus_per_node": 1,
        "job_dir": "/home/alice/.konduktor/jobs/sweep-9f00",
        "log_path": "/home/alice/.konduktor/jobs/sweep-9f00/job.log",
        "max_restarts": 0,
        "created_at": 1_764_000_100.0,
        "submitted_at": 1_764_000_101.0,
        "start_time": None,
        "end_time": None,
        "state": "SUSPENDED (by user)",
        "detail": "stopped by alice",
        "terminal": 0,
        "hidden": 1,
        "user_stop": json.dumps({"user": "alice", "at": 1_764_000_200.0, "mode": "hold"}),
        "extra": "{}",
    },
]
FIRST_RELEASE_TRANSITIONS = [
    ("train-llm-1a2b", "CREATED", "staging workdir", 1_764_000_000.0),
    ("train-llm-1a2b", "PENDING", "submitted", 1_764_000_003.0),
    ("train-llm-1a2b", "ACTIVE", "running on node[1-2]", 1_764_000_010.0),
    ("train-llm-1a2b", "FAILED", "rank 1 exited 3", 1_764_003_610.0),
    ("sweep-9f00", "CREATED", "staging workdir", 1_764_000_100.0),
    ("sweep-9f00", "PENDING", "submitted", 1_764_000_101.0),
    ("sweep-9f00", "SUSPENDED (by user)", "stopped by alice", 1_764_000_200.0),
]


def first_release_store(path: Path) -> None:
    """A store as the first release made and filled it (user_version 0, no stamp)."""
    db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.executescript(FIRST_RELEASE_SCHEMA)
    for row in FIRST_RELEASE_JOBS:
        columns = ",".join(row)
        db.execute(
            f"INSERT INTO jobs ({columns}) VALUES ({','.join('?' for _ in row)})",
            tuple(row.values()),
        )
    db.executemany(
        "INSERT INTO transitions (job_name, state, detail, at) VALUES (?,?,?,?)",
        FIRST_RELEASE_TRANSITIONS,
    )
    db.execute("INSERT INTO meta (key, value) VALUES ('report_cursor_id', '7')")
    db.close()


def header(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        return (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        db.close()


def indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        db.close()


def test_a_first_release_store_opens_with_every_job_and_change(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first_release_store(path)
    assert header(path) == (0, 0)

    warnings: list[str] = []
    store = Store(path, notify=warnings.append)
    jobs = {job.name: job for job in store.jobs(include_hidden=True)}
    assert set(jobs) == {"train-llm-1a2b", "sweep-9f00"}
    failed, stopped = jobs["train-llm-1a2b"], jobs["sweep-9f00"]
    assert failed == JobRecord(
        name="train-llm-1a2b",
        task_name="train-llm",
        user="alice",
        resources="2x(8CPU, 32GiMEM, H100:8)",
        num_nodes=2,
        job_dir="/home/alice/.konduktor/jobs/train-llm-1a2b",
        log_path="/home/alice/.konduktor/jobs/train-llm-1a2b/job.log",
        state=State.FAILED,
        created_at=1_764_000_000.0,
        gpus_per_node=8,
        max_restarts=2,
        slurm_job_id="101",
        submitted_at=1_764_000_003.0,
        start_time=1_764_000_010.0,
        end_time=1_764_003_610.0,
        detail="rank 1 exited 3",
        terminal=True,
        hidden=False,
        user_stop=None,
        extra=json.loads(FIRST_RELEASE_JOBS[0]["extra"]),
    )
    assert stopped.state is State.SUSPENDED_USER and stopped.hidden and not stopped.terminal
    assert stopped.user_stop == UserStop("alice", 1_764_000_200.0, "hold")
    assert [job.name for job in store.jobs()] == ["train-llm-1a2b"]  # the hidden one is hidden
    history = store.transitions()
    assert [(t.job_name, t.state, t.detail, t.at) for t in history] == sorted(
        FIRST_RELEASE_TRANSITIONS, key=lambda t: t[3]
    )
    assert store.get_meta("report_cursor_id") == "7"
    assert store.transitions_after(5)[1] == 7
    assert store.get_by_slurm_id("102") == stopped
    assert warnings == []
    store.close()

    # Upgraded in place: stamped, at the current version, with every step's index.
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert {"jobs_by_created", "transitions_by_job", "jobs_by_slurm_id"} <= indexes(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()

    # And the real commands show them, with nothing to warn about (the finished job alone:
    # status would ask Slurm about the stopped one).
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path)}
    env.pop("KONDUKTOR_CONFIG", None)
    shown = subprocess.run(
        [KONDUKTOR, "status", "--json", "train-llm-1a2b"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and shown.stderr == "", shown
    (listed,) = json.loads(shown.stdout)["jobs"]
    assert (listed["status"], listed["rank_exit_codes"]) == ("FAILED", {"0": 0, "1": 3})
    assert [t["status"] for t in listed["history"]] == ["CREATED", "PENDING", "ACTIVE", "FAILED"]
    check = subprocess.run([KONDUKTOR, "store", "check"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check
    assert "Jobs:       2: 1 FAILED, 1 SUSPENDED (by user) (1 removed with `down`)" in check.stdout
    assert f"store version {SCHEMA_VERSION}" in check.stdout and "Integrity:  ok" in check.stdout


def test_a_store_at_each_older_version_is_brought_up_to_date(tmp_path: Path) -> None:
    for version in range(SCHEMA_VERSION):
        path = tmp_path / f"v{version}.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN")
        for migration in MIGRATIONS:
            if migration.version <= version:
                for statement in migration.statements:
                    db.execute(statement)
        if version:
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={version}")
        db.execute("COMMIT")
        db.close()
        Store(path).close()
        assert header(path) == (APPLICATION_ID, SCHEMA_VERSION), version
        assert "jobs_by_slurm_id" in indexes(path)


def test_a_version_4_store_gains_the_prune_indexes_over_the_rows_it_holds(
    tmp_path: Path,
) -> None:
    """Step 5 indexes the rows already there: finished unpruned plain jobs in jobs_prunable,
    unpruned sweep variants in jobs_unpruned_sweeps, and the prune reads them from there."""
    path = tmp_path / "state.db"
    first_release_store(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for migration in MIGRATIONS[:4]:
        for statement in migration.statements:
            db.execute(statement)
    rows = {
        "done-1": (1, 100.0, "{}"),
        "pruned-1": (1, 100.0, '{"pruned_at": 150.0}'),
        "running-1": (0, None, "{}"),
        "sw-0": (1, 100.0, '{"sweep": "sw", "grid": {"S": "0"}}'),
        "sw-1": (0, None, '{"sweep": "sw", "grid": {"S": "1"}}'),
    }
    for name, (terminal, end, extra) in rows.items():
        db.execute(
            "INSERT INTO jobs (name, task_name, user, resources, num_nodes, job_dir, log_path, "
            "created_at, end_time, state, terminal, extra) "
            "VALUES (?, 't', 'u', '-', 1, ?, '/l', 1.0, ?, 'COMPLETED', ?, ?)",
            (name, f"/jobs/{name}", end, terminal, extra),
        )
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute("PRAGMA user_version=4")
    db.execute("COMMIT")
    db.close()

    store = Store(path)
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert {"jobs_prunable", "jobs_unpruned_sweeps", "jobs_by_task"} <= indexes(path)

    def indexed(index: str) -> list[str]:
        query = f"SELECT name FROM jobs INDEXED BY {index} WHERE {where[index]} ORDER BY name"
        return [row[0] for row in store._db.execute(query)]

    unpruned = "typeof(extra) = 'text' AND instr(extra, '\"pruned_at\"') = 0"
    where = {
        "jobs_prunable": f"terminal = 1 AND {unpruned} AND instr(extra, '\"sweep\"') = 0",
        "jobs_unpruned_sweeps": f"{unpruned} AND instr(extra, '\"sweep\"') > 0",
    }
    assert indexed("jobs_prunable") == ["done-1", "train-llm-1a2b"]
    assert indexed("jobs_unpruned_sweeps") == ["sw-0", "sw-1"]
    # The sweep waits for sw-1; the first release's failed job ended after the cutoff.
    # Of jobs created at once, the last by name is the newest.
    found, units = store.prune_candidates(200.0)
    assert ([c.name for c in found], units) == (["done-1"], 1)
    assert store.newest_of_tasks(["t", "train-llm"]) == {"t": "sw-1", "train-llm": "train-llm-1a2b"}
    store.close()


def test_an_upgrade_that_fails_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    first_release_store(path)
    broken = Migration(
        SCHEMA_VERSION + 1,
        "a step that fails half way",
        ("CREATE INDEX half_way ON jobs (task_name)", "CREATE TABLE broken ("),
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", broken.version)
    with pytest.raises(StoreError) as raised:
        Store(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    # One transaction: not the earlier steps, not half of the failing one.
    assert header(path) == (0, 0)
    assert indexes(path) == {"jobs_by_created", "transitions_by_job"} | {
        name for name in indexes(path) if name.startswith("sqlite_autoindex")
    }
    monkeypatch.undo()
    assert len(Store(path).jobs(include_hidden=True)) == 2


def test_a_newer_store_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    db.execute("PRAGMA journal_mode=DELETE")  # a newer konduktor may have chosen otherwise
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreTooNewError) as raised:
        Store(path)
    assert f"store version {SCHEMA_VERSION + 3}" in str(raised.value)
    assert f"this one knows up to {SCHEMA_VERSION}" in str(raised.value)
    assert path.read_bytes() == before  # not even switched to WAL


def _open_store(path: str) -> int:
    store = Store(Path(path))
    count = len(store.jobs())
    store.close()
    return count


def test_several_processes_creating_the_store_at_once_make_one(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.db"
    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        assert pool.map(_open_store, [str(path)] * 8) == [0] * 8
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.db"]  # no temporary left
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_an_empty_sqlite_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("VACUUM")  # a valid SQLite file with no tables: nothing in it to lose
    db.close()
    assert path.stat().st_size > 0
    Store(path).close()
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_migrations_are_numbered_one_after_another() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert all(m.why and m.statements for m in MIGRATIONS)


def test_store_errors_are_workflow_errors_with_their_own_exit_codes() -> None:
    assert issubclass(StoreError, KonduktorError)
    assert StoreError("x").exit_code == EXIT_STORE == 6
    assert StoreLockedError("x").exit_code == EXIT_STORE_LOCKED == 7
    # Distinct from every other documented code (README "Exit codes").
    from konduktor_slurm.service import errors

    codes = [value for name, value in vars(errors).items() if name.startswith("EXIT_")]
    assert len(codes) == len(set(codes)) and {EXIT_STORE, EXIT_STORE_LOCKED} <= set(codes)
