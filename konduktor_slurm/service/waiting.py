"""Waiting for a job to end, without hammering the controller.

Every wait (``launch --wait``, ``result``, the SDK's ``Job.wait``/``Job.result``) polls with
the backoff of ``konduktor_slurm.polling`` (2 s, growing to 30 s; a change of state starts
again from 2 s). One poll is one shared refresh (``tracker.refresh_shared``): one ``squeue``
for every unfinished job of the store, which any other waiter of the same store within its
interval reuses instead of asking again. A controller that does not answer, or answers
slowly, is met with a longer pause, never with retries in a loop.

Between polls, a wait on a few jobs reads the end of their logs once a second (a file read,
not a Slurm call), as ``logs --follow`` does: when a job's script prints that its run
finished, the next poll comes a quarter second later, so a 10 s job's wait returns at about
10 s, not at the backoff's next look (16 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from konduktor_slurm.polling import (  # noqa: F401 (the documented names, kept importable here)
    POLL_FACTOR,
    POLL_MAX,
    POLL_START,
    Backoff,
    poll_intervals,
)
from konduktor_slurm.service.errors import ResultTimeoutError

# Waits on at most this many jobs read their logs' ends between polls (a sweep's wait does
# not read hundreds of logs a second).
LOG_WATCH_MAX_JOBS = 8
LOG_WATCH_SECONDS = 1.0
# A run's end line (and a restart line after it) fit in this much of the log's end.
_LOG_TAIL_BYTES = 256

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.tracker import RefreshResult


def poll_once(
    session: Session, jobs: list[JobRecord], max_age: float, wall: Callable[[], float]
) -> tuple[RefreshResult, float]:
    """One shared refresh of ``jobs``; what it found and how long it took."""
    from konduktor_slurm.tracker import refresh_shared

    started = wall()
    result = refresh_shared(session.store, session.slurm, jobs, max_age, now=started)
    return result, max(0.0, wall() - started)


def wait_all_terminal(
    session: Session,
    jobs: list[JobRecord],
    timeout: float | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> list[JobRecord]:
    """``wait_until_terminal`` for many jobs (a sweep): one poll for all of them; the
    backoff starts again whenever any of them changes state."""

    def timed_out() -> ResultTimeoutError:
        running = sum(not job.terminal for job in jobs)
        return ResultTimeoutError(
            f"{running} of {len(jobs)} jobs did not finish within {timeout:g}s; they keep running"
        )

    _wait(session, jobs, timeout, timed_out, sleep=sleep, clock=clock, wall=wall)
    return jobs


def wait_until_terminal(
    session: Session,
    job: JobRecord,
    timeout: float | None = None,
    *,
    on_change: Callable[[JobRecord], None] | None = None,
    on_stale: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> JobRecord:
    """Refresh ``job`` until it is COMPLETED or FAILED; return it.

    Raises ``ResultTimeoutError`` when ``timeout`` seconds pass first (the job keeps running).
    ``on_change`` sees each new state, ``on_stale`` the reason whenever Slurm cannot be asked.
    ``clock`` measures the timeout; ``wall`` (epoch seconds) dates the polls other waiters
    share.
    """

    def timed_out() -> ResultTimeoutError:
        return ResultTimeoutError(
            f"{job.name} did not finish within {timeout:g}s; it is {job.state}"
            + (f" ({job.detail})" if job.detail else "")
            + " and keeps running"
        )

    _wait(
        session,
        [job],
        timeout,
        timed_out,
        on_change=on_change,
        on_stale=on_stale,
        sleep=sleep,
        clock=clock,
        wall=wall,
    )
    return job


def _wait(
    session: Session,
    jobs: list[JobRecord],
    timeout: float | None,
    timed_out: Callable[[], ResultTimeoutError],
    *,
    on_change: Callable[[JobRecord], None] | None = None,
    on_stale: Callable[[str], None] | None = None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    wall: Callable[[], float],
) -> None:
    from konduktor_slurm.service.notify import run_due

    deadline = None if timeout is None else clock() + timeout
    backoff = Backoff()
    seen = [job.state for job in jobs]
    max_age = 0.0  # the first look is our own; later, another waiter's recent one will do
    tails: dict[str, bytes] = {}  # the end of each watched log, as last read
    while True:
        result, took = poll_once(session, [job for job in jobs if not job.terminal], max_age, wall)
        run_due(session.store, jobs)  # the jobs' event_callback, once per change
        if result.stale and on_stale is not None:
            on_stale(result.stale_reason or "")
        changed = [job for job, state in zip(jobs, seen, strict=True) if job.state != state]
        seen = [job.state for job in jobs]
        if on_change is not None:
            for job in changed:
                on_change(job)
        if all(job.terminal for job in jobs):
            return
        pause = backoff.next_pause(changed=bool(changed), failed=result.stale, took=took)
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise timed_out()
            pause = min(pause, left)
        if _sleep_until_an_end_line(session, jobs, tails, pause, sleep):
            # A run just ended: look a quarter second on, taking another waiter's look made
            # since; the backoff starts again (the job may be restarting, not ending).
            from konduktor_slurm.logs import END_LOOK_SECONDS

            backoff.reset()
            pause = END_LOOK_SECONDS
            sleep(pause)
        max_age = pause


def _sleep_until_an_end_line(
    session: Session,
    jobs: list[JobRecord],
    tails: dict[str, bytes],
    seconds: float,
    sleep: Callable[[float], None],
) -> bool:
    """Sleep ``seconds``, reading the end of each unfinished job's log once a second (when
    there are few); True as soon as one newly ends with its run's end line."""
    watched = [job for job in jobs if not job.terminal]
    if not watched or len(watched) > LOG_WATCH_MAX_JOBS:
        sleep(seconds)
        return False
    from konduktor_slurm.logs import ATTEMPT_FINISHED
    from konduktor_slurm.transport import TransportError

    left = seconds  # counted down slice by slice: a test's clock may stand still
    while left > 0:
        sleep(min(LOG_WATCH_SECONDS, left))
        left -= LOG_WATCH_SECONDS
        for job in watched:
            try:
                tail = session.slurm.transport.read_tail(job.log_path, _LOG_TAIL_BYTES)
            except (OSError, TransportError):
                continue  # the next poll says what is wrong, if anything
            if tail != tails.get(job.name):
                tails[job.name] = tail
                # Among the last two lines: the script prints it last, or just before its
                # restart line. Once a restarted run prints on, an old one no longer counts.
                if ATTEMPT_FINISHED.search(b"\n".join(tail.rstrip(b"\n").split(b"\n")[-2:])):
                    return True
    return False
