"""The report run (for cron): what changed since the last report, what failed, what the GPUs
cost, as a ``report.Report`` that the caller renders (text, markdown, json, html, prometheus).

Each run reports only what happened since the previous one: a cursor (the id of the newest
transition reported) lives in the store, and moves only once the caller says the report is
out (``ReportRun.commit``), so a crash reports the same things again and never loses them.
Overlapping runs take turns on a lock file, so no transition is reported twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import UnreachableError

if TYPE_CHECKING:
    from konduktor_slurm.report import Report
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.slurm import AcctRun, Slurm
    from konduktor_slurm.store import JobRecord, Store, Transition

CURSOR_ID = "report.cursor_transition_id"  # newest transition already reported
BILLED_UNTIL = "report.billed_until"  # runs that ended up to here are in an earlier report
FIRST_WINDOW_SECONDS = 24 * 3600  # the first report looks back one day
# A failed job's log tail in a report: at most this much of the file's end is read.
LOG_TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class ReportOptions:
    """How a report is asked for (the CLI's options, the SDK's arguments)."""

    since: float | None = None  # a window of one's choice (epoch); None: since the last report
    stuck_after: float = 2 * 3600  # PENDING or SUSPENDED longer than this is "stuck"
    all_users: bool = False  # every user's jobs and bills (an operator's view)
    log_lines: int = 10  # of the failing rank's log, per failed job
    lock_timeout: float = 60.0  # how long to wait for an overlapping run


@dataclass
class ReportRun:
    """A report built, and the cursor to store once it has been delivered."""

    report: Report
    store: Store
    newest_id: int | None  # the cursor to store once the report is out (None: --since)
    billed_until: float | None  # None: accounting was not read, bill these runs next time

    def commit(self) -> None:
        """The report is out: move the cursor, so the next run starts after it."""
        if self.newest_id is None:
            return
        with self.store.transaction():
            self.store.set_meta(CURSOR_ID, str(self.newest_id))
            if self.billed_until is not None:
                self.store.set_meta(BILLED_UNTIL, repr(self.billed_until))


@contextlib.contextmanager
def report_lock(path: Path, timeout: float) -> Iterator[bool]:
    """Hold the report lock (waiting up to ``timeout``); yields False if it never came free.

    Two overlapping runs (a slow one and the next cron tick) must not both report the same
    transitions: the second waits for the first to move the cursor, then reports only what
    came after.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(slurm: Slurm, job: JobRecord, rank: int | None, lines: int) -> list[str]:
    """The last ``lines`` lines of the failing rank's output (all ranks if unknown)."""
    from konduktor_slurm.logs import read_last_lines
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    try:
        text = read_last_lines(slurm.transport, job.log_path, lines, rank, max_bytes=LOG_TAIL_BYTES)
    except (SlurmError, TransportError, OSError):
        return []
    return text.splitlines()


def _meta_number(store: Store, key: str, default: float) -> float:
    """A number the report keeps in the store; a damaged one counts as never set (the
    report then covers its default window again rather than crashing)."""
    import math

    try:
        value = float(store.get_meta(key) or default)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


@contextlib.contextmanager
def report_run(session: Session, options: ReportOptions) -> Iterator[ReportRun | None]:
    """Build the report while holding the lock; None when an overlapping run kept it past
    ``options.lock_timeout`` (that run reports; the next one reports what it leaves)."""
    with report_lock(session.config.home / "report.lock", options.lock_timeout) as locked:
        if not locked:
            yield None
            return
        yield _build(session, options)


