"""`konduktor stop`, `konduktor start` and `konduktor down`.

All three pick jobs the same way (names, Slurm job ids, glob patterns such as ``exp-*``, or
``--all``), refresh them from Slurm with one squeue call, and check every job before touching
any: one bad name or one finished job means nothing changes at all.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from konduktor_slurm.cli import (
    EXIT_FAILED,
    EXIT_STALE,
    EXIT_USAGE,
    did_you_mean,
    fail,
    main,
    open_slurm,
    open_store,
    settings,
)
from konduktor_slurm.control import STOP_MODES

if TYPE_CHECKING:
    from konduktor_slurm.config import Settings
    from konduktor_slurm.control import Action, Plan
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord, Store

_GLOB_CHARS = set("*?[")

_jobs_argument = click.argument("jobs", nargs=-1, metavar="JOB...")
_all_option = click.option(
    "-a", "--all", "all_jobs", is_flag=True, help="Every job of yours it applies to."
)
_yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


@contextlib.contextmanager
def _session() -> Iterator[tuple[Settings, Store, Slurm]]:
    """Settings, store and Slurm for one command; a lost connection is a one-line error."""
    from konduktor_slurm.transport import TransportError

    config = settings()
    store, slurm = open_store(config), open_slurm(config)
    try:
        yield config, store, slurm
    except TransportError as exc:
        fail(str(exc), EXIT_STALE)
    finally:
        slurm.transport.close()


def _select(
    store: Store, slurm: Slurm, patterns: tuple[str, ...], all_jobs: bool, caller: str
) -> tuple[list[JobRecord], list[str]]:
    """The jobs named by ``patterns`` (or all visible jobs), and an error per bad pattern."""
    if all_jobs and patterns:
        fail("give job names or --all, not both", EXIT_USAGE)
    if not all_jobs and not patterns:
        fail(
            "name at least one job (a name, a Slurm job id or a pattern like 'exp-*'), "
            "or use --all",
            EXIT_USAGE,
        )
    visible = store.jobs()
    if all_jobs:
        return visible, []
    names = store.names()
    chosen: dict[str, JobRecord] = {}
    errors: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            matches = [job for job in visible if fnmatch.fnmatchcase(job.name, pattern)]
            if not matches:
                errors.append(f"no job matches {pattern!r} (`konduktor status` lists your jobs)")
            chosen.update((job.name, job) for job in matches)
            continue
        job = store.get(pattern) or next(
            (j for j in store.jobs(include_hidden=True) if j.slurm_job_id == pattern), None
        )
        if job is not None:
            chosen[job.name] = job
        elif pattern.isdigit():
            errors.append(_foreign_job_error(slurm, pattern, caller))
        else:
            errors.append(
                f"no job named {pattern!r}.{did_you_mean(pattern, names)} "
                "(`konduktor status` lists your jobs)"
            )
    return list(chosen.values()), errors


def _foreign_job_error(slurm: Slurm, job_id: str, caller: str) -> str:
    """Why a Slurm job id that konduktor did not launch from here cannot be controlled."""
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    try:
        row = slurm.queue([job_id]).get(job_id)
    except (SlurmError, TransportError):
        row = None
    if row is None:
        return f"no job with Slurm id {job_id} (`konduktor status` lists your jobs)"
    if row.user != caller:
        return f"Slurm job {job_id} belongs to {row.user}, not to you ({caller}); it was left alone"
    return (
        f"Slurm job {job_id} ({row.name}) was not launched by konduktor from this account; "
        "use scontrol/scancel for it"
    )


def _refresh_or_fail(store: Store, slurm: Slurm, jobs: list[JobRecord]) -> None:
    from konduktor_slurm.tracker import refresh

    result = refresh(store, slurm, jobs)
    if result.stale:
        fail(f"cannot reach Slurm ({result.stale_reason}); nothing was changed", EXIT_STALE)


def _fail_all(errors: list[str]) -> None:
    if errors:
        for error in errors:
            click.echo(f"Error: {error}", err=True)
        click.echo("Nothing was changed.", err=True)
        sys.exit(EXIT_FAILED)


def _confirm(verb: str, jobs: list[JobRecord], yes: bool) -> None:
    if yes or not jobs:
        return
    if not sys.stdin.isatty():
        fail(f"not on a terminal, so cannot ask: add -y to {verb} without a prompt", EXIT_USAGE)
    listing = ", ".join(job.name for job in jobs)
    click.confirm(f"{verb.capitalize()} {len(jobs)} job(s): {listing}?", abort=True)


def _settle(store: Store, slurm: Slurm, jobs: list[JobRecord], seconds: float = 20) -> None:
    """Wait (bounded) while Slurm is still tearing down a job it is requeueing.

    A requeue kills the job's processes and passes through COMPLETING for a few seconds;
    releasing it in that window leaves it with Slurm's 2-minute requeue delay, and showing
    it then would say "completing", not "stopped".
    """
    from konduktor_slurm.lifecycle import normalise_state
    from konduktor_slurm.tracker import refresh

    deadline = time.monotonic() + seconds
    while any(normalise_state(job.extra.get("slurm_state") or "") == "COMPLETING" for job in jobs):
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)
        if refresh(store, slurm, jobs).stale:
            return


def _show_states(store: Store, slurm: Slurm, jobs: list[JobRecord]) -> None:
    """Refresh after acting, so the user sees where each job is now."""
    from konduktor_slurm.tracker import refresh

    refresh(store, slurm, jobs)
    _settle(store, slurm, jobs)
    for job in jobs:
        detail = f" ({job.detail})" if job.detail else ""
        click.echo(f"  {job.name}: now {job.state}{detail}")


def _plan_all(
    selected: list[JobRecord],
    errors: list[str],
    all_jobs: bool,
    plan_for: Callable[[JobRecord], Plan],
) -> list[tuple[JobRecord, Action]]:
    """Decide for every job first; any error (plus earlier ``errors``) changes nothing."""
    plans: dict[str, Plan] = {}
    for job in selected:
        plan = plan_for(job)
        if all_jobs and (plan.error or plan.note):
            continue  # --all means "every job it applies to"
        if plan.error:
            errors.append(f"{job.name} {plan.error}")
        plans[job.name] = plan
    _fail_all(errors)
    todo = []
    for job in selected:
        plan = plans.get(job.name)
        if plan is not None and plan.note:
            click.echo(f"{job.name} {plan.note}; nothing to do.")
        elif plan is not None and plan.action is not None:
            todo.append((job, plan.action))
    return todo


def _perform(
    store: Store,
    slurm: Slurm,
    todo: list[tuple[JobRecord, Action]],
    done_word: str,
    act: Callable[[JobRecord, Action], Action],
) -> None:
    """Act on each job, say what it cost, show where each job is now; exit 1 if any failed."""
    from konduktor_slurm.control import COSTS
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    failures = 0
    done: list[JobRecord] = []
    for job, planned in todo:
        try:
            action = act(job, planned)
        except (SlurmError, TransportError) as exc:
            failures += 1
            click.echo(f"Error: {job.name} was not {done_word.lower()}: {exc}", err=True)
            continue
        done.append(job)
        click.echo(f"{done_word} {job.name}: {COSTS[action]}")
    if done:
        _show_states(store, slurm, done)
    if failures:
        sys.exit(EXIT_FAILED)


def _stopped_mode(job: JobRecord) -> str | None:
    return job.user_stop.mode if job.user_stop else None


def _run_action(slurm: Slurm, job_id: str, action: Action) -> None:
    from konduktor_slurm.control import Action

    commands = {
        Action.SUSPEND: slurm.suspend,
        Action.REQUEUE_HOLD: slurm.requeue_hold,
        Action.HOLD: slurm.hold,
        Action.SIGNAL_STOP: lambda job: slurm.signal(job, "STOP"),
        Action.RESUME: slurm.resume,
        Action.RELEASE: slurm.release,
        Action.RELEASE_REQUEUED: lambda job: slurm.release(job, now=True),
        Action.SIGNAL_CONT: lambda job: slurm.signal(job, "CONT"),
    }
    commands[action](job_id)


@main.command()
@_jobs_argument
@_all_option
@_yes_option
@click.option(
    "--mode",
    type=click.Choice(STOP_MODES),
    default=None,
    help="How to stop a running job (default: stop_mode from config.yaml, else auto).",
)
def stop(jobs: tuple[str, ...], all_jobs: bool, yes: bool, mode: str | None) -> None:
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
      auto     suspend if Slurm allows you, else requeue (the default)
    A pending job is simply held (scontrol hold) whatever the mode.

    \b
    Examples:
      konduktor stop my-job-1a2b
      konduktor stop -y --mode requeue 'sweep-*'
    """
    from konduktor_slurm.control import STOP_RECORD_MODE, Action, plan_stop
    from konduktor_slurm.lifecycle import UserStop
    from konduktor_slurm.slurm import PermissionDenied, SlurmError

    with _session() as (config, store, slurm):
        mode = mode or config.stop_mode
        caller = slurm.transport.user
        selected, errors = _select(store, slurm, jobs, all_jobs, caller)
        _refresh_or_fail(store, slurm, selected)
        todo = _plan_all(
            selected,
            errors,
            all_jobs,
            lambda job: plan_stop(
                lifecycle=job.state,
                terminal=job.terminal,
                slurm_state=job.extra.get("slurm_state"),
                mode=mode,
                stopped_mode=_stopped_mode(job),
            ),
        )
        if not todo:
            if all_jobs:
                click.echo("No running or pending job of yours to stop.")
            return
        _confirm("stop", [job for job, _ in todo], yes)
        suspend_refused = False

        def stop_one(job: JobRecord, action: Action) -> Action:
            nonlocal suspend_refused
            assert job.slurm_job_id is not None
            if action is Action.SUSPEND and suspend_refused:
                action = Action.REQUEUE_HOLD
            try:
                _run_action(slurm, job.slurm_job_id, action)
            except PermissionDenied as exc:
                if action is not Action.SUSPEND:
                    raise
                if mode != "auto":
                    raise SlurmError(
                        exc.command,
                        f"{exc.slurm_message}. Only Slurm operators may suspend; use "
                        "--mode requeue (frees the GPUs) or --mode signal (keeps them)",
                    ) from None
                suspend_refused = True
                click.echo(
                    "Slurm lets only operators suspend jobs, so stopping by requeue instead "
                    "(--mode signal keeps the GPUs instead)."
                )
                action = Action.REQUEUE_HOLD
                _run_action(slurm, job.slurm_job_id, action)
            job.user_stop = UserStop(caller, time.time(), STOP_RECORD_MODE[action])
            store.save(job)
            return action

        _perform(store, slurm, todo, "Stopped", stop_one)


