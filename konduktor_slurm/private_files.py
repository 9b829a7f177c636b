"""Small private files in ``$KONDUKTOR_HOME``: the caches of validated settings
(``config-cache.json``) and tasks (``task-cache.json``).

Read only when they are trustworthy: a regular file, ours, that nobody else can write
(whoever could write the config cache could make konduktor run their ``proxy_command``),
not over a size, and JSON; anything else reads as missing. Written atomically (a temp file
renamed over the old one, so a reader never sees half a file), 0600; a cache that cannot be
written is no error. Only the standard library, imported here: every command reads one.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # login_ahead.py reads here before typing or pathlib is loaded
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


def read_bytes(path: str | Path, max_bytes: int) -> bytes | None:
    """The bytes in ``path``, or None when it is missing or not to be trusted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o022
            or info.st_size > max_bytes
        ):
            return None
        return os.read(fd, max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_json(path: Path, max_bytes: int) -> Any | None:
    """The JSON value in ``path``, or None when it is missing or not to be trusted."""
    import json

    data = read_bytes(path, max_bytes)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
        return None


def write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` (its directory made 0700 if missing), 0600; never raises for
    a file that cannot be written."""
    import tempfile

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError:
        pass
