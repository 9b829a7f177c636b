"""The job store when two konduktor processes work on the same job at once.

A `logs --follow` and a `status` refresh the same job; a `stop` records itself while a
follower holds an older copy. Neither may duplicate history nor undo the other's record.
"""

from __future__ import annotations

from pathlib import Path

from konduktor_slurm.lifecycle import UserStop
from konduktor_slurm.store import JobRecord, Store


def new_job(store: Store) -> JobRecord:
    job = JobRecord(
        name="train-1a2b",
        task_name="train",
        user="alice",
        resources="1x(H100:8)",
        num_nodes=1,
        job_dir="/jobs/train-1a2b",
        log_path="/jobs/train-1a2b/job.log",
        state="PENDING",
        created_at=1000.0,
        slurm_job_id="42",
        submitted_at=1000.0,
    )
    store.add(job)
    return job


def test_two_processes_seeing_the_same_change_record_it_once(tmp_path: Path) -> None:
    follower, status = Store(tmp_path / "state.db"), Store(tmp_path / "state.db")
    new_job(follower)
    mine, theirs = follower.get("train-1a2b"), status.get("train-1a2b")
    assert mine and theirs
    assert status.set_state(theirs, "ACTIVE", "running on node1", at=1010.0)
    # The follower's copy still says PENDING; the stored state already says ACTIVE.
    assert not follower.set_state(mine, "ACTIVE", "running on node1", at=1011.0)
    states = [t.state for t in follower.transitions(["train-1a2b"])]
    assert states == ["PENDING", "ACTIVE"]


def test_a_refresh_with_an_old_copy_keeps_a_stop_and_a_down(tmp_path: Path) -> None:
    follower, cli = Store(tmp_path / "state.db"), Store(tmp_path / "state.db")
    new_job(follower)
    stale = follower.get("train-1a2b")
    assert stale is not None and stale.user_stop is None

    stopped = cli.get("train-1a2b")
    assert stopped is not None
    stopped.user_stop = UserStop("alice", 1020.0, "requeue")
    stopped.hidden = True
    cli.save(stopped)

    follower.set_state(stale, "SUSPENDED (by system)", "requeued", at=1021.0)
    stored = cli.get("train-1a2b")
    assert stored is not None
    assert stored.user_stop == UserStop("alice", 1020.0, "requeue")
    assert stored.hidden
    assert stored.state == "SUSPENDED (by system)"

    follower.reload_user_fields([stale])
    assert stale.user_stop == stored.user_stop and stale.hidden


def test_last_user_is_the_account_of_the_newest_job(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert store.last_user() is None
    new_job(store)
    assert store.last_user() == "alice"
