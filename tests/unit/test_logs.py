"""Reading job logs: UTF-8 split across reads, and the last lines of a file larger than a tail
(on real files through the real LocalTransport)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from konduktor_slurm.logs import TAIL_FIRST_BYTES, LineFilter, follow, read_last_lines
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.transport import LocalTransport

# ---- a character split between two reads


def test_a_character_split_across_two_chunks_is_decoded_whole() -> None:
    text = "0: café ✓ 🚀\n"
    data = text.encode()
    for cut in range(1, len(data)):  # every split point, mid-character ones included
        lines = LineFilter(None)
        assert lines.feed(data[:cut]) + lines.feed(data[cut:], final=True) == text


def test_a_four_byte_character_split_over_four_reads() -> None:
    lines = LineFilter(None)
    out = "".join(lines.feed(bytes([byte])) for byte in "1: 🚀\n".encode())
    assert out == "1: 🚀\n" and "\ufffd" not in out


def test_bytes_that_are_not_utf8_are_still_replaced() -> None:
    lines = LineFilter(None)
    assert lines.feed(b"0: bad \xff byte\n") == "0: bad \ufffd byte\n"
    # A character cut off by the end of the log is replaced once the log is over.
    assert lines.feed(b"0: cut \xc3", final=True) == "0: cut \ufffd\n"


def test_one_ranks_lines_only() -> None:
    lines = LineFilter(1)
    assert lines.feed(b"0: a\n1: b\n 1: c\n10: d\nkonduktor: e\n1: f") == "1: b\n 1: c\n"
    assert lines.feed(b"", final=True) == "1: f\n"


# ---- follow: the log grows while it is read


def terminal_job(tmp_path: Path, log: Path) -> JobRecord:
    return JobRecord(
        name="utf-1a2b",
        task_name="utf",
        user="alice",
        resources="1x(1CPU)",
        num_nodes=1,
        job_dir=str(tmp_path),
        log_path=str(log),
        state="COMPLETED",
        created_at=time.time(),
        slurm_job_id="1",
        terminal=True,
    )


def test_follow_decodes_a_character_split_between_two_reads(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    first, second = "0: résumé\n0: caf".encode(), "é ✓\n".encode()
    log.write_bytes(first + second[:1])  # the job has written the first byte of "é" so far
    written: list[str] = []

    def write(text: str) -> None:
        written.append(text)
        if len(written) == 1:  # between follow's first and second read, the job goes on
            with log.open("ab") as handle:
                handle.write(second[1:])

    store = Store(tmp_path / "state.db")
    job = terminal_job(tmp_path, log)
    store.add(job)
    follow(store, Slurm(LocalTransport()), job, write)
    assert "".join(written) == "0: résumé\n0: café ✓\n"


# ---- the last lines of a log larger than a tail


class CountingTransport(LocalTransport):
    """The real local transport, remembering how much of each file it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.tail_sizes: list[int] = []
        self.whole_reads = 0

    def read_tail(self, path: str, max_bytes: int) -> bytes:
        self.tail_sizes.append(max_bytes)
        return super().read_tail(path, max_bytes)

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        self.whole_reads += 1
        return super().read_bytes(path, offset, limit)


LINES = 40_000  # ~830 kB: more than ten first tails


@pytest.fixture
def big_log(tmp_path: Path) -> Path:
    """Two ranks' interleaved lines, then rank 1 falls silent: its last line is far back."""
    log = tmp_path / "job.log"
    with log.open("w") as handle:
        for i in range(LINES):
            rank = 1 if i < LINES // 2 else 0
            handle.write(f"{rank}: line {i} é ✓\n")
        handle.write("konduktor: attempt 1 finished with exit code 0\n")
    return log


def test_the_last_lines_read_only_a_tail(big_log: Path) -> None:
    transport = CountingTransport()
    text = read_last_lines(transport, str(big_log), 3)
    assert text.splitlines() == [
        f"0: line {LINES - 2} é ✓",
        f"0: line {LINES - 1} é ✓",
        "konduktor: attempt 1 finished with exit code 0",
    ]
    assert transport.tail_sizes == [TAIL_FIRST_BYTES] and transport.whole_reads == 0
    assert big_log.stat().st_size > 10 * TAIL_FIRST_BYTES


def test_the_tail_grows_until_it_holds_the_lines_of_a_rank(big_log: Path) -> None:
    transport = CountingTransport()
    text = read_last_lines(transport, str(big_log), 2, node_rank=1)
    assert text.splitlines() == [f"1: line {LINES // 2 - 2} é ✓", f"1: line {LINES // 2 - 1} é ✓"]
    assert len(transport.tail_sizes) > 1 and transport.tail_sizes == sorted(transport.tail_sizes)
    assert transport.tail_sizes[-1] < 4 * big_log.stat().st_size and transport.whole_reads == 0


def test_asking_for_more_lines_than_there_are_reads_the_whole_file(big_log: Path) -> None:
    text = read_last_lines(CountingTransport(), str(big_log), 10 * LINES)
    assert text == big_log.read_text()
    rank_one = read_last_lines(CountingTransport(), str(big_log), 10 * LINES, node_rank=1)
    assert len(rank_one.splitlines()) == LINES // 2


def test_a_character_at_the_tails_edge_is_never_half_read(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    line = "0: ✓✓✓✓✓✓✓\n"  # 3-byte characters: a tail boundary falls mid-character
    log.write_text(line * (3 * TAIL_FIRST_BYTES // len(line.encode())))
    for count in (1, 50, 5000):
        text = read_last_lines(LocalTransport(), str(log), count)
        assert text == line * count


def test_a_bounded_tail_for_the_report(big_log: Path) -> None:
    transport = CountingTransport()
    text = read_last_lines(transport, str(big_log), 5, node_rank=1, max_bytes=100_000)
    assert text == ""  # rank 1's last line is further back than the report reads
    assert max(transport.tail_sizes) == 100_000


def test_a_last_line_without_newline_and_a_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_bytes(b"0: one\n0: two")  # the job is still writing its last line
    assert read_last_lines(LocalTransport(), str(log), 1) == "0: two\n"
    assert read_last_lines(LocalTransport(), str(log), 0) == ""
    assert read_last_lines(LocalTransport(), str(tmp_path / "nothing.log"), 5) == ""


def test_local_read_tail(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 300
    path.write_bytes(data)
    transport = LocalTransport()
    assert transport.read_tail(str(path), 1000) == data[-1000:]
    assert transport.read_tail(str(path), len(data) + 5) == data
    assert transport.read_tail(str(path), 0) == b""
    assert transport.read_tail(str(tmp_path / "missing"), 10) == b""
