"""SkyPilot's own Slurm settings in a task file, read as SkyPilot reads them.

SkyPilot-on-Slurm users pick the partition with ``resources.infra: slurm/<cluster>/<partition>``
(or ``cloud: slurm`` with ``region`` and ``zone``, or ``--infra``), add ``#SBATCH`` lines with
``config.slurm.sbatch_options``, and bound a job's time with an ``autostop`` that waits for
nothing (``sky utils convert-slurm`` writes a script's ``--time`` so). Validation asks this
module where a task names them, whether they agree with konduktor's own fields, what to warn
about, and fills them into the task's Slurm settings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from konduktor_slurm.task import compat, rules, schema
from konduktor_slurm.task.checker import Checker
from konduktor_slurm.task.source import Loc, as_text, mapping_at


class SlurmTarget(NamedTuple):
    """The Slurm cluster and partition a SkyPilot task names, and where it names them."""

    cluster: str | None
    partition: str | None
    cluster_loc: Loc
    partition_loc: Loc


def slurm_target(ck: Checker, data: dict[Any, Any]) -> SlurmTarget | None:
    """SkyPilot's way to a Slurm partition: ``infra: slurm/<cluster>/<partition>`` (also from
    ``--infra``), or ``cloud: slurm`` with ``region`` (the cluster) and ``zone`` (the
    partition). None when the task names no Slurm target ('*' stands for any)."""
    res = mapping_at(data, "resources")
    infra = res.get("infra")
    if isinstance(infra, str) and infra.strip():
        parts = rules.infra_parts(infra)
        if parts[0].lower() != "slurm":
            return None
        loc = ("resources", "infra")
        if "" in parts or len(parts) > 3:
            ck.error(loc, f"{rules.INFRA_EXPECTED}, got {infra!r}")
            return None
        cluster, partition = [*parts[1:], None, None][:2]
        cluster_loc = partition_loc = loc
    elif str(as_text(res.get("cloud"))).strip().lower() == "slurm":
        cluster, partition = as_text(res.get("region")), as_text(res.get("zone"))
        cluster_loc, partition_loc = ("resources", "region"), ("resources", "zone")
        for value, at in ((cluster, cluster_loc), (partition, partition_loc)):
            if value is not None and not isinstance(value, str):
                ck.error(at, f"expected a name, got {rules.describe(res.get(at[-1]))}")
                return None
    else:
        return None
    cluster = None if cluster in (None, "", "*") else cluster.strip()
    partition = None if partition in (None, "", "*") else partition.strip()
    if partition is not None and not rules.SLURM_NAME_RE.fullmatch(partition):
        ck.error(
            partition_loc,
            f"names partition {partition!r}: expected a Slurm partition name "
            "(letters, digits, '_', '.', '-')",
        )
        return None
    return SlurmTarget(cluster, partition, cluster_loc, partition_loc)


def _native_slurm(
    ck: Checker, data: dict[Any, Any], context: dict[str, Any], key: str
) -> tuple[Any, str]:
    """A Slurm field as validly set in ``slurm:`` or ``resources:`` (None if neither), and
    where, for messages: "slurm.partition (line 7)"."""
    for section, model in (("slurm", schema.SlurmSection), ("resources", schema.ResourcesSection)):
        raw = mapping_at(data, section).get(key)
        if raw is None:
            continue
        value = schema.validated(model, key, raw, context)
        if value is not None:
            line = ck.line((section, key))
            return value, f"{section}.{key}" + (f" (line {line})" if line is not None else "")
    return None, ""


def _sky_sbatch(data: dict[Any, Any], context: dict[str, Any]) -> rules.SkySbatchOptions:
    raw = mapping_at(data, "config", "slurm").get("sbatch_options")
    if raw is None:
        return rules.SkySbatchOptions()
    found = schema.validated(schema.SkySlurmConfig, "sbatch_options", raw, context)
    return found or rules.SkySbatchOptions()


def _same_slurm_value(key: str, one: Any, other: Any) -> bool:
    if key == "time_limit":
        from konduktor_slurm import durations

        try:
            return durations.slurm_time_seconds(one) == durations.slurm_time_seconds(other)
        except durations.DurationError:
            return one == other
    return one == other


def check_conflicts(
    ck: Checker, data: dict[Any, Any], context: dict[str, Any], target: SlurmTarget | None
) -> None:
    """A partition or an sbatch option given SkyPilot's way may not differ from the same
    setting given konduktor's way (slurm: or resources:)."""
    if target is not None and target.partition is not None:
        native, where = _native_slurm(ck, data, context, "partition")
        if native is not None and native != target.partition:
            ck.error(
                target.partition_loc,
                f"names partition {target.partition!r} but {where} is {native!r}; "
                "set it in one place",
            )
    sky = _sky_sbatch(data, context)
    options_loc = ("config", "slurm", "sbatch_options")
    for found in sky.fields:
        native, where = _native_slurm(ck, data, context, found.field)
        if native is not None and not _same_slurm_value(found.field, native, found.value):
            ck.error(
                (*options_loc, found.written),
                f"sets --{found.option} to {found.value!r} but {where} is {native!r}; "
                "set it in one place",
            )
    native_options, where = _native_slurm(ck, data, context, "sbatch_options")
    names = {name for name, _ in native_options or ()}
    for name, _, written in sky.options:
        if name in names:
            ck.error((*options_loc, written), f"--{name} is also in {where}; keep one")


