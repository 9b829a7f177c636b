"""Print a job's output, and follow it until the job reaches a terminal state.

Following does not stop when the log goes quiet or when Slurm suspends or requeues the job
(the output file is opened in append mode, so a requeued run continues it): it stops when
the lifecycle says COMPLETED or FAILED, then prints what is left.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable

from konduktor_slurm.polling import Backoff
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import refresh_shared
from konduktor_slurm.transport import Transport

POLL_SECONDS = 1.0  # how often the log file is read (a file read, not a Slurm call)
# What the job's script prints when a run ends (sbatch.sh.j2): the job may be over, look.
ATTEMPT_FINISHED = re.compile(rb"konduktor: attempt \d+ finished with exit code")
# After Slurm reports the job finished, the last lines may still be reaching the file.
SETTLE_SECONDS = 1.0
# `srun --label` prefixes each line with the task (= node) rank, padded when there are >= 10.
_RANK_PREFIX = re.compile(r"^\s*(\d+): ")


# `logs -n N` reads the log's tail, growing it this many times over until it holds N lines.
TAIL_FIRST_BYTES = 64 * 1024
TAIL_GROWTH = 4


class LineFilter:
    """Turns raw chunks of the log into whole lines, keeping only one rank's when asked.

    The bytes are decoded incrementally: a UTF-8 character split between two reads is
    decoded whole once its second half arrives, not turned into two U+FFFD.
    """

    def __init__(self, node_rank: int | None) -> None:
        self.node_rank = node_rank
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def keep(self, line: str) -> bool:
        if self.node_rank is None:
            return True
        match = _RANK_PREFIX.match(line)
        return bool(match) and int(match.group(1)) == self.node_rank

    def feed(self, data: bytes, final: bool = False) -> str:
        """The whole lines completed by ``data`` (with ``final``, also what is left)."""
        text = self._partial + self._decoder.decode(data, final=final)
        lines = text.split("\n")
        self._partial = "" if final else lines.pop()
        return "".join(f"{line}\n" for line in lines if line and self.keep(line))


def tail_lines(text: str, count: int | None) -> str:
    if count is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:]) if count > 0 else ""


def read_last_lines(
    transport: Transport,
    path: str,
    count: int,
    node_rank: int | None = None,
    max_bytes: int | None = None,
) -> str:
    """The last ``count`` lines of the log at ``path`` (one rank's with ``node_rank``).

    Reads only the file's tail, growing it until it holds ``count`` lines, the whole file,
    or ``max_bytes``: the last lines of a 10 GB log over SFTP cost kilobytes.
    """
    if count <= 0:
        return ""
    size = TAIL_FIRST_BYTES if max_bytes is None else min(TAIL_FIRST_BYTES, max_bytes)
    while True:
        data = transport.read_tail(path, size)
        whole_file = len(data) < size
        if not whole_file:
            # The first line may start before the tail (and mid-character): drop it.
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        lines = LineFilter(node_rank).feed(data, final=True).splitlines(keepends=True)
        if len(lines) >= count or whole_file or (max_bytes is not None and size >= max_bytes):
            return "".join(lines[-count:])
        size *= TAIL_GROWTH
        if max_bytes is not None:
            size = min(size, max_bytes)


def follow(
    store: Store,
    slurm: Slurm,
    job: JobRecord,
    write: Callable[[str], None],
    on_stale: Callable[[str], None] | None = None,
    node_rank: int | None = None,
    last_lines: int | None = None,
    on_refresh: Callable[[], None] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> JobRecord:
    """Stream ``job``'s log until it is terminal; return the job with its final state.

    The log is read every ``POLL_SECONDS`` (a file read, not a Slurm call); Slurm is asked
    with the shared backoff of ``konduktor_slurm.polling``, and soon after the job's script
    prints that an attempt finished, so the end is seen within seconds, not at the next 30 s.
    ``on_refresh`` runs after each look at Slurm (the job's event callbacks).
    """
    lines = LineFilter(node_rank)
    existing = slurm.transport.read_bytes(job.log_path)
    offset = len(existing)
    write(tail_lines(lines.feed(existing), last_lines))
    backoff = Backoff()
    next_look, max_age = clock(), 0.0  # the first look is our own
    seen = job.state
    carry = b""  # the end of the last read: the marker may arrive split across two reads
    while True:
        data = slurm.transport.read_bytes(job.log_path, offset)
        offset += len(data)
        if data:
            write(lines.feed(data))
            window, carry = carry + data, (carry + data)[-80:]
            if ATTEMPT_FINISHED.search(window):
                carry = b""
                backoff.reset()
                next_look, max_age = min(next_look, clock() + POLL_SECONDS), 0.0
        if job.terminal:
            write(lines.feed(b"", final=True))
            break
        if clock() >= next_look:
            started = wall()
            result = refresh_shared(store, slurm, [job], max_age, now=started)
            if on_refresh is not None:
                on_refresh()
            if result.stale and on_stale:
                on_stale(result.stale_reason or "")
            if job.terminal:
                sleep(SETTLE_SECONDS)
                continue
            pause = backoff.next_pause(
                changed=job.state != seen, failed=result.stale, took=wall() - started
            )
            seen, max_age = job.state, pause
            next_look = clock() + pause
        sleep(POLL_SECONDS)
    return job
