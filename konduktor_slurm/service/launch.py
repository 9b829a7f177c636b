"""Launch: a validated task in, a submitted Slurm job (and its store record) out.

``prepare`` decides everything that can be decided before touching the cluster's files
(the job's name and directory, the rendered sbatch script); ``submit`` then stages the
snapshot, writes the script and the secrets, calls sbatch and records the job. Nothing here
prints or prompts: progress goes to a staging ``Reporter`` the caller chooses.
"""

from __future__ import annotations

import contextlib
import secrets as random_tokens
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import ActionError, InputError

if TYPE_CHECKING:
    from konduktor_slurm.render import JobPlan
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.staging import Reporter
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.task import Task, TaskOverrides
    from konduktor_slurm.transport import Transport

# Job names are <task name>-<4 hex>; a draw already taken (in the store, or as a directory
# in jobs_dir, which several stores may share) is drawn again.
NAME_DRAWS = 20


def load(path: Path, overrides: TaskOverrides | None = None) -> Task:
    """The task in ``path``, or InputError listing every issue (file:line: field: what)."""
    from konduktor_slurm.task import TaskError, load_task

    try:
        return load_task(path, overrides)
    except TaskError as exc:
        raise InputError(f"{path} is not a valid task; nothing was submitted.\n{exc}") from None


@dataclass(frozen=True)
class Prepared:
    task: Task
    plan: JobPlan
    script: str

    @property
    def job_name(self) -> str:
        return self.plan.job_name


def prepare(session: Session, task: Task, taken: frozenset[str] = frozenset()) -> Prepared:
    """Name the job, plan where its files go and render its sbatch script (pure but for a
    remote home directory lookup over SSH). ``taken``: names known to be in use."""
    from konduktor_slurm.render import JobPlan, RenderError, StagedMount, render_sbatch

    task = session.config.apply_slurm_defaults(task)  # config.yaml partition/account/qos
    job_name = _free_name(session, task.name, taken)
    job_dir = f"{session.config.resolve_jobs_dir(session.slurm.transport)}/{job_name}"
    plan = JobPlan(
        job_name=job_name,
        job_dir=job_dir,
        log_path=f"{job_dir}/job.log",
        workdir=f"{job_dir}/workdir" if task.workdir else None,
        # Planned mount paths match what staging creates (sorted destinations, by index).
        mounts=tuple(
            StagedMount(dest, f"{job_dir}/mounts/{index}", source.is_dir())
            for index, (dest, source) in enumerate(sorted(task.file_mounts.items()))
        ),
        gres_map=session.config.gres_map,
        node_workdir=session.config.node_workdir,
    )
    try:
        script = render_sbatch(task, plan)
    except RenderError as exc:
        source = task.source or "the task"
        raise InputError(f"{source}: {exc}; nothing was submitted.") from None
    return Prepared(task, plan, script)


def _free_name(session: Session, task_name: str, taken: frozenset[str]) -> str:
    known = taken | set(session.store.names())
    for _ in range(NAME_DRAWS):
        name = f"{task_name}-{random_tokens.token_hex(2)}"
        if name not in known:
            return name
    # 65,536 names per task: after 20 taken draws, widen the suffix rather than fail.
    return f"{task_name}-{random_tokens.token_hex(4)}"


def claim(session: Session, prepared: Prepared) -> tuple[Prepared, JobRecord]:
    """Make the job's name and directory ours, atomically: the store row (its name is the
    primary key) and then the job directory (created without -p, so an existing one fails).
    A name another launch took in between is given back and drawn again."""
    from konduktor_slurm.transport import TransportError

    transport = session.slurm.transport
    jobs_dir = prepared.plan.job_dir.rsplit("/", 1)[0]
    try:
        transport.make_dirs(jobs_dir, 0o700)
    except (TransportError, OSError) as exc:
        raise ActionError(f"cannot create the jobs directory {jobs_dir}: {exc}") from None
    taken: set[str] = set()
    for _ in range(NAME_DRAWS):
        job = _new_record(session, prepared)
        try:
            session.store.add(job)
        except sqlite3.IntegrityError:
            taken.add(job.name)
            prepared = prepare(session, prepared.task, frozenset(taken))
            continue
        made = transport.run(["mkdir", "-m", "700", "--", prepared.plan.job_dir])
        if made.ok:
            return prepared, job
        session.store.remove(job.name)  # the directory belongs to another launch
        taken.add(job.name)
        prepared = prepare(session, prepared.task, frozenset(taken))
    raise ActionError(f"could not find a free job name for {prepared.task.name}; launch again")


