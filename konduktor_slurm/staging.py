"""Snapshot a task's workdir and file_mounts into the job's directory with rsync.

The snapshot is what the job runs, so later edits to the originals never change a job
already launched.

* Local or remote alike: rsync runs on this machine; over SSH its remote shell is the
  transport's relay (``Transport.rsync_shell``), so the bytes travel on the one SSH connection
  the command already has.
* Incremental: ``<jobs_dir>/.latest/<task name>`` names the last job of the task staged
  successfully; its snapshot is rsync's ``--link-dest``, so unchanged files are hard links and
  only changed files travel. Each copy links only from a copy of the same source (same
  machine, directory and path: see ``source_identity``); a workdir that now points elsewhere
  is copied whole, once.
* Private: staged files lose group/other permissions (``--chmod=go-rwx``); the job directory is
  0700. Nothing secret is on any command line (envs live in the sbatch script, written 0700).
* Progress: a rich progress bar on a terminal, else one plain line per source with the counts
  from rsync's statistics.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from konduktor_slurm.render import StagedMount
from konduktor_slurm.transport import Transport

# A source's top-level ignore file, the first found: Konduktor's, then SkyPilot's; without
# either, every .gitignore in the tree and the repository's .git/info/exclude, as both do.
IGNORE_FILES = (".konduktorignore", ".skyignore")
GIT_IGNORE = ".gitignore"
GIT_EXCLUDE = ".git/info/exclude"
# Modification times are kept in coarse ticks (a few ms on ext4, 1-2 s on some network and
# FAT filesystems): a file within this of the previous staging is compared by content.
TICK_SECONDS = 2.0
LATEST_DIR = ".latest"
RSYNC_IO_TIMEOUT = 60  # seconds without any data moving before rsync gives up


class StagingError(RuntimeError):
    pass


@dataclass
class TransferStats:
    """What one rsync run did (from ``--info=stats2``)."""

    files: int = 0  # regular files in the source
    files_sent: int = 0  # regular files transferred (the others were unchanged)
    size: int = 0  # total size of the source's files
    size_sent: int = 0  # total size of the transferred files
    literal_bytes: int = 0  # file data actually sent (rsync's delta algorithm)
    bytes_sent: int = 0  # everything sent over the wire, protocol included


@dataclass(frozen=True)
class Progress:
    """How far a staging rsync is, parsed from its --info=progress2 lines."""

    bytes_done: int
    percent: int
    files_done: int
    to_check: int | None
    total: int | None


_PROGRESS = re.compile(
    r"^\s*([\d,]+)\s+(\d+)%\s+\S+\s+\S+(?:\s+\(xfr#(\d+), (?:to|ir)-chk=(\d+)/(\d+)\))?"
)
_STATS = {
    "files": re.compile(r"^Number of files: [\d,]+(?: \(reg: ([\d,]+))?"),
    "files_sent": re.compile(r"^Number of regular files transferred: ([\d,]+)"),
    "size": re.compile(r"^Total file size: ([\d,]+) bytes"),
    "size_sent": re.compile(r"^Total transferred file size: ([\d,]+) bytes"),
    "literal_bytes": re.compile(r"^Literal data: ([\d,]+) bytes"),
    "bytes_sent": re.compile(r"^Total bytes sent: ([\d,]+)"),
}


def _number(text: str | None) -> int:
    return int(text.replace(",", "")) if text else 0


def parse_progress(line: str) -> Progress | None:
    match = _PROGRESS.match(line)
    if not match:
        return None
    return Progress(
        bytes_done=_number(match[1]),
        percent=int(match[2]),
        files_done=_number(match[3]),
        to_check=_number(match[4]) if match[4] else None,
        total=_number(match[5]) if match[5] else None,
    )


def parse_stats(lines: list[str]) -> TransferStats:
    stats = TransferStats()
    for line in lines:
        for name, pattern in _STATS.items():
            match = pattern.match(line.strip())
            if match:
                setattr(stats, name, _number(match[1]))
    return stats


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


# ---------------------------------------------------------------------------------------
# reporting


class Reporter:
    """Plain lines (no terminal): one when a copy starts, one with its counts when done."""

    # Whether progress() shows anything: rsync writes a progress line per file only then
    # (about 10,000 lines and a third of a CPU second in this process for a 1 GB workdir,
    # taken from rsync's two cores while it copies).
    shows_progress = False

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def start(
        self, label: str, source: Path, destination: str, left_out: list[str] | None = None
    ) -> None:
        self.stream.write(f"Staging {label}: {source} -> {destination}\n")
        if left_out:
            self.stream.write(left_out_note(source, left_out) + "\n")
        self.stream.flush()

    def progress(self, label: str, progress: Progress) -> None:
        return None

    def done(self, label: str, stats: TransferStats, linked_from: str | None) -> None:
        linked = f"; unchanged files hard-linked from {linked_from}" if linked_from else ""
        self.stream.write(
            f"staged {label}: {stats.files_sent}/{stats.files} files, "
            f"{stats.size_sent}/{stats.size} bytes copied, {stats.bytes_sent} bytes sent "
            f"({human_bytes(stats.size)} total){linked}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        return None


class SilentReporter(Reporter):
    """For callers with nobody to tell (the Python SDK): staging says nothing."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def start(
        self, label: str, source: Path, destination: str, left_out: list[str] | None = None
    ) -> None:
        return None

    def done(self, label: str, stats: TransferStats, linked_from: str | None) -> None:
        return None


