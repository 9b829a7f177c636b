"""Bring the store up to date with Slurm, in a bounded number of Slurm calls.

One ``squeue`` for every job that is not known to be finished, at most one ``sacct`` for the
jobs that have left the queue (or finished in it), and at most one file read for the
per-rank exit codes of the jobs that just finished. Jobs the store already knows to be
terminal are never queried again: that is what keeps ``konduktor status`` cheap at 200 jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from konduktor_slurm.lifecycle import (
    LocalFacts,
    SlurmFacts,
    State,
    UserStop,
    classify,
    is_terminal_slurm_state,
    normalise_state,
)
from konduktor_slurm.slurm import AcctRow, QueueRow, Slurm, SlurmError
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.transport import TransportError

RANK_EXIT_GLOB = "rank-*.exit"


@dataclass(frozen=True)
class RefreshResult:
    stale_reason: str | None = None  # why Slurm could not be asked; states are last known

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None


def read_rank_exit_codes(slurm: Slurm, job_dirs: list[str]) -> dict[str, dict[int, int]]:
    """``{job_dir: {rank: exit code}}`` for all ``job_dirs`` with one command."""
    if not job_dirs:
        return {}
    # grep prints "path:line" for every line of every matching file; '' matches any line.
    result = slurm.transport.run(
        ["grep", "-rHs", f"--include={RANK_EXIT_GLOB}", "", *job_dirs], timeout=slurm.timeout
    )
    codes: dict[str, dict[int, int]] = {}
    for line in result.stdout.splitlines():
        path, _, value = line.rpartition(":")
        directory, _, filename = path.rpartition("/")
        rank_text = filename.removeprefix("rank-").removesuffix(".exit")
        if rank_text.isdigit() and value.strip().lstrip("-").isdigit():
            codes.setdefault(directory, {})[int(rank_text)] = int(value.strip())
    return codes


def slurm_facts(
    job: JobRecord, queue: QueueRow | None, acct: AcctRow | None, ranks: dict[int, int]
) -> SlurmFacts:
    return SlurmFacts(
        job_id=job.slurm_job_id,
        squeue_state=normalise_state(queue.state) if queue else None,
        reason=queue.reason if queue else None,
        priority=queue.priority if queue else None,
        restarts=queue.restarts if queue else 0,
        requeueable=queue.requeueable if queue else True,
        node_list=(queue.node_list if queue else None) or (acct.node_list if acct else None),
        sacct_state=acct.state if acct else None,
        exit_code=acct.exit_code if acct else None,
        time_limit=(queue.time_limit if queue else None) or (acct.time_limit if acct else None),
        rank_exit_codes=ranks,
    )


def local_facts(job: JobRecord, now: float) -> LocalFacts:
    stop = job.user_stop
    return LocalFacts(
        submitted=job.slurm_job_id is not None,
        created_detail=job.detail or "staging workdir",
        user_stop=UserStop(stop["user"], stop["at"], stop["mode"]) if stop else None,
        now=now,
    )


def refresh(store: Store, slurm: Slurm, jobs: list[JobRecord]) -> RefreshResult:
    """Ask Slurm about every unfinished job in ``jobs`` and record what changed."""
    live = [job for job in jobs if not job.terminal and job.slurm_job_id]
    if not live:
        return RefreshResult()
    ids = [job.slurm_job_id for job in live if job.slurm_job_id]
    try:
        queue = slurm.queue(ids)
        left_queue = [
            job_id
            for job_id in ids
            if job_id not in queue or is_terminal_slurm_state(normalise_state(queue[job_id].state))
        ]
        acct = slurm.accounting(left_queue) if left_queue else {}
        finished_dirs = [job.job_dir for job in live if job.slurm_job_id in left_queue]
        ranks = read_rank_exit_codes(slurm, finished_dirs)
    except (SlurmError, TransportError) as exc:
        return RefreshResult(stale_reason=str(exc))

    now = time.time()
    for job in live:
        job_id = job.slurm_job_id or ""
        row, acct_row = queue.get(job_id), acct.get(job_id)
        facts = slurm_facts(job, row, acct_row, ranks.get(job.job_dir, {}))
        outcome = classify(facts, local_facts(job, now))
        _update_times(job, row, acct_row)
        job.terminal = outcome.state.terminal
        store.set_state(job, outcome.state.value, outcome.detail, now)
    return RefreshResult()


def _update_times(job: JobRecord, row: QueueRow | None, acct: AcctRow | None) -> None:
    for source in (row, acct):
        if source is None:
            continue
        if source.start_time and source.start_time <= time.time():
            job.start_time = source.start_time
        if source.end_time and source.end_time <= time.time():
            job.end_time = source.end_time


def is_active(state: str) -> bool:
    return state == State.ACTIVE.value
