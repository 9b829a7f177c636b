"""Validation: raw YAML (+ command-line overrides) -> a ``Task``, or every issue at once.

The flow: load the YAML with positions, write the overrides in, fill ``$VAR``s from the envs
into workdir and file_mounts paths, validate against the schema, add the rules that span
fields (Slurm fields set twice, secrets that are also envs, restarts given two ways), then
either raise one ``TaskError`` with every issue in file order or build the ``Task`` with the
warnings (ignored Konduktor/SkyPilot fields, rounded CPUs, unknown job_config keys).
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

from konduktor_slurm.checkpoint import (
    DEFAULT_CHECKPOINT_GRACE,
    DEFAULT_CHECKPOINT_SIGNAL,
    Checkpoint,
)
from konduktor_slurm.task import compat, rules, schema, skypilot
from konduktor_slurm.task.checker import Checker, Level, close_match
from konduktor_slurm.task.errors import TaskError, TaskIssue
from konduktor_slurm.task.model import Resources, SlurmOptions, Task, TaskOverrides
from konduktor_slurm.task.overrides import apply_overrides
from konduktor_slurm.task.source import Loc, Positions, as_text, load_yaml, mapping_at

SLURM_FIELDS = ("partition", "account", "qos", "time_limit", "constraint", "sbatch_options")
JOB_CONFIG_FIELDS = (
    "max_restarts",
    "completions",
    "checkpoint_signal",
    "checkpoint_grace",
    "checkpoint_dir",
)
# What "expected one of" lists for a key with no close match: the fields people write, not
# every cloud field accepted for compatibility.
MAIN_TOP_LEVEL = (
    "name",
    "run",
    "setup",
    "envs",
    "secrets",
    "workdir",
    "file_mounts",
    "num_nodes",
    "resources",
    "slurm",
    "event_callback",
)
MAIN_RESOURCES = ("cpus", "memory", "accelerators", "job_config", *SLURM_FIELDS)

_MESSAGES = {
    "env_no_value": (
        "has no value: give it a value here, or on the command line with --env {key} "
        "(takes it from your environment) or --env {key}=VALUE"
    ),
}
_SECRET_MESSAGES = {
    "env_no_value": (
        "has no value: give it on the command line with --secret {key}=VALUE, or --secret {key} "
        "to take it from your environment"
    ),
}


def build_task(
    text: str,
    source: str,
    base_dir: Path,
    overrides: TaskOverrides | None,
    source_path: Path | None,
    looked_at: list[tuple[str, str, str]] | None = None,
) -> Task:
    data, positions = load_yaml(text, source)
    return build_task_from_data(
        data, positions, source, base_dir, overrides, source_path, looked_at
    )


def build_task_from_data(
    data: Any,
    positions: Positions,
    source: str,
    base_dir: Path,
    overrides: TaskOverrides | None,
    source_path: Path | None,
    looked_at: list[tuple[str, str, str]] | None = None,
) -> Task:
    """The same validation for a task given as data (the Python SDK's ``Task(...)``); with
    no positions, issues name the field but no line. ``looked_at``, when given, receives
    each local path the task names, as (written, resolved, "dir" or "file")."""
    if data is None:
        msg = "the task file is empty; give at least a 'run:' command"
        raise TaskError([TaskIssue(source, None, "", msg)])
    if not isinstance(data, dict):
        msg = (
            "expected a mapping of task fields (name, resources, run, ...) at the top level, "
            f"got {rules.describe(data)}"
        )
        raise TaskError([TaskIssue(source, positions.root_line, "", msg)])

    ck = Checker(source, positions)
    ck.report_duplicates(positions.duplicates)
    if overrides is not None:
        apply_overrides(data, overrides, ck)
    _fill_env_vars(data, positions)

    if source_path is not None:
        default_name = rules.sanitize_name(source_path.stem)
    elif not source.startswith("<"):
        default_name = rules.sanitize_name(Path(source).stem)
    else:
        default_name = "task"

    context: dict[str, Any] = {"base_dir": base_dir, "looked_at": looked_at}
    context["set_resources"] = _set_resources(data, context)
    model = None
    try:
        model = schema.TaskSchema.model_validate(data, context=context)
    except schema.ValidationError as exc:
        _report(ck, exc.errors(include_url=False), data)
    target = skypilot.slurm_target(ck, data)
    _check_slurm_conflicts(ck, data, context)
    skypilot.check_conflicts(ck, data, context, target)
    _check_across_fields(ck, data)

    if ck.issues or model is None:
        raise TaskError(ck.sorted_issues())
    autostop = skypilot.autostop_limit(data)
    _warn(ck, data, target, autostop)
    return _to_task(ck, model, data, default_name, source_path, target, autostop)


def _report(ck: Checker, errors: list[Any], data: dict[Any, Any]) -> None:
    # Secrets are worded like envs, with their own flag.
    secret_errors = [e for e in errors if e["loc"][:1] == ("secrets",)]
    others = [e for e in errors if e["loc"][:1] != ("secrets",)]
    ck.report(others, data, _levels(), _MESSAGES, name_errors_under=("envs",))
    ck.report(secret_errors, data, _levels(), _SECRET_MESSAGES, name_errors_under=("secrets",))


# ---- $VARs in paths ---------------------------------------------------------------------


def _fill_env_vars(data: dict[Any, Any], positions: Positions) -> None:
    """Konduktor and SkyPilot fill the task's envs into workdir and file_mounts paths."""
    envs = data.get("envs")
    if not isinstance(envs, dict):
        return
    values = {
        key: text
        for key, value in envs.items()
        if isinstance(key, str) and isinstance(text := as_text(value), str)
    }
    if not values:
        return
    if isinstance(data.get("workdir"), str):
        data["workdir"] = rules.fill_env_vars(data["workdir"], values)
    mounts = data.get("file_mounts")
    if isinstance(mounts, dict):
        filled: dict[Any, Any] = {}
        for dest, src in mounts.items():
            new_dest = rules.fill_env_vars(dest, values) if isinstance(dest, str) else dest
            filled[new_dest] = rules.fill_env_vars(src, values) if isinstance(src, str) else src
            if new_dest != dest:  # keep the line of the key as written
                for lines in (positions.key_lines, positions.value_lines):
                    if ("file_mounts", dest) in lines:
                        lines[("file_mounts", new_dest)] = lines[("file_mounts", dest)]
        data["file_mounts"] = filled


# ---- rules across fields ----------------------------------------------------------------


def _set_resources(data: dict[Any, Any], context: dict[str, Any]) -> frozenset[str]:
    """The resources validly set, which some sbatch options would conflict with."""
    res = data.get("resources")
    if not isinstance(res, dict):
        return frozenset()
    return frozenset(
        key
        for key in ("cpus", "memory")
        if res.get(key) is not None
        and schema.validated(schema.ResourcesSection, key, res[key], context)
    )


def _check_slurm_conflicts(ck: Checker, data: dict[Any, Any], context: dict[str, Any]) -> None:
    """Slurm fields may be written under ``resources:`` too, but not differently in both."""
    section, res = data.get("slurm"), data.get("resources")
    if not isinstance(section, dict) or not isinstance(res, dict):
        return
    for key in SLURM_FIELDS:
        if section.get(key) is None or res.get(key) is None:
            continue
        here = schema.validated(schema.SlurmSection, key, section[key], context)
        there = schema.validated(schema.ResourcesSection, key, res[key], context)
        if here is None or there is None or here == there:
            continue
        line = ck.line(("resources", key))
        at = f" (line {line})" if line is not None else ""
        ck.error(
            ("slurm", key),
            f"set to {_show_slurm(here)} here but to {_show_slurm(there)} in "
            f"resources.{key}{at}; set it in one place",
        )


def _show_slurm(value: Any) -> str:
    if isinstance(value, tuple):
        return (
            " ".join(f"--{name}" if val is None else f"--{name}={val}" for name, val in value)
            or "nothing"
        )
    return repr(value)


# SkyPilot copies the workdir to ~/sky_workdir; on Slurm each job has its own copy
# ($KONDUKTOR_WORKDIR), so a shared fixed path would mix jobs: `cd ~/sky_workdir` would fail
# on the node after the wait in the queue, or run another job's files.
_SKY_WORKDIR = re.compile(r"(?:~|\$HOME|\$\{HOME\})/sky_workdir(?![\w.-])")


def _check_sky_workdir(ck: Checker, data: dict[Any, Any]) -> None:
    for field in ("setup", "run"):
        script = data.get(field)
        if not isinstance(script, str):
            continue
        key_line = ck.line((field,))
        block = "\n" in script.rstrip("\n") or script.endswith("\n")
        for index, text in enumerate(script.splitlines()):
            found = _SKY_WORKDIR.search(text)
            if not found or text.lstrip().startswith("#"):
                continue
            # A block scalar ("run: |") starts on the line after its key.
            line = key_line + 1 + index if key_line is not None and block else key_line
            instead = (
                "setup and run already start in this job's copy of the workdir on each node, "
                "$KONDUKTOR_WORKDIR. Drop the cd, or write $KONDUKTOR_WORKDIR"
                if data.get("workdir")
                else "this task has no workdir to copy, so drop it"
            )
            ck.error_at(
                ck.source,
                line,
                field,
                f"uses {found.group(0)}, SkyPilot's copy of the workdir, which does not exist "
                f"on Slurm: {instead}",
            )
            break


def _check_across_fields(ck: Checker, data: dict[Any, Any]) -> None:
    _check_sky_workdir(ck, data)
    envs, secrets = mapping_at(data, "envs"), mapping_at(data, "secrets")
    for key in secrets:
        if key in envs:
            ck.error(("secrets", key), "is also set in envs; a name is either an env or a secret")
    job_config = mapping_at(data, "resources", "job_config")
    completions = rules.whole_number(job_config.get("completions"))
    if isinstance(completions, int) and not isinstance(completions, bool) and completions > 1:
        loc = ("resources", "job_config", "completions")
        ck.error(loc, compat.COMPLETIONS_MESSAGE.format(count=completions))
    recovery = mapping_at(data, "resources", "job_recovery")
    on_errors = rules.whole_number(recovery.get("max_restarts_on_errors"))
    restarts = rules.whole_number(job_config.get("max_restarts"))
    if isinstance(on_errors, int) and isinstance(restarts, int) and on_errors != restarts:
        ck.error(
            ("resources", "job_recovery", "max_restarts_on_errors"),
            f"is {on_errors} but resources.job_config.max_restarts is {restarts}; "
            "set the number of restarts in one place",
        )


# ---- warnings ---------------------------------------------------------------------------


def _present(data: dict[Any, Any], path: Loc) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _warn(
    ck: Checker,
    data: dict[Any, Any],
    target: skypilot.SlurmTarget | None,
    autostop: skypilot.AutostopLimit | None,
) -> None:
    read = skypilot.read_fields(target, autostop)  # SkyPilot fields read, not ignored
    for entry in compat.IGNORED:
        if _present(data, entry.path) and entry.path not in read:
            ck.warn(entry.path, f"is ignored on Slurm: {entry.why}")
    skypilot.warn(ck, data, target, autostop)
    cpus = mapping_at(data, "resources").get("cpus")
    if rules.is_fractional(cpus):
        whole = rules.cpus_value(cpus)
        ck.warn(
            ("resources", "cpus"),
            f"{as_text(cpus)} rounded up to {whole} (Slurm allocates whole CPUs)",
        )
    job_config = mapping_at(data, "resources", "job_config")
    for key in job_config:
        if key not in JOB_CONFIG_FIELDS:
            hint = close_match(str(key), JOB_CONFIG_FIELDS)
            also = f"; did you mean '{hint}'?" if hint else ""
            ck.warn(
                ("resources", "job_config", key),
                f"is not a job_config setting konduktor-slurm knows "
                f"({', '.join(JOB_CONFIG_FIELDS)}); ignored{also}",
            )
    for key in mapping_at(data, "resources", "job_recovery"):
        if key != "max_restarts_on_errors":
            ck.warn(
                ("resources", "job_recovery", key),
                f"is ignored on Slurm: {compat.JOB_RECOVERY_WHY}",
            )
    signal = job_config.get("checkpoint_signal")
    if isinstance(signal, str) and signal.strip().upper().removeprefix("SIG") == "USR1":
        ck.warn(
            ("resources", "job_config", "checkpoint_signal"),
            "SIGUSR1 is caught by NCCL 2.12 (and may be by other libraries), so a training "
            f"script may never see it; the default, SIG{DEFAULT_CHECKPOINT_SIGNAL}, is safe",
        )


def _max_run_duration(data: dict[Any, Any]) -> str | None:
    """Konduktor's ``labels.maxRunDurationSeconds`` as a Slurm time limit, if usable."""
    value = mapping_at(data, "resources", "labels").get(compat.MAX_RUN_DURATION_LABEL)
    text = as_text(value)
    try:
        seconds = float(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0 or seconds > 365 * 86400:
        return None
    return rules.seconds_as_time_limit(math.ceil(seconds))


# ---- the Task ---------------------------------------------------------------------------


def _to_task(
    ck: Checker,
    model: Any,
    data: dict[Any, Any],
    default_name: str,
    source_path: Path | None,
    target: skypilot.SlurmTarget | None,
    autostop: skypilot.AutostopLimit | None,
) -> Task:
    res = model.resources or schema.ResourcesSection()
    section = model.slurm or schema.SlurmSection()
    job_config = res.job_config or schema.JobConfig()
    recovery = res.job_recovery
    # Set in slurm: or in resources: (where both, they agree: see _check_slurm_conflicts).
    slurm = {
        key: getattr(res, key) if getattr(section, key) is None else getattr(section, key)
        for key in SLURM_FIELDS
    }
    # Then SkyPilot's ways (where both are given, they agree: skypilot.check_conflicts).
    skypilot.fill_slurm(slurm, model, target, autostop)
    if slurm["time_limit"] is None:
        slurm["time_limit"] = _max_run_duration(data)
    max_restarts = job_config.max_restarts
    if max_restarts is None and recovery is not None:
        max_restarts = recovery.max_restarts_on_errors
    return Task(
        name=default_name if model.name is None else model.name,
        run=model.run,
        setup=model.setup,
        envs=model.envs or {},
        secrets=model.secrets or {},
        workdir=model.workdir,
        file_mounts=model.file_mounts or {},
        num_nodes=model.num_nodes or 1,
        resources=Resources(
            cpus=res.cpus,
            memory_gib=res.memory,
            accelerator=res.accelerators,
            max_restarts=max_restarts or 0,
            checkpoint=_checkpoint(job_config),
        ),
        slurm=SlurmOptions(**{**slurm, "sbatch_options": slurm["sbatch_options"] or ()}),
        event_callback=model.event_callback,
        source=source_path,
        warnings=ck.warnings(),
    )


def _checkpoint(job_config: Any) -> Checkpoint | None:
    """The task checkpoints when it sets any checkpoint_* key; the others take defaults."""
    signal, grace = job_config.checkpoint_signal, job_config.checkpoint_grace
    directory = job_config.checkpoint_dir
    if signal is None and grace is None and directory is None:
        return None
    return Checkpoint(
        signal=signal or DEFAULT_CHECKPOINT_SIGNAL,
        grace=grace or DEFAULT_CHECKPOINT_GRACE,
        directory=directory,
    )


# ---- unknown keys ------------------------------------------------------------------------


@functools.cache
def _levels() -> dict[Loc, Level]:
    """Each level of the task: the keys allowed there, and hints for keys that belong
    elsewhere (for "did you mean" hints)."""
    top = schema.field_names(schema.TaskSchema)
    resources = schema.field_names(schema.ResourcesSection)
    hardware = ("cpus", "memory", "accelerators", "job_config")
    top_elsewhere = {
        **{key: f"'resources.{key}'" for key in resources if key not in SLURM_FIELDS},
        **{key: f"'slurm.{key}'" for key in SLURM_FIELDS},
        **{key: f"'resources.job_config.{key}'" for key in JOB_CONFIG_FIELDS},
    }
    resources_elsewhere = {
        **{key: f"top-level '{key}'" for key in top if key != "resources"},
        **{key: f"'job_config.{key}'" for key in JOB_CONFIG_FIELDS},
    }
    slurm_elsewhere = {
        **{key: f"'resources.{key}'" for key in hardware},
        **{key: f"top-level '{key}'" for key in top if key != "slurm"},
        **{key: f"'resources.job_config.{key}'" for key in JOB_CONFIG_FIELDS},
    }
    return {
        (): Level(top, top_elsewhere, MAIN_TOP_LEVEL),
        ("resources",): Level(resources, resources_elsewhere, MAIN_RESOURCES),
        ("slurm",): Level(SLURM_FIELDS, slurm_elsewhere),
    }