class RichReporter(Reporter):
    """A progress bar per source with bytes and files, on a terminal."""

    shows_progress = True

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream)
        # rsync's --info=progress2 gives the overall percentage (unchanged files count as
        # done), the bytes actually copied so far and the files checked out of the total.
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.bar.start()

    def start(
        self, label: str, source: Path, destination: str, left_out: list[str] | None = None
    ) -> None:
        if left_out:
            self.console.print(left_out_note(source, left_out), highlight=False)
        self.tasks[label] = self.bar.add_task(f"staging {label}", total=100, detail="")

    def progress(self, label: str, progress: Progress) -> None:
        detail = f"{human_bytes(progress.bytes_done)} copied"
        if progress.total is not None and progress.to_check is not None:
            detail += f", {progress.total - progress.to_check}/{progress.total} files"
        self.bar.update(self.tasks[label], completed=progress.percent, detail=detail)

    def done(self, label: str, stats: TransferStats, linked_from: str | None) -> None:
        self.bar.remove_task(self.tasks.pop(label))
        linked = f", rest hard-linked from {linked_from}" if linked_from else ""
        self.console.print(
            f"Staged {label}: {stats.files_sent} of {stats.files} files copied "
            f"({human_bytes(stats.size_sent)} of {human_bytes(stats.size)}{linked})",
            highlight=False,
        )

    def close(self) -> None:
        self.bar.stop()


def left_out_note(source: Path, left_out: list[str]) -> str:
    where = ", ".join(str(Path(source) / relative) for relative in left_out)
    return f"  left out of the copy: {where} (konduktor's own: its jobs and store)"


def default_reporter(stream: TextIO | None = None) -> Reporter:
    stream = stream or sys.stderr
    return RichReporter(stream) if stream.isatty() else Reporter(stream)


# ---------------------------------------------------------------------------------------
# rsync


def own_dirs_inside(source: Path, keep_out: tuple[str, ...]) -> list[str]:
    """Those of ``keep_out`` (konduktor's own directories) strictly inside the directory
    ``source``, as paths relative to it. A workdir of ``~`` or of a directory holding
    ``$KONDUKTOR_HOME`` would otherwise copy the jobs' snapshots into the new one, which
    holds the copy being made: every launch copies every earlier one, and launches at
    once copy each other's half-made copies (measured: 60 launches filled 30 GB in
    minutes). The store there is rewritten as it is read ("file has vanished")."""
    if not source.is_dir():
        return []
    root = os.path.realpath(source)
    inside = []
    for path in keep_out:
        relative = os.path.relpath(os.path.realpath(path), root)
        if (
            relative != os.curdir
            and relative != os.pardir
            and not relative.startswith(os.pardir + os.sep)
        ):
            inside.append(relative)
    # One rule for a directory inside another (the jobs directory in konduktor's home).
    return [
        relative
        for relative in inside
        if not any(relative.startswith(other + os.sep) for other in inside if other != relative)
    ]


