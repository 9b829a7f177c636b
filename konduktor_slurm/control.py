"""What `konduktor stop` and `konduktor start` do to a job: a pure decision, no I/O.

The CLI refreshes the job from Slurm, asks :func:`plan_stop` / :func:`plan_start` what to do
given the job's lifecycle state, Slurm state and how it was stopped, runs the one Slurm
command named, and prints the plan's ``cost`` so the user knows what the stop means for their
GPUs and their run.

Stop modes (``--mode`` / ``stop_mode`` in config.yaml):

- ``suspend``: ``scontrol suspend``; frozen in place, nodes and GPUs stay allocated.
  Operators and root only.
- ``requeue``: running jobs get ``scontrol requeuehold`` (killed, GPUs released, the run
  restarts from the top on start); pending jobs get ``scontrol hold``.
- ``signal``: ``scancel --full --signal=STOP`` (and CONT on start); like suspend, but any user
  may do it. Processes are frozen; GPUs stay allocated.
- ``auto``: suspend where Slurm allows the caller, else requeue (the CLI retries on
  ``PermissionDenied``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from konduktor_slurm.lifecycle import normalise_state


class StopMode(StrEnum):
    """How `konduktor stop` stops a running job (``--mode``, config.yaml's ``stop_mode``)."""

    AUTO = "auto"
    SUSPEND = "suspend"
    REQUEUE = "requeue"
    SIGNAL = "signal"


STOP_MODES: Final = tuple(mode.value for mode in StopMode)


class Action(Enum):
    SUSPEND = "suspend"
    REQUEUE_HOLD = "requeue"
    HOLD = "hold"
    SIGNAL_STOP = "signal"
    RESUME = "resume"
    RELEASE = "release"
    RELEASE_REQUEUED = "release-requeued"
    SIGNAL_CONT = "continue"
    CANCEL = "cancel"


# How each stop is recorded in the store (JobRecord.user_stop["mode"]), so start undoes it.
STOP_RECORD_MODE: Final = {
    Action.SUSPEND: "suspend",
    Action.REQUEUE_HOLD: "requeue",
    Action.HOLD: "hold",
    Action.SIGNAL_STOP: "signal",
}
_UNDO: Final = {
    "suspend": Action.RESUME,
    "requeue": Action.RELEASE_REQUEUED,
    "hold": Action.RELEASE,
    "signal": Action.SIGNAL_CONT,
}

# What the user gets and what it costs them, printed after the action succeeds.
COSTS: Final = {
    Action.SUSPEND: (
        "suspended in place; its nodes and GPUs stay allocated to it. "
        "`konduktor start` resumes it where it stopped."
    ),
    Action.REQUEUE_HOLD: (
        "requeued and held; its processes were killed and its GPUs released. "
        "On `konduktor start` the run restarts from the beginning "
        "(KONDUKTOR_RESTART_ATTEMPT goes up by one)."
    ),
    Action.HOLD: (
        "held in the queue; it had no GPUs yet and will not start until `konduktor start`."
    ),
    Action.SIGNAL_STOP: (
        "every process got SIGSTOP and is frozen; its nodes and GPUs stay allocated. "
        "`konduktor start` sends SIGCONT."
    ),
    Action.RESUME: "resumed where it was suspended.",
    Action.RELEASE: "released; it starts as soon as Slurm schedules it.",
    Action.RELEASE_REQUEUED: (
        "released and eligible at once (Slurm's requeue delay lifted); the run begins from the top."
    ),
    Action.SIGNAL_CONT: "every process got SIGCONT and runs again.",
    Action.CANCEL: "cancelled (scancel); its history is kept.",
}

_RUNNING: Final = frozenset({"RUNNING", "CONFIGURING"})
_WAITING: Final = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


@dataclass(frozen=True)
class Plan:
    """One job's decision: an action to run, or nothing with a reason.

    ``error`` set: the command fails for this job and nothing is done to any job.
    ``note`` set (no action, no error): nothing to do, and that is fine (e.g. already stopped).
    """

    action: Action | None = None
    error: str | None = None
    note: str | None = None


def _refuse_unsubmitted_or_finished(verb: str, lifecycle: str, terminal: bool) -> Plan | None:
    if lifecycle == "CREATED":
        return Plan(error=f"is not submitted yet (CREATED); there is nothing to {verb}")
    if terminal:
        return Plan(error=f"has already finished ({lifecycle}); there is nothing to {verb}")
    return None


def plan_stop(
    *,
    lifecycle: str,
    terminal: bool,
    slurm_state: str | None,
    mode: str,
    stopped_mode: str | None,
) -> Plan:
    """How to stop a job.

    ``lifecycle`` is the job's current lifecycle state ("ACTIVE", ...), ``slurm_state`` its
    Slurm state (any spelling), ``mode`` one of :data:`STOP_MODES`, ``stopped_mode`` the
    mode of an earlier ``konduktor stop`` still in force (None if none).
    """
    if mode not in STOP_MODES:
        raise ValueError(f"unknown stop mode {mode!r}")
    refused = _refuse_unsubmitted_or_finished("stop", lifecycle, terminal)
    if refused:
        return refused
    state = normalise_state(slurm_state or "")
    if stopped_mode is not None and state not in _RUNNING:
        return Plan(note="is already stopped")
    if state == "STOPPED":
        return Plan(note="is already stopped (SIGSTOP)")
    if state == "SUSPENDED":
        return Plan(
            error=(
                "is suspended by Slurm (preempted); it cannot be stopped until it runs again. "
                "`konduktor down` cancels it"
            )
        )
    if state == "COMPLETING":
        return Plan(error="is finishing (COMPLETING); there is nothing left to stop")
    if state in _WAITING or (not state and lifecycle in {"PENDING", "SUSPENDED (by system)"}):
        # No processes and no GPUs yet: whatever the mode, a hold is the whole stop.
        return Plan(Action.HOLD)
    if state in _RUNNING:
        if mode == "signal":
            return Plan(Action.SIGNAL_STOP)
        if mode == "requeue":
            return Plan(Action.REQUEUE_HOLD)
        return Plan(Action.SUSPEND)  # suspend, or auto (the CLI falls back on refusal)
    return Plan(error=f"is in Slurm state {state or 'unknown'}; konduktor cannot stop it")


def plan_start(
    *,
    lifecycle: str,
    terminal: bool,
    slurm_state: str | None,
    reason: str | None,
    priority: int | None,
    stopped_mode: str | None,
) -> Plan:
    """How to start a stopped job again (undo exactly what stopped it)."""
    refused = _refuse_unsubmitted_or_finished("start", lifecycle, terminal)
    if refused:
        return refused
    state = normalise_state(slurm_state or "")
    if state in _RUNNING and state != "CONFIGURING":
        return Plan(note="is already running")
    if stopped_mode is not None and stopped_mode in _UNDO:
        return Plan(_UNDO[stopped_mode])
    # Stopped outside konduktor (scontrol/scancel by hand): undo what Slurm shows.
    if state == "STOPPED":
        return Plan(Action.SIGNAL_CONT)
    if state == "SUSPENDED" and priority == 0:
        return Plan(Action.RESUME)
    if state == "REQUEUE_HOLD" or (
        state == "PENDING" and (reason or "").startswith("job requeued in held")
    ):
        return Plan(Action.RELEASE_REQUEUED)
    if state == "PENDING" and (reason or "").startswith("JobHeldUser"):
        return Plan(Action.RELEASE)
    if state == "PENDING" and (reason or "").lower().startswith("launch failed requeued held"):
        # A cluster fault (slurmctld or the node died as the job was launched): Slurm held it
        # so it would not fail again at once; releasing it is what the user asks for.
        return Plan(Action.RELEASE)
    return Plan(note=f"is not stopped ({lifecycle})")
