"""A task's ``event_callback``: a command run where konduktor runs (the login node, or your
workstation over SSH) at each state change of the job, once per change.

Whichever konduktor process sees a change first runs its callback: ``report``, ``logs
--follow`` (and ``launch`` while it follows), ``launch --wait``, ``result`` and the SDK's
``Job.wait``/``Job.result`` call :func:`run_due` after each refresh, ``launch`` after it
submits. The store hands each change to one process only (``Store.claim_due_events``), so
two of them at the same moment never run the same callback twice. ``status`` records
changes but leaves their callbacks to those: it must stay fast.

A callback runs with a timeout, its output kept out of the command's own output (a
``report --format json`` or ``result`` stays a clean pipe); one that fails or hangs is
named in one line on stderr and never stops the command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from konduktor_slurm.store import DueEvent, JobRecord, Store

CALLBACK_TIMEOUT_SECONDS = 30.0
_OUTPUT_SHOWN = 200  # characters of a failing callback's last output line


def _warn_on_stderr(message: str) -> None:
    from konduktor_slurm.store import warn_on_stderr

    warn_on_stderr(message)


def run_due(
    store: Store,
    jobs: Iterable[JobRecord] | None = None,
    *,
    warn: Callable[[str], None] = _warn_on_stderr,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
) -> int:
    """Run the callbacks of the changes no process has run yet: of ``jobs`` (a follower's
    job), or of every job (a report). The number run (or tried)."""
    if jobs is not None:
        names = [job.name for job in jobs if job.event_callback]
        if not names:
            return 0  # nothing to claim: no store transaction in a follower's every poll
        events = store.claim_due_events(names)
    else:
        events = store.claim_due_events()
    records: dict[str, JobRecord | None] = {}
    for event in events:
        if event.job_name not in records:
            records[event.job_name] = store.get(event.job_name)
        run_callback(event, records[event.job_name], warn=warn, timeout=timeout)
    return len(events)


def callback_environment(event: DueEvent, job: JobRecord | None) -> dict[str, str]:
    """What the callback is told about the change (on top of konduktor's own environment)."""
    task_name = job.task_name if job else event.job_name.rsplit("-", 1)[0]
    slurm_job_id = (job.slurm_job_id if job else None) or ""
    at = datetime.fromtimestamp(event.at).astimezone().isoformat(timespec="seconds")
    return {
        "KONDUKTOR_JOB_NAME": event.job_name,
        "KONDUKTOR_TASK_NAME": task_name,
        "KONDUKTOR_SLURM_JOB_ID": slurm_job_id,
        "KONDUKTOR_OLD_STATE": event.old_state,
        "KONDUKTOR_NEW_STATE": event.state,
        "KONDUKTOR_STATE_DETAIL": event.detail,
        "KONDUKTOR_RESTART_ATTEMPT": str(restart_attempt(job)),
        "KONDUKTOR_EVENT_TIME": at,
        "KONDUKTOR_EVENT_ID": str(event.id),
        # The names SkyPilot's managed jobs give their event_callback.
        "JOB_STATUS": event.state,
        "TASK_NAME": task_name,
        "SKYPILOT_TASK_ID": f"konduktor-{event.job_name}-{slurm_job_id}",
    }


def restart_attempt(job: JobRecord | None) -> int:
    """The job's KONDUKTOR_RESTART_ATTEMPT as last seen: Slurm's requeues plus konduktor's
    own retries (job_config.max_restarts) inside this run."""
    if job is None:
        return 0
    restarts = job.extra.get("restarts")
    attempt = job.extra.get("attempt")
    total = restarts if isinstance(restarts, int) else 0
    if isinstance(attempt, list) and attempt and isinstance(attempt[0], int):
        total += max(attempt[0] - 1, 0)
    return total


def run_callback(
    event: DueEvent,
    job: JobRecord | None,
    *,
    warn: Callable[[str], None] = _warn_on_stderr,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
) -> bool:
    """Run one callback; True when it exited 0. Its output is kept, not shown, unless it
    fails (then its last line is)."""
    change = f"{event.old_state or 'new'} -> {event.state}"
    what = f"event_callback of {event.job_name} ({change})"
    shell = shutil.which("bash") or "/bin/sh"
    try:
        process = subprocess.Popen(
            [shell, "-c", event.command],
            env={**os.environ, **callback_environment(event, job)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # on timeout, everything it started is stopped too
        )
    except OSError as exc:
        warn(f"Warning: {what} could not start: {exc.strerror or exc}")
        return False
    started = time.monotonic()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        warn(f"Warning: {what} did not finish within {timeout:g}s; it was stopped")
        return False
    except BaseException:  # Ctrl-C: the callback must not outlive konduktor
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    if process.returncode == 0:
        return True
    lines = output.decode(errors="replace").strip().splitlines()
    said = f": {lines[-1][:_OUTPUT_SHOWN]}" if lines else ""
    code = process.returncode
    how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
    took = time.monotonic() - started
    warn(f"Warning: {what} {how} after {took:.1f}s{said}")
    return False
