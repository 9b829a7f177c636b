"""A workdir that holds konduktor's own directories (`workdir: .` run from the directory
holding $KONDUKTOR_HOME, or `workdir: ~`) leaves them out of the snapshot.

Before, each launch copied every earlier job's snapshot into its own, and launches at once
copied each other's half-made copies: 60 launches from such a directory filled 30 GB in a
few minutes and failed with "directory has vanished". Real rsync, through the local
transport."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from konduktor_slurm.staging import Reporter, own_dirs_inside, stage
from konduktor_slurm.transport import LocalTransport


@pytest.mark.parametrize(
    ("keep_out", "inside"),
    [
        (("work/home",), ["home"]),
        (("work/home", "work/home/jobs"), ["home"]),  # one rule for nested ones
        (("work/a/b", "work/c"), ["a/b", "c"]),
        (("work",), []),  # the workdir itself: a relaunch from inside the jobs dir is fine
        (("elsewhere",), []),
        (("workshop",), []),  # a sibling whose name starts the same
        (("",), []),  # the current directory (the test's tmp dir) holds the workdir
    ],
)
def test_which_own_directories_are_inside_the_source(
    keep_out: tuple[str, ...], inside: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    assert own_dirs_inside(Path("work"), tuple(str(tmp_path / p) for p in keep_out)) == inside


def test_a_symlinked_workdir_is_compared_by_where_it_leads(tmp_path: Path) -> None:
    (tmp_path / "real" / "home").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert own_dirs_inside(tmp_path / "link", (str(tmp_path / "real" / "home"),)) == ["home"]


def test_a_file_source_has_nothing_inside(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert own_dirs_inside(tmp_path / "f", (str(tmp_path),)) == []


@pytest.mark.parametrize("home_name", ["home", "we*ird [1]?", "back\\slash", "-dash"])
def test_home_and_jobs_inside_the_workdir_are_left_out_and_said(
    home_name: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    home = work / home_name
    jobs = home / "jobs"
    jobs.mkdir(parents=True)
    (home / "state.db").write_text("store")
    (work / "train.py").write_text("print(1)\n")
    # Names like it, and one its characters taken as wildcards would match: they stay.
    (work / "homeX").mkdir()
    (work / "homeX" / "keep.txt").write_text("kept")
    (work / "weXXird 1Z").mkdir()
    (work / "sub" / home_name).mkdir(parents=True)
    (work / "sub" / home_name / "keep.txt").write_text("kept")
    # An ignore file cannot bring them back.
    (work / ".konduktorignore").write_text(f"!/{home_name}/\n")
    said = io.StringIO()
    for index in range(3):
        staged, _ = stage(
            LocalTransport(), str(jobs / f"t-{index}"), work, {}, task_name="t",
            reporter=Reporter(said), keep_out=(str(home),),
        )  # fmt: skip
        copy = Path(staged)
        assert sorted(p.name for p in copy.iterdir()) == sorted(
            [".konduktorignore", "homeX", "sub", "train.py", "weXXird 1Z"]
        )
        assert (copy / "sub" / home_name / "keep.txt").read_text() == "kept"
    assert said.getvalue().count(f"left out of the copy: {home}") == 3
    # Three launches, three small snapshots: none holds another.
    total = sum(len(files) for _, _, files in os.walk(jobs))
    assert total < 20, total


def test_staging_here_leaves_the_jobs_directory_out_without_being_told(tmp_path: Path) -> None:
    work = tmp_path / "work"
    jobs = work / "runs"
    jobs.mkdir(parents=True)
    (work / "a.txt").write_text("a")
    staged, _ = stage(
        LocalTransport(), str(jobs / "t-0"), work, {}, reporter=Reporter(io.StringIO())
    )
    assert sorted(p.name for p in Path(staged).iterdir()) == ["a.txt"]


def test_a_file_mount_directory_holding_the_home_leaves_it_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "kd").mkdir(parents=True)
    (data / "kd" / "state.db").write_text("store")
    (data / "x.csv").write_text("1,2\n")
    _, mounts = stage(
        LocalTransport(), str(tmp_path / "jobs" / "t-0"), None, {"/data": data},
        reporter=Reporter(io.StringIO()), keep_out=(str(data / "kd"),),
    )  # fmt: skip
    assert sorted(p.name for p in Path(mounts[0].source).iterdir()) == ["x.csv"]