@main.command()
@_jobs_argument
@_all_option
@_yes_option
def start(jobs: tuple[str, ...], all_jobs: bool, yes: bool) -> None:
    """Start jobs stopped with `konduktor stop` (undoes exactly how each was stopped).

    \b
    A suspended job resumes where it was; a requeued or held job is released and
    becomes eligible at once (Slurm's ~2 minute requeue delay is lifted); a
    SIGSTOPped job gets SIGCONT. --all starts every stopped job of yours.
    """
    from konduktor_slurm.control import plan_start

    with _session() as (_config, store, slurm):
        selected, errors = _select(store, slurm, jobs, all_jobs, slurm.transport.user)
        _refresh_or_fail(store, slurm, selected)
        _settle(store, slurm, selected)  # a stop by requeue may still be under way
        for job in selected:
            if job.user_stop and job.state == "ACTIVE":  # released outside konduktor
                job.user_stop = None
                store.save(job)
        todo = _plan_all(
            selected,
            errors,
            all_jobs,
            lambda job: plan_start(
                lifecycle=job.state,
                terminal=job.terminal,
                slurm_state=job.extra.get("slurm_state"),
                reason=job.extra.get("reason"),
                priority=job.extra.get("priority"),
                stopped_mode=_stopped_mode(job),
            ),
        )
        if not todo:
            if all_jobs:
                click.echo("No stopped job of yours to start.")
            return
        _confirm("start", [job for job, _ in todo], yes)

        def start_one(job: JobRecord, action: Action) -> Action:
            assert job.slurm_job_id is not None
            _run_action(slurm, job.slurm_job_id, action)
            job.user_stop = None
            store.save(job)
            return action

        _perform(store, slurm, todo, "Started", start_one)


