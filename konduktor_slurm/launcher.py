"""Which process is launching a job, and whether it is still there.

A job is CREATED while its launch stages the files and calls sbatch. If that process ends
before it records the outcome (killed, its terminal or SSH session gone, the machine
rebooted), nobody else would: the job stayed CREATED for good, even when Slurm had already
taken and run it. The launch records itself here; a refresh that finds the process gone
settles the job (tracker.settle_orphans).
"""

from __future__ import annotations

import os
from typing import Any


def this_launcher() -> dict[str, Any]:
    """What identifies the current process later: host, pid namespace, pid and the pid's
    start time."""
    pid = os.getpid()
    return {
        "host": os.uname().nodename,
        "pidns": _pid_namespace(),
        "pid": pid,
        "started": _start_ticks(pid),
    }


def launcher_gone(launcher: object) -> bool:
    """Whether the recorded launching process has certainly ended. False when it cannot be
    told: a record without one (an older konduktor), from another host (a home shared by
    several login nodes) or from another pid namespace (a container on this host)."""
    if not isinstance(launcher, dict):
        return False
    pid = launcher.get("pid")
    if launcher.get("host") != os.uname().nodename or not isinstance(pid, int) or pid <= 0:
        return False
    if launcher.get("pidns") != _pid_namespace():  # a container's pids are not ours to see
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user now has the pid
        return True
    started = launcher.get("started")
    # Same pid, another start: the pid was given to a new process since.
    return started is not None and _start_ticks(pid) not in (None, started)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3, the state
    except (OSError, ValueError, IndexError):
        return None


def _pid_namespace() -> int | None:
    """The inode of this process's pid namespace (Linux); None elsewhere."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
