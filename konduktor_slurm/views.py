"""How jobs look to people (a Konduktor-style table) and to scripts (stable JSON)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii as _encode  # C; the store loads json
from typing import Any, TextIO

# The time formats are durations.py's; importable from here too (report_formats, cli).
from konduktor_slurm.durations import clock, format_duration, humanize_ago, iso
from konduktor_slurm.store import JobRecord, Transition

__all__ = [
    "STATE_STYLES",
    "STATUS_COLUMNS",
    "clock",
    "duration_seconds",
    "format_duration",
    "iso",
    "job_json",
    "job_json_text",
    "rank_exit_codes",
    "status_row",
    "transition_json",
    "write_json_list",
]

STATUS_COLUMNS = ("NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION")
STATE_STYLES = {
    "CREATED": "cyan",
    "PENDING": "yellow",
    "SUSPENDED (by system)": "magenta",
    "SUSPENDED (by user)": "magenta",
    "ACTIVE": "green",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
}


def rank_exit_codes(job: JobRecord) -> dict[int, int]:
    """``{rank: exit code}`` in rank order (2 before 10), as the tracker recorded it.

    The store keeps ``extra`` as JSON, whose object keys are strings: every reader goes
    through here so that ranks are ints in Python and sorted numerically everywhere.
    """
    codes = job.extra.get("rank_exit_codes") or {}
    return dict(sorted((int(rank), int(code)) for rank, code in codes.items()))


def duration_seconds(job: JobRecord, now: float) -> float | None:
    if job.start_time is None:
        return None
    end = job.end_time if job.end_time is not None else (None if job.terminal else now)
    return None if end is None else max(0.0, end - job.start_time)


# ANSI colours of the states on a terminal (the same as STATE_STYLES: rich's names).
_ANSI = {"cyan": "36", "yellow": "33", "magenta": "35", "green": "32", "bold green": "1;32",
         "bold red": "1;31"}  # fmt: skip


def plain_table(
    columns: list[str],
    rows: list[list[str]],
    colour: list[str | None] | None = None,
    colour_column: int = 1,
) -> str:
    """Columns padded to their widest cell, two spaces apart, as rich lays out a borderless
    table; ``colour`` (one rich style name per row, or None) colours ``colour_column``.

    `konduktor status` prints with this instead of rich's Table: rich measures and wraps
    every cell of every row (about 1.5 ms a row: 0.3 s for 200 jobs, 3 s for 2,000), while
    a status table never wraps and is plain text.
    """
    widths = [len(column) for column in columns]
    for cells in rows:
        for index, cell in enumerate(cells):
            widths[index] = max(widths[index], len(cell))

    def line(cells: list[str], style: str | None = None) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if style is not None and style in _ANSI:
            cell = padded[colour_column]
            padded[colour_column] = f"\x1b[{_ANSI[style]}m{cell}\x1b[0m"
        return "  ".join(padded).rstrip()

    header = line(columns)
    if colour is not None:
        header = f"\x1b[1m{header}\x1b[0m"
    body = [
        line(cells, colour[index] if colour is not None else None)
        for index, cells in enumerate(rows)
    ]
    return "\n".join([header, *body]) + "\n"


def status_row(job: JobRecord, now: float) -> tuple[str, ...]:
    submitted = job.submitted_at or job.created_at
    return (
        job.name,
        job.state,
        job.resources,
        humanize_ago(now - submitted),
        clock(job.start_time),
        clock(job.end_time) if job.terminal else "-",
        format_duration(duration_seconds(job, now)),
    )


def detail_fields(job: JobRecord, now: float, stale: bool) -> list[tuple[str, str]]:
    """``status JOB``'s labelled lines (the dashboard shows the same, plus GPU-hours)."""
    extra = job.extra
    ranks = rank_exit_codes(job)
    attempt = extra.get("attempt")
    status_text = job.state + (f" ({job.detail})" if job.detail else "")
    fields = [
        ("Name", job.name),
        ("Status", status_text + (" [stale]" if stale else "")),
        ("User", job.user),
        ("Slurm job id", job.slurm_job_id or "-"),
        ("Slurm state", extra.get("slurm_state") or "-"),
        ("Reason", extra.get("reason") or "-"),
        ("Resources", job.resources),
        ("Nodes", extra.get("node_list") or "-"),
        ("Exit codes", ", ".join(f"rank {r}: {c}" for r, c in ranks.items()) or "-"),
        ("Restarts", str(extra.get("restarts", 0))),
        ("Attempt", f"{attempt[0]} of {attempt[1]}" if attempt else "-"),
        ("Submitted", clock(job.submitted_at or job.created_at)),
        ("Start time", clock(job.start_time)),
        ("End time", clock(job.end_time) if job.terminal else "-"),
        ("Duration", format_duration(duration_seconds(job, now))),
        ("Log", job.log_path or "-"),
        ("Job dir", job.job_dir or "-"),
    ]
    pruned_at = extra.get("pruned_at")
    if isinstance(pruned_at, int | float):
        fields.append(("Snapshot", f"pruned {clock(pruned_at)} (logs and results kept)"))
    return fields


