"""Stop, start and down: pick jobs, decide for every one, then act.

Jobs are named by konduktor name, Slurm job id or glob pattern (``exp-*``), or all of them;
with ``all_users`` also other users' konduktor jobs, which only root, the SlurmUser, Slurm
operators and administrators may act on. Every job is refreshed (one squeue) and checked
before any is touched: one bad name or one finished job means nothing changes at all
(``plan_*`` raise, listing every problem). What to do with each job is the pure decision of
``konduktor_slurm.control``; ``apply`` runs it and records how each job was stopped, so
``start`` undoes exactly that.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import ActionError, InputError, UnreachableError

if TYPE_CHECKING:
    from konduktor_slurm.control import Action, Plan
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.tracker import RefreshResult

_GLOB_CHARS = set("*?[")
SETTLE_SECONDS = 20.0  # longest wait for Slurm to finish tearing down a requeued job


@dataclass
class Step:
    """One job of a stop/start/down plan and what will be done to it."""

    job: JobRecord
    action: Action
    foreign: bool = False  # another user's job: not in our store, nothing recorded


@dataclass
class ControlPlan:
    """What a stop/start/down will do, checked for every job before any is touched."""

    steps: list[Step]
    notes: list[str] = field(default_factory=list)  # "<job> is already stopped; nothing to do."

    @property
    def jobs(self) -> list[JobRecord]:
        return [step.job for step in self.steps]


@dataclass
class Done:
    """One job a stop/start/down acted on, and what was really done."""

    job: JobRecord
    action: Action  # what was really done (auto: suspend may have become requeue)
    foreign: bool = False  # another user's job
    acted: bool = True  # False: `down` of a job that had already ended (only hidden)


@dataclass
class ControlResult:
    """What a stop/start/down did, what failed and what needed nothing."""

    done: list[Done] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "<job> was not stopped: <why>"
    notes: list[str] = field(default_factory=list)  # "<job> finished meanwhile; nothing to do."
    # Jobs whose state after the action is the last known one: Slurm did not answer the
    # look that follows the action (the action itself was done), and why.
    stale: set[str] = field(default_factory=set)
    stale_reason: str | None = None

    def is_stale(self, job: JobRecord) -> bool:
        return job.name in self.stale


# What Slurm says when a job ended between the plan and the action.
_ENDED_MEANWHILE = re.compile(
    r"already finished|already completing or completed|job has finished|invalid job id", re.I
)


class PlanError(ActionError):
    """Some named job cannot be acted on; nothing was changed. One line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join([*problems, "Nothing was changed."]))


# ---- choosing jobs ----------------------------------------------------------------------


def select(
    session: Session, patterns: tuple[str, ...], all_jobs: bool, all_users: bool = False
) -> tuple[list[JobRecord], list[JobRecord], list[str]]:
    """(our jobs, other users' konduktor jobs, problems) for the names or patterns given."""
    from konduktor_slurm.service.session import did_you_mean

    if all_jobs and patterns:
        raise InputError("give job names or --all, not both")
    if not all_jobs and not patterns and not all_users:
        raise InputError(
            "name at least one job (a name, a Slurm job id or a pattern like 'exp-*'), or use --all"
        )
    store = session.store
    visible = store.jobs()
    foreign = _others(session) if all_users else []
    if all_jobs or not patterns:
        return visible, foreign, []
    names = store.names()
    chosen: dict[str, JobRecord] = {}
    chosen_foreign: dict[str, JobRecord] = {}
    problems: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            matches = [job for job in visible if fnmatch.fnmatchcase(job.name, pattern)]
            others = [job for job in foreign if fnmatch.fnmatchcase(job.name, pattern)]
            if not matches and not others:
                problems.append(f"no job matches {pattern!r} (`konduktor status` lists your jobs)")
            chosen.update((job.name, job) for job in matches)
            chosen_foreign.update((job.name, job) for job in others)
            continue
        job = store.get(pattern) or next(
            (j for j in store.jobs(include_hidden=True) if j.slurm_job_id == pattern), None
        )
        if job is not None:
            chosen[job.name] = job
            continue
        other = next((j for j in foreign if pattern in (j.name, j.slurm_job_id)), None)
        if other is not None:
            chosen_foreign[other.name] = other
        elif pattern.isdigit():
            problems.append(_foreign_job_problem(session, pattern))
        else:
            problems.append(
                f"no job named {pattern!r}.{did_you_mean(pattern, names)} "
                "(`konduktor status` lists your jobs)"
            )
    return list(chosen.values()), list(chosen_foreign.values()), problems


