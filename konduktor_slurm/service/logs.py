"""Logs: a job's output, as it is now or followed until the job ends.

Every node's lines are prefixed by the node rank (``0: ...``, srun's --label); one rank's
lines can be picked. ``-n`` reads only the end of the file (over SFTP a 10 GB log's last
lines cost kilobytes); following streams new output until the lifecycle says COMPLETED or
FAILED, across suspends and requeues.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import InputError

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import JobRecord


def check_rank(job: JobRecord, node_rank: int | None) -> None:
    if node_rank is not None and node_rank >= job.num_nodes:
        raise InputError(
            f"--node-rank {node_rank}: {job.name} has ranks 0..{job.num_nodes - 1} only"
        )


def read(
    session: Session, job: JobRecord, node_rank: int | None = None, last_lines: int | None = None
) -> str | None:
    """The output so far (one rank's with ``node_rank``; the last ``last_lines`` lines only),
    or None when the job has written nothing yet."""
    from konduktor_slurm.logs import LineFilter, read_last_lines

    check_rank(job, node_rank)
    transport = session.slurm.transport
    if last_lines is not None:
        text = read_last_lines(transport, job.log_path, last_lines, node_rank)
        if not text and not transport.read_tail(job.log_path, 1):
            return None
        return text
    data = transport.read_bytes(job.log_path)
    if not data:
        return None
    return LineFilter(node_rank).feed(data, final=True)


def follow(
    session: Session,
    job: JobRecord,
    write: Callable[[str], None],
    *,
    on_stale: Callable[[str], None] | None = None,
    node_rank: int | None = None,
    last_lines: int | None = None,
    on_change: Callable[[JobRecord], None] | None = None,
) -> JobRecord:
    """Stream the output to ``write`` until the job is COMPLETED or FAILED; return it.
    ``on_change``: the job found in another state, or for another reason, on the way."""
    from konduktor_slurm import logs
    from konduktor_slurm.service.notify import run_due

    check_rank(job, node_rank)
    return logs.follow(
        session.store,
        session.slurm,
        job,
        write,
        on_stale,
        node_rank=node_rank,
        last_lines=last_lines,
        on_refresh=lambda: run_due(session.store, [job]),  # its event_callback, once per change
        on_change=on_change,
    )
