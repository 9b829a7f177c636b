"""Konduktor task YAML -> a validated, immutable ``Task``.

Everything the launch path needs to know about a task is decided here, up front, so that a
bad task fails on the user's machine with a message that points at the file, line and field,
instead of failing later inside Slurm.

Design notes (why it looks like this):

* The schema (which keys exist, their types, ranges, patterns and defaults) is declared as
  pydantic models in ``_schema()``. Each constrained type carries its own wording
  (``_expect("an integer >= 1")``), so whatever built-in check fails, the user reads
  "expected an integer >= 1, got 'two'"; Konduktor-specific forms (``H100:8``, Slurm time
  limits, sbatch options, file mount destinations) are small validator functions that raise
  their message verbatim. ``_report_errors`` is the one place that turns pydantic's errors into
  ``TaskIssue``s: it maps each error's path to a file line (or to the command line), and words
  the few errors that need it (unknown keys with did-you-mean hints, a missing ``run``).
* pydantic is imported, and the models are built, only when a task is parsed (and PyYAML
  likewise): commands that never parse a task must not pay ~100 ms of imports.
* Cross-field rules stay outside the models, so that they are reported together with every
  other issue: Slurm fields set both in ``resources:`` and in ``slurm:``, and sbatch options
  that fight a resource (``--mem`` when ``resources.memory`` is set).
* YAML positions come from the composed node tree (a SafeLoader subclass), keyed by the path of
  each key, e.g. ``("resources", "accelerators")``. Overrides from the command line are
  applied to the raw data *before* validation and remember where they came from, so a bad
  ``--gpus`` is reported exactly like a bad ``resources.accelerators``, but located on the
  command line.
* YAML 1.1 (PyYAML) turns some plain scalars into numbers the user never meant: an unquoted
  ``time_limit: 4:00:00`` is the base-60 integer 14400 and ``VERSION: 1.10`` is the float 1.1.
  Such values remember how they were written (``.spelling``), and where a field is really text
  that spelling is used instead.
"""

from __future__ import annotations

import datetime
import functools
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

if TYPE_CHECKING:
    import yaml

__all__ = [
    "Accelerator",
    "Resources",
    "SlurmOptions",
    "Task",
    "TaskError",
    "TaskIssue",
    "TaskOverrides",
    "load_task",
    "parse_task",
]

# A position inside the YAML document: mapping keys and list indices from the root.
Loc = tuple[Any, ...]

COMMAND_LINE = "command line"
NAME_MAX_LEN = 63

# Konduktor's own name rule (kept identical so a task name valid there is valid here).
_NAME_RE = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")
_ENV_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SLURM_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_OPTION_NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
# GPU model names all start with a letter (H100, A100-80GB, L40S, MI300X, RTX4090); requiring
# that is what makes '8xH100' an error instead of a GPU model called '8xH100'.
_ACCEL_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# 'H100x8' would otherwise be a valid bare model name (count 1); it is almost surely a typo.
_ACCEL_TIMES_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\d[xX*]\d+")
_UINT_RE = re.compile(r"\d+")
_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MEMORY_UNIT_RE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(?:[GgMmTtKk][Ii]?[Bb]?)\+?")
# Plain keys are shown as dotted paths; anything else (file_mounts destinations, odd env
# names) is shown quoted in brackets so the field name stays unambiguous.
_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# Slurm's --time formats. Each entry: regex, and which groups are days/hours/minutes/seconds.
_TIME_FORMATS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"(\d+)"), ("m",)),
    (re.compile(r"(\d+):(\d+)"), ("m", "s")),
    (re.compile(r"(\d+):(\d+):(\d+)"), ("h", "m", "s")),
    (re.compile(r"(\d+)-(\d+)"), ("d", "h")),
    (re.compile(r"(\d+)-(\d+):(\d+)"), ("d", "h", "m")),
    (re.compile(r"(\d+)-(\d+):(\d+):(\d+)"), ("d", "h", "m", "s")),
)

# The keys allowed at each level, in the order messages list them (the models in _schema()
# declare the same fields; a unit test keeps the two in step).
TOP_LEVEL_FIELDS = (
    "name",
    "run",
    "setup",
    "envs",
    "workdir",
    "file_mounts",
    "num_nodes",
    "resources",
    "slurm",
)
SLURM_FIELDS = ("partition", "account", "qos", "time_limit", "constraint", "sbatch_options")
# Accepted for Konduktor compatibility and ignored, with one warning each.
KONDUKTOR_ONLY_RESOURCE_FIELDS = ("image_id", "labels", "disk_size")
RESOURCE_FIELDS = (
    "cpus",
    "memory",
    "accelerators",
    "job_config",
    *SLURM_FIELDS,
    *KONDUKTOR_ONLY_RESOURCE_FIELDS,
)
JOB_CONFIG_FIELDS = ("max_restarts", "completions")

