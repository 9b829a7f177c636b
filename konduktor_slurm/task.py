"""Konduktor task YAML -> a validated, immutable ``Task``.

Everything the launch path needs to know about a task is decided here, up front, so that a
bad task fails on the user's machine with a message that points at the file, line and field,
instead of failing later inside Slurm.

Design notes (why it looks like this):

* Validation is hand-written rather than done with pydantic models: every message has to be
  ours (what was expected, what was got, where), every issue has to be collected before
  raising, and several rules cross fields (Slurm fields set both in ``resources:`` and in
  ``slurm:``). With pydantic every error type of every field would still need translating
  into such a message; checking directly is simpler, and keeps this module's import cheap
  (PyYAML, too, is only imported when a task is actually parsed).
* YAML positions come from the composed node tree (a SafeLoader subclass), keyed by the path of
  each key, e.g. ``("resources", "accelerators")``. Overrides from the command line are
  applied to the raw data *before* validation and remember where they came from, so a bad
  ``--gpus`` is reported exactly like a bad ``resources.accelerators``, but located on the
  command line.
* YAML 1.1 (PyYAML) turns some plain scalars into numbers the user never meant: an unquoted
  ``time_limit: 4:00:00`` is the base-60 integer 14400 and ``VERSION: 1.10`` is the float 1.1.
  Where a field is really text, the original spelling of the plain scalar is used instead.
"""

from __future__ import annotations

import functools
import math
import os
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

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
    the original spelling of plain scalars, and duplicate keys (which PyYAML would
    otherwise resolve silently to the last value)."""

    key_lines: dict[Loc, int] = field(default_factory=dict)
    value_lines: dict[Loc, int] = field(default_factory=dict)
    plain_scalars: dict[Loc, str] = field(default_factory=dict)
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
            if isinstance(node, yaml.ScalarNode):
                if node.style is None:
                    pos.plain_scalars[loc] = node.value
            elif isinstance(node, yaml.MappingNode):
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
        self.plain_scalars = positions.plain_scalars
        self.origins: dict[Loc, _Origin] = {}
        self.issues: list[TaskIssue] = []
        self._warnings: list[tuple[int, str]] = []

    # -- locating -----------------------------------------------------------------------

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

    def text(self, loc: Loc, value: Any) -> str | None:
        """``value`` as text, keeping the user's spelling of plain YAML scalars that YAML
        typed for them ('1.10' stays '1.10', 2024-01-01 stays a string); None if it is not
        a string, number or other plain scalar. Booleans and nulls are not text."""
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool | dict | list):
            return None
        raw = None if self.origin(loc) else self.plain_scalars.get(loc)
        if raw is not None:
            return raw
        return str(value) if _is_number(value) else None

    # -- reporting ----------------------------------------------------------------------

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

    # -- shared checks ------------------------------------------------------------------

    def mapping(self, loc: Loc, value: Any, what: str) -> dict[Any, Any] | None:
        """A mapping field: null means empty; anything else than a mapping is an error."""
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.error(loc, f"expected a mapping of {what}, got {_describe(value)}")
        return None

    def unknown_keys(
        self,
        loc: Loc,
        mapping: Mapping[Any, Any],
        allowed: Sequence[str],
        elsewhere: dict[str, str],
    ) -> None:
        """Report keys not allowed at this level, suggesting the closest allowed key here,
        or the place the key belongs if it was written at the wrong level."""
        import difflib  # only needed when something is wrong

        candidates = {key: repr(key) for key in allowed}
        for key, where in elsewhere.items():
            candidates.setdefault(key, where)
        for key in mapping:
            if isinstance(key, str) and key in allowed:
                continue
            close = difflib.get_close_matches(str(key), list(candidates), n=1, cutoff=0.6)
            if close:
                message = f"unknown field; did you mean {candidates[close[0]]}?"
            else:
                message = f"unknown field; expected one of: {', '.join(allowed)}"
            self.error((*loc, key), message)

    def integer(self, loc: Loc, value: Any, minimum: int, allow_plus: bool = False) -> int | None:
        """Integers, also written as strings ('8'); with ``allow_plus`` Konduktor's '8+'."""
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            text = value.strip()
            if allow_plus and text.endswith("+"):
                text = text[:-1].rstrip()
            if _UINT_RE.fullmatch(text):
                number = int(text)
        if number is None or number < minimum:
            return None
        return number


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

    ck.unknown_keys((), data, TOP_LEVEL_FIELDS, _TOP_ELSEWHERE)
    name = _check_name(ck, data.get("name"), default_name)
    run = _check_script(ck, ("run",), data.get("run"), required=True)
    setup = _check_script(ck, ("setup",), data.get("setup"), required=False)
    envs = _check_envs(ck, data.get("envs"))
    workdir = _check_workdir(ck, data.get("workdir"), base_dir)
    file_mounts = _check_file_mounts(ck, data.get("file_mounts"), base_dir)
    num_nodes = _check_num_nodes(ck, data.get("num_nodes"))
    resources, resource_slurm = _check_resources(ck, data.get("resources"))
    slurm = _check_slurm(ck, data.get("slurm"), resource_slurm, resources)

    if ck.issues:
        raise TaskError(ck.sorted_issues())
    assert run is not None and resources is not None and slurm is not None
    return Task(
        name=name,
        run=run,
        setup=setup,
        envs=envs,
        workdir=workdir,
        file_mounts=file_mounts,
        num_nodes=num_nodes,
        resources=resources,
        slurm=slurm,
        source=source_path,
        warnings=ck.warnings(),
    )


