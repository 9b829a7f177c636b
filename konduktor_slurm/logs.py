"""Print a job's output, and follow it until the job reaches a terminal state.

Following does not stop when the log goes quiet or when Slurm requeues the job: it stops
when the lifecycle says COMPLETED or FAILED, then prints what is left and the final state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.tracker import refresh

POLL_SECONDS = 1.0
STATUS_EVERY_SECONDS = 2.0
# After Slurm reports the job finished, the last lines may still be reaching the file.
SETTLE_SECONDS = 1.0


def print_new_output(
    slurm: Slurm, job: JobRecord, offset: int, write: Callable[[str], None]
) -> int:
    data = slurm.transport.read_bytes(job.log_path, offset)
    if data:
        write(data.decode("utf-8", errors="replace"))
    return offset + len(data)


def follow(
    store: Store,
    slurm: Slurm,
    job: JobRecord,
    write: Callable[[str], None],
    on_stale: Callable[[str], None] | None = None,
) -> JobRecord:
    """Stream ``job``'s log until it is terminal; return the job with its final state."""
    offset = 0
    last_status = 0.0
    while True:
        offset = print_new_output(slurm, job, offset, write)
        if job.terminal:
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
