"""The Python SDK, with Konduktor's names (``import konduktor_slurm as konduktor``).

Importing ``konduktor_slurm`` stays as light as the CLI's start-up: the names below are
loaded on first use (``konduktor_slurm.__getattr__``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

from konduktor_slurm.service.results import RESULT_FILENAME

OUTPUT_DIR_ENV = "KONDUKTOR_OUTPUT_DIR"


def report(value: Any, path: str | None = None) -> None:
    """Report ``value`` as this job's result: JSON in ``$KONDUKTOR_OUTPUT_DIR/result.json``.

    For workloads. Only rank 0's result counts (``konduktor result``); the file is replaced
    atomically, so a reader never sees half a value.
    """
    if path is None:
        output_dir = os.environ.get(OUTPUT_DIR_ENV)
        if not output_dir:
            raise RuntimeError(
                f"{OUTPUT_DIR_ENV} is not set: call report() from inside a job launched "
                "with konduktor"
            )
        path = os.path.join(output_dir, RESULT_FILENAME)
    text = json.dumps(value)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".result.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
