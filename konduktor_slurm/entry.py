"""The ``konduktor`` console script: the click CLI, except for a bare ``konduktor status``.

``konduktor status`` and ``konduktor status --json`` with nothing else on the line are what
cron, watch loops and scripts run over and over. Importing click (and through it inspect,
ast, typing...) is about a third of their start-up, and they have no option to parse, so
they are answered here without click. Every other command line, ``status --help`` and any
other option included, goes to the click CLI in ``konduktor_slurm.cli``.

Both paths print through ``show_status`` and fail the same way: a workflow's error is one
``Error:`` line and its exit code, Ctrl-C prints click's ``Aborted!`` and exits 1, a closed
pipe exits 1 quietly, anything else is one ``Error: unexpected ...`` line (the traceback
with ``KONDUKTOR_DEBUG=1``). tests/unit/test_entry.py runs both paths on the same stores and
compares what they print and how they exit.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing's: a status over SSH starts its login before typing loads
if TYPE_CHECKING:
    from typing import NoReturn

    from konduktor_slurm.service.status import StatusQuery, StatusView

DEBUG_ENV = "KONDUKTOR_DEBUG"
EXIT_FAILED = 1  # service/errors.py's; not imported for a constant
# argv after the program name -> as JSON.
_BARE_STATUS: dict[tuple[str, ...], bool] = {("status",): False, ("status", "--json"): True}
# Set by a shell asking click for completions (click's convention for prog "konduktor").
_COMPLETION_ENV = "_KONDUKTOR_COMPLETE"


def run() -> NoReturn:
    """The console script."""
    as_json = _BARE_STATUS.get(tuple(sys.argv[1:]))
    if as_json is None or os.environ.get(_COMPLETION_ENV):
        from konduktor_slurm.cli import run as run_cli

        run_cli()
        sys.exit(0)  # click's standalone mode exits by itself; this is never reached
    # Over SSH, the login (most of a status's time) starts now, before anything loads.
    from konduktor_slurm import login_ahead

    login_ahead.start_early()
    try:
        code = _bare_status(as_json)
    finally:
        login_ahead.abandon()  # the status never got to it (a config or store error)
    # Nothing is left to tear down: the session (store, SSH master) is closed and only
    # stdout and stderr hold data. Leaving without the interpreter's teardown (unloading
    # ~120 modules) spares every cron or watch-loop status about 10 ms.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_pipe()
        code = EXIT_FAILED
    sys.stderr.flush()
    os._exit(code)


def _bare_status(as_json: bool) -> int:
    from konduktor_slurm.service.errors import KonduktorError

    try:
        return show_status(None, as_json=as_json)
    except KonduktorError as exc:
        _error(str(exc))
        return exc.exit_code
    except (EOFError, KeyboardInterrupt):
        # click's standalone mode: a blank line closes the terminal's ^C echo.
        sys.stderr.write("\nAborted!\n")
        return EXIT_FAILED
    except BrokenPipeError:
        # `konduktor status | head`: click's way, exit 1 without a word or a flush error.
        _quiet_closed_pipe()
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _error(unexpected_error(exc))
        return EXIT_FAILED


def unexpected_error(exc: BaseException) -> str:
    """The one line for an exception nobody foresaw (the CLI's and the bare status's)."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"unexpected {what} (run again with {DEBUG_ENV}=1 to see where)"


def _error(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def _quiet_closed_pipe() -> None:
    # stdout still holds what could not be written, and run() flushes it once more before
    # leaving: point it at /dev/null so that flush cannot raise BrokenPipeError again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def show_status(query: StatusQuery | None, as_json: bool) -> int:
    """Run a status query (None: the bare ``konduktor status``) and print it (the table, one
    job's detail, or JSON); the exit code: 0, or 3 when Slurm could not be reached (the last
    known states were shown)."""
    from konduktor_slurm.service.errors import EXIT_UNREACHABLE
    from konduktor_slurm.service.session import open_session

    # A status only runs commands on the cluster (squeue, sacct): over SSH, OpenSSH's client,
    # which starts logging in as the session opens; the rest loads meanwhile.
    with open_session(commands_only=True) as session:
        from konduktor_slurm.service.status import StatusQuery
        from konduktor_slurm.service.status import status as query_status

        query = query or StatusQuery()
        view = query_status(session, query)
    now = time.time()
    out = sys.stdout
    if as_json:
        _print_json(view, query.name is not None, now)
    elif query.name:
        out.write(_job_detail(view, now))
    else:
        out.write(_table(view, query.all_users, now, colour=out.isatty()))
    out.flush()
    if view.stale:
        sys.stderr.write(
            f"Warning: Slurm could not be reached ({view.stale_reason}); "
            "states marked (stale) are the last known.\n"
        )
        return EXIT_UNREACHABLE
    return 0


def _print_json(view: StatusView, one_job: bool, now: float) -> None:
    from konduktor_slurm.views import job_json, job_json_text, transition_json, write_json_list

    head = {"user": view.user, "stale": view.stale, "stale_reason": view.stale_reason}
    if one_job:
        entries = [job_json(job, now) for job in view.jobs]
        for entry in entries:
            entry["history"] = [transition_json(t) for t in view.history]
        write_json_list(sys.stdout, head, "jobs", entries)
    else:
        write_json_list(sys.stdout, head, "jobs", view.jobs, lambda job: job_json_text(job, now))


def _table(view: StatusView, all_users: bool, now: float, colour: bool) -> str:
    from konduktor_slurm.views import STATE_STYLES, STATUS_COLUMNS, plain_table, status_row

    jobs = view.jobs
    head = f"User: {view.user}\n"
    if not jobs:
        return head + "No jobs. Launch one with: konduktor launch task.yaml\n"
    columns = list(STATUS_COLUMNS)
    rows = []
    for job in jobs:
        row = list(status_row(job, now))
        if view.is_stale(job):
            row[1] = f"{row[1]} (stale)"
        if all_users:
            row.insert(1, job.user)
        rows.append(row)
    if all_users:
        columns.insert(1, "USER")
    styles = [STATE_STYLES.get(job.state) for job in jobs] if colour else None
    return head + plain_table(columns, rows, styles, colour_column=2 if all_users else 1)


def _job_detail(view: StatusView, now: float) -> str:
    from konduktor_slurm.views import clock, detail_fields

    job = view.jobs[0]
    lines = [
        f"{label + ':':<14}{value}" for label, value in detail_fields(job, now, view.is_stale(job))
    ]
    lines.append("History:")
    for transition in view.history:
        detail = f" ({transition.detail})" if transition.detail else ""
        lines.append(f"  {clock(transition.at)}  {transition.state}{detail}")
    return "\n".join(lines) + "\n"
