"""Status: the jobs, brought up to date with Slurm in one refresh, filtered as asked.

A refresh costs one ``squeue`` for every unfinished job (plus at most one ``sacct`` for the
jobs that just left the queue); finished jobs are never asked about again. When Slurm does
not answer, the last known states come back with ``stale_reason`` set.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord, Transition

# `status -s WORD`: each word selects the lifecycle states that start with its value
# ("suspended" is both SUSPENDED (by system) and SUSPENDED (by user)).
STATE_FILTERS: dict[str, str] = {
    "created": "CREATED",
    "pending": "PENDING",
    "suspended": "SUSPENDED",
    "active": "ACTIVE",
    "completed": "COMPLETED",
    "failed": "FAILED",
}


@dataclass(frozen=True)
class StatusQuery:
    """Which jobs a status shows (the CLI's options, the SDK's arguments)."""

    name: str | None = None  # one job (name or Slurm id), with its history
    all_users: bool = False  # also other users' konduktor jobs (one squeue for everyone)
    states: tuple[str, ...] = ()  # keys of STATE_FILTERS
    after: float | None = None  # submitted after (epoch seconds)
    before: float | None = None
    limit: int | None = None
    include_hidden: bool = False  # jobs removed with `down`
    # Share Slurm's answers with the other konduktor processes of this store (followers,
    # waits): ask Slurm only if none of them has within this many seconds, else show what
    # the store holds from their look. Not with all_users (their look is of our jobs only).
    shared_within: float | None = None


@dataclass(frozen=True)
class StatusView:
    """What a status shows: the jobs, brought up to date, and whether that failed."""

    user: str  # whose jobs these are (over SSH: the remote account)
    jobs: list[JobRecord]  # newest first
    stale_reason: str | None = None  # why Slurm could not be asked (states are last known)
    history: list[Transition] = field(default_factory=list)  # with a single job
    stale_jobs: frozenset[str] | None = None  # which jobs are stale; None: all of them

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None

    def is_stale(self, job: JobRecord) -> bool:
        """Whether the job's state shown is only its last known one."""
        if job.terminal or not self.stale:
            return False
        return self.stale_jobs is None or job.name in self.stale_jobs


def status(session: Session, query: StatusQuery = StatusQuery()) -> StatusView:
    from konduktor_slurm.tracker import refresh, refresh_shared

    store = session.store
    jobs = [session.job(query.name)] if query.name else store.jobs(query.include_hidden)
    # Over SSH the jobs belong to the remote account; the store knows it without connecting.
    user = store.last_user() or getpass.getuser()
    # Refresh before filtering: a filter on state must see the current state.
    everyone = query.all_users and not query.name
    if query.shared_within is not None and not everyone:
        result = refresh_shared(store, session.slurm, jobs, query.shared_within)
    else:
        result = refresh(store, session.slurm, jobs, all_users=everyone)
    if query.name:
        history = store.transitions([jobs[0].name])
        return StatusView(user, jobs, result.stale_reason, history, result.stale_jobs)
    everyone = sorted([*jobs, *result.others], key=lambda job: job.submitted_at or job.created_at)
    selected = select(everyone[::-1], query)
    return StatusView(user, selected, result.stale_reason, stale_jobs=result.stale_jobs)


def select(jobs: list[JobRecord], query: StatusQuery) -> list[JobRecord]:
    wanted = [STATE_FILTERS[state.lower()] for state in query.states]
    selected = []
    for job in jobs:
        submitted = job.submitted_at or job.created_at
        if wanted and not any(job.state.startswith(prefix) for prefix in wanted):
            continue
        if query.after is not None and submitted < query.after:
            continue
        if query.before is not None and submitted > query.before:
            continue
        selected.append(job)
    return selected[: query.limit] if query.limit else selected