# System directories a file mount must never land in (or replace).
_SYSTEM_ROOTS = frozenset(
    {"bin", "boot", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr", "var"}
)

# sbatch options that konduktor writes itself; a user value would silently fight ours.
_MANAGED_SBATCH: dict[str, str] = {
    "job-name": "name",
    "J": "name",
    "nodes": "num_nodes",
    "N": "num_nodes",
    "ntasks": "num_nodes (one task per node)",
    "n": "num_nodes (one task per node)",
    "ntasks-per-node": "num_nodes (one task per node)",
    "output": "its log files (read by `konduktor logs`)",
    "o": "its log files (read by `konduktor logs`)",
    "error": "its log files (read by `konduktor logs`)",
    "e": "its log files (read by `konduktor logs`)",
    "open-mode": "its log files (read by `konduktor logs`)",
    "gres": "resources.accelerators",
    "gpus": "resources.accelerators",
    "G": "resources.accelerators",
    "wrap": "run",
    "parsable": "its own job submission",
    "chdir": "workdir",
    "D": "workdir",
}
# sbatch options that have a dedicated field; two ways to say one thing invite conflicts.
_DEDICATED_SBATCH: dict[str, str] = {
    "partition": "slurm.partition",
    "p": "slurm.partition",
    "account": "slurm.account",
    "A": "slurm.account",
    "qos": "slurm.qos",
    "q": "slurm.qos",
    "time": "slurm.time_limit",
    "t": "slurm.time_limit",
    "constraint": "slurm.constraint",
    "C": "slurm.constraint",
}
# These only conflict when the matching resource is set: '--mem=0' (all of the node's memory)
# has no equivalent in resources.memory, so it stays allowed on its own.
_RESOURCE_SBATCH: dict[str, str] = {
    "mem": "memory",
    "cpus-per-task": "cpus",
    "c": "cpus",
}

_ACCEL_EXPECTED = "expected '<NAME>:<COUNT>' like 'H100:8' or {H100: 8}"
_MOUNT_ALLOWED = "an absolute path like '/data/x' or a path under your home like '~/data'"
_TIME_EXPECTED = (
    "a Slurm time limit: minutes (30), 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS'"
)


# --------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------


class TaskIssue(NamedTuple):
    """One problem with a task: where it is, which field, and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class TaskError(Exception):
    """The task cannot be used. ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[TaskIssue]) -> None:
        self.issues: list[TaskIssue] = list(issues)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


@dataclass(frozen=True)
class Accelerator:
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
    cpus: int | None = None
    memory_gib: float | None = None
    accelerator: Accelerator | None = None
    max_restarts: int = 0


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    constraint: str | None = None
    # (option name without leading dashes, value or None for a flag), in the order written.
    sbatch_options: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Task:
    name: str
    run: str
    setup: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    # remote destination (as written) -> absolute local source path
    file_mounts: dict[str, Path] = field(default_factory=dict)
    num_nodes: int = 1
    resources: Resources = field(default_factory=Resources)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def resources_summary(self) -> str:
        """Konduktor-style one-liner, e.g. ``2x(8CPU, 32GiMEM, H100:8)``; ``1x(-)`` if unset."""
        res = self.resources
        parts: list[str] = []
        if res.cpus is not None:
            parts.append(f"{res.cpus}CPU")
        if res.memory_gib is not None:
            parts.append(f"{_format_number(res.memory_gib)}GiMEM")
        if res.accelerator is not None:
            parts.append(str(res.accelerator))
        return f"{self.num_nodes}x({', '.join(parts) or '-'})"