def _check_name(ck: _Checker, value: Any, default: str) -> str:
    loc = ("name",)
    if value is None:
        return default
    text = ck.text(loc, value)
    if text is None:
        ck.error(loc, f"expected a task name like 'train-llama', got {_describe(value)}")
        return default
    if len(text) > NAME_MAX_LEN:
        ck.error(loc, f"is {len(text)} characters long; the limit is {NAME_MAX_LEN}")
    elif not _NAME_RE.fullmatch(text):
        ck.error(
            loc,
            "expected letters and digits, optionally joined by '.', '_' or '-' "
            f"(like 'train-llama'), got {text!r}",
        )
    return text


def _check_script(ck: _Checker, loc: Loc, value: Any, required: bool) -> str | None:
    field_name = loc[0]
    if value is None:
        if required and loc in ck.key_lines:
            ck.error(loc, "is empty: give the shell commands to run")
        elif required:
            ck.error(loc, "missing: give the shell commands to run, e.g. 'run: python train.py'")
        return None
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, list):
            hint = f" (for several commands use a block string: '{field_name}: |', one per line)"
        ck.error(loc, f"expected a string of shell commands, got {_describe(value)}{hint}")
        return None
    if not value.strip():
        if required:
            ck.error(loc, "is empty: give the shell commands to run")
        return None
    return value


def _check_envs(ck: _Checker, value: Any) -> dict[str, str]:
    envs = ck.mapping(("envs",), value, "NAME: value environment variables")
    out: dict[str, str] = {}
    for key, item in (envs or {}).items():
        loc = ("envs", key)
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            ck.error(
                loc,
                f"{str(key)!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit)",
            )
            continue
        if item is None:
            ck.error(
                loc,
                f"has no value: give it a value here, or on the command line with --env {key} "
                f"(takes it from your environment) or --env {key}=VALUE",
            )
        elif isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif (text := ck.text(loc, item)) is not None:
            # Kept verbatim: the value is data for the job, never interpreted here.
            out[key] = text
        else:
            ck.error(loc, f"expected a string, number or true/false, got {_describe(item)}")
    return out


def _local_path(text: str, base_dir: Path) -> Path:
    # os.path.expanduser leaves '~unknown-user' alone; Path.expanduser would raise.
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base_dir / path


