"""A damaged, foreign, newer, unreadable, read-only or locked job store, as `konduktor status`
meets it: one line naming the file and what to do, a documented exit code, never a traceback.
A damaged value in one row is read around: the other jobs are shown, with one warning line.

Each case builds a real store with the Store API, damages it the way it happens (garbage,
truncation, another program's database, chmod, a second process holding a lock) and runs the
real `konduktor` command. No Slurm is needed: every job in these stores has ended, so status
asks Slurm nothing. Permission cases run as the ordinary user kdtest (root reads anything).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from konduktor_slurm.lifecycle import State, UserStop
from konduktor_slurm.store import (
    APPLICATION_ID,
    EXIT_STORE,
    EXIT_STORE_LOCKED,
    SCHEMA_VERSION,
    JobRecord,
    Store,
    StoreUnreadableError,
    store_error,
)
from tests.conftest import KONDUKTOR, TEST_USER

STORE = "state.db"


def job(name: str, state: State = State.COMPLETED, **fields) -> JobRecord:
    values = {
        "task_name": name.rsplit("-", 1)[0],
        "user": "alice",
        "resources": "1x(H100:8)",
        "num_nodes": 1,
        "job_dir": f"/jobs/{name}",
        "log_path": f"/jobs/{name}/job.log",
        "created_at": 1_764_000_000.0,
        "slurm_job_id": "4242",
        "submitted_at": 1_764_000_000.0,
        "start_time": 1_764_000_010.0,
        "end_time": 1_764_000_070.0,
        "terminal": state.terminal,
        "extra": {"exit_code": "0:0", "rank_exit_codes": {"0": 0}, "restarts": 0},
    }
    values.update(fields)
    return JobRecord(name=name, state=state, **values)


def sound_store(home: Path, count: int = 2) -> Path:
    """A store with ``count`` finished jobs (status asks Slurm nothing about them)."""
    path = home / STORE
    store = Store(path)
    for index in range(count):
        state = State.FAILED if index % 2 else State.COMPLETED
        store.add(job(f"train-{index:04x}", state, slurm_job_id=str(1000 + index)))
    store.close()
    return path


def sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        db.execute(statement)
    db.close()


def foreign_db(path: Path, *statements: str) -> None:
    path.unlink(missing_ok=True)
    sql(path, *statements)


def konduktor_style_table(nullable: bool) -> str:
    """konduktor's jobs columns; ``nullable`` leaves out every NOT NULL (a foreign schema)."""
    not_null = "" if nullable else " NOT NULL"
    return (
        f"CREATE TABLE jobs (name TEXT PRIMARY KEY, task_name TEXT{not_null}, user TEXT{not_null},"
        f" slurm_job_id TEXT, resources TEXT{not_null}, num_nodes INTEGER{not_null},"
        f" gpus_per_node INTEGER, job_dir TEXT{not_null}, log_path TEXT{not_null},"
        f" max_restarts INTEGER, created_at REAL{not_null}, submitted_at REAL, start_time REAL,"
        f" end_time REAL, state TEXT{not_null}, detail TEXT, terminal INTEGER, hidden INTEGER,"
        " user_stop TEXT, extra TEXT, checkpoint TEXT, event_callback TEXT)"
    )


KONDUKTOR_SIDE_TABLES = (
    "CREATE TABLE transitions (id INTEGER PRIMARY KEY AUTOINCREMENT, job_name TEXT, "
    "state TEXT, detail TEXT, at REAL, notified INTEGER)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
)


# ---- running konduktor ---------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


# No config.yaml: read from beside KONDUKTOR_HOME, not in it, so that an unreadable home is
# met by the store (config.py reads <home>/config.yaml first and has its own errors).
NO_CONFIG = "/nonexistent/konduktor-store-tests/config.yaml"


