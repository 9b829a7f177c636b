"""The Python SDK, with Konduktor's names: ``import konduktor_slurm as konduktor``.

.. code-block:: python

    import konduktor_slurm as konduktor

    task = konduktor.Task.from_yaml("train.yaml")         # or konduktor.Task(name=..., run=...)
    task.set_resources(konduktor.Resources(accelerators="H100:8"))
    job = konduktor.launch(task, detach_run=True)          # a Job is a str: the job's name
    print(job.status())                                    # "PENDING", "ACTIVE", ...
    value = job.result(timeout=3600)                       # rank 0's result.json, or raises

Every call is one session of the service layer (the CLI's workflows): on the login node it
runs Slurm's commands here; with ``ssh:`` in config.yaml it uses one SSH connection per call.
Errors are Konduktor's: ``JobFailedError``, ``NoResultReportedError``, ``MalformedResultError``,
``ResultTooLargeError``, ``ResultTimeoutError``, all ``KonduktorReturnError``; a bad task raises
``TaskError`` (every issue, with its field); an unreachable cluster ``UnreachableError``.
Importing this module is light: the heavy parts load when a call needs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from konduktor_slurm.service.errors import (
    JobFailedError,
    KonduktorError,
    KonduktorReturnError,
    MalformedResultError,
    NoResultReportedError,
    ResultTimeoutError,
    ResultTooLargeError,
    UnreachableError,
)
from konduktor_slurm.service.results import RESULT_FILENAME
from konduktor_slurm.task.errors import TaskError

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.task import Task as ValidTask

__all__ = [
    "Job",
    "JobFailedError",
    "KonduktorError",
    "KonduktorReturnError",
    "MalformedResultError",
    "NoResultReportedError",
    "Resources",
    "ResultTimeoutError",
    "ResultTooLargeError",
    "Task",
    "TaskError",
    "UnreachableError",
    "launch",
    "report",
]

OUTPUT_DIR_ENV = "KONDUKTOR_OUTPUT_DIR"


@contextlib.contextmanager
def _session() -> Iterator[Session]:
    from konduktor_slurm.service.session import open_session

    with open_session() as session:
        yield session


class Resources:
    """What each node needs, as in Konduktor: ``Resources(accelerators="H100:8", cpus=8)``.

    Slurm settings (``partition``, ``account``, ``qos``, ``time_limit``, ``constraint``,
    ``sbatch_options``) may be given too; Konduktor's cloud fields are accepted and ignored
    with a warning, exactly as in a task YAML.
    """

    def __init__(self, **fields: Any) -> None:
        self._fields = {key: value for key, value in fields.items() if value is not None}

    def to_yaml_config(self) -> dict[str, Any]:
        return dict(self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self._fields.items())
        return f"Resources({inner})"


class Task:
    """A task as in Konduktor: ``Task(name, run=..., setup=..., envs=..., workdir=...,
    num_nodes=..., event_callback=...)`` plus ``set_resources``/``set_file_mounts``/
    ``update_envs``, or ``Task.from_yaml(path)``. Validated (every issue at once) when
    launched, or by ``validate()``."""

    def __init__(
        self,
        name: str | None = None,
        *,
        setup: str | None = None,
        run: str | None = None,
        envs: dict[str, str] | None = None,
        workdir: str | None = None,
        num_nodes: int | None = None,
        secrets: dict[str, str] | None = None,
        file_mounts: dict[str, str] | None = None,
        event_callback: str | None = None,
    ) -> None:
        config: dict[str, Any] = {
            "name": name,
            "setup": setup,
            "run": run,
            "envs": envs,
            "workdir": workdir,
            "num_nodes": num_nodes,
            "secrets": secrets,
            "file_mounts": file_mounts,
            "event_callback": event_callback,
        }
        self._config = {key: value for key, value in config.items() if value is not None}
        self._valid: ValidTask | None = None

    @staticmethod
    def from_yaml(path: str | os.PathLike[str]) -> Task:
        """A task YAML file, validated now (raises TaskError with file, line and field)."""
        from konduktor_slurm.task import load_task

        task = Task()
        task._valid = load_task(Path(path))
        return task

    def set_resources(self, resources: Resources) -> Task:
        self._config["resources"] = resources.to_yaml_config()
        self._valid = None
        return self

    def set_file_mounts(self, file_mounts: dict[str, str]) -> Task:
        self._config["file_mounts"] = dict(file_mounts)
        self._valid = None
        return self

    def update_envs(self, envs: dict[str, str]) -> Task:
        self._config["envs"] = {**self._config.get("envs", {}), **envs}
        self._valid = None
        return self

    def to_yaml_config(self) -> dict[str, Any]:
        return dict(self._config)

    def validate(self) -> ValidTask:
        """The validated task; raises TaskError listing every issue."""
        if self._valid is None:
            from konduktor_slurm.task import task_from_data

            self._valid = task_from_data(self._config)
        return self._valid

    @property
    def name(self) -> str:
        return self.validate().name

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.validate().warnings


class Job(str):
    """A launched job: its name (a ``str``), and what can be done with it."""

    def status(self) -> str:
        """The lifecycle state now: CREATED, PENDING, SUSPENDED (by system|by user), ACTIVE,
        COMPLETED or FAILED (one squeue; raises UnreachableError if Slurm does not answer)."""
        from konduktor_slurm.service.status import StatusQuery, status

        with _session() as session:
            view = status(session, StatusQuery(name=str(self)))
        if view.stale:
            raise UnreachableError(f"cannot reach Slurm ({view.stale_reason})")
        return str(view.jobs[0].state)

    def detail(self) -> str:
        """The state's detail (why it waits, which rank failed, ...)."""
        from konduktor_slurm.service.status import StatusQuery, status

        with _session() as session:
            return status(session, StatusQuery(name=str(self))).jobs[0].detail

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends: ``'succeeded'`` or ``'failed'`` (Konduktor's words).
        Polls with a backoff (2 s growing to 30 s); raises ResultTimeoutError after
        ``timeout`` seconds (the job keeps running)."""
        from konduktor_slurm.service.waiting import wait_until_terminal

        with _session() as session:
            job = wait_until_terminal(session, session.job(str(self)), timeout)
        return "succeeded" if job.state == "COMPLETED" else "failed"

    def result(self, timeout: float | None = None) -> Any:
        """The value rank 0 reported in ``$KONDUKTOR_OUTPUT_DIR/result.json``, once the job
        has ended; raises JobFailedError, NoResultReportedError, MalformedResultError,
        ResultTooLargeError or ResultTimeoutError."""
        from konduktor_slurm.service.results import read_result
        from konduktor_slurm.service.waiting import wait_until_terminal

        with _session() as session:
            job = wait_until_terminal(session, session.job(str(self)), timeout)
            return read_result(session.slurm.transport, job)

    def logs(self, node_rank: int | None = None, last_lines: int | None = None) -> str:
        """The output so far, each line prefixed by its node rank ("0: ...")."""
        from konduktor_slurm.service import logs

        with _session() as session:
            return logs.read(session, session.job(str(self)), node_rank, last_lines) or ""

    def stop(self, mode: str | None = None) -> str:
        """Stop the job (as `konduktor stop`); returns its state afterwards."""
        from konduktor_slurm.service import control

        with _session() as session:
            plan = control.plan_stop(session, (str(self),), mode=mode)
            _raise_failures(control.apply_stop(session, plan, mode))
            return str(session.job(str(self)).state)

    def start(self) -> str:
        """Undo how the job was stopped (as `konduktor start`); returns its state afterwards."""
        from konduktor_slurm.service import control

        with _session() as session:
            plan = control.plan_start(session, (str(self),))
            _raise_failures(control.apply_start(session, plan))
            return str(session.job(str(self)).state)

    def down(self) -> None:
        """Cancel the job if it runs, and hide it from status (as `konduktor down`)."""
        from konduktor_slurm.service import control

        with _session() as session:
            control.apply_down(session, control.plan_down(session, (str(self),)))


def _raise_failures(result: Any) -> None:
    from konduktor_slurm.service.errors import ActionError

    if result.failures:
        raise ActionError("; ".join(result.failures))


def launch(task: Task, dryrun: bool = False, detach_run: bool = False) -> Job | None:
    """Stage and submit ``task``; Konduktor's ``launch``.

    ``dryrun``: validate and render only, return None. ``detach_run``: return once the job
    is submitted; otherwise stream its output to stdout until it ends (as Konduktor does),
    then return the Job (its ``status()`` tells how it ended).
    """
    from konduktor_slurm.service import launch as launching
    from konduktor_slurm.staging import SilentReporter

    valid = task.validate()
    with _session() as session:
        prepared = launching.prepare(session, valid)
        if dryrun:
            for batch in prepared.batches:
                batch.script  # noqa: B018 (render, as a dry run promises; prepare only checks)
            return None
        record = launching.submit(session, prepared, SilentReporter())
        _prune_old_snapshots(session)
        job = Job(record.name)
        if not detach_run:
            from konduktor_slurm.service import logs

            def write(text: str) -> None:
                sys.stdout.write(text)
                sys.stdout.flush()

            logs.follow(session, record, write)
    return job


def _prune_old_snapshots(session: Session) -> None:
    """As after `konduktor launch`: finished jobs' snapshots past the retention go, a
    bounded amount; a failure is a RuntimeWarning, never a failed launch."""
    import warnings

    from konduktor_slurm.service.prune import auto_prune

    def warn(line: str) -> None:
        warnings.warn(line.removeprefix("Warning: "), RuntimeWarning, stacklevel=4)

    auto_prune(session, warn)


def report(value: Any, path: str | None = None) -> None:
    """Report ``value`` as this job's result: JSON in ``$KONDUKTOR_OUTPUT_DIR/result.json``.

    For workloads. Only rank 0's result counts (``konduktor result``); the file is replaced
    atomically, so a reader never sees half a value.
    """
    if path is None:
        output_dir = os.environ.get(OUTPUT_DIR_ENV)
        if not output_dir:
            raise RuntimeError(
                f"{OUTPUT_DIR_ENV} is not set: call report() from inside a job launched "
                "with konduktor"
            )
        path = os.path.join(output_dir, RESULT_FILENAME)
    text = json.dumps(value)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".result.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