def _looked_for(written: str, path: Path) -> str:
    # Relative paths resolve against the YAML file's directory, which surprises people.
    return "" if written == str(path) else f" (looked for {path})"


def _check_workdir(ck: _Checker, value: Any, base_dir: Path) -> Path | None:
    loc = ("workdir",)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        ck.error(loc, f"expected a path to a local directory, got {_describe(value)}")
        return None
    path = _local_path(value, base_dir)
    if not path.exists():
        ck.error(loc, f"directory {value!r} does not exist{_looked_for(value, path)}")
        return None
    if not path.is_dir():
        ck.error(loc, f"{value!r} is not a directory ({path})")
        return None
    return path.resolve()


def _check_file_mounts(ck: _Checker, value: Any, base_dir: Path) -> dict[str, Path]:
    mounts = ck.mapping(("file_mounts",), value, "remote destination: local source paths")
    out: dict[str, Path] = {}
    for dest, src in (mounts or {}).items():
        loc = ("file_mounts", dest)
        dest_ok = _check_mount_destination(ck, loc, dest)
        src_path = _check_mount_source(ck, loc, src, base_dir)
        if dest_ok and src_path is not None:
            out[dest] = src_path
    return out


def _check_mount_destination(ck: _Checker, loc: Loc, dest: Any) -> bool:
    allowed = "an absolute path like '/data/x' or a path under your home like '~/data'"
    if not isinstance(dest, str) or not dest:
        ck.error(loc, f"destination must be {allowed}, got {_describe(dest)}")
        return False
    if _CONTROL_RE.search(dest):
        ck.error(loc, f"destination contains control characters: {dest!r}")
        return False
    if dest.startswith("~/"):
        rest = dest[2:]
    elif dest.startswith("/"):
        rest = dest
    else:
        ck.error(loc, f"destination must be {allowed}, got {dest!r}")
        return False
    if ".." in rest.split("/"):
        ck.error(loc, f"destination must not contain '..', got {dest!r}; use {allowed}")
        return False
    normalized = posixpath.normpath("/" + rest.lstrip("/"))
    if dest.startswith("~/"):
        if normalized == "/":
            ck.error(loc, f"destination must be a path below your home like '~/data', got {dest!r}")
            return False
        return True
    top = normalized.split("/")[1]
    if normalized == "/" or top in _SYSTEM_ROOTS:
        where = "the root directory" if normalized == "/" else f"the system directory /{top}"
        ck.error(loc, f"destination {dest!r} is {where}; use {allowed}")
        return False
    return True


def _check_mount_source(ck: _Checker, loc: Loc, src: Any, base_dir: Path) -> Path | None:
    if not isinstance(src, str) or not src.strip() or "\0" in src:
        ck.error(loc, f"expected a local source path, got {_describe(src)}")
        return None
    if "://" in src:
        ck.error(loc, f"only local paths can be mounted on Slurm, got the URL {src!r}")
        return None
    path = _local_path(src, base_dir)
    if not path.exists():
        ck.error(loc, f"local source {src!r} does not exist{_looked_for(src, path)}")
        return None
    return path.resolve()


def _check_num_nodes(ck: _Checker, value: Any) -> int:
    if value is None:
        return 1
    number = ck.integer(("num_nodes",), value, minimum=1)
    if number is None:
        ck.error(("num_nodes",), f"expected an integer >= 1, got {_describe(value)}")
        return 1
    return number


