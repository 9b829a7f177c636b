"""Event callbacks are due once per state change: claimed atomically in the store, so two
processes (a `logs --follow` and a `report` at the same moment) never run the same one."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

from konduktor_slurm.store import MIGRATIONS, JobRecord, Store
from konduktor_slurm.task.model import Checkpoint

CALLBACK = 'echo "$KONDUKTOR_NEW_STATE" >> events.log'


def new_job(store: Store, name: str, callback: str | None = CALLBACK) -> JobRecord:
    job = JobRecord(
        name=name,
        task_name=name.rsplit("-", 1)[0],
        user="alice",
        resources="1x(H100:8)",
        num_nodes=1,
        job_dir=f"/jobs/{name}",
        log_path=f"/jobs/{name}/job.log",
        state="CREATED",
        created_at=1000.0,
        event_callback=callback,
        checkpoint=Checkpoint("USR2", 45, "~/ckpt"),
    )
    store.add(job)
    return job


def test_each_change_of_a_job_with_a_callback_is_due_once_with_its_old_state(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state.db")
    job = new_job(store, "train-1a2b")
    store.set_state(job, "PENDING", "submitted", at=1001.0)
    store.set_state(job, "PENDING", "waiting for resources", at=1002.0)  # no change of state
    store.set_state(job, "ACTIVE", "running on node1", at=1003.0)
    due = store.claim_due_events()
    assert [(e.old_state, e.state, e.detail, e.at) for e in due] == [
        ("", "CREATED", "", 1000.0),
        ("CREATED", "PENDING", "submitted", 1001.0),
        ("PENDING", "ACTIVE", "running on node1", 1003.0),
    ]
    assert {e.command for e in due} == {CALLBACK} and {e.job_name for e in due} == {job.name}
    assert store.claim_due_events() == []  # claimed: never again
    store.set_state(job, "COMPLETED", "exited 0", at=1010.0)
    (last,) = store.claim_due_events()
    assert (last.old_state, last.state) == ("ACTIVE", "COMPLETED")


def test_jobs_without_a_callback_have_nothing_due(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    job = new_job(store, "plain-1a2b", callback=None)
    store.set_state(job, "ACTIVE", "running", at=1003.0)
    assert store.claim_due_events() == []
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT count(*) FROM transitions WHERE notified = 0").fetchone() == (0,)


def test_a_follower_claims_only_its_own_jobs_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    mine, other = new_job(store, "mine-1a2b"), new_job(store, "other-1a2b")
    store.set_state(mine, "PENDING", "", at=1001.0)
    store.set_state(other, "PENDING", "", at=1001.0)
    assert {e.job_name for e in store.claim_due_events([mine.name])} == {mine.name}
    assert {e.job_name for e in store.claim_due_events()} == {other.name}
    assert store.claim_due_events([]) == []


def test_the_task_settings_are_kept_with_the_job(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    new_job(store, "train-1a2b")
    again = Store(tmp_path / "state.db").get("train-1a2b")
    assert again is not None
    assert again.checkpoint == Checkpoint("USR2", 45, "~/ckpt")
    assert again.event_callback == CALLBACK


def _claim_until_quiet(path: str) -> list[int]:
    """One process: claims (as a follower and a report would) until nothing is due for a
    while; the ids it claimed."""
    store = Store(Path(path))
    claimed: list[int] = []
    last = time.monotonic()
    while time.monotonic() - last < 1.0:
        events = store.claim_due_events()
        claimed += [event.id for event in events]
        if events:
            last = time.monotonic()
    store.close()
    return claimed


def _record_changes(path: str) -> int:
    store = Store(Path(path))
    job = store.get("race-1a2b")
    assert job is not None
    count = 0
    for step in range(150):
        store.set_state(job, ("ACTIVE", "SUSPENDED (by system)")[step % 2], "", at=2000.0 + step)
        count += 1
        time.sleep(0.003)  # changes arrive while the claimers look
    store.close()
    return count


def test_racing_processes_claim_every_change_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    new_job(store, "race-1a2b")
    store.close()
    context = multiprocessing.get_context("fork")
    with context.Pool(5) as pool:
        writer = pool.apply_async(_record_changes, (str(path),))
        claimers = [pool.apply_async(_claim_until_quiet, (str(path),)) for _ in range(4)]
        recorded = writer.get(timeout=120)
        claimed = [claimer.get(timeout=120) for claimer in claimers]
    everything = [event_id for ids in claimed for event_id in ids]
    everything += [event.id for event in Store(path).claim_due_events()]  # the last ones
    assert len(everything) == len(set(everything)) == recorded + 1  # + CREATED
    assert sum(1 for ids in claimed if ids) >= 2  # they really raced


def test_an_older_store_upgrades_without_calling_back_its_past(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in migration.statements:
            db.execute(statement)
    db.execute("PRAGMA application_id=1263488580")
    db.execute("PRAGMA user_version=2")
    db.execute(
        "INSERT INTO jobs (name, task_name, user, resources, num_nodes, job_dir, log_path, "
        "created_at, state) VALUES ('old-1a2b', 'old', 'alice', '-', 1, '/j', '/j/log', 1, "
        "'COMPLETED')"
    )
    db.execute("INSERT INTO transitions (job_name, state, at) VALUES ('old-1a2b', 'COMPLETED', 1)")
    db.close()
    store = Store(path)
    assert store.claim_due_events() == []
    job = store.get("old-1a2b")
    assert job is not None and job.checkpoint is None and job.event_callback is None


def test_a_damaged_checkpoint_setting_is_read_around(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = tmp_path / "state.db"
    new_job(Store(path), "train-1a2b")
    db = sqlite3.connect(path)
    db.execute("UPDATE jobs SET checkpoint = '{\"signal\": 3}' WHERE name = 'train-1a2b'")
    db.commit()
    db.close()
    job = Store(path, notify=warnings.append).get("train-1a2b")
    assert job is not None and job.checkpoint is None
    assert "train-1a2b (checkpoint is not a checkpoint setting)" in warnings[0]
