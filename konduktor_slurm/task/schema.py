"""The task schema, as pydantic models.

This module imports pydantic (about 100 ms): only parsing a task imports it, never
``konduktor status``. The package's ``__init__`` stays light.

How to read a type: ``expect(what)`` words any failure of the checks to its left as
"expected <what>, got <value>"; validators to its right run on the accepted value and raise
their own messages (``rules.fail``). ``Text`` lets a text field take a plain number as written
(before the string check). Fields are strict (no '1' for True, no 2.0 for 2) and ``null``
means "not set". A section's docstring says what it is a mapping of (for messages).

Konduktor and SkyPilot fields with no meaning on Slurm are declared ``Ignored`` (accepted;
validation warns with the reason from ``compat``); features that cannot work are declared
``Refused`` (validation names them and what to do instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator as After
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    model_validator,
)
from pydantic import BeforeValidator as Before
from pydantic import PlainValidator as Plain

from konduktor_slurm.task import compat, rules
from konduktor_slurm.task.model import Accelerator
from konduktor_slurm.task.source import as_text

__all__ = ["JobConfig", "ResourcesSection", "SlurmSection", "TaskSchema", "ValidationError"]

# Slurm keeps counts in 32-bit fields; anything beyond is a typo, not a request.
INT_MAX = 2**31 - 1
# Memory: at least 1 MiB (less renders --mem=0M, which Slurm reads as "all of the node's
# memory"); at most 1 PiB per node, far beyond any node, still exact in megabytes.
MEMORY_MIN_GIB = 1 / 1024
MEMORY_MAX_GIB = 2.0**20


def reword(message: Callable[[Any, str], str]) -> Any:
    """Whichever check inside fails, the user reads ``message(value, field name)``."""

    def wrap(value: Any, handler: Callable[[Any], Any], info: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            rules.fail(message(value, info.field_name))

    return WrapValidator(wrap)


def expect(what: str, hint: Callable[[Any, str], str] = lambda value, field: "") -> Any:
    return reword(
        lambda value, field: f"expected {what}, got {rules.describe(value)}{hint(value, field)}"
    )


def must(predicate: Callable[[Any], Any]) -> Any:
    def check(value: Any) -> Any:
        if not predicate(value):
            raise ValueError("rejected")  # reworded by the enclosing expect()/reword()
        return value

    return After(check)


def mapping_of(what: str) -> Any:
    return Before(
        lambda value: value if isinstance(value, dict) else rules.not_a_mapping(what, value)
    )


def refused(message: str) -> Any:
    def refuse(value: Any) -> Any:
        if value is None:
            return None
        rules.fail(message)

    return Annotated[Any, Plain(refuse)]


def _several_commands_hint(value: Any, field_name: str) -> str:
    if isinstance(value, list):
        return f" (for several commands use a block string: '{field_name}: |', one per line)"
    return ""


def _memory_range(value: float) -> float:
    if value < MEMORY_MIN_GIB:
        rules.fail(f"must be at least 1 MiB ({MEMORY_MIN_GIB:.6f} GiB), got {value:g} GiB")
    if value > MEMORY_MAX_GIB:
        rules.fail(f"must be at most {MEMORY_MAX_GIB:g} GiB (1 PiB) per node, got {value:g}")
    return value


def slurm_name(kind: str) -> Any:
    what = f"a Slurm {kind} name (letters, digits, '_', '.', '-')"
    return Annotated[str, must(rules.SLURM_NAME_RE.fullmatch), expect(what), Text]


def count(low: int, what: str) -> Any:
    expected = f"an integer >= {low}" if what == "" else what
    return Annotated[int, Ge(low), Le(INT_MAX), Before(rules.whole_number), expect(expected)]


Text = Before(as_text)
Ignored = Any
Name = Annotated[str, Text, expect("a task name like 'train-llama'"), After(rules.name_rule)]
Script = Annotated[str, expect("a string of shell commands", _several_commands_hint)]
OptionalScript = Annotated[Script, After(rules.script_text)]
EnvName = Annotated[
    str, must(rules.ENV_NAME_RE.fullmatch), reword(rules.bad_env_name), After(rules.not_reserved)
]
EnvValue = Annotated[
    str,
    Before(rules.env_text),
    expect("a string, number or true/false"),
    Before(rules.env_value_given),
    After(rules.utf8_text),
]
Envs = Annotated[dict[EnvName, EnvValue], mapping_of("NAME: value environment variables")]
Secrets = Annotated[dict[EnvName, EnvValue], mapping_of("NAME: value secrets")]
LocalPath = Annotated[str, must(lambda text: text.strip() and "\0" not in text)]
Workdir = Annotated[
    LocalPath,
    expect("a path to a local directory"),
    After(rules.existing_dir),
    Before(rules.workdir_value),
]
MountDestination = Annotated[
    str, must(bool), reword(rules.bad_destination), After(rules.destination)
]
MountSource = Annotated[
    LocalPath,
    expect("a local source path"),
    After(rules.existing_source),
    Before(rules.mount_source_value),
]
FileMounts = Annotated[
    dict[MountDestination, MountSource], mapping_of("remote destination: local source paths")
]
NumNodes = count(1, "")
Cpus = Annotated[
    int,
    Ge(1),
    Le(INT_MAX),
    Before(rules.cpus_value),
    expect("a number of CPUs like 8 or '8+'"),
]
MemoryGiB = Annotated[
    float,
    Gt(0),
    AllowInfNan(False),
    Before(rules.gib),
    expect("a positive amount of memory in GiB like 32, '32+' or '64GB'"),
    After(_memory_range),
]
MaxRestarts = count(0, "")
CheckpointSignal = Annotated[
    str, expect(rules.CHECKPOINT_SIGNAL_EXPECTED), After(rules.checkpoint_signal)
]
CheckpointGrace = Annotated[
    int,
    Ge(1),
    Le(rules.CHECKPOINT_GRACE_MAX),
    Before(rules.whole_number),
    expect(f"a number of seconds from 1 to {rules.CHECKPOINT_GRACE_MAX}"),
]
CheckpointDir = Annotated[
    str, expect("a path on the cluster like '~/ckpt/run1'"), After(rules.checkpoint_dir)
]
Accelerators = Annotated[Accelerator, Plain(rules.accelerator)]
TimeLimit = Annotated[
    str,
    must(rules.is_time_limit),
    Text,
    expect(rules.TIME_EXPECTED),
    After(rules.time_limit),
]
Constraint = Annotated[
    str,
    must(lambda text: text.strip() and not rules.CONTROL_RE.search(text)),
    Text,
    expect("a Slurm constraint like 'a100&ib'"),
    After(rules.one_sbatch_word),
]
SbatchOptions = Annotated[tuple[tuple[str, str | None], ...], Plain(rules.sbatch_options)]


def _slurm_field(field: str, text: str) -> Any:
    """``text`` read as the slurm: section reads its ``field``, or that field's reason not to."""
    try:
        return getattr(SlurmSection.model_validate({field: text}), field)
    except ValidationError as exc:
        rules.fail(exc.errors(include_url=False)[0]["msg"])


