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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from konduktor_slurm.task.errors import TaskError, TaskIssue

if TYPE_CHECKING:
    import yaml

# A position inside the YAML document: mapping keys and list indices from the root.
Loc = tuple[Any, ...]


@dataclass
class Positions:
    """Where things are in the YAML text, keyed by path: 1-based lines of keys and values,
    and duplicate keys (path, first line, repeated line)."""

    key_lines: dict[Loc, int] = field(default_factory=dict)
    value_lines: dict[Loc, int] = field(default_factory=dict)
    duplicates: list[tuple[Loc, int, int]] = field(default_factory=list)
    root_line: int = 1


def load_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """Parse the single YAML document in ``text``; problems become a TaskError."""
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
        loader.record(node, (), set())
        return loader.construct_document(node), loader.positions
    except yaml.composer.ComposerError as exc:
        if exc.problem and "but found another document" in exc.problem:
            raise _several_documents(text, source, exc) from None
        raise _yaml_error(exc, source, text) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    finally:
        loader.dispose()


def _several_documents(text: str, source: str, exc: Any) -> TaskError:
    import yaml

    try:
        count = sum(1 for _ in yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        count = 2
    mark = exc.problem_mark
    message = (
        f"this file holds {count} YAML documents separated by '---' (a SkyPilot pipeline); "
        "pipelines are not supported on Slurm: put each task in a file of its own and launch "
        "them one after another"
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