def _others(session: Session) -> list[JobRecord]:
    """Other users' konduktor jobs, from one squeue; only for callers Slurm lets act on them."""
    from konduktor_slurm.service.check import privileges
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.tracker import foreign_job
    from konduktor_slurm.transport import TransportError

    slurm = session.slurm
    try:
        user = slurm.transport.user
        rights = privileges(slurm, user)
        if not rights.privileged:
            raise ActionError(
                f"--all-users: Slurm lets only root, the SlurmUser and Slurm operators or "
                f"administrators act on other users' jobs, and {user} has {rights.why()}; "
                "nothing was changed"
            )
        rows = slurm.queue_all_users()
    except (SlurmError, TransportError) as exc:
        raise UnreachableError(f"cannot reach Slurm ({exc}); nothing was changed") from None
    known = {job.slurm_job_id for job in session.store.jobs(include_hidden=True)}
    now = time.time()
    return [
        foreign_job(row, now)
        for row in rows.values()
        if row.launched_by_konduktor and row.user != user and row.job_id not in known
    ]


def _foreign_job_problem(session: Session, job_id: str) -> str:
    """Why a Slurm job id that konduktor did not launch from here cannot be controlled."""
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    caller = session.slurm.transport.user
    try:
        row = session.slurm.queue([job_id]).get(job_id)
    except (SlurmError, TransportError):
        row = None
    if row is None:
        return f"no job with Slurm id {job_id} (`konduktor status` lists your jobs)"
    if row.user != caller:
        return (
            f"Slurm job {job_id} belongs to {row.user}, not to you ({caller}); it was left "
            "alone (--all-users acts on other users' konduktor jobs where Slurm allows it)"
        )
    return (
        f"Slurm job {job_id} ({row.name}) was not launched by konduktor from this account; "
        "use scontrol/scancel for it"
    )


# ---- deciding -------------------------------------------------------------------------


def _refresh(session: Session, jobs: list[JobRecord]) -> None:
    from konduktor_slurm.tracker import refresh

    result = refresh(session.store, session.slurm, jobs)
    if result.stale:
        raise UnreachableError(f"cannot reach Slurm ({result.stale_reason}); nothing was changed")


def _decide(
    jobs: list[tuple[JobRecord, bool]],
    problems: list[str],
    all_jobs: bool,
    plan_for: Callable[[JobRecord], Plan],
) -> ControlPlan:
    """Decide for every job first; any problem (plus earlier ones) changes nothing."""
    plans: list[tuple[JobRecord, bool, Plan]] = []
    for job, foreign in jobs:
        plan = plan_for(job)
        if all_jobs and (plan.error or plan.note):
            continue  # --all means "every job it applies to"
        if plan.error:
            problems.append(f"{job.name} {plan.error}")
        plans.append((job, foreign, plan))
    if problems:
        raise PlanError(problems)
    result = ControlPlan([])
    for job, foreign, plan in plans:
        if plan.note:
            result.notes.append(f"{job.name} {plan.note}; nothing to do.")
        elif plan.action is not None:
            result.steps.append(Step(job, plan.action, foreign))
    return result


def _stopped_mode(job: JobRecord) -> str | None:
    return job.user_stop.mode if job.user_stop else None