def konduktor(home: Path, *args: str, as_user: bool = False, timeout: float = 60) -> Result:
    env = {**os.environ, "KONDUKTOR_HOME": str(home), "KONDUKTOR_CONFIG": NO_CONFIG}
    env.pop("KONDUKTOR_DEBUG", None)
    argv = [KONDUKTOR, *args]
    if as_user:
        argv = ["runuser", "-u", TEST_USER, "--", "env", f"KONDUKTOR_HOME={home}"]
        argv += [f"KONDUKTOR_CONFIG={NO_CONFIG}", KONDUKTOR, *args]
    started = time.monotonic()
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the ordinary user may enter (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="kd-store-", dir="/tmp"))
    os.chmod(directory, 0o755)
    yield directory
    for root, dirs, _files in os.walk(directory):  # undo the chmods before removing
        for name in dirs:
            with _ignore():
                os.chmod(Path(root) / name, 0o755)
    shutil.rmtree(directory, ignore_errors=True)


class _ignore:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def give_to_user(*paths: Path) -> None:
    for path in paths:
        for candidate in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm"))):
            if candidate.exists():
                shutil.chown(candidate, TEST_USER, TEST_USER)


# ---- the cases that make the store unusable: one `Error:` line, exit 6 (7 when locked) ------


@dataclass(frozen=True)
class Broken:
    id: str
    damage: Callable[[Path], Path]  # KONDUKTOR_HOME -> the path the message must name
    says: str  # what the one line must say
    as_user: bool = False
    exit_code: int = EXIT_STORE
    home_is_named: bool = False  # KONDUKTOR_HOME is the path damage() returns
    # Also accepted: the exit code of a check made before the store is opened (config.py
    # refuses a KONDUKTOR_HOME that is a file itself, with its own line and exit 2).
    or_exit_code: int | None = None


def _garbage(home: Path) -> Path:
    path = sound_store(home)
    path.write_bytes(os.urandom(8192))
    return path


def _text_file(home: Path) -> Path:
    path = home / STORE
    path.write_text("jobs:\n  - train-1a2b\n" * 50)
    return path


def _empty(home: Path) -> Path:
    path = sound_store(home)
    path.write_bytes(b"")
    return path


def _truncated_header(home: Path) -> Path:
    path = sound_store(home)
    path.write_bytes(path.read_bytes()[:60])
    return path


def _truncated_third(home: Path) -> Path:
    path = sound_store(home, count=400)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _pages_overwritten(home: Path) -> Path:
    path = sound_store(home, count=50)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = os.urandom(len(data) - page)
    path.write_bytes(bytes(data))
    return path


def _schema_page_garbage(home: Path) -> Path:
    path = sound_store(home)
    data = bytearray(path.read_bytes())
    data[100:4096] = os.urandom(3996)
    path.write_bytes(bytes(data))
    return path


