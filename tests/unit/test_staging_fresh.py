"""Staging ships the content as it is at launch, even when a file is rewritten with the same
size within one timestamp tick of the previous snapshot (rsync's quick check cannot see it).
Real rsync, on this machine, through the local transport."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from konduktor_slurm.staging import SilentReporter, stage
from konduktor_slurm.transport import LocalTransport


def snapshot(jobs: Path, index: int, workdir: Path, mounts: dict[str, Path] | None = None):
    job_dir = jobs / f"sweep-{index:04x}"
    return stage(
        LocalTransport(),
        str(job_dir),
        workdir,
        mounts or {},
        task_name="sweep",
        reporter=SilentReporter(),
    ), job_dir


def test_many_rapid_same_size_rewrites_each_ship_their_content(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    config = work / "config.txt"
    single = tmp_path / "lr.txt"
    jobs = tmp_path / "jobs"
    for index in range(12):
        config.write_text(f"lr={index:03d}\n")  # same size every time
        single.write_text(f"{index:03d}\n")
        # As on a filesystem with 2-second timestamps: rewrites within one tick keep the
        # modification time of the previous copy.
        tick = int(time.time()) // 2 * 2
        os.utime(config, (tick, tick))
        os.utime(single, (tick, tick))
        (_, mounts), job_dir = snapshot(jobs, index, work, {"/data/lr.txt": single})
        assert (job_dir / "workdir" / "config.txt").read_text() == f"lr={index:03d}\n"
        assert (Path(mounts[0].source)).read_text() == f"{index:03d}\n"


def test_old_unchanged_files_are_still_hard_linked(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    old = work / "big.bin"
    old.write_bytes(b"x" * 100_000)
    os.utime(old, (1_000_000_000, 1_000_000_000))  # long before any staging
    snapshot(tmp_path / "jobs", 1, work)
    (work / "new.txt").write_text("changed\n")
    snapshot(tmp_path / "jobs", 2, work)
    first = tmp_path / "jobs" / "sweep-0001" / "workdir" / "big.bin"
    second = tmp_path / "jobs" / "sweep-0002" / "workdir" / "big.bin"
    assert first.stat().st_ino == second.stat().st_ino  # linked, not copied


def test_a_recent_ignored_file_is_not_shipped_by_the_recheck(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".gitignore").write_text("secret.env\n")
    (work / "secret.env").write_text("TOKEN=1\n")
    (work / "train.py").write_text("v1\n")
    snapshot(tmp_path / "jobs", 1, work)
    (work / "secret.env").write_text("TOKEN=2\n")
    (work / "train.py").write_text("v2\n")
    snapshot(tmp_path / "jobs", 2, work)
    staged = tmp_path / "jobs" / "sweep-0002" / "workdir"
    assert (staged / "train.py").read_text() == "v2\n"
    assert not (staged / "secret.env").exists()


def test_a_same_size_rewrite_of_a_file_with_an_odd_name_ships_its_content(tmp_path: Path) -> None:
    # The recheck lists the files rsync printed (escaped) back to rsync (raw, NUL-separated):
    # a name with a newline, an escape-like backslash or a byte that is not UTF-8 must still
    # be compared by content, or the job would run the previous version.
    work = tmp_path / "work"
    work.mkdir()
    names = [b"new\nline.py", b"back\\#134slash.py", b"bad\xffbyte.py", "h\u00e9llo.py".encode()]
    jobs = tmp_path / "jobs"
    for index in range(3):
        tick = int(time.time()) // 2 * 2
        for name in names:
            path = os.fsencode(work) + b"/" + name
            with open(path, "w") as handle:
                handle.write(f"v{index}\n")  # same size every time
            os.utime(path, (tick, tick))
        _, job_dir = snapshot(jobs, index, work)
        for name in names:
            with open(os.fsencode(job_dir / "workdir") + b"/" + name) as handle:
                assert handle.read() == f"v{index}\n", name


def two_checkouts(tmp_path: Path) -> tuple[Path, Path]:
    """Two directories holding a file of the same name, size and time, but other content
    (two checkouts of a repository made in the same second)."""
    made = []
    for version in ("one", "two"):
        directory = tmp_path / version
        directory.mkdir()
        (directory / "msg.txt").write_text(f"{version}\n")
        os.utime(directory / "msg.txt", (1_000_000_000, 1_000_000_000))
        made.append(directory)
    return made[0], made[1]


def test_a_workdir_that_now_points_elsewhere_ships_its_own_files(tmp_path: Path) -> None:
    # `workdir: current`, with current -> one and then -> two: validation resolves the link,
    # so staging sees two directories under one task name.
    one, two = two_checkouts(tmp_path)
    jobs = tmp_path / "jobs"
    snapshot(jobs, 1, one)
    _, job_dir = snapshot(jobs, 2, two)
    assert (job_dir / "workdir" / "msg.txt").read_text() == "two\n"
    # and back again: one was staged before, but not by the previous launch
    _, job_dir = snapshot(jobs, 3, one)
    assert (job_dir / "workdir" / "msg.txt").read_text() == "one\n"
    _, again = snapshot(jobs, 4, one)  # the same source again: linked as before
    assert (again / "workdir" / "msg.txt").stat().st_ino == (
        job_dir / "workdir" / "msg.txt"
    ).stat().st_ino


def test_a_file_mount_given_another_source_ships_it(tmp_path: Path) -> None:
    one, two = two_checkouts(tmp_path)
    jobs = tmp_path / "jobs"
    snapshot(jobs, 1, None, {"/data/msg.txt": one / "msg.txt"})
    (_, mounts), _ = snapshot(jobs, 2, None, {"/data/msg.txt": two / "msg.txt"})
    assert Path(mounts[0].source).read_text() == "two\n"
    (_, mounts), _ = snapshot(jobs, 3, None, {"/data": two})  # the same slot, a directory now
    assert (Path(mounts[0].source) / "msg.txt").read_text() == "two\n"


def test_a_directory_replaced_at_the_same_path_ships_its_files(tmp_path: Path) -> None:
    one, two = two_checkouts(tmp_path)
    jobs = tmp_path / "jobs"
    snapshot(jobs, 1, one)
    os.rename(one, tmp_path / "old")
    os.rename(two, one)  # `one` is now another directory, with other files of the same times
    _, job_dir = snapshot(jobs, 2, one)
    assert (job_dir / "workdir" / "msg.txt").read_text() == "two\n"


@pytest.mark.parametrize(
    "pointer",
    ["sweep-0001\n1 2\n", "sweep-0001\n1 2\nnot json\n", "sweep-0001\n1 2\n" + "[" * 5000],
)
def test_a_pointer_that_does_not_say_where_its_copies_came_from_is_not_linked(
    tmp_path: Path, pointer: str
) -> None:
    # An older konduktor's pointer (name and times only), or a damaged one.
    one, two = two_checkouts(tmp_path)
    jobs = tmp_path / "jobs"
    snapshot(jobs, 1, one)
    (jobs / ".latest" / "sweep").write_text(pointer)
    _, job_dir = snapshot(jobs, 2, two)
    assert (job_dir / "workdir" / "msg.txt").read_text() == "two\n"