@dataclass
class TaskOverrides:
    """Command-line overrides, applied on top of the YAML before validation.

    Values are taken as typed on the command line (strings are fine for numbers).
    """

    name: str | None = None
    num_nodes: int | str | None = None
    cpus: int | str | None = None
    memory: float | str | None = None
    gpus: str | None = None  # like "H100:8"
    envs: list[str] = field(default_factory=list)  # "K=V", or "K" to take K from os.environ
    env_file: Path | None = None  # dotenv file: KEY=VALUE lines, '#' comments
    workdir: str | None = None  # relative to the current directory


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def load_task(path: Path, overrides: TaskOverrides | None = None) -> Task:
    """Read and validate a task YAML file. Raises ``TaskError`` listing every issue."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError([TaskIssue(source, None, "", "task file not found")]) from None
    except IsADirectoryError:
        raise TaskError([TaskIssue(source, None, "", "is a directory, not a task file")]) from None
    except UnicodeDecodeError as exc:
        msg = f"task file is not UTF-8 text ({exc.reason})"
        raise TaskError([TaskIssue(source, None, "", msg)]) from None
    except OSError as exc:
        msg = f"cannot read task file: {exc.strerror or exc}"
        raise TaskError([TaskIssue(source, None, "", msg)]) from None
    absolute = path.absolute()
    return _build_task(text, source, absolute.parent, overrides, absolute.resolve())


def parse_task(
    text: str,
    source: str = "<string>",
    base_dir: Path | None = None,
    overrides: TaskOverrides | None = None,
) -> Task:
    """Validate task YAML given as text. Relative paths resolve against ``base_dir``
    (default: the current directory). ``source`` only names the text in messages."""
    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    return _build_task(text, source, base, overrides, None)


# --------------------------------------------------------------------------------------
# YAML with positions
# --------------------------------------------------------------------------------------


@dataclass
class _Positions:
    """Where things are in the YAML text, keyed by path: 1-based lines of keys and values,
    and duplicate keys (which PyYAML would otherwise resolve silently to the last value)."""

    key_lines: dict[Loc, int] = field(default_factory=dict)
    value_lines: dict[Loc, int] = field(default_factory=dict)
    duplicates: list[tuple[Loc, int, int]] = field(default_factory=list)  # path, first, repeat
    root_line: int = 1


def _load_yaml(text: str, source: str) -> tuple[Any, _Positions]:
    """Parse the single YAML document in ``text``; syntax errors become a TaskError."""
    import yaml  # deferred: importing this module stays cheap for commands that never parse

    try:
        # The constructor already scans for unprintable characters, so it is inside the try.
        loader = _line_loader_class()(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, loader.positions
        loader.positions.root_line = node.start_mark.line + 1
        loader.record(node, (), set())
        return loader.construct_document(node), loader.positions
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    finally:
        loader.dispose()


# Numbers and dates that YAML typed from a plain scalar keep the text as written, for fields
# that are really text. Same class names, so messages still say "a date (2024-01-01)".
_SpelledInt = type("int", (int,), {})
_SpelledFloat = type("float", (float,), {})
_SpelledDate = type("date", (datetime.date,), {})
_SpelledDatetime = type("datetime", (datetime.datetime,), {})
_SpelledBytes = type("bytes", (bytes,), {})


def _spelled(value: Any, spelling: str) -> Any:
    out: Any
    if isinstance(value, datetime.datetime):
        out = _SpelledDatetime.combine(value.date(), value.timetz())
    elif isinstance(value, datetime.date):
        out = _SpelledDate(value.year, value.month, value.day)
    elif isinstance(value, float):
        out = _SpelledFloat(value)
    elif isinstance(value, bytes):
        out = _SpelledBytes(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        out = _SpelledInt(value)
    else:
        return value
    out.spelling = spelling
    return out


@functools.cache
def _line_loader_class() -> type[Any]:
    """The SafeLoader subclass, built on first use so that yaml is imported lazily."""
    import yaml

    class _LineLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.positions = _Positions()

        def record(self, node: yaml.Node, loc: Loc, seen: set[int]) -> None:
            # Aliases reuse a node: walk it once (guards recursive and exponential anchors);
            # later uses fall back to their parent's line, good enough for messages.
            if id(node) in seen:
                return
            seen.add(id(node))
            pos = self.positions
            pos.value_lines[loc] = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                first_seen: dict[Any, int] = {}
                for key_node, value_node in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # '<<: *anchor' — the merged keys keep the anchor's lines
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        continue  # construct_document reports unhashable keys properly
                    line = key_node.start_mark.line + 1
                    if key in first_seen:
                        pos.duplicates.append(((*loc, key), first_seen[key], line))
                    else:
                        first_seen[key] = line
                    pos.key_lines[(*loc, key)] = line
                    self.record(value_node, (*loc, key), seen)
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    self.record(item, (*loc, index), seen)

    def keep_spelling(construct: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def construct_spelled(loader: Any, node: Any) -> Any:
            value = construct(loader, node)
            return _spelled(value, node.value) if node.style is None else value

        return construct_spelled

    safe = yaml.constructor.SafeConstructor
    for tag, construct in (
        ("int", safe.construct_yaml_int),
        ("float", safe.construct_yaml_float),
        ("timestamp", safe.construct_yaml_timestamp),
        ("binary", safe.construct_yaml_binary),
    ):
        _LineLoader.add_constructor(f"tag:yaml.org,2002:{tag}", keep_spelling(construct))
    return _LineLoader


def _yaml_error(exc: yaml.YAMLError, source: str, text: str) -> TaskError:
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        what = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        return TaskError([TaskIssue(source, line, "", f"invalid YAML: {what}")])
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
        if exc.context and exc.problem:
            context = exc.context
            other = exc.context_mark
            if other is not None and mark is not None and other.line != mark.line:
                context += f" started on line {other.line + 1}"
            if exc.problem.startswith("but "):
                # e.g. "expected a single document in the stream, but found another document"
                message = f"invalid YAML: {exc.context}, {exc.problem}"
            else:
                message += f" ({context})"
        return TaskError([TaskIssue(source, line, "", message)])
    return TaskError([TaskIssue(source, None, "", f"invalid YAML: {exc}")])


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY_RE.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out


def _describe(value: Any) -> str:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sanitize_name(stem: str) -> str:
    """Turn a file stem into a valid task name ('my task!.yaml' -> 'my-task')."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", stem)
    name = re.sub(r"[._-]{3,}", "-", name)
    name = name.strip("._-")[:NAME_MAX_LEN].rstrip("._-")
    return name if _NAME_RE.fullmatch(name) else "task"


class _Origin(NamedTuple):
    """Where an overridden value came from (command line or env file)."""

    file: str
    line: int | None
    field: str


# --------------------------------------------------------------------------------------
# The checker: collects issues and warnings, knows where everything is
# --------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str, positions: _Positions) -> None:
        self.source = source
        self.key_lines = positions.key_lines
        self.value_lines = positions.value_lines
        self.origins: dict[Loc, _Origin] = {}
        self.issues: list[TaskIssue] = []
        self._warnings: list[tuple[int, str]] = []

    def line(self, loc: Loc) -> int | None:
        """Line of the key at ``loc`` (or of the list item), else of its nearest parent."""
        while loc:
            if loc in self.key_lines:
                return self.key_lines[loc]
            if isinstance(loc[-1], int) and loc in self.value_lines:
                return self.value_lines[loc]
            loc = loc[:-1]
        return None

    def origin(self, loc: Loc) -> _Origin | None:
        for end in range(len(loc), 0, -1):
            found = self.origins.get(loc[:end])
            if found is not None:
                return found
        return None

    def error(self, loc: Loc, message: str) -> None:
        origin = self.origin(loc)
        if origin is not None:
            self.issues.append(TaskIssue(origin.file, origin.line, origin.field, message))
        else:
            self.issues.append(TaskIssue(self.source, self.line(loc), _field_name(loc), message))

    def error_at(self, file: str, line: int | None, field_name: str, message: str) -> None:
        self.issues.append(TaskIssue(file, line, field_name, message))

    def warn(self, loc: Loc, message: str) -> None:
        line = self.line(loc)
        where = self.source if line is None else f"{self.source}:{line}"
        self._warnings.append((line or 0, f"{where}: {_field_name(loc)} {message}"))

    def warnings(self) -> tuple[str, ...]:
        # In file order, like the issues, whatever order the checks ran in.
        return tuple(text for _, text in sorted(self._warnings, key=lambda w: w[0]))

    def sorted_issues(self) -> list[TaskIssue]:
        # The task file's issues first, in file order; then env-file / command-line ones.
        return sorted(
            self.issues,
            key=lambda i: (i.file != self.source, i.file == COMMAND_LINE, i.line or 0),
        )


# --------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------


def _cli(flag: str) -> _Origin:
    return _Origin(COMMAND_LINE, None, flag)


