"""The ways `konduktor stop` can stop a job (``--mode``, config.yaml's ``stop_mode``).

A module of its own because config.py needs the names and a status must not pay for the
stop/start decisions (control.py) to read its settings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class StopMode(StrEnum):
    """How `konduktor stop` stops a running job (``--mode``, config.yaml's ``stop_mode``)."""

    AUTO = "auto"
    SUSPEND = "suspend"
    REQUEUE = "requeue"
    SIGNAL = "signal"
    CHECKPOINT = "checkpoint"


STOP_MODES: Final = tuple(mode.value for mode in StopMode)
