"""Pruning: finished jobs' snapshots and node workdirs go after the retention; records,
logs and results stay.

The service runs on the fake transport of the workflow tests (recorded Slurm answers, real
rsync staging, real bash doing the removal in a temp dir); the node script's part is run with
bash, as the nodes run it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from konduktor_slurm.config import Settings
from konduktor_slurm.render import JobPlan, render_node_script
from konduktor_slurm.service import launch
from konduktor_slurm.service import prune as pruning
from konduktor_slurm.service.logs import read as read_log
from konduktor_slurm.service.results import read_result
from konduktor_slurm.service.session import Session
from konduktor_slurm.service.status import status
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.staging import SilentReporter
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.task import TaskOverrides, parse_task
from konduktor_slurm.transport import TransportError
from tests.unit.fake_slurm import FakeSlurm

DAY = 86400.0


def make_session(tmp_path: Path, fake: FakeSlurm, retention: float | None = 30 * DAY) -> Session:
    config = Settings(
        home=tmp_path / "home",
        config_path=tmp_path / "config.yaml",
        jobs_dir=str(tmp_path / "jobs"),
        node_workdir=str(tmp_path / "nw"),
        retention=retention,
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return Session(config, Store(config.store_path), Slurm(fake))


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def session(tmp_path: Path, fake: FakeSlurm) -> Session:
    return make_session(tmp_path, fake)


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A workdir and a file to mount."""
    workdir = tmp_path / "code"
    workdir.mkdir()
    (workdir / "train.py").write_text("print('train')\n" * 500)
    (tmp_path / "data.txt").write_text("data\n")
    return workdir


def task_text(tmp_path: Path, name: str = "t") -> str:
    return (
        f"name: {name}\nworkdir: {tmp_path / 'code'}\n"
        f"file_mounts:\n  /data/data.txt: {tmp_path / 'data.txt'}\n"
        "secrets:\n  TOKEN: null\nrun: python train.py\n"
    )


def submit(session: Session, text: str) -> JobRecord:
    task = parse_task(text, overrides=TaskOverrides(secrets=["TOKEN=s3cr3t"]))
    return launch.submit(session, launch.prepare(session, task), SilentReporter())


def finish(session: Session, fake: FakeSlurm, *jobs: JobRecord, state: str = "COMPLETED"):
    """Slurm says the jobs ended; a status refresh records it."""
    for job in jobs:
        fake.jobs[job.slurm_job_id].queue, fake.jobs[job.slurm_job_id].acct = None, state
    status(session)
    return [session.store.get(job.name) for job in jobs]


def after_end(*jobs: JobRecord, seconds: float = 1.0) -> float:
    """A moment ``seconds`` after the last of them ended (the recorded end times)."""
    return max(job.end_time for job in jobs) + seconds


def snapshot(job: JobRecord) -> set[str]:
    return {
        part for part in ("workdir", "mounts", "secrets.env") if (Path(job.job_dir) / part).exists()
    }


# ---- what goes and what stays ---------------------------------------------------------------


