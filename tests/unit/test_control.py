"""What `konduktor stop` / `start` decide for each job state and mode (pure; no Slurm)."""

from __future__ import annotations

import itertools

import pytest

from konduktor_slurm.control import (
    COSTS,
    STOP_RECORD_MODE,
    Action,
    Plan,
    instead_of_refused_suspend,
    plan_start,
    plan_stop,
)
from konduktor_slurm.stop_modes import STOP_MODES


def stop(lifecycle: str, slurm_state: str | None, mode: str = "auto", **kw: object) -> Plan:
    terminal = lifecycle in {"COMPLETED", "FAILED"}
    return plan_stop(
        lifecycle=lifecycle,
        terminal=terminal,
        slurm_state=slurm_state,
        mode=mode,
        stopped_mode=kw.get("stopped_mode"),  # type: ignore[arg-type]
        checkpoint=bool(kw.get("checkpoint")),
        checkpointing=bool(kw.get("checkpointing")),
    )


def start(lifecycle: str, slurm_state: str | None, **kw: object) -> Plan:
    return plan_start(
        lifecycle=lifecycle,
        terminal=lifecycle in {"COMPLETED", "FAILED"},
        slurm_state=slurm_state,
        reason=kw.get("reason"),  # type: ignore[arg-type]
        priority=kw.get("priority"),  # type: ignore[arg-type]
        stopped_mode=kw.get("stopped_mode"),  # type: ignore[arg-type]
        checkpointing=bool(kw.get("checkpointing")),
    )


@pytest.mark.parametrize(
    ("mode", "action"),
    [
        ("auto", Action.SUSPEND),
        ("suspend", Action.SUSPEND),
        ("requeue", Action.REQUEUE_HOLD),
        ("signal", Action.SIGNAL_STOP),
    ],
)
@pytest.mark.parametrize("slurm_state", ["RUNNING", "R", "CONFIGURING"])
def test_running_job_is_stopped_the_way_the_mode_says(
    mode: str, action: Action, slurm_state: str
) -> None:
    assert stop("ACTIVE", slurm_state, mode) == Plan(action)


@pytest.mark.parametrize("mode", STOP_MODES)
@pytest.mark.parametrize(
    ("lifecycle", "slurm_state"),
    [
        ("PENDING", "PENDING"),
        ("PENDING", "PD"),
        ("SUSPENDED (by system)", "PENDING"),  # quota or requeued after preemption
        ("SUSPENDED (by system)", "REQUEUED"),
        ("PENDING", None),  # submitted, not yet reported by Slurm
    ],
)
def test_waiting_job_is_held_whatever_the_mode(mode: str, lifecycle: str, slurm_state: str) -> None:
    assert stop(lifecycle, slurm_state, mode) == Plan(Action.HOLD)


@pytest.mark.parametrize("lifecycle", ["COMPLETED", "FAILED"])
@pytest.mark.parametrize("mode", STOP_MODES)
def test_finished_job_cannot_be_stopped_or_started(lifecycle: str, mode: str) -> None:
    for plan in (stop(lifecycle, "COMPLETED", mode), start(lifecycle, "COMPLETED")):
        assert plan.action is None
        assert plan.error and f"already finished ({lifecycle})" in plan.error


def test_unsubmitted_job_cannot_be_stopped_or_started() -> None:
    for plan in (stop("CREATED", None), start("CREATED", None)):
        assert plan.action is None and plan.error and "not submitted yet" in plan.error


@pytest.mark.parametrize("stopped_mode", ["suspend", "requeue", "hold", "signal"])
@pytest.mark.parametrize("slurm_state", ["SUSPENDED", "PENDING", "STOPPED", "REQUEUE_HOLD"])
def test_stopping_a_stopped_job_again_changes_nothing(stopped_mode: str, slurm_state: str) -> None:
    plan = stop("SUSPENDED (by user)", slurm_state, stopped_mode=stopped_mode)
    assert plan.action is None and plan.error is None
    assert plan.note and "already stopped" in plan.note


def test_a_stop_record_of_a_job_running_again_does_not_block_a_new_stop() -> None:
    # Released outside konduktor: it runs, so `stop` must act again.
    assert stop("ACTIVE", "RUNNING", stopped_mode="requeue") == Plan(Action.SUSPEND)


