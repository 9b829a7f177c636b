"""Render a validated task into the sbatch script text. Pure: no I/O beyond reading templates.

Shell safety lives here: every user-supplied value goes through the ``q`` (or ``qpath``)
filter, so it reaches the job verbatim. ``#SBATCH`` lines cannot be quoted reliably, so their
values are checked instead and rejected with a clear error if they contain whitespace.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from konduktor_slurm import __version__
from konduktor_slurm.slurm import konduktor_comment

if TYPE_CHECKING:
    import jinja2

    from konduktor_slurm.task import Task

# A directive value must be one plain token: sbatch splits #SBATCH lines on whitespace.
_DIRECTIVE_VALUE = re.compile(r"^[^\s\x00-\x1f\x7f]*$")


class RenderError(ValueError):
    """The task cannot be expressed as an sbatch script (e.g. a value sbatch would split)."""


@dataclass(frozen=True)
class StagedMount:
    """One file_mount: where its snapshot lives on the cluster and where it must land."""

    destination: str  # as written in the task: absolute or "~/..."
    source: str  # the staged snapshot on the cluster's shared filesystem
    is_dir: bool

    @property
    def parent(self) -> str:
        return self.destination.rstrip("/").rsplit("/", 1)[0] or "/"


@dataclass(frozen=True)
class ArrayPlan:
    """One sbatch of a grid launch: a Slurm job array whose element ``a`` is the grid's
    variant ``offset + a``, with that variant's env values (``elements[a]``). A grid larger
    than the cluster's MaxArraySize is submitted as several arrays, each with its offset."""

    elements: tuple[tuple[tuple[str, str], ...], ...]  # per element: (NAME, value) pairs
    offset: int = 0
    logs_dir: str = ""  # <job dir>/logs/<batch>: Slurm writes element a's output to a.log


@dataclass(frozen=True)
class JobPlan:
    """Where a job's files live on the cluster; decided by the caller, not by the template.

    For a grid launch (``array`` set) ``job_name`` and ``job_dir`` are the sweep's; element
    ``e`` runs as ``<job_name>-<e>`` with its own ``<job_dir>/elements/<e>`` (rank exit files,
    outputs) beside the shared snapshot.
    """

    job_name: str
    job_dir: str
    log_path: str
    workdir: str | None = None
    mounts: tuple[StagedMount, ...] = ()
    gres_map: Mapping[str, str] = field(default_factory=dict)
    # Where each node runs the job: the workdir snapshot is copied to <node_workdir>/<job>.
    node_workdir: str = "~/konduktor_workdir"
    array: ArrayPlan | None = None
    # Seconds after which a finished job's node workdir is removed by the next job a node
    # starts (config.yaml `retention`); None: never.
    node_retention: int | None = None


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


def shell_quote_path(value: object) -> str:
    """Quote a path but keep a leading ``~/`` meaning the job user's home directory."""
    text = str(value)
    if text == "~":
        return '"$HOME"'
    if text.startswith("~/"):
        return '"$HOME"/' + shlex.quote(text[2:])
    return shlex.quote(text)


@functools.cache
def _environment() -> jinja2.Environment:
    # jinja2 costs ~45 ms to import: only launch pays for it, never `konduktor status`.
    # One environment per process: each keeps the templates it compiled (the node script's
    # is rendered for the sbatch script and again on its own).
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("konduktor_slurm", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # shell, not HTML: quoting is done by the filters below
    )
    env.filters["q"] = shell_quote
    env.filters["qpath"] = shell_quote_path
    return env


def _directive(option: str, value: object | None = None) -> str:
    if value is None:
        return f"--{option}"
    text = str(value)
    if not text or not _DIRECTIVE_VALUE.match(text):
        raise RenderError(
            f"--{option}: {text!r} cannot be passed to sbatch (it must be one word without "
            "spaces or control characters)"
        )
    return f"--{option}={text}"