def test_a_finished_jobs_snapshot_goes_and_its_log_result_and_record_stay(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    first = submit(session, task_text(tmp_path))
    second = submit(session, task_text(tmp_path))  # the task's latest snapshot now
    assert snapshot(first) == {"workdir", "mounts", "secrets.env"}
    first_dir = Path(first.job_dir)
    (first_dir / "job.log").write_text("0: training\n0: done\n")
    (first_dir / "output" / "rank-0").mkdir(parents=True)
    (first_dir / "output" / "rank-0" / "result.json").write_text('{"loss": 0.1}')
    (first_dir / "rank-0.exit").write_text("0\n")
    first, second = finish(session, fake, first, second)

    result = pruning.prune(session, older_than=0, now=after_end(first, second))

    assert [unit.name for unit in result.pruned] == [first.name]
    assert [unit.name for unit in result.kept] == [second.name]
    assert snapshot(first) == set() and snapshot(second) == {"workdir", "mounts", "secrets.env"}
    assert sorted(p.name for p in first_dir.iterdir()) == [
        "job.log", "output", "rank-0.exit", "sbatch.sh"
    ]  # fmt: skip
    pruned = session.store.get(first.name)
    assert pruned.extra["pruned_at"] == result.at and pruned.state == "COMPLETED"
    assert [t.state for t in session.store.transitions([first.name])] == [
        "CREATED", "PENDING", "COMPLETED"
    ]  # fmt: skip
    assert read_log(session, pruned) == "0: training\n0: done\n"
    assert read_result(session.slurm.transport, pruned) == {"loss": 0.1}
    assert "pruned_at" not in session.store.get(second.name).extra
    # Considered once: the next prune does not look at it again.
    again = pruning.prune(session, older_than=0, now=after_end(first, second))
    assert again.pruned == [] and [unit.name for unit in again.kept] == [second.name]


def test_unfinished_jobs_are_never_pruned(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    pending = submit(session, task_text(tmp_path))
    running = submit(session, task_text(tmp_path))
    stopped = submit(session, task_text(tmp_path))
    fake.jobs[running.slurm_job_id].queue = "RUNNING"
    fake.jobs[stopped.slurm_job_id].reason = "JobHeldUser"
    status(session)
    result = pruning.prune(session, older_than=0, now=time.time() + 365 * DAY)
    assert result.pruned == [] and result.kept == []
    for job in (pending, running, stopped):
        assert snapshot(job) == {"workdir", "mounts", "secrets.env"}


def test_the_latest_snapshot_goes_once_a_newer_launch_replaces_it(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    (first,) = finish(session, fake, submit(session, task_text(tmp_path)))
    kept = pruning.prune(session, older_than=0, now=after_end(first))
    assert [unit.name for unit in kept.kept] == [first.name] and snapshot(first)
    second = submit(session, task_text(tmp_path))  # hard-links train.py from the first
    staged = Path(second.job_dir) / "workdir" / "train.py"
    assert staged.stat().st_nlink == 2
    # The newer launch still runs: the older snapshot goes, the newer one is untouched.
    result = pruning.prune(session, older_than=0, now=after_end(first))
    assert [unit.name for unit in result.pruned] == [first.name] and not snapshot(first)
    assert staged.read_text() == "print('train')\n" * 500 and staged.stat().st_nlink == 1


def test_a_sweeps_shared_snapshot_waits_for_every_variant_then_goes_once(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    task = parse_task(task_text(tmp_path, "sw"), overrides=TaskOverrides(secrets=["TOKEN=x"]))
    grid = launch.parse_grid(["SEED=0,1,2"])
    variants = launch.submit_all(
        session, launch.prepare(session, task, grid=grid), SilentReporter()
    )
    sweep_dir = Path(variants[0].job_dir).parent.parent
    done = finish(session, fake, *variants[:2])
    later = time.time() + 365 * DAY
    assert pruning.prune(session, older_than=0, now=later).pruned == []  # one still runs
    done += finish(session, fake, variants[2])
    # Every variant finished, but the sweep is still its task's latest snapshot.
    result = pruning.prune(session, older_than=0, now=later)
    assert [(unit.name, unit.jobs) for unit in result.kept] == [
        (variants[0].extra["sweep"], tuple(sorted(job.name for job in variants)))
    ]
    (newer,) = finish(session, fake, submit(session, task_text(tmp_path, "sw")))
    result = pruning.prune(session, older_than=0, now=later)
    assert [unit.name for unit in result.pruned] == [variants[0].extra["sweep"]]
    assert not (sweep_dir / "workdir").exists() and not (sweep_dir / "secrets.env").exists()
    assert (sweep_dir / "logs").is_dir() and (sweep_dir / "sbatch.sh").is_file()
    assert all("pruned_at" in session.store.get(job.name).extra for job in variants)
    assert [unit.name for unit in result.kept] == [newer.name]


def test_the_retention_decides_and_never_prunes_nothing(
    tmp_path: Path, fake: FakeSlurm, code: Path
) -> None:
    session = make_session(tmp_path, fake, retention=3600)
    first = submit(session, task_text(tmp_path))
    second = submit(session, task_text(tmp_path))
    first, second = finish(session, fake, first, second)
    assert pruning.prune(session, now=after_end(first, second, seconds=3000)).pruned == []
    result = pruning.prune(session, now=after_end(first, second, seconds=3700))
    assert [unit.name for unit in result.pruned] == [first.name]
    session.config = session.config._replace(retention=None)
    third = finish(session, fake, submit(session, task_text(tmp_path)))[0]
    never = pruning.prune(session, now=after_end(third, seconds=365 * DAY))
    assert never.older_than is None and never.pruned == [] and snapshot(second)
    # --older-than still prunes when asked to.
    assert [u.name for u in pruning.prune(session, 0, now=after_end(third)).pruned] == [second.name]


def test_a_dry_run_removes_and_records_nothing_and_counts_the_bytes_freed(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    (code / "only-in-first.bin").write_bytes(b"x" * 12345)
    first = submit(session, task_text(tmp_path))
    (code / "only-in-first.bin").unlink()
    second = submit(session, task_text(tmp_path))  # train.py hard-linked: not freed
    first, second = finish(session, fake, first, second)
    dry = pruning.prune(session, older_than=0, dry_run=True, now=after_end(first, second))
    assert [unit.name for unit in dry.pruned] == [first.name]
    # Files only the first snapshot holds; train.py (and the unchanged mount) are hard links
    # the second snapshot keeps.
    only_first = [
        path
        for path in Path(first.job_dir).rglob("*")
        if path.is_file()
        and path.stat().st_nlink == 1
        and "output" not in path.parts
        and path.name not in ("sbatch.sh", "job.log")
    ]
    assert "train.py" not in {path.name for path in only_first}
    assert dry.bytes_freed == sum(path.stat().st_size for path in only_first) >= 12345
    assert snapshot(first) == {"workdir", "mounts", "secrets.env"}
    assert "pruned_at" not in session.store.get(first.name).extra
    done = pruning.prune(session, older_than=0, now=after_end(first, second))
    assert done.bytes_freed == dry.bytes_freed and not snapshot(first)


def test_node_workdirs_the_login_node_sees_go_with_the_snapshot_if_marked_as_ours(
    session: Session, fake: FakeSlurm, tmp_path: Path, code: Path
) -> None:
    cancelled = submit(session, task_text(tmp_path))
    finished = submit(session, task_text(tmp_path))
    foreign = submit(session, task_text(tmp_path))
    latest = submit(session, task_text(tmp_path))
    nw = tmp_path / "nw"
    for job, mark in (
        (cancelled, ".konduktor-running-0"),  # killed mid-run: never marked finished
        (finished, ".konduktor-finished"),
        (foreign, None),  # a directory of that name, but not made by a job script
        (latest, ".konduktor-finished"),
    ):
        (nw / job.name).mkdir(parents=True)
        (nw / job.name / "checkpoint.pt").write_text("weights")
        if mark:
            (nw / job.name / mark).touch()
    jobs = finish(session, fake, cancelled, state="CANCELLED by 0")
    jobs += finish(session, fake, finished, foreign, latest)
    result = pruning.prune(session, older_than=0, now=after_end(*jobs))
    assert sorted(unit.name for unit in result.pruned) == sorted(
        job.name for job in (cancelled, finished, foreign)
    )
    assert sorted(p.name for p in nw.iterdir()) == sorted([foreign.name, latest.name])


# ---- selection in the store ----------------------------------------------------------------


def record(name: str, end: float | None, *, terminal: bool = True, **extra) -> JobRecord:
    return JobRecord(
        name=name,
        task_name=name.rsplit("-", 1)[0],
        user="u",
        resources="1x(-)",
        num_nodes=1,
        job_dir=f"/jobs/{extra.get('sweep', name)}"
        + (f"/elements/{name.rsplit('-', 1)[1]}" if "sweep" in extra else ""),
        log_path="/jobs/x.log",
        state="COMPLETED" if terminal else "ACTIVE",
        created_at=1000.0,
        end_time=end,
        terminal=terminal,
        extra=extra,
    )


def test_candidates_are_finished_unpruned_jobs_past_the_cutoff_oldest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    for job in (
        record("new-1", 5000.0),
        record("old-2", 2000.0),
        record("old-1", 1500.0),
        record("running-1", None, terminal=False),
        record("done-1", 1000.0, pruned_at=1200.0),
        record("cancelled-1", None),  # ended without an end time: its last transition counts
        record("sweep-0", 1000.0, sweep="sweep", grid={"S": "0"}),
        record("sweep-1", 1100.0, sweep="sweep", grid={"S": "1"}),
        record("busy-0", 1000.0, sweep="busy"),
        record("busy-1", None, terminal=False, sweep="busy"),
    ):
        store.add(job)
    store.set_state(store.get("cancelled-1"), "FAILED", "cancelled", at=2500.0)
    found, _units = store.prune_candidates(3000.0)
    assert [c.name for c in found] == ["sweep-0", "sweep-1", "old-1", "old-2", "cancelled-1"]
    assert found[-1].ended == 2500.0 and found[0].sweep == "sweep" and found[2].sweep is None
    # A bounded prune gets the first units only, a sweep with every variant, and the count.
    bounded, units = store.prune_candidates(3000.0, units=2)
    assert [c.name for c in bounded] == ["sweep-0", "sweep-1", "old-1"] and units == 4
    assert [c.name for c in store.prune_candidates(1050.0)[0]] == []  # sweep-1 ended after
    store.mark_pruned(["old-1", "sweep-0", "sweep-1"], 3100.0)
    assert [c.name for c in store.prune_candidates(3000.0)[0]] == ["old-2", "cancelled-1"]
    assert store.get("old-1").extra["pruned_at"] == 3100.0


def test_damaged_rows_are_no_candidates_or_plain_jobs_never_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", notify=lambda line: None)
    store.add(record("text-1", 1000.0))
    store.add(record("json-1", 1000.0))
    store.add(record("blob-1", 1000.0))
    db = store._db
    db.execute("UPDATE jobs SET end_time='yesterday' WHERE name='text-1'")
    db.execute("UPDATE jobs SET extra='{not json \"sweep\"' WHERE name='json-1'")
    db.execute("UPDATE jobs SET extra=x'00ff' WHERE name='blob-1'")
    found = {c.name: c for c in store.prune_candidates(5000.0)[0]}
    # text-1: its end time is unreadable, so its creation transition counts.
    assert sorted(found) == ["json-1", "text-1"] and found["json-1"].sweep is None


# The selection as it was before migration 5 (every candidate read, then picked in Python),
# verbatim: the indexed one must answer exactly as it did.
_REFERENCE_QUERY = """
WITH j AS (
    SELECT name, task_name, job_dir, terminal,
        CASE WHEN typeof(end_time) IN ('integer', 'real') THEN end_time
             ELSE (SELECT max(at) FROM transitions t WHERE t.job_name = jobs.name) END AS ended,
        CASE WHEN instr(extra, '"sweep"') AND json_valid(extra)
             THEN json_extract(extra, '$.sweep') END AS sweep
    FROM jobs
    WHERE typeof(extra) = 'text' AND instr(extra, '"pruned_at"') = 0
)
SELECT name, task_name, job_dir, ended, sweep FROM j
WHERE (sweep IS NULL AND terminal = 1 AND ended < ?1)
    OR sweep IN (
        SELECT sweep FROM j WHERE sweep IS NOT NULL GROUP BY sweep
        HAVING min(coalesce(terminal = 1 AND ended < ?1, 0)) = 1
    )
ORDER BY ended, name
"""


def reference_candidates(store: Store, cutoff: float, units: int | None) -> tuple[list, int]:
    def key(row) -> tuple:
        return ("sweep", row[4]) if row[4] is not None else ("job", row[0])

    rows = store._db.execute(_REFERENCE_QUERY, (cutoff,)).fetchall()
    keys = {key(row): None for row in rows}
    if units is not None and len(keys) > units:
        newest = {
            row[0]
            for row in store._db.execute(
                "SELECT name, max(created_at) FROM jobs GROUP BY task_name"
            )
        }
        holding = {key(row) for row in rows if row[0] in newest}
        chosen = set(sorted(keys, key=lambda k: k in holding)[:units])
        rows = [row for row in rows if key(row) in chosen]
    names = [row[0] for row in rows if isinstance(row[0], str) and isinstance(row[3], float)]
    return names, len(keys)


def random_store(path: Path, seed: int) -> Store:
    """Jobs of a few tasks: finished or not, pruned or not, sweeps, cancelled before they
    ran, ties in end time, damaged end times and extras."""
    import random

    rng = random.Random(seed)
    store = Store(path, notify=lambda line: None)
    created = iter(rng.sample(range(1, 100_000), 400))  # no task has two jobs created at once
    for index in range(rng.randint(0, 120)):
        task = f"t{rng.randint(0, 6)}"
        sweep = f"{task}-sw{rng.randint(0, 5)}" if rng.random() < 0.3 else None
        extra: dict = {"sweep": sweep, "grid": {"S": str(index)}} if sweep else {}
        if rng.random() < 0.3:
            extra["pruned_at"] = 1.0
        terminal = rng.random() < 0.85
        end = rng.choice([None, float(rng.randint(0, 50) * 100)]) if terminal else None
        job = record(f"{task}-{index}", end, terminal=terminal, **extra)
        store.add(dataclasses.replace(job, task_name=task, created_at=float(next(created))))
        if end is None and rng.random() < 0.8:
            store.set_state(store.get(job.name), job.state, "", at=float(rng.randint(0, 5000)))
        damage = rng.random()
        if damage < 0.03:
            store._db.execute("UPDATE jobs SET end_time='soon' WHERE name=?", (job.name,))
        elif damage < 0.06:
            store._db.execute("UPDATE jobs SET extra='{\"sweep\": ' WHERE name=?", (job.name,))
        elif damage < 0.08:
            store._db.execute("UPDATE jobs SET end_time=x'01' WHERE name=?", (job.name,))
    return store


@pytest.mark.parametrize("seed", range(40))
def test_the_indexed_selection_picks_as_reading_every_candidate_did(
    tmp_path: Path, seed: int
) -> None:
    store = random_store(tmp_path / "state.db", seed)
    for cutoff in (0.0, 1000.0, 2500.0, 6000.0):
        for units in (None, 0, 1, 2, 3, 5, 8, 1000):
            found, total = store.prune_candidates(cutoff, units)
            expected = reference_candidates(store, cutoff, units)
            assert ([c.name for c in found], total) == expected, (cutoff, units)


def test_a_bounded_prune_reads_more_pages_past_units_holding_their_tasks_newest_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many tasks launched once each, oldest first: each job is its task's newest, so the
    first pages hold no unit that is free to go."""
    from konduktor_slurm import store as store_module

    monkeypatch.setattr(store_module, "_PAGE_SLACK", 1)
    store = Store(tmp_path / "state.db")
    for index in range(10):
        store.add(record(f"once{index}-1", 100.0 + index))
    store.add(record("twice-1", 500.0))
    store.add(dataclasses.replace(record("twice-2", 600.0), created_at=2000.0))
    found, total = store.prune_candidates(3000.0, units=2)
    # The one free unit, then the oldest of those kept for last.
    assert ([c.name for c in found], total) == (["once0-1", "twice-1"], 12)
    assert ([c.name for c in found], total) == reference_candidates(store, 3000.0, 2)


def test_the_prune_selection_reads_indexes_not_every_row(tmp_path: Path) -> None:
    from konduktor_slurm import store as store_module

    store = Store(tmp_path / "state.db")

    def plan(sql: str, *params: object) -> str:
        rows = store._db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return " | ".join(row[3] for row in rows)

    assert "INDEX jobs_prunable" in plan(store_module._PLAIN_COUNT, 1.0)
    assert "INDEX jobs_prunable" in plan(store_module._PLAIN_ROWS, 1.0)
    other = plan(store_module._OTHER_CANDIDATES, 1.0)
    # The unpruned sweep variants from their partial index; never every row of jobs.
    assert "SCAN jobs USING INDEX jobs_unpruned_sweeps" in other
    assert "SCAN jobs" not in other.replace("SCAN jobs USING INDEX", "")
    newest = plan(
        "SELECT (SELECT name FROM jobs WHERE task_name = value "
        "ORDER BY created_at DESC, name DESC LIMIT 1) FROM json_each(?)",
        '["t"]',
    )
    assert "COVERING INDEX jobs_by_task" in newest and "TEMP B-TREE" not in newest


@pytest.mark.parametrize(
    ("name", "job_dir", "why"),
    [
        ("t-1", "/", "is not a plain absolute path"),
        ("t-1", "/home/alice", "is not <jobs_dir>/t-1"),
        ("t-1", "relative/t-1", "is not a plain absolute path"),
        ("t-1", "/jobs/../etc/t-1", "is not a plain absolute path"),
        ("..", "/jobs/..", "is not a file name"),
        ("t/1", "/jobs/t/1", "is not a file name"),
    ],
)
def test_a_record_that_does_not_look_like_konduktors_is_never_removed(
    name: str, job_dir: str, why: str
) -> None:
    from konduktor_slurm.store import PruneCandidate

    candidate = PruneCandidate(name, "t", job_dir, 1.0, None)
    units, skipped = pruning.plan_units([candidate], "~/konduktor_workdir")
    assert units == [] and len(skipped) == 1 and why in skipped[0][1]


# ---- one command, bounded and quiet when automatic ---------------------------------------------


class Counting(FakeSlurm):
    """Counts the removal commands and what they carry on their command line."""

    def __init__(self) -> None:
        super().__init__()
        self.removals: list[list[str]] = []
        self.refuse: str | None = None

    def run(self, argv, *, timeout=30.0, input_text=None):
        if argv[:1] == ["bash"]:
            self.removals.append(list(argv))
            if self.refuse:
                raise TransportError(self.refuse)
        return super().run(argv, timeout=timeout, input_text=input_text)


def test_one_command_removes_many_snapshots_and_its_command_line_does_not_grow(
    tmp_path: Path, code: Path
) -> None:
    fake = Counting()
    session = make_session(tmp_path, fake)
    jobs = finish(session, fake, *(submit(session, task_text(tmp_path)) for _ in range(6)))
    pruning.prune(session, older_than=0, now=after_end(*jobs))
    (argv,) = fake.removals
    assert len(argv) == 6 and not any(job.name in " ".join(argv) for job in jobs)
    assert sum("pruned_at" in session.store.get(job.name).extra for job in jobs) == 5


def test_automatic_pruning_is_bounded_paced_and_quiet(
    tmp_path: Path, code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Counting()
    session = make_session(tmp_path, fake, retention=60)
    monkeypatch.setattr(pruning, "AUTO_LIMIT", 2)
    jobs = finish(session, fake, *(submit(session, task_text(tmp_path)) for _ in range(4)))
    warnings: list[str] = []
    now = after_end(*jobs, seconds=120)
    first = pruning.auto_prune(session, warnings.append, now=now)
    assert first is not None and len(first.pruned) == 2 and first.left == 2
    second = pruning.auto_prune(session, warnings.append, now=now + 1)  # work was left: runs
    assert second is not None and len(second.pruned) == 1 and second.bytes_freed is None
    assert pruning.auto_prune(session, warnings.append, now=now + 2) is None  # not due
    assert len(fake.removals) == 2
    assert pruning.auto_prune(session, warnings.append, now=now + 62) is not None
    assert warnings == []


def test_kept_latest_snapshots_never_take_the_turn_of_ones_that_can_go(
    tmp_path: Path, code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many tasks launched once: each one's only job is its latest snapshot, kept. A bounded
    prune must still reach the snapshots that can go."""
    fake = Counting()
    session = make_session(tmp_path, fake, retention=0)
    monkeypatch.setattr(pruning, "AUTO_LIMIT", 1)
    once = [submit(session, task_text(tmp_path, name)) for name in ("a", "b", "c")]
    twice = [submit(session, task_text(tmp_path, "d")) for _ in range(2)]
    jobs = finish(session, fake, *once, *twice)
    result = pruning.auto_prune(session, lambda line: None, now=after_end(*jobs))
    assert [unit.name for unit in result.pruned] == [twice[0].name] and result.kept == []


def test_a_failed_automatic_prune_is_one_warning_and_records_nothing(
    tmp_path: Path, code: Path
) -> None:
    fake = Counting()
    session = make_session(tmp_path, fake, retention=0)
    jobs = finish(session, fake, *(submit(session, task_text(tmp_path)) for _ in range(2)))
    fake.refuse = "ssh: connection to login lost"
    warnings: list[str] = []
    assert pruning.auto_prune(session, warnings.append, now=after_end(*jobs)) is None
    assert warnings == [
        "Warning: could not prune old job snapshots (could not prune on the cluster: ssh: "
        "connection to login lost); `konduktor prune` retries"
    ]
    assert snapshot(jobs[0]) and "pruned_at" not in session.store.get(jobs[0].name).extra
    fake.refuse = None
    assert [
        u.name for u in pruning.auto_prune(session, warnings.append, now=after_end(*jobs)).pruned
    ] == [jobs[0].name]


# ---- the node script ---------------------------------------------------------------------------


def run_node(tmp_path: Path, run: str, retention: int | None, node_workdir: Path, name="t-1a2b"):
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    (tmp_path / "src").mkdir(exist_ok=True)
    task = parse_task(f"name: t\nworkdir: {tmp_path / 'src'}\nrun: {json.dumps(run)}\n")
    plan = JobPlan(
        job_name=name,
        job_dir=str(job_dir),
        log_path=str(job_dir / "job.log"),
        workdir=str(tmp_path / "src"),
        node_workdir=str(node_workdir),
        node_retention=retention,
    )
    script = render_node_script(task, plan)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SLURM_NODEID": "0"}
    env |= {"KONDUKTOR_JOB_DIR": str(job_dir), "KONDUKTOR_JOB_NAME": name}
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    return proc, script


def wait_gone(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def test_a_node_marks_its_workdir_running_then_finished(tmp_path: Path) -> None:
    nw = tmp_path / "nw"
    (nw / "t-1a2b").mkdir(parents=True)
    (nw / "t-1a2b" / ".konduktor-finished").touch()  # from an earlier run of a requeued job
    proc, _ = run_node(tmp_path, 'ls -A > "$KONDUKTOR_JOB_DIR/seen.txt"; exit 3', None, nw)
    assert proc.returncode == 3, proc.stderr
    assert (tmp_path / "job" / "seen.txt").read_text().split() == [".konduktor-running-0"]
    assert [p.name for p in (nw / "t-1a2b").iterdir()] == [".konduktor-finished"]


def test_starting_a_job_removes_node_workdirs_finished_longer_ago_than_the_retention(
    tmp_path: Path,
) -> None:
    nw = tmp_path / "nw"
    hour_ago = time.time() - 3600
    for name, marks in {
        "old-1": [".konduktor-finished"],
        "busy-1": [".konduktor-finished", ".konduktor-running-1"],  # a rank runs there
        "recent-1": [".konduktor-finished"],
        "unmarked-1": [],  # not a job script's directory
    }.items():
        (nw / name / "sub").mkdir(parents=True)
        (nw / name / "sub" / "ckpt").write_text("x")
        for mark in marks:
            (nw / name / mark).touch()
            if name != "recent-1":
                os.utime(nw / name / mark, (hour_ago, hour_ago))
    proc, script = run_node(tmp_path, "true", 1800, nw)
    assert proc.returncode == 0, proc.stderr
    assert "konduktor_prune_node_workdirs" in script and " 1800 " in script
    assert wait_gone(nw / "old-1")
    assert sorted(p.name for p in nw.iterdir() if p.is_dir()) == [
        "busy-1", "recent-1", "t-1a2b", "unmarked-1"
    ]  # fmt: skip
    # With retention 0s, this job's own workdir goes at the next job's start.
    proc, _ = run_node(tmp_path, "true", 0, nw, name="t-3c4d")
    time.sleep(1.1)  # past the marks' second
    proc, _ = run_node(tmp_path, "true", 0, nw, name="t-5e6f")
    assert wait_gone(nw / "t-3c4d") and (nw / "t-5e6f").is_dir()


def test_without_retention_the_node_removes_nothing(tmp_path: Path) -> None:
    nw = tmp_path / "nw"
    (nw / "old-1").mkdir(parents=True)
    (nw / "old-1" / ".konduktor-finished").touch()
    os.utime(nw / "old-1" / ".konduktor-finished", (0, 0))
    proc, script = run_node(tmp_path, "true", None, nw)
    assert proc.returncode == 0 and "konduktor_prune_node_workdirs" not in script
    time.sleep(0.5)
    assert (nw / "old-1").is_dir()


def test_the_node_workdir_reaches_the_pruning_quoted(tmp_path: Path) -> None:
    nw = tmp_path / "n w $(touch pwned) `touch pwned2`"
    (nw / "old-1").mkdir(parents=True)
    (nw / "old-1" / ".konduktor-finished").touch()
    os.utime(nw / "old-1" / ".konduktor-finished", (0, 0))
    proc, _ = run_node(tmp_path, "true", 60, nw)
    assert proc.returncode == 0, proc.stderr
    assert wait_gone(nw / "old-1") and (nw / "t-1a2b").is_dir()
    assert not list(tmp_path.rglob("pwned*"))


def test_the_configured_retention_reaches_every_job_script(tmp_path: Path, fake: FakeSlurm) -> None:
    task = parse_task("name: t\nrun: echo hi\n")
    for retention, line in (
        (None, None),
        (0.0, " 0 < /dev/null"),
        (1.5, " 2 < /dev/null"),  # whole seconds, rounded up
        (30 * DAY, " 2592000 < /dev/null"),
    ):
        session = make_session(tmp_path, fake, retention=retention)
        script = launch.prepare(session, task).script
        if line is None:
            assert "konduktor_prune_node_workdirs" not in script
        else:
            assert f"konduktor_prune_node_workdirs {tmp_path / 'nw'!s}{line}" in script
        session.close()


# ---- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A konduktor home with two finished jobs of one task, as `konduktor prune` finds it."""
    home = tmp_path / "kdhome"
    monkeypatch.setenv("KONDUKTOR_HOME", str(home))
    monkeypatch.setenv("KONDUKTOR_CONFIG", str(tmp_path / "config.yaml"))
    (tmp_path / "config.yaml").write_text(f"node_workdir: {tmp_path / 'nw'}\nretention: 1d\n")
    store = Store(home / "state.db")
    jobs = home / "jobs"
    for index, name in enumerate(("t-0001", "t-0002")):
        (jobs / name / "workdir").mkdir(parents=True)
        (jobs / name / "workdir" / "big.bin").write_bytes(b"x" * 2000)
        (jobs / name / "job.log").write_text(f"{name} says hi\n")
        job = record(name, time.time() - 3 * DAY + index)
        job.job_dir, job.log_path = str(jobs / name), str(jobs / name / "job.log")
        job.slurm_job_id = f"{10 + index}"
        store.add(job)
    (jobs / ".latest").mkdir()
    (jobs / ".latest" / "t").write_text("t-0002\n1 2\n")
    store.close()
    return jobs


def konduktor(*args: str):
    from konduktor_slurm.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_prune_asks_without_y_and_refuses_without_a_terminal(cli_env: Path) -> None:
    result = konduktor("prune")
    assert result.exit_code == 2
    assert "not on a terminal, so cannot ask: add -y" in result.output
    assert (cli_env / "t-0001" / "workdir").is_dir()


def test_prune_dry_run_shows_then_y_removes_and_status_says_so(cli_env: Path) -> None:
    dry = konduktor("prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would remove 1 snapshot of jobs that ended over 1d ago:" in dry.output
    assert "t-0001" in dry.output and "That would free about 2.0 kB." in dry.output
    assert "Kept t-0002: the latest snapshot of task t" in dry.output
    assert (cli_env / "t-0001" / "workdir").is_dir()
    done = konduktor("prune", "-y", "--json")
    assert done.exit_code == 0, done.output
    payload = json.loads(done.output)
    assert [unit["name"] for unit in payload["pruned"]] == ["t-0001"]
    assert payload["bytes_freed"] == 2000 and payload["older_than_seconds"] == DAY
    assert payload["kept"][0]["reason"] == "the latest snapshot of its task"
    assert not (cli_env / "t-0001" / "workdir").exists()
    detail = konduktor("status", "t-0001")
    assert detail.exit_code == 0, detail.output
    assert "Snapshot:     pruned " in detail.output and "(logs and results kept)" in detail.output
    shown = json.loads(konduktor("status", "--json", "t-0001").output)["jobs"][0]
    assert shown["snapshot_pruned_at"] is not None and shown["status"] == "COMPLETED"
    assert (
        json.loads(konduktor("status", "--json", "t-0002").output)["jobs"][0]["snapshot_pruned_at"]
        is None
    )
    logs = konduktor("logs", "--no-follow", "t-0001")
    assert logs.exit_code == 0 and "t-0001 says hi" in logs.output
    nothing = konduktor("prune", "-y", "--older-than", "1d")
    assert "Kept t-0002" in nothing.output and "Removed" not in nothing.output


def test_prune_with_retention_never_says_how_to_prune_anyway(cli_env: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("retention: never\n")
    result = konduktor("prune", "-y")
    assert result.exit_code == 0
    assert "retention is `never`" in result.output and "--older-than" in result.output
    assert (cli_env / "t-0001" / "workdir").is_dir()
    bad = konduktor("prune", "-y", "--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than" in bad.output
