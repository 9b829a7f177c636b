"""`konduktor launch`: validate, stage, submit, follow."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from konduktor_slurm.cli import (
    EXIT_USAGE,
    fail,
    follow_and_exit,
    main,
    open_slurm,
    open_store,
    settings,
)

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

    config = settings()
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
    task = config.apply_slurm_defaults(task)  # config.yaml partition/account/qos

    # Opening is free; over SSH the first use (a remote ~ in jobs_dir) connects.
    slurm = open_slurm(config)
    import secrets  # hashlib and hmac: only launch pays for them, not `status`

    job_name = f"{task.name}-{secrets.token_hex(2)}"
    job_dir = f"{config.resolve_jobs_dir(slurm.transport)}/{job_name}"
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
        gres_map=config.gres_map,
        node_workdir=config.node_workdir,
    )
    try:
        script = render_sbatch(task, plan)
    except RenderError as exc:
        fail(f"{task_yaml}: {exc}; nothing was submitted.", EXIT_USAGE)
    if dryrun:
        click.echo(script, nl=False)
        return

    click.echo(f"Task {task.name!r}: {task.resources_summary()}" + _slurm_target(task))
    if not yes:
        if not sys.stdin.isatty():
            fail("refusing to ask for confirmation without a terminal; pass -y", EXIT_USAGE)
        if not click.confirm(f"Launch {job_name}?", default=True):
            click.echo("Aborted; nothing was submitted.")
            return

    store = open_store(config)
    accelerator = task.resources.accelerator
    job = JobRecord(
        name=job_name,
        task_name=task.name,
        user=slurm.transport.user,  # over SSH: the remote account the job runs as
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
        stage(slurm.transport, job_dir, task.workdir, task.file_mounts, task_name=task.name)
        script_path = f"{job_dir}/sbatch.sh"
        slurm.transport.write_file(script_path, script, 0o700)
    except (StagingError, TransportError, OSError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"staging failed: {exc}")
        fail(f"staging failed: {exc}. Nothing was submitted; fix it and launch again.")
    job.detail = "submitting"
    store.save(job)
    from konduktor_slurm.slurm import SlurmError

    try:
        job_id = slurm.submit(script_path)
    except (SlurmError, TransportError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"submission failed: {exc}")
        fail(f"Slurm refused the job: {exc}")
    job.slurm_job_id = job_id
    job.submitted_at = time.time()
    with store.transaction():
        store.save(job)
        store.set_state(job, State.PENDING.value, "submitted")

    click.echo(f"Submitted {job_name} (Slurm job {job_id}).")
    click.echo("Useful commands:")
    click.echo(f"  konduktor status {job_name}     # state and details")
    click.echo(f"  konduktor logs {job_name}       # output (add --follow to stream)")
    click.echo(f"  konduktor down {job_name}       # cancel")
    if detach:
        return
    follow_and_exit(store, slurm, job)


def _slurm_target(task) -> str:
    parts = [f"partition {task.slurm.partition}"] if task.slurm.partition else []
    if task.slurm.time_limit:
        parts.append(f"time limit {task.slurm.time_limit}")
    return f" ({', '.join(parts)})" if parts else ""
