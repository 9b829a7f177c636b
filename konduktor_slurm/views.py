"""How jobs look to people (a Konduktor-style table) and to scripts (stable JSON)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from konduktor_slurm.lifecycle import humanize_ago
from konduktor_slurm.store import JobRecord, Transition

STATUS_COLUMNS = ("NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION")
STATE_STYLES = {
    "CREATED": "cyan",
    "PENDING": "yellow",
    "SUSPENDED (by system)": "magenta",
    "SUSPENDED (by user)": "magenta",
    "ACTIVE": "green",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
}


def clock(epoch: float | None) -> str:
    """Konduktor's timestamp style: ``08/08/25 04:11PM``."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%m/%d/%y %I:%M%p")


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def duration_seconds(job: JobRecord, now: float) -> float | None:
    if job.start_time is None:
        return None
    end = job.end_time if job.end_time is not None else (None if job.terminal else now)
    return None if end is None else max(0.0, end - job.start_time)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def status_row(job: JobRecord, now: float) -> tuple[str, ...]:
    submitted = job.submitted_at or job.created_at
    return (
        job.name,
        job.state,
        job.resources,
        humanize_ago(now - submitted),
        clock(job.start_time),
        clock(job.end_time) if job.terminal else "-",
        format_duration(duration_seconds(job, now)),
    )


def job_json(job: JobRecord, now: float | None = None) -> dict[str, Any]:
    """The documented ``--json`` fields (README: "status --json")."""
    now = time.time() if now is None else now
    return {
        "name": job.name,
        "task_name": job.task_name,
        "status": job.state,
        "detail": job.detail,
        "terminal": job.terminal,
        "user": job.user,
        "slurm_job_id": job.slurm_job_id,
        "resources": job.resources,
        "num_nodes": job.num_nodes,
        "gpus_per_node": job.gpus_per_node,
        "submitted_at": iso(job.submitted_at or job.created_at),
        "start_time": iso(job.start_time),
        "end_time": iso(job.end_time) if job.terminal else None,
        "duration_seconds": duration_seconds(job, now),
        "log_path": job.log_path,
        "job_dir": job.job_dir,
        "node_list": job.extra.get("node_list"),
        "slurm_state": job.extra.get("slurm_state"),
        "reason": job.extra.get("reason"),
        "exit_code": job.extra.get("exit_code"),
        "rank_exit_codes": {
            int(rank): code for rank, code in (job.extra.get("rank_exit_codes") or {}).items()
        },
        "restarts": job.extra.get("restarts", 0),
        "attempt": job.extra.get("attempt"),
    }


def transition_json(transition: Transition) -> dict[str, Any]:
    return {"status": transition.state, "detail": transition.detail, "at": iso(transition.at)}
