"""How often a waiter asks Slurm: one backoff for every follower and waiter.

``logs --follow``, ``launch --wait``, ``result`` and the SDK's waits look at the job after
``POLL_START`` seconds, each next look ``POLL_FACTOR`` times later, never more than
``POLL_MAX`` seconds apart. A change of state starts again from ``POLL_START`` (a job that
just started may end soon). A controller that did not answer, or that answered slowly (a
loaded slurmctld, or Slurm's per-user RPC rate limit, which makes the client sleep and retry
inside the call), is never met with a retry loop: the backoff keeps growing, and a poll that
took T seconds is not repeated within ``SLOW_CALL_FACTOR`` * T.

Per follower that is 6 looks in the first minute (at 2, 5, 9.5, 16, 26 and 42 s) and then 2
a minute; concurrent waiters of one store share their looks (``tracker.refresh_shared``).
"""

from __future__ import annotations

from collections.abc import Iterator

POLL_START = 2.0
POLL_FACTOR = 1.5
POLL_MAX = 30.0
# A poll that took T seconds waits at least this many times T before the next one.
SLOW_CALL_FACTOR = 10.0


def poll_intervals(
    start: float = POLL_START, factor: float = POLL_FACTOR, most: float = POLL_MAX
) -> Iterator[float]:
    """2, 3, 4.5, 6.75, ... seconds, capped at ``most``."""
    interval = start
    while True:
        yield interval
        interval = min(most, interval * factor)


class Backoff:
    """The pause before each next poll, from what the last poll saw."""

    def __init__(
        self, start: float = POLL_START, factor: float = POLL_FACTOR, most: float = POLL_MAX
    ) -> None:
        self.start, self.factor, self.most = start, factor, most
        self.interval = start

    def reset(self) -> None:
        """Look again soon: something happened (a state change, an end line in the log)."""
        self.interval = self.start

    def next_pause(
        self, *, changed: bool = False, failed: bool = False, took: float = 0.0
    ) -> float:
        """Seconds until the next poll. ``changed``: the state moved (start again from the
        shortest pause, unless the poll ``failed``); ``took``: how long the poll lasted."""
        if changed and not failed:
            self.reset()
        pause = self.interval
        self.interval = min(self.most, self.interval * self.factor)
        return min(self.most, max(pause, took * SLOW_CALL_FACTOR))
