"""Waiting for a job to end, without hammering the controller.

Every wait (``launch --wait``, ``result``, the SDK's ``Job.wait``/``Job.result``) polls with a
backoff: the first look after ``POLL_START`` seconds, each next one ``POLL_FACTOR`` times
later, never more than ``POLL_MAX`` seconds apart; a change of state starts the backoff again
(a job that just started running may end soon). One poll is one refresh: one ``squeue`` for
the job (plus one ``sacct`` when it leaves the queue). A controller that does not answer is
met with the same backoff, never with retries in a loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import ResultTimeoutError

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord

POLL_START = 2.0
POLL_FACTOR = 1.5
POLL_MAX = 30.0


def poll_intervals(
    start: float = POLL_START, factor: float = POLL_FACTOR, most: float = POLL_MAX
) -> Iterator[float]:
    """2, 3, 4.5, 6.75, ... seconds, capped at ``most``."""
    interval = start
    while True:
        yield interval
        interval = min(most, interval * factor)


def wait_until_terminal(
    session: Session,
    job: JobRecord,
    timeout: float | None = None,
    *,
    on_change: Callable[[JobRecord], None] | None = None,
    on_stale: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobRecord:
    """Refresh ``job`` until it is COMPLETED or FAILED; return it.

    Raises ``ResultTimeoutError`` when ``timeout`` seconds pass first (the job keeps running).
    ``on_change`` sees each new state, ``on_stale`` the reason whenever Slurm cannot be asked.
    """
    from konduktor_slurm.service.notify import run_due
    from konduktor_slurm.tracker import refresh

    deadline = None if timeout is None else clock() + timeout
    intervals = poll_intervals()
    seen = job.state
    while True:
        result = refresh(session.store, session.slurm, [job])
        run_due(session.store, [job])  # the job's event_callback, once per change
        if result.stale and on_stale is not None:
            on_stale(result.stale_reason or "")
        if job.state != seen:
            seen = job.state
            intervals = poll_intervals()
            if on_change is not None:
                on_change(job)
        if job.terminal:
            return job
        pause = next(intervals)
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise ResultTimeoutError(
                    f"{job.name} did not finish within {timeout:g}s; it is {job.state}"
                    + (f" ({job.detail})" if job.detail else "")
                    + " and keeps running"
                )
            pause = min(pause, left)
        sleep(pause)