def _check_resources(
    ck: _Checker, value: Any
) -> tuple[Resources | None, dict[str, tuple[Any, Loc]]]:
    """Returns the Resources and the Slurm-native fields written under ``resources:``
    (validated value, location), merged with ``slurm:`` later."""
    res = ck.mapping(("resources",), value, "resource fields (cpus, memory, accelerators, ...)")
    if res is None:
        return None, {}
    ck.unknown_keys(("resources",), res, RESOURCE_FIELDS, _RESOURCES_ELSEWHERE)

    cpus = None
    if res.get("cpus") is not None:
        cpus = ck.integer(("resources", "cpus"), res["cpus"], minimum=1, allow_plus=True)
        if cpus is None:
            got = _describe(res["cpus"])
            ck.error(
                ("resources", "cpus"), f"expected a whole number of CPUs like 8 or '8+', got {got}"
            )

    memory = None
    if res.get("memory") is not None:
        memory = _check_memory(ck, ("resources", "memory"), res["memory"])

    accelerator = None
    if "accelerators" in res:
        accelerator = _check_accelerator(ck, ("resources", "accelerators"), res["accelerators"])

    max_restarts = 0
    job_config = ck.mapping(("resources", "job_config"), res.get("job_config"), "job settings")
    if job_config:
        loc = ("resources", "job_config")
        ck.unknown_keys(loc, job_config, JOB_CONFIG_FIELDS, _JOB_CONFIG_ELSEWHERE)
        if job_config.get("max_restarts") is not None:
            raw = job_config["max_restarts"]
            checked = ck.integer((*loc, "max_restarts"), raw, minimum=0)
            if checked is None:
                ck.error((*loc, "max_restarts"), f"expected an integer >= 0, got {_describe(raw)}")
            else:
                max_restarts = checked
        if "completions" in job_config:
            ck.warn((*loc, "completions"), "is ignored on Slurm (Konduktor-only field)")

    for key in KONDUKTOR_ONLY_RESOURCE_FIELDS:
        if key in res:
            ck.warn(("resources", key), "is ignored on Slurm (Konduktor-only field)")

    slurm_fields = {
        key: (res[key], ("resources", key))
        for key in SLURM_FIELDS
        if key in res and res[key] is not None
    }
    return Resources(cpus, memory, accelerator, max_restarts), slurm_fields


def _check_memory(ck: _Checker, loc: Loc, value: Any) -> float | None:
    number: float | None = None
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("+"):
            text = text[:-1].rstrip()
        if _NUMBER_RE.fullmatch(text):
            number = float(text)
    if number is not None and math.isfinite(number) and number > 0:
        return number
    hint = ""
    if isinstance(value, str) and _MEMORY_UNIT_RE.fullmatch(value):
        hint = " (memory is a plain number of GiB, no unit)"
    ck.error(
        loc, f"expected a positive number of GiB like 32 or '32+', got {_describe(value)}{hint}"
    )
    return None


def _check_accelerator(ck: _Checker, loc: Loc, value: Any) -> Accelerator | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if len(value) != 1:
            kinds = ", ".join(str(k) for k in value) or "none"
            ck.error(loc, f"expected exactly one accelerator type like {{H100: 8}}, got {kinds}")
            return None
        ((name, count),) = value.items()
        if not isinstance(name, str) or not _ACCEL_NAME_RE.fullmatch(name):
            ck.error(loc, f"{_ACCEL_EXPECTED}, got the name {_describe(name)}")
            return None
        if count is None:  # '{H100}' is YAML for {H100: null}: one of them
            return Accelerator(name, 1)
        checked = ck.integer((*loc, name), count, minimum=1)
        if checked is None:
            ck.error(loc, f"accelerator count must be an integer >= 1, got {_describe(count)}")
            return None
        return Accelerator(name, checked)
    if isinstance(value, str):
        text = value.strip()
        name, colon, count_text = text.partition(":")
        name, count_text = name.strip(), count_text.strip()
        if _ACCEL_NAME_RE.fullmatch(name) and not _ACCEL_TIMES_RE.fullmatch(name):
            if not colon:
                return Accelerator(name, 1)
            if _UINT_RE.fullmatch(count_text):
                if int(count_text) >= 1:
                    return Accelerator(name, int(count_text))
                ck.error(loc, f"accelerator count must be an integer >= 1, got {value!r}")
                return None
        ck.error(loc, f"{_ACCEL_EXPECTED}, got {value!r}")
        return None
    hint = " (pick one accelerator type)" if isinstance(value, list) else ""
    ck.error(loc, f"{_ACCEL_EXPECTED}, got {_describe(value)}{hint}")
    return None


