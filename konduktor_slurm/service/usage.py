"""GPU-hours per job, for a page that shows them beside the status table (``konduktor
dashboard``).

The same billing as ``konduktor report`` (``report.bill``): only ACTIVE time counts, from
Slurm accounting (``sacct --duplicates``: every run of a job; ``ElapsedRaw`` leaves suspended
time out); a run lost to a requeue is shown beside the bill, never in it. A run still going
is counted up to now, so the number grows while the job runs. One ``sacct`` for every job
asked about; finished jobs need asking once only, so callers keep the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord


@dataclass(frozen=True)
class JobUsage:
    """A job's GPU time as accounting saw it at ``measured_at``."""

    billed_gpu_hours: float  # runs that ended, requeued ones excepted
    lost_gpu_hours: float  # ACTIVE time of runs lost to a requeue (preemption, stop by requeue)
    running_gpus: int  # GPUs of the run going on (0: none)
    running_seconds: float  # that run's ACTIVE seconds at ``measured_at``
    measured_at: float
    final: bool  # the job had ended when measured: its usage will not change

    def gpu_hours(self, now: float, active_now: bool) -> float:
        """Billed plus the run going on, counted up to ``now`` while the job is ACTIVE."""
        running = self.running_seconds
        if self.running_gpus and active_now:
            running += max(0.0, now - self.measured_at)
        return self.billed_gpu_hours + self.running_gpus * running / 3600


def measure(
    session: Session, jobs: list[JobRecord], now: float | None = None
) -> dict[str, JobUsage]:
    """``{job name: JobUsage}`` for ``jobs`` (those submitted to Slurm), from one ``sacct``.

    Raises SlurmError/TransportError when accounting cannot be asked.
    """
    from konduktor_slurm.lifecycle import normalise_state
    from konduktor_slurm.report import bill

    submitted = {job.slurm_job_id: job for job in jobs if job.slurm_job_id}
    if not submitted:
        return {}
    now = time.time() if now is None else now
    runs = session.slurm.runs(list(submitted))
    names = {job_id: job.name for job_id, job in submitted.items()}
    billed = {usage.name: usage for usage in bill(runs, 0.0, now, names)}
    running: dict[str, tuple[int, float]] = {}
    for run in runs:
        job = submitted.get(run.job_id)
        if job is None or run.start_time is None:
            continue
        if run.end_time is None or normalise_state(run.state) in ("RUNNING", "SUSPENDED"):
            running[job.name] = (run.gpus, float(run.active_seconds))
    usage = {}
    for job in submitted.values():
        ended = billed.get(job.name)
        gpus, seconds = running.get(job.name, (0, 0.0))
        usage[job.name] = JobUsage(
            billed_gpu_hours=ended.gpu_hours if ended else 0.0,
            lost_gpu_hours=ended.lost_gpu_hours if ended else 0.0,
            running_gpus=gpus,
            running_seconds=seconds,
            measured_at=now,
            final=job.terminal and job.name not in running,
        )
    return usage