def _checkpointing(job: JobRecord) -> bool:
    """A checkpoint stop of this job is in its grace period (its ranks are saving)."""
    return job.user_stop is not None and job.user_stop.checkpointing(time.time())


def plan_stop(
    session: Session,
    patterns: tuple[str, ...],
    *,
    mode: str | None = None,
    all_jobs: bool = False,
    all_users: bool = False,
) -> ControlPlan:
    from konduktor_slurm.control import plan_stop as decide_stop

    mode = mode or session.config.stop_mode
    ours, others, problems = select(session, patterns, all_jobs, all_users)
    _refresh(session, ours)
    return _decide(
        [*((job, False) for job in ours), *((job, True) for job in others)],
        problems,
        all_jobs or (all_users and not patterns),
        lambda job: decide_stop(
            lifecycle=job.state,
            terminal=job.terminal,
            slurm_state=job.extra.get("slurm_state"),
            mode=mode,
            stopped_mode=_stopped_mode(job),
            checkpoint=job.checkpoint is not None,
            checkpointing=_checkpointing(job),
        ),
    )


def plan_start(
    session: Session, patterns: tuple[str, ...], *, all_jobs: bool = False, all_users: bool = False
) -> ControlPlan:
    from konduktor_slurm.control import plan_start as decide_start

    ours, others, problems = select(session, patterns, all_jobs, all_users)
    _refresh(session, ours)
    settle(session, ours)  # a stop by requeue may still be under way
    for job in ours:
        # Released outside konduktor (but not a checkpoint stop still in its grace period).
        if job.user_stop and job.state == "ACTIVE" and not _checkpointing(job):
            job.user_stop = None
            session.store.save(job)
    return _decide(
        [*((job, False) for job in ours), *((job, True) for job in others)],
        problems,
        all_jobs or (all_users and not patterns),
        lambda job: decide_start(
            lifecycle=job.state,
            terminal=job.terminal,
            slurm_state=job.extra.get("slurm_state"),
            reason=job.extra.get("reason"),
            priority=job.extra.get("priority"),
            stopped_mode=_stopped_mode(job),
            checkpointing=_checkpointing(job),
        ),
    )


def plan_down(
    session: Session, patterns: tuple[str, ...], *, all_jobs: bool = False, all_users: bool = False
) -> ControlPlan:
    """Every named job (finished ones too: they are only hidden); Action is only a marker."""
    from konduktor_slurm.control import Action

    ours, others, problems = select(session, patterns, all_jobs, all_users)
    if problems:
        raise PlanError(problems)
    _refresh(session, ours)
    steps = [Step(job, Action.CANCEL) for job in ours]
    steps += [Step(job, Action.CANCEL, foreign=True) for job in others if not job.terminal]
    return ControlPlan(steps)


# ---- acting ---------------------------------------------------------------------------


def _run_action(session: Session, job_id: str, action: Action) -> None:
    from konduktor_slurm.control import Action

    slurm = session.slurm
    commands = {
        Action.SUSPEND: slurm.suspend,
        Action.REQUEUE_HOLD: slurm.requeue_hold,
        Action.HOLD: slurm.hold,
        Action.SIGNAL_STOP: lambda job: slurm.signal(job, "STOP"),
        Action.RESUME: slurm.resume,
        Action.RELEASE: slurm.release,
        Action.RELEASE_REQUEUED: lambda job: slurm.release(job, now=True),
        Action.RELEASE_CHECKPOINTED: lambda job: slurm.release(job, now=True),
        Action.SIGNAL_CONT: lambda job: slurm.signal(job, "CONT"),
    }
    commands[action](job_id)


