"""The error style shared by task files and config.yaml: every problem as ``file:line: field``.

``Checker`` collects issues and warnings for one YAML document, knowing where each key is
(``source.Positions``) and which values came from the command line instead. ``report`` is the
one place that turns pydantic's validation errors into issues: it maps each error's path to a
line, words unknown keys with a "did you mean" (only when the suggestion is really close), and
reports several problems of one field (e.g. sbatch options) each on its own line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from konduktor_slurm.task.errors import COMMAND_LINE, TaskIssue
from konduktor_slurm.task.source import Loc, Positions

# Plain keys are shown as dotted paths; anything else (file_mounts destinations, odd env
# names) is shown quoted in brackets so the field name stays unambiguous.
_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# How close a key must be to a known one for a "did you mean" (difflib's ratio). High on
# purpose: a far-fetched suggestion ('network_tier' -> 'workdir') misleads more than none.
HINT_CUTOFF = 0.75

UNKNOWN_KEY = ("extra_forbidden", "invalid_key")


def field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY_RE.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out


class Origin(NamedTuple):
    """Where an overridden value came from (command line or env file)."""

    file: str
    line: int | None
    field: str


def command_line(flag: str) -> Origin:
    return Origin(COMMAND_LINE, None, flag)


@dataclass(frozen=True)
class Level:
    """One mapping level of a document: the keys allowed there (in the order messages list
    them; ``listed`` if only some are worth listing), and hints for keys that belong elsewhere
    (key -> where, e.g. "'resources.cpus'")."""

    allowed: Sequence[str]
    elsewhere: Mapping[str, str] = field(default_factory=dict)
    listed: Sequence[str] | None = None


class Checker:
    def __init__(self, source: str, positions: Positions) -> None:
        self.source = source
        self.key_lines = positions.key_lines
        self.value_lines = positions.value_lines
        self.origins: dict[Loc, Origin] = {}
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

    def origin(self, loc: Loc) -> Origin | None:
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
            self.issues.append(TaskIssue(self.source, self.line(loc), field_name(loc), message))

    def error_at(self, file: str, line: int | None, name: str, message: str) -> None:
        self.issues.append(TaskIssue(file, line, name, message))

    def warn(self, loc: Loc, message: str) -> None:
        """``<file>:<line>: <field> <message>`` (or the command-line flag that set it)."""
        origin = self.origin(loc)
        if origin is not None:
            where = origin.file if origin.line is None else f"{origin.file}:{origin.line}"
            self._warnings.append((10**9, f"{where}: {origin.field} {message}"))
            return
        line = self.line(loc)
        where = self.source if line is None else f"{self.source}:{line}"
        self._warnings.append((line or 0, f"{where}: {field_name(loc)} {message}"))

    def warnings(self) -> tuple[str, ...]:
        # In file order, like the issues, whatever order the checks ran in.
        return tuple(text for _, text in sorted(self._warnings, key=lambda w: w[0]))

    def sorted_issues(self) -> list[TaskIssue]:
        # The file's issues first, in file order; then env-file / command-line ones.
        return sorted(
            self.issues,
            key=lambda i: (i.file != self.source, i.file == COMMAND_LINE, i.line or 0),
        )

    def report_duplicates(self, duplicates: list[tuple[Loc, int, int]]) -> None:
        for loc, first, repeat in duplicates:
            self.error_at(
                self.source,
                repeat,
                field_name(loc),
                f"duplicate key: also set on line {first}; only one value can be used",
            )

    def report(
        self,
        errors: list[Any],
        data: Any,
        levels: Mapping[Loc, Level],
        messages: Mapping[str, str] | None = None,
        name_errors_under: Loc | None = None,
    ) -> None:
        """pydantic's ``errors`` (``ValidationError.errors()``) as issues.

        ``messages`` words errors by their type (``{key}`` is the last key of the path);
        an error about a mapping key under ``name_errors_under`` (e.g. a bad env name) hides
        the errors about that entry's value, which would only repeat it.
        """
        rejected: set[Loc] = set()
        for loc, is_key, error in _in_check_order(data, errors):
            kind = error["type"]
            if kind in UNKNOWN_KEY:
                self.error(loc, unknown_field(loc, levels))
            elif is_key and name_errors_under is not None and loc[:1] == name_errors_under:
                rejected.add(loc)
                self.error(loc, error["msg"])
            elif loc in rejected:
                continue
            elif kind == "several":  # one error per entry, e.g. of sbatch_options
                for entry, message, repeats in error["ctx"]["issues"]:
                    if repeats is not None:
                        line = self.line((*loc, *repeats))
                        message = message.replace("{also}", f" on line {line}" if line else "")
                    self.error((*loc, *entry), message)
            elif messages and kind in messages:
                self.error(loc, messages[kind].format(key=loc[-1]))
            else:
                self.error(loc, error["msg"])


def close_match(word: str, candidates: Sequence[str]) -> str | None:
    import difflib  # only needed when something is wrong

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=HINT_CUTOFF)
    return close[0] if close else None


def unknown_field(loc: Loc, levels: Mapping[Loc, Level]) -> str:
    """Suggest the closest key allowed here, or the place the key belongs if it was written
    at the wrong level; else list what is allowed."""
    level = levels.get(loc[:-1])
    if level is None:
        return "unknown field"
    candidates = {key: repr(key) for key in level.allowed}
    for key, where in level.elsewhere.items():
        candidates.setdefault(key, where)
    close = close_match(str(loc[-1]), list(candidates))
    if close:
        return f"unknown field; did you mean {candidates[close]}?"
    return f"unknown field; expected one of: {', '.join(level.listed or level.allowed)}"


def _in_check_order(data: Any, errors: list[Any]) -> list[tuple[Loc, bool, Any]]:
    """Errors as (path in the YAML data, about a mapping key?, error), with each level's
    unknown keys first, as they are read (pydantic lists them after the known fields)."""
    ordered: list[tuple[Loc, bool, Any]] = []
    for error in errors:
        loc, is_key = _data_loc(data, error["loc"])
        at = len(ordered)
        if error["type"] in UNKNOWN_KEY:
            parent = loc[:-1]
            at = next(
                (
                    i
                    for i, (other, _, err) in enumerate(ordered)
                    if other[: len(parent)] == parent
                    and not (err["type"] in UNKNOWN_KEY and other[:-1] == parent)
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
