"""`status --json` writes its JSON a job at a time: the same bytes as json.dumps(indent=2)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from konduktor_slurm.lifecycle import State
from konduktor_slurm.store import JobRecord
from konduktor_slurm.views import job_json, job_json_text, write_json_list

JOB = {
    "name": "train-1a2b",
    "detail": 'cancelled by "alice"\nline two \u00e9 \U0001f680',
    "terminal": True,
    "slurm_job_id": None,
    "duration_seconds": 12.5,
    "num_nodes": 2,
    "rank_exit_codes": {"2": 0, "10": 3},
    "attempt": [1, 3],
    "empty": {},
    "none": [],
    "history": [{"status": "PENDING", "at": "2026-11-28T17:40:16+01:00"}],
    "floats": [0.1, 1e-07, 1e22, -0.0, float("nan"), float("inf")],
    "tiny": 1e-07,
    "big": 12345678901234567890,
    "negative": -3,
    "zero": 0.0,
    "nan": float("nan"),
    "inf": float("-inf"),
    "control": "\x00\x1f\x7f \\ /",
    "": "empty key",
    "state": State.SUSPENDED_USER,
    "empty list": [],
}


@pytest.mark.parametrize(
    ("head", "items"),
    [
        ({"user": "alice", "stale": False, "stale_reason": None}, []),
        ({"user": "alice", "stale": True, "stale_reason": "squeue: down\nreally"}, [JOB]),
        ({"user": "bob"}, [JOB, {"name": "x"}, {}]),
        ({}, [{"k": [[], [1, [2]]]}]),
        ({"n": 1}, [{1: "int key", 2.5: "float key", None: "null key", False: "bool key"}]),
        # Flat objects, written without json.dumps: int and text keys, int/text/null values;
        # one bool, float, nested or odd-keyed value sends the whole object to json.dumps.
        (
            {},
            [
                {"codes": {0: 0, 1: 137, 10: -1}, "named": {"a\n\u00e9": None, "b": 'x"y'}},
                {"codes": {0: True}, "f": {"x": 1.5}, "n": {"x": {"y": 1}}},
                {"codes": {2.5: 1}, "none": {None: 1}, "big": {"x": 10**30}},
            ],
        ),
    ],
)
def test_the_streamed_json_is_what_json_dumps_writes(head: dict, items: list) -> None:
    out = io.StringIO()
    write_json_list(out, head, "jobs", iter(items))
    assert out.getvalue() == json.dumps({**head, "jobs": items}, indent=2) + "\n"


@pytest.mark.parametrize("count", [1, 7, 8, 9, 16, 17, 300])
def test_lists_of_any_length_across_write_batches_are_what_json_dumps_writes(count: int) -> None:
    # Items are written a batch of 8 at a time: the seams between batches are commas too.
    items = [{"name": f"job-{index}", "index": index} for index in range(count)]
    out = io.StringIO()
    write_json_list(out, {"user": "alice"}, "jobs", iter(items))
    assert out.getvalue() == json.dumps({"user": "alice", "jobs": items}, indent=2) + "\n"


# ---------------------------------------------------------------------------------------
# status --json's jobs: job_json_text writes each job in one piece, without job_json's dict
# ---------------------------------------------------------------------------------------

NOW = 1_764_500_000.25


def _records() -> list[JobRecord]:
    """Jobs of every shape the store gives (tests/unit/test_store_damage.py: what a sound row
    can hold) and a few that only a record built in memory can."""
    base = JobRecord(
        name="train-1a2b",
        task_name="train",
        user="alice",
        resources="2x(8CPU, 64GiMEM, H100:8)",
        num_nodes=2,
        job_dir="/home/alice/.konduktor/jobs/train-1a2b",
        log_path="/home/alice/.konduktor/jobs/train-1a2b/job.log",
        state=State.PENDING,
        created_at=NOW - 100.5,
    )
    finished = replace(
        base,
        state=State.FAILED,
        detail="exit code 3 (rank 10)",
        terminal=True,
        slurm_job_id="4242_7",
        submitted_at=NOW - 90.0000004,
        start_time=NOW - 60.9999996,  # rounds up to the next second, as datetime does
        end_time=NOW - 1,
        gpus_per_node=8,
        extra={
            "slurm_state": "FAILED",
            "reason": None,
            "priority": 17,
            "node_list": "node[1-2]",
            "exit_code": "3:0",
            "rank_exit_codes": {"10": 3, "2": 0, "0": 0},
            "restarts": 2,
            "attempt": [3, 3],
            "pruned_at": NOW - 0.5,
            "unknown": {"kept": ["out", "of", "the JSON"]},
        },
    )
    records = [
        base,
        finished,
        replace(finished, state=State.COMPLETED, detail="", extra={}),
        replace(
            base, state=State.ACTIVE, slurm_job_id="17", submitted_at=NOW - 50, start_time=NOW - 20
        ),
        replace(base, state=State.SUSPENDED_USER, terminal=False, end_time=NOW - 5),
        replace(finished, end_time=None),  # lost: terminal without an end
        replace(
            base,
            name='caf\u00e9 "\U0001f680"\n\x00\\',
            task_name="t\u00e9\x7f",
            user="\u00fc",
            detail='stopped by "bob"\t\u2028',
            resources="",
            job_dir="/jobs/\udcff",  # a path that is not UTF-8, as os.fsdecode gives it
            log_path="",
        ),
        replace(base, extra={"restarts": None, "attempt": None, "rank_exit_codes": {}}),
        replace(finished, extra={"rank_exit_codes": {"007": 137}}),  # one node, rank 7
        replace(finished, extra={"rank_exit_codes": {"1": -9, "0": 0}}),
        replace(base, created_at=0.0, submitted_at=-1.5, start_time=4e9),
        # In memory only: what json writes for types the store would refuse.
        replace(base, num_nodes=True, gpus_per_node=False, terminal=1),  # type: ignore[arg-type]
        replace(base, state="PENDING", slurm_job_id=12345),  # type: ignore[arg-type]
        replace(
            base,
            extra={
                "node_list": ["node1", {"x": [1.5, float("nan"), None]}],
                "slurm_state": float("inf"),
                "reason": True,
                "exit_code": 10**30,
                "restarts": 1.25,
                "attempt": [],
            },
        ),
    ]
    return records


@pytest.mark.parametrize("job", _records(), ids=lambda job: repr(job.name)[:20])
def test_a_jobs_text_is_what_json_dumps_writes_of_its_dict(job: JobRecord) -> None:
    want = json.dumps(job_json(job, NOW), indent=2).replace("\n", "\n    ")
    assert job_json_text(job, NOW) == want


def test_status_json_lists_jobs_as_json_dumps_would() -> None:
    out = io.StringIO()
    jobs = _records()
    head = {"user": "alice", "stale": False, "stale_reason": None}
    write_json_list(out, head, "jobs", jobs, lambda job: job_json_text(job, NOW))
    document = json.dumps({**head, "jobs": [job_json(job, NOW) for job in jobs]}, indent=2)
    assert out.getvalue() == document + "\n"
    assert [job["name"] for job in json.loads(out.getvalue())["jobs"]] == [j.name for j in jobs]
