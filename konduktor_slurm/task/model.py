"""The validated task: immutable records that the rest of konduktor reads. No I/O, no parsing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# How a task checkpoints lives outside this package: the job store reads it, and
# `konduktor status` must not import the task package.
from konduktor_slurm.checkpoint import Checkpoint


@dataclass(frozen=True)
class Accelerator:
    """An accelerator request of a task (``H100:8``)."""

    name: str
    count: int

    def gres_type(self, gres_map: Mapping[str, str] | None = None) -> str:
        """The Slurm GRES type for this accelerator (``gpu:<type>:<count>``).

        Sites name GRES types freely, so a configured map wins (exact name first, then
        case-insensitive); without one the lower-cased model name is the usual convention.
        """
        if gres_map:
            if self.name in gres_map:
                return gres_map[self.name]
            wanted = self.name.lower()
            for key, value in gres_map.items():
                if key.lower() == wanted:
                    return value
        return self.name.lower()

    def __str__(self) -> str:
        return f"{self.name}:{self.count}"


@dataclass(frozen=True)
class Resources:
    """What each node of a task asks for, and how its runs restart and checkpoint."""

    cpus: int | None = None
    memory_gib: float | None = None
    accelerator: Accelerator | None = None
    max_restarts: int = 0
    # None: the task does not say how it checkpoints (no signal, no grace period).
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True)
class SlurmOptions:
    """A task's Slurm settings: partition, account, qos, time limit, constraint, sbatch options."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    constraint: str | None = None
    # (option name without leading dashes, value or None for a flag), in the order written.
    sbatch_options: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Task:
    """A validated task, as rendering and launch use it."""

    name: str
    # None: nothing to run (a setup-only or empty task runs and ends COMPLETED).
    run: str | None = None
    setup: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    # SkyPilot's `secrets`: like envs on the nodes, but never shown (not in --dryrun, repr,
    # logs or the sbatch script; they travel in a 0600 file of their own).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    workdir: Path | None = None
    # remote destination (as written, $VARs filled in) -> absolute local source path
    file_mounts: dict[str, Path] = field(default_factory=dict)
    num_nodes: int = 1
    resources: Resources = field(default_factory=Resources)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    # A command run on the submitting side at each state change of the job.
    event_callback: str | None = None
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def resources_summary(self) -> str:
        """Konduktor-style one-liner, e.g. ``2x(8CPU, 32GiMEM, H100:8)``; ``1x(-)`` if unset."""
        res = self.resources
        parts: list[str] = []
        if res.cpus is not None:
            parts.append(f"{res.cpus}CPU")
        if res.memory_gib is not None:
            parts.append(f"{format_number(res.memory_gib)}GiMEM")
        if res.accelerator is not None:
            parts.append(str(res.accelerator))
        return f"{self.num_nodes}x({', '.join(parts) or '-'})"


@dataclass
class TaskOverrides:
    """Command-line overrides, applied on top of the YAML before validation.

    Values are taken as typed on the command line (strings are fine for numbers). Konduktor's
    flags that mean nothing on Slurm (``--cloud``, ``--image-id``, ``--disk-size``) are
    applied like their YAML fields, so they get the same warning; so are SkyPilot's
    (``--region``, ``--use-spot``, ``-i``...), and its ``--infra``, which picks a partition
    when it names one (``slurm/<cluster>/<partition>``).
    """

    name: str | None = None
    num_nodes: int | str | None = None
    cpus: int | str | None = None
    memory: float | str | None = None
    gpus: str | None = None  # like "H100:8"
    envs: list[str] = field(default_factory=list)  # "K=V", or "K" to take K from os.environ
    secrets: list[str] = field(default_factory=list)  # like envs, for `secrets:`
    env_file: Path | None = None  # dotenv file: KEY=VALUE lines, '#' comments
    workdir: str | None = None  # relative to the current directory
    max_restarts: int | str | None = None
    completions: int | str | None = None
    image_id: str | None = None
    disk_size: int | str | None = None
    cloud: str | None = None
    infra: str | None = None  # SkyPilot's: slurm/<cluster>/<partition> picks the partition
    # SkyPilot's `sky launch` flags for its resources fields, applied like those fields.
    region: str | None = None
    zone: str | None = None
    use_spot: bool | None = None
    instance_type: str | None = None
    disk_tier: str | None = None
    network_tier: str | None = None
    ports: list[str] = field(default_factory=list)
    # SkyPilot's -i/--idle-minutes-to-autostop, --down and --wait-for: resources.autostop.
    idle_minutes: int | str | None = None
    down: bool = False
    wait_for: str | None = None
    no_setup: bool = False  # SkyPilot's --no-setup: the task's setup is not run


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
