"""Snapshot a task's workdir and file_mounts into the job's directory with rsync.

The snapshot is what the job runs, so later edits to the originals never change a job
already launched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from konduktor_slurm.render import StagedMount
from konduktor_slurm.transport import Transport

IGNORE_FILES = (".konduktorignore", ".gitignore")


class StagingError(RuntimeError):
    pass


def _ignore_filter(source: Path) -> list[str]:
    # .konduktorignore wins; otherwise honour .gitignore, as Konduktor and SkyPilot do.
    for name in IGNORE_FILES:
        if (source / name).is_file():
            return [f"--filter=:- {name}"]
    return []


def _rsync(source: Path, destination: str, transport: Transport) -> None:
    argv = ["rsync", "-a"]
    if source.is_dir():
        argv += _ignore_filter(source)
        argv += [f"{source}/", transport.rsync_destination(destination.rstrip("/") + "/")]
    else:
        argv += [str(source), transport.rsync_destination(destination)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise StagingError("rsync is not installed on this machine") from exc
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
        raise StagingError(f"rsync {source}: {message}")


def stage(
    transport: Transport,
    job_dir: str,
    workdir: Path | None,
    file_mounts: dict[str, Path],
) -> tuple[str | None, tuple[StagedMount, ...]]:
    """Copy the sources under ``job_dir``; return the staged workdir and mounts."""
    transport.make_dirs(job_dir, 0o700)
    staged_workdir = None
    if workdir is not None:
        if not workdir.is_dir():
            raise StagingError(f"workdir {workdir} does not exist")
        staged_workdir = f"{job_dir}/workdir"
        _rsync(workdir, staged_workdir, transport)
    mounts = []
    for index, (destination, source) in enumerate(sorted(file_mounts.items())):
        if not source.exists():
            raise StagingError(f"file_mounts source {source} does not exist")
        staged = f"{job_dir}/mounts/{index}"
        transport.make_dirs(f"{job_dir}/mounts", 0o700)
        _rsync(source, staged, transport)
        mounts.append(StagedMount(destination=destination, source=staged, is_dir=source.is_dir()))
    return staged_workdir, tuple(mounts)
