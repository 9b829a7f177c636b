"""Ranks are numbers: rank 2 comes before rank 10 in `status JOB`, `status --json` and the
report's failing rank, although the store keeps them as JSON (whose keys are strings)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from konduktor_slurm.cli import main
from konduktor_slurm.lifecycle import SlurmFacts
from konduktor_slurm.report import failing_rank
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import _remember_slurm_details, read_rank_reports
from konduktor_slurm.transport import LocalTransport
from konduktor_slurm.views import job_json, rank_exit_codes

RANKS = 12  # ranks 0..11; rank 10 failed with 3, every other exited 0


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """What the job script leaves behind: one rank-N.exit file per node."""
    directory = tmp_path / "jobs" / "wide-1a2b"
    directory.mkdir(parents=True)
    for rank in range(RANKS):
        (directory / f"rank-{rank}.exit").write_text("3\n" if rank == 10 else "0\n")
    return directory


def finished_job(job_dir: Path) -> JobRecord:
    now = time.time()
    return JobRecord(
        name="wide-1a2b",
        task_name="wide",
        user="alice",
        resources=f"{RANKS}x(1CPU)",
        num_nodes=RANKS,
        job_dir=str(job_dir),
        log_path=str(job_dir / "job.log"),
        state="FAILED",
        detail="rank 10 exited 3",
        created_at=now - 60,
        slurm_job_id="4242",
        submitted_at=now - 60,
        start_time=now - 50,
        end_time=now - 10,
        terminal=True,
    )


@pytest.fixture
def stored(tmp_path: Path, job_dir: Path) -> Path:
    """A store holding the job as the tracker records it, read from the real rank files."""
    codes = read_rank_reports(Slurm(LocalTransport()), [str(job_dir)])[str(job_dir)].exit_codes
    job = finished_job(job_dir)
    _remember_slurm_details(job, SlurmFacts(sacct_state="FAILED", rank_exit_codes=codes), None)
    home = tmp_path / "kdhome"
    store = Store(home / "state.db")
    store.add(job)
    store.close()
    return home


def test_ranks_read_back_from_the_store_are_ints_in_rank_order(stored: Path) -> None:
    job = Store(stored / "state.db").get("wide-1a2b")
    assert job is not None
    codes = rank_exit_codes(job)
    assert list(codes) == list(range(RANKS))  # 0, 1, 2, ..., 10, 11: not "10" after "1"
    assert codes[10] == 3 and codes[2] == 0
    assert list(job_json(job)["rank_exit_codes"]) == list(range(RANKS))


def test_status_detail_lists_rank_2_before_rank_10(stored: Path) -> None:
    result = CliRunner().invoke(main, ["status", "wide-1a2b"], env={"KONDUKTOR_HOME": str(stored)})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("Exit codes:"))
    listed = [int(part.split(":")[0].removeprefix("rank ")) for part in line[14:].split(", ")]
    assert listed == list(range(RANKS))
    assert "rank 10: 3" in line


def test_status_json_keeps_its_shape_in_rank_order(stored: Path) -> None:
    result = CliRunner().invoke(
        main, ["status", "--json", "wide-1a2b"], env={"KONDUKTOR_HOME": str(stored)}
    )
    assert result.exit_code == 0, result.output
    codes = json.loads(result.output)["jobs"][0]["rank_exit_codes"]
    assert codes == {str(rank): (3 if rank == 10 else 0) for rank in range(RANKS)}
    assert list(codes) == [str(rank) for rank in range(RANKS)]  # {"1": 0, "2": 0, ..., "10": 3}


@pytest.mark.parametrize(
    ("stored_codes", "expected"),
    [
        ({"10": 3, "2": 5}, (2, 5)),  # both failed: the lowest rank, numerically
        ({"10": 3, "2": 0, "1": 0}, (10, 3)),
        ({10: 7, 9: 1}, (9, 1)),  # as the tracker leaves them in memory (int keys)
    ],
)
def test_the_reports_failing_rank_is_the_lowest_number(
    job_dir: Path, stored_codes: dict, expected: tuple[int, int]
) -> None:
    job = finished_job(job_dir)
    job.extra["rank_exit_codes"] = stored_codes
    assert failing_rank(job) == expected


def test_rank_reports_of_many_job_dirs_are_read_with_bounded_greps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sweep of thousands of variants ending together: their directories are given to
    # grep in runs that stay under one argument's 128 KiB over SSH (here: a small bound),
    # and every job's ranks are still read.
    from konduktor_slurm import transport

    dirs = []
    for index in range(30):
        directory = tmp_path / "jobs" / f"sweep-1a2b-{index}"
        directory.mkdir(parents=True)
        (directory / "rank-0.exit").write_text(f"{index % 3}\n")
        dirs.append(str(directory))
    calls: list[list[str]] = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(list(argv))
            return super().run(argv, **kwargs)

    monkeypatch.setattr(transport, "PATHS_PER_CALL_CHARS", len(dirs[0]) * 4)
    reports = read_rank_reports(Slurm(Counting()), dirs)
    assert {path: report.exit_codes for path, report in reports.items()} == {
        path: {0: index % 3} for index, path in enumerate(dirs)
    }
    assert len(calls) > 5
    assert all(sum(len(a) + 1 for a in argv[6:]) <= len(dirs[0]) * 4 for argv in calls)