def test_preempted_and_completing_jobs_are_refused_with_a_reason() -> None:
    suspended = stop("SUSPENDED (by system)", "SUSPENDED")
    assert (
        suspended.error and "preempted" in suspended.error and "konduktor down" in suspended.error
    )
    completing = stop("ACTIVE", "CG")
    assert completing.error and "COMPLETING" in completing.error


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown stop mode"):
        stop("ACTIVE", "RUNNING", "freeze")


@pytest.mark.parametrize(
    ("stopped_mode", "action"),
    [
        ("suspend", Action.RESUME),
        ("requeue", Action.RELEASE_REQUEUED),
        ("hold", Action.RELEASE),
        ("signal", Action.SIGNAL_CONT),
    ],
)
def test_start_undoes_exactly_what_stop_did(stopped_mode: str, action: Action) -> None:
    assert start("SUSPENDED (by user)", "PENDING", stopped_mode=stopped_mode) == Plan(action)


def test_every_stop_action_has_a_record_that_start_undoes_and_a_cost() -> None:
    undo = {
        Action.SUSPEND: Action.RESUME,
        Action.REQUEUE_HOLD: Action.RELEASE_REQUEUED,
        Action.HOLD: Action.RELEASE,
        Action.SIGNAL_STOP: Action.SIGNAL_CONT,
    }
    for stop_action, start_action in undo.items():
        recorded = STOP_RECORD_MODE[stop_action]
        assert start("SUSPENDED (by user)", "PENDING", stopped_mode=recorded).action is start_action
    assert set(COSTS) == set(Action)
    assert "GPUs released" in COSTS[Action.REQUEUE_HOLD]
    assert "restarts from the beginning" in COSTS[Action.REQUEUE_HOLD]
    assert "stay allocated" in COSTS[Action.SUSPEND]
    assert "stay allocated" in COSTS[Action.SIGNAL_STOP]


@pytest.mark.parametrize(
    ("slurm_state", "reason", "priority", "action"),
    [
        ("STOPPED", None, 1, Action.SIGNAL_CONT),
        ("SUSPENDED", None, 0, Action.RESUME),
        ("PENDING", "JobHeldUser", 0, Action.RELEASE),
        ("PENDING", "job requeued in held state", 0, Action.RELEASE_REQUEUED),
        ("REQUEUE_HOLD", None, 0, Action.RELEASE_REQUEUED),
    ],
)
def test_start_undoes_a_stop_made_outside_konduktor(
    slurm_state: str, reason: str | None, priority: int, action: Action
) -> None:
    plan = start("SUSPENDED (by user)", slurm_state, reason=reason, priority=priority)
    assert plan == Plan(action)


def test_start_releases_a_job_slurm_held_after_a_failed_launch() -> None:
    """slurmctld or the node died while the job was being launched: Slurm requeued it and
    held it; nobody stopped it, but `start` is how the user gets it going again."""
    plan = start(
        "SUSPENDED (by system)", "PENDING", reason="launch failed requeued held", priority=0
    )
    assert plan == Plan(Action.RELEASE)


@pytest.mark.parametrize(
    ("lifecycle", "slurm_state", "reason", "priority"),
    [
        ("ACTIVE", "RUNNING", None, 1),
        ("PENDING", "PENDING", "Resources", 1),
        ("SUSPENDED (by system)", "PENDING", "QOSMaxGRESPerUser", 1),
        ("SUSPENDED (by system)", "SUSPENDED", None, 5),  # gang-preempted: Slurm resumes it
    ],
)
def test_start_of_a_job_nobody_stopped_does_nothing(
    lifecycle: str, slurm_state: str, reason: str | None, priority: int
) -> None:
    plan = start(lifecycle, slurm_state, reason=reason, priority=priority)
    assert plan.action is None and plan.error is None and plan.note


def test_start_of_a_running_job_with_an_old_stop_record_is_a_note() -> None:
    plan = start("ACTIVE", "RUNNING", stopped_mode="requeue")
    assert plan == Plan(note="is already running")


