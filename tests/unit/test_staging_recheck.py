"""Which files a re-launch compares by content: those whose time falls within the previous
staging (the rule as one scandir walk: recently_changed below), as staging finds them:
in the list of what rsync copies, with the time rsync read."""

from __future__ import annotations

import os
from pathlib import Path

from konduktor_slurm.staging import (
    TICK_SECONDS,
    SilentReporter,
    Snapshot,
    _rsync_pass,
    _unescape,
    _window_text,
    recent_file,
)
from konduktor_slurm.transport import LocalTransport

STAGED = Snapshot("/jobs/t-1a2b", started=1_000_000.0, finished=1_000_010.0)


def recently_changed(source: Path, snapshot: Snapshot) -> list[str]:
    """Files of ``source`` whose time says they may have changed unseen since ``snapshot``.

    rsync's quick check (size and modification time) judges a file rewritten with the same
    size within one timestamp tick of the copy in the previous snapshot as unchanged, and a
    --link-dest copy would hard-link the old content: the job would run stale code. Only a
    file whose time falls within the previous staging (give or take a tick) can be such a
    file: an older one was not touched since, and a newer one has a time the copy cannot
    have. Those few are compared by content. [""] stands for a source that is a file.

    Staging applies this rule to rsync's own list of what it copies (``recent_file``), which
    saves a walk over the source; this walk is the rule's reference, which these tests hold
    that list to.
    """
    low, high = snapshot.started - TICK_SECONDS, snapshot.finished + TICK_SECONDS

    def suspicious(path: Path) -> bool:
        try:
            mtime = path.lstat().st_mtime
        except OSError:
            return False
        return low <= mtime <= high

    if not source.is_dir():
        return [""] if suspicious(source) else []
    # What os.walk lists as files (symlinks to directories are not entered), one lstat
    # each, without a Path per file: 10,000 files take a third of os.walk's time.
    found: list[str] = []
    pending = [(str(source), "")]
    while pending:
        directory, relative = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # as os.walk: an unreadable directory is passed over
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.is_symlink():
                    pending.append((entry.path, f"{relative}{entry.name}/"))
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if low <= mtime <= high:
                found.append(f"{relative}{entry.name}")
    return found


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


def timed_files(source: Path) -> None:
    """Files before, at the edges of, within and after STAGED's window (edge-low.py,
    during.py, deep/er/during.bin and deep/edge-high.txt fall in it)."""
    touch(source / "old.py", STAGED.started - 3600)
    touch(source / "edge-low.py", STAGED.started - TICK_SECONDS)
    touch(source / "during.py", STAGED.started + 5)
    touch(source / "deep" / "er" / "during.bin", STAGED.finished)
    touch(source / "deep" / "edge-high.txt", STAGED.finished + TICK_SECONDS)
    touch(source / "deep" / "after.txt", STAGED.finished + 60)


def test_the_files_touched_during_the_last_staging_and_only_those(tmp_path: Path) -> None:
    source = tmp_path / "project"
    timed_files(source)
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


# ---- the same rule read from rsync's own output (what staging uses) ----------------------

WINDOW = (STAGED.started - TICK_SECONDS, STAGED.finished + TICK_SECONDS)
BOUNDS = _window_text(WINDOW)


def rsync_recent(source: Path, destination: Path, window: tuple[float, float]) -> set[bytes]:
    """The files staging's first rsync pass names for comparing by content."""
    _, recent = _rsync_pass(
        LocalTransport(), source, str(destination), "t", SilentReporter(), None, window=window
    )
    assert len(recent) == len(set(recent))
    return set(recent)


def test_rsync_names_what_the_walk_finds_among_the_files_it_copies(tmp_path: Path) -> None:
    source = tmp_path / "project"
    timed_files(source)
    # Names rsync escapes when it prints them (or prints as raw bytes): each must come back
    # as the very name, for --files-from.
    odd = ["new\nline.py", "back\\#134slash.py", "tab\there.py", "héllo.py", "sp ace.py"]
    for name in odd:
        touch(source / name, STAGED.started + 1)
    raw = os.fsencode(source) + b"/bad\xffbyte.py"
    with open(raw, "w") as handle:
        handle.write("x")
    os.utime(raw, (STAGED.started + 1,) * 2)
    touch(source / "ignored.env", STAGED.started + 1)
    (source / ".gitignore").write_text("ignored.env\n")
    os.utime(source / ".gitignore", (STAGED.started - 3600,) * 2)
    (source / "link.py").symlink_to(source / "old.py")  # a symlink is copied as a symlink
    os.utime(source / "link.py", (STAGED.started + 1,) * 2, follow_symlinks=False)

    found = rsync_recent(source, tmp_path / "staged", WINDOW)
    walked = {os.fsencode(name) for name in recently_changed(source, STAGED)}
    # The walk's files, but for what rsync does not compare by content or does not copy.
    assert found == walked - {b"link.py", b"ignored.env"}
    assert found == {
        b"edge-low.py",
        b"during.py",
        b"deep/er/during.bin",
        b"deep/edge-high.txt",
        b"bad\xffbyte.py",
        *(os.fsencode(name) for name in odd),
    }


def test_rsync_names_a_source_file_as_the_empty_path(tmp_path: Path) -> None:
    touch(tmp_path / "data.csv", STAGED.started + 1)
    touch(tmp_path / "old.csv", STAGED.started - 60)
    assert rsync_recent(tmp_path / "data.csv", tmp_path / "a", WINDOW) == {b""}
    assert rsync_recent(tmp_path / "old.csv", tmp_path / "b", WINDOW) == set()


def test_a_second_is_in_when_any_instant_of_it_is() -> None:
    # rsync prints times truncated to the second, so the bounds are whole seconds: the
    # second holding the window's start and the one holding its end are in.
    low, high = _window_text((1_000_000.5, 1_000_010.25))
    assert (low, high) == ("1970/01/12-13:46:40", "1970/01/12-13:46:50")
    line = ">f+++++++++ {} a.py"
    assert recent_file(line.format("1970/01/12-13:46:39"), (low, high)) is None
    assert recent_file(line.format("1970/01/12-13:46:40"), (low, high)) == b"a.py"
    assert recent_file(line.format("1970/01/12-13:46:50"), (low, high)) == b"a.py"
    assert recent_file(line.format("1970/01/12-13:46:51"), (low, high)) is None


def test_only_regular_files_are_named_and_an_unreadable_time_counts_as_recent() -> None:
    inside = "2026/01/01-00:00:05"
    bounds = ("2026/01/01-00:00:00", "2026/01/01-00:00:10")
    assert recent_file(f"hf          {inside} a/b.py", bounds) == b"a/b.py"
    assert recent_file(f"cd+++++++++ {inside} a/", bounds) is None
    assert recent_file(f"cL+++++++++ {inside} link", bounds) is None
    assert recent_file("created directory /x", bounds) is None
    assert recent_file(">f+++++++++ 12026/01/01-00:00:05 far.py", bounds) == b"far.py"
    assert recent_file(f">f+++++++++ {inside} sp ace\\#012nl\\#134#x.py", bounds) == (
        b"sp ace\nnl\\#x.py"
    )


def test_unescape_gives_back_the_names_bytes() -> None:
    assert _unescape("a\\#012b") == b"a\nb"
    assert _unescape("back\\#134#101") == b"back\\#101"
    assert _unescape("héllo") == "héllo".encode()
    assert _unescape(b"bad\xff".decode(errors="surrogateescape")) == b"bad\xff"
