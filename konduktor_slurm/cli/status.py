"""`konduktor status`: the table, one job's detail, and --json."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from konduktor_slurm.cli import EXIT_STALE, main, service_errors
from konduktor_slurm.durations import DurationError, parse_when
from konduktor_slurm.service.status import STATE_FILTERS

if TYPE_CHECKING:
    from konduktor_slurm.service.status import StatusView
    from konduktor_slurm.store import JobRecord


def _parse_when(value: str | None, option: str, now: float) -> float | None:
    """``--after/--before``: an ISO date/time (``2026-11-28``, ``2026-11-28T14:00``) or an
    age like ``2h``, ``30m``, ``3d`` meaning that long ago."""
    if value is None:
        return None
    try:
        return parse_when(value, now)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@main.command()
@click.argument("job_name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.option(
    "-u", "--all-users", is_flag=True, help="Also show other users' konduktor jobs (adds USER)."
)
@click.option(
    "-s",
    "--status-filter",
    "states",
    multiple=True,
    type=click.Choice(sorted(STATE_FILTERS), case_sensitive=False),
    help="Only jobs in this state (repeatable).",
)
@click.option("-l", "--limit", type=click.IntRange(min=1), help="Show at most this many jobs.")
@click.option("--after", help="Only jobs submitted after this time (2026-11-28T14:00, or 2h).")
@click.option("--before", help="Only jobs submitted before this time (same forms).")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include jobs removed with `down`.")
def status(
    job_name: str | None,
    as_json: bool,
    all_users: bool,
    states: tuple[str, ...],
    limit: int | None,
    after: str | None,
    before: str | None,
    show_all: bool,
) -> None:
    """Show your jobs, newest first, or one job in detail (JOB_NAME).

    One call costs at most one squeue for all unfinished jobs plus at most one sacct for
    the jobs that just left the queue; finished jobs are never asked about again.

    \b
    Exit codes: 0 shown; 3 Slurm could not be reached: the last known states are shown,
    marked stale, with the reason on stderr.
    """
    from konduktor_slurm.service.session import open_session
    from konduktor_slurm.service.status import StatusQuery
    from konduktor_slurm.service.status import status as query_status

    started = time.time()
    query = StatusQuery(
        name=job_name,
        all_users=all_users,
        states=states,
        after=_parse_when(after, "--after", started),
        before=_parse_when(before, "--before", started),
        limit=limit,
        include_hidden=show_all,
    )
    # A status only runs commands on the cluster (squeue, sacct): over SSH, OpenSSH's client.
    with service_errors(), open_session(commands_only=True) as session:
        view = query_status(session, query)
    now = time.time()
    if as_json:
        _print_json(view, job_name is not None, now)
    elif job_name:
        _print_job_detail(view, now)
    else:
        _print_table(view, all_users, now)
    if view.stale:
        click.echo(
            f"Warning: Slurm could not be reached ({view.stale_reason}); "
            "states marked (stale) are the last known.",
            err=True,
        )
        sys.exit(EXIT_STALE)


def _print_json(view: StatusView, one_job: bool, now: float) -> None:
    from konduktor_slurm.views import job_json, transition_json, write_json_list

    def jobs():
        for job in view.jobs:
            entry = job_json(job, now)
            if one_job:
                entry["history"] = [transition_json(t) for t in view.history]
            yield entry

    head = {"user": view.user, "stale": view.stale, "stale_reason": view.stale_reason}
    write_json_list(sys.stdout, head, "jobs", jobs())


def _print_table(view: StatusView, all_users: bool, now: float) -> None:
    from konduktor_slurm.views import STATE_STYLES, STATUS_COLUMNS, plain_table, status_row

    jobs = view.jobs
    lines = [f"User: {view.user}\n"]
    if not jobs:
        lines.append("No jobs. Launch one with: konduktor launch task.yaml\n")
        sys.stdout.write("".join(lines))
        return
    columns = list(STATUS_COLUMNS)
    rows = []
    for job in jobs:
        row = list(status_row(job, now))
        if view.is_stale(job):
            row[1] = f"{row[1]} (stale)"
        if all_users:
            row.insert(1, job.user)
        rows.append(row)
    if all_users:
        columns.insert(1, "USER")
    colour = [STATE_STYLES.get(job.state) for job in jobs] if sys.stdout.isatty() else None
    lines.append(plain_table(columns, rows, colour, colour_column=2 if all_users else 1))
    sys.stdout.write("".join(lines))


def _print_job_detail(view: StatusView, now: float) -> None:
    from konduktor_slurm.views import clock, detail_fields

    job: JobRecord = view.jobs[0]
    lines = detail_fields(job, now, view.is_stale(job))
    for label, value in lines:
        click.echo(f"{label + ':':<14}{value}")
    click.echo("History:")
    for transition in view.history:
        detail = f" ({transition.detail})" if transition.detail else ""
        click.echo(f"  {clock(transition.at)}  {transition.state}{detail}")