def apply_stop(
    session: Session,
    plan: ControlPlan,
    mode: str | None = None,
    notify: Callable[[str], None] = lambda text: None,
) -> ControlResult:
    """Stop every job of the plan. In auto mode a suspend Slurm refuses (only operators may)
    becomes a checkpoint stop for a task that declares one and a requeue for any other,
    said once through ``notify``, for this and the following jobs.

    A checkpoint stop signals every job first, then waits for all of them together (each up
    to its own grace period): a stop of ten jobs costs one grace period, not ten."""
    from konduktor_slurm.control import STOP_RECORD_MODE, Action, instead_of_refused_suspend
    from konduktor_slurm.control import plan_stop as decide_stop
    from konduktor_slurm.lifecycle import UserStop
    from konduktor_slurm.slurm import PermissionDenied, SlurmError

    mode = mode or session.config.stop_mode
    caller = session.slurm.transport.user
    suspend_refused = False
    told: set[Action] = set()
    saving: list[JobRecord] = []

    def fallback(job: JobRecord) -> Action:
        action = instead_of_refused_suspend(job.checkpoint is not None)
        if action not in told:
            told.add(action)
            notify(_fallback_note(action))
        return action

    def run_stop(job: JobRecord, action: Action, foreign: bool) -> Action:
        nonlocal suspend_refused
        job_id = job.slurm_job_id
        assert job_id is not None
        if action is Action.SUSPEND and suspend_refused:
            action = fallback(job)
        if action is Action.CHECKPOINT:
            _signal_for_checkpoint(session, job, caller, foreign)
            saving.append(job)
            return action
        try:
            _run_action(session, job_id, action)
        except PermissionDenied as exc:
            if action is not Action.SUSPEND:
                raise
            if mode != "auto":
                raise SlurmError(
                    exc.command,
                    f"{exc.slurm_message}. Only Slurm operators may suspend; use "
                    "--mode requeue (frees the GPUs), --mode checkpoint (saves first, if "
                    "the task declares how) or --mode signal (keeps them)",
                ) from None
            suspend_refused = True
            return run_stop(job, fallback(job), foreign)
        return action

    held = _act_in_batches(session, plan.steps, Action.HOLD)
    started = _running_among(session, held)

    def stop_one(step: Step) -> Action:
        job = step.job
        assert job.slurm_job_id is not None
        if step.action is Action.HOLD and job.slurm_job_id in held:
            action, started_meanwhile = Action.HOLD, job.slurm_job_id in started
        else:
            action = run_stop(job, step.action, step.foreign)
            started_meanwhile = action is Action.HOLD and bool(
                _running_among(session, {job.slurm_job_id})
            )
        if started_meanwhile:
            # It was pending when planned and started before the hold reached slurmctld: a
            # hold does nothing to a running job, so stop it as a running one.
            running = decide_stop(
                lifecycle="ACTIVE",
                terminal=False,
                slurm_state="RUNNING",
                mode=mode,
                stopped_mode=None,
                checkpoint=job.checkpoint is not None,
            )
            # (--mode checkpoint for a task that declares none: it only just started, so
            # there is nothing to save; requeue it.)
            action = run_stop(job, running.action or Action.REQUEUE_HOLD, step.foreign)
        if not step.foreign and action is not Action.CHECKPOINT:  # that one is recorded
            job.user_stop = UserStop(caller, time.time(), STOP_RECORD_MODE[action])
            session.store.save(job)
        return action

    def finish(result: ControlResult) -> None:
        failed = _wait_for_checkpoints(session, saving, notify)
        for name, why in failed.items():
            result.failures.append(f"{name} was not stopped: {why}")
            result.done = [done for done in result.done if done.job.name != name]

    return _apply(session, plan, "stopped", stop_one, finish)


def _fallback_note(action: Action) -> str:
    """Said once when auto meets a refused suspend, by what it does instead."""
    from konduktor_slurm.control import Action

    return {
        Action.REQUEUE_HOLD: (
            "Slurm lets only operators suspend jobs, so stopping by requeue instead "
            "(--mode signal keeps the GPUs instead)."
        ),
        Action.CHECKPOINT: (
            "Slurm lets only operators suspend jobs, so a job whose task declares a "
            "checkpoint saves its work first and is then requeued (--mode checkpoint)."
        ),
    }[action]


