"""`konduktor report`: what changed since the last report, what failed, what the GPUs cost.

Pure: the CLI gathers the store's jobs and transitions, Slurm's accounting runs and the log
tails of failed ranks, and :func:`build_report` turns them into a :class:`Report` that the
renderers in ``report_formats.py`` print. No I/O here, so every rule is unit-tested.

Billing follows the product's promise: only time ACTIVE counts. Slurm's accounting gives it
per run of a job (``sacct --duplicates``; ``ElapsedRaw`` already leaves suspended time out).
A run is billed in the report whose window it ended in, so consecutive reports never bill
the same run twice; runs still going are shown as in progress, billed when they end. Time
suspended, pending, and the whole of a run that was requeued (preempted, stopped by
requeue, node failure) are reported beside the bill, never in it: that work was lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from konduktor_slurm.lifecycle import State, normalise_state
from konduktor_slurm.slurm import AcctRun
from konduktor_slurm.store import JobRecord, Transition

STATES = tuple(state.value for state in State)  # in lifecycle order
_WAITING = {"PENDING", "SUSPENDED (by system)", "SUSPENDED (by user)"}
# A run that ended so: the job went back to the queue and the run's work is lost.
_LOST_RUN_STATES = {"REQUEUED", "PREEMPTED", "NODE_FAIL", "REQUEUE_HOLD", "REQUEUE_FED"}
_RANK_IN_DETAIL = re.compile(r"\brank (\d+)\b")


@dataclass(frozen=True)
class Failure:
    """A job that failed in the report's window: who, when, why, and the failing rank."""

    job: str
    user: str
    at: float
    detail: str
    rank: int | None
    exit_code: int | None
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stuck:
    """A job waiting (PENDING or SUSPENDED) longer than the report's --stuck-after."""

    job: str
    user: str
    state: str
    since: float
    reason: str | None


