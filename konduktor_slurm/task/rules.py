"""Value rules: the Konduktor- and Slurm-specific parts of the schema, as plain functions.

Each rule takes a value (after the schema's type checks) and returns what the task keeps, or
rejects it with ``fail(message)``: the user reads the message exactly as given, placed after
``file:line: field:`` by the validation layer. pydantic is imported only when a rule fails.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from konduktor_slurm import durations
from konduktor_slurm.task import compat
from konduktor_slurm.task.model import Accelerator
from konduktor_slurm.task.source import as_text, is_number

NAME_MAX_LEN = 63

# Konduktor's own name rule (kept identical so a task name valid there is valid here).
NAME_RE = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")
ENV_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SLURM_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# GPU model names all start with a letter (H100, A100-80GB, L40S, MI300X, RTX4090); requiring
# that is what makes '8xH100' an error instead of a GPU model called '8xH100'.
_ACCEL_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# 'H100x8' would otherwise be a valid bare model name (count 1); it is almost surely a typo.
_ACCEL_TIMES_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\d[xX*]\d+")
_UINT_RE = re.compile(r"\d+")
_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# SkyPilot's memory units are binary (GB = 2**30 bytes); Kubernetes spells them Gi.
_MEMORY_RE = re.compile(
    r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([KkMmGgTtPp])?(?:[Ii][Bb]?|[Bb])?\s*\+?\s*"
)
_MEMORY_UNIT_GIB = {"k": 2**-20, "m": 2**-10, "g": 1, "t": 2**10, "p": 2**20, None: 1}

ACCEL_EXPECTED = "expected '<NAME>:<COUNT>' like 'H100:8' or {H100: 8}"
MOUNT_ALLOWED = "an absolute path like '/data/x' or a path under your home like '~/data'"

# System directories a file mount must never land in (or replace).
_SYSTEM_ROOTS = frozenset(
    {"bin", "boot", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr", "var"}
)

TIME_EXPECTED = durations.SLURM_TIME_EXPECTED
# Slurm's own words for "no time limit" (the partition's maximum still applies).
NO_TIME_LIMIT = ("unlimited", "infinite")


def fail(message: str) -> NoReturn:
    """Reject a value; the user reads ``message`` exactly as given."""
    from pydantic_core import PydanticCustomError

    raise PydanticCustomError("task", message)


def describe(value: Any) -> str:
    """How a got-value reads in a message: strings quoted, containers by kind."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value})"


# ---- numbers ---------------------------------------------------------------------------


def whole_number(value: Any) -> Any:
    """Integers may be written as strings: '8' -> 8."""
    if isinstance(value, str) and _UINT_RE.fullmatch(value.strip()):
        return int(value)
    return value


def cpus_value(value: Any) -> Any:
    """Konduktor's 'at least' form '8+' -> 8; a fraction ('0.5', 2.5) is rounded up to whole
    CPUs, which is what Slurm allocates (the validation layer warns about it)."""
    if isinstance(value, str):
        text = value.strip().removesuffix("+").rstrip()
        if _NUMBER_RE.fullmatch(text):
            value = float(text)
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return math.ceil(value)
    return whole_number(value)


def is_fractional(value: Any) -> bool:
    """Whether a raw cpus value is a fraction that ``cpus_value`` rounds up."""
    if isinstance(value, str):
        text = value.strip().removesuffix("+").rstrip()
        if not _NUMBER_RE.fullmatch(text):
            return False
        value = float(text)
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


def gib(value: Any) -> Any:
    """Memory in GiB: a number, also written as a string, optionally with Konduktor's '+' or a
    SkyPilot unit ('64GB', '1024MB'; binary, as SkyPilot reads them; also '32Gi')."""
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        match = _MEMORY_RE.fullmatch(value)
        if match:
            unit = match.group(2).lower() if match.group(2) else None
            return float(match.group(1)) * _MEMORY_UNIT_GIB[unit]
    return value


def name_rule(text: str) -> str:
    if len(text) > NAME_MAX_LEN:
        fail(f"is {len(text)} characters long; the limit is {NAME_MAX_LEN}")
    if not NAME_RE.fullmatch(text):
        fail(
            "expected letters and digits, optionally joined by '.', '_' or '-' "
            f"(like 'train-llama'), got {text!r}"
        )
    return text


