"""`konduktor logs`: print or follow a job's output."""

from __future__ import annotations

import sys

import click

from konduktor_slurm.cli import (
    EXIT_USAGE,
    fail,
    follow_and_exit,
    main,
    open_slurm,
    open_store,
    resolve_job,
    settings,
)

# ---------------------------------------------------------------------------------------
# logs


@main.command()
@click.argument("job_name")
@click.option(
    "--follow/--no-follow",
    default=False,
    help="Keep streaming until the job is COMPLETED or FAILED (across suspends and requeues).",
)
@click.option(
    "-N",
    "--node-rank",
    "--node_rank",
    "node_rank",
    type=click.IntRange(min=0),
    help="Only this node's lines (rank 0..N-1).",
)
@click.option(
    "-n",
    "--num-lines",
    "--num_lines",
    "--lines",
    "last_lines",
    type=click.IntRange(min=0),
    help="Start with the last N lines.",
)
@click.option(
    "--start-offset",
    hidden=True,
    expose_value=False,
    callback=lambda ctx, param, value: _refuse_option(
        value, "--start-offset", "use -n/--num-lines to start near the end"
    ),
)
@click.option(
    "--status",
    hidden=True,
    is_flag=True,
    expose_value=False,
    callback=lambda ctx, param, value: _refuse_option(
        value, "--status", "use `konduktor status JOB`"
    ),
)
def logs(job_name: str, follow: bool, node_rank: int | None, last_lines: int | None) -> None:
    """Print the output of JOB_NAME: every node's lines, prefixed by the node rank ("1: ...").

    \b
    Exit codes: 0 printed (with --follow: the job COMPLETED); 1 with --follow: the job
    FAILED; 130 detached with Ctrl-C while following.
    """
    config = settings()
    store = open_store(config)
    slurm = open_slurm(config)
    job = resolve_job(store, job_name)
    if node_rank is not None and node_rank >= job.num_nodes:
        last = job.num_nodes - 1
        fail(f"--node-rank {node_rank}: {job.name} has ranks 0..{last} only", EXIT_USAGE)
    if follow:
        follow_and_exit(store, slurm, job, node_rank=node_rank, last_lines=last_lines)
    from konduktor_slurm.logs import LineFilter, read_last_lines

    transport = slurm.transport
    if last_lines is not None:
        # Only the file's tail is read: the last lines of a huge log cost kilobytes.
        text = read_last_lines(transport, job.log_path, last_lines, node_rank)
        if not text and not transport.read_tail(job.log_path, 1):
            click.echo(f"No output yet for {job.name} ({job.state}).", err=True)
        sys.stdout.write(text)
        return
    data = transport.read_bytes(job.log_path)
    if not data:
        click.echo(f"No output yet for {job.name} ({job.state}).", err=True)
        return
    sys.stdout.write(LineFilter(node_rank).feed(data, final=True))


def _refuse_option(value: object, option: str, instead: str) -> None:
    """Konduktor's deprecated or Kubernetes-only `logs` options: one line saying what to use."""
    if value:
        fail(f"{option} is not available here: {instead}", EXIT_USAGE)