def _apply_overrides(data: dict[Any, Any], ov: TaskOverrides, ck: _Checker) -> None:
    """Write overrides into the raw data and remember their origin for messages."""

    def put(loc: Loc, value: Any, origin: _Origin) -> None:
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

    if ov.name is not None:
        put(("name",), ov.name, _cli("--name"))
    if ov.num_nodes is not None:
        put(("num_nodes",), ov.num_nodes, _cli("--num-nodes"))
    if ov.cpus is not None:
        put(("resources", "cpus"), ov.cpus, _cli("--cpus"))
    if ov.memory is not None:
        put(("resources", "memory"), ov.memory, _cli("--memory"))
    if ov.gpus is not None:
        put(("resources", "accelerators"), ov.gpus, _cli("--gpus"))
    if ov.workdir is not None:
        # Relative to where the command runs, not to the YAML file.
        put(("workdir",), str(_local_path(ov.workdir, Path.cwd())), _cli("--workdir"))

    # Precedence: --env > --env-file > YAML envs (later writes win).
    if ov.env_file is not None:
        env_file = str(ov.env_file)
        for key, value, line in _read_env_file(Path(ov.env_file), ck):
            put(("envs", key), value, _Origin(env_file, line, "--env-file"))
    for item in ov.envs:
        key, eq, value = item.partition("=")
        if not eq:
            if key not in os.environ:
                ck.error_at(
                    COMMAND_LINE,
                    None,
                    "--env",
                    f"{key} is not set in your environment; give a value with --env {key}=VALUE",
                )
                continue
            value = os.environ[key]
        put(("envs", key), value, _cli("--env"))


def _read_env_file(path: Path, ck: _Checker) -> Iterator[tuple[str, str, int]]:
    """dotenv lines: KEY=VALUE, blank lines and '#' comments, optional 'export ', and one
    pair of matching quotes around the value. Values are otherwise verbatim: no escapes,
    no interpolation, no inline comments (a '#' inside a value is kept)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        ck.error_at(file, None, "--env-file", "file not found")
        return
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        ck.error_at(file, None, "--env-file", f"cannot read: {reason or exc}")
        return
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, eq, value = line.partition("=")
        if not eq:
            ck.error_at(file, number, "--env-file", f"expected KEY=VALUE, got {line!r}")
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        yield key, value, number


# --------------------------------------------------------------------------------------
# Value rules: the Konduktor-specific parts of the schema, as plain functions
# --------------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    """Reject a value; the user reads ``message`` exactly as given."""
    from pydantic_core import PydanticCustomError

    raise PydanticCustomError("task", message)


def _as_text(value: Any) -> Any:
    """Text fields take plain scalars as written ('1.10' stays '1.10', 2024-01-01 stays a
    string). Anything else is returned unchanged, for the string check to reject."""
    if value is None or isinstance(value, str | bool):
        return value
    spelling = getattr(value, "spelling", None)
    if spelling is not None:
        return spelling
    return str(value) if _is_number(value) else value


def _whole_number(value: Any) -> Any:
    """Integers may be written as strings: '8' -> 8."""
    if isinstance(value, str) and _UINT_RE.fullmatch(value.strip()):
        return int(value)
    return value


def _whole_number_plus(value: Any) -> Any:
    """Konduktor's 'at least' form: '8+' -> 8."""
    if isinstance(value, str) and value.strip().endswith("+"):
        value = value.strip()[:-1]
    return _whole_number(value)


