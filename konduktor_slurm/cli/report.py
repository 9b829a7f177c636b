"""`konduktor report`: a report for cron (what changed, what failed, what the GPUs cost)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from konduktor_slurm import durations
from konduktor_slurm.cli import (
    EXIT_FAILED,
    EXIT_STALE,
    EXIT_USAGE,
    fail,
    main,
    open_slurm,
    open_store,
    settings,
)

if TYPE_CHECKING:
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord

CURSOR_ID = "report.cursor_transition_id"  # newest transition already reported
BILLED_UNTIL = "report.billed_until"  # runs that ended up to here are in an earlier report
FIRST_WINDOW_SECONDS = 24 * 3600  # the first report looks back one day


def parse_age(text: str, option: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1.5d``, ``1w`` -> seconds, or a usage error naming ``option``."""
    try:
        return durations.parse_age(text)
    except durations.DurationError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


def parse_since(text: str, now: float) -> float:
    """``--since``: an age before ``now`` (``2h``) or a time (``2026-11-28T14:00``)."""
    try:
        return durations.parse_when(text, now)
    except durations.DurationError as exc:
        fail(f"--since: {exc}", EXIT_USAGE)


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


def write_atomically(path: Path, text: str) -> None:
    """Readers (node_exporter, a web server) never see half a file."""
    import tempfile  # not at import time: `konduktor status` must start fast

    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# A failed job's log tail in a report: at most this much of the file's end is read.
LOG_TAIL_BYTES = 256 * 1024


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


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html", "prometheus"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE atomically (temp file + rename) instead of stdout.",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Report from WHEN (2h, 1d, or 2026-11-28T14:00) instead of the last report; "
    "the cursor is neither read nor moved.",
)
@click.option(
    "--stuck-after",
    default="2h",
    show_default=True,
    metavar="AGE",
    help="List jobs PENDING or SUSPENDED for longer than AGE.",
)
@click.option(
    "--fail-on-failure",
    is_flag=True,
    help="Exit 1 when a job FAILED since the last report (for cron MAILTO).",
)
@click.option(
    "-u",
    "--all-users",
    is_flag=True,
    help="Every user's jobs (an operator's view); default: yours.",
)
@click.option(
    "--log-lines",
    default=10,
    show_default=True,
    help="Lines of the failing rank's log shown per failed job.",
)
@click.option(
    "--lock-timeout",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for an overlapping report to finish.",
)
def report(
    fmt: str,
    output: Path | None,
    since: str | None,
    stuck_after: str,
    fail_on_failure: bool,
    all_users: bool,
    log_lines: int,
    lock_timeout: float,
) -> None:
    """What changed since the last report, what failed, and what the GPUs cost. For cron.

    \b
    Each run reports only what happened since the previous one (a cursor in the
    store); runs never prompt, never colour, and every Slurm call has a timeout.
    Two overlapping runs take turns (a lock), so nothing is reported twice.

    \b
    Billing counts ACTIVE time only: per job and per user, ACTIVE time, node-hours
    and GPU-hours of the runs that ended in the window. Suspended and pending time,
    and runs lost to a requeue (preemption, stop by requeue), are shown apart.

    \b
    Exit codes: 0 nothing alarming; 1 a job FAILED since the last report (only
    with --fail-on-failure); 3 Slurm could not be reached (what is known is still
    reported, marked stale).

    \b
    Crontab examples:
      MAILTO=team@example.org
      0 * * * *  konduktor report --fail-on-failure
      */10 * * * *  konduktor report -u --format html -o /var/www/html/gpus.html
      * * * * *  konduktor report --format prometheus -o /var/lib/node_exporter/konduktor.prom
    """
    from konduktor_slurm.report import build_report, failing_rank
    from konduktor_slurm.report_formats import RENDERERS
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.tracker import refresh
    from konduktor_slurm.transport import TransportError

    config = settings()
    stuck_seconds = parse_age(stuck_after, "--stuck-after")
    store = open_store(config)
    with report_lock(config.home / "report.lock", lock_timeout) as locked:
        if not locked:
            click.echo(
                f"Another `konduktor report` still holds {config.home / 'report.lock'} after "
                f"{lock_timeout:g}s; this run reports nothing (the next one will).",
                err=True,
            )
            return
        slurm = open_slurm(config)
        try:
            now = time.time()
            jobs = store.jobs(include_hidden=True)
            result = refresh(store, slurm, jobs, all_users=all_users)
            stale = result.stale_reason
            if not stale and not all_users and all(job.terminal for job in jobs):
                # Nothing to ask squeue about; a cron report must still notice a dead cluster.
                try:
                    slurm.ping()
                except (SlurmError, TransportError) as exc:
                    stale = str(exc)
            if since is not None:
                window_start = parse_since(since, now)
                new = [t for t in store.transitions() if t.at > window_start]
                newest_id = None
                billed_from = window_start
            else:
                last_id = int(store.get_meta(CURSOR_ID) or 0)
                new, newest_id = store.transitions_after(last_id)
                first = min((job.created_at for job in jobs), default=now)
                billed_from = float(
                    store.get_meta(BILLED_UNTIL) or max(first - 1, now - FIRST_WINDOW_SECONDS)
                )
                window_start = billed_from
            runs, accounting_error = [], None
            if not stale:
                try:
                    # Only jobs that may have a run ending in the window: a store with
                    # years of history must not turn into one huge --jobs list.
                    ids = [
                        job.slurm_job_id
                        for job in jobs
                        if job.slurm_job_id
                        and (job.end_time is None or job.end_time >= billed_from)
                    ]
                    if all_users:
                        runs = slurm.runs(since=billed_from, all_users=True)
                    elif ids:
                        runs = slurm.runs(ids)
                except (SlurmError, TransportError) as exc:
                    accounting_error = str(exc)
            everyone = [*jobs, *result.others]
            by_name = {job.name: job for job in jobs}
            tails = {}
            for transition in new:
                job = by_name.get(transition.job_name)
                if transition.state == "FAILED" and job is not None and not stale:
                    tails[job.name] = log_tail(slurm, job, failing_rank(job)[0], log_lines)
            built = build_report(
                now=now,
                window_start=window_start,
                jobs=everyone,
                new_transitions=new,
                history=store.transitions([job.name for job in jobs]),
                runs=runs,
                log_tails=tails,
                stuck_after=stuck_seconds,
                stale_reason=stale,
                accounting_error=accounting_error,
                users=()
                if all_users
                else (slurm.transport.user if not stale else (store.last_user() or "?"),),
            )
        except TransportError as exc:
            fail(str(exc), EXIT_STALE)
        finally:
            slurm.transport.close()
        text = RENDERERS[fmt](built)
        if output is not None:
            write_atomically(output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        # Only once the report is out: a crash before this reports the same things again,
        # never loses them.
        if newest_id is not None:
            with store.transaction():
                store.set_meta(CURSOR_ID, str(newest_id))
                if not stale and accounting_error is None:
                    store.set_meta(BILLED_UNTIL, repr(now))
    if built.stale:
        click.echo(f"Warning: Slurm could not be reached ({built.stale_reason}).", err=True)
        sys.exit(EXIT_STALE)
    if fail_on_failure and built.failures:
        sys.exit(EXIT_FAILED)
