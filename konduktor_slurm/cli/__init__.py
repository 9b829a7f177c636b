"""The ``konduktor`` command line: parse arguments, call the service layer, print.

Each command is a thin shell over ``konduktor_slurm.service`` (the workflows, shared with the
Python SDK). Heavy imports (jinja2, pydantic via the task model, fabric) happen inside the
commands that need them, so ``konduktor status`` and ``--help`` start fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import click

from konduktor_slurm import __version__
from konduktor_slurm.service.errors import EXIT_FAILED, EXIT_UNREACHABLE
from konduktor_slurm.service.errors import EXIT_USAGE as EXIT_USAGE

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord

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


def console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    # Without a terminal (cron, pipes) rich would wrap at 80 columns: never wrap a table row.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 250
    return Console(file=stream, width=width, soft_wrap=not stream.isatty())


# Each command's module (konduktor_slurm.cli.<module>), imported when the command is run or
# listed: `konduktor status` loads the status command alone, not launch's, the dashboard's
# or the rest (a third of its start-up went into importing commands it never ran).
COMMAND_MODULES: dict[str, str] = {
    "check": "check",
    "dashboard": "dashboard",
    "down": "control",
    "launch": "launch",
    "logs": "logs",
    "prune": "prune",
    "report": "report",
    "result": "result",
    "start": "control",
    "status": "status",
    "stop": "control",
    "store": "store_commands",
    # Konduktor's commands that mean nothing on Slurm: hidden, refused with the reason.
    **dict.fromkeys(
        ("cluster", "login", "logout", "secret", "serve", "whoami", "worker"), "unavailable"
    ),
}


# SkyPilot's commands whose konduktor twin has another name: typed from habit, they get it.
SKYPILOT_TWINS: dict[str, str] = {
    "queue": "`konduktor status` (-u: everyone's jobs)",
    "cancel": "`konduktor down JOB...` (`konduktor stop` keeps it to start again)",
    "exec": "`konduktor launch`: each launch is a Slurm job of its own, there is no cluster "
    "to run it on",
    "jobs": "`konduktor launch`, `status`, `logs` and `down`: every job here is managed "
    "(`sky jobs launch` is `konduktor launch`)",
    "show-gpus": "`konduktor check`: its partitions line names each partition's GPUs",
}


def unknown_command(name: str) -> str:
    """What `konduktor NAME` says when there is no such command: SkyPilot's name for a
    twin, or the closest command's name for a typo (the lazy group's ``self.commands``
    holds only those imported, so click's own hint would see none)."""
    import difflib

    twin = SKYPILOT_TWINS.get(name)
    if twin is not None:
        return f"No such command {name!r}. Here, SkyPilot's `sky {name}` is {twin}."
    known = [command for command, module in COMMAND_MODULES.items() if module != "unavailable"]
    close = difflib.get_close_matches(name, known, n=1)
    return f"No such command {name!r}." + (f" Did you mean {close[0]!r}?" if close else "")


class LazyCommands(click.Group):
    """A group whose commands register themselves when their module is imported, on first
    use (see COMMAND_MODULES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def invoke(self, ctx: click.Context) -> object:
        # A KonduktorError that a command did not catch (a damaged store met anywhere, say)
        # is one `Error:` line and its exit code, not a traceback.
        from konduktor_slurm.service.errors import KonduktorError

        try:
            return super().invoke(ctx)
        except KonduktorError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from exc

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):
            ctx.fail(unknown_command(name))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            # The import statement's machinery (not importlib's), so -X importtime sees it.
            __import__(f"konduktor_slurm.cli.{module}")
        return self.commands.get(cmd_name)


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
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
      konduktor launch -y nvidia-smi      a command instead of a task file
      konduktor status                    your jobs, newest first
      konduktor logs my-job-1a2b          the job's output
      konduktor stop my-job-1a2b          stop it; `konduktor start` resumes it
      konduktor down my-job-1a2b          cancel it and hide it from status
    """


def run() -> None:
    """The ``konduktor`` console script: the click group, with one line for the unexpected.

    click reports usage errors itself; a workflow's KonduktorError is already one line. Any
    other exception is a bug or an environment nobody foresaw: the user still gets one line
    and exit 1, and ``KONDUKTOR_DEBUG=1`` shows the traceback.
    """
    import os

    from konduktor_slurm.entry import DEBUG_ENV, unexpected_error

    try:
        main(standalone_mode=True)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(f"Error: {unexpected_error(exc)}", err=True)
        sys.exit(EXIT_FAILED)


def follow_and_exit(
    session: Session, job: JobRecord, node_rank: int | None = None, last_lines: int | None = None
) -> NoReturn:
    """Stream the job's output until it is COMPLETED (exit 0) or FAILED (exit 1)."""
    from konduktor_slurm.service import logs as job_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    warned = False

    def on_stale(reason: str) -> None:
        nonlocal warned
        if not warned:
            click.echo(f"Warning: cannot reach Slurm ({reason}); still trying.", err=True)
            warned = True

    def on_change(changed: JobRecord) -> None:
        # stderr, one line per change: the output on stdout stays the job's own.
        detail = f" ({changed.detail})" if changed.detail else ""
        click.echo(f"{changed.name}: {changed.state}{detail}", err=True)

    try:
        with service_errors():
            job_logs.follow(
                session, job, write, on_stale=on_stale, node_rank=node_rank,
                last_lines=last_lines, on_change=on_change,
            )  # fmt: skip
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
