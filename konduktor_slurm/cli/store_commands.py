"""`konduktor store check` and `konduktor store rebuild`: the job store itself.

Named store_commands, not store: `cli/__init__.py` imports every command module by name,
and a module named `store` there would shadow its functions' `store` parameters.
"""

from __future__ import annotations

import os
import sys
import time

import click

from konduktor_slurm.cli import fail, main, service_errors
from konduktor_slurm.service.errors import EXIT_USAGE

# How far back accounting is searched by default: a month of finished jobs is what a
# person looks back on in `status`; older ones can be asked for.
DEFAULT_SINCE = "30d"


@main.group("store")
def store_group() -> None:
    """The job store ($KONDUKTOR_HOME/state.db): check it, or rebuild it from Slurm.

    \b
    Exit codes: 0 fine; 6 the store cannot be used (damaged, not a konduktor
    store, written by a newer konduktor, a permission problem: the message says
    what to do) or `check` found damage; 7 it is locked by another process (try
    again); 3 Slurm could not be reached (`rebuild` changed nothing).
    """


@store_group.command("check")
def check() -> None:
    """Check the store: SQLite's integrity check, its version, and what it holds.

    Rows with damaged values are listed; `konduktor store rebuild` replaces a damaged
    store with what Slurm knows.
    """
    from konduktor_slurm.service.session import load_config
    from konduktor_slurm.store import EXIT_STORE, SCHEMA_VERSION, Store

    with service_errors():
        path = load_config().store_path
    if not os.path.lexists(path):
        click.echo(f"Store:      {path} (none yet: the first `konduktor launch` creates it)")
        return
    store = Store(path, notify=lambda _line: None)  # damage is listed below, not warned
    try:
        summary = store.summary()
    finally:
        store.close()
    states = ", ".join(f"{count} {state}" for state, count in sorted(summary.jobs_by_state.items()))
    total = sum(summary.jobs_by_state.values())
    hidden = f" ({summary.hidden} removed with `down`)" if summary.hidden else ""
    click.echo(
        f"Store:      {path} ({_size(summary.size)}, store version {summary.version}; "
        f"this konduktor writes version {SCHEMA_VERSION})"
    )
    click.echo(f"Integrity:  {'; '.join(summary.integrity[:5])}")
    click.echo(f"Jobs:       {total}{': ' + states if states else ''}{hidden}")
    click.echo(f"History:    {summary.transitions} state changes")
    for index, (label, problems) in enumerate(sorted(summary.damage.items())):
        heading = "Damaged:" if index == 0 else ""
        click.echo(f"{heading:<12}{label}: {', '.join(problems)}")
    if summary.healthy:
        click.echo("The store is sound.")
        return
    click.echo(
        "The store is damaged: `konduktor store rebuild` keeps it aside and re-records your "
        "jobs from Slurm.",
        err=True,
    )
    sys.exit(EXIT_STORE)


@store_group.command("rebuild")
@click.option(
    "--since",
    default=DEFAULT_SINCE,
    show_default=True,
    help="How far back Slurm accounting is searched for jobs that have ended "
    "(an age like 30d or 12h, or a date like 2026-11-01).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def rebuild(since: str, yes: bool) -> None:
    """Rebuild the job store from what Slurm knows about your konduktor jobs.

    The store is kept aside (renamed state.db.damaged-<time>, never deleted) and a new one
    records every job of yours that konduktor launched and Slurm knows: all that slurmctld
    still remembers (squeue) and those that ended since --since (sacct). konduktor's jobs
    are found by their job comment, or by a work dir under jobs_dir; a grid sweep's job
    array comes back as its variants (<sweep>-<n>). Their states are then refreshed as
    `konduktor status` does. What only the old store knew (state history from
    before, `down` marks, who stopped a job) stays in the old file.

    \b
    Examples:
      konduktor store rebuild             show what would be recorded, then ask
      konduktor store rebuild -y --since 90d
    """
    from konduktor_slurm.durations import DurationError, parse_when
    from konduktor_slurm.service import recovery
    from konduktor_slurm.service.session import load_config, open_slurm

    try:
        since_at = parse_when(since, time.time())
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    with service_errors():
        config = load_config()
    slurm = open_slurm(config)
    try:
        if not yes:  # show what Slurm knows and ask; rebuild asks Slurm again afterwards
            with service_errors():
                planned = recovery.plan(config, slurm, since_at)
            _show_health(planned)
            _show_found(planned)
            _confirm(planned)
        with service_errors():
            result = recovery.rebuild(config, slurm, since_at)
    finally:
        slurm.transport.close()
    if yes:
        _show_health(result.plan)
        for note in result.plan.notes:
            click.echo(f"Note: {note}", err=True)
    if result.kept_aside:
        click.echo(f"Kept the old store as {result.kept_aside} (not deleted).")
    click.echo(f"Recorded {len(result.jobs)} job(s) in a new store {config.store_path}.")
    width = max((len(job.name) for job in result.jobs), default=0)
    for job in result.jobs:
        detail = f" ({job.detail})" if job.detail else ""
        click.echo(f"  {job.name:<{width}}  {job.state}{detail}")
    if result.stale_reason:
        click.echo(
            f"Warning: Slurm could not be reached to refresh them ({result.stale_reason}); "
            "`konduktor status` refreshes them when it can.",
            err=True,
        )


def _show_health(planned) -> None:  # planned: recovery.RebuildPlan
    from konduktor_slurm.store import REBUILD_HINT

    health = planned.health
    if health.problem is not None:
        reason = str(health.problem).removesuffix(f"; {REBUILD_HINT}")
        click.echo(f"Found: {reason}.")
    elif health.exists:
        click.echo(f"The job store {health.path} is sound ({health.jobs} jobs).")
    else:
        click.echo(f"There is no job store at {health.path}.")


def _show_found(planned) -> None:
    from konduktor_slurm.durations import clock

    click.echo(
        f"Slurm knows {len(planned.found)} konduktor job(s) of {planned.user} "
        f"(all slurmctld remembers, and accounting since {clock(planned.since)}):"
    )
    width = max((len(found.record.name) for found in planned.found), default=0)
    for found in planned.found:
        record = found.record
        click.echo(
            f"  {record.name:<{width}}  Slurm job {record.slurm_job_id:<8} "
            f"{found.slurm_state:<12} (from {found.source})"
        )
    for note in planned.notes:
        click.echo(f"Note: {note}", err=True)


def _confirm(planned) -> None:
    health = planned.health
    if health.problem is not None:
        question = (
            f"Keep {health.path} aside and record these {len(planned.found)} job(s) in a new store?"
        )
    elif health.exists:
        question = (
            f"The store is sound: rebuilding replaces it, keeping it aside (its history, "
            f"`down` marks and jobs Slurm no longer knows stay only there). Record these "
            f"{len(planned.found)} job(s) in a new store?"
        )
    else:
        question = f"Record these {len(planned.found)} job(s) in a new store?"
    if not sys.stdin.isatty():
        fail(
            "not on a terminal, so cannot ask: add -y to rebuild without a prompt; "
            "nothing was changed",
            EXIT_USAGE,
        )
    click.confirm(question, default=False, abort=True)


def _size(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"
