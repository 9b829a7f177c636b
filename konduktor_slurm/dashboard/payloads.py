"""A snapshot as the page's JSON: the status table (filtered as ``konduktor status`` filters),
one job's detail and history, the state timelines (as in ``konduktor report --format html``)
and GPU-hours. Pure functions of a :class:`~konduktor_slurm.dashboard.hub.Snapshot`: no
Slurm call, no I/O, so every page costs nothing but its JSON.

Texts are the CLI's (``views.status_row``, the fields of ``status JOB``); the page puts them
into the DOM with ``textContent``, so a job's name, detail or log line is never markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from konduktor_slurm.durations import DurationError, parse_when
from konduktor_slurm.service.status import STATE_FILTERS, StatusQuery, select
from konduktor_slurm.views import (
    STATUS_COLUMNS,
    clock,
    job_json,
    status_row,
)
from konduktor_slurm.views import detail_fields as status_fields

if TYPE_CHECKING:
    from konduktor_slurm.dashboard.hub import Snapshot
    from konduktor_slurm.store import JobRecord, Transition

TIMELINE_ROWS = 30  # jobs drawn in the page's timeline (the table's first ones)
TIMELINE_WINDOW = 24 * 3600  # the page's timeline looks back at most this far


class QueryError(ValueError):
    """A filter the page (or a hand-written URL) got wrong; the message names it."""


def parse_query(
    get: Callable[[str], str | None], getlist: Callable[[str], list[str]], now: float
) -> StatusQuery:
    """The filters of ``konduktor status`` from the page's query string: ``state`` (repeat;
    created, pending, suspended, active, completed, failed), ``all_users=1``, ``all=1`` (jobs
    taken down too), ``limit``, ``after`` and ``before`` (``2026-11-28T14:00`` or ``2h``)."""
    states = tuple(state.lower() for state in getlist("state") if state)
    for state in states:
        if state not in STATE_FILTERS:
            raise QueryError(f"state {state!r}: expected one of {', '.join(STATE_FILTERS)}")
    limit_text = (get("limit") or "").strip()
    limit = None
    if limit_text:
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise QueryError(f"limit {limit_text!r}: expected a whole number >= 1")
        limit = int(limit_text)
    bounds = {}
    for option in ("after", "before"):
        text = (get(option) or "").strip()
        try:
            bounds[option] = parse_when(text, now) if text else None
        except DurationError as exc:
            raise QueryError(f"{option}: {exc}") from None
    return StatusQuery(
        all_users=_flag(get("all_users")),
        states=states,
        after=bounds["after"],
        before=bounds["before"],
        limit=limit,
        include_hidden=_flag(get("all")),
    )


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def selected_jobs(snapshot: Snapshot, query: StatusQuery) -> list[JobRecord]:
    """The jobs ``konduktor status`` would list with these filters (newest first)."""
    jobs = [
        job
        for job in snapshot.jobs
        if (query.include_hidden or not job.hidden)
        and (query.all_users or job.name in snapshot.own)
    ]
    return select(jobs, query)


# ---- GPU-hours ------------------------------------------------------------------------


def gpu_hours(snapshot: Snapshot, job: JobRecord, now: float) -> tuple[float | None, bool]:
    """(GPU-hours used, whether it is an estimate). ACTIVE time only, from accounting; until
    accounting has seen the job run: its time since it started x its GPUs (an estimate)."""
    gpus = job.num_nodes * job.gpus_per_node
    active = job.state == "ACTIVE"
    usage = snapshot.usage.get(job.name)
    if usage is not None and (usage.final or usage.running_gpus or not active):
        return usage.gpu_hours(now, active), False
    if job.start_time is None or not gpus:
        return (0.0, False) if usage is not None else (None, False)
    end = job.end_time if job.terminal and job.end_time else now
    billed = usage.billed_gpu_hours if usage is not None else 0.0
    return billed + gpus * max(0.0, end - job.start_time) / 3600, True


def gpu_text(value: float | None, estimate: bool) -> str:
    if value is None:
        return "-"
    return f"~{value:.3f}" if estimate else f"{value:.3f}"


# ---- the table --------------------------------------------------------------------------


def table_payload(snapshot: Snapshot, query: StatusQuery, now: float) -> dict[str, Any]:
    jobs = selected_jobs(snapshot, query)
    columns = list(STATUS_COLUMNS)
    if query.all_users:
        columns.insert(1, "USER")
    columns.append("GPU-H")
    rows = []
    for job in jobs:
        cells = list(status_row(job, now))
        if snapshot.is_stale(job):
            cells[1] = f"{cells[1]} (stale)"
        if query.all_users:
            cells.insert(1, job.user)
        used, estimate = gpu_hours(snapshot, job, now)
        cells.append(gpu_text(used, estimate))
        rows.append(
            {
                "name": job.name,
                "status": job.state,
                "own": job.name in snapshot.own,
                "hidden": job.hidden,
                "cells": cells,
            }
        )
    return {
        "version": snapshot.version,
        "user": snapshot.user,
        "refreshed": clock_seconds(snapshot.at),
        "stale": snapshot.stale_reason is not None,
        "stale_reason": snapshot.stale_reason,
        "accounting_error": snapshot.accounting_error,
        "columns": columns,
        "jobs": rows,
        "timeline": timeline_payload(
            snapshot, [job for job in jobs if job.name in snapshot.own][:TIMELINE_ROWS], now
        ),
    }


def clock_seconds(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


# ---- timelines (as the HTML report draws them) ------------------------------------------


def timeline_payload(
    snapshot: Snapshot, jobs: Sequence[JobRecord], now: float, window: float = TIMELINE_WINDOW
) -> dict[str, Any]:
    """Each job's states as segments (``report.timeline``) on one time axis, zoomed to when
    something happened (as the report does), looking back at most ``window`` seconds."""
    from konduktor_slurm.report import timeline
    from konduktor_slurm.report_formats import STATE_COLOURS

    histories = {job.name: snapshot.history.get(job.name, ()) for job in jobs}
    starts = [history[0].at for history in histories.values() if history]
    origin = max(now - window, min(starts, default=now))
    span = max(now - origin, 1.0)
    rows = []
    for name, history in histories.items():
        segments = [
            {
                "state": segment.state,
                "start": segment.start,
                "end": segment.end,
                "colour": STATE_COLOURS.get(segment.state, "#999999"),
                "title": f"{segment.state}: {clock(segment.start)} - {clock(segment.end)}",
            }
            for segment in timeline(history, origin, now)
        ]
        if segments:
            rows.append({"job": name, "segments": segments})
    return {
        "origin": origin,
        "now": now,
        "rows": rows,
        "ticks": [
            {"at": origin + span * i / 4, "label": clock_seconds(origin + span * i / 4)}
            for i in range(5)
        ],
        "colours": STATE_COLOURS,
    }


# ---- one job ------------------------------------------------------------------------------


def detail_fields(snapshot: Snapshot, job: JobRecord, now: float) -> list[tuple[str, str]]:
    """The fields of ``konduktor status JOB``, in its order and words, plus GPU-hours."""
    used, estimate = gpu_hours(snapshot, job, now)
    usage = snapshot.usage.get(job.name)
    gpu = gpu_text(used, estimate)
    if estimate:
        gpu += " (its time ACTIVE x its GPUs, until accounting has it)"
    if usage is not None and usage.lost_gpu_hours:
        gpu += f"; {usage.lost_gpu_hours:.3f} lost to requeues (not billed)"
    fields = status_fields(job, now, snapshot.is_stale(job))
    after_duration = [label for label, _ in fields].index("Duration") + 1
    return [*fields[:after_duration], ("GPU-hours", gpu), *fields[after_duration:]]


def history_rows(history: Sequence[Transition]) -> list[dict[str, str]]:
    return [{"at": clock(t.at), "state": t.state, "detail": t.detail or ""} for t in history]


def detail_payload(snapshot: Snapshot, job: JobRecord, now: float) -> dict[str, Any]:
    own = job.name in snapshot.own
    history = snapshot.history.get(job.name, ())
    return {
        "version": snapshot.version,
        "name": job.name,
        "own": own,
        "status": job.state,
        "terminal": job.terminal,
        "num_nodes": job.num_nodes,
        "has_log": bool(job.log_path),
        "fields": [list(pair) for pair in detail_fields(snapshot, job, now)],
        "history": history_rows(history),
        # Its whole life, on an axis of its own.
        "timeline": timeline_payload(snapshot, [job] if own else [], now, window=float("inf")),
        "json": job_json(job, now),
    }


def meta_payload(
    user_hint: str, interval: float, stop_modes: Sequence[str], default_stop_mode: str
) -> Mapping[str, Any]:
    from konduktor_slurm.report_formats import STATE_COLOURS

    return {
        "user": user_hint,
        "interval": interval,
        "states": list(STATE_FILTERS),
        "stop_modes": list(stop_modes),
        "default_stop_mode": default_stop_mode,
        "colours": STATE_COLOURS,
    }