def job_json(job: JobRecord, now: float | None = None) -> dict[str, Any]:
    """The documented ``--json`` fields (README: "status --json")."""
    now = time.time() if now is None else now
    return {
        "name": job.name,
        "task_name": job.task_name,
        "status": job.state,
        "detail": job.detail,
        "terminal": job.terminal,
        "user": job.user,
        "slurm_job_id": job.slurm_job_id,
        "resources": job.resources,
        "num_nodes": job.num_nodes,
        "gpus_per_node": job.gpus_per_node,
        "submitted_at": iso(job.submitted_at or job.created_at),
        "start_time": iso(job.start_time),
        "end_time": iso(job.end_time) if job.terminal else None,
        "duration_seconds": duration_seconds(job, now),
        "log_path": job.log_path,
        "job_dir": job.job_dir,
        "node_list": job.extra.get("node_list"),
        "slurm_state": job.extra.get("slurm_state"),
        "reason": job.extra.get("reason"),
        "exit_code": job.extra.get("exit_code"),
        # In rank order; json.dumps writes the int keys as strings: {"2": 0, "10": 3}.
        "rank_exit_codes": rank_exit_codes(job),
        "restarts": job.extra.get("restarts", 0),
        "attempt": job.extra.get("attempt"),
        # When its staged snapshot was removed (retention, `konduktor prune`); logs stay.
        "snapshot_pruned_at": iso(job.extra.get("pruned_at")),
    }


def job_json_text(job: JobRecord, now: float) -> str:
    """``json.dumps(job_json(job, now), indent=2)`` as an item of ``status --json``'s list
    (every line after the first indented by four spaces), byte for byte.

    Made in one piece, without the dict: about 30% less work than building each job's dict
    and writing it key by key, which is what keeps ``status --json`` of 10,000 jobs as fast
    as the table. Text fields go straight to json's C encoder, which refuses any
    other type: such a record is written from ``job_json``'s dict instead.
    tests/unit/test_json_stream.py holds it to ``job_json`` over records of every shape; a
    field added to ``job_json`` must be added here.
    """
    extra = job.extra
    get = extra.get
    job_id = job.slurm_job_id
    try:
        return f"""{{
      "name": {_encode(job.name)},
      "task_name": {_encode(job.task_name)},
      "status": {_encode(job.state)},
      "detail": {_encode(job.detail)},
      "terminal": {_value(job.terminal)},
      "user": {_encode(job.user)},
      "slurm_job_id": {"null" if job_id is None else _encode(job_id)},
      "resources": {_encode(job.resources)},
      "num_nodes": {_value(job.num_nodes)},
      "gpus_per_node": {_value(job.gpus_per_node)},
      "submitted_at": {_time(job.submitted_at or job.created_at)},
      "start_time": {_time(job.start_time)},
      "end_time": {_time(job.end_time) if job.terminal else "null"},
      "duration_seconds": {_value(duration_seconds(job, now))},
      "log_path": {_encode(job.log_path)},
      "job_dir": {_encode(job.job_dir)},
      "node_list": {"null" if (text := get("node_list")) is None else _encode(text)},
      "slurm_state": {"null" if (text := get("slurm_state")) is None else _encode(text)},
      "reason": {"null" if (text := get("reason")) is None else _encode(text)},
      "exit_code": {"null" if (text := get("exit_code")) is None else _encode(text)},
      "rank_exit_codes": {_rank_codes_text(job)},
      "restarts": {_value(get("restarts", 0))},
      "attempt": {_value(get("attempt"))},
      "snapshot_pruned_at": {_time(get("pruned_at"))}
    }}"""
    except TypeError:  # a value of another type (a record built in memory): json's way
        return _indented_object(job_json(job, now), "    ")


def _value(value: Any, pad: str = "      ") -> str:
    """``json.dumps(value, indent=2)`` for a value whose line is indented by ``pad`` (by
    default a job's field in ``status --json``'s list): strings, numbers, nulls and flat
    objects without json.dumps, which encodes in Python, value by value."""
    kind = type(value)
    if kind is str:
        return _encode(value)
    if value is None:
        return "null"
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, str):  # a State: json writes a str subclass's text
        return _encode(value)
    if not value and (kind is dict or kind is list):
        return "{}" if kind is dict else "[]"
    if kind is dict and (flat := _flat_object(value, pad + "  ")) is not None:
        return flat  # a finished job's rank exit codes: {"0": 0, "1": 3}
    import json  # lists, nested objects, non-finite floats: as json.dumps writes them

    return json.dumps(value, indent=2).replace("\n", "\n" + pad)