def _check_slurm(
    ck: _Checker,
    value: Any,
    from_resources: dict[str, tuple[Any, Loc]],
    resources: Resources | None,
) -> SlurmOptions | None:
    section = ck.mapping(("slurm",), value, "Slurm settings (partition, account, ...)")
    if section is None:
        section = {}
    else:
        ck.unknown_keys(("slurm",), section, SLURM_FIELDS, _SLURM_ELSEWHERE)

    merged: dict[str, Any] = {}
    for key in SLURM_FIELDS:
        candidates: list[tuple[Any, Loc]] = []
        if section.get(key) is not None:
            candidates.append((section[key], ("slurm", key)))
        if key in from_resources:
            candidates.append(from_resources[key])
        checked = [
            (_check_slurm_field(ck, key, loc, raw, resources), loc) for raw, loc in candidates
        ]
        valid = [(v, loc) for v, loc in checked if v is not None]
        if len(valid) == 2 and valid[0][0] != valid[1][0]:
            (first, first_loc), (second, second_loc) = valid
            other_line = ck.line(second_loc)
            at = f" (line {other_line})" if other_line is not None else ""
            ck.error(
                first_loc,
                f"set to {_show_slurm(first)} here but to {_show_slurm(second)} in "
                f"{_field_name(second_loc)}{at}; set it in one place",
            )
        if valid:
            merged[key] = valid[0][0]
    return SlurmOptions(
        partition=merged.get("partition"),
        account=merged.get("account"),
        qos=merged.get("qos"),
        time_limit=merged.get("time_limit"),
        constraint=merged.get("constraint"),
        sbatch_options=merged.get("sbatch_options", ()),
    )


def _show_slurm(value: Any) -> str:
    if isinstance(value, tuple):
        return (
            " ".join(f"--{name}" if val is None else f"--{name}={val}" for name, val in value)
            or "nothing"
        )
    return repr(value)


def _check_slurm_field(
    ck: _Checker, key: str, loc: Loc, value: Any, resources: Resources | None
) -> Any:
    if key in ("partition", "account", "qos"):
        text = ck.text(loc, value)
        if text is None or not _SLURM_NAME_RE.fullmatch(text):
            ck.error(
                loc,
                f"expected a Slurm {key} name (letters, digits, '_', '.', '-'), "
                f"got {_describe(text if text is not None else value)}",
            )
            return None
        return text
    if key == "time_limit":
        return _check_time_limit(ck, loc, value)
    if key == "constraint":
        text = ck.text(loc, value)
        if text is None or not text.strip() or _CONTROL_RE.search(text):
            ck.error(loc, f"expected a Slurm constraint like 'a100&ib', got {_describe(value)}")
            return None
        return text.strip()
    return _check_sbatch_options(ck, loc, value, resources)


def _resource_is_set(resources: Resources | None, resource: str) -> bool:
    if resources is None:
        return False
    return (resources.cpus if resource == "cpus" else resources.memory_gib) is not None