def _gib(value: Any) -> Any:
    """Memory in GiB: a number, also written as a string, optionally with Konduktor's '+'."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip().removesuffix("+").rstrip()
        if _NUMBER_RE.fullmatch(text):
            return float(text)
    return value


def _memory_unit_hint(value: Any, _field: str) -> str:
    if isinstance(value, str) and _MEMORY_UNIT_RE.fullmatch(value):
        return " (memory is a plain number of GiB, no unit)"
    return ""


def _several_commands_hint(value: Any, field_name: str) -> str:
    if isinstance(value, list):
        return f" (for several commands use a block string: '{field_name}: |', one per line)"
    return ""


def _name_rule(text: str) -> str:
    if len(text) > NAME_MAX_LEN:
        _fail(f"is {len(text)} characters long; the limit is {NAME_MAX_LEN}")
    if not _NAME_RE.fullmatch(text):
        _fail(
            "expected letters and digits, optionally joined by '.', '_' or '-' "
            f"(like 'train-llama'), got {text!r}"
        )
    return text


def _required_script(text: str) -> str:
    if not text.strip():
        _fail("is empty: give the shell commands to run")
    return text


def _env_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _as_text(value)  # kept verbatim: the value is data for the job, never interpreted


def _env_value_given(value: Any) -> Any:
    if value is None:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("env_no_value", "has no value")  # worded in _MESSAGES
    return value


def _bad_env_name(value: Any, _field: str) -> str:
    return (
        f"{str(value)!r} is not a valid environment variable name "
        "(letters, digits and '_', not starting with a digit)"
    )


def _local_path(text: str, base_dir: Path) -> Path:
    # os.path.expanduser leaves '~unknown-user' alone; Path.expanduser would raise.
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base_dir / path


def _looked_for(written: str, path: Path) -> str:
    # Relative paths resolve against the YAML file's directory, which surprises people.
    return "" if written == str(path) else f" (looked for {path})"


def _existing_dir(text: str, info: Any) -> Path:
    path = _local_path(text, info.context["base_dir"])
    if not path.exists():
        _fail(f"directory {text!r} does not exist{_looked_for(text, path)}")
    if not path.is_dir():
        _fail(f"{text!r} is not a directory ({path})")
    return path.resolve()


def _existing_source(text: str, info: Any) -> Path:
    if "://" in text:
        _fail(f"only local paths can be mounted on Slurm, got the URL {text!r}")
    path = _local_path(text, info.context["base_dir"])
    if not path.exists():
        _fail(f"local source {text!r} does not exist{_looked_for(text, path)}")
    return path.resolve()


def _not_a_mapping(what: str | None, value: Any) -> NoReturn:
    _fail(f"expected a mapping of {what}, got {_describe(value)}")


def _bad_destination(value: Any, _field: str) -> str:
    return f"destination must be {_MOUNT_ALLOWED}, got {_describe(value)}"


def _destination(dest: str) -> str:
    """An absolute path or one under ``~/``, never escaping with '..' nor landing in (or
    replacing) the root or a system directory."""
    if _CONTROL_RE.search(dest):
        _fail(f"destination contains control characters: {dest!r}")
    if dest.startswith("~/"):
        rest = dest[2:]
    elif dest.startswith("/"):
        rest = dest
    else:
        _fail(f"destination must be {_MOUNT_ALLOWED}, got {dest!r}")
    if ".." in rest.split("/"):
        _fail(f"destination must not contain '..', got {dest!r}; use {_MOUNT_ALLOWED}")
    normalized = posixpath.normpath("/" + rest.lstrip("/"))
    if dest.startswith("~/"):
        if normalized == "/":
            _fail(f"destination must be a path below your home like '~/data', got {dest!r}")
        return dest
    top = normalized.split("/")[1]
    if normalized == "/" or top in _SYSTEM_ROOTS:
        where = "the root directory" if normalized == "/" else f"the system directory /{top}"
        _fail(f"destination {dest!r} is {where}; use {_MOUNT_ALLOWED}")
    return dest


def _accelerator(value: Any) -> Accelerator:
    """'H100:8', 'H100' (one), {H100: 8} or {H100} (one)."""
    if isinstance(value, dict):
        if len(value) != 1:
            kinds = ", ".join(str(k) for k in value) or "none"
            _fail(f"expected exactly one accelerator type like {{H100: 8}}, got {kinds}")
        ((name, count),) = value.items()
        if not isinstance(name, str) or not _ACCEL_NAME_RE.fullmatch(name):
            _fail(f"{_ACCEL_EXPECTED}, got the name {_describe(name)}")
        if count is None:  # '{H100}' is YAML for {H100: null}: one of them
            return Accelerator(name, 1)
        number = _whole_number(count)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            _fail(f"accelerator count must be an integer >= 1, got {_describe(count)}")
        return Accelerator(name, int(number))
    if isinstance(value, str):
        name, colon, count_text = value.strip().partition(":")
        name, count_text = name.strip(), count_text.strip()
        if _ACCEL_NAME_RE.fullmatch(name) and not _ACCEL_TIMES_RE.fullmatch(name):
            if not colon:
                return Accelerator(name, 1)
            if _UINT_RE.fullmatch(count_text):
                if int(count_text) >= 1:
                    return Accelerator(name, int(count_text))
                _fail(f"accelerator count must be an integer >= 1, got {value!r}")
        _fail(f"{_ACCEL_EXPECTED}, got {value!r}")
    hint = " (pick one accelerator type)" if isinstance(value, list) else ""
    _fail(f"{_ACCEL_EXPECTED}, got {_describe(value)}{hint}")


def _time_parts(text: str) -> dict[str, int] | None:
    """The days/hours/minutes/seconds of a Slurm --time value, or None if not one."""
    for pattern, units in _TIME_FORMATS:
        match = pattern.fullmatch(text.strip())
        if match is not None:
            return dict(zip(units, (int(g) for g in match.groups()), strict=True))
    return None


def _time_limit(text: str) -> str:
    text = text.strip()
    parts = _time_parts(text) or {}
    if (
        parts.get("s", 0) >= 60
        or ("h" in parts and parts.get("m", 0) >= 60)
        or ("d" in parts and parts["h"] >= 24)
    ):
        _fail(f"expected {_TIME_EXPECTED}; {text!r} has a field out of range")
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    if sum(units[unit] * count for unit, count in parts.items()) <= 0:
        _fail(f"time limit must be longer than zero, got {text!r}")
    return text


def _sbatch_options(value: Any, info: Any) -> tuple[tuple[str, str | None], ...]:
    """``{exclusive: null, mail-type: END}`` or ``['--exclusive', '--mail-type=END']``
    -> (("exclusive", None), ("mail-type", "END")): (option name, value or None for a flag),
    in the order written. Each bad entry is reported on its own line."""
    issues: list[tuple[Loc, str, Loc | None]] = []  # (entry, message, entry it repeats)
    entries: list[tuple[Loc, str, str | None]] = []  # (entry, option as written, value)
    if isinstance(value, dict):
        for option, raw in value.items():
            text = _as_text(raw)
            if not isinstance(option, str):
                message = f"expected an sbatch option name, got {_describe(option)}"
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
                message = f"expected a string or number value, got {_describe(raw)}"
            issues.append(((option,), message, None))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                message = (
                    "expected an option like '--exclusive' or '--mail-type=END', "
                    f"got {_describe(item)}"
                )
                issues.append(((index,), message, None))
                continue
            option, eq, text = item.strip().partition("=")
            entries.append(((index,), option, text if eq else None))
    else:
        _fail(
            "expected a mapping of option: value (null for a flag) or a list like "
            f"['--exclusive', '--mail-type=END'], got {_describe(value)}"
        )

    set_resources = (info.context or {}).get("set_resources", ())
    seen: dict[str, Loc] = {}
    options: list[tuple[str, str | None]] = []
    for entry, written, text in entries:
        name = written.lstrip("-")
        dashes = "-" if len(name) == 1 else "--"
        problem = _sbatch_problem(name, dashes, written, text, set_resources)
        if problem is None and name in seen:
            issues.append(
                (entry, f"{dashes}{name} is given twice (also{{also}}); keep one", seen[name])
            )
        elif problem is not None:
            issues.append((entry, problem, None))
        else:
            seen[name] = entry
            options.append((name, text))
    if issues:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("several", "several problems", {"issues": issues})
    return tuple(options)


def _sbatch_problem(
    name: str, dashes: str, written: str, text: str | None, set_resources: Any
) -> str | None:
    if name in _MANAGED_SBATCH:
        return f"{dashes}{name} is set by konduktor from {_MANAGED_SBATCH[name]}; remove it"
    if name in _DEDICATED_SBATCH:
        return f"{dashes}{name} has its own field: use {_DEDICATED_SBATCH[name]}"
    resource = _RESOURCE_SBATCH.get(name)
    if resource is not None and resource in set_resources:
        return f"{dashes}{name} conflicts with resources.{resource}; set it in one place"
    if not _OPTION_NAME_RE.fullmatch(name):
        return (
            "expected an sbatch option name of lower-case letters, digits and '-' "
            f"like 'exclusive' or 'mail-type', got {written!r}"
        )
    if text is not None and (not text or _CONTROL_RE.search(text)):
        # The value lands on an '#SBATCH' line: a newline would start a new script line.
        problem = "is empty" if not text else "contains control characters (e.g. a newline)"
        return f"value of {dashes}{name} {problem}: {text!r}"
    return None


# --------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------


@functools.cache
def _schema() -> Any:
    """The task schema as pydantic models, built on first use: pydantic is slow to import.

    How to read a type: ``expect(what)`` words any failure of the checks to its left as
    "expected <what>, got <value>"; validators to its right run on the accepted value and raise
    their own messages. ``Text`` lets a text field take a plain number as written (before the
    string check). Fields are strict (no '1' for True, no 2.0 for 2) and ``null`` means "not
    set" for every field but ``run``. A section's docstring says what it is a mapping of.
    """
    from types import SimpleNamespace
    from typing import Annotated

    from annotated_types import Ge, Gt
    from pydantic import AfterValidator as After
    from pydantic import (
        AllowInfNan,
        BaseModel,
        ConfigDict,
        ValidationError,
        WrapValidator,
        model_validator,
    )
    from pydantic import BeforeValidator as Before
    from pydantic import PlainValidator as Plain

    def reword(message: Callable[[Any, str], str]) -> Any:
        """Whichever check inside fails, the user reads ``message(value, field name)``."""

        def wrap(value: Any, handler: Callable[[Any], Any], info: Any) -> Any:
            try:
                return handler(value)
            except ValidationError:
                _fail(message(value, info.field_name))

        return WrapValidator(wrap)

    def expect(what: str, hint: Callable[[Any, str], str] = lambda value, field: "") -> Any:
        return reword(
            lambda value, field: f"expected {what}, got {_describe(value)}{hint(value, field)}"
        )

    def must(predicate: Callable[[Any], Any]) -> Any:
        def check(value: Any) -> Any:
            if not predicate(value):
                raise ValueError("rejected")  # reworded by the enclosing expect()/reword()
            return value

        return After(check)

    def mapping_of(what: str) -> Any:
        return Before(
            lambda value: value if isinstance(value, dict) else _not_a_mapping(what, value)
        )

    def slurm_name(kind: str) -> Any:
        what = f"a Slurm {kind} name (letters, digits, '_', '.', '-')"
        return Annotated[str, must(_SLURM_NAME_RE.fullmatch), expect(what), Text]

    Text = Before(_as_text)
    Name = Annotated[str, Text, expect("a task name like 'train-llama'"), After(_name_rule)]
    Script = Annotated[str, expect("a string of shell commands", _several_commands_hint)]
    Run = Annotated[Script, After(_required_script), Before(lambda v: "" if v is None else v)]
    Setup = Annotated[Script, After(lambda text: text if text.strip() else None)]
    EnvName = Annotated[str, must(_ENV_NAME_RE.fullmatch), reword(_bad_env_name)]
    EnvValue = Annotated[
        str, Before(_env_text), expect("a string, number or true/false"), Before(_env_value_given)
    ]
    Envs = Annotated[dict[EnvName, EnvValue], mapping_of("NAME: value environment variables")]
    LocalPath = Annotated[str, must(lambda text: text.strip() and "\0" not in text)]
    Workdir = Annotated[LocalPath, expect("a path to a local directory"), After(_existing_dir)]
    MountDestination = Annotated[str, must(bool), reword(_bad_destination), After(_destination)]
    MountSource = Annotated[LocalPath, expect("a local source path"), After(_existing_source)]
    FileMounts = Annotated[
        dict[MountDestination, MountSource], mapping_of("remote destination: local source paths")
    ]
    NumNodes = Annotated[int, Ge(1), Before(_whole_number), expect("an integer >= 1")]
    Cpus = Annotated[
        int, Ge(1), Before(_whole_number_plus), expect("a whole number of CPUs like 8 or '8+'")
    ]
    MemoryGiB = Annotated[
        float,
        Gt(0),
        AllowInfNan(False),
        Before(_gib),
        expect("a positive number of GiB like 32 or '32+'", _memory_unit_hint),
    ]
    MaxRestarts = Annotated[int, Ge(0), Before(_whole_number), expect("an integer >= 0")]
    Accelerators = Annotated[Accelerator, Plain(_accelerator)]
    TimeLimit = Annotated[str, must(_time_parts), Text, expect(_TIME_EXPECTED), After(_time_limit)]
    Constraint = Annotated[
        str,
        must(lambda text: text.strip() and not _CONTROL_RE.search(text)),
        Text,
        expect("a Slurm constraint like 'a100&ib'"),
        After(lambda text: text.strip()),
    ]
    SbatchOptions = Annotated[tuple[tuple[str, str | None], ...], Plain(_sbatch_options)]

    class Section(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        @model_validator(mode="before")
        @classmethod
        def _mapping(cls, value: Any) -> Any:
            return value if isinstance(value, dict) else _not_a_mapping(cls.__doc__, value)

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

        max_restarts: MaxRestarts | None = None
        completions: Any = None  # Konduktor-only: ignored, with a warning

    class Hardware(Section):
        cpus: Cpus | None = None
        memory: MemoryGiB | None = None
        accelerators: Accelerators | None = None
        job_config: JobConfig | None = None

    class ResourcesSection(SlurmSection, Hardware):  # fields: Hardware's, SlurmSection's, these
        """resource fields (cpus, memory, accelerators, ...)"""

        image_id: Any = None  # Konduktor-only: ignored, with a warning
        labels: Any = None  # Konduktor-only
        disk_size: Any = None  # Konduktor-only

    class TaskSchema(Section):
        name: Name | None = None  # default: from the file name
        run: Run
        setup: Setup | None = None
        envs: Envs | None = None
        workdir: Workdir | None = None
        file_mounts: FileMounts | None = None
        num_nodes: NumNodes | None = None  # default: 1
        resources: ResourcesSection | None = None
        slurm: SlurmSection | None = None

    return SimpleNamespace(
        Task=TaskSchema,
        Resources=ResourcesSection,
        Slurm=SlurmSection,
        JobConfig=JobConfig,
        Error=ValidationError,
    )


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _build_task(
    text: str,
    source: str,
    base_dir: Path,
    overrides: TaskOverrides | None,
    source_path: Path | None,
) -> Task:
    data, positions = _load_yaml(text, source)

    if data is None:
        msg = "the task file is empty; a task needs at least a 'run:' command"
        raise TaskError([TaskIssue(source, None, "", msg)])
    if not isinstance(data, dict):
        msg = (
            "expected a mapping of task fields (name, resources, run, ...) at the top level, "
            f"got {_describe(data)}"
        )
        raise TaskError([TaskIssue(source, positions.root_line, "", msg)])

    ck = _Checker(source, positions)
    for loc, first, repeat in positions.duplicates:
        ck.error_at(
            source,
            repeat,
            _field_name(loc),
            f"duplicate key: also set on line {first}; only one value can be used",
        )
    if overrides is not None:
        _apply_overrides(data, overrides, ck)

    if source_path is not None:
        default_name = _sanitize_name(source_path.stem)
    elif not source.startswith("<"):
        default_name = _sanitize_name(Path(source).stem)
    else:
        default_name = "task"

    schema = _schema()
    context = {"base_dir": base_dir}
    context["set_resources"] = _set_resources(schema, data, context)
    model = None
    try:
        model = schema.Task.model_validate(data, context=context)
    except schema.Error as exc:
        _report_errors(ck, exc.errors(include_url=False), data)
    _check_slurm_conflicts(ck, schema, data, context)

    if ck.issues or model is None:
        raise TaskError(ck.sorted_issues())
    return _to_task(ck, schema, model, default_name, source_path)


def _validated(model: Any, key: str, value: Any, context: dict[str, Any]) -> Any:
    """``value`` validated as field ``key`` of ``model``; None if it is not valid."""
    try:
        return getattr(model.model_validate({key: value}, context=context), key)
    except _schema().Error:
        return None


def _set_resources(schema: Any, data: dict[Any, Any], context: dict[str, Any]) -> frozenset[str]:
    """The resources validly set, which some sbatch options would conflict with."""
    res = data.get("resources")
    if not isinstance(res, dict):
        return frozenset()
    return frozenset(
        key
        for key in ("cpus", "memory")
        if res.get(key) is not None and _validated(schema.Resources, key, res[key], context)
    )


def _check_slurm_conflicts(
    ck: _Checker, schema: Any, data: dict[Any, Any], context: dict[str, Any]
) -> None:
    """Slurm fields may be written under ``resources:`` too, but not differently in both."""
    section, res = data.get("slurm"), data.get("resources")
    if not isinstance(section, dict) or not isinstance(res, dict):
        return
    for key in SLURM_FIELDS:
        if section.get(key) is None or res.get(key) is None:
            continue
        here = _validated(schema.Slurm, key, section[key], context)
        there = _validated(schema.Resources, key, res[key], context)
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


def _to_task(
    ck: _Checker, schema: Any, model: Any, default_name: str, source_path: Path | None
) -> Task:
    res = model.resources or schema.Resources()
    section = model.slurm or schema.Slurm()
    job_config = res.job_config or schema.JobConfig()
    for key in KONDUKTOR_ONLY_RESOURCE_FIELDS:
        if key in res.model_fields_set:
            ck.warn(("resources", key), "is ignored on Slurm (Konduktor-only field)")
    if "completions" in job_config.model_fields_set:
        ck.warn(
            ("resources", "job_config", "completions"),
            "is ignored on Slurm (Konduktor-only field)",
        )
    # Set in slurm: or in resources: (where both, they agree: see _check_slurm_conflicts).
    slurm = {
        key: getattr(res, key) if getattr(section, key) is None else getattr(section, key)
        for key in SLURM_FIELDS
    }
    return Task(
        name=default_name if model.name is None else model.name,
        run=model.run,
        setup=model.setup,
        envs=model.envs or {},
        workdir=model.workdir,
        file_mounts=model.file_mounts or {},
        num_nodes=model.num_nodes or 1,
        resources=Resources(
            cpus=res.cpus,
            memory_gib=res.memory,
            accelerator=res.accelerators,
            max_restarts=job_config.max_restarts or 0,
        ),
        slurm=SlurmOptions(**{**slurm, "sbatch_options": slurm["sbatch_options"] or ()}),
        source=source_path,
        warnings=ck.warnings(),
    )


# --------------------------------------------------------------------------------------
# pydantic's errors -> TaskIssues
# --------------------------------------------------------------------------------------

# The errors that are worded here; every other error already carries its final message.
_MESSAGES = {
    "missing": "missing: give the shell commands to run, e.g. 'run: python train.py'",  # run
    "env_no_value": (
        "has no value: give it a value here, or on the command line with --env {key} "
        "(takes it from your environment) or --env {key}=VALUE"
    ),
}


def _report_errors(ck: _Checker, errors: list[Any], data: dict[Any, Any]) -> None:
    rejected: set[Loc] = set()  # env entries with a bad name: their value is not checked
    for loc, is_key, error in _in_check_order(data, errors):
        kind = error["type"]
        if kind in _UNKNOWN_KEY:
            ck.error(loc, _unknown_field(loc))
        elif is_key and loc[:1] == ("envs",):
            rejected.add(loc)
            ck.error(loc, error["msg"])
        elif loc in rejected:
            continue
        elif kind == "several":  # one error per entry, e.g. of sbatch_options
            for entry, message, repeats in error["ctx"]["issues"]:
                if repeats is not None:
                    line = ck.line((*loc, *repeats))
                    message = message.replace("{also}", f" on line {line}" if line else "")
                ck.error((*loc, *entry), message)
        elif kind in _MESSAGES:
            ck.error(loc, _MESSAGES[kind].format(key=loc[-1]))
        else:
            ck.error(loc, error["msg"])


_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")


def _in_check_order(data: Any, errors: list[Any]) -> list[tuple[Loc, bool, Any]]:
    """Errors as (path in the YAML data, about a mapping key?, error), with each level's
    unknown keys first, as they are read (pydantic lists them after the known fields)."""
    ordered: list[tuple[Loc, bool, Any]] = []
    for error in errors:
        loc, is_key = _data_loc(data, error["loc"])
        at = len(ordered)
        if error["type"] in _UNKNOWN_KEY:
            parent = loc[:-1]
            at = next(
                (
                    i
                    for i, (other, _, err) in enumerate(ordered)
                    if other[: len(parent)] == parent
                    and not (err["type"] in _UNKNOWN_KEY and other[:-1] == parent)
                ),
                at,
            )
        ordered.insert(at, (loc, is_key, error))
    return ordered


def _data_loc(data: Any, error_loc: Sequence[Any]) -> tuple[Loc, bool]:
    """pydantic's path of an error -> the path of keys in the YAML data (pydantic shows some
    keys differently, e.g. null as 'None'), and whether the error is about a mapping key."""
    parts = list(error_loc)
    is_key = parts[-1:] == ["[key]"]
    if is_key:
        parts.pop()
    loc: list[Any] = []
    node = data
    for part in parts:
        if isinstance(node, dict):
            same = [key for key in node if key == part or str(key) == str(part)]
            part = next((key for key in same if type(key) is type(part)), [*same, part][0])
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        loc.append(part)
    return tuple(loc), is_key


def _unknown_field(loc: Loc) -> str:
    """Suggest the closest key allowed here, or the place the key belongs if it was written
    at the wrong level."""
    import difflib  # only needed when something is wrong

    allowed, elsewhere = _LEVELS[loc[:-1]]
    candidates = {key: repr(key) for key in allowed}
    for key, where in elsewhere.items():
        candidates.setdefault(key, where)
    close = difflib.get_close_matches(str(loc[-1]), list(candidates), n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {candidates[close[0]]}?"
    return f"unknown field; expected one of: {', '.join(allowed)}"


# Where keys written at the wrong level really belong (for "did you mean" hints).
_TOP_ELSEWHERE: dict[str, str] = {
    **{key: f"'resources.{key}'" for key in ("cpus", "memory", "accelerators", "job_config")},
    **{key: f"'resources.{key}'" for key in KONDUKTOR_ONLY_RESOURCE_FIELDS},
    **{key: f"'slurm.{key}'" for key in SLURM_FIELDS},
    **{key: f"'resources.job_config.{key}'" for key in JOB_CONFIG_FIELDS},
}
_RESOURCES_ELSEWHERE: dict[str, str] = {
    **{key: f"top-level '{key}'" for key in TOP_LEVEL_FIELDS if key != "resources"},
    **{key: f"'job_config.{key}'" for key in JOB_CONFIG_FIELDS},
}
_JOB_CONFIG_ELSEWHERE: dict[str, str] = {
    **{key: f"'resources.{key}'" for key in RESOURCE_FIELDS if key != "job_config"},
    **{key: f"top-level '{key}'" for key in TOP_LEVEL_FIELDS},
}
_SLURM_ELSEWHERE: dict[str, str] = {
    **{key: f"'resources.{key}'" for key in ("cpus", "memory", "accelerators", "job_config")},
    **{key: f"top-level '{key}'" for key in TOP_LEVEL_FIELDS if key != "slurm"},
    **{key: f"'resources.job_config.{key}'" for key in JOB_CONFIG_FIELDS},
}
# Each level of the task: the keys allowed there, and hints for keys that belong elsewhere.
_LEVELS: dict[Loc, tuple[Sequence[str], dict[str, str]]] = {
    (): (TOP_LEVEL_FIELDS, _TOP_ELSEWHERE),
    ("resources",): (RESOURCE_FIELDS, _RESOURCES_ELSEWHERE),
    ("resources", "job_config"): (JOB_CONFIG_FIELDS, _JOB_CONFIG_ELSEWHERE),
    ("slurm",): (SLURM_FIELDS, _SLURM_ELSEWHERE),
}
