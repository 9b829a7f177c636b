"""`konduktor result`: wait for a job to end, print the value it reported, as JSON."""

from __future__ import annotations

import json
import sys

import click

from konduktor_slurm.cli import main, service_errors


@main.command()
@click.argument("job_name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up after SECONDS if the job has not ended (exit 5; it keeps running).",
)
def result(job_name: str, timeout: float | None) -> None:
    """Print the value JOB_NAME reported, as JSON on stdout, once it has ended.

    A job reports a value by writing JSON to $KONDUKTOR_OUTPUT_DIR/result.json on rank 0
    (Python: konduktor_slurm.report(value)). Waiting polls Slurm with a backoff (2 s,
    growing to 30 s). Errors are one line on stderr, so stdout stays clean JSON.

    \b
    Exit codes: 0 printed; 1 the job FAILED; 2 no such job; 3 the cluster could not be
    reached; 4 no result, malformed JSON or a result over 10 MiB; 5 --timeout passed first.
    """
    from konduktor_slurm.service.results import read_result
    from konduktor_slurm.service.session import open_session
    from konduktor_slurm.service.waiting import wait_until_terminal

    with service_errors(), open_session() as session:
        job = session.job(job_name)
        try:
            wait_until_terminal(session, job, timeout)
        except KeyboardInterrupt:
            click.echo(f"\nStopped waiting; {job.name} keeps running.", err=True)
            sys.exit(130)
        value = read_result(session.slurm.transport, job)
    click.echo(json.dumps(value))