def _left_out_filter(relatives: list[str]) -> list[str]:
    """rsync excludes anchored at the source's top (``/home/``, a directory): a name with
    wildcard characters in it has them, and backslashes, escaped (rsync then matches the
    pattern as a wildcard, where a backslash makes the next character plain)."""
    rules = []
    for relative in relatives:
        pattern = f"/{relative}/"
        if any(char in pattern for char in "*?["):
            pattern = re.sub(r"([*?\[\\])", r"\\\1", pattern)
        rules.append(f"--exclude={pattern}")
    return rules


def _ignore_filter(source: Path) -> list[str]:
    # dir-merge (":"): the file of that name in any directory applies from there down.
    for name in IGNORE_FILES:
        if (source / name).is_file():
            return [f"--filter=:- {name}"]
    rules = [f"--filter=:- {GIT_IGNORE}"]
    if (source / GIT_EXCLUDE).is_file():
        rules.append(f"--exclude-from={source / GIT_EXCLUDE}")
    return rules


_LINE_BREAKS = re.compile(rb"[\r\n]")  # a progress line ends in CR, the others in LF


def run_streaming(
    argv: list[str], on_line: Callable[[str], None], env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``argv``; feed each stdout line (split on CR and LF) to ``on_line``, decoded as
    UTF-8 with any other byte kept as a surrogate (a file name rsync prints raw)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError as exc:
        raise StagingError(f"{argv[0]} is not installed on this machine") from exc
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    reader.start()
    pending = b""
    while True:
        chunk = proc.stdout.read1(65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = _LINE_BREAKS.split(pending)
        for line in lines:
            if line:
                on_line(line.decode(errors="surrogateescape"))
    if pending:
        on_line(pending.decode(errors="surrogateescape"))
    proc.wait()
    reader.join()
    return proc.returncode, b"".join(errors).decode(errors="replace")


def _rsync(
    transport: Transport,
    source: Path,
    destination: str,
    label: str,
    reporter: Reporter,
    link_dest: str | None,
    linked_from: str | None = None,
    window: tuple[float, float] | None = None,
    left_out: list[str] | None = None,
) -> TransferStats:
    """Copy ``source`` to ``destination``. With ``window`` (the previous staging's times,
    widened by a tick; see ``recent_file``), the files the copy took whose time falls
    within it are compared again, by content, in a second pass."""
    stats, recheck = _rsync_pass(
        transport, source, destination, label, reporter, link_dest, window=window,
        left_out=left_out,
    )  # fmt: skip
    if recheck:
        again, _ = _rsync_pass(
            transport, source, destination, label, Reporter(_NullStream()), None, recheck,
            left_out=left_out,
        )  # fmt: skip
        stats.files_sent += again.files_sent
        stats.size_sent += again.size_sent
        stats.literal_bytes += again.literal_bytes
        stats.bytes_sent += again.bytes_sent
    reporter.done(label, stats, linked_from)
    return stats


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


# With a window, the first pass names every regular file it took with its time, in this
# format: the itemized changes (11 characters), the time in seconds and the name, escaped by
# rsync (see _unescape). Its time is what rsync's own quick check compared: the one lstat that
# counts, so no second walk over the source has to look at it again (10,000 files: 50-100 ms).
OUT_FORMAT = "%i %M %n"
# %M is strftime("%Y/%m/%d-%H:%M:%S") in rsync's time zone: set to UTC for rsync (and only
# for it), so that it compares with our bounds as text, in chronological order.
_RSYNC_TIME = "%Y/%m/%d-%H:%M:%S"
_RSYNC_TIME_RE = re.compile(r"\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d")
_ESCAPED = re.compile(rb"\\#([0-7]{3})")


def _unescape(name: str) -> bytes:
    """A name as rsync printed it -> the name's bytes. rsync writes unprintable bytes (and
    invalid UTF-8, and a backslash before #) as \\#ooo; the rest is the name's own bytes
    (carried through our decoding as surrogates)."""
    raw = name.encode("utf-8", "surrogateescape")
    return _ESCAPED.sub(lambda match: bytes([int(match[1], 8)]), raw)


def _window_text(window: tuple[float, float]) -> tuple[str, str]:
    """The window's bounds as rsync prints times (UTC, truncated to the second): a printed
    second S is in when any instant of [S, S + 1) is, i.e. floor(low) <= S <= floor(high)."""
    low, high = window
    return (
        time.strftime(_RSYNC_TIME, time.gmtime(math.floor(low))),
        time.strftime(_RSYNC_TIME, time.gmtime(math.floor(high))),
    )


def recent_file(line: str, bounds: tuple[str, str]) -> bytes | None:
    """The name of the regular file an ``OUT_FORMAT`` line is about, if its time is within
    ``bounds`` (from ``_window_text``), or cannot be read (then it is compared, to be safe).

    Why: rsync's quick check (size and modification time) judges a file rewritten with the
    same size within one timestamp tick of the copy in the previous snapshot as unchanged,
    and a --link-dest copy would hard-link the old content: the job would run stale code.
    Only a file whose time falls within the previous staging (give or take a tick) can be
    such a file: an older one was not touched since, and a newer one has a time the copy
    cannot have. Those few are compared by content. (tests/unit/test_staging_recheck.py
    holds this list to the rule as a walk over the source.)"""
    if len(line) < 33 or line[0] not in "<>ch.*" or line[1] != "f" or line[11] != " ":
        return None
    stamp, name = line[12:31], line[32:]
    if line[31] != " " or not _RSYNC_TIME_RE.fullmatch(stamp):
        # Not the fixed-width time (a year past 9999?): find the name after the time.
        stamp, _, name = line[12:].partition(" ")
        return _unescape(name) if name else None
    if bounds[0] <= stamp <= bounds[1]:
        return _unescape(name)
    return None


def _rsync_pass(
    transport: Transport,
    source: Path,
    destination: str,
    label: str,
    reporter: Reporter,
    link_dest: str | None,
    recheck: list[bytes] | None = None,
    window: tuple[float, float] | None = None,
    left_out: list[str] | None = None,
) -> tuple[TransferStats, list[bytes]]:
    """One rsync run: its statistics and, with ``window``, the regular files it took whose
    time falls within it (names relative to a source directory; for a source file, [b""]).
    ``left_out``: directories inside the source not copied (see own_dirs_inside)."""
    left_out = left_out or []
    argv = ["rsync", "-a", "--chmod=go-rwx", f"--timeout={RSYNC_IO_TIMEOUT}"]
    if reporter.shows_progress:
        # Each line as it happens, and every file listed before the copy starts, so that
        # the files' total is known from the first line.
        argv += ["--outbuf=N", "--no-inc-recursive", "--info=progress2,stats2"]
    else:
        argv.append("--info=stats2")
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    env = None
    bounds = None
    if window is not None:
        # name2: every file, unchanged (hard-linked) ones too: also what the filters kept.
        argv += ["--info=name2", f"--out-format={OUT_FORMAT}"]
        env = {**os.environ, "TZ": "UTC0"}
        bounds = _window_text(window)
    list_file = None
    if recheck is not None:
        # Compare content, not size and time: these files may have changed within one
        # timestamp tick of the copy they would be compared with.
        argv.append("--checksum")
        if source.is_dir():
            import tempfile

            fd, list_file = tempfile.mkstemp(prefix="konduktor-recheck-")
            with os.fdopen(fd, "wb") as handle:
                # NUL-separated: a name may hold a newline.
                handle.write(b"".join(path + b"\0" for path in recheck))
            argv += ["--from0", f"--files-from={list_file}"]
    if source.is_dir():
        # Ours first: rsync takes the first rule that matches, so no `!` line of an
        # ignore file can bring konduktor's own directories back in.
        argv += _left_out_filter(left_out)
        argv += _ignore_filter(source)
        argv += [f"{source}/", transport.rsync_destination(destination.rstrip("/") + "/")]
    else:
        argv += [str(source), transport.rsync_destination(destination)]
    if recheck is None:
        reporter.start(label, source, destination, left_out)
    lines: list[str] = []
    recent: list[bytes] = []

    def on_line(line: str) -> None:
        if bounds is not None and line[:1] in _ITEM_STARTS:
            name = recent_file(line, bounds)
            if name is not None:
                recent.append(name)
            return
        progress = parse_progress(line)
        if progress is not None:
            reporter.progress(label, progress)
        else:
            lines.append(line)

    try:
        with transport.rsync_shell() as rsh:
            if rsh:
                argv.insert(1, f"--rsh={rsh}")
            code, stderr = run_streaming(argv, on_line, env)
            if code != 0:
                messages = [
                    line.strip()
                    for line in stderr.splitlines()
                    if line.strip() and not line.startswith("rsync error: some files")
                ]
                message = messages[0] if messages else f"exit code {code}"
                raise StagingError(f"rsync {source}: {message}")
    finally:
        if list_file is not None:
            os.unlink(list_file)
    if recent and not source.is_dir():
        recent = [b""]  # a source file: rsync printed its destination name
    return parse_stats(lines), recent


# The first characters of an itemized line (statistics and progress lines start otherwise).
_ITEM_STARTS = frozenset("<>ch.*")


@dataclass(frozen=True)
class Snapshot:
    """The last successful staging of a task: its job dir, when it was taken (local clock;
    0 and inf when an older konduktor wrote the pointer without times), and what each of its
    copies was taken from ("workdir" or "mounts/<index>" -> ``source_identity``; empty when
    an older konduktor wrote the pointer: nothing is linked from it then)."""

    job_dir: str
    started: float = 0.0
    finished: float = math.inf
    sources: Mapping[str, str] = field(default_factory=dict)


def source_identity(source: Path) -> str:
    """Which source a copy was taken from: this machine, the source's device and inode, and
    its path.

    Why: staging trusts rsync's quick check (size and modification time) for every file
    older than the previous staging (see recent_file), which holds only when the previous
    snapshot was taken from these same files. Another directory (a symlink pointed at a
    second checkout, another --workdir, the same path on another laptop, a directory
    replaced by a copy) can hold a file of the same name, size and time with other content.
    """
    try:
        info = os.stat(source)
        where = f"{info.st_dev}:{info.st_ino}"
    except OSError:
        where = "?"
    return f"{os.uname().nodename}:{where}:{source}"


def previous_snapshot(transport: Transport, jobs_dir: str, task_name: str) -> Snapshot | None:
    """The last successful staging of ``task_name``, if its directory still exists."""
    pointer = f"{jobs_dir}/{LATEST_DIR}/{task_name}"
    script = (
        f"{{ IFS= read -r name; read -r times; IFS= read -r sources; }} "
        f"< {shlex.quote(pointer)} 2>/dev/null; "
        f'[ -n "$name" ] && [ -d {shlex.quote(jobs_dir)}/"$name" ] && '
        f'printf \'%s\\n%s\\n%s\' "$name" "$times" "$sources"'
    )
    result = transport.run(["sh", "-c", script])
    name, _, rest = result.stdout.partition("\n")
    times, _, sources_line = rest.partition("\n")
    name = name.strip()
    if not (result.ok and name and "/" not in name):
        return None
    try:
        sources = json.loads(sources_line)
    except (ValueError, RecursionError):  # damaged: nothing is linked from it
        sources = None
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        sources = {}
    try:
        started, finished = (float(value) for value in times.split())
    except ValueError:
        return Snapshot(f"{jobs_dir}/{name}", sources=sources)
    return Snapshot(f"{jobs_dir}/{name}", started, finished, sources)


def stage(
    transport: Transport,
    job_dir: str,
    workdir: Path | None,
    file_mounts: dict[str, Path],
    *,
    task_name: str | None = None,
    reporter: Reporter | None = None,
    keep_out: tuple[str, ...] = (),
) -> tuple[str | None, tuple[StagedMount, ...]]:
    """Copy the sources under ``job_dir``; return the staged workdir and mounts.

    With ``task_name``, unchanged files are hard-linked from the task's previous snapshot
    and this snapshot becomes the next one's base once every copy succeeded. ``keep_out``:
    local directories never copied (konduktor's home); staging on this machine, the jobs
    directory is one too (see own_dirs_inside).
    """
    if workdir is not None and not workdir.is_dir():
        raise StagingError(f"workdir {workdir} does not exist")
    for source in file_mounts.values():
        if not source.exists():
            raise StagingError(f"file_mounts source {source} does not exist")
    started = time.time()
    jobs_dir, _, job_name = job_dir.rstrip("/").rpartition("/")
    if transport.rsync_destination(jobs_dir) == jobs_dir:  # no remote host: it is here
        keep_out = (*keep_out, jobs_dir)
    transport.make_dirs(job_dir, 0o700)
    snapshot = previous_snapshot(transport, jobs_dir, task_name) if task_name else None
    if snapshot is not None and snapshot.job_dir == job_dir:
        snapshot = None
    reporter = reporter or default_reporter()
    sources: dict[str, str] = {}

    def base(
        slot: str, source: Path, within: str
    ) -> tuple[str | None, str | None, tuple[float, float] | None]:
        """What ``slot``'s copy of ``source`` links from: the previous snapshot's ``within``
        when that was taken from the same source, else nothing (a whole copy). A linked copy
        names the snapshot in its progress line, and compares by content the files whose
        time falls within the previous staging (see recent_file); rsync names them as it
        copies (see _rsync_pass), no walk of ours."""
        sources[slot] = source_identity(source)
        if snapshot is None or snapshot.sources.get(slot) != sources[slot]:
            return None, None, None
        window = (snapshot.started - TICK_SECONDS, snapshot.finished + TICK_SECONDS)
        return f"{snapshot.job_dir}/{within}", snapshot.job_dir.rsplit("/", 1)[-1], window

    try:
        staged_workdir = None
        if workdir is not None:
            staged_workdir = f"{job_dir}/workdir"
            linked = base("workdir", workdir, "workdir/")
            left_out = own_dirs_inside(workdir, keep_out)
            _rsync(transport, workdir, staged_workdir, "workdir", reporter, *linked, left_out)
        mounts = []
        for index, (destination, source) in enumerate(sorted(file_mounts.items())):
            staged = f"{job_dir}/mounts/{index}"
            transport.make_dirs(f"{job_dir}/mounts", 0o700)
            # A directory's base is the same index; a file's is the directory holding it.
            within = f"mounts/{index}/" if source.is_dir() else "mounts/"
            linked = base(f"mounts/{index}", source, within)
            left_out = own_dirs_inside(source, keep_out)
            label = f"file_mount {destination}"
            _rsync(transport, source, staged, label, reporter, *linked, left_out)
            mounts.append(
                StagedMount(destination=destination, source=staged, is_dir=source.is_dir())
            )
    finally:
        reporter.close()
    if task_name:
        transport.make_dirs(f"{jobs_dir}/{LATEST_DIR}", 0o700)
        # json.dumps writes one line of ASCII whatever the paths hold.
        pointer = f"{job_name}\n{started!r} {time.time()!r}\n{json.dumps(sources)}\n"
        transport.write_file(f"{jobs_dir}/{LATEST_DIR}/{task_name}", pointer, 0o600)
    return staged_workdir, tuple(mounts)