class AutostopLimit(NamedTuple):
    """SkyPilot's autostop read as a time limit, where it is, and what else sets one."""

    loc: Loc
    minutes: int
    overridden_by: str | None  # where the task sets its time limit otherwise


def autostop_limit(data: dict[Any, Any]) -> AutostopLimit | None:
    """SkyPilot's autostop with ``wait_for: none`` stops the cluster ``idle_minutes`` on,
    whether its job runs or not: a wall-clock limit (``sky utils convert-slurm`` writes an
    sbatch script's --time so, as a top-level autostop)."""
    for loc in (("autostop",), ("resources", "autostop")):
        node = mapping_at(data, *loc)
        wait_for = as_text(node.get("wait_for"))
        minutes = rules.whole_number(node.get("idle_minutes"))
        if not (isinstance(wait_for, str) and wait_for.strip().lower() == "none"):
            continue
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            continue
        if not 0 < minutes <= 365 * 24 * 60:
            continue
        return AutostopLimit(loc, minutes, _time_limit_set_in(data))
    return None


def _time_limit_set_in(data: dict[Any, Any]) -> str | None:
    """Where the task sets its time limit in a way that wins over an autostop, if it does."""
    for section in ("slurm", "resources"):
        if mapping_at(data, section).get("time_limit") is not None:
            return f"{section}.time_limit"
    for key, value in mapping_at(data, "config", "slurm", "sbatch_options").items():
        named_time = isinstance(key, str) and rules.sky_option_name(key) == "time"
        if named_time and value not in (None, False):
            return f"config.slurm.sbatch_options.{key}"
    return None


def read_fields(target: SlurmTarget | None, autostop: AutostopLimit | None) -> set[Loc]:
    """The cloud fields that named a Slurm target or a time limit: read, not ignored."""
    read = {target.cluster_loc, target.partition_loc} if target is not None else set()
    if target is not None and target.cluster_loc == ("resources", "region"):
        read.add(("resources", "cloud"))
    if autostop is not None:
        read.add(autostop.loc)
    return read


def warn(
    ck: Checker,
    data: dict[Any, Any],
    target: SlurmTarget | None,
    autostop: AutostopLimit | None,
) -> None:
    """What was read, and what of SkyPilot's config is not."""
    if autostop is not None:
        if autostop.overridden_by is None:
            message = compat.SKY_AUTOSTOP_LIMIT.format(minutes=autostop.minutes)
        else:
            message = compat.SKY_AUTOSTOP_OVERRIDDEN.format(where=autostop.overridden_by)
        ck.warn(autostop.loc, message)
    if target is not None and target.cluster is not None:
        ck.warn(
            target.cluster_loc,
            f"names Slurm cluster {target.cluster!r}, which is not chosen here: "
            f"{compat.SKY_CLUSTER_WHY}",
        )
    _warn_config(ck, data)


def fill_slurm(
    slurm: dict[str, Any],
    model: Any,
    target: SlurmTarget | None,
    autostop: AutostopLimit | None,
) -> None:
    """Fill the task's Slurm settings (``slurm``, field -> value) from SkyPilot's ways where
    konduktor's own fields left them unset: the partition, config.slurm.sbatch_options, the
    autostop's time limit."""
    if slurm["partition"] is None and target is not None:
        slurm["partition"] = target.partition
    sky = model.config.slurm.sbatch_options if model.config and model.config.slurm else None
    sky = sky or rules.SkySbatchOptions()
    for found in sky.fields:
        if slurm[found.field] is None:
            slurm[found.field] = found.value
    if sky.options:
        extra = tuple((name, value) for name, value, _ in sky.options)
        slurm["sbatch_options"] = (*(slurm["sbatch_options"] or ()), *extra)
    if slurm["time_limit"] is None and autostop is not None:
        slurm["time_limit"] = rules.seconds_as_time_limit(autostop.minutes * 60)


def _warn_config(ck: Checker, data: dict[Any, Any]) -> None:
    """SkyPilot's ``config``: only config.slurm.sbatch_options is read; each other setting,
    and each sbatch option SkyPilot itself drops, is named."""
    for key in mapping_at(data, "config"):
        if key != "slurm":
            ck.warn(("config", key), f"is ignored on Slurm: {compat.SKY_CONFIG_WHY}")
    for key in mapping_at(data, "config", "slurm"):
        if key != "sbatch_options":
            ck.warn(("config", "slurm", key), f"is ignored: {compat.SKY_SLURM_CONFIG_WHY}")
    for key, value in mapping_at(data, "config", "slurm", "sbatch_options").items():
        name = rules.sky_option_name(key) if isinstance(key, str) else None
        if value not in (None, False) and name in compat.SKY_PROTECTED_SBATCH:
            ck.warn(
                ("config", "slurm", "sbatch_options", key),
                f"is ignored, as SkyPilot ignores it (--{name}): "
                f"{compat.SKY_PROTECTED_SBATCH[name]}",
            )
