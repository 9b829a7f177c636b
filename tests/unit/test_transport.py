"""LocalTransport.read_tail: the end of a file, without reading the rest of it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from konduktor_slurm.transport import LocalTransport


def test_read_tail_returns_at_most_the_last_bytes(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_bytes(b"line 1\nline 2\nline 3\n")
    transport = LocalTransport()
    assert transport.read_tail(str(log), 7) == b"line 3\n"
    assert transport.read_tail(str(log), 1000) == b"line 1\nline 2\nline 3\n"
    assert transport.read_tail(str(log), 0) == b""
    assert transport.read_tail(str(tmp_path / "missing.log"), 100) == b""
    (tmp_path / "empty.log").write_bytes(b"")
    assert transport.read_tail(str(tmp_path / "empty.log"), 100) == b""


def test_read_tail_of_a_huge_file_reads_only_its_end(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as handle:  # 4 GiB, sparse: nothing but the last line on disk
        handle.truncate(4 << 30)
        handle.seek(0, 2)
        handle.write(b"the last line\n")
    tracemalloc.start()
    try:
        tail = LocalTransport().read_tail(str(log), 14)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tail == b"the last line\n"
    assert peak < 1 << 20  # reading the file would have needed 4 GiB
