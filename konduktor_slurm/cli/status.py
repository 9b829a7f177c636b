"""`konduktor status`: the options; the table, one job's detail and --json are printed by
konduktor_slurm.entry.show_status, which also answers a bare `konduktor status` without click."""

from __future__ import annotations

import sys
import time

import click

from konduktor_slurm.cli import main, service_errors
from konduktor_slurm.durations import DurationError, parse_when
from konduktor_slurm.service.status import STATE_FILTERS


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
# SkyPilot's `sky status -r`: taken from habit; every status asks Slurm anyway.
@click.option("-r", "--refresh", is_flag=True, hidden=True)
def status(
    job_name: str | None,
    as_json: bool,
    all_users: bool,
    states: tuple[str, ...],
    limit: int | None,
    after: str | None,
    before: str | None,
    show_all: bool,
    refresh: bool,
) -> None:
    """Show your jobs, newest first, or one job in detail (JOB_NAME).

    One call costs at most one squeue for all unfinished jobs plus at most one sacct for
    the jobs that just left the queue; finished jobs are never asked about again.

    \b
    Exit codes: 0 shown; 3 Slurm could not be reached: the last known states are shown,
    marked stale, with the reason on stderr.
    """
    from konduktor_slurm.entry import show_status
    from konduktor_slurm.service.status import StatusQuery

    now = time.time()
    query = StatusQuery(
        name=job_name,
        all_users=all_users,
        states=states,
        after=_parse_when(after, "--after", now),
        before=_parse_when(before, "--before", now),
        limit=limit,
        include_hidden=show_all,
    )
    with service_errors():
        code = show_status(query, as_json=as_json)
    if code:
        sys.exit(code)  # EXIT_STALE: the last known states were shown