@main.command()
@_jobs_argument
@_all_option
@_yes_option
def down(jobs: tuple[str, ...], all_jobs: bool, yes: bool) -> None:
    """Cancel jobs and remove them from `konduktor status`; their history is kept.

    \b
    Unfinished jobs are cancelled with scancel (they end FAILED, "cancelled by
    <you>"); finished ones are only hidden. `konduktor status -a` still shows
    them, and their logs stay readable.
    """
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    with _session() as (_config, store, slurm):
        selected, errors = _select(store, slurm, jobs, all_jobs, slurm.transport.user)
        _fail_all(errors)
        if not selected:
            click.echo("No job to take down.")
            return
        _refresh_or_fail(store, slurm, selected)
        _confirm("take down", selected, yes)
        running = [job for job in selected if not job.terminal and job.slurm_job_id]
        try:
            slurm.cancel(job.slurm_job_id for job in running if job.slurm_job_id)
        except (SlurmError, TransportError) as exc:
            fail(f"scancel failed: {exc}; nothing was removed", EXIT_FAILED)
        if running:
            _wait_until_recorded(store, slurm, running)
        for job in selected:
            job.hidden = True
            store.save(job)
            was = "cancelled" if job in running else f"it had ended {job.state}"
            click.echo(f"Took down {job.name} ({was}); history: konduktor status -a")


def _wait_until_recorded(store: Store, slurm: Slurm, jobs: list[JobRecord]) -> None:
    """Give Slurm a few seconds to finish the cancellation, so the store says how it ended."""
    from konduktor_slurm.tracker import refresh

    deadline = time.monotonic() + 5
    while True:
        result = refresh(store, slurm, jobs)
        if result.stale or all(job.terminal for job in jobs) or time.monotonic() > deadline:
            return
        time.sleep(0.5)
