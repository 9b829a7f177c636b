"""`konduktor report`: a report for cron (what changed, what failed, what the GPUs cost)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import click

from konduktor_slurm import durations
from konduktor_slurm.cli import EXIT_FAILED, EXIT_STALE, EXIT_USAGE, fail, main, service_errors


def parse_age(text: str, option: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1.5d``, ``1w`` -> seconds, or a usage error naming ``option``."""
    try:
        return durations.parse_age(text)
    except durations.DurationError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


def parse_since(text: str, now: float) -> float:
    """``--since``: an age before ``now`` (``2h``) or a time (``2026-11-28T14:00``)."""
    try:
        return durations.parse_when(text, now)
    except durations.DurationError as exc:
        fail(f"--since: {exc}", EXIT_USAGE)


def write_atomically(path: Path, text: str) -> None:
    """Readers (node_exporter, a web server) never see half a file."""
    import tempfile  # not at import time: `konduktor status` must start fast

    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _prune_old_snapshots(session) -> None:  # session: service.session.Session
    """Finished jobs' snapshots past the retention, a bounded amount, once the report is
    out. Quiet: a failure is one warning line, never a failed report."""
    from konduktor_slurm.service.prune import auto_prune

    auto_prune(session, lambda line: click.echo(line, err=True))


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html", "prometheus"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE atomically (temp file + rename) instead of stdout.",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Report from WHEN (2h, 1d, or 2026-11-28T14:00) instead of the last report; "
    "the cursor is neither read nor moved.",
)
@click.option(
    "--stuck-after",
    default="2h",
    show_default=True,
    metavar="AGE",
    help="List jobs PENDING or SUSPENDED for longer than AGE.",
)
@click.option(
    "--fail-on-failure",
    is_flag=True,
    help="Exit 1 when a job FAILED since the last report (for cron MAILTO).",
)
@click.option(
    "-u",
    "--all-users",
    is_flag=True,
    help="Every user's jobs (an operator's view); default: yours.",
)
@click.option(
    "--log-lines",
    default=10,
    show_default=True,
    help="Lines of the failing rank's log shown per failed job.",
)
@click.option(
    "--notify",
    "notify_urls",
    multiple=True,
    metavar="URL",
    help="Also post new failures and state changes to this webhook (Slack-compatible JSON; "
    "repeatable). Sent after the report, with a timeout and a few retries (10 s at most); "
    "a failure is a warning on stderr.",
)
@click.option(
    "--lock-timeout",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for an overlapping report to finish.",
)
def report(
    fmt: str,
    output: Path | None,
    since: str | None,
    stuck_after: str,
    fail_on_failure: bool,
    all_users: bool,
    log_lines: int,
    lock_timeout: float,
    notify_urls: tuple[str, ...],
) -> None:
    """What changed since the last report, what failed, and what the GPUs cost. For cron.

    \b
    Each run reports only what happened since the previous one (a cursor in the
    store); runs never prompt, never colour, and every Slurm call has a timeout.
    Two overlapping runs take turns (a lock), so nothing is reported twice.

    \b
    Billing counts ACTIVE time only: per job and per user, ACTIVE time, node-hours
    and GPU-hours of the runs that ended in the window. Suspended and pending time,
    and runs lost to a requeue (preemption, stop by requeue), are shown apart.

    \b
    Exit codes: 0 nothing alarming; 1 a job FAILED since the last report (only
    with --fail-on-failure); 3 Slurm could not be reached (what is known is still
    reported, marked stale).

    \b
    --notify URL also posts what is new (failures, state changes) to a Slack-
    compatible webhook, after the report; a webhook that is down or slow delays
    the run by 10 s at most and is named in a warning.

    \b
    Crontab examples:
      MAILTO=team@example.org
      0 * * * *  konduktor report --fail-on-failure
      */10 * * * *  konduktor report -u --format html -o /var/www/html/gpus.html
      * * * * *  konduktor report --format prometheus -o /var/lib/node_exporter/konduktor.prom
    """
    from konduktor_slurm.report_formats import RENDERERS
    from konduktor_slurm.service import webhook
    from konduktor_slurm.service.report import ReportOptions, report_run
    from konduktor_slurm.service.session import open_session

    try:
        urls = [webhook.check_url(url) for url in notify_urls]
    except webhook.NotifyError as exc:
        fail(str(exc), EXIT_USAGE)
    now = time.time()
    options = ReportOptions(
        since=parse_since(since, now) if since is not None else None,
        stuck_after=parse_age(stuck_after, "--stuck-after"),
        all_users=all_users,
        log_lines=log_lines,
        lock_timeout=lock_timeout,
    )
    with service_errors(), open_session() as session:
        with report_run(session, options) as run:
            if run is None:
                lock = session.config.home / "report.lock"
                click.echo(
                    f"Another `konduktor report` still holds {lock} after {lock_timeout:g}s; "
                    "this run reports nothing (the next one will).",
                    err=True,
                )
                return
            text = RENDERERS[fmt](run.report)
            if output is not None:
                write_atomically(output, text)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
            # Only once the report is out: a crash before this reports the same things again,
            # never loses them.
            run.commit()
        if not run.report.stale:
            # On the report's connection, after its lock is released: a slow removal
            # never holds up the next cron run.
            _prune_old_snapshots(session)
    if urls:
        # After the report and its cursor: a slow or dead webhook delays nothing before it.
        webhook.notify(urls, run.report, warn=lambda line: click.echo(line, err=True))
    if run.report.stale:
        click.echo(f"Warning: Slurm could not be reached ({run.report.stale_reason}).", err=True)
        sys.exit(EXIT_STALE)
    if fail_on_failure and run.report.failures:
        sys.exit(EXIT_FAILED)
