"""YAML that remembers where everything is: values plus the line of every key.

Used for task files and for config.yaml, so both report problems as ``file:line: field``.

* Positions come from the composed node tree (a SafeLoader subclass), keyed by the path of
  each key, e.g. ``("resources", "accelerators")``. Duplicate keys, which PyYAML resolves
  silently to the last value, are recorded so they can be reported.
* YAML 1.1 (PyYAML) turns some plain scalars into numbers the user never meant: an unquoted
  ``time_limit: 4:00:00`` is the base-60 integer 14400 and ``VERSION: 1.10`` is the float 1.1.
  Such values remember how they were written (``.spelling``), and where a field is really text
  that spelling is used instead (see ``as_text``).
* A file with several documents is a SkyPilot pipeline; it is named as such, not as a syntax
  error.
* PyYAML is imported on first use: commands that never read YAML must not pay for it.
"""

from __future__ import annotations

import datetime
import functools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from konduktor_slurm.task.errors import TaskError, TaskIssue

if TYPE_CHECKING:
    import yaml

# A position inside the YAML document: mapping keys and list indices from the root.
Loc = tuple[Any, ...]

# Bounds on what a task (or config) file may be: real ones are a few kB. A bigger or deeper
# file is a mistake or an attack, and would cost seconds (50 MB: 14 s) or a RecursionError.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 100_000  # after YAML aliases are expanded ("billion laughs")


def read_source(path: Path, what: str = "task file") -> str:
    """The text of a task/config/env file, or a TaskError saying why it cannot be used.

    Only regular files are read: a FIFO would block forever and a device (/dev/zero) never
    ends. The size is bounded and the encoding must be UTF-8.
    """
    source = str(path)

    def refuse(message: str) -> TaskError:
        return TaskError([TaskIssue(source, None, "", message)])

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise refuse(f"{what} not found") from None
    except OSError as exc:
        raise refuse(f"cannot read {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse(f"is a directory, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise refuse(f"is {kind}, not a regular file; give the {what} as a file")
    if info.st_size > MAX_FILE_BYTES:
        raise refuse(f"is {info.st_size} bytes; a {what} may be at most {MAX_FILE_BYTES} (1 MiB)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise refuse(f"a {what} may be at most {MAX_FILE_BYTES} bytes (1 MiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TaskError(
            [
                TaskIssue(
                    source,
                    line,
                    "",
                    f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8",
                )
            ]
        ) from None


@dataclass
class Positions:
    """Where things are in the YAML text, keyed by path: 1-based lines of keys and values,
    and duplicate keys (path, first line, repeated line)."""

    key_lines: dict[Loc, int] = field(default_factory=dict)
    value_lines: dict[Loc, int] = field(default_factory=dict)
    duplicates: list[tuple[Loc, int, int]] = field(default_factory=list)
    root_line: int = 1


def load_yaml(text: str, source: str, what: str = "task") -> tuple[Any, Positions]:
    """Parse the single YAML document in ``text``; problems become a TaskError.

    ``what`` names the kind of file in messages ("task", "config file"): a task file with
    several documents is a SkyPilot pipeline, any other file just has one document too many.
    """
    import yaml  # deferred: importing this module stays cheap

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
        if _expanded_size(node, {}) > MAX_VALUES:
            message = (
                f"expands to more than {MAX_VALUES} values (YAML aliases used many times); "
                "write the values out"
            )
            raise TaskError([TaskIssue(source, None, "", message)])
        loader.record(node, (), set())
        return loader.construct_document(node), loader.positions
    except _TooDeep as exc:
        message = f"is nested more than {MAX_DEPTH} levels deep; a {what} is a few levels"
        raise TaskError([TaskIssue(source, exc.line, "", message)]) from None
    except yaml.composer.ComposerError as exc:
        if exc.problem and "but found another document" in exc.problem:
            raise _several_documents(text, source, exc, what) from None
        raise _yaml_error(exc, source, text) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    finally:
        loader.dispose()


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """How many values the document has once aliases are expanded (each node counted once
    per use); memoized per node, so a bomb is measured without being expanded."""
    key = id(node)
    if key not in sizes:
        sizes[key] = 1  # a recursive alias counts once, not forever
        children: list[Any] = []
        if isinstance(node.value, list):
            for item in node.value:
                children.extend(item if isinstance(item, tuple) else (item,))
        total = 1 + sum(_expanded_size(child, sizes) for child in children)
        sizes[key] = min(total, MAX_VALUES + 1)
    return sizes[key]


def _several_documents(text: str, source: str, exc: Any, what: str) -> TaskError:
    import yaml

    try:
        count = sum(1 for _ in yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        count = 2
    mark = exc.problem_mark
    if what == "task":
        message = (
            f"this file holds {count} YAML documents separated by '---' (a SkyPilot pipeline); "
            "pipelines are not supported on Slurm: put each task in a file of its own and "
            "launch them one after another"
        )
    else:
        message = (
            f"this file holds {count} YAML documents separated by '---'; a {what} is one "
            "mapping: remove the '---' line and keep one set of settings"
        )
    return TaskError([TaskIssue(source, mark.line + 1 if mark else None, "", message)])


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


def mapping_at(data: Any, *path: Any) -> dict[Any, Any]:
    """The mapping at ``path`` in YAML data; {} where there is none (or not a mapping)."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_text(value: Any) -> Any:
    """Text fields take plain scalars as written ('1.10' stays '1.10', 2024-01-01 stays a
    string). Anything else is returned unchanged, for the string check to reject."""
    if value is None or isinstance(value, str | bool):
        return value
    spelling = getattr(value, "spelling", None)
    if spelling is not None:
        return spelling
    return str(value) if is_number(value) else value


@functools.cache
def _line_loader_class() -> type[Any]:
    """The SafeLoader subclass, built on first use so that yaml is imported lazily."""
    import yaml

    class _LineLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.positions = Positions()
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            # PyYAML composes recursively: bound the nesting before Python's stack does.
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise _TooDeep(self.peek_event().start_mark.line + 1)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

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
                message = f"invalid YAML: {exc.context}, {exc.problem}"
            else:
                message += f" ({context})"
        return TaskError([TaskIssue(source, line, "", message)])
    return TaskError([TaskIssue(source, None, "", f"invalid YAML: {exc}")])