def _build(session: Session, options: ReportOptions) -> ReportRun:
    """The report of ``options``' window, reading only that window's share of the store.

    A store may hold years of jobs; a report costs what happened in its window, not what the
    store holds: the unfinished jobs (refreshed from Slurm; the waiting ones may be stuck),
    the transitions of the window, the jobs they and the window's runs belong to, and those
    jobs' histories. Jobs per state are counted by SQLite.
    """
    from konduktor_slurm.report import build_report, failing_rank
    from konduktor_slurm.service.notify import run_due
    from konduktor_slurm.slurm import RateLimited, SlurmError
    from konduktor_slurm.tracker import refresh
    from konduktor_slurm.transport import TransportError

    store, slurm = session.store, session.slurm
    try:
        now = time.time()
        open_jobs = store.open_jobs()
        result = refresh(store, slurm, open_jobs, all_users=options.all_users)
        run_due(store)  # every job's event_callback not yet run, once per change
        stale = result.stale_reason
        if not stale and not options.all_users and all(job.terminal for job in open_jobs):
            # Nothing to ask squeue about; a cron report must still notice a dead cluster.
            try:
                slurm.ping()
            except RateLimited:
                pass  # up, only throttling this user for a moment
            except (SlurmError, TransportError) as exc:
                stale = str(exc)
        newest_id: int | None = None
        if options.since is not None:
            window_start = options.since
            new = store.transitions_since(window_start)
            billed_from = window_start
        else:
            last_id = int(_meta_number(store, CURSOR_ID, 0))
            new, newest_id = store.transitions_after(last_id)
            first = store.first_created_at()
            first = now if first is None else first
            billed_from = _meta_number(
                store, BILLED_UNTIL, max(first - 1, now - FIRST_WINDOW_SECONDS)
            )
            window_start = billed_from
        runs, accounting_error = [], None
        if not stale:
            try:
                runs = _window_runs(session, options, billed_from)
            except (SlurmError, TransportError) as exc:
                accounting_error = str(exc)
        jobs = _jobs_of(store, open_jobs, new, runs)
        by_name = {job.name: job for job in jobs}
        tails = {}
        for transition in new:
            job = by_name.get(transition.job_name)
            if transition.state == "FAILED" and job is not None and not stale:
                tails[job.name] = log_tail(slurm, job, failing_rank(job)[0], options.log_lines)
        if options.all_users:
            users: tuple[str, ...] = ()
        else:
            users = (slurm.transport.user if not stale else (store.last_user() or "?"),)
        if options.since is not None:
            # Every transition after the window opened is in `new` already: of these jobs'
            # histories only the part before it is read (few rows), not all of it again
            # (30 days of a busy store: 33,000 transitions read and decoded twice).
            earlier = store.transitions(by_name, until=window_start)
            history = earlier + [t for t in new if t.job_name in by_name]
        else:
            history = store.transitions(by_name)
        counts = store.state_counts()
        for other in result.others:
            counts[other.state] = counts.get(other.state, 0) + 1
        built = build_report(
            now=now,
            window_start=window_start,
            jobs=[*jobs, *result.others],
            new_transitions=new,
            history=history,
            runs=runs,
            log_tails=tails,
            stuck_after=options.stuck_after,
            stale_reason=stale,
            accounting_error=accounting_error,
            users=users,
            counts=counts,
        )
    except TransportError as exc:
        raise UnreachableError(str(exc)) from None
    billed_until = now if not stale and accounting_error is None else None
    return ReportRun(built, store, newest_id, billed_until)


def _window_runs(session: Session, options: ReportOptions, billed_from: float) -> list[AcctRun]:
    """Accounting's runs of the jobs that may have a run ending in the window: asked by job
    id while there are few, else by the window (one sacct, however many jobs) and kept to
    those jobs. A store with years of history never turns into a huge --jobs list."""
    from konduktor_slurm.slurm import IDS_PER_CALL

    slurm = session.slurm
    if options.all_users:
        return slurm.runs(since=billed_from, all_users=True)
    ids = session.store.slurm_ids_ending_since(billed_from)
    if len(ids) <= IDS_PER_CALL:
        return slurm.runs(ids) if ids else []
    wanted = set(ids)
    window = slurm.runs(since=billed_from, user=slurm.transport.user)
    return [run for run in window if run.job_id in wanted]


def _jobs_of(
    store: Store, open_jobs: list[JobRecord], new: list[Transition], runs: list[AcctRun]
) -> list[JobRecord]:
    """The jobs a report speaks of: the unfinished ones (as refreshed), those that changed
    state in the window and those with a run in it; newest first."""
    known = {job.name for job in open_jobs}
    jobs = list(open_jobs)
    named = {t.job_name for t in new} - known
    for job in store.jobs_named(named):
        known.add(job.name)
        jobs.append(job)
    run_ids = {run.job_id for run in runs}
    for job in store.jobs_with_slurm_ids(run_ids):
        if job.name not in known:
            known.add(job.name)
            jobs.append(job)
    # As store.jobs() lists them: a Slurm id two jobs share maps to the same one as before.
    jobs.sort(key=lambda job: job.created_at, reverse=True)
    return jobs
