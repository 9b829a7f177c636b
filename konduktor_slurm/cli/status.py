"""`konduktor status`: the table, one job's detail, and --json."""

from __future__ import annotations

import getpass
import json
import sys
import time

import click

from konduktor_slurm.cli import (
    EXIT_STALE,
    console,
    main,
    open_slurm,
    open_store,
    resolve_job,
    settings,
)
from konduktor_slurm.store import JobRecord, Store

# ---------------------------------------------------------------------------------------
# status


@main.command()
@click.argument("job_name", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (documented fields)."
)
@click.option("-a", "--all", "show_all", is_flag=True, help="Include jobs removed with `down`.")
@click.option("-l", "--limit", type=click.IntRange(min=1), help="Show at most this many jobs.")
def status(job_name: str | None, as_json: bool, show_all: bool, limit: int | None) -> None:
    """Show your jobs (newest first), or one job in detail.

    Exit code 0, or 2 when Slurm could not be reached (the last known states are shown,
    marked stale).
    """
    from konduktor_slurm.tracker import refresh
    from konduktor_slurm.views import STATE_STYLES, STATUS_COLUMNS, job_json, status_row

    config = settings()
    store = open_store(config)
    slurm = open_slurm(config)
    if job_name:
        jobs = [resolve_job(store, job_name)]
    else:
        jobs = store.jobs(include_hidden=show_all)
        if limit:
            jobs = jobs[:limit]
    result = refresh(store, slurm, jobs)
    now = time.time()

    if as_json:
        payload: dict = {
            "user": getpass.getuser(),
            "stale": result.stale,
            "stale_reason": result.stale_reason,
            "jobs": [job_json(job, now) for job in jobs],
        }
        if job_name:
            from konduktor_slurm.views import transition_json

            payload["jobs"][0]["history"] = [
                transition_json(t) for t in store.transitions([jobs[0].name])
            ]
        click.echo(json.dumps(payload, indent=2))
    elif job_name:
        _print_job_detail(store, jobs[0], now)
    else:
        from rich.table import Table

        out = console()
        out.print(f"User: {getpass.getuser()}", highlight=False)
        table = Table(box=None, pad_edge=False, header_style="bold", highlight=False)
        for column in STATUS_COLUMNS:
            table.add_column(column, no_wrap=True)
        for job in jobs:
            row = list(status_row(job, now))
            style = STATE_STYLES.get(job.state, "")
            row[1] = f"[{style}]{row[1]}[/]" if style else row[1]
            table.add_row(*row)
        if jobs:
            out.print(table)
        else:
            out.print("No jobs yet. Launch one with: konduktor launch task.yaml")
    if result.stale:
        click.echo(
            f"Warning: Slurm could not be reached ({result.stale_reason}); "
            "states shown are the last known (stale).",
            err=True,
        )
        sys.exit(EXIT_STALE)


def _print_job_detail(store: Store, job: JobRecord, now: float) -> None:
    from konduktor_slurm.views import clock, duration_seconds, format_duration

    lines = [
        ("Name", job.name),
        ("Status", job.state + (f" ({job.detail})" if job.detail else "")),
        ("Slurm job id", job.slurm_job_id or "-"),
        ("Resources", job.resources),
        ("Submitted", clock(job.submitted_at or job.created_at)),
        ("Start time", clock(job.start_time)),
        ("End time", clock(job.end_time) if job.terminal else "-"),
        ("Duration", format_duration(duration_seconds(job, now))),
        ("Log", job.log_path),
        ("Job dir", job.job_dir),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<14}{value}")
    click.echo("History:")
    for transition in store.transitions([job.name]):
        detail = f" ({transition.detail})" if transition.detail else ""
        click.echo(f"  {clock(transition.at)}  {transition.state}{detail}")
