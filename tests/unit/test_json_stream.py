"""`status --json` writes its JSON a job at a time: the same bytes as json.dumps(indent=2)."""

from __future__ import annotations

import io
import json

import pytest

from konduktor_slurm.lifecycle import State
from konduktor_slurm.views import write_json_list

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
