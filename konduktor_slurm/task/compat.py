"""What konduktor-slurm does with each Konduktor and SkyPilot field that has no Slurm meaning.

Data only: the schema accepts the ignored fields (``IGNORED``), validation warns once per field
with the reason given here, and refuses the features in ``REFUSED`` naming what to do instead.
The README's compatibility table is checked against these tables by a unit test, so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from konduktor_slurm.task.source import Loc


class Ignored(NamedTuple):
    path: Loc
    origin: str  # "Konduktor", "SkyPilot" or "Konduktor, SkyPilot"
    why: str


_BOTH = "Konduktor, SkyPilot"
_NO_CLOUD = "a Slurm job runs on this cluster; there is no cloud, region or zone to choose"

# Accepted, with one warning line each: "<file>:<line>: <field> is ignored on Slurm: <why>".
IGNORED: Final[tuple[Ignored, ...]] = (
    Ignored(("resources", "cloud"), _BOTH, _NO_CLOUD),
    Ignored(("resources", "infra"), "SkyPilot", _NO_CLOUD),
    Ignored(("resources", "region"), "SkyPilot", _NO_CLOUD),
    Ignored(("resources", "zone"), "SkyPilot", _NO_CLOUD),
    Ignored(
        ("resources", "use_spot"),
        "SkyPilot",
        "Slurm has no spot instances; preemptible work goes to a preemptible partition "
        "(slurm.partition)",
    ),
    Ignored(
        ("resources", "spot_recovery"),
        "SkyPilot",
        "recovery strategies pick clouds and regions; a preempted Slurm job is requeued in place",
    ),
    Ignored(
        ("resources", "instance_type"),
        "SkyPilot",
        "the partition decides the kind of node; use slurm.partition or slurm.constraint",
    ),
    Ignored(("resources", "disk_size"), _BOTH, "nodes have the disks the cluster gives them"),
    Ignored(("resources", "disk_tier"), "SkyPilot", "nodes have the disks the cluster gives them"),
    Ignored(
        ("resources", "network_tier"),
        "SkyPilot",
        "the interconnect is the cluster's; ask for it with slurm.constraint if nodes differ",
    ),
    Ignored(
        ("resources", "ports"),
        "SkyPilot",
        "no ports are opened on Slurm nodes; reach a port through the login node (ssh -L)",
    ),
    Ignored(
        ("resources", "autostop"),
        "SkyPilot",
        "a Slurm job ends with its run; there is no cluster left to stop",
    ),
    # `sky utils convert-slurm` writes an sbatch script's --time here (with wait_for: none).
    Ignored(
        ("autostop",), "SkyPilot", "a Slurm job ends with its run; there is no cluster left to stop"
    ),
    Ignored(
        ("resources", "labels"),
        _BOTH,
        "Slurm jobs have no labels (labels.maxRunDurationSeconds becomes the time limit)",
    ),
    Ignored(
        ("resources", "image_id"),
        _BOTH,
        "jobs run on the nodes' own system, no container image is pulled; install what the "
        "job needs in setup",
    ),
    Ignored(
        ("resources", "accelerator_args"),
        "SkyPilot",
        "accelerator arguments configure cloud TPUs",
    ),
    Ignored(
        ("resources", "_cluster_config_overrides"),
        "Konduktor",
        "these override Kubernetes objects",
    ),
    Ignored(("experimental",), "Konduktor", "Konduktor's config overrides are Kubernetes settings"),
    Ignored(("inputs",), _BOTH, "input size hints feed a cloud cost optimizer"),
    Ignored(("outputs",), _BOTH, "output size hints feed a cloud cost optimizer"),
)

IGNORED_BY_PATH: Final[dict[Loc, Ignored]] = {entry.path: entry for entry in IGNORED}

# Refused, naming the feature and what to do instead.
REFUSED: Final[dict[Loc, str]] = {
    ("service",): (
        "a SkyServe service is a long-running server with replicas, not a batch job; "
        "konduktor-slurm runs batch jobs: start the server in `run` (with slurm.time_limit)"
    ),
    ("serving",): (
        "Konduktor serving deploys a model server on Kubernetes, not a batch job; "
        "konduktor-slurm runs batch jobs: start the server in `run` (with slurm.time_limit)"
    ),
    ("volumes",): (
        "cloud and Kubernetes volumes are not available on Slurm: use a path on the "
        "cluster's shared filesystem in run, or file_mounts for local files"
    ),
    ("resources", "any_of"): (
        "candidate resources let a cloud optimizer choose; a Slurm job asks for one set: "
        "keep one (or launch one task per alternative)"
    ),
    ("resources", "ordered"): (
        "ordered candidate resources let a cloud optimizer fail over; a Slurm job asks for "
        "one set: keep one (or launch one task per alternative)"
    ),
}

# SkyPilot's own Slurm settings in a task: `resources.infra: slurm/<cluster>/<partition>` picks
# the partition and `config.slurm.sbatch_options` adds #SBATCH lines. SkyPilot sets these sbatch
# options itself and drops them from sbatch_options with a warning; konduktor-slurm does the
# same (so such a file runs as it does under SkyPilot), saying where each is set instead.
SKY_PROTECTED_SBATCH: Final[dict[str, str]] = {
    "job-name": "the job is named from `name`",
    "output": "konduktor writes the logs that `konduktor logs` reads",
    "error": "konduktor writes the logs that `konduktor logs` reads",
    "nodes": "set num_nodes",
    "wait-all-nodes": "konduktor starts the job's nodes itself",
    "no-requeue": "to keep Slurm from requeueing the job, write it in slurm.sbatch_options",
    "cpus-per-task": "set resources.cpus",
    "mem": "set resources.memory",
    "gres": "set resources.accelerators",
    "partition": "name the partition in resources.infra: slurm/<cluster>/<partition>",
    "signal": "a signal before the time limit is resources.job_config.checkpoint_signal",
}
SKY_CONFIG_WHY: Final = "SkyPilot's per-task settings for other infrastructure"
SKY_SLURM_CONFIG_WHY: Final = (
    "it configures SkyPilot's own Slurm provisioning; konduktor-slurm reads "
    "config.slurm.sbatch_options"
)
# SkyPilot's autostop with `wait_for: none` stops the cluster idle_minutes on, running or not.
SKY_AUTOSTOP_LIMIT: Final = (
    "with wait_for: none is read as the job's time limit, {minutes} min (SkyPilot stops the "
    "cluster that long on, its job running or not)"
)
SKY_AUTOSTOP_OVERRIDDEN: Final = (
    "is ignored on Slurm: the job's time limit is set in {where}, and a Slurm job ends with its run"
)
SKY_CLUSTER_WHY: Final = (
    "konduktor submits to the cluster it is set up for (this machine's Slurm, or config.yaml's "
    "ssh.host), whatever its name"
)
CLOUD_STORAGE_SCHEMES: Final = (
    "s3://",
    "gs://",
    "gcs://",
    "r2://",
    "cos://",
    "oci://",
    "az://",
    "azure://",
    "https://",
    "http://",
    "hf://",
    "nebius://",
)
CLOUD_STORAGE_MESSAGE: Final = (
    "cloud storage mounts are not supported on Slurm: copy the data to the cluster's "
    "filesystem and mount that local path, or download it in setup"
)
GIT_WORKDIR_MESSAGE: Final = (
    "a workdir from a git repository is not supported on Slurm: give a local directory, "
    "or `git clone` in setup"
)
TPU_MESSAGE: Final = (
    "TPU accelerators exist only on Google Cloud; a Slurm cluster offers its GPUs "
    "(see `konduktor check`)"
)
ALTERNATIVES_MESSAGE: Final = (
    "accelerator alternatives ({names}) let a cloud optimizer choose; a Slurm job asks for one "
    "GPU type: keep one"
)
COMPLETIONS_MESSAGE: Final = (
    "completions: {count} runs the task {count} times in Konduktor; a konduktor-slurm launch "
    "runs it once (1): launch it {count} times instead"
)
# SkyPilot's job_recovery: only the number of restarts has a Slurm meaning.
JOB_RECOVERY_WHY: Final = (
    "recovery strategies pick clouds and regions; a preempted Slurm job is requeued in place "
    "(max_restarts_on_errors becomes max_restarts)"
)
# Konduktor's labels: this one has a meaning on Slurm.
MAX_RUN_DURATION_LABEL: Final = "maxRunDurationSeconds"