def _sky_sbatch_options(value: Any, info: Any) -> rules.SkySbatchOptions:
    return rules.sky_sbatch_options(value, info, _slurm_field)


SkySbatchOptions = Annotated[rules.SkySbatchOptions, Plain(_sky_sbatch_options)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else rules.not_a_mapping(cls.__doc__, value)


class SlurmSection(Section):
    """Slurm settings (partition, account, ...)"""

    partition: slurm_name("partition") | None = None
    account: slurm_name("account") | None = None
    qos: slurm_name("qos") | None = None
    time_limit: TimeLimit | None = None
    constraint: Constraint | None = None
    sbatch_options: SbatchOptions | None = None


class JobConfig(Section):
    """job settings"""

    # Konduktor's job_config is free-form: keys konduktor-slurm does not know are accepted
    # (and named in a warning, with a "did you mean" for typos).
    model_config = ConfigDict(extra="allow", strict=True)

    max_restarts: MaxRestarts | None = None
    completions: count(1, "a number of completions >= 1") | None = None
    # How the task saves its work before a stop, a preemption or its time limit.
    checkpoint_signal: CheckpointSignal | None = None
    checkpoint_grace: CheckpointGrace | None = None
    checkpoint_dir: CheckpointDir | None = None


class JobRecovery(Section):
    """job recovery settings (strategy, max_restarts_on_errors)"""

    model_config = ConfigDict(extra="allow", strict=True)

    strategy: Ignored = None
    max_restarts_on_errors: MaxRestarts | None = None


def _job_recovery(value: Any) -> Any:
    # SkyPilot also writes `job_recovery: none` or a bare strategy name.
    return {"strategy": value} if value is None or isinstance(value, str) else value


class Hardware(Section):
    cpus: Cpus | None = None
    memory: MemoryGiB | None = None
    accelerators: Accelerators | None = None
    job_config: JobConfig | None = None


class ResourcesSection(SlurmSection, Hardware):  # fields: Hardware's, SlurmSection's, these
    """resource fields (cpus, memory, accelerators, ...)"""

    job_recovery: Annotated[JobRecovery, Before(_job_recovery)] | None = None
    any_of: refused(compat.REFUSED[("resources", "any_of")]) = None
    ordered: refused(compat.REFUSED[("resources", "ordered")]) = None
    # Konduktor and SkyPilot fields with no meaning on Slurm (compat.IGNORED says why).
    cloud: Ignored = None
    infra: Ignored = None
    region: Ignored = None
    zone: Ignored = None
    use_spot: Ignored = None
    spot_recovery: Ignored = None
    instance_type: Ignored = None
    disk_size: Ignored = None
    disk_tier: Ignored = None
    network_tier: Ignored = None
    ports: Ignored = None
    autostop: Ignored = None
    labels: Ignored = None
    image_id: Ignored = None
    accelerator_args: Ignored = None
    cluster_config_overrides: Ignored = Field(None, alias="_cluster_config_overrides")


class SkySlurmConfig(Section):
    """SkyPilot's Slurm settings (sbatch_options, ...)"""

    # Its other keys configure SkyPilot's own provisioning: accepted, each named in a warning.
    model_config = ConfigDict(extra="allow", strict=True)

    sbatch_options: SkySbatchOptions | None = None


class SkyConfig(Section):
    """SkyPilot's per-task settings (slurm, docker, kubernetes, ...)"""

    model_config = ConfigDict(extra="allow", strict=True)

    slurm: SkySlurmConfig | None = None


class TaskSchema(Section):
    name: Name | None = None  # default: from the file name
    run: OptionalScript | None = None
    setup: OptionalScript | None = None
    envs: Envs | None = None
    secrets: Secrets | None = None
    workdir: Workdir | None = None
    file_mounts: FileMounts | None = None
    num_nodes: NumNodes | None = None  # default: 1
    resources: ResourcesSection | None = None
    slurm: SlurmSection | None = None
    event_callback: OptionalScript | None = None
    service: refused(compat.REFUSED[("service",)]) = None
    serving: refused(compat.REFUSED[("serving",)]) = None
    volumes: refused(compat.REFUSED[("volumes",)]) = None
    experimental: Ignored = None
    autostop: Ignored = None  # SkyPilot's task-level autostop (sky utils convert-slurm)
    inputs: Ignored = None
    outputs: Ignored = None
    config: SkyConfig | None = None  # SkyPilot's; only config.slurm.sbatch_options is read


def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys a section accepts, as written in YAML (aliases included)."""
    return tuple(info.alias or name for name, info in model.model_fields.items())


def validated(model: Any, key: str, value: Any, context: dict[str, Any]) -> Any:
    """``value`` validated as field ``key`` of ``model``; None if it is not valid."""
    try:
        return getattr(model.model_validate({key: value}, context=context), key)
    except ValidationError:
        return None
