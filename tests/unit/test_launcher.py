"""A launch records its process; a refresh settles a CREATED job only when that process has
certainly ended (tests/live/test_faults.py kills real launches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from konduktor_slurm.launcher import launcher_gone, this_launcher
from konduktor_slurm.slurm import HistoryRow, Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import LAUNCHER_KEY, settle_orphans
from konduktor_slurm.transport import CommandResult, LocalTransport


class UnreachableSlurm(LocalTransport):
    """Every command fails as with slurmctld down; the commands asked are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def run(self, argv: list[str], **_: object) -> CommandResult:
        self.asked.append(argv)
        return CommandResult(tuple(argv), 1, "", "Unable to contact slurm controller")


def ended_process() -> dict:
    """The launcher record of a process that has exited (and been reaped)."""
    code = "import json, konduktor_slurm.launcher as l; print(json.dumps(l.this_launcher()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    return json.loads(done.stdout)


def test_this_process_is_not_gone() -> None:
    assert not launcher_gone(this_launcher())


def test_a_living_process_is_not_gone() -> None:
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            record = {**this_launcher(), "pid": child.pid}
            with open(f"/proc/{child.pid}/stat", "rb") as stat:
                record["started"] = int(stat.read().rpartition(b")")[2].split()[19])
            assert not launcher_gone(record)
        finally:
            child.kill()


def test_an_ended_process_is_gone() -> None:
    record = ended_process()
    assert record["pid"] != os.getpid() and isinstance(record["started"], int)
    assert launcher_gone(record)


def test_a_pid_given_to_another_process_is_gone() -> None:
    """The pid is alive, but started at another time: not the launch that recorded it."""
    record = {**this_launcher(), "pid": os.getppid()}
    record["started"] = -1
    assert launcher_gone(record)


@pytest.mark.parametrize(
    "record",
    [
        None,  # a record from a konduktor that did not keep one
        "12345",
        {"host": "another-login-node", "pid": 1, "started": 0},  # a home shared by hosts
        {**this_launcher(), "pidns": 1, "pid": 999_999_999},  # a container's process
        {"host": os.uname().nodename, "pid": "x"},
        {"host": os.uname().nodename, "pid": 0},
        {"host": os.uname().nodename, "pid": -5},
    ],
)
def test_what_cannot_be_told_is_not_gone(record: object) -> None:
    assert not launcher_gone(record)


def created(name: str, detail: str, launcher: dict) -> JobRecord:
    return JobRecord(
        name=name,
        task_name="t",
        user="alice",
        resources="1x(1CPU)",
        num_nodes=1,
        job_dir=f"/jobs/{name}",
        log_path=f"/jobs/{name}/job.log",
        state="CREATED",
        detail=detail,
        created_at=time.time(),
        extra={LAUNCHER_KEY: launcher},
    )


def test_a_job_whose_launch_ended_while_staging_fails_without_asking_slurm(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state.db")
    orphan = created("a-1", "staging workdir", ended_process())
    running = created("b-1", "staging workdir", this_launcher())
    for job in (orphan, running):
        store.add(job)
    transport = UnreachableSlurm()
    settle_orphans(store, Slurm(transport), [orphan, running])
    assert transport.asked == []  # a job never submitted needs no question to Slurm
    stored = store.get("a-1")
    assert stored is not None and stored.terminal and stored.state == "FAILED"
    assert stored.detail.endswith("ended before submitting; nothing was submitted")
    assert LAUNCHER_KEY not in stored.extra
    still = store.get("b-1")
    assert still is not None and still.state == "CREATED" and LAUNCHER_KEY in still.extra


def test_a_job_whose_launch_ended_while_submitting_waits_for_slurm_to_answer(
    tmp_path: Path,
) -> None:
    """Slurm cannot be asked whether it took the job: nothing is decided on a guess."""
    store = Store(tmp_path / "state.db")
    orphan = created("a-1", "submitting", ended_process())
    store.add(orphan)
    transport = UnreachableSlurm()
    settle_orphans(store, Slurm(transport), [orphan])
    assert [argv[0] for argv in transport.asked] == ["squeue"]
    stored = store.get("a-1")
    assert stored is not None and stored.state == "CREATED" and stored.detail == "submitting"
    assert LAUNCHER_KEY in stored.extra  # asked again at the next refresh


class NamedJobs:
    """A Slurm that knows some jobs by name: in squeue, or only in accounting."""

    def __init__(self, queued: list[str], accounted: list[str]) -> None:
        self.queued, self.accounted = queued, accounted

    def ids_by_name(self, name: str, user: str) -> list[str]:
        return self.queued

    def history(self, user: str, since: float) -> list:
        return [
            HistoryRow(job_id, "sweep-1a2b", user, "COMPLETED", *[None] * 5, 0, None, None)
            for job_id in self.accounted
        ]


def element(batch: int, index: int, detail: str = "submitting") -> JobRecord:
    job = created(f"sweep-1a2b-{batch * 4 + index}", detail, ended_process())
    job.extra |= {"sweep": "sweep-1a2b", "array_batch": batch, "array_index": index}
    return job


@pytest.mark.parametrize(
    ("queued", "accounted", "expected"),
    [
        # One array (squeue lists its elements): element 2 of it.
        (["77_0", "77_1", "77_2", "77_3"], [], {(0, 2): "77_2"}),
        # Two arrays, the second submitted later (a higher id), found in accounting.
        ([], ["105_1", "99_0", "105_0", "99_3"], {(0, 2): "99_2", (1, 1): "105_1"}),
        # The first array has left the queue, the second waits in it.
        (["105_[0-3]"], ["99_0", "99_1", "99_2"], {(0, 2): "99_2", (1, 1): "105_1"}),
        # The second array was never submitted: its element failed, the first's is followed.
        (["99_[0-3]"], [], {(0, 1): "99_1", (1, 0): None}),
        ([], [], {(0, 0): None}),
    ],
)
def test_a_sweeps_elements_are_found_in_their_arrays(
    tmp_path: Path, queued: list[str], accounted: list[str], expected: dict
) -> None:
    store = Store(tmp_path / "state.db")
    jobs = [element(batch, index) for batch, index in expected]
    for job in jobs:
        store.add(job)
    settle_orphans(store, NamedJobs(queued, accounted), jobs)  # type: ignore[arg-type]
    for job, want in zip(jobs, expected.values(), strict=True):
        stored = store.get(job.name)
        assert stored is not None
        if want is None:
            assert stored.state == "FAILED" and stored.terminal, stored
            assert stored.detail.endswith("while submitting; Slurm has no job by its name")
        else:
            assert (stored.state, stored.slurm_job_id) == ("PENDING", want), stored
            assert stored.detail.endswith("ended while submitting; found in Slurm")
