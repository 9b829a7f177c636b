"""Print a job's output, and follow it until the job reaches a terminal state.

Following does not stop when the log goes quiet or when Slurm suspends or requeues the job
(the output file is opened in append mode, so a requeued run continues it): it stops when
the lifecycle says COMPLETED or FAILED, then prints what is left.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import refresh

POLL_SECONDS = 1.0
STATUS_EVERY_SECONDS = 2.0
# After Slurm reports the job finished, the last lines may still be reaching the file.
SETTLE_SECONDS = 1.0
# `srun --label` prefixes each line with the task (= node) rank, padded when there are >= 10.
_RANK_PREFIX = re.compile(r"^\s*(\d+): ")


class LineFilter:
    """Turns raw chunks into whole lines, keeping only one rank's when asked."""

    def __init__(self, node_rank: int | None) -> None:
        self.node_rank = node_rank
        self._partial = ""

    def keep(self, line: str) -> bool:
        if self.node_rank is None:
            return True
        match = _RANK_PREFIX.match(line)
        return bool(match) and int(match.group(1)) == self.node_rank

    def feed(self, text: str, final: bool = False) -> str:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = "" if final else lines.pop()
        return "".join(f"{line}\n" for line in lines if line and self.keep(line))


def tail_lines(text: str, count: int | None) -> str:
    if count is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:]) if count > 0 else ""


def follow(
    store: Store,
    slurm: Slurm,
    job: JobRecord,
    write: Callable[[str], None],
    on_stale: Callable[[str], None] | None = None,
    node_rank: int | None = None,
    last_lines: int | None = None,
) -> JobRecord:
    """Stream ``job``'s log until it is terminal; return the job with its final state."""
    lines = LineFilter(node_rank)
    existing = slurm.transport.read_bytes(job.log_path)
    offset = len(existing)
    write(tail_lines(lines.feed(existing.decode("utf-8", errors="replace")), last_lines))
    last_status = 0.0
    while True:
        data = slurm.transport.read_bytes(job.log_path, offset)
        offset += len(data)
        if data:
            write(lines.feed(data.decode("utf-8", errors="replace")))
        if job.terminal:
            write(lines.feed("", final=True))
            break
        if time.monotonic() - last_status >= STATUS_EVERY_SECONDS:
            last_status = time.monotonic()
            result = refresh(store, slurm, [job])
            if result.stale and on_stale:
                on_stale(result.stale_reason or "")
            if job.terminal:
                time.sleep(SETTLE_SECONDS)
                continue
        time.sleep(POLL_SECONDS)
    return job
