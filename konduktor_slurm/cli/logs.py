"""`konduktor logs`: print or follow a job's output."""

from __future__ import annotations

import sys

import click

from konduktor_slurm.cli import follow_and_exit, main, open_slurm, open_store, resolve_job, settings

# ---------------------------------------------------------------------------------------
# logs


@main.command()
@click.argument("job_name")
@click.option("--follow/--no-follow", default=False, help="Keep streaming until the job ends.")
def logs(job_name: str, follow: bool) -> None:
    """Print the output of JOB_NAME (all nodes; lines are prefixed by node rank).

    With --follow, stream until the job reaches COMPLETED (exit 0) or FAILED (exit 1).
    """
    config = settings()
    store = open_store(config)
    slurm = open_slurm(config)
    job = resolve_job(store, job_name)
    if follow:
        follow_and_exit(store, slurm, job)
    data = slurm.transport.read_bytes(job.log_path)
    if not data:
        click.echo(f"No output yet for {job.name} ({job.state}).", err=True)
        return
    sys.stdout.write(data.decode("utf-8", errors="replace"))
