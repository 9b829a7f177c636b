"""The ``konduktor`` command line: parse arguments, call the modules below, print.

Heavy imports (jinja2, pydantic via the task model) happen inside the commands that need
them, so ``konduktor status`` and ``--help`` start fast.
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from konduktor_slurm import __version__

if TYPE_CHECKING:
    from konduktor_slurm.config import Settings
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord, Store

EXIT_FAILED = 1  # the job (or the command) failed
EXIT_USAGE = 2  # bad input: nothing was done
EXIT_STALE = 2  # Slurm could not be reached; what is shown is the last known state


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _settings() -> Settings:
    from konduktor_slurm.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _open_store(settings: Settings) -> Store:
    from konduktor_slurm.store import Store

    return Store(settings.store_path)


def _slurm(settings: Settings) -> Slurm:
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.transport import LocalTransport

    return Slurm(LocalTransport(settings.slurm_bin_dir), timeout=settings.slurm_timeout)


def _resolve_job(store: Store, name: str) -> JobRecord:
    """A job by konduktor name or Slurm job id, or a clear error with a "did you mean"."""
    job = store.get(name)
    if job is not None:
        return job
    for candidate in store.jobs(include_hidden=True):
        if candidate.slurm_job_id == name:
            return candidate
    names = store.names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    _fail(f"no job named {name!r}.{hint} (`konduktor status` lists your jobs)")


def _console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    # Without a terminal (cron, pipes) rich would wrap at 80 columns: never wrap a table row.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 250
    return Console(file=stream, width=width, soft_wrap=not stream.isatty())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="konduktor-slurm")
def main() -> None:
    """Run Konduktor task YAML on a Slurm cluster and follow it through its lifecycle.

    \b
    Lifecycle: CREATED -> PENDING -> ACTIVE -> COMPLETED | FAILED,
    with SUSPENDED (by system) for preemption/quota and SUSPENDED (by user) for stops.

    \b
    Examples:
      konduktor launch task.yaml          submit and follow the output
      konduktor launch -d -y task.yaml    submit and return at once
      konduktor status                    your jobs, newest first
      konduktor logs my-job-1a2b          the job's output
    """


# ---------------------------------------------------------------------------------------
# launch


@main.command()
@click.argument("task_yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-d",
    "--detach",
    "detach",
    is_flag=True,
    help="Return after submitting; do not follow the output.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dryrun", is_flag=True, help="Print the rendered sbatch script; submit nothing.")
@click.option("--name", help="Override the task name.")
@click.option("--num-nodes", type=int, help="Override num_nodes.")
@click.option("--cpus", help="Override resources.cpus (per node).")
@click.option("--memory", help="Override resources.memory in GiB (per node).")
@click.option("--gpus", help="Override resources.accelerators, e.g. H100:8.")
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="K[=V]",
    help="Set an env var; K alone takes it from your environment. Repeatable.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read env vars from a dotenv file.",
)
@click.option("--workdir", help="Override the workdir.")
def launch(
    task_yaml: Path,
    detach: bool,
    yes: bool,
    dryrun: bool,
    name: str | None,
    num_nodes: int | None,
    cpus: str | None,
    memory: str | None,
    gpus: str | None,
    envs: tuple[str, ...],
    env_file: Path | None,
    workdir: str | None,
) -> None:
    """Validate TASK_YAML, stage its files, submit it to Slurm and follow its output.

    The job is named <task name>-<4 hex>. Ctrl-C while following detaches: the job keeps
    running. Exit code: 0 when the followed job COMPLETED (or with -d/--dryrun once
    submitted/rendered), 1 when it FAILED or could not be submitted, 2 for invalid input.
    """
    from konduktor_slurm.lifecycle import State
    from konduktor_slurm.render import JobPlan, RenderError, StagedMount, render_sbatch
    from konduktor_slurm.staging import StagingError, stage
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.task import TaskError, TaskOverrides, load_task
    from konduktor_slurm.transport import TransportError

    settings = _settings()
    overrides = TaskOverrides(
        name=name,
        num_nodes=num_nodes,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        envs=list(envs),
        env_file=env_file,
        workdir=workdir,
    )
    try:
        task = load_task(task_yaml, overrides)
    except TaskError as exc:
        click.echo(f"Error: {task_yaml} is not a valid task; nothing was submitted.", err=True)
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    for warning in task.warnings:
        click.echo(f"Warning: {warning}", err=True)

    job_name = f"{task.name}-{secrets.token_hex(2)}"
    job_dir = f"{settings.jobs_dir}/{job_name}"
    plan = JobPlan(
        job_name=job_name,
        job_dir=job_dir,
        log_path=f"{job_dir}/job.log",
        workdir=f"{job_dir}/workdir" if task.workdir else None,
        # Planned mount paths match what staging creates (sorted destinations, by index).
        mounts=tuple(
            StagedMount(dest, f"{job_dir}/mounts/{index}", source.is_dir())
            for index, (dest, source) in enumerate(sorted(task.file_mounts.items()))
        ),
        gres_map=settings.gres_map,
    )
    try:
        script = render_sbatch(task, plan)
    except RenderError as exc:
        _fail(f"{task_yaml}: {exc}; nothing was submitted.", EXIT_USAGE)
    if dryrun:
        click.echo(script, nl=False)
        return

    click.echo(f"Task {task.name!r}: {task.resources_summary()}" + _slurm_target(task))
    if not yes:
        if not sys.stdin.isatty():
            _fail("refusing to ask for confirmation without a terminal; pass -y", EXIT_USAGE)
        if not click.confirm(f"Launch {job_name}?", default=True):
            click.echo("Aborted; nothing was submitted.")
            return

    store = _open_store(settings)
    slurm = _slurm(settings)
    accelerator = task.resources.accelerator
    job = JobRecord(
        name=job_name,
        task_name=task.name,
        user=getpass.getuser(),
        resources=task.resources_summary(),
        num_nodes=task.num_nodes,
        gpus_per_node=accelerator.count if accelerator else 0,
        job_dir=job_dir,
        log_path=plan.log_path,
        max_restarts=task.resources.max_restarts,
        state=State.CREATED.value,
        detail="staging workdir",
        created_at=time.time(),
    )
    store.add(job)
    try:
        stage(slurm.transport, job_dir, task.workdir, task.file_mounts)
        script_path = f"{job_dir}/sbatch.sh"
        slurm.transport.write_file(script_path, script, 0o700)
    except (StagingError, TransportError, OSError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"staging failed: {exc}")
        _fail(f"staging failed: {exc}. Nothing was submitted; fix it and launch again.")
    job.detail = "submitting"
    store.save(job)
    from konduktor_slurm.slurm import SlurmError

    try:
        job_id = slurm.submit(script_path)
    except (SlurmError, TransportError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"submission failed: {exc}")
        _fail(f"Slurm refused the job: {exc}")
    job.slurm_job_id = job_id
    job.submitted_at = time.time()
    store.set_state(job, State.PENDING.value, "submitted")

    click.echo(f"Submitted {job_name} (Slurm job {job_id}).")
    click.echo("Useful commands:")
    click.echo(f"  konduktor status {job_name}     # state and details")
    click.echo(f"  konduktor logs {job_name}       # output (add --follow to stream)")
    click.echo(f"  konduktor down {job_name}       # cancel")
    if detach:
        return
    _follow_and_exit(store, slurm, job)


def _slurm_target(task) -> str:
    parts = [f"partition {task.slurm.partition}"] if task.slurm.partition else []
    if task.slurm.time_limit:
        parts.append(f"time limit {task.slurm.time_limit}")
    return f" ({', '.join(parts)})" if parts else ""


def _follow_and_exit(store: Store, slurm: Slurm, job: JobRecord) -> NoReturn:
    from konduktor_slurm.logs import follow

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    warned = False

    def on_stale(reason: str) -> None:
        nonlocal warned
        if not warned:
            click.echo(f"Warning: cannot reach Slurm ({reason}); still trying.", err=True)
            warned = True

    try:
        follow(store, slurm, job, write, on_stale)
    except KeyboardInterrupt:
        click.echo(
            f"\nDetached from {job.name}; it keeps running. "
            f"Follow again with: konduktor logs --follow {job.name}",
            err=True,
        )
        sys.exit(130)
    suffix = f" ({job.detail})" if job.detail else ""
    click.echo(f"{job.name}: {job.state}{suffix}", err=True)
    sys.exit(0 if job.state == "COMPLETED" else EXIT_FAILED)


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

    settings = _settings()
    store = _open_store(settings)
    slurm = _slurm(settings)
    if job_name:
        jobs = [_resolve_job(store, job_name)]
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

        console = _console()
        console.print(f"User: {getpass.getuser()}", highlight=False)
        table = Table(box=None, pad_edge=False, header_style="bold", highlight=False)
        for column in STATUS_COLUMNS:
            table.add_column(column, no_wrap=True)
        for job in jobs:
            row = list(status_row(job, now))
            style = STATE_STYLES.get(job.state, "")
            row[1] = f"[{style}]{row[1]}[/]" if style else row[1]
            table.add_row(*row)
        if jobs:
            console.print(table)
        else:
            console.print("No jobs yet. Launch one with: konduktor launch task.yaml")
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


# ---------------------------------------------------------------------------------------
# logs


@main.command()
@click.argument("job_name")
@click.option("--follow/--no-follow", default=False, help="Keep streaming until the job ends.")
def logs(job_name: str, follow: bool) -> None:
    """Print the output of JOB_NAME (all nodes; lines are prefixed by node rank).

    With --follow, stream until the job reaches COMPLETED (exit 0) or FAILED (exit 1).
    """
    settings = _settings()
    store = _open_store(settings)
    slurm = _slurm(settings)
    job = _resolve_job(store, job_name)
    if follow:
        _follow_and_exit(store, slurm, job)
    data = slurm.transport.read_bytes(job.log_path)
    if not data:
        click.echo(f"No output yet for {job.name} ({job.state}).", err=True)
        return
    sys.stdout.write(data.decode("utf-8", errors="replace"))


def run() -> None:  # pragma: no cover - convenience for `python -m konduktor_slurm`
    main(prog_name=os.path.basename(sys.argv[0]) or "konduktor")
