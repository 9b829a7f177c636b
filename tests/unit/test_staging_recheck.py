"""Which files a re-launch compares by content: those whose time falls within the previous
staging (see staging.recently_changed), found with one scandir walk."""

from __future__ import annotations

import os
from pathlib import Path

from konduktor_slurm.staging import TICK_SECONDS, Snapshot, recently_changed

STAGED = Snapshot("/jobs/t-1a2b", started=1_000_000.0, finished=1_000_010.0)


def os_walk_reference(source: Path, snapshot: Snapshot) -> set[str]:
    """The rule as os.walk reads it: every non-directory entry, by its own (lstat) time."""
    low, high = snapshot.started - TICK_SECONDS, snapshot.finished + TICK_SECONDS
    found = set()
    for root, _dirs, files in os.walk(source):
        for name in files:
            path = Path(root) / name
            if low <= path.lstat().st_mtime <= high:
                found.add(str(path.relative_to(source)))
    return found


def touch(path: Path, at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (at, at))


def test_the_files_touched_during_the_last_staging_and_only_those(tmp_path: Path) -> None:
    source = tmp_path / "project"
    touch(source / "old.py", STAGED.started - 3600)
    touch(source / "edge-low.py", STAGED.started - TICK_SECONDS)
    touch(source / "during.py", STAGED.started + 5)
    touch(source / "deep" / "er" / "during.bin", STAGED.finished)
    touch(source / "deep" / "edge-high.txt", STAGED.finished + TICK_SECONDS)
    touch(source / "deep" / "after.txt", STAGED.finished + 60)
    touch(tmp_path / "elsewhere" / "during.py", STAGED.started + 5)
    (source / "linked-dir").symlink_to(tmp_path / "elsewhere")  # not entered
    (source / "link.py").symlink_to(source / "old.py")  # judged by the link's own time
    os.utime(source / "link.py", (STAGED.started + 1,) * 2, follow_symlinks=False)
    (source / "dangling").symlink_to(tmp_path / "nowhere")
    os.utime(source / "dangling", (STAGED.started + 1,) * 2, follow_symlinks=False)

    found = recently_changed(source, STAGED)
    assert len(found) == len(set(found))
    assert (
        set(found)
        == os_walk_reference(source, STAGED)
        == {
            "edge-low.py",
            "during.py",
            "deep/er/during.bin",
            "deep/edge-high.txt",
            "link.py",
            "dangling",
        }
    )


def test_a_source_that_is_a_file(tmp_path: Path) -> None:
    touch(tmp_path / "data.csv", STAGED.started + 1)
    touch(tmp_path / "old.csv", STAGED.started - 60)
    assert recently_changed(tmp_path / "data.csv", STAGED) == [""]
    assert recently_changed(tmp_path / "old.csv", STAGED) == []
