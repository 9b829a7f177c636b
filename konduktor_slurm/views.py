"""How jobs look to people (a Konduktor-style table) and to scripts (stable JSON)."""

from __future__ import annotations

import time
from typing import Any

# The time formats are durations.py's; importable from here too (report_formats, cli).
from konduktor_slurm.durations import clock, format_duration, humanize_ago, iso
from konduktor_slurm.store import JobRecord, Transition

__all__ = [
    "STATE_STYLES",
    "STATUS_COLUMNS",
    "clock",
    "duration_seconds",
    "format_duration",
    "iso",
    "job_json",
    "rank_exit_codes",
    "status_row",
    "transition_json",
]

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


def rank_exit_codes(job: JobRecord) -> dict[int, int]:
    """``{rank: exit code}`` in rank order (2 before 10), as the tracker recorded it.

    The store keeps ``extra`` as JSON, whose object keys are strings: every reader goes
    through here so that ranks are ints in Python and sorted numerically everywhere.
    """
    codes = job.extra.get("rank_exit_codes") or {}
    return dict(sorted((int(rank), int(code)) for rank, code in codes.items()))


def duration_seconds(job: JobRecord, now: float) -> float | None:
    if job.start_time is None:
        return None
    end = job.end_time if job.end_time is not None else (None if job.terminal else now)
    return None if end is None else max(0.0, end - job.start_time)


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
        # In rank order; json.dumps writes the int keys as strings: {"2": 0, "10": 3}.
        "rank_exit_codes": rank_exit_codes(job),
        "restarts": job.extra.get("restarts", 0),
        "attempt": job.extra.get("attempt"),
    }


def transition_json(transition: Transition) -> dict[str, Any]:
    return {"status": transition.state, "detail": transition.detail, "at": iso(transition.at)}
