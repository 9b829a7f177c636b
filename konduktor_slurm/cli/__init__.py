"""The ``konduktor`` command line: parse arguments, call the modules below, print.

Heavy imports (jinja2, pydantic via the task model) happen inside the commands that need
them, so ``konduktor status`` and ``--help`` start fast.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import click

from konduktor_slurm import __version__
from konduktor_slurm.service.errors import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

if TYPE_CHECKING:
    from konduktor_slurm.config import Settings
    from konduktor_slurm.slurm import Slurm
    from konduktor_slurm.store import JobRecord, Store

# The exit codes are documented in the README and in service/errors.py.
EXIT_STALE = EXIT_UNREACHABLE  # what is shown is the last known state


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def service_errors() -> Iterator[None]:
    """A workflow's KonduktorError becomes one ``Error:`` line and its exit code."""
    from konduktor_slurm.service.errors import KonduktorError

    try:
        yield
    except KonduktorError as exc:
        fail(str(exc), exc.exit_code)


def settings() -> Settings:
    from konduktor_slurm.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def open_store(config: Settings) -> Store:
    from konduktor_slurm.store import Store

    return Store(config.store_path)


def open_slurm(config: Settings) -> Slurm:
    """Slurm through the configured transport: local, or SSH when ``ssh:`` is configured.

    Opening costs nothing: the SSH connection (one per invocation, reused by every command)
    is made on first use, so commands that never reach the cluster never touch the network.
    """
    from konduktor_slurm.slurm import Slurm

    if config.ssh is not None:
        from konduktor_slurm.ssh import SSHTransport

        transport = SSHTransport(
            config.ssh,
            slurm_bin_dir=config.slurm_bin_dir,
            timeout=config.slurm_timeout,
            config_path=str(config.config_path),
        )
        return Slurm(transport, timeout=config.slurm_timeout)
    from konduktor_slurm.transport import LocalTransport

    return Slurm(LocalTransport(config.slurm_bin_dir), timeout=config.slurm_timeout)


def resolve_job(store: Store, name: str) -> JobRecord:
    """A job by konduktor name or Slurm job id, or a clear error with a "did you mean"."""
    job = store.get(name)
    if job is not None:
        return job
    for candidate in store.jobs(include_hidden=True):
        if candidate.slurm_job_id == name:
            return candidate
    hint = did_you_mean(name, store.names())
    fail(f"no job named {name!r}.{hint} (`konduktor status` lists your jobs)")


def did_you_mean(name: str, names: list[str]) -> str:
    """`` Did you mean 'train-1a2b'?`` for the closest known names, or nothing."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def console(stderr: bool = False):  # -> rich.console.Console
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
      konduktor stop my-job-1a2b          stop it; `konduktor start` resumes it
      konduktor down my-job-1a2b          cancel it and hide it from status
    """


DEBUG_ENV = "KONDUKTOR_DEBUG"


def run() -> None:
    """The ``konduktor`` console script: the click group, with one line for the unexpected.

    click reports usage errors itself; a workflow's KonduktorError is already one line. Any
    other exception is a bug or an environment nobody foresaw: the user still gets one line
    and exit 1, and ``KONDUKTOR_DEBUG=1`` shows the traceback.
    """
    import os

    try:
        main(standalone_mode=True)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        click.echo(
            f"Error: unexpected {what} (run again with {DEBUG_ENV}=1 to see where)", err=True
        )
        sys.exit(EXIT_FAILED)


def follow_and_exit(
    store: Store,
    slurm: Slurm,
    job: JobRecord,
    node_rank: int | None = None,
    last_lines: int | None = None,
) -> NoReturn:
    """Stream the job's output until it is COMPLETED (exit 0) or FAILED (exit 1)."""
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
        follow(store, slurm, job, write, on_stale, node_rank=node_rank, last_lines=last_lines)
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


# Command modules register themselves on `main`; imported last because they import `main`.
from konduktor_slurm.cli import (  # noqa: E402, F401
    check,
    control,
    launch,
    logs,
    report,
    result,
    status,
    store_commands,
    unavailable,
)