@dataclass
class Usage:
    """Billed and unbilled time of one job or one user in the report window."""

    name: str
    user: str
    active_seconds: float = 0.0
    node_hours: float = 0.0
    gpu_hours: float = 0.0
    suspended_seconds: float = 0.0
    pending_seconds: float = 0.0
    lost_seconds: float = 0.0  # ACTIVE time of runs that were requeued: not billed
    lost_gpu_hours: float = 0.0
    runs_billed: int = 0
    running: bool = False  # a run still going: billed when it ends

    def add(self, other: Usage) -> None:
        for name in (
            "active_seconds",
            "node_hours",
            "gpu_hours",
            "suspended_seconds",
            "pending_seconds",
            "lost_seconds",
            "lost_gpu_hours",
            "runs_billed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.running = self.running or other.running


@dataclass(frozen=True)
class Segment:
    """A stretch of one job's timeline in one lifecycle state (for the HTML chart)."""

    state: str
    start: float
    end: float


@dataclass(frozen=True)
class Report:
    """Everything one report says, before it is formatted (report_formats.py)."""

    generated_at: float
    window_start: float
    users: tuple[str, ...]
    transitions: tuple[Transition, ...]
    failures: tuple[Failure, ...]
    stuck: tuple[Stuck, ...]
    counts: Mapping[str, int]
    jobs_usage: tuple[Usage, ...]
    users_usage: tuple[Usage, ...]
    timelines: Mapping[str, tuple[Segment, ...]] = field(default_factory=dict)
    stale_reason: str | None = None
    accounting_error: str | None = None

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None


def failing_rank(job: JobRecord) -> tuple[int | None, int | None]:
    """The rank that failed the job and its exit code, from what the store kept."""
    codes = {int(rank): code for rank, code in (job.extra.get("rank_exit_codes") or {}).items()}
    failed = sorted(rank for rank, code in codes.items() if code)
    if failed:
        return failed[0], codes[failed[0]]
    match = _RANK_IN_DETAIL.search(job.detail or "")
    rank = int(match.group(1)) if match else None
    exit_code = job.extra.get("exit_code")
    code = None
    if isinstance(exit_code, str) and ":" in exit_code:
        code = int(exit_code.split(":")[0]) or None
    return rank, code


def bill(
    runs: Iterable[AcctRun], window_start: float, now: float, names: Mapping[str, str]
) -> list[Usage]:
    """Per-job usage of the runs that ended in ``(window_start, now]`` (and runs going on).

    ``names`` maps a Slurm job id to its konduktor name (falls back to Slurm's job name).
    """
    by_job: dict[str, Usage] = {}
    for run in runs:
        name = names.get(run.job_id, run.name)
        usage = by_job.setdefault(name, Usage(name=name, user=run.user))
        ended = run.end_time is not None and normalise_state(run.state) not in {
            "RUNNING",
            "PENDING",
            "SUSPENDED",
        }
        if not ended:
            if run.start_time is not None:
                usage.running = True
            continue
        assert run.end_time is not None
        if not window_start < run.end_time <= now:
            continue
        hours = run.active_seconds / 3600
        usage.suspended_seconds += run.suspended_seconds
        if run.start_time is not None and run.submit_time is not None:
            usage.pending_seconds += max(0.0, run.start_time - run.submit_time)
        if normalise_state(run.state.split()[0]) in _LOST_RUN_STATES:
            usage.lost_seconds += run.active_seconds
            usage.lost_gpu_hours += hours * run.gpus
            continue
        usage.active_seconds += run.active_seconds
        usage.node_hours += hours * run.nodes
        usage.gpu_hours += hours * run.gpus
        usage.runs_billed += 1
    return [
        usage
        for usage in by_job.values()
        if usage.runs_billed or usage.lost_seconds or usage.suspended_seconds or usage.running
    ]


def per_user(jobs_usage: Iterable[Usage]) -> list[Usage]:
    users: dict[str, Usage] = {}
    for usage in jobs_usage:
        users.setdefault(usage.user, Usage(name=usage.user, user=usage.user)).add(usage)
    return sorted(users.values(), key=lambda usage: (-usage.gpu_hours, usage.name))


def timeline(
    transitions: Sequence[Transition], window_start: float, now: float
) -> tuple[Segment, ...]:
    """A job's states as segments, clipped to the window (its transitions in time order)."""
    segments = []
    for index, transition in enumerate(transitions):
        end = transitions[index + 1].at if index + 1 < len(transitions) else now
        if end < window_start:
            continue  # over before the window opened
        start = max(transition.at, window_start)
        if transition.state in {"COMPLETED", "FAILED"}:
            segments.append(Segment(transition.state, start, start))  # an end is a point
        elif end > start:
            segments.append(Segment(transition.state, start, end))
    return tuple(segments)


def build_report(
    *,
    now: float,
    window_start: float,
    jobs: Sequence[JobRecord],
    new_transitions: Sequence[Transition],
    history: Sequence[Transition],
    runs: Sequence[AcctRun],
    log_tails: Mapping[str, Sequence[str]],
    stuck_after: float,
    stale_reason: str | None = None,
    accounting_error: str | None = None,
    users: Sequence[str] = (),
    counts: Mapping[str, int] | None = None,
) -> Report:
    """Everything a report says, from what the CLI gathered.

    ``new_transitions`` are the ones not reported before (the cursor); ``history`` every
    transition of ``jobs`` (for timelines and how long a job has waited). ``jobs`` must hold
    every job that is waiting, that changed state or has a run in ``runs``; ``counts`` (jobs
    per state, those taken down left out) is counted from ``jobs`` when not given, so a
    caller with a big store counts in SQL and passes only the jobs that matter.
    """
    by_name = {job.name: job for job in jobs}
    failures = []
    for transition in new_transitions:
        job = by_name.get(transition.job_name)
        if transition.state != "FAILED" or job is None:
            continue
        rank, code = failing_rank(job)
        failures.append(
            Failure(
                job=job.name,
                user=job.user,
                at=transition.at,
                detail=transition.detail or job.detail,
                rank=rank,
                exit_code=code,
                log_tail=tuple(log_tails.get(job.name, ())),
            )
        )

    last_change: dict[str, float] = {}
    history_of: dict[str, list[Transition]] = {}
    for transition in sorted(history, key=lambda t: t.at):
        last_change[transition.job_name] = transition.at
        history_of.setdefault(transition.job_name, []).append(transition)
    # Jobs taken down with `konduktor down` keep their history but are no longer "there".
    visible = [job for job in jobs if not job.hidden]
    stuck = [
        Stuck(
            job.name,
            job.user,
            job.state,
            last_change.get(job.name, job.created_at),
            job.extra.get("reason"),
        )
        for job in visible
        if job.state in _WAITING and now - last_change.get(job.name, job.created_at) >= stuck_after
    ]

    if counts is None:
        counts = {}
        for job in visible:
            counts[job.state] = counts.get(job.state, 0) + 1
    counts = {**dict.fromkeys(STATES, 0), **counts}

    names = {job.slurm_job_id: job.name for job in jobs if job.slurm_job_id}
    jobs_usage = sorted(bill(runs, window_start, now, names), key=lambda u: (-u.gpu_hours, u.name))
    touched = {t.job_name for t in new_transitions} | {u.name for u in jobs_usage}
    timelines = {
        name: timeline(history_of.get(name, []), window_start, now)
        for name in sorted(touched)
        if history_of.get(name)
    }
    return Report(
        generated_at=now,
        window_start=window_start,
        users=tuple(users),
        transitions=tuple(sorted(new_transitions, key=lambda t: (t.at, t.job_name))),
        failures=tuple(failures),
        stuck=tuple(sorted(stuck, key=lambda s: s.since)),
        counts=counts,
        jobs_usage=tuple(jobs_usage),
        users_usage=tuple(per_user(jobs_usage)),
        timelines=timelines,
        stale_reason=stale_reason,
        accounting_error=accounting_error,
    )