def _foreign_tables(home: Path) -> Path:
    path = home / STORE
    foreign_db(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    return path


def _foreign_application(home: Path) -> Path:
    path = home / STORE
    # Fossil's application id, on a file that even has konduktor-like tables.
    foreign_db(
        path,
        konduktor_style_table(nullable=False),
        *KONDUKTOR_SIDE_TABLES,
        "PRAGMA application_id=252006673",
    )
    return path


def _foreign_user_version(home: Path) -> Path:
    path = home / STORE
    foreign_db(path, "CREATE TABLE jobs (id INTEGER, title TEXT)", "PRAGMA user_version=7")
    return path


def _foreign_jobs_table(home: Path) -> Path:
    path = home / STORE
    foreign_db(path, "CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT, done INTEGER)")
    return path


def _foreign_nullable_schema(home: Path) -> Path:
    """konduktor's column names without its NOT NULLs, unstamped: not the first release's."""
    path = home / STORE
    foreign_db(
        path,
        konduktor_style_table(nullable=True),
        *KONDUKTOR_SIDE_TABLES,
        "INSERT INTO jobs (name) VALUES ('train-1a2b')",
    )
    return path


def _missing_table(home: Path) -> Path:
    path = sound_store(home)
    sql(path, "DROP TABLE transitions")
    return path


def _newer(home: Path) -> Path:
    path = sound_store(home)
    sql(path, f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    return path


def _home_is_file(home: Path) -> Path:
    home.rmdir()
    home.write_text("not a directory\n")
    return home


def _home_under_file(home: Path) -> Path:
    home.rmdir()
    home.write_text("not a directory\n")
    return home / "sub"


def _store_is_directory(home: Path) -> Path:
    path = home / STORE
    path.mkdir()
    return path


def _store_is_fifo(home: Path) -> Path:
    path = home / STORE
    os.mkfifo(path)  # SQLite would wait on it forever
    return path


def _dangling_link(home: Path) -> Path:
    path = home / STORE
    path.symlink_to(home / "gone" / STORE)
    return path


def _read_only_file(home: Path) -> Path:
    path = sound_store(home)
    give_to_user(home, path)
    path.chmod(0o444)
    return path


def _read_only_directory(home: Path) -> Path:
    path = sound_store(home)
    give_to_user(home, path)
    home.chmod(0o555)
    return path


def _read_only_directory_no_store(home: Path) -> Path:
    give_to_user(home)
    home.chmod(0o555)
    return home / STORE


def _unreadable_file(home: Path) -> Path:
    path = sound_store(home)
    give_to_user(home, path)
    path.chmod(0o000)
    return path


def _unreadable_directory(home: Path) -> Path:
    path = sound_store(home)
    give_to_user(home, path)
    home.chmod(0o000)
    return path


def _owned_by_root(home: Path) -> Path:
    """`sudo konduktor ...` once: the store is root's, 0600, in the user's directory."""
    path = sound_store(home)
    shutil.chown(home, TEST_USER, TEST_USER)
    path.chmod(0o600)
    return path


def _wal_owned_by_root(home: Path) -> Path:
    """The store is the user's, but root left its -wal and -shm behind (read-only to the
    user): SQLite's own error, named with the file and what to check."""
    path = sound_store(home)
    give_to_user(home, path)
    holder = sqlite3.connect(path)  # as root: the -wal/-shm it creates are root's, 0644
    holder.execute("SELECT count(*) FROM jobs").fetchone()
    shutil.copy(f"{path}-wal", f"{path}-wal.keep")
    shutil.copy(f"{path}-shm", f"{path}-shm.keep")
    holder.close()
    os.replace(f"{path}-wal.keep", f"{path}-wal")
    os.replace(f"{path}-shm.keep", f"{path}-shm")
    os.chmod(f"{path}-wal", 0o644)
    os.chmod(f"{path}-shm", 0o644)
    return path


def _own_shm_read_only(home: Path) -> Path:
    """The user's own -shm, left read-only (a chmod -R a-w of the home, say). It is judged by
    one lstat, since another process of the user's may remove and remake it at any moment."""
    path = _wal_owned_by_root(home)
    give_to_user(path)
    os.chmod(f"{path}-shm", 0o444)
    return path


BROKEN = [
    Broken("garbage-bytes", _garbage, "is not an SQLite database"),
    Broken("garbage-text", _text_file, "is not an SQLite database"),
    Broken("zero-length", _empty, "is empty (0 bytes)"),
    Broken("truncated-header", _truncated_header, "is truncated (60 bytes)"),
    Broken("truncated-third", _truncated_third, "is damaged"),
    Broken("pages-overwritten", _pages_overwritten, "is damaged"),
    Broken("schema-page-garbage", _schema_page_garbage, "is damaged"),
    Broken("foreign-tables", _foreign_tables, "is not a konduktor job store (it holds the tables"),
    Broken("foreign-application-id", _foreign_application, "application id 0xf055111"),
    Broken("foreign-user-version", _foreign_user_version, "is not a konduktor job store"),
    Broken("foreign-jobs-table", _foreign_jobs_table, "(it holds the tables jobs)"),
    Broken("foreign-nullable-schema", _foreign_nullable_schema, "is not a konduktor job store"),
    Broken("missing-table", _missing_table, "table transitions is missing"),
    Broken("newer-user-version", _newer, "written by a newer konduktor-slurm"),
    Broken("home-is-a-file", _home_is_file, "is a file", or_exit_code=2),
    Broken("home-under-a-file", _home_under_file, "a part of that path is a file", False, 6, True),
    Broken("store-is-a-directory", _store_is_directory, "is a directory, not a konduktor"),
    Broken("store-is-a-fifo", _store_is_fifo, "is not a regular file"),
    Broken("dangling-symlink", _dangling_link, "is a symbolic link to"),
    Broken("read-only-file", _read_only_file, "it is read-only (mode -r--r--r--", as_user=True),
    Broken("read-only-directory", _read_only_directory, "chmod u+w", as_user=True),
    Broken(
        "read-only-directory-no-store",
        _read_only_directory_no_store,
        "cannot create the job store",
        as_user=True,
    ),
    Broken("unreadable-file", _unreadable_file, "permission denied (mode ----------", True),
    Broken("unreadable-directory", _unreadable_directory, "Permission denied", as_user=True),
    Broken("owned-by-root", _owned_by_root, "permission denied (mode -rw-------, owner root", True),
    Broken("wal-owned-by-root", _wal_owned_by_root, f"{STORE}-wal is read-only", True),
    Broken(
        "own-shm-read-only", _own_shm_read_only, "-shm is read-only to you (mode -r--r--r--", True
    ),
]
REBUILD = "run `konduktor store rebuild` to keep it aside and re-record your jobs from Slurm"
NEEDS_REBUILD = {
    "garbage-bytes",
    "garbage-text",
    "zero-length",
    "truncated-header",
    "truncated-third",
    "pages-overwritten",
    "schema-page-garbage",
    "foreign-tables",
    "foreign-application-id",
    "foreign-user-version",
    "foreign-jobs-table",
    "foreign-nullable-schema",
    "missing-table",
    "store-is-a-directory",
    "store-is-a-fifo",
}


def _fingerprint(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() and os.access(path, os.R_OK) else None


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
def test_an_unusable_store_is_one_line_naming_it_and_what_to_do(base: Path, case: Broken) -> None:
    home = base / "kdhome"
    home.mkdir()
    named = case.damage(home)
    before = _fingerprint(named)
    result = konduktor(named if case.home_is_named else home, "status", as_user=case.as_user)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode in (case.exit_code, case.or_exit_code), result
    assert result.stdout == "", result
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert line.startswith("Error: ") and str(named) in line, line
    assert case.says in line, line
    assert (REBUILD in line) == (case.id in NEEDS_REBUILD), line
    assert "unexpected" not in line
    if case.or_exit_code is not None:  # the store's own check, whoever checks first
        with pytest.raises(StoreUnreadableError) as raised:
            Store(home / STORE)
        assert "is a file, not a directory" in str(raised.value)
    assert result.seconds < 10  # never waits on a FIFO, never spins
    # Refusing a store never changes it (a newer konduktor's stays exactly as it was).
    assert _fingerprint(named) == before


@pytest.mark.parametrize(
    "args", [("status", "-a", "--json"), ("logs", "train-0000"), ("down", "-y", "-a"), ("report",)]
)
def test_every_command_reports_a_damaged_store_the_same_way(base: Path, args: tuple) -> None:
    home = base / "kdhome"
    home.mkdir()
    _garbage(home)
    result = konduktor(home, *args)
    assert "Traceback" not in result.stderr
    assert result.returncode == EXIT_STORE, result
    assert len(result.error_lines) == 1 and "is not an SQLite database" in result.stderr


def test_store_check_and_rebuild_report_the_same_line_for_an_unreadable_store(base: Path) -> None:
    home = base / "kdhome"
    home.mkdir()
    path = _unreadable_file(home)
    for args in (("store", "check"), ("store", "rebuild", "-y")):
        result = konduktor(home, *args, as_user=True)
        assert result.returncode == EXIT_STORE, result
        assert result.error_lines == [result.error_lines[0]] and str(path) in result.stderr
        assert "permission denied" in result.stderr and "Traceback" not in result.stderr
    assert path.exists() and not list(home.glob(f"{STORE}.damaged-*"))  # not rebuilt


# ---- a store locked by another process --------------------------------------------------------

HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive-mode":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # WAL readers are locked out too
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE meta SET value=value")
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
db.execute("COMMIT")
"""


def hold_lock(path: Path, how: str, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), how, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def rollback_journal_store(home: Path) -> Path:
    """A store another tool switched to SQLite's rollback journal: BEGIN EXCLUSIVE there
    keeps every reader out (in WAL mode readers are never blocked)."""
    path = sound_store(home)
    sql(path, "PRAGMA journal_mode=DELETE")
    return path


@pytest.mark.parametrize("how", ["exclusive-mode", "rollback-journal"])
def test_a_store_locked_by_another_process_is_waited_for_then_one_line(
    base: Path, how: str
) -> None:
    home = base / "kdhome"
    home.mkdir()
    path = sound_store(home) if how == "exclusive-mode" else rollback_journal_store(home)
    sql(path, "INSERT INTO meta VALUES ('k', 'v')")
    holder = hold_lock(path, "exclusive-mode" if how == "exclusive-mode" else "plain", 30)
    try:
        result = konduktor(home, "status")
    finally:
        holder.kill()
        holder.wait()
    assert "Traceback" not in result.stderr
    assert result.returncode == EXIT_STORE_LOCKED, result
    waiting, error = result.error_lines
    assert waiting.startswith(f"Waiting for the job store {path}: another process is using it")
    assert error.startswith(f"Error: the job store {path} is locked by another process")
    assert "Try again" in error
    assert 4.5 <= result.seconds < 15, result.seconds  # bounded: about 5 s


def test_a_lock_released_within_the_wait_costs_only_the_wait(base: Path) -> None:
    home = base / "kdhome"
    home.mkdir()
    path = sound_store(home)
    sql(path, "INSERT INTO meta VALUES ('k', 'v')")
    holder = hold_lock(path, "exclusive-mode", 2.5)
    try:
        result = konduktor(home, "status")
    finally:
        holder.wait()
    assert result.returncode == 0, result
    assert "train-0000" in result.stdout
    assert result.error_lines == [
        f"Waiting for the job store {path}: another process is using it (up to 5 s)..."
    ]


def test_a_writer_in_wal_mode_does_not_block_status(base: Path) -> None:
    home = base / "kdhome"
    home.mkdir()
    path = sound_store(home)
    sql(path, "INSERT INTO meta VALUES ('k', 'v')")
    holder = hold_lock(path, "plain", 30)  # BEGIN EXCLUSIVE, as `report` or `launch` write
    try:
        result = konduktor(home, "status")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0 and result.stderr == "", result
    assert result.seconds < 3


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_companion_file_removed_while_checked_is_not_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """The last process to close the store removes its -wal and -shm. When that happens between
    the check seeing the file and asking whether it is writable, the file is gone, not
    read-only (a CI run of eight processes opening one new store at once met this)."""
    path = sound_store(tmp_path)
    companion = Path(f"{path}{suffix}")
    companion.write_bytes(b"")
    real_access = os.access

    def access_after_the_other_process_closed(target: object, mode: int) -> bool:
        if Path(str(target)) == companion:
            companion.unlink(missing_ok=True)
        return real_access(target, mode)  # type: ignore[arg-type]

    monkeypatch.setattr("konduktor_slurm.store.os.access", access_after_the_other_process_closed)
    store = Store(path)
    try:
        assert {job.name for job in store.jobs()} == {"train-0000", "train-0001"}
    finally:
        store.close()


# ---- damaged values in a row: the others are read, one warning names the damage -----------


@dataclass(frozen=True)
class Damaged:
    id: str
    statements: tuple[str, ...]
    warning: str  # what the one warning line must say about the damaged row
    shown: tuple[str, ...]  # jobs status must still list
    nullable: bool = False  # build a stamped store whose jobs table lacks NOT NULL


BAD = "train-0000"
GOOD = "train-0001"

DAMAGED = [
    Damaged(
        "extra-invalid-json",
        (f"UPDATE jobs SET extra='{{not json' WHERE name='{BAD}'",),
        f"{BAD} (extra is not valid JSON)",
        (BAD, GOOD),
    ),
    Damaged(
        "extra-not-an-object",
        (f"UPDATE jobs SET extra='[1, 2]' WHERE name='{BAD}'",),
        f"{BAD} (extra is [1, 2], not a JSON object)",
        (BAD, GOOD),
    ),
    Damaged(
        "extra-wrong-shapes",
        (
            f"""UPDATE jobs SET extra='{{"attempt": 5, "rank_exit_codes": {{"x": "y"}}}}'
            WHERE name='{BAD}'""",
        ),
        "extra.attempt is 5, extra.rank_exit_codes is {'x': 'y'}",
        (BAD, GOOD),
    ),
    Damaged(
        "extra-deeply-nested",
        (f"UPDATE jobs SET extra='{'[' * 100000}' WHERE name='{BAD}'",),
        f"{BAD} (extra is",
        (BAD, GOOD),
    ),
    Damaged(
        "user-stop-invalid-json",
        (f"UPDATE jobs SET user_stop='{{\"user\": ' WHERE name='{BAD}'",),
        f"{BAD} (user_stop is not valid JSON)",
        (BAD, GOOD),
    ),
    Damaged(
        "user-stop-wrong-shape",
        (f"""UPDATE jobs SET user_stop='{{"user": 7}}' WHERE name='{BAD}'""",),
        f"{BAD} (user_stop is not a stop record)",
        (BAD, GOOD),
    ),
    Damaged(
        "unknown-state",
        (f"UPDATE jobs SET state='RUNNING-ish', slurm_job_id=NULL WHERE name='{BAD}'",),
        f"{BAD} (state is 'RUNNING-ish', not a lifecycle state)",
        (BAD, GOOD),
    ),
    Damaged(
        "state-not-text",
        (f"UPDATE jobs SET state=x'414354495645', slurm_job_id=NULL WHERE name='{BAD}'",),
        f"{BAD} (state is a 6-byte blob, not a lifecycle state)",
        (BAD, GOOD),
    ),
    Damaged(
        "text-in-a-time-column",
        (f"UPDATE jobs SET created_at='yesterday', end_time='soon' WHERE name='{BAD}'",),
        "end_time is 'soon', created_at is 'yesterday'",
        (BAD, GOOD),
    ),
    Damaged(
        "blob-in-a-text-column",
        (f"UPDATE jobs SET resources=x'00ff10' WHERE name='{BAD}'",),
        f"{BAD} (resources is a 3-byte blob)",
        (BAD, GOOD),
    ),
    Damaged(
        "not-utf8-text",
        (f"UPDATE jobs SET detail=CAST(x'fffe41' AS TEXT) WHERE name='{BAD}'",),
        f"{BAD} (detail is text that is not UTF-8)",
        (BAD, GOOD),
    ),
    Damaged(
        "negative-node-count",
        (f"UPDATE jobs SET num_nodes=-3, hidden='yes' WHERE name='{BAD}'",),
        "num_nodes is -3",
        (BAD, GOOD),
    ),
    Damaged(
        "nulls-in-not-null-columns",
        (
            f"""UPDATE jobs SET task_name=NULL, user=NULL, resources=NULL, num_nodes=NULL,
            job_dir=NULL, log_path=NULL, created_at=NULL, state=NULL, detail=NULL,
            terminal=NULL, extra=NULL, slurm_job_id=NULL WHERE name='{BAD}'""",
        ),
        f"{BAD} (created_at is NULL, terminal is NULL, detail is NULL, state is NULL",
        (BAD, GOOD),
        nullable=True,
    ),
    Damaged(
        "null-name",
        (f"UPDATE jobs SET name=NULL WHERE name='{BAD}'",),
        "row 2 of jobs (name is NULL: row skipped)",
        (GOOD,),
        nullable=True,
    ),
]


def stamped_nullable_store(home: Path) -> Path:
    """konduktor's tables, stamped with its version, but without NOT NULL constraints (as a
    hand-made or foreign-tool copy would be): NULLs reach the rows."""
    path = home / STORE
    sql(
        path,
        konduktor_style_table(nullable=True),
        *KONDUKTOR_SIDE_TABLES,
        f"PRAGMA application_id={APPLICATION_ID}",
        f"PRAGMA user_version={SCHEMA_VERSION}",
    )
    store = Store(path)
    store.add(job(GOOD, State.FAILED, slurm_job_id="1001", created_at=1_764_000_100.0))
    store.add(job(BAD, slurm_job_id="1000"))
    store.close()
    return path


@pytest.mark.parametrize("case", DAMAGED, ids=[case.id for case in DAMAGED])
def test_a_damaged_row_is_read_around_with_one_warning(base: Path, case: Damaged) -> None:
    home = base / "kdhome"
    home.mkdir()
    path = stamped_nullable_store(home) if case.nullable else sound_store(home)
    sql(path, *case.statements)
    result = konduktor(home, "status")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result
    for name in case.shown:
        assert name in result.stdout, result.stdout
    if BAD not in case.shown:
        assert BAD not in result.stdout
    assert len(result.error_lines) == 1, result.stderr
    warning = result.error_lines[0]
    assert warning.startswith(f"Warning: the job store {path} has damaged values: "), warning
    assert case.warning in warning, warning
    assert "`konduktor store check`" in warning and "`konduktor store rebuild`" in warning
    # The damaged job's own view and the JSON work too, and `store check` lists the damage.
    if BAD in case.shown:
        detail = konduktor(home, "status", BAD)
        assert detail.returncode == 0 and BAD in detail.stdout, detail
        as_json = konduktor(home, "status", "--json")
        assert as_json.returncode == 0 and BAD in as_json.stdout, as_json
    check = konduktor(home, "store", "check")
    assert check.returncode == EXIT_STORE, check
    assert "Integrity:  ok" in check.stdout and "Damaged:" in check.stdout, check.stdout


def test_an_unknown_state_of_a_submitted_job_is_asked_of_slurm_again(tmp_path: Path) -> None:
    store = Store(tmp_path / STORE, notify=lambda _line: None)
    store.add(job("train-1a2b", State.COMPLETED, slurm_job_id="77"))
    sql(tmp_path / STORE, "UPDATE jobs SET state='DONE?' WHERE name='train-1a2b'")
    record = store.get("train-1a2b")
    assert record is not None
    # Not finished as far as konduktor can tell: tracker.refresh asks Slurm and records it.
    assert (record.state, record.terminal) == (State.PENDING, False)
    assert record.detail == "unknown state 'DONE?' in the store; asking Slurm"
    assert store.set_state(record, State.COMPLETED, "", at=1.0)  # 'DONE?' -> COMPLETED
    assert store.get("train-1a2b").state == State.COMPLETED
    assert store.damage == {
        "train-1a2b": ("state is 'DONE?', not a lifecycle state",),
    }


def test_damage_is_warned_once_per_store_and_row(tmp_path: Path) -> None:
    lines: list[str] = []
    store = Store(tmp_path / STORE, notify=lines.append)
    store.add(job("train-1a2b"))
    store.add(job("eval-3c4d"))
    sql(tmp_path / STORE, "UPDATE jobs SET extra='{' WHERE name='train-1a2b'")
    for _ in range(3):
        store.jobs()
        store.get("train-1a2b")
    assert len(lines) == 1 and "train-1a2b (extra is not valid JSON)" in lines[0]
    sql(tmp_path / STORE, "UPDATE jobs SET extra='{' WHERE name='eval-3c4d'")
    store.jobs()
    assert len(lines) == 2 and "eval-3c4d" in lines[1] and "train-1a2b" not in lines[1]


def test_many_damaged_rows_are_one_line(tmp_path: Path) -> None:
    lines: list[str] = []
    store = Store(tmp_path / STORE, notify=lines.append)
    for index in range(40):
        store.add(job(f"train-{index:04x}"))
    sql(tmp_path / STORE, "UPDATE jobs SET extra='{'")
    assert len(store.jobs()) == 40
    assert len(lines) == 1 and "and 37 more" in lines[0]


def test_unreadable_history_rows_are_skipped(tmp_path: Path) -> None:
    lines: list[str] = []
    store = Store(tmp_path / STORE, notify=lines.append)
    store.add(job("train-1a2b"))
    sql(
        tmp_path / STORE,
        "PRAGMA ignore_check_constraints=ON",
        "INSERT INTO transitions (job_name, state, detail, at) VALUES ('train-1a2b', 'ACTIVE', "
        "'', 'noon')",
    )
    history = store.transitions(["train-1a2b"])
    assert [t.state for t in history] == ["COMPLETED"]
    assert lines and "1 unreadable transition(s) skipped" in lines[0]


def test_a_stop_record_reads_back_and_a_damaged_one_reads_as_none(tmp_path: Path) -> None:
    store = Store(tmp_path / STORE, notify=lambda _line: None)
    stopped = job("train-1a2b", State.SUSPENDED_USER, user_stop=UserStop("alice", 5.0, "hold"))
    store.add(stopped)
    assert store.get("train-1a2b").user_stop == UserStop("alice", 5.0, "hold")
    sql(tmp_path / STORE, "UPDATE jobs SET user_stop='[]'")
    assert store.get("train-1a2b").user_stop is None


@pytest.mark.parametrize("damage", ["not json", "[" * 5000, '["a list"]', '{"at": "noon"}'])
def test_a_damaged_shared_poll_record_counts_as_no_poll(tmp_path: Path, damage: str) -> None:
    # Followers of one store share their looks through this record; a damaged one must not
    # stop them (brackets nested past Python's recursion limit included): the next look asks.
    store = Store(tmp_path / "state.db")
    store.set_meta("shared_poll", damage)
    assert store.claim_poll("shared_poll", 30.0, time.time()) == (True, None)
    assert store.claim_poll("shared_poll", 30.0, time.time()) == (False, None)  # now recorded


SHM_SIZE_ERROR = 4874  # SQLITE_IOERR_SHMSIZE: what a read says when the -shm cannot grow


@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        (errno.ENOSPC, "the file system holding {home} is full ("),
        (errno.EDQUOT, "your disk quota on the file system holding {home} is used up"),
        (errno.EIO, None),  # a real I/O error stays SQLite's words
    ],
)
@pytest.mark.parametrize("code", [SHM_SIZE_ERROR, sqlite3.SQLITE_FULL])
def test_a_disk_io_error_for_lack_of_space_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int, says: str | None, code: int
) -> None:
    """The live fault test fills a real file system; a quota cannot be made there."""

    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = code
    path = tmp_path / STORE
    line = str(store_error(path, error))
    if says is not None:
        assert line.startswith(f"cannot use the job store {path}: {says.format(home=tmp_path)}")
        assert line.endswith("run the command again (nothing in the store was lost)")
    elif code == sqlite3.SQLITE_FULL:  # SQLite knows the disk is full; the probe did not see it
        assert f"cannot use the job store {path}: the disk is full." in line
    else:
        assert line == f"the job store {path} failed: disk I/O error"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
