"""Command-line overrides, written into the raw YAML data before validation.

Each overridden value remembers where it came from, so a bad ``--gpus`` is reported exactly
like a bad ``resources.accelerators``, but located on the command line (or in the env file).
Precedence: ``--env`` > ``--env-file`` > the YAML's ``envs`` (later writes win).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from konduktor_slurm.task.checker import Checker, Origin, command_line
from konduktor_slurm.task.dotenv import read_env_file
from konduktor_slurm.task.errors import COMMAND_LINE
from konduktor_slurm.task.model import TaskOverrides
from konduktor_slurm.task.rules import local_path
from konduktor_slurm.task.source import Loc, mapping_at

# (attribute of TaskOverrides, where it goes in the task, the flag users type)
_SIMPLE: tuple[tuple[str, Loc, str], ...] = (
    ("name", ("name",), "--name"),
    ("num_nodes", ("num_nodes",), "--num-nodes"),
    ("cpus", ("resources", "cpus"), "--cpus"),
    ("memory", ("resources", "memory"), "--memory"),
    ("gpus", ("resources", "accelerators"), "--gpus"),
    ("max_restarts", ("resources", "job_config", "max_restarts"), "--max-restarts"),
    ("completions", ("resources", "job_config", "completions"), "--completions"),
    ("image_id", ("resources", "image_id"), "--image-id"),
    ("disk_size", ("resources", "disk_size"), "--disk-size"),
    ("cloud", ("resources", "cloud"), "--cloud"),
    ("infra", ("resources", "infra"), "--infra"),
    ("region", ("resources", "region"), "--region"),
    ("zone", ("resources", "zone"), "--zone"),
    ("instance_type", ("resources", "instance_type"), "--instance-type"),
    ("disk_tier", ("resources", "disk_tier"), "--disk-tier"),
    ("network_tier", ("resources", "network_tier"), "--network-tier"),
)
# SkyPilot's -i/--idle-minutes-to-autostop, --down and --wait-for: resources.autostop's keys.
_AUTOSTOP: tuple[tuple[str, str, str], ...] = (
    ("idle_minutes", "idle_minutes", "--idle-minutes-to-autostop"),
    ("down", "down", "--down"),
    ("wait_for", "wait_for", "--wait-for"),
)
# Konduktor's and SkyPilot's `--gpus none` (also --cpus, --memory, --image-id, --cloud)
# removes the field the file sets: a GPU task file run without GPUs, for a quick try.
_RESET_BY_NONE = frozenset({"gpus", "cpus", "memory", "image_id", "cloud"})


def apply_overrides(data: dict[Any, Any], ov: TaskOverrides, ck: Checker) -> None:
    def put(loc: Loc, value: Any, origin: Origin) -> None:
        target: Any = data
        for part in loc[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                return  # the YAML field itself is the wrong type; that gets reported
            target = child
        target[loc[-1]] = value
        ck.origins[loc] = origin

    for attribute, loc, flag in _SIMPLE:
        value = getattr(ov, attribute)
        if (
            attribute in _RESET_BY_NONE
            and isinstance(value, str)
            and value.strip().lower() == "none"
        ):
            mapping_at(data, *loc[:-1]).pop(loc[-1], None)  # {} where there is none
        elif value is not None:
            put(loc, value, command_line(flag))
    if ov.use_spot:
        put(("resources", "use_spot"), True, command_line("--use-spot"))
    elif ov.use_spot is False:  # --no-use-spot: no spot asked, nothing to warn about
        mapping_at(data, "resources").pop("use_spot", None)
    if ov.ports:
        put(("resources", "ports"), list(ov.ports), command_line("--ports"))
    autostop = [(key, flag, getattr(ov, name)) for name, key, flag in _AUTOSTOP]
    autostop = [(key, flag, value) for key, flag, value in autostop if value not in (None, False)]
    if autostop:
        # The flags replace the file's autostop, as in SkyPilot (which may be `true` or a
        # number there); its warning, or the time limit it makes, names the first flag.
        resources = data.get("resources")
        if resources is None:
            resources = data["resources"] = {}
        if isinstance(resources, dict):  # else the file's resources is reported
            resources["autostop"] = {key: value for key, _, value in autostop}
            ck.origins[("resources", "autostop")] = command_line(autostop[0][1])
    if ov.no_setup:
        data.pop("setup", None)
    if ov.workdir is not None:
        # Relative to where the command runs, like every relative path of a task.
        put(("workdir",), str(local_path(ov.workdir, Path.cwd())), command_line("--workdir"))

    if ov.env_file is not None:
        entries, issues = read_env_file(Path(ov.env_file))
        ck.issues.extend(issues)
        for key, value, line in entries:
            put(("envs", key), value, Origin(str(ov.env_file), line, "--env-file"))
    for section, flag, items in (("envs", "--env", ov.envs), ("secrets", "--secret", ov.secrets)):
        for item in items:
            key, eq, value = item.partition("=")
            if not eq:
                if key not in os.environ:
                    ck.error_at(
                        COMMAND_LINE,
                        None,
                        flag,
                        f"{key} is not set in your environment; give a value with "
                        f"{flag} {key}=VALUE",
                    )
                    continue
                value = os.environ[key]
            put((section, key), value, command_line(flag))
