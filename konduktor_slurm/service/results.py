"""A job's return value: rank 0's ``$KONDUKTOR_OUTPUT_DIR/result.json``.

Every rank has its own output directory (``<job dir>/output/rank-N``, on the cluster's shared
filesystem); rank 0's ``result.json`` is the job's value, as the README documents. A new
attempt (restart, requeue) removes the previous attempt's ``result.json`` before it runs, so
a value always belongs to the run that ended the job.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from konduktor_slurm.service.errors import (
    JobFailedError,
    MalformedResultError,
    NoResultReportedError,
    ResultTooLargeError,
)

if TYPE_CHECKING:
    from konduktor_slurm.store import JobRecord
    from konduktor_slurm.transport import Transport

RESULT_FILENAME = "result.json"
# Konduktor caps a result at about 3.5 KB (a Kubernetes limit); a file on a shared
# filesystem has no such limit, but a value is a summary, not an artifact.
RESULT_MAX_BYTES = 10 * 1024 * 1024


def output_dir(job: JobRecord, rank: int = 0) -> str:
    return f"{job.job_dir}/output/rank-{rank}"


def result_path(job: JobRecord) -> str:
    return f"{output_dir(job)}/{RESULT_FILENAME}"


def read_result(transport: Transport, job: JobRecord) -> Any:
    """The value a finished job reported, or the Konduktor error saying why there is none."""
    if job.state == "FAILED":
        detail = f" ({job.detail})" if job.detail else ""
        raise JobFailedError(f"{job.name} FAILED{detail}; it has no result")
    path = result_path(job)
    data = transport.read_bytes(path, 0, RESULT_MAX_BYTES + 1)
    if not data and not transport.run(["test", "-f", path]).ok:
        raise NoResultReportedError(
            f"{job.name} COMPLETED but reported no result: rank 0 wrote no "
            f"$KONDUKTOR_OUTPUT_DIR/{RESULT_FILENAME} ({path})"
        )
    if len(data) > RESULT_MAX_BYTES:
        raise ResultTooLargeError(
            f"{job.name}'s result is larger than {RESULT_MAX_BYTES // (1024 * 1024)} MiB "
            f"({path}); report a summary, not the whole artifact"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedResultError(
            f"{job.name}'s result is not valid JSON ({path}): {exc}"
        ) from None
