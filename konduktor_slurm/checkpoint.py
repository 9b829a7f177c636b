"""How a task saves its work: the settings of ``resources.job_config``'s ``checkpoint_*``
keys, as the task model, the renderer and the job store share them. Pure, and light: the
store reads it for every ``konduktor status``."""

from __future__ import annotations

from dataclasses import dataclass

# The signal a task's ranks get to save their work, unless the task names another. Not
# SIGUSR1: NCCL 2.12 catches it (submitit moved to SIGUSR2, then to SIGHUP); RCCL may
# catch SIGUSR2. Nothing in the CUDA/ROCm stacks uses SIGHUP, and torchrun passes it on to
# its workers (and waits for them), so a training script under torchrun gets it too.
DEFAULT_CHECKPOINT_SIGNAL = "HUP"
DEFAULT_CHECKPOINT_GRACE = 90  # seconds; submitit's default warning time too


@dataclass(frozen=True)
class Checkpoint:
    """How a task saves its work (``resources.job_config``'s ``checkpoint_*`` keys).

    Before a stop by ``konduktor stop --mode checkpoint``, a preemption with a grace time
    and the time limit, every rank's processes get ``signal`` and have ``grace`` seconds to
    save. ``directory``: where the task keeps its checkpoint on the nodes (as written:
    absolute or ``~/...``); None means ``<job dir>/checkpoint`` on the cluster's shared
    filesystem. Either way the job sees it as ``KONDUKTOR_CHECKPOINT_DIR``.
    """

    signal: str = DEFAULT_CHECKPOINT_SIGNAL  # a signal name without "SIG": "HUP", "USR2"
    grace: int = DEFAULT_CHECKPOINT_GRACE
    directory: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"signal": self.signal, "grace": self.grace, "directory": self.directory}

    @classmethod
    def from_json(cls, data: object) -> Checkpoint | None:
        """The stored form back; None for anything that is not one (a damaged column)."""
        if not isinstance(data, dict):
            return None
        signal, grace, directory = data.get("signal"), data.get("grace"), data.get("directory")
        if not isinstance(signal, str) or not signal:
            return None
        if not isinstance(grace, int) or isinstance(grace, bool) or grace < 1:
            return None
        if directory is not None and not isinstance(directory, str):
            return None
        return cls(signal, grace, directory)