def _check_time_limit(ck: _Checker, loc: Loc, value: Any) -> str | None:
    expected = (
        "expected a Slurm time limit: minutes (30), 'MM:SS', 'HH:MM:SS', 'D-HH', "
        "'D-HH:MM' or 'D-HH:MM:SS'"
    )
    # An unquoted 4:00:00 is a base-60 integer to YAML 1.1; ck.text reads what was written.
    text = ck.text(loc, value)
    if text is None:
        ck.error(loc, f"{expected}, got {_describe(value)}")
        return None
    text = text.strip()
    for pattern, units in _TIME_FORMATS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        parts = dict(zip(units, (int(g) for g in match.groups()), strict=True))
        too_big = (
            parts.get("s", 0) >= 60
            or ("h" in parts and parts.get("m", 0) >= 60)
            or ("d" in parts and parts["h"] >= 24)
        )
        total = (
            parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
        if too_big:
            ck.error(loc, f"{expected}; {text!r} has a field out of range")
            return None
        if total <= 0:
            ck.error(loc, f"time limit must be longer than zero, got {text!r}")
            return None
        return text
    ck.error(loc, f"{expected}, got {_describe(value)}")
    return None


def _check_sbatch_options(
    ck: _Checker, loc: Loc, value: Any, resources: Resources | None
) -> tuple[tuple[str, str | None], ...] | None:
    entries: list[tuple[Loc, str, str | None]] = []  # (loc, option as written, value)
    ok = True
    if isinstance(value, dict):
        for option, raw in value.items():
            item_loc = (*loc, option)
            if not isinstance(option, str):
                ck.error(item_loc, f"expected an sbatch option name, got {_describe(option)}")
                ok = False
                continue
            if raw is None:
                entries.append((item_loc, option, None))
                continue
            if isinstance(raw, bool):
                ck.error(
                    item_loc,
                    f"for a flag write '{option.lstrip('-')}: null' (or '--{option.lstrip('-')}' "
                    "in the list form), not true/false",
                )
                ok = False
                continue
            text = ck.text(item_loc, raw)
            if text is None:
                ck.error(item_loc, f"expected a string or number value, got {_describe(raw)}")
                ok = False
                continue
            entries.append((item_loc, option, text))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            item_loc = (*loc, index)
            if not isinstance(item, str) or not item.strip():
                ck.error(
                    item_loc,
                    f"expected an option like '--exclusive' or '--mail-type=END', "
                    f"got {_describe(item)}",
                )
                ok = False
                continue
            option, eq, text = item.strip().partition("=")
            entries.append((item_loc, option, text if eq else None))
    else:
        ck.error(
            loc,
            "expected a mapping of option: value (null for a flag) or a list like "
            f"['--exclusive', '--mail-type=END'], got {_describe(value)}",
        )
        return None

    seen: dict[str, Loc] = {}
    options: list[tuple[str, str | None]] = []
    for item_loc, written, text in entries:
        name = written.lstrip("-")
        dashes = "-" if len(name) == 1 else "--"
        if name in _MANAGED_SBATCH:
            ck.error(
                item_loc,
                f"{dashes}{name} is set by konduktor from {_MANAGED_SBATCH[name]}; remove it",
            )
            ok = False
            continue
        if name in _DEDICATED_SBATCH:
            ck.error(item_loc, f"{dashes}{name} has its own field: use {_DEDICATED_SBATCH[name]}")
            ok = False
            continue
        resource = _RESOURCE_SBATCH.get(name)
        if resource is not None and _resource_is_set(resources, resource):
            ck.error(
                item_loc,
                f"{dashes}{name} conflicts with resources.{resource}; set it in one place",
            )
            ok = False
            continue
        if not _OPTION_NAME_RE.fullmatch(name):
            ck.error(
                item_loc,
                "expected an sbatch option name of lower-case letters, digits and '-' "
                f"like 'exclusive' or 'mail-type', got {written!r}",
            )
            ok = False
            continue
        if text is not None and (not text or _CONTROL_RE.search(text)):
            # The value lands on an '#SBATCH' line: a newline would start a new script line.
            problem = "is empty" if not text else "contains control characters (e.g. a newline)"
            ck.error(item_loc, f"value of {dashes}{name} {problem}: {text!r}")
            ok = False
            continue
        if name in seen:
            other = ck.line(seen[name])
            at = f" on line {other}" if other is not None else ""
            ck.error(item_loc, f"{dashes}{name} is given twice (also{at}); keep one")
            ok = False
            continue
        seen[name] = item_loc
        options.append((name, text))
    return tuple(options) if ok else None


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
