"""The store's reads for big stores: a fast path for sound rows that reads exactly what the
careful decoder reads, and the window queries a report makes instead of reading every row.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from konduktor_slurm.checkpoint import Checkpoint
from konduktor_slurm.lifecycle import State, UserStop
from konduktor_slurm.store import (
    JobRecord,
    Store,
    _decode_job_carefully,
    _sound_job,
    _text_factory,
)


def record(name: str, **fields: object) -> JobRecord:
    values: dict = dict(
        name=name, task_name="train", user="alice", resources="1x(H100:8)", num_nodes=1,
        job_dir=f"/jobs/{name}", log_path=f"/jobs/{name}/job.log", state="PENDING",
        created_at=1000.0, slurm_job_id=None,
    )  # fmt: skip
    values.update(fields)
    return JobRecord(**values)


SOUND = [
    record("created-1"),
    record("pending-1", slurm_job_id="42", submitted_at=1001.5, state="PENDING"),
    record(
        "done-1",
        slurm_job_id="43_7",
        submitted_at=1001,
        start_time=1002,
        end_time=1003.25,
        state="COMPLETED",
        terminal=True,
        hidden=True,
        gpus_per_node=8,
        num_nodes=2,
        max_restarts=3,
        detail="ok",
        extra={
            "slurm_state": "COMPLETED",
            "reason": None,
            "priority": 7,
            "node_list": "node[1-2]",
            "exit_code": "0:0",
            "rank_exit_codes": {"0": 0, "1": 0},
            "restarts": 1,
            "attempt": [2, 3],
            "sweep": "done",
            "grid": {"LR": "0.1"},
        },
    ),
    record(
        "stopped-1",
        slurm_job_id="44",
        state="SUSPENDED (by user)",
        user_stop=UserStop("alice", 1005.0, "requeue"),
        created_at=0.5,
    ),
    record(
        "checkpointing-1",
        slurm_job_id="45",
        state="ACTIVE",
        checkpoint=Checkpoint(signal="USR1", grace=90, directory="~/ckpt"),
        event_callback="notify-send $KONDUKTOR_JOB_STATE",
    ),
]

# Each row is damaged in one way: the careful decoder must read it (and say so).
DAMAGE = [
    "UPDATE jobs SET state='RUNNING'",
    "UPDATE jobs SET state=x'414354495645'",
    "UPDATE jobs SET extra='not json'",
    "UPDATE jobs SET extra='[1, 2]'",
    'UPDATE jobs SET extra=\'{"priority": "high"}\'',
    "UPDATE jobs SET num_nodes=0",
    "UPDATE jobs SET num_nodes='two'",
    "UPDATE jobs SET terminal=2",
    "UPDATE jobs SET hidden='yes'",
    "UPDATE jobs SET created_at='yesterday'",
    "UPDATE jobs SET start_time=1e300",
    "UPDATE jobs SET slurm_job_id=x'3432'",
    "UPDATE jobs SET user_stop='{\"user\": 1}'",
    "UPDATE jobs SET resources=x'00ff10'",
    "UPDATE jobs SET detail=CAST(x'fffe41' AS TEXT)",
    "UPDATE jobs SET checkpoint='{\"signal\": 9}'",
    "UPDATE jobs SET event_callback=x'07'",
]


def rows_of(path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    db.text_factory = _text_factory  # as the store reads a value that is not UTF-8
    try:
        return db.execute("SELECT * FROM jobs").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("job", SOUND, ids=lambda job: job.name)
def test_a_sound_row_reads_the_same_on_the_fast_path(tmp_path: Path, job: JobRecord) -> None:
    store = Store(tmp_path / "state.db")
    store.add(job)
    store.close()
    (row,) = rows_of(tmp_path / "state.db")
    fast, (careful, problems) = _sound_job(row), _decode_job_carefully(row)
    assert problems == [] and fast is not None
    assert fast == careful == job
    assert type(fast.state) is type(careful.state) is State
    assert [type(getattr(fast, f)) for f in vars(fast)] == [
        type(getattr(careful, f)) for f in vars(careful)
    ]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_row_takes_the_careful_path(tmp_path: Path, damage: str) -> None:
    store = Store(tmp_path / "state.db")
    store.add(SOUND[2])
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    with db:
        db.execute(damage)
    db.close()
    (row,) = rows_of(tmp_path / "state.db")
    assert _sound_job(row) is None
    job, problems = _decode_job_carefully(row)
    assert job is not None and problems
    # And the store reads it (a value that is not UTF-8 too) and names the damage.
    notes: list[str] = []
    reopened = Store(tmp_path / "state.db", notify=notes.append)
    assert [j.name for j in reopened.jobs(include_hidden=True)] == ["done-1"]
    assert reopened.damage and notes


def window_store(path: Path) -> Store:
    store = Store(path)
    with store.transaction():
        for index in range(1200):  # more than one IN (...) chunk
            finished = index % 3 != 0
            job = record(
                f"job-{index:04}",
                slurm_job_id=str(5000 + index),
                created_at=1000.0 + index,
                end_time=2000.0 + index if finished else None,
                state="COMPLETED" if finished else "PENDING",
                terminal=finished,
                hidden=index % 100 == 0,
            )
            store.add(job)
            store.set_state(job, job.state, "", at=3000.0 + index)
    return store


def test_the_window_queries_read_what_filtering_every_row_reads(tmp_path: Path) -> None:
    store = window_store(tmp_path / "state.db")
    every = store.jobs(include_hidden=True)
    assert store.open_jobs() == [job for job in every if not job.terminal]
    names = [f"job-{index:04}" for index in range(0, 1200, 2)]
    assert store.jobs_named(names) == [job for job in every if job.name in set(names)]
    ids = [str(5000 + index) for index in range(3, 1200, 2)] + ["nope"]
    assert store.jobs_with_slurm_ids(ids) == [job for job in every if job.slurm_job_id in ids]
    assert store.known_slurm_ids(ids) == set(ids) - {"nope"}
    assert sorted(store.slurm_ids_ending_since(2900.0)) == sorted(
        job.slurm_job_id
        for job in every
        if job.slurm_job_id and (job.end_time is None or job.end_time >= 2900.0)
    )
    history = store.transitions()
    assert store.transitions_since(3500.0) == [t for t in history if t.at > 3500.0]
    assert store.transitions(names) == [t for t in history if t.job_name in set(names)]
    # What a report --since reads besides the window's transitions: the earlier ones.
    assert store.transitions(names, until=3500.0) == [
        t for t in history if t.job_name in set(names) and t.at <= 3500.0
    ]
    assert store.transitions([]) == [] and store.jobs_named([]) == []
    assert store.first_created_at() == 1000.0


def test_jobs_per_state_count_as_the_jobs_read(tmp_path: Path) -> None:
    store = window_store(tmp_path / "state.db")
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    with db:  # states no lifecycle knows: read as PENDING when submitted, else FAILED
        db.execute("UPDATE jobs SET state='RUNNING' WHERE name IN ('job-0001', 'job-0002')")
        db.execute("UPDATE jobs SET state='??', slurm_job_id=NULL WHERE name='job-0004'")
        db.execute("UPDATE jobs SET hidden=7 WHERE name='job-0005'")  # damaged: not hidden
    db.close()
    store = Store(tmp_path / "state.db", notify=lambda _: None)
    expected = Counter(str(job.state) for job in store.jobs())
    assert store.state_counts() == dict(expected)
    assert expected["FAILED"] == 1 and expected["PENDING"] > 0
