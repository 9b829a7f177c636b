"""`konduktor logs`: print or follow a job's output."""

from __future__ import annotations

import sys

import click

from konduktor_slurm.cli import EXIT_USAGE, fail, follow_and_exit, main, service_errors

# ---------------------------------------------------------------------------------------
# logs


# Extra words are kept (not click's "unexpected extra argument") to answer SkyPilot's
# `sky logs CLUSTER JOB_ID` habit with what to type here.
@main.command(context_settings={"allow_extra_args": True})
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
    from konduktor_slurm.service import logs as job_logs
    from konduktor_slurm.service.session import open_session

    extra = click.get_current_context().args
    if extra:
        words = " ".join(repr(word) for word in (job_name, *extra))
        fail(
            f"logs takes one JOB_NAME, got {len(extra) + 1} words: {words}. SkyPilot's "
            "`sky logs CLUSTER JOB_ID` is `konduktor logs JOB_NAME` here: each konduktor job "
            "is named on its own (see `konduktor status`).",
            EXIT_USAGE,
        )
    with service_errors(), open_session() as session:
        job = session.job(job_name)
        if follow:
            job_logs.check_rank(job, node_rank)
            follow_and_exit(session, job, node_rank=node_rank, last_lines=last_lines)
        text = job_logs.read(session, job, node_rank, last_lines)
    if text is None:
        click.echo(f"No output yet for {job.name} ({job.state}).", err=True)
        return
    sys.stdout.write(text)


def _refuse_option(value: object, option: str, instead: str) -> None:
    """Konduktor's deprecated or Kubernetes-only `logs` options: one line saying what to use."""
    if value:
        fail(f"{option} is not available here: {instead}", EXIT_USAGE)
