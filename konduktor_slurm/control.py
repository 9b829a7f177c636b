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
- ``checkpoint``: for a task that declares how it checkpoints (``job_config``'s
  ``checkpoint_signal`` / ``checkpoint_grace``): every rank gets the signal, has up to the
  grace period to save and exit, then the job is requeued and held (GPUs released); on start
  it restarts with ``KONDUKTOR_RESTART_ATTEMPT`` + 1 and resumes from its checkpoint.
- ``auto``: suspend where Slurm allows the caller, else checkpoint when the task declares a
  checkpoint, else requeue (the service retries on ``PermissionDenied``:
  :func:`instead_of_refused_suspend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from konduktor_slurm.lifecycle import normalise_state
from konduktor_slurm.stop_modes import STOP_MODES


class Action(Enum):
    SUSPEND = "suspend"
    REQUEUE_HOLD = "requeue"
    HOLD = "hold"
    SIGNAL_STOP = "signal"
    CHECKPOINT = "checkpoint"  # the checkpoint signal, the grace period, then requeue-hold
    RESUME = "resume"
    RELEASE = "release"
    RELEASE_REQUEUED = "release-requeued"
    RELEASE_CHECKPOINTED = "release-checkpointed"  # the same in Slurm; it resumes, though
    SIGNAL_CONT = "continue"
    CANCEL = "cancel"


# How each stop is recorded in the store (JobRecord.user_stop["mode"]), so start undoes it.
STOP_RECORD_MODE: Final = {
    Action.SUSPEND: "suspend",
    Action.REQUEUE_HOLD: "requeue",
    Action.HOLD: "hold",
    Action.SIGNAL_STOP: "signal",
    Action.CHECKPOINT: "checkpoint",
}
_UNDO: Final = {
    "suspend": Action.RESUME,
    "requeue": Action.RELEASE_REQUEUED,
    "checkpoint": Action.RELEASE_CHECKPOINTED,
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
    Action.CHECKPOINT: (
        "every rank got the task's checkpoint signal and time to save (checkpoint_grace); "
        "then it was requeued and held, its GPUs released. On `konduktor start` the run "
        "restarts (KONDUKTOR_RESTART_ATTEMPT goes up by one) and resumes from its checkpoint."
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
    Action.RELEASE_CHECKPOINTED: (
        "released and eligible at once (Slurm's requeue delay lifted); the run starts again "
        "and resumes from its checkpoint."
    ),
    Action.SIGNAL_CONT: "every process got SIGCONT and runs again.",
    Action.CANCEL: "cancelled (scancel); its history is kept.",
}

_RUNNING: Final = frozenset({"RUNNING", "CONFIGURING"})
_NO_CHECKPOINT: Final = (
    "declares no checkpoint (resources.job_config.checkpoint_signal / checkpoint_grace), so "
    "--mode checkpoint cannot save its work; use --mode requeue (restarts from the beginning) "
    "or --mode signal (keeps its GPUs)"
)
_STILL_CHECKPOINTING: Final = (
    "is checkpointing for an earlier `konduktor stop` (its ranks have the signal); it is "
    "requeued and held when they exit or its grace period ends"
)
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
    checkpoint: bool = False,
    checkpointing: bool = False,
) -> Plan:
    """How to stop a job.

    ``lifecycle`` is the job's current lifecycle state ("ACTIVE", ...), ``slurm_state`` its
    Slurm state (any spelling), ``mode`` one of :data:`STOP_MODES`, ``stopped_mode`` the
    mode of an earlier ``konduktor stop`` still in force (None if none). ``checkpoint``: the
    task declares how it checkpoints; ``checkpointing``: a checkpoint stop is in its grace
    period (the ranks have the signal and are saving).
    """
    if mode not in STOP_MODES:
        raise ValueError(f"unknown stop mode {mode!r}")
    refused = _refuse_unsubmitted_or_finished("stop", lifecycle, terminal)
    if refused:
        return refused
    state = normalise_state(slurm_state or "")
    if checkpointing and state in _RUNNING:
        return Plan(note=_STILL_CHECKPOINTING)
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
        if mode == "checkpoint":
            return Plan(Action.CHECKPOINT) if checkpoint else Plan(error=_NO_CHECKPOINT)
        # suspend, or auto (the service falls back on refusal: instead_of_refused_suspend)
        return Plan(Action.SUSPEND)
    return Plan(error=f"is in Slurm state {state or 'unknown'}; konduktor cannot stop it")


def plan_start(
    *,
    lifecycle: str,
    terminal: bool,
    slurm_state: str | None,
    reason: str | None,
    priority: int | None,
    stopped_mode: str | None,
    checkpointing: bool = False,
) -> Plan:
    """How to start a stopped job again (undo exactly what stopped it)."""
    refused = _refuse_unsubmitted_or_finished("start", lifecycle, terminal)
    if refused:
        return refused
    state = normalise_state(slurm_state or "")
    if state in _RUNNING and state != "CONFIGURING":
        if checkpointing:
            return Plan(note=f"{_STILL_CHECKPOINTING}; start it once it has stopped")
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


def instead_of_refused_suspend(checkpoint: bool) -> Action:
    """What ``auto`` does when Slurm refuses the caller ``scontrol suspend`` (only operators
    may): a task that declares a checkpoint saves its work first; any other is requeued."""
    return Action.CHECKPOINT if checkpoint else Action.REQUEUE_HOLD
