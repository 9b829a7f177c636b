"""A job's log for the page: its last lines, then what is appended, through the session's
transport (the local filesystem on the login node, SFTP over SSH).

The log only grows (Slurm opens it in append mode, a requeued run continues it), so a byte
offset is all a tail needs. Lines go through ``logs.LineFilter``: one rank's lines when
asked, and UTF-8 decoded incrementally (a character split between two reads stays whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from konduktor_slurm.logs import LineFilter

if TYPE_CHECKING:
    from konduktor_slurm.transport import Transport

FIRST_BYTES = 256 * 1024  # of the log's end, shown when the page opens it
FIRST_LINES = 2000
READ_LIMIT = 1024 * 1024  # per read: a burst of output arrives in pieces, not all at once


@dataclass
class LogTail:
    """How far a dashboard log stream has read one job's log file."""

    path: str
    offset: int  # bytes of the file already read
    lines: LineFilter = field(repr=False)


def file_size(transport: Transport, path: str) -> int:
    """The log's size in bytes (0 while it does not exist yet), without reading it."""
    result = transport.run(["stat", "-L", "-c", "%s", "--", path], timeout=30)
    text = result.stdout.strip()
    return int(text) if result.ok and text.isdigit() else 0


def open_tail(transport: Transport, path: str, node_rank: int | None) -> tuple[LogTail, list[str]]:
    """The tail to follow, and the last lines written so far (at most ``FIRST_LINES``)."""
    size = file_size(transport, path)
    start = max(0, size - FIRST_BYTES)
    data = transport.read_bytes(path, start, size - start) if size else b""
    tail = LogTail(path, start + len(data), LineFilter(node_rank))
    if start:  # the first line began before what was read
        data = data[data.index(b"\n") + 1 :] if b"\n" in data else b""
    text = tail.lines.feed(data)
    return tail, text.splitlines()[-FIRST_LINES:]


def read_more(transport: Transport, tail: LogTail, final: bool = False) -> list[str]:
    """The whole lines appended since the last read (with ``final``, also a last line that
    has no newline: the job has ended)."""
    data = transport.read_bytes(tail.path, tail.offset, READ_LIMIT)
    tail.offset += len(data)
    return tail.lines.feed(data, final=final and len(data) < READ_LIMIT).splitlines()