def sanitize_name(stem: str) -> str:
    """Turn a file stem into a valid task name ('my task!.yaml' -> 'my-task')."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", stem)
    name = re.sub(r"[._-]{3,}", "-", name)
    name = name.strip("._-")[:NAME_MAX_LEN].rstrip("._-")
    return name if NAME_RE.fullmatch(name) else "task"


def script_text(text: str) -> str | None:
    """``setup``/``run``: an empty or blank script is no script (nothing to run)."""
    return text if text.strip() else None


# ---- envs ------------------------------------------------------------------------------


def env_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return as_text(value)  # kept verbatim: the value is data for the job, never interpreted


def env_value_given(value: Any) -> Any:
    if value is None:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("env_no_value", "has no value")  # worded by validation
    return value


def bad_env_name(value: Any, _field: str) -> str:
    return (
        f"{str(value)!r} is not a valid environment variable name "
        "(letters, digits and '_', not starting with a digit)"
    )


# Env names a task may not set, because konduktor's own scripts on the nodes depend on them
# (documented in the README, "Reserved environment variables").
RESERVED_ENV_NAMES: dict[str, str] = {
    **{
        name: "it changes how bash runs konduktor's scripts on the nodes"
        for name in ("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "IFS", "PS4", "CDPATH",
                     "PROMPT_COMMAND", "GLOBIGNORE", "BASH_XTRACEFD", "POSIXLY_CORRECT")
    },
    "HOME": "file_mounts to '~/...' and the node workdir are placed under it",
    **{
        name: "konduktor sets it on every node"
        for name in ("RANK", "NUM_NODES", "NUM_GPUS_PER_NODE", "MASTER_ADDR", "NODE_HOST_IPS",
                     "LOCAL_ADDR", "RESTART_ATTEMPT", "PYTHONUNBUFFERED")
    },
}  # fmt: skip
RESERVED_ENV_PREFIXES: dict[str, str] = {
    "KONDUKTOR_": "konduktor's own variables (job directory, ranks, outputs) start with it",
    "SKYPILOT_": "konduktor sets SkyPilot's variables on every node",
    "SLURM_": "Slurm's own variables start with it",
    "BASH_FUNC_": "it defines a bash function in konduktor's scripts",
}


def not_reserved(name: str) -> str:
    why = RESERVED_ENV_NAMES.get(name) or next(
        (why for prefix, why in RESERVED_ENV_PREFIXES.items() if name.startswith(prefix)), None
    )
    if why is not None:
        fail(f"{name} is reserved: {why} (see the README, 'Reserved environment variables')")
    return name


def utf8_text(text: str) -> str:
    """A value that reaches a script must be text the script can hold (a lone surrogate from
    a command line that was not UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fail(f"is not valid UTF-8 text: {text.encode('utf-8', 'backslashreplace').decode()!r}")
    return text


def one_sbatch_word(text: str) -> str:
    text = text.strip()
    if any(char.isspace() for char in text):
        fail(f"cannot contain spaces (an #SBATCH line splits on them), got {text!r}")
    return text


_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def fill_env_vars(text: str, envs: dict[str, str]) -> str:
    """``$VAR`` / ``${VAR}`` from the task's envs, as Konduktor and SkyPilot fill them into
    workdir and file_mounts paths. Names the task does not define are left as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return envs.get(name, match.group(0))

    return _ENV_REF.sub(replace, text)


# ---- paths -----------------------------------------------------------------------------


def local_path(text: str, base_dir: Path) -> Path:
    # os.path.expanduser leaves '~unknown-user' alone; Path.expanduser would raise.
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base_dir / path


def _looked_for(written: str, path: Path) -> str:
    # Relative paths resolve against the directory konduktor runs in, as in Konduktor.
    return "" if written == str(path) else f" (looked for {path})"


def workdir_value(value: Any) -> Any:
    if isinstance(value, dict):
        fail(compat.GIT_WORKDIR_MESSAGE)
    return value


def _kind(text: str, path: Path) -> str | None:
    """ "dir", "file" (anything else that exists) or None; a path the system cannot even
    look at (too long, a symlink loop) is refused with why."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        shown = text if len(text) <= 80 else f"{text[:77]}..."
        fail(f"{shown!r} cannot be used as a path: {reason}")
    import stat

    return "dir" if stat.S_ISDIR(info.st_mode) else "file"


def existing_dir(text: str, info: Any) -> Path:
    path = local_path(text, info.context["base_dir"])
    kind = _kind(text, path)
    if kind is None:
        fail(f"directory {text!r} does not exist{_looked_for(text, path)}")
    if kind != "dir":
        fail(f"{text!r} is not a directory ({path})")
    resolved = path.resolve()
    _not_the_system(text, resolved)
    return _looked_at(info, text, resolved, kind)


def mount_source_value(value: Any) -> Any:
    """SkyPilot storage mounts (a mapping with source/name/store/mode) are cloud storage."""
    if isinstance(value, dict):
        fail(compat.CLOUD_STORAGE_MESSAGE)
    return value


def existing_source(text: str, info: Any) -> Path:
    if text.strip().lower().startswith(compat.CLOUD_STORAGE_SCHEMES) or "://" in text:
        fail(f"{compat.CLOUD_STORAGE_MESSAGE} (got {text!r})")
    path = local_path(text, info.context["base_dir"])
    kind = _kind(text, path)
    if kind is None:
        fail(f"local source {text!r} does not exist{_looked_for(text, path)}")
    resolved = path.resolve()
    _not_the_system(text, resolved)
    return _looked_at(info, text, resolved, kind)


# The kernel's views, not files: rsync would read /proc's and /sys's endless or changing
# files and copy /dev's device nodes. `workdir: /` would copy all of them, and the disks.
_PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")


def _not_the_system(text: str, resolved: Path) -> None:
    """A workdir or file_mounts source is copied whole for every job: refuse the root of the
    filesystem and the kernel's pseudo-filesystems (a directory under /dev, such as a
    /dev/shm scratch directory, is data and is fine)."""
    where = str(resolved)
    if where == "/":
        fail(
            f"{text!r} is the root of the filesystem: it is copied whole for each job, "
            "/proc, /sys and /dev included; give your project's directory"
        )
    for root in _PSEUDO_FILESYSTEMS:
        exact = where == root
        if exact or (root != "/dev" and where.startswith(root + "/")):
            fail(f"{text!r} is in {root}, a view the kernel gives, not files to copy")


def _looked_at(info: Any, text: str, resolved: Path, kind: str) -> Path:
    """Note what a local path was found to be, when the caller keeps a list (the task cache
    checks these facts again before it reuses a validation: see task/cache.py)."""
    facts = info.context.get("looked_at")
    if facts is not None:
        facts.append((text, str(resolved), kind))
    return resolved


def not_a_mapping(what: str | None, value: Any) -> NoReturn:
    fail(f"expected a mapping of {what}, got {describe(value)}")


def bad_destination(value: Any, _field: str) -> str:
    return f"destination must be {MOUNT_ALLOWED}, got {describe(value)}"


def destination(dest: str) -> str:
    """An absolute path or one under ``~/``, never escaping with '..' nor landing in (or
    replacing) the root or a system directory."""
    if CONTROL_RE.search(dest):
        fail(f"destination contains control characters: {dest!r}")
    if dest.startswith("~/"):
        rest = dest[2:]
    elif dest.startswith("/"):
        rest = dest
    else:
        fail(f"destination must be {MOUNT_ALLOWED}, got {dest!r}")
    if ".." in rest.split("/"):
        fail(f"destination must not contain '..', got {dest!r}; use {MOUNT_ALLOWED}")
    normalized = posixpath.normpath("/" + rest.lstrip("/"))
    if dest.startswith("~/"):
        if normalized == "/":
            fail(f"destination must be a path below your home like '~/data', got {dest!r}")
        return dest
    top = normalized.split("/")[1]
    if normalized == "/" or top in _SYSTEM_ROOTS:
        where = "the root directory" if normalized == "/" else f"the system directory /{top}"
        fail(f"destination {dest!r} is {where}; use {MOUNT_ALLOWED}")
    return dest


# ---- checkpoints ---------------------------------------------------------------------

# Signals a task may save its work on. Not KILL/STOP (they cannot be caught) and not CONT
# (Slurm sends it with every stop and start).
CHECKPOINT_SIGNALS = ("HUP", "INT", "QUIT", "USR1", "USR2", "ALRM", "TERM")
CHECKPOINT_SIGNAL_EXPECTED = (
    f"a signal name: one of {', '.join('SIG' + name for name in CHECKPOINT_SIGNALS)}"
)
CHECKPOINT_GRACE_MAX = 65535  # sbatch --signal=SIG@seconds takes at most this


def checkpoint_signal(text: str) -> str:
    """'SIGUSR2', 'usr2', 'USR2' -> 'USR2' (what scancel and sbatch take)."""
    name = text.strip().upper().removeprefix("SIG")
    if name not in CHECKPOINT_SIGNALS:
        fail(f"expected {CHECKPOINT_SIGNAL_EXPECTED}, got {describe(text)}")
    return name


def checkpoint_dir(text: str) -> str:
    """Where the task keeps its checkpoint on the nodes: absolute or under ``~/``."""
    if not text.strip() or CONTROL_RE.search(text):
        fail(f"expected a path on the cluster like '~/ckpt/run1', got {describe(text)}")
    if not (text.startswith("/") or text.startswith("~/")):
        fail(f"must be a path on the cluster, absolute or under your home ('~/ckpt'), got {text!r}")
    if ".." in text.split("/"):
        fail(f"must not contain '..', got {text!r}")
    return text


# ---- accelerators ----------------------------------------------------------------------


def _accelerator_text(text: str, written: Any) -> Accelerator:
    name, colon, count_text = text.strip().partition(":")
    name, count_text = name.strip(), count_text.strip()
    if name.lower().startswith("tpu"):
        fail(f"{compat.TPU_MESSAGE}; got {written!r}")
    if _ACCEL_NAME_RE.fullmatch(name) and not _ACCEL_TIMES_RE.fullmatch(name):
        if not colon:
            return Accelerator(name, 1)
        if _UINT_RE.fullmatch(count_text):
            if int(count_text) >= 1:
                return Accelerator(name, int(count_text))
            fail(f"accelerator count must be an integer >= 1, got {written!r}")
    fail(f"{ACCEL_EXPECTED}, got {written!r}")


def _alternatives(names: list[str]) -> NoReturn:
    fail(compat.ALTERNATIVES_MESSAGE.format(names=", ".join(names)))


def accelerator(value: Any) -> Accelerator:
    """'H100:8', 'H100' (one), {H100: 8}, {H100} (one), and SkyPilot's one-element list or set
    (['H100:8'], {H100:8}). Several types (a list, a set or a mapping of alternatives) and
    TPUs are refused: Slurm asks for one GPU type."""
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], str):
            return _accelerator_text(value[0], value)
        if len(value) > 1 and all(isinstance(item, str) for item in value):
            _alternatives([str(item) for item in value])
        fail(f"{ACCEL_EXPECTED}, got {describe(value)} (pick one accelerator type)")
    if isinstance(value, dict):
        if len(value) > 1:
            _alternatives([f"{k}:{v}" if v is not None else str(k) for k, v in value.items()])
        if not value:
            fail(f"{ACCEL_EXPECTED}, got an empty mapping")
        ((name, count),) = value.items()
        if isinstance(name, str) and count is None and ":" in name:
            return _accelerator_text(name, name)  # SkyPilot's set form {H100:8}
        if not isinstance(name, str) or not _ACCEL_NAME_RE.fullmatch(name):
            fail(f"{ACCEL_EXPECTED}, got the name {describe(name)}")
        if name.lower().startswith("tpu"):
            fail(f"{compat.TPU_MESSAGE}; got {name!r}")
        if count is None:  # '{H100}' is YAML for {H100: null}: one of them
            return Accelerator(name, 1)
        number = whole_number(count)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            fail(f"accelerator count must be an integer >= 1, got {describe(count)}")
        return Accelerator(name, int(number))
    if isinstance(value, str):
        return _accelerator_text(value, value)
    fail(f"{ACCEL_EXPECTED}, got {describe(value)}")


