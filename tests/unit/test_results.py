"""Reading a job's return value (rank 0's result.json) and each way it can be missing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from konduktor_slurm.service.errors import (
    EXIT_FAILED,
    EXIT_NO_RESULT,
    JobFailedError,
    MalformedResultError,
    NoResultReportedError,
    ResultTooLargeError,
)
from konduktor_slurm.service.results import RESULT_MAX_BYTES, read_result, result_path
from konduktor_slurm.store import JobRecord
from konduktor_slurm.transport import LocalTransport


def job(tmp_path: Path, state: str = "COMPLETED", detail: str = "") -> JobRecord:
    return JobRecord(
        name="train-1a2b",
        task_name="train",
        user="me",
        resources="1x(-)",
        num_nodes=2,
        job_dir=str(tmp_path),
        log_path=str(tmp_path / "job.log"),
        state=state,
        detail=detail,
        created_at=time.time(),
        terminal=state in ("COMPLETED", "FAILED"),
    )


def write_result(tmp_path: Path, data: bytes, rank: int = 0) -> None:
    path = tmp_path / "output" / f"rank-{rank}" / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_rank_zero_result_is_the_value(tmp_path: Path) -> None:
    write_result(tmp_path, b'{"loss": 0.25, "steps": [1, 2]}')
    write_result(tmp_path, b'{"from": "rank 1"}', rank=1)
    assert read_result(LocalTransport(), job(tmp_path)) == {"loss": 0.25, "steps": [1, 2]}
    assert result_path(job(tmp_path)) == f"{tmp_path}/output/rank-0/result.json"


def test_failed_job_has_no_result_even_if_it_wrote_one(tmp_path: Path) -> None:
    write_result(tmp_path, b"1")
    with pytest.raises(JobFailedError, match=r"FAILED \(rank 1 exited 3\)") as info:
        read_result(LocalTransport(), job(tmp_path, "FAILED", "rank 1 exited 3"))
    assert info.value.exit_code == EXIT_FAILED


def test_missing_result(tmp_path: Path) -> None:
    with pytest.raises(NoResultReportedError, match="rank 0 wrote no") as info:
        read_result(LocalTransport(), job(tmp_path))
    assert info.value.exit_code == EXIT_NO_RESULT


@pytest.mark.parametrize(
    "data", [b"", b"{not json", b"\xff\xfe", b"[" * 100_000, b'{"a": 1} trailing']
)
def test_malformed_result(tmp_path: Path, data: bytes) -> None:
    write_result(tmp_path, data)
    with pytest.raises(MalformedResultError, match="not valid JSON") as info:
        read_result(LocalTransport(), job(tmp_path))
    assert info.value.exit_code == EXIT_NO_RESULT


def test_result_over_the_cap(tmp_path: Path) -> None:
    write_result(tmp_path, b'"' + b"x" * RESULT_MAX_BYTES + b'"')
    with pytest.raises(ResultTooLargeError, match="larger than 10 MiB"):
        read_result(LocalTransport(), job(tmp_path))
    write_result(tmp_path, b'"' + b"x" * (RESULT_MAX_BYTES - 2) + b'"')
    assert len(read_result(LocalTransport(), job(tmp_path))) == RESULT_MAX_BYTES - 2