# ---- a checkpoint stop: the signal, the grace period, then requeue-hold -------------------

STOP_REQUEST = "stop-request"  # beside the job's rank exit files; the batch script reads it
CHECKPOINT_POLL_SECONDS = (1.0, 1.0, 1.0, 2.0)  # then every 2 s until the grace period ends


def _signal_for_checkpoint(session: Session, job: JobRecord, caller: str, foreign: bool) -> None:
    """Ask the job to stop after saving: a stop request beside it (the batch script requeues
    and holds the job as soon as every rank has exited), then the task's checkpoint signal
    to every rank. The stop is recorded with its deadline, so status says "checkpointing"."""
    from konduktor_slurm.lifecycle import UserStop
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    checkpoint = job.checkpoint
    job_id = job.slurm_job_id
    assert checkpoint is not None and job_id is not None
    now = time.time()
    until = now + checkpoint.grace
    request = f"{job.job_dir}/{STOP_REQUEST}"
    try:
        session.slurm.transport.write_file(
            request, f"stopped by {caller} at {now:.0f}; requeue-hold by {until:.0f}\n", 0o600
        )
    except (TransportError, OSError) as exc:
        raise SlurmError("stop", f"cannot write the stop request {request}: {exc}") from None
    if not foreign:
        job.user_stop = UserStop(caller, now, "checkpoint", until=until)
        session.store.save(job)
    try:
        session.slurm.signal_steps(job_id, checkpoint.signal)
    except (SlurmError, TransportError):
        if not foreign:
            job.user_stop = None
            session.store.save(job)
        session.slurm.transport.run(["rm", "-f", "--", request])
        raise


def _wait_for_checkpoints(
    session: Session, jobs: list[JobRecord], notify: Callable[[str], None]
) -> dict[str, str]:
    """Wait until every job's ranks have saved and exited (the batch script then requeues
    and holds it) or its grace period ends (then it is requeued and held here: what it did
    not save is lost). Ctrl-C stops the waiting, not the stop: every job still running is
    requeued and held at once. The jobs that could not be stopped, with why."""
    from konduktor_slurm.lifecycle import normalise_state
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    if not jobs:
        return {}
    for job in jobs:
        assert job.checkpoint is not None
        notify(
            f"{job.name}: every rank got SIG{job.checkpoint.signal}; waiting up to "
            f"{job.checkpoint.grace}s for them to save their work and exit..."
        )
    started = time.monotonic()
    deadline = {job.name: started + (job.checkpoint.grace if job.checkpoint else 0) for job in jobs}
    waiting = {job.name: job for job in jobs}
    failed: dict[str, str] = {}

    def requeue(job: JobRecord, why: str) -> None:
        assert job.slurm_job_id is not None
        try:
            session.slurm.requeue_hold(job.slurm_job_id)
            notify(f"{job.name}: {why}; requeued and held now.")
        except (SlurmError, TransportError) as exc:
            if _still_running(session, job.slurm_job_id):
                failed[job.name] = str(exc)

    polls = iter(CHECKPOINT_POLL_SECONDS)
    try:
        while waiting:
            time.sleep(min(next(polls, CHECKPOINT_POLL_SECONDS[-1]), _time_left(deadline, waiting)))
            ids = [job.slurm_job_id for job in waiting.values() if job.slurm_job_id]
            try:
                rows = session.slurm.queue(ids)
            except (SlurmError, TransportError):
                rows = None  # asked again at the next poll; the deadline still holds
            now = time.monotonic()
            for name, job in list(waiting.items()):
                row = rows.get(job.slurm_job_id or "") if rows is not None else None
                if rows is not None and (
                    row is None or normalise_state(row.state) not in ("RUNNING", "CONFIGURING")
                ):
                    del waiting[name]  # requeued by its batch script (or it ended)
                elif now >= deadline[name]:
                    del waiting[name]
                    requeue(job, "its ranks did not all exit within the grace period")
    except KeyboardInterrupt:
        for job in waiting.values():
            requeue(job, "interrupted while its ranks were saving")
        raise
    return failed


