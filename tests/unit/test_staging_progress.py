"""Staging's progress: a terminal's bar gets rsync's progress as it copies; plain output
(cron, CI, scripts, the SDK) gets the same start and summary lines without rsync writing a
progress line per file for nobody. Real rsync, on this machine, through the local transport.
"""

from __future__ import annotations

import io
from pathlib import Path

from konduktor_slurm.staging import Progress, Reporter, TransferStats, stage
from konduktor_slurm.transport import LocalTransport

FILES = 400
DIRS = 20


class Watching(Reporter):
    """What a terminal's progress bar is given (RichReporter draws it)."""

    shows_progress = True

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.seen: list[Progress] = []
        self.finished: list[TransferStats] = []

    def progress(self, label: str, progress: Progress) -> None:
        self.seen.append(progress)

    def done(self, label: str, stats: TransferStats, linked_from: str | None) -> None:
        self.finished.append(stats)
        super().done(label, stats, linked_from)


class Plain(Reporter):
    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.progress_calls = 0

    def progress(self, label: str, progress: Progress) -> None:
        self.progress_calls += 1


def workdir(tmp_path: Path) -> Path:
    """FILES files of 1,000 bytes in DIRS directories."""
    work = tmp_path / "work"
    for index in range(FILES):
        directory = work / f"d{index % DIRS:02}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:03}.bin").write_bytes(bytes([index % 256]) * 1000)
    return work


def test_a_terminal_sees_every_file_counted_up_to_the_whole_copy(tmp_path: Path) -> None:
    reporter = Watching()
    stage(LocalTransport(), str(tmp_path / "jobs" / "a-1"), workdir(tmp_path), {},
          reporter=reporter)  # fmt: skip
    assert len(reporter.seen) >= FILES // 2, "a line per file or so"
    last = reporter.seen[-1]
    assert last.percent == 100 and last.bytes_done == FILES * 1000
    # One total on every line: the directories (and the top one) and the files.
    assert {p.total for p in reporter.seen if p.total is not None} == {FILES + DIRS + 1}
    assert [p.files_done for p in reporter.seen] == sorted(p.files_done for p in reporter.seen)
    assert reporter.finished[0].files_sent == FILES


def test_plain_output_says_the_same_without_rsync_listing_progress(tmp_path: Path) -> None:
    watched, plain = Watching(), Plain()
    work = workdir(tmp_path)
    stage(LocalTransport(), str(tmp_path / "jobs" / "a-1"), work, {}, reporter=watched)
    stage(LocalTransport(), str(tmp_path / "jobs" / "a-2"), work, {}, reporter=plain)
    assert plain.progress_calls == 0  # rsync was not asked for a line per file
    lines = [reporter.stream.getvalue().splitlines() for reporter in (watched, plain)]
    assert lines[1][0] == f"Staging workdir: {work} -> {tmp_path}/jobs/a-2/workdir"
    counts = [line[-1].split(" bytes sent")[0].rsplit(", ", 1)[0] for line in lines]
    assert (
        counts[0]
        == counts[1]
        == f"staged workdir: {FILES}/{FILES} files, "
        + (f"{FILES * 1000}/{FILES * 1000} bytes copied")
    )
    copied = tmp_path / "jobs" / "a-2" / "workdir" / f"d{399 % DIRS:02}" / "f399.bin"
    assert copied.read_bytes() == bytes([399 % 256]) * 1000
