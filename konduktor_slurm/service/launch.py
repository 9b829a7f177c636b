"""Launch: a validated task in, a submitted Slurm job (and its store record) out.

``prepare`` decides everything that can be decided before touching the cluster's files
(the job's name and directory, and that its sbatch script can be rendered); ``submit`` then
stages the snapshot (rendering the script meanwhile), writes the script and the secrets,
calls sbatch and records the job. Nothing here
prints or prompts: progress goes to a staging ``Reporter`` the caller chooses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets as random_tokens
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import (
    ActionError,
    InputError,
    InterruptedByUser,
    UnreachableError,
)

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
    """The task in ``path``, or InputError listing every issue (file:line: field: what).
    A task validated before with the same inputs comes from the task cache in
    ``$KONDUKTOR_HOME`` (task/cache.py)."""
    from konduktor_slurm.config import konduktor_home
    from konduktor_slurm.task import TaskError, load_task

    try:
        return load_task(path, overrides, cache_home=konduktor_home())
    except TaskError as exc:
        raise InputError(f"{path} is not a valid task; nothing was submitted.\n{exc}") from None


# `launch ENTRYPOINT...` read as SkyPilot reads it (`sky launch 'nvidia-smi'`): a task file, or
# a command that becomes the run of a task of its own, named as SkyPilot names it (sky-cmd).
YAML_SUFFIXES = (".yaml", ".yml")
COMMAND_TASK_NAME = "cmd"


def names_task_file(words: Sequence[str]) -> bool:
    """Whether ``launch``'s words name a task file rather than a command: one word naming
    something that exists (a directory or a FIFO is then refused as a task file, not run),
    or ending in .yaml/.yml, so that a mistyped ``tain.yaml`` is "not found" here rather
    than a command failing on the nodes. Anything else is a command."""
    if len(words) != 1:
        return False
    word = words[0]
    return word.lower().endswith(YAML_SUFFIXES) or os.path.lexists(word)


def load_entrypoint(words: Sequence[str], overrides: TaskOverrides | None = None) -> Task:
    """The task ``launch``'s words give: the task file they name, or a task running them
    as one command (joined with spaces, as SkyPilot joins them)."""
    if len(words) > 1 and words[0].lower().endswith(YAML_SUFFIXES):
        raise InputError(
            f"{words[0]} is a task file, and a launch takes one task: the words after it "
            f"({' '.join(words[1:])}) are neither a task nor its arguments (set values with "
            "--env NAME=VALUE); nothing was submitted."
        )
    if not names_task_file(words):
        return load_command(" ".join(words), overrides)
    path = Path(words[0])
    try:
        return load(path, overrides)
    except InputError as exc:
        if path.suffix.lower() in YAML_SUFFIXES or _holds_a_mapping(path):
            raise
        # `launch train.py`: SkyPilot would run a script named alone as a command. Here one
        # existing file is always a task file, so say how to run it instead.
        runner = "python" if path.suffix == ".py" else "bash"
        raise InputError(
            f"{exc}\n(a task file is YAML; to run {path.name} as a command, give the command "
            f"whole: konduktor launch --workdir . '{runner} {words[0]}')"
        ) from None


def _holds_a_mapping(path: Path) -> bool:
    """Whether the file is YAML of a mapping: a task file with mistakes, not a script."""
    import yaml

    from konduktor_slurm.task.source import MAX_FILE_BYTES

    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return True  # a directory, a FIFO, a huge file: its error says it all
        return isinstance(yaml.safe_load(path.read_bytes()), dict)
    except OSError:
        return True  # unreadable: its error says so
    except yaml.YAMLError:  # not YAML (or not UTF-8): a script or a program
        return False


def load_command(command: str, overrides: TaskOverrides | None = None) -> Task:
    """A task whose ``run`` is ``command``: run on every node as a task's run is, in the
    job's directory (no workdir unless --workdir gives one), named ``cmd`` unless --name
    names it. InputError for a blank command or bad overrides."""
    from konduktor_slurm.task import TaskError, task_from_data

    if not command.strip():
        raise InputError("give a task file or a command to run; nothing was submitted.")
    data = {"name": COMMAND_TASK_NAME, "run": command}
    try:
        return task_from_data(data, "the command", overrides=overrides)
    except TaskError as exc:
        raise InputError(f"the command cannot be launched; nothing was submitted.\n{exc}") from None


# A grid's values: (NAME, value) pairs per variant, in the order of the combinations.
Variant = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Grid:
    """``--grid LR=1e-3,3e-4 --grid SEED=0,1,2``: every combination is one variant."""

    names: tuple[str, ...]
    variants: tuple[Variant, ...]


def parse_grid(specs: list[str]) -> Grid:
    """``NAME=v1,v2,...`` specs -> the grid of every combination (InputError when bad)."""
    import itertools

    from konduktor_slurm.task import rules

    axes: list[tuple[str, list[str]]] = []
    problems: list[str] = []
    for spec in specs:
        name, eq, values = spec.partition("=")
        if not eq or not values:
            problems.append(f"--grid {spec!r}: expected NAME=VALUE[,VALUE...], like LR=1e-3,3e-4")
            continue
        if not rules.ENV_NAME_RE.fullmatch(name):
            problems.append(f"--grid {name!r}: {rules.bad_env_name(name, '')}")
            continue
        why = rules.RESERVED_ENV_NAMES.get(name) or next(
            (w for prefix, w in rules.RESERVED_ENV_PREFIXES.items() if name.startswith(prefix)),
            None,
        )
        if why is not None:
            problems.append(f"--grid {name}: {name} is reserved: {why}")
            continue
        if any(name == existing for existing, _ in axes):
            problems.append(f"--grid {name} is given twice; give all its values in one --grid")
            continue
        parts = values.split(",")
        bad = [part for part in parts if rules.CONTROL_RE.search(part)]
        if bad:
            problems.append(f"--grid {name}: a value contains control characters: {bad[0]!r}")
            continue
        # A stray comma (LR=1e-3,,3e-4 or a trailing one) would launch a variant with the
        # variable empty, and a value written twice the same variant twice: typos, not sweeps.
        if "" in parts:
            where = "last" if parts[-1] == "" else f"number {parts.index('') + 1}"
            problems.append(
                f"--grid {spec!r}: value {where} of {len(parts)} is empty (a stray comma?); "
                "every value needs text"
            )
            continue
        again = _first_repeated(parts)
        if again is not None:
            problems.append(
                f"--grid {name}: {again!r} is given twice; every variant must differ "
                "(to run a setting more than once, add an axis: --grid REPEAT=0,1,2)"
            )
            continue
        try:
            values.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"--grid {name}: a value is not valid UTF-8 text")
            continue
        axes.append((name, parts))
    if problems:
        raise InputError("\n".join(problems))
    names = tuple(name for name, _ in axes)
    variants = tuple(
        tuple(zip(names, combination, strict=True))
        for combination in itertools.product(*(values for _, values in axes))
    )
    if len(variants) > MAX_GRID:
        raise InputError(f"--grid makes {len(variants)} variants; at most {MAX_GRID} per launch")
    return Grid(names, variants)


def _first_repeated(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


# More variants than this in one launch is a mistake (a typo in a range), not a sweep.
MAX_GRID = 100_000

# SkyPilot's `sky jobs launch --num-jobs N` gives each of N copies of a task these.
JOB_RANK_ENV, NUM_JOBS_ENV = "SKYPILOT_JOB_RANK", "SKYPILOT_NUM_JOBS"


def num_jobs_grid(count: int) -> Grid:
    """SkyPilot's ``--num-jobs N``: N variants of the task, variant i with
    ``SKYPILOT_JOB_RANK=i`` and every one with ``SKYPILOT_NUM_JOBS=N``, as SkyPilot sets
    them (data-parallel work takes its slice by them). One sweep: one staging, one array."""
    if not 1 <= count <= MAX_GRID:
        raise InputError(f"--num-jobs {count}: expected 1 to {MAX_GRID}")
    total = (NUM_JOBS_ENV, str(count))
    return Grid(
        (JOB_RANK_ENV, NUM_JOBS_ENV),
        tuple(((JOB_RANK_ENV, str(rank)), total) for rank in range(count)),
    )


@dataclass(frozen=True)
class Batch:
    """One sbatch: its plan, script, and the store records of what it runs (one job, or the
    elements of one job array)."""

    plan: JobPlan
    task: Task
    names: tuple[str, ...]  # the job's name, or the array elements' names in index order
    log_paths: tuple[str, ...]
    job_dirs: tuple[str, ...]

    @functools.cached_property
    def script(self) -> str:
        """The sbatch script, rendered on first use: ``submit`` renders it while rsync
        copies the files (jinja's import and template compilation are ~50 ms of a launch).
        ``prepare`` has already checked everything that could make rendering fail."""
        from konduktor_slurm.render import render_sbatch

        return render_sbatch(self.task, self.plan)


@dataclass(frozen=True)
class Prepared:
    """A task validated and split into its submissions (one, or a sweep's arrays)."""

    task: Task
    batches: tuple[Batch, ...]
    grid: Grid | None = None

    @property
    def plan(self) -> JobPlan:
        return self.batches[0].plan

    @property
    def script(self) -> str:
        return self.batches[0].script

    @property
    def job_name(self) -> str:
        return self.plan.job_name

    @property
    def names(self) -> list[str]:
        return [name for batch in self.batches for name in batch.names]


def prepare(
    session: Session, task: Task, taken: frozenset[str] = frozenset(), grid: Grid | None = None
) -> Prepared:
    """Name the job, plan where its files go and render its sbatch script(s) (pure but for a
    remote home directory lookup over SSH, and the cluster's MaxArraySize for a grid).
    ``taken``: names known to be in use. A grid is one job array per MaxArraySize variants,
    all over one staging: variant ``e`` runs as ``<job>-<e>``."""
    from konduktor_slurm.render import (
        ArrayPlan,
        JobPlan,
        RenderError,
        StagedMount,
        sbatch_directives,
    )

    task = session.config.apply_slurm_defaults(task)  # config.yaml partition/account/qos
    job_name = _free_name(session, task.name, taken)
    job_dir = f"{session.config.resolve_jobs_dir(session.slurm.transport)}/{job_name}"
    base = JobPlan(
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
        node_retention=_whole_seconds(session.config.retention),
    )
    plans: list[tuple[JobPlan, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = []
    if grid is None:
        plans.append((base, (job_name,), (base.log_path,), (job_dir,)))
    else:
        size = session.slurm.elements_per_array()
        for batch, offset in enumerate(range(0, len(grid.variants), size)):
            variants = grid.variants[offset : offset + size]
            logs_dir = f"{job_dir}/logs/{batch}"
            plan = dataclasses.replace(base, array=ArrayPlan(variants, offset, logs_dir))
            numbers = range(offset, offset + len(variants))
            plans.append(
                (
                    plan,
                    tuple(f"{job_name}-{number}" for number in numbers),
                    tuple(f"{logs_dir}/{index}.log" for index in range(len(variants))),
                    tuple(f"{job_dir}/elements/{number}" for number in numbers),
                )
            )
    try:
        # What can make a script unrenderable (a directive value sbatch would split) is
        # decided now, before anything is claimed or staged; the text itself is rendered
        # later (Batch.script).
        for plan, *_ in plans:
            sbatch_directives(task, plan)
    except RenderError as exc:
        source = task.source or "the task"
        raise InputError(f"{source}: {exc}; nothing was submitted.") from None
    batches = tuple(Batch(plan, task, names, logs, dirs) for plan, names, logs, dirs in plans)
    return Prepared(task, batches, grid)


def _what_the_cluster_has(session: Session, task: Task, batch: Batch) -> str:
    """Slurm's "Requested node configuration is not available" names nothing: say what the
    job asks of each node and what the partitions have (one sinfo, only on this failure;
    nothing more when sinfo fails too)."""
    from konduktor_slurm.render import sbatch_directives
    from konduktor_slurm.slurm import SlurmError
    from konduktor_slurm.transport import TransportError

    try:
        partitions = session.slurm.partitions()
    except (SlurmError, TransportError):
        return ""
    asked = [f"--nodes={task.num_nodes}"]
    for directive in sbatch_directives(task, batch.plan):
        text = directive.removeprefix("#SBATCH ")
        if text.partition("=")[0] in ("--gres", "--cpus-per-task", "--mem", "--partition",
                                      "--constraint"):  # fmt: skip
            asked.append(text)
    have = "; ".join(
        f"{p.name}{' (default)' if p.default else ''}: {p.nodes} node{'s' if p.nodes != 1 else ''}"
        f" with {p.gres or 'no GPUs'}"
        for p in partitions
    )
    return (
        f"\nThe job asks {' '.join(asked)} (GPUs, CPUs and memory per node). "
        f"The partitions here: {have or 'none'}."
    )


def _whole_seconds(retention: float | None) -> int | None:
    """The retention as the node script's arithmetic takes it (whole seconds, rounded up)."""
    import math

    return None if retention is None else math.ceil(retention)


def _free_name(session: Session, task_name: str, taken: frozenset[str]) -> str:
    known = taken | set(session.store.names())
    for _ in range(NAME_DRAWS):
        name = f"{task_name}-{random_tokens.token_hex(2)}"
        if name not in known:
            return name
    # 65,536 names per task: after 20 taken draws, widen the suffix rather than fail.
    return f"{task_name}-{random_tokens.token_hex(4)}"


def claim(session: Session, prepared: Prepared) -> tuple[Prepared, list[JobRecord]]:
    """Make the job's names and directory ours, atomically: the store rows (a name is the
    primary key; a grid's elements are added in one transaction) and then the job directory
    (created without -p, so an existing one fails). A name another launch took in between is
    given back and drawn again."""
    from konduktor_slurm.transport import TransportError

    transport = session.slurm.transport
    jobs_dir = prepared.plan.job_dir.rsplit("/", 1)[0]
    try:
        transport.make_dirs(jobs_dir, 0o700)
    except (TransportError, OSError) as exc:
        raise ActionError(f"cannot create the jobs directory {jobs_dir}: {exc}") from None
    taken: set[str] = set()
    for _ in range(NAME_DRAWS):
        records = _new_records(session, prepared)
        try:
            with session.store.transaction():
                for job in records:
                    session.store.add(job)
        except sqlite3.IntegrityError:
            taken.add(prepared.job_name)
            prepared = prepare(session, prepared.task, frozenset(taken), prepared.grid)
            continue
        made = transport.run(["mkdir", "-m", "700", "--", prepared.plan.job_dir])
        if made.ok:
            return prepared, records
        with session.store.transaction():  # the directory belongs to another launch
            for job in records:
                session.store.remove(job.name)
        taken.add(prepared.job_name)
        prepared = prepare(session, prepared.task, frozenset(taken), prepared.grid)
    raise ActionError(f"could not find a free job name for {prepared.task.name}; launch again")


def _new_records(session: Session, prepared: Prepared) -> list[JobRecord]:
    from konduktor_slurm.launcher import this_launcher
    from konduktor_slurm.lifecycle import State
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.tracker import LAUNCHER_KEY

    task = prepared.task
    accelerator = task.resources.accelerator
    user = session.slurm.transport.user  # over SSH: the remote account the job runs as
    now = time.time()
    # Should this process end before it records how the launch went, a refresh that finds
    # it gone settles the job (tracker.settle_orphans) instead of leaving it CREATED.
    launcher = this_launcher()
    records = []
    for number, batch in enumerate(prepared.batches):
        for index, name in enumerate(batch.names):
            extra: dict = {LAUNCHER_KEY: launcher}
            if prepared.grid is not None:
                variant = batch.plan.array.elements[index] if batch.plan.array else ()
                extra |= {"sweep": prepared.job_name, "grid": dict(variant)}
                # Which array and element: how a launch that ended while submitting is
                # found in Slurm (tracker.settle_orphans).
                extra |= {"array_batch": number, "array_index": index}
            records.append(
                JobRecord(
                    name=name,
                    task_name=task.name,
                    user=user,
                    resources=task.resources_summary(),
                    num_nodes=task.num_nodes,
                    gpus_per_node=accelerator.count if accelerator else 0,
                    job_dir=batch.job_dirs[index],
                    log_path=batch.log_paths[index],
                    max_restarts=task.resources.max_restarts,
                    checkpoint=task.resources.checkpoint,
                    event_callback=task.event_callback,
                    state=State.CREATED.value,
                    detail="staging workdir",
                    created_at=now,
                    extra=extra,
                )
            )
    return records


def submit(session: Session, prepared: Prepared, reporter: Reporter | None = None) -> JobRecord:
    """Claim a name, stage the files, submit the job, and record it; raises ActionError when
    staging or sbatch fails (the job is then recorded FAILED with why, and nothing runs).
    The job's name may differ from ``prepared.job_name`` if another launch took that one."""
    return submit_all(session, prepared, reporter)[0]


def submit_all(
    session: Session, prepared: Prepared, reporter: Reporter | None = None
) -> list[JobRecord]:
    """``submit`` for a grid too: one staging, one sbatch per job array, one record per
    element (in variant order)."""
    from konduktor_slurm.lifecycle import State
    from konduktor_slurm.render import render_secrets
    from konduktor_slurm.slurm import AuthenticationFailed, NodesCannotFit, SlurmError
    from konduktor_slurm.staging import StagingError, stage
    from konduktor_slurm.tracker import LAUNCHER_KEY
    from konduktor_slurm.transport import CommandTimeout, TransportError

    try:
        prepared, records = claim(session, prepared)
    except KeyboardInterrupt:
        # A record claim left behind keeps this process as its launcher: the next status
        # fails it once this process has ended (tracker.settle_orphans).
        raise InterruptedByUser("interrupted before staging; nothing was submitted") from None
    task, plan, store, slurm = prepared.task, prepared.plan, session.store, session.slurm
    by_name = {job.name: job for job in records}

    def fail_all(jobs: list[JobRecord], detail: str) -> None:
        with store.transaction():
            for job in jobs:
                job.terminal = True
                job.extra.pop(LAUNCHER_KEY, None)
                store.set_state(job, State.FAILED.value, detail)

    script_paths = []
    # The scripts render on another thread while rsync (another process) copies: the thread
    # takes the GIL only while this one waits for rsync's output.
    try:
        rendered = _render_ahead(prepared.batches)
        stage(
            slurm.transport,
            plan.job_dir,
            task.workdir,
            task.file_mounts,
            task_name=task.name,
            reporter=reporter,
            keep_out=(str(session.config.home),),
        )
        if task.secrets:
            slurm.transport.write_file(f"{plan.job_dir}/secrets.env", render_secrets(task), 0o600)
        try:
            rendered()
        except Exception as exc:  # a bug: prepare checked all a script needs
            fail_all(records, f"rendering the sbatch script failed: {exc}")
            _remove_partial_snapshot(slurm.transport, plan.job_dir)
            # ActionError, not OSError & co.: not the staging failure handled below.
            raise ActionError(f"rendering the sbatch script failed: {exc}") from exc
        for number, batch in enumerate(prepared.batches):
            single = len(prepared.batches) == 1
            script_path = f"{plan.job_dir}/sbatch{'' if single else f'-{number}'}.sh"
            slurm.transport.write_file(script_path, batch.script, 0o700)
            if batch.plan.array is not None:  # Slurm does not create an output's directory
                slurm.transport.make_dirs(batch.plan.array.logs_dir, 0o700)
            script_paths.append(script_path)
    except (StagingError, TransportError, OSError) as exc:
        fail_all(records, f"staging failed: {exc}")
        _remove_partial_snapshot(slurm.transport, plan.job_dir)
        raise ActionError(
            f"staging failed: {exc}. Nothing was submitted; fix it and launch again."
        ) from None
    except KeyboardInterrupt:
        fail_all(records, "launch interrupted while staging; nothing was submitted")
        _remove_partial_snapshot(slurm.transport, plan.job_dir)
        raise InterruptedByUser("interrupted while staging; nothing was submitted") from None
    with store.transaction():
        for job in records:
            job.detail = "submitting"
            store.save(job)
    for number, (batch, script_path) in enumerate(zip(prepared.batches, script_paths, strict=True)):
        jobs = [by_name[name] for name in batch.names]
        try:
            job_id = slurm.submit(script_path)
        except KeyboardInterrupt:
            # The records stay "submitting", with this process as their launcher: the next
            # status, once this process has ended, asks Slurm for them by name.
            raise InterruptedByUser(
                "interrupted while submitting; Slurm may have taken the job: `konduktor "
                "status` says what became of it"
            ) from None
        except CommandTimeout as exc:
            # sbatch did not answer in time: slurmctld may still have taken the job.
            # Submitting again could run it twice, so look for it by its (unique) name.
            job_id = _find_submission(session, batch.plan.job_name)
            if job_id is None:
                rest = [by_name[name] for b in prepared.batches[number:] for name in b.names]
                fail_all(rest, f"submission failed: {exc}")
                raise ActionError(
                    f"Slurm did not answer the submission ({exc}), and no job named "
                    f"{batch.plan.job_name} is in its queue; launch again"
                ) from None
        except (SlurmError, TransportError) as exc:
            rest = [by_name[name] for b in prepared.batches[number:] for name in b.names]
            fail_all(rest, f"submission failed: {exc}")
            done = f" ({number} of {len(prepared.batches)} arrays were submitted)" if number else ""
            if isinstance(exc, AuthenticationFailed):  # not the job's fault: this machine's
                more = " more" if number else ""
                raise UnreachableError(
                    f"could not submit to Slurm{done}: {exc}. Nothing{more} was submitted"
                ) from None
            hint = (
                _what_the_cluster_has(session, task, batch)
                if isinstance(exc, NodesCannotFit)
                else ""
            )
            raise ActionError(f"Slurm refused the job{done}: {exc}{hint}") from None
        now = time.time()
        with store.transaction():
            for index, job in enumerate(jobs):
                # An array element is "<array id>_<index>": what squeue, sacct, scontrol and
                # scancel take for it.
                job.slurm_job_id = job_id if batch.plan.array is None else f"{job_id}_{index}"
                job.submitted_at = now
                job.extra.pop(LAUNCHER_KEY, None)
                store.save(job)
                store.set_state(job, State.PENDING.value, "submitted")
    from konduktor_slurm.service.notify import run_due

    run_due(store, records)  # event_callback: CREATED, then PENDING
    return records


def _render_ahead(batches: tuple[Batch, ...]) -> Callable[[], None]:
    """Start rendering the batches' scripts on a thread; the function returned waits for
    it and raises what rendering raised (the scripts are then in ``Batch.script``)."""
    failed: list[Exception] = []

    def render() -> None:
        try:
            for batch in batches:
                batch.script  # noqa: B018 (the cached_property renders and keeps it)
        except Exception as exc:
            failed.append(exc)

    thread = threading.Thread(target=render, name="konduktor-render", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait


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
            return job_id.partition("_")[0]  # an array's element "889_0": the array is 889
    return None


def _remove_partial_snapshot(transport: Transport, job_dir: str) -> None:
    """A snapshot that failed half way (a full disk, a dropped connection) is removed, so it
    neither fills the disk further nor serves as the next launch's --link-dest base. Best
    effort: over a lost connection there is nothing more to do here."""
    from konduktor_slurm.transport import TransportError

    with contextlib.suppress(TransportError, OSError):
        transport.run(["rm", "-rf", "--", job_dir])