def _time_left(deadline: dict[str, float], waiting: dict[str, JobRecord]) -> float:
    return max(0.0, min(deadline[name] for name in waiting) - time.monotonic())


def _running(session: Session, job_ids: set[str]) -> set[str] | None:
    """Those of ``job_ids`` squeue shows running, from one squeue; None when Slurm cannot
    be asked (each caller says what it then assumes)."""
    from konduktor_slurm.lifecycle import normalise_state
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    if not job_ids:
        return set()
    try:
        rows = session.slurm.queue(sorted(job_ids))
    except (SlurmError, TransportError):
        return None
    return {
        job_id
        for job_id, row in rows.items()
        if job_id in job_ids and normalise_state(row.state) in ("RUNNING", "CONFIGURING")
    }


def _still_running(session: Session, job_id: str) -> bool:
    """A requeue that failed: the job still runs unless Slurm says otherwise."""
    running = _running(session, {job_id})
    return running is None or job_id in running


def _running_among(session: Session, job_ids: set[str]) -> set[str]:
    """Those of ``job_ids`` (pending when planned, just held) that started before the hold
    reached slurmctld; none when Slurm cannot be asked."""
    return _running(session, job_ids) or set()


def _act_in_batches(session: Session, steps: list[Step], action: Action) -> set[str]:
    """Hold (or release) the jobs of ``steps`` planned for that ``action`` with one scontrol
    per few hundred jobs: a stop of a 1,000-variant sweep made 1,000 scontrol calls and as
    many squeues. Returns the Slurm ids done so; the others (a list Slurm took only in part,
    which it does not say in the same words on every release) go one at a time, so that a
    failure is said for the job it belongs to. A second hold or release does nothing."""
    from konduktor_slurm.control import Action
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    job_ids = [
        job_id for step in steps if step.action is action and (job_id := step.job.slurm_job_id)
    ]
    if len(job_ids) < 2:
        return set()
    slurm = session.slurm
    act = slurm.hold_many if action is Action.HOLD else slurm.release_many
    try:
        return act(job_ids)
    except (SlurmError, TransportError):
        return set()


def apply_start(session: Session, plan: ControlPlan) -> ControlResult:
    from konduktor_slurm.control import Action

    released = _act_in_batches(session, plan.steps, Action.RELEASE)

    def start_one(step: Step) -> Action:
        assert step.job.slurm_job_id is not None
        if not (step.action is Action.RELEASE and step.job.slurm_job_id in released):
            _run_action(session, step.job.slurm_job_id, step.action)
        if not step.foreign:
            step.job.user_stop = None
            session.store.save(step.job)
        return step.action

    return _apply(session, plan, "started", start_one)


def apply_down(session: Session, plan: ControlPlan) -> ControlResult:
    """Cancel every unfinished job with one scancel, then hide ours from status."""
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    running = [step for step in plan.steps if not step.job.terminal and step.job.slurm_job_id]
    try:
        session.slurm.cancel(step.job.slurm_job_id for step in running if step.job.slurm_job_id)
    except (SlurmError, TransportError) as exc:
        raise ActionError(f"scancel failed: {exc}; nothing was removed") from None
    ours_running = [step.job for step in running if not step.foreign]
    if ours_running:
        _wait_until_recorded(session, ours_running)
    result = ControlResult()
    for step in plan.steps:
        if not step.foreign:
            step.job.hidden = True
            session.store.save(step.job)
        result.done.append(Done(step.job, step.action, step.foreign, step in running))
    return result


