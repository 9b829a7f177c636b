"""Parsing of real Slurm 22.05 output (recorded from the local cluster, tests/fixtures/slurm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from konduktor_slurm.slurm import (
    QUEUE_FIELDS,
    SlurmError,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    parse_time,
    sacct_command,
    squeue_command,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"


def test_squeue_rows_from_real_output() -> None:
    rows = parse_squeue((FIXTURES / "squeue-22.05.txt").read_text())
    assert set(rows) == {"2", "3", "4", "5", "6"}
    assert rows["2"].state == "COMPLETED" and rows["2"].reason is None
    assert rows["3"].state == "FAILED" and rows["3"].reason == "NonZeroExitCode"
    running = rows["4"]
    assert running.state == "RUNNING"
    assert running.node_list == "node[1-2]"
    assert running.end_time is None  # "NONE" while running
    assert running.start_time == parse_time("2026-11-28T17:48:58")
    held = rows["5"]
    assert (held.state, held.reason, held.priority) == ("PENDING", "JobHeldUser", 0)
    assert held.node_list is None and held.start_time is None
    assert rows["6"].state == "CANCELLED"
    assert all(row.requeueable and row.restarts == 0 for row in rows.values())
    assert rows["2"].user == "root" and rows["2"].name == "wrap"


def test_squeue_ignores_truncated_lines() -> None:
    assert parse_squeue("7\x1fRUNNING\x1f\n\n") == {}


def test_sacct_rows_from_real_output() -> None:
    rows = parse_sacct((FIXTURES / "sacct-22.05.txt").read_text())
    assert rows["2"].state == "COMPLETED" and rows["2"].exit_code == "0:0"
    assert rows["3"].state == "FAILED" and rows["3"].exit_code == "3:0"
    assert rows["6"].state == "CANCELLED by 0"
    pending = rows["5"]
    assert pending.node_list is None  # "None assigned"
    assert pending.time_limit is None  # "Partition_Limit"
    assert pending.start_time is None  # "Unknown"
    assert rows["4"].end_time is None


def test_sacct_keeps_the_latest_run_of_a_requeued_job() -> None:
    output = (
        "9|PREEMPTED|0:0|2026-11-28T10:00:00|2026-11-28T10:01:00|node1|UNLIMITED|bob\n"
        "9|RUNNING|0:0|2026-11-28T10:03:00|Unknown|node2|UNLIMITED|bob\n"
    )
    assert parse_sacct(output)["9"].state == "RUNNING"


@pytest.mark.parametrize(("output", "job_id"), [("42\n", "42"), ("42;cluster\n", "42")])
def test_sbatch_parsable(output: str, job_id: str) -> None:
    assert parse_sbatch(output) == job_id


def test_sbatch_unexpected_output_is_an_error() -> None:
    with pytest.raises(SlurmError, match="unexpected output"):
        parse_sbatch("Submitted batch job 42\n")


def test_one_command_whatever_the_number_of_jobs() -> None:
    ids = [str(n) for n in range(200)]
    squeue = squeue_command(ids)
    assert squeue[0] == "squeue" and "--states=all" in squeue
    assert squeue[-1] == "--jobs=" + ",".join(ids)
    assert all(f"{name}:\x1f" in squeue[3] for name in QUEUE_FIELDS)
    sacct = sacct_command(ids)
    assert sacct[0] == "sacct" and "--parsable2" in sacct and "--allocations" in sacct
