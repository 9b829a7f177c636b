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

from konduktor_slurm.lifecycle import ORDINARY_WAITS
from konduktor_slurm.polling import Backoff
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import refresh_shared
from konduktor_slurm.transport import Transport

POLL_SECONDS = 1.0  # how often the log file is read (a file read, not a Slurm call)
# What the job's script prints when a run ends (sbatch.sh.j2): the job may be over, look.
ATTEMPT_FINISHED = re.compile(rb"konduktor: attempt \d+ finished with exit code")
# After that line Slurm is asked this soon, then twice as late each time while the job is
# still finishing (its script exits, slurmd reports: usually well under a second), until the
# usual backoff takes over: a few looks, and `launch` returns within a second of the end.
END_LOOK_SECONDS = 0.25
# After Slurm reports the job finished, the last lines may still be reaching the file (its
# writer, slurmstepd, has closed it by then; this is a margin for a shared filesystem).
SETTLE_SECONDS = 0.25
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
    on_change: Callable[[JobRecord], None] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> JobRecord:
    """Stream ``job``'s log until it is terminal; return the job with its final state.

    The log is read every ``POLL_SECONDS`` (a file read, not a Slurm call); Slurm is asked
    with the shared backoff of ``konduktor_slurm.polling``, and soon after the job's script
    prints that an attempt finished, so the end is seen within seconds, not at the next 30 s.
    ``on_refresh`` runs after each look at Slurm (the job's event callbacks); ``on_change``
    when a look finds the job in another state or for another reason than it last said (a
    job pending for hours says why, a stop made elsewhere is seen), except a plain wait in
    the queue at the first look and the end (the caller says that).
    """
    lines = LineFilter(node_rank)
    existing = slurm.transport.read_bytes(job.log_path)
    offset = len(existing)
    write(tail_lines(lines.feed(existing), last_lines))
    backoff = Backoff()
    next_look, max_age = clock(), 0.0  # the first look is our own
    seen = job.state
    told: tuple[str, str | None] | None = None  # what on_change last said
    first_look = True
    carry = b""  # the end of the last read: the marker may arrive split across two reads
    soon: float | None = None  # after an end line: the next quick look's pause
    while True:
        data = slurm.transport.read_bytes(job.log_path, offset)
        offset += len(data)
        if data:
            write(lines.feed(data))
            window, carry = carry + data, (carry + data)[-80:]
            if ATTEMPT_FINISHED.search(window):
                carry = b""
                backoff.reset()
                # A look another follower made since (after this line was written) will do.
                next_look = min(next_look, clock() + END_LOOK_SECONDS)
                max_age = END_LOOK_SECONDS
                soon = 2 * END_LOOK_SECONDS
        if job.terminal:
            write(lines.feed(b"", final=True))
            break
        if clock() >= next_look:
            started = wall()
            result = refresh_shared(store, slurm, [job], max_age, now=started)
            if on_refresh is not None:
                on_refresh()
            now_in = (job.state, job.detail)
            if first_look and job.state == "PENDING" and job.detail in ORDINARY_WAITS:
                told = now_in  # just queued, as "Submitted" said: nothing to tell yet
            if on_change is not None and not job.terminal and now_in != told:
                told = now_in
                on_change(job)
            first_look = False
            if result.stale and on_stale:
                on_stale(result.stale_reason or "")
            if job.terminal:
                sleep(SETTLE_SECONDS)
                continue
            if soon is not None and not result.stale:
                pause, soon = soon, soon * 2
                if soon >= backoff.start:
                    soon = None
            else:
                soon = None  # a controller that does not answer gets the backoff
                pause = backoff.next_pause(
                    changed=job.state != seen, failed=result.stale, took=wall() - started
                )
            seen, max_age = job.state, pause
            next_look = clock() + pause
        sleep(max(0.05, min(POLL_SECONDS, next_look - clock())))
    return job
