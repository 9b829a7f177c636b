"""`konduktor stop`, `konduktor start` and `konduktor down`: a thin shell over
service/control.py (which picks the jobs, decides for all of them, then acts)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from konduktor_slurm.cli import EXIT_FAILED, EXIT_USAGE, fail, main, service_errors
from konduktor_slurm.stop_modes import STOP_MODES

if TYPE_CHECKING:
    from konduktor_slurm.service.control import ControlPlan, ControlResult
    from konduktor_slurm.store import JobRecord

_jobs_argument = click.argument("jobs", nargs=-1, metavar="JOB...")
_all_option = click.option(
    "-a", "--all", "all_jobs", is_flag=True, help="Every job of yours it applies to."
)
_all_users_option = click.option(
    "--all-users",
    "--all_users",
    "all_users",
    is_flag=True,
    help="Also other users' konduktor jobs (root, the SlurmUser, Slurm operators and "
    "administrators only; anyone else is refused and nothing changes).",
)
_yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


def _confirm(verb: str, jobs: list[JobRecord], yes: bool) -> None:
    if yes or not jobs:
        return
    if not sys.stdin.isatty():
        fail(f"not on a terminal, so cannot ask: add -y to {verb} without a prompt", EXIT_USAGE)
    listing = ", ".join(job.name for job in jobs)
    click.confirm(f"{verb.capitalize()} {len(jobs)} job(s): {listing}?", abort=True)


def _report(result: ControlResult, done_word: str) -> None:
    from konduktor_slurm.control import COSTS

    for done in result.done:
        click.echo(f"{done_word} {done.job.name}: {COSTS[done.action]}")
    for done in result.done:
        detail = f" ({done.job.detail})" if done.job.detail else ""
        owner = f" [{done.job.user}]" if done.foreign else ""
        stale = " (stale)" if result.is_stale(done.job) else ""
        click.echo(f"  {done.job.name}{owner}: now {done.job.state}{stale}{detail}")
    for note in result.notes:
        click.echo(note)
    if result.stale:
        click.echo(
            f"Warning: Slurm could not be reached after that ({result.stale_reason}); "
            "states marked (stale) are the last known.",
            err=True,
        )
    for failure in result.failures:
        click.echo(f"Error: {failure}", err=True)
    if result.failures:
        sys.exit(EXIT_FAILED)


def _notes(plan: ControlPlan) -> None:
    for note in plan.notes:
        click.echo(note)


@main.command()
@_jobs_argument
@_all_option
@_all_users_option
@_yes_option
@click.option(
    "--mode",
    type=click.Choice(STOP_MODES),
    default=None,
    help="How to stop a running job (default: stop_mode from config.yaml, else auto).",
)
def stop(
    jobs: tuple[str, ...], all_jobs: bool, all_users: bool, yes: bool, mode: str | None
) -> None:
    """Stop jobs; `konduktor start` resumes them. Shows SUSPENDED (by user).

    \b
    JOB is a job name, a Slurm job id, or a pattern such as 'exp-*' (quote it).
    --all stops every unfinished job of yours.

    \b
    Modes for a running job:
      suspend  scontrol suspend: frozen in place, nodes and GPUs stay allocated
               (Slurm operators and root only)
      requeue  scontrol requeuehold: killed, GPUs released; on start the run
               restarts from the beginning with KONDUKTOR_RESTART_ATTEMPT + 1
      signal   SIGSTOP to every process; frozen, GPUs stay allocated
      checkpoint  for a task with job_config checkpoint_signal/checkpoint_grace:
               every rank gets the signal and the grace period to save and
               exit, then requeue-hold; on start it resumes from its checkpoint
      auto     suspend if Slurm allows you, else checkpoint if the task
               declares one, else requeue (the default)
    A pending job is simply held (scontrol hold) whatever the mode.

    \b
    Examples:
      konduktor stop my-job-1a2b
      konduktor stop -y --mode requeue 'sweep-*'
      konduktor stop -y --mode checkpoint train-1a2b
    """
    from konduktor_slurm.service import control
    from konduktor_slurm.service.session import open_session

    with service_errors(), open_session() as session:
        plan = control.plan_stop(session, jobs, mode=mode, all_jobs=all_jobs, all_users=all_users)
        _notes(plan)
        if not plan.steps:
            if all_jobs or all_users:
                click.echo("No running or pending job to stop.")
            return
        _confirm("stop", plan.jobs, yes)
        result = control.apply_stop(session, plan, mode, notify=click.echo)
    _report(result, "Stopped")


@main.command()
@_jobs_argument
@_all_option
@_all_users_option
@_yes_option
def start(jobs: tuple[str, ...], all_jobs: bool, all_users: bool, yes: bool) -> None:
    """Start jobs stopped with `konduktor stop` (undoes exactly how each was stopped).

    \b
    A suspended job resumes where it was; a requeued or held job is released and
    becomes eligible at once (Slurm's ~2 minute requeue delay is lifted); a
    SIGSTOPped job gets SIGCONT. --all starts every stopped job of yours.
    """
    from konduktor_slurm.service import control
    from konduktor_slurm.service.session import open_session

    with service_errors(), open_session() as session:
        plan = control.plan_start(session, jobs, all_jobs=all_jobs, all_users=all_users)
        _notes(plan)
        if not plan.steps:
            if all_jobs or all_users:
                click.echo("No stopped job to start.")
            return
        _confirm("start", plan.jobs, yes)
        result = control.apply_start(session, plan)
    _report(result, "Started")


@main.command()
@_jobs_argument
@_all_option
@_all_users_option
@_yes_option
def down(jobs: tuple[str, ...], all_jobs: bool, all_users: bool, yes: bool) -> None:
    """Cancel jobs and remove them from `konduktor status`; their history is kept.

    \b
    Unfinished jobs are cancelled with scancel (they end FAILED, "cancelled by
    <you>"); finished ones are only hidden. `konduktor status -a` still shows
    them, and their logs stay readable.
    """
    from konduktor_slurm.service import control
    from konduktor_slurm.service.session import open_session

    with service_errors(), open_session() as session:
        plan = control.plan_down(session, jobs, all_jobs=all_jobs, all_users=all_users)
        if not plan.steps:
            click.echo("No job to take down.")
            return
        _confirm("take down", plan.jobs, yes)
        result = control.apply_down(session, plan)
    for done in result.done:
        was = "cancelled" if done.acted else f"it had ended {done.job.state}"
        owner = f" [{done.job.user}]" if done.foreign else ""
        click.echo(f"Took down {done.job.name}{owner} ({was}); history: konduktor status -a")
