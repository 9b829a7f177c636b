"""A report reads its window's share of the store, and says exactly what it said when it
read every job and every transition.

``report`` used to load the whole store (every job, every transition) and send the id of
every job that might have a run in the window to sacct; a store of years of jobs made it
slow and its sacct command lines long. These tests build one store twice and compare the
report of the window-reading code with the report of the old code (kept here, verbatim, as
the reference) for each kind of run: the cron cursor, ``--since``, ``--all-users``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from konduktor_slurm.config import Settings
from konduktor_slurm.report import Report, build_report, failing_rank
from konduktor_slurm.service import report as service_report
from konduktor_slurm.service.report import (
    BILLED_UNTIL,
    CURSOR_ID,
    ReportOptions,
    log_tail,
    report_run,
)
from konduktor_slurm.service.session import Session
from konduktor_slurm.slurm import IDS_PER_CALL, Slurm, SlurmError, parse_time
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import refresh
from konduktor_slurm.transport import TransportError
from tests.unit.fake_slurm import FakeJob, FakeSlurm

# The recorded accounting runs (tests/fixtures/slurm) end here; the clock stands a day later.
RUN_END = parse_time("2026-11-30T08:42:36")
assert RUN_END is not None
NOW = RUN_END + 86400
DAY = 86400.0
WINDOW_JOBS = IDS_PER_CALL + 100  # more than one sacct --jobs list holds


def old_build(session: Session, options: ReportOptions) -> Report:
    """The report as it was built before it read only its window (the reference)."""
    store, slurm = session.store, session.slurm
    now = time.time()
    jobs = store.jobs(include_hidden=True)
    result = refresh(store, slurm, jobs, all_users=options.all_users)
    stale = result.stale_reason
    if not stale and not options.all_users and all(job.terminal for job in jobs):
        try:
            slurm.ping()
        except (SlurmError, TransportError) as exc:
            stale = str(exc)
    if options.since is not None:
        window_start = options.since
        new = [t for t in store.transitions() if t.at > window_start]
        billed_from = window_start
    else:
        last_id = int(service_report._meta_number(store, CURSOR_ID, 0))
        new, _ = store.transitions_after(last_id)
        first = min((job.created_at for job in jobs), default=now)
        billed_from = service_report._meta_number(
            store, BILLED_UNTIL, max(first - 1, now - service_report.FIRST_WINDOW_SECONDS)
        )
        window_start = billed_from
    runs, accounting_error = [], None
    if not stale:
        try:
            ids = [
                job.slurm_job_id
                for job in jobs
                if job.slurm_job_id and (job.end_time is None or job.end_time >= billed_from)
            ]
            if options.all_users:
                runs = slurm.runs(since=billed_from, all_users=True)
            elif ids:
                runs = slurm.runs(ids)
        except (SlurmError, TransportError) as exc:
            accounting_error = str(exc)
    by_name = {job.name: job for job in jobs}
    tails = {}
    for transition in new:
        job = by_name.get(transition.job_name)
        if transition.state == "FAILED" and job is not None and not stale:
            tails[job.name] = log_tail(slurm, job, failing_rank(job)[0], options.log_lines)
    users = () if options.all_users else (slurm.transport.user,)
    return build_report(
        now=now,
        window_start=window_start,
        jobs=[*jobs, *result.others],
        new_transitions=new,
        history=store.transitions([job.name for job in jobs]),
        runs=runs,
        log_tails=tails,
        stuck_after=options.stuck_after,
        stale_reason=stale,
        accounting_error=accounting_error,
        users=users,
    )


def job(name: str, job_id: str | None, created: float, **fields: object) -> JobRecord:
    values: dict = dict(
        name=name, task_name=name.rsplit("-", 1)[0], user="kdtest", resources="1x(H100:2)",
        num_nodes=1, gpus_per_node=2, job_dir=f"/nonexistent/{name}",
        log_path=f"/nonexistent/{name}/job.log", state="CREATED", detail="staging workdir",
        created_at=created, slurm_job_id=job_id,
    )  # fmt: skip
    values.update(fields)
    return JobRecord(**values)


def build_world(home: Path, fake: FakeSlurm) -> Session:
    """A store with a long history, the window's jobs, waiting jobs and odd ones, and a
    fake Slurm that agrees with it."""
    home.mkdir(parents=True)
    config = Settings(home=home, config_path=home / "config.yaml", jobs_dir=str(home / "jobs"))
    store = Store(config.store_path)
    with store.transaction():

        def lifecycle(record: JobRecord, *states: tuple[str, str, float]) -> None:
            store.add(record)
            for state, detail, at in states:
                record.terminal = state in ("COMPLETED", "FAILED")
                store.set_state(record, state, detail, at)

        # Finished long ago: outside every window, never asked about again.
        for index in range(40):
            end = NOW - 60 * DAY + index * 3600
            record = job(f"old-{index}", str(1000 + index), end - 3600, start_time=end - 1800,
                         end_time=end, submitted_at=end - 3600)  # fmt: skip
            lifecycle(record, ("PENDING", "submitted", end - 3500),
                      ("ACTIVE", "", end - 1800), ("COMPLETED", "", end))  # fmt: skip
        # Finished in the last days: more of them than one sacct --jobs list holds; every
        # tenth FAILED, one taken down with `down`.
        for index in range(WINDOW_JOBS):
            end = NOW - 5 * DAY + index * 600
            job_id = str(2000 + index)
            failed = index % 10 == 0
            record = job(f"sweep-{index}", job_id, end - 3600, start_time=end - 1800,
                         end_time=end, submitted_at=end - 3600, hidden=index == 7,
                         extra={"rank_exit_codes": {"0": 1 if failed else 0}})  # fmt: skip
            lifecycle(record, ("PENDING", "submitted", end - 3500), ("ACTIVE", "", end - 1800),
                      ("FAILED" if failed else "COMPLETED", "", end))  # fmt: skip
            # Slurm calls them all by the sweep's name, as it does a grid's array elements.
            acct = "FAILED" if failed else "COMPLETED"
            fake.add(FakeJob(job_id, "sweep", queue=None, acct=acct, runs=("COMPLETED",)))
        # Waiting: one for three days (stuck), one since an hour; both still queued.
        for name, job_id, since in (("stuck-0", "3000", 3 * DAY), ("fresh-0", "3001", 3600.0)):
            record = job(name, job_id, NOW - since, submitted_at=NOW - since)
            lifecycle(record, ("PENDING", "submitted", NOW - since))
            fake.add(FakeJob(job_id, name))
        # Left the queue since the last look: the refresh finds it FAILED.
        record = job("gone-0", "3002", NOW - 7200, submitted_at=NOW - 7200)
        lifecycle(record, ("PENDING", "submitted", NOW - 7000), ("ACTIVE", "", NOW - 6000))
        fake.add(FakeJob("3002", "gone-0", queue=None, acct="FAILED", exit_code="3:0",
                         runs=("FAILED",)))  # fmt: skip
        # Never reached Slurm (a launch that died staging), and a finished one still queued.
        lifecycle(job("unsent-0", None, NOW - 600))
        record = job("done-0", "3003", NOW - 900, submitted_at=NOW - 900, end_time=NOW - 60)
        lifecycle(record, ("PENDING", "submitted", NOW - 800), ("COMPLETED", "", NOW - 60))
        fake.add(FakeJob("3003", "done-0", queue="COMPLETED", acct="COMPLETED"))
    # Another user's konduktor job, seen by --all-users only.
    fake.add(FakeJob("4000", "theirs-0", user="alice"))
    return Session(config, store, Slurm(fake))


def reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: ReportOptions, meta: dict
) -> tuple[Report, Report, FakeSlurm]:
    """(the report now, the old code's report, the fake Slurm the new one asked)."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    built = []
    for which in ("new", "old"):
        fake = FakeSlurm()
        session = build_world(tmp_path / which, fake)
        with session.store.transaction():
            for key, value in meta.items():
                session.store.set_meta(key, value)
        if which == "new":
            with report_run(session, options) as run:
                assert run is not None
                built.append((run.report, fake))
        else:
            built.append((old_build(session, options), fake))
        session.close()
    (new, fake), (old, _) = built
    return new, old, fake


CASES = {
    "first cron report": (ReportOptions(lock_timeout=1), {}),
    # Billed up to two days ago, changes reported up to one day ago (an earlier run whose
    # accounting failed): runs end in the window of jobs that changed before the cursor.
    "cron report after an earlier one": (
        ReportOptions(lock_timeout=1),
        {CURSOR_ID: str(4 * (40 + 576)), BILLED_UNTIL: repr(NOW - 2 * DAY)},
    ),
    "--since a week": (ReportOptions(since=NOW - 7 * DAY, lock_timeout=1), {}),
    "--since an hour": (ReportOptions(since=NOW - 3600, lock_timeout=1), {}),
    "--all-users": (ReportOptions(since=NOW - 7 * DAY, all_users=True, lock_timeout=1), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_window_report_says_what_the_whole_store_report_said(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options, meta = CASES[case]
    new, old, _ = reports(tmp_path, monkeypatch, options, meta)
    assert new.transitions  # each case has something to say
    assert dataclasses.asdict(new) == dataclasses.asdict(old)
    assert new == old


def test_the_scenario_fills_every_part_of_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that the comparison above compares something in every part."""
    new, _, _ = reports(tmp_path, monkeypatch, CASES["--since a week"][0], {})
    assert [s.job for s in new.stuck] == ["stuck-0"]
    assert {"gone-0", "sweep-0"} <= {f.job for f in new.failures}
    assert len(new.jobs_usage) > IDS_PER_CALL and "sweep-1" in new.timelines
    assert new.counts["COMPLETED"] > 0 and new.counts["FAILED"] > 0 and new.counts["PENDING"] == 2


def test_a_window_of_many_jobs_is_one_sacct_and_no_command_line_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = ReportOptions(since=NOW - 7 * DAY, lock_timeout=1)
    new, _, fake = reports(tmp_path, monkeypatch, options, {})
    runs = [argv for argv in fake.slurm_calls("sacct") if "--duplicates" in argv]
    assert len(runs) == 1 and not any(arg.startswith("--jobs=") for arg in runs[0])
    assert "--user=kdtest" in runs[0]
    assert len(new.jobs_usage) > IDS_PER_CALL  # every job of the window is billed all the same
    longest = max(len(" ".join(argv)) for argv in fake.calls)
    assert longest < 2000, longest


def test_a_few_jobs_are_still_asked_for_by_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = ReportOptions(since=NOW - 3600, lock_timeout=1)
    _, _, fake = reports(tmp_path, monkeypatch, options, {})
    runs = [argv for argv in fake.slurm_calls("sacct") if "--duplicates" in argv]
    assert len(runs) == 1 and any(arg.startswith("--jobs=") for arg in runs[0])