def test_every_state_and_mode_gives_exactly_one_outcome() -> None:
    """No combination crashes or returns an empty plan."""
    states = [
        None,
        "PENDING",
        "RUNNING",
        "SUSPENDED",
        "STOPPED",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "CONFIGURING",
        "COMPLETED",
        "FAILED",
        "SOMETHING_NEW",
    ]
    lifecycles = [
        "CREATED",
        "PENDING",
        "SUSPENDED (by system)",
        "SUSPENDED (by user)",
        "ACTIVE",
        "COMPLETED",
        "FAILED",
    ]
    stopped = [None, "suspend", "requeue", "hold", "signal", "checkpoint"]
    flags = [(False, False), (True, False), (True, True)]  # (checkpoint, checkpointing)
    for lifecycle, state, mode, was, (declared, saving) in itertools.product(
        lifecycles, states, STOP_MODES, stopped, flags
    ):
        for plan in (
            stop(
                lifecycle,
                state,
                mode,
                stopped_mode=was,
                checkpoint=declared,
                checkpointing=saving,
            ),
            start(
                lifecycle, state, stopped_mode=was, reason=None, priority=1, checkpointing=saving
            ),
        ):
            outcomes = [plan.action is not None, plan.error is not None, plan.note is not None]
            assert outcomes.count(True) == 1, (lifecycle, state, mode, was, plan)


# ---- checkpoint: the signal, the grace period, then requeue-hold -------------------------


@pytest.mark.parametrize("slurm_state", ["RUNNING", "R", "CONFIGURING"])
def test_checkpoint_mode_checkpoints_a_running_job_that_declares_how(slurm_state: str) -> None:
    assert stop("ACTIVE", slurm_state, "checkpoint", checkpoint=True) == Plan(Action.CHECKPOINT)


def test_checkpoint_mode_refuses_a_job_that_declares_no_checkpoint_and_says_what_instead() -> None:
    plan = stop("ACTIVE", "RUNNING", "checkpoint", checkpoint=False)
    assert plan.action is None and plan.error
    assert "checkpoint_signal" in plan.error and "--mode requeue" in plan.error


@pytest.mark.parametrize("declared", [True, False])
def test_checkpoint_mode_holds_a_pending_job_like_every_mode(declared: bool) -> None:
    # No processes yet, so nothing to save: a hold is the whole stop.
    assert stop("PENDING", "PENDING", "checkpoint", checkpoint=declared) == Plan(Action.HOLD)


@pytest.mark.parametrize(
    ("declared", "action"), [(True, Action.CHECKPOINT), (False, Action.REQUEUE_HOLD)]
)
def test_auto_saves_the_work_when_suspend_is_refused_and_the_task_checkpoints(
    declared: bool, action: Action
) -> None:
    # auto first asks for a suspend (frozen in place beats any restart) ...
    assert stop("ACTIVE", "RUNNING", "auto", checkpoint=declared) == Plan(Action.SUSPEND)
    # ... and when Slurm refuses it, a task that checkpoints saves first, others are requeued.
    assert instead_of_refused_suspend(declared) is action


def test_a_second_stop_during_the_grace_period_waits_for_the_first() -> None:
    plan = stop("ACTIVE", "RUNNING", "checkpoint", checkpoint=True, checkpointing=True)
    assert plan.action is None and plan.error is None
    assert plan.note and "checkpointing" in plan.note


def test_a_checkpoint_stop_whose_grace_period_passed_may_be_stopped_again() -> None:
    # `stop` was interrupted after the signal and the job still runs: act again.
    plan = stop("ACTIVE", "RUNNING", "checkpoint", stopped_mode="checkpoint", checkpoint=True)
    assert plan == Plan(Action.CHECKPOINT)


def test_start_after_a_checkpoint_stop_releases_the_requeued_job() -> None:
    plan = start("SUSPENDED (by user)", "PENDING", stopped_mode="checkpoint")
    assert plan == Plan(Action.RELEASE_CHECKPOINTED)
    assert "resumes from its checkpoint" in COSTS[Action.RELEASE_CHECKPOINTED]
    assert STOP_RECORD_MODE[Action.CHECKPOINT] == "checkpoint"
    assert "resumes from its checkpoint" in COSTS[Action.CHECKPOINT]


def test_start_during_the_grace_period_says_to_wait() -> None:
    plan = start("ACTIVE", "RUNNING", stopped_mode="checkpoint", checkpointing=True)
    assert plan.action is None and plan.note and "once it has stopped" in plan.note