def _time(epoch: float | None) -> str:
    # ISO 8601 text is digits, "-", ":", "T" and "+": nothing for JSON to escape.
    return "null" if epoch is None else f'"{iso(epoch)}"'


def _rank_codes_text(job: JobRecord) -> str:
    codes = job.extra.get("rank_exit_codes")
    if not codes:
        return "{}"
    if len(codes) == 1:  # one node: no order to make
        ((rank, code),) = codes.items()
        return f'{{\n        "{int(rank)}": {int(code)}\n      }}'
    return _value(rank_exit_codes(job))


def write_json_list(
    out: TextIO,
    head: dict[str, Any],
    key: str,
    items: Iterable[Any],
    encode: Callable[[Any], str] | None = None,
) -> None:
    """Write ``json.dumps({**head, key: list(items)}, indent=2)`` and a newline, byte for
    byte, one item at a time: ``status --json`` of 10,000 jobs never holds them all as JSON
    (json.dumps with an indent builds the text from a million small pieces, ~100 MiB).

    JSON text has no raw newline inside a value, so an item's own indented text moves one
    level in by indenting every line of it. ``encode``, when given, makes that text of an
    item (``job_json_text``); the items are then whatever it takes. ``head``'s keys are text.
    """
    out.write("{")
    for name, value in head.items():
        out.write(f"\n  {_encode(name)}: {_value(value, '  ')},")
    out.write(f"\n  {_encode(key)}: ")
    make = encode or _list_item
    # One write per batch of items rather than two per item: a write through the text
    # layer costs more than joining; a batch is all the JSON held at once.
    separator, opening = ",\n    ", "[\n    "
    batch: list[str] = []
    for item in items:
        batch.append(make(item))
        if len(batch) == _ITEMS_PER_WRITE:
            out.write(opening + separator.join(batch))
            opening, batch = separator, []
    if batch:
        out.write(opening + separator.join(batch))
        opening = separator
    out.write("\n  ]\n}\n" if opening == separator else "[]\n}\n")


_ITEMS_PER_WRITE = 8


def _list_item(item: dict[str, Any]) -> str:
    return _indented_object(item, "    ")


# "    \"name\": " for each (indent, key) met: a status writes the same 25 keys per job.
_KEY_PREFIXES: dict[tuple[str, str], str] = {}


def _indented_object(item: dict[str, Any], pad: str) -> str:
    """``json.dumps(item, indent=2)`` with every line after the first indented by ``pad``.

    json.dumps with an indent runs in Python, value by value; a job's values are mostly
    strings, numbers and nulls, written here by the json module's C string encoder, each
    key's text made once per process: the same text in a fraction of the time
    (``status --json JOB``, and any list item without an ``encode`` of its own).
    """
    import json

    encode = _encode
    if not item:
        return "{}"
    inner = pad + "  "
    prefixes = _KEY_PREFIXES
    parts = []
    for name, value in item.items():
        prefix = prefixes.get((inner, name))
        if prefix is None:
            if type(name) is not str:
                return json.dumps(item, indent=2).replace("\n", "\n" + pad)
            prefix = prefixes[(inner, name)] = f"{inner}{encode(name)}: "
        parts.append(prefix + _value(value, inner))
    return "{\n" + ",\n".join(parts) + "\n" + pad + "}"


def _flat_object(item: dict[Any, Any], pad: str) -> str | None:
    """``json.dumps(item, indent=2)``, its lines after the first indented by ``pad`` less two
    spaces, for an object of str or int keys and int, str or null values; None for any
    other (json.dumps with an indent encodes in Python, object by object)."""
    lines = []
    for key, value in item.items():
        kind = type(key)
        if kind is str:
            name = _encode(key)
        elif kind is int:
            name = f'"{key}"'  # json writes an int key as its decimal text
        else:
            return None
        kind = type(value)
        if kind is int:
            text = repr(value)
        elif kind is str:
            text = _encode(value)
        elif value is None:
            text = "null"
        else:
            return None
        lines.append(f"{pad}{name}: {text}")
    return "{\n" + ",\n".join(lines) + "\n" + pad[:-2] + "}"


def transition_json(transition: Transition) -> dict[str, Any]:
    return {"status": transition.state, "detail": transition.detail, "at": iso(transition.at)}