def _apply(
    session: Session,
    plan: ControlPlan,
    done_word: str,
    act: Callable[[Step], Action],
    finish: Callable[[ControlResult], None] | None = None,
) -> ControlResult:
    """``act`` on every step; then ``finish`` (what must wait for all of them)."""
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    result = ControlResult()
    foreign: list[JobRecord] = []
    for step in plan.steps:
        try:
            action = act(step)
        except (SlurmError, TransportError) as exc:
            if isinstance(exc, SlurmError) and _ENDED_MEANWHILE.search(exc.slurm_message):
                # It finished between the plan and the action: nothing is left to do.
                result.notes.append(f"{step.job.name} finished meanwhile; nothing to do.")
                continue
            result.failures.append(f"{step.job.name} was not {done_word}: {exc}")
            continue
        result.done.append(Done(step.job, action, step.foreign))
        if step.foreign:
            foreign.append(step.job)
    if finish is not None:
        finish(result)
        foreign = [job for job in foreign if any(done.job is job for done in result.done)]
    ours = [done.job for done in result.done if done.job not in foreign]
    if ours:
        looked = show_states(session, ours)
        if looked.stale:
            result.stale |= {job.name for job in ours if looked.is_stale(job)}
            result.stale_reason = looked.stale_reason
    if foreign:
        reason = _refresh_foreign(session, foreign)
        if reason is not None:
            result.stale |= {job.name for job in foreign}
            result.stale_reason = result.stale_reason or reason
    return result


def _refresh_foreign(session: Session, jobs: list[JobRecord]) -> str | None:
    """Other users' jobs are not in our store: their new state comes from one squeue.
    Returns why Slurm could not be asked (their states are then the last known), or None."""
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.tracker import foreign_job
    from konduktor_slurm.transport import TransportError

    time.sleep(1)  # let slurmctld apply what was just asked
    try:
        rows = session.slurm.queue([job.slurm_job_id for job in jobs if job.slurm_job_id])
    except (SlurmError, TransportError) as exc:
        message = str(exc).strip()
        return message.splitlines()[0] if message else type(exc).__name__
    now = time.time()
    for job in jobs:
        row = rows.get(job.slurm_job_id or "")
        if row is not None:
            fresh = foreign_job(row, now)
            job.state, job.detail, job.extra = fresh.state, fresh.detail, fresh.extra
    return None


def settle(
    session: Session, jobs: list[JobRecord], seconds: float = SETTLE_SECONDS
) -> RefreshResult | None:
    """Wait (bounded) while Slurm is still tearing down a job it is requeueing.

    A requeue kills the job's processes and passes through COMPLETING for a few seconds;
    releasing it in that window leaves it with Slurm's 2-minute requeue delay, and showing
    it then would say "completing", not "stopped".
    """
    from konduktor_slurm.lifecycle import normalise_state
    from konduktor_slurm.tracker import refresh

    deadline = time.monotonic() + seconds
    looked = None
    while any(normalise_state(job.extra.get("slurm_state") or "") == "COMPLETING" for job in jobs):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
        looked = refresh(session.store, session.slurm, jobs)
        if looked.stale:
            break
    return looked


def show_states(session: Session, jobs: list[JobRecord]) -> RefreshResult:
    """Refresh after acting, so each job says where it is now; the last look says whether
    that is the last known state (Slurm did not answer) instead."""
    from konduktor_slurm.tracker import refresh

    looked = refresh(session.store, session.slurm, jobs)
    if looked.stale:
        return looked
    return settle(session, jobs) or looked


def _wait_until_recorded(session: Session, jobs: list[JobRecord]) -> None:
    """Give Slurm a few seconds to finish the cancellation, so the store says how it ended."""
    from konduktor_slurm.tracker import refresh

    deadline = time.monotonic() + 5
    while True:
        result = refresh(session.store, session.slurm, jobs)
        if result.stale or all(job.terminal for job in jobs) or time.monotonic() > deadline:
            return
        time.sleep(0.5)