def sbatch_directives(task: Task, plan: JobPlan) -> list[str]:
    """The ``#SBATCH`` options, in a stable order (tests and --dryrun diff nicely)."""
    resources = task.resources
    output = f"{plan.array.logs_dir}/%a.log" if plan.array else plan.log_path
    directives = [
        _directive("job-name", plan.job_name),
        _directive("nodes", task.num_nodes),
        _directive("ntasks-per-node", 1),
        _directive("chdir", plan.job_dir),
        _directive("output", output),
        # Append, so a requeued run (preemption, stop/start, retry) keeps earlier output.
        _directive("open-mode", "append"),
        # Marks the job as konduktor's for `status --all-users` (one squeue for everyone).
        _directive("comment", konduktor_comment(task.resources_summary())),
    ]
    # Requeueable, so `konduktor stop` can release GPUs and preemption can requeue, unless
    # the task decides otherwise through sbatch_options.
    if not any(option in ("requeue", "no-requeue") for option, _ in task.slurm.sbatch_options):
        directives.append(_directive("requeue"))
    if resources.accelerator is not None:
        accelerator = resources.accelerator
        gres_type = accelerator.gres_type(plan.gres_map)
        directives.append(_directive("gres", f"gpu:{gres_type}:{accelerator.count}"))
    if resources.cpus is not None:
        directives.append(_directive("cpus-per-task", resources.cpus))
    if resources.memory_gib is not None:
        directives.append(_directive("mem", f"{round(resources.memory_gib * 1024)}M"))
    slurm = task.slurm
    for option, value in (
        ("partition", slurm.partition),
        ("account", slurm.account),
        ("qos", slurm.qos),
        ("time", slurm.time_limit),
        ("constraint", slurm.constraint),
    ):
        if value is not None:
            directives.append(_directive(option, value))
    checkpoint = resources.checkpoint
    if checkpoint is not None and not any(o == "signal" for o, _ in slurm.sbatch_options):
        # Without "B:": to the job steps (the ranks), the grace period before the time limit.
        directives.append(_directive("signal", f"{checkpoint.signal}@{checkpoint.grace}"))
    directives.extend(_directive(option, value) for option, value in slurm.sbatch_options)
    if plan.array is not None:
        directives.append(_directive("array", f"0-{len(plan.array.elements) - 1}"))
    return directives


def render_node_script(task: Task, plan: JobPlan) -> str:
    return (
        _environment()
        .get_template("node.sh.j2")
        .render(
            envs=task.envs,
            file_mounts=[
                {
                    "destination": mount.destination,
                    "parent": mount.parent,
                    # rsync copies a directory's contents with a trailing slash on the source.
                    "source": mount.source.rstrip("/") + ("/" if mount.is_dir else ""),
                }
                for mount in plan.mounts
            ],
            workdir=plan.workdir,
            node_workdir=plan.node_workdir,
            node_retention=plan.node_retention,
            setup=task.setup,
            run=task.run,
            has_secrets=bool(task.secrets),
            secrets_path=f"{plan.job_dir}/secrets.env",
            array=plan.array,
            checkpoint=task.resources.checkpoint,
        )
    )


def render_secrets(task: Task) -> str:
    """The job's ``secrets.env``: sourced by every node, written 0600 beside the script.

    Secrets never go into the sbatch script (``--dryrun`` prints it, and Slurm keeps a copy),
    only into this file, which only its owner can read.
    """
    return "".join(f"export {name}={shell_quote(value)}\n" for name, value in task.secrets.items())


def render_sbatch(task: Task, plan: JobPlan) -> str:
    """The complete sbatch script for ``task`` as planned by ``plan``."""
    accelerator = task.resources.accelerator
    return (
        _environment()
        .get_template("sbatch.sh.j2")
        .render(
            version=__version__,
            task=task,
            job_name=plan.job_name,
            job_dir=plan.job_dir,
            array=plan.array,
            directives=sbatch_directives(task, plan),
            gpus_per_node=accelerator.count if accelerator else 0,
            accelerator_type=accelerator.name if accelerator else "",
            node_script=render_node_script(task, plan),
            max_attempts=task.resources.max_restarts + 1,
            checkpoint=task.resources.checkpoint,
            comment=konduktor_comment(task.resources_summary()),
        )
    )