def _new_record(session: Session, prepared: Prepared) -> JobRecord:
    from konduktor_slurm.lifecycle import State
    from konduktor_slurm.store import JobRecord

    task, plan = prepared.task, prepared.plan
    accelerator = task.resources.accelerator
    return JobRecord(
        name=plan.job_name,
        task_name=task.name,
        user=session.slurm.transport.user,  # over SSH: the remote account the job runs as
        resources=task.resources_summary(),
        num_nodes=task.num_nodes,
        gpus_per_node=accelerator.count if accelerator else 0,
        job_dir=plan.job_dir,
        log_path=plan.log_path,
        max_restarts=task.resources.max_restarts,
        checkpoint=task.resources.checkpoint,
        event_callback=task.event_callback,
        state=State.CREATED.value,
        detail="staging workdir",
        created_at=time.time(),
    )


def submit(session: Session, prepared: Prepared, reporter: Reporter | None = None) -> JobRecord:
    """Claim a name, stage the files, submit the job, and record it; raises ActionError when
    staging or sbatch fails (the job is then recorded FAILED with why, and nothing runs).
    The job's name may differ from ``prepared.job_name`` if another launch took that one."""
    from konduktor_slurm.lifecycle import State
    from konduktor_slurm.render import render_secrets
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.staging import StagingError, stage
    from konduktor_slurm.transport import CommandTimeout, TransportError

    prepared, job = claim(session, prepared)
    task, plan, store, slurm = prepared.task, prepared.plan, session.store, session.slurm
    try:
        stage(
            slurm.transport,
            plan.job_dir,
            task.workdir,
            task.file_mounts,
            task_name=task.name,
            reporter=reporter,
        )
        if task.secrets:
            slurm.transport.write_file(f"{plan.job_dir}/secrets.env", render_secrets(task), 0o600)
        script_path = f"{plan.job_dir}/sbatch.sh"
        slurm.transport.write_file(script_path, prepared.script, 0o700)
    except (StagingError, TransportError, OSError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"staging failed: {exc}")
        _remove_partial_snapshot(slurm.transport, plan.job_dir)
        raise ActionError(
            f"staging failed: {exc}. Nothing was submitted; fix it and launch again."
        ) from None
    job.detail = "submitting"
    store.save(job)
    try:
        job_id = slurm.submit(script_path)
    except CommandTimeout as exc:
        # sbatch did not answer in time: slurmctld may still have taken the job. Submitting
        # again could run it twice, so look for it by its (unique) name first.
        job_id = _find_submission(session, job.name)
        if job_id is None:
            job.terminal = True
            store.set_state(job, State.FAILED.value, f"submission failed: {exc}")
            raise ActionError(
                f"Slurm did not answer the submission ({exc}), and no job named {job.name} is "
                "in its queue; launch again"
            ) from None
    except (SlurmError, TransportError) as exc:
        job.terminal = True
        store.set_state(job, State.FAILED.value, f"submission failed: {exc}")
        raise ActionError(f"Slurm refused the job: {exc}") from None
    job.slurm_job_id = job_id
    job.submitted_at = time.time()
    with store.transaction():
        store.save(job)
        store.set_state(job, State.PENDING.value, "submitted")
    from konduktor_slurm.service.notify import run_due

    run_due(store, [job])  # event_callback: CREATED, then PENDING
    return job


# A submission whose answer was lost may take slurmctld a moment to show: look this often.
FIND_SUBMISSION_LOOKS = 3
FIND_SUBMISSION_PAUSE = 2.0


def _find_submission(session: Session, name: str) -> str | None:
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    slurm = session.slurm
    for look in range(FIND_SUBMISSION_LOOKS):
        if look:
            time.sleep(FIND_SUBMISSION_PAUSE)
        try:
            job_id = slurm.find_by_name(name, slurm.transport.user)
        except (SlurmError, TransportError):
            continue
        if job_id is not None:
            return job_id
    return None


def _remove_partial_snapshot(transport: Transport, job_dir: str) -> None:
    """A snapshot that failed half way (a full disk, a dropped connection) is removed, so it
    neither fills the disk further nor serves as the next launch's --link-dest base. Best
    effort: over a lost connection there is nothing more to do here."""
    from konduktor_slurm.transport import TransportError

    with contextlib.suppress(TransportError, OSError):
        transport.run(["rm", "-rf", "--", job_dir])