# ---- Slurm -----------------------------------------------------------------------------


def is_time_limit(text: str) -> bool:
    return text.strip().lower() in NO_TIME_LIMIT or durations.slurm_time_parts(text) is not None


def time_limit(text: str) -> str:
    """A Slurm --time value, checked the way Slurm reads it (ranges, zero, its maximum)."""
    text = text.strip()
    if text.lower() in NO_TIME_LIMIT:
        return "UNLIMITED"
    try:
        durations.slurm_time_seconds(text)
    except durations.DurationError as exc:
        fail(str(exc))
    return text


def seconds_as_time_limit(seconds: int) -> str:
    """Whole seconds as Slurm's ``D-HH:MM:SS``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def sbatch_options(value: Any, info: Any) -> tuple[tuple[str, str | None], ...]:
    """``{exclusive: null, mail-type: END}`` or ``['--exclusive', '--mail-type=END']``
    -> (("exclusive", None), ("mail-type", "END")): (option name, value or None for a flag),
    in the order written. Each bad entry is reported on its own line."""
    issues: list[tuple[tuple[Any, ...], str, tuple[Any, ...] | None]] = []
    entries: list[tuple[tuple[Any, ...], str, str | None]] = []  # (entry, option, value)
    if isinstance(value, dict):
        for option, raw in value.items():
            text = as_text(raw)
            if not isinstance(option, str):
                message = f"expected an sbatch option name, got {describe(option)}"
            elif isinstance(raw, bool):
                flag = option.lstrip("-")
                message = (
                    f"for a flag write '{flag}: null' (or '--{flag}' in the list form), "
                    "not true/false"
                )
            elif text is None or isinstance(text, str):  # null: a flag
                entries.append(((option,), option, text))
                continue
            else:
                message = f"expected a string or number value, got {describe(raw)}"
            issues.append(((option,), message, None))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                message = (
                    "expected an option like '--exclusive' or '--mail-type=END', "
                    f"got {describe(item)}"
                )
                issues.append(((index,), message, None))
                continue
            option, eq, text = item.strip().partition("=")
            entries.append(((index,), option, text if eq else None))
    else:
        fail(
            "expected a mapping of option: value (null for a flag) or a list like "
            f"['--exclusive', '--mail-type=END'], got {describe(value)}"
        )

    set_resources = (info.context or {}).get("set_resources", ())
    seen: dict[str, tuple[Any, ...]] = {}
    options: list[tuple[str, str | None]] = []
    for entry, written, text in entries:
        name, problem = _sbatch_problem(written, text, set_resources)
        if problem is None and name in seen:
            issues.append((entry, f"--{name} is given twice (also{{also}}); keep one", seen[name]))
        elif problem is not None or name is None:
            issues.append((entry, problem or "not an sbatch option", None))
        else:
            seen[name] = entry
            options.append((name, text))
    if issues:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("several", "several problems", {"issues": issues})
    return tuple(options)


def _sbatch_problem(
    written: str, text: str | None, set_resources: Any
) -> tuple[str | None, str | None]:
    """(the option sbatch will read, or None; why it cannot be used, or None)."""
    from konduktor_slurm.task import sbatch_options as sbatch

    if not written.lstrip("-") or CONTROL_RE.search(written) or " " in written:
        return (
            None,
            f"expected an sbatch option name like 'exclusive' or 'mail-type', got {written!r}",
        )
    name, problem = sbatch.resolve(written)
    if name is None:
        return None, problem
    bare = written.lstrip("-")
    shown = f"--{name}" if bare == name else f"{written!r} (sbatch reads it as --{name})"
    if name in sbatch.MANAGED:
        return name, f"{shown} is set by konduktor from {sbatch.MANAGED[name]}; remove it"
    if name in sbatch.DEDICATED:
        return name, f"{shown} has its own field: use {sbatch.DEDICATED[name]}"
    resource = sbatch.RESOURCE.get(name)
    if resource is not None and resource in set_resources:
        return name, f"{shown} conflicts with resources.{resource}; set it in one place"
    if text is not None and (not text or CONTROL_RE.search(text)):
        # The value lands on an '#SBATCH' line: a newline would start a new script line.
        problem = "is empty" if not text else "contains control characters (e.g. a newline)"
        return name, f"value of --{name} {problem}: {text!r}"
    if text is not None and any(char.isspace() for char in text):
        return name, (
            f"value of --{name} cannot contain spaces (an #SBATCH line splits on them): {text!r}"
        )
    return name, None


# ---- SkyPilot on Slurm ------------------------------------------------------------------

# The options with a field of their own in the slurm: section, which reads their values.
SKY_FIELD_OF_OPTION: dict[str, str] = {
    "time": "time_limit",
    "account": "account",
    "qos": "qos",
    "constraint": "constraint",
}


def sky_option_name(key: str) -> str | None:
    """The sbatch option SkyPilot writes for a ``config.slurm.sbatch_options`` key (its
    underscores become hyphens), as sbatch resolves it; None if it is none."""
    from konduktor_slurm.task import sbatch_options as sbatch

    return sbatch.resolve(key.strip().replace("_", "-")).name


class SkyField(NamedTuple):
    """An sbatch option of SkyPilot's that konduktor-slurm has a field for: --time ->
    time_limit."""

    field: str
    value: str
    option: str
    written: str  # the key as written in the task


@dataclass(frozen=True)
class SkySbatchOptions:
    """SkyPilot's ``config.slurm.sbatch_options``, read as SkyPilot reads them: each entry as
    (option, value or None for a flag, the key as written)."""

    options: tuple[tuple[str, str | None, str], ...] = ()
    fields: tuple[SkyField, ...] = ()


def sky_sbatch_options(
    value: Any, info: Any, read_field: Callable[[str, str], Any]
) -> SkySbatchOptions:
    """``{time: "24:00:00", account: ai, exclusive: true}``: SkyPilot's form. Underscores in
    a key become hyphens, ``true`` is a flag, ``false`` and ``null`` write nothing; the
    options SkyPilot sets itself are dropped (validation warns), the ones with a field of
    their own go to that field, read by ``read_field(field, text)`` as that field reads a
    value. Each bad entry is reported on its own line."""
    if not isinstance(value, dict):
        fail(
            "expected a mapping of sbatch option: value, as SkyPilot reads it (true for a "
            f"flag), like {{time: '24:00:00', exclusive: true}}, got {describe(value)}"
        )
    from konduktor_slurm.task import sbatch_options as sbatch

    issues: list[tuple[tuple[Any, ...], str, tuple[Any, ...] | None]] = []
    options: list[tuple[str, str | None, str]] = []
    fields: list[SkyField] = []
    seen: dict[str, tuple[Any, ...]] = {}
    set_resources = (info.context or {}).get("set_resources", ())
    for key, raw in value.items():
        entry = (key,)
        if raw is None or raw is False:
            continue  # SkyPilot writes no line for these
        text = None if raw is True else as_text(raw)
        if not isinstance(key, str) or not key.strip():
            issues.append((entry, f"expected an sbatch option name, got {describe(key)}", None))
            continue
        if raw is not True and not isinstance(text, str):
            message = f"expected a string, a number or true (a flag), got {describe(raw)}"
            issues.append((entry, message, None))
            continue
        written = key.strip().replace("_", "-")  # as SkyPilot writes it: sky_option_name
        name = sbatch.resolve(written).name
        if name in compat.SKY_PROTECTED_SBATCH:
            continue  # dropped, as SkyPilot drops it: validation warns
        if name is not None and name in seen:
            issues.append((entry, f"--{name} is given twice (also{{also}}); keep one", seen[name]))
            continue
        if name in SKY_FIELD_OF_OPTION:
            field = SKY_FIELD_OF_OPTION[name]
            if text is None:
                issues.append((entry, f"--{name} needs a value, not true", None))
                continue
            try:
                fields.append(SkyField(field, read_field(field, text), name, key))
            except ValueError as exc:  # fail() raises PydanticCustomError, a ValueError
                issues.append((entry, f"--{name}: {_message(exc)}", None))
                continue
            seen[name] = entry
            continue
        name, problem = _sbatch_problem(written, text, set_resources)
        if problem is not None or name is None:
            issues.append((entry, problem or "not an sbatch option", None))
            continue
        seen[name] = entry
        options.append((name, text, key))
    if issues:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("several", "several problems", {"issues": issues})
    return SkySbatchOptions(tuple(options), tuple(fields))


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    return message() if callable(message) else str(exc)


INFRA_EXPECTED = (
    "expected 'slurm', 'slurm/<cluster>' or 'slurm/<cluster>/<partition>' ('*' for any)"
)


def infra_parts(text: str) -> list[str]:
    """SkyPilot's ``infra`` as its parts: ``slurm/mycluster/gpu`` -> slurm, mycluster, gpu."""
    return [part.strip() for part in text.strip().strip("/").split("/")]
