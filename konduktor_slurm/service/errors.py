"""What can go wrong in a workflow, as exceptions that carry their exit code.

The CLI turns any of these into one ``Error: ...`` line and exits with ``exit_code``; the SDK
raises them as they are. The codes are documented in the README ("Exit codes"):

0 success; 1 the job failed, or Slurm refused an action; 2 bad input (nothing was done);
3 the cluster could not be reached (what is shown is the last known state); 4 the job ended
without a usable result (``result``); 5 a wait timed out; 6 the job store cannot be used;
7 the job store stayed locked; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NO_RESULT = 4
EXIT_TIMEOUT = 5
EXIT_STORE = 6  # the job store cannot be used (damaged, foreign, newer, unreadable)
EXIT_STORE_LOCKED = 7  # the job store stayed locked by another process
EXIT_INTERRUPTED = 130


class KonduktorError(Exception):
    """Base of every error a workflow raises on purpose; ``str()`` is the one line to show."""

    exit_code = EXIT_FAILED


class InputError(KonduktorError):
    """The request itself is wrong (a bad task, option, job name); nothing was done."""

    exit_code = EXIT_USAGE


class JobNotFoundError(InputError):
    """No job by that name or Slurm id in the store (the message has a "did you mean")."""


class UnreachableError(KonduktorError):
    """Slurm (or the login node) did not answer; nothing was changed."""

    exit_code = EXIT_UNREACHABLE


class ActionError(KonduktorError):
    """Slurm refused or failed an action (submission, stop, cancel, ...)."""

    exit_code = EXIT_FAILED


class InterruptedByUser(KeyboardInterrupt):
    """Ctrl-C stopped an action, which cleaned up first; ``str()`` says what was (not) done.
    Still a KeyboardInterrupt, not a KonduktorError: a program that lets Ctrl-C stop it (or
    catches ``Exception`` around a launch) is stopped, as without konduktor."""

    exit_code = EXIT_INTERRUPTED


# ---- Konduktor's return-value errors (its SDK names) -------------------------------------


class KonduktorReturnError(KonduktorError):
    """Base class for errors getting a job's reported value."""

    exit_code = EXIT_NO_RESULT


class JobFailedError(KonduktorReturnError):
    """The job ended FAILED; its result (if any) does not count."""

    exit_code = EXIT_FAILED


class NoResultReportedError(KonduktorReturnError):
    """The job COMPLETED but rank 0 wrote no ``$KONDUKTOR_OUTPUT_DIR/result.json``."""


class MalformedResultError(KonduktorReturnError):
    """``result.json`` is not valid JSON (or not UTF-8)."""


class ResultTooLargeError(KonduktorReturnError):
    """``result.json`` is larger than the documented cap (``RESULT_MAX_BYTES``)."""


class ResultTimeoutError(KonduktorReturnError, TimeoutError):
    """The job did not reach COMPLETED or FAILED within the timeout."""

    exit_code = EXIT_TIMEOUT
