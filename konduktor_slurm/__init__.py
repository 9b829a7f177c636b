"""konduktor-slurm: the Konduktor run lifecycle on Slurm.

Also a Python SDK with Konduktor's names (``import konduktor_slurm as konduktor``); its names
are imported on first use, so ``import konduktor_slurm`` costs nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's import (~5 ms) is left to what needs it
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; loaded by __getattr__ on first use.
_SDK = {
    name: "konduktor_slurm.sdk"
    for name in (
        "Job",
        "JobFailedError",
        "KonduktorError",
        "KonduktorReturnError",
        "MalformedResultError",
        "NoResultReportedError",
        "Resources",
        "ResultTimeoutError",
        "ResultTooLargeError",
        "Task",
        "TaskError",
        "UnreachableError",
        "launch",
        "report",
    )
}

__all__ = ["__version__", *_SDK]


def __getattr__(name: str) -> Any:
    module = _SDK.get(name)
    if module is None:
        raise AttributeError(f"module 'konduktor_slurm' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
