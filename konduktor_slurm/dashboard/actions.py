"""The page's stop / start / down buttons: the same workflows as ``konduktor stop/start/down
-y JOB`` (``service.control``: every check, every refusal), and the lines the CLI prints.

Runs on the hub's session thread. A refusal (a finished job, an unknown name, Slurm saying
no) comes back as the CLI's ``Error: ...`` lines and nothing changes, exactly as there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from konduktor_slurm.service.control import ControlResult
    from konduktor_slurm.service.session import Session

VERBS = ("stop", "start", "down")


@dataclass
class Outcome:
    """What a dashboard action did: its HTTP status and the lines the CLI would print."""

    ok: bool
    status: int  # the HTTP status: 200 done; 4xx/5xx refused or failed (nothing, or not all, done)
    messages: list[str] = field(default_factory=list)  # what the CLI prints, line by line


def http_status(exit_code: int, not_found: bool = False) -> int:
    """A workflow's exit code as an HTTP status: 2 bad input (404 for an unknown job),
    3 unreachable, 1 refused by the checks or by Slurm."""
    from konduktor_slurm.service.errors import EXIT_UNREACHABLE, EXIT_USAGE

    if exit_code == EXIT_USAGE:
        return 404 if not_found else 400
    if exit_code == EXIT_UNREACHABLE:
        return 503
    return 409


def run(session: Session, verb: str, job: str, mode: str | None = None) -> Outcome:
    """``konduktor <verb> -y <job>`` (``--mode`` for stop), as an Outcome."""
    from konduktor_slurm.service import control
    from konduktor_slurm.service.errors import JobNotFoundError, KonduktorError

    messages: list[str] = []
    try:
        if verb == "stop":
            plan = control.plan_stop(session, (job,), mode=mode)
            messages += plan.notes
            if not plan.steps:
                return Outcome(True, 200, messages)
            result = control.apply_stop(session, plan, mode, notify=messages.append)
            return _outcome(result, "Stopped", messages)
        if verb == "start":
            plan = control.plan_start(session, (job,))
            messages += plan.notes
            if not plan.steps:
                return Outcome(True, 200, messages)
            return _outcome(control.apply_start(session, plan), "Started", messages)
        if verb == "down":
            plan = control.plan_down(session, (job,))
            if not plan.steps:
                return Outcome(True, 200, ["No job to take down."])
            result = control.apply_down(session, plan)
            for done in result.done:
                was = "cancelled" if done.acted else f"it had ended {done.job.state}"
                messages.append(f"Took down {done.job.name} ({was}); history: konduktor status -a")
            return Outcome(True, 200, messages)
    except KonduktorError as exc:
        status = http_status(exc.exit_code, isinstance(exc, JobNotFoundError))
        return Outcome(False, status, f"Error: {exc}".splitlines())
    raise ValueError(f"unknown action {verb!r}")


def _outcome(result: ControlResult, done_word: str, messages: list[str]) -> Outcome:
    """The lines of cli/control.py's report: what each job cost, where it is now, failures."""
    from konduktor_slurm.control import COSTS

    for done in result.done:
        messages.append(f"{done_word} {done.job.name}: {COSTS[done.action]}")
    for done in result.done:
        detail = f" ({done.job.detail})" if done.job.detail else ""
        stale = " (stale)" if result.is_stale(done.job) else ""
        messages.append(f"  {done.job.name}: now {done.job.state}{stale}{detail}")
    if result.stale:
        messages.append(
            f"Warning: Slurm could not be reached after that ({result.stale_reason}); "
            "states marked (stale) are the last known."
        )
    messages += [f"Error: {failure}" for failure in result.failures]
    if result.failures:
        return Outcome(False, 502, messages)
    return Outcome(True, 200, messages)
