"""Which files a workdir's ignore files leave out of the snapshot: Konduktor's
.konduktorignore, else SkyPilot's .skyignore, else every .gitignore and .git/info/exclude.

A SkyPilot user's repository keeps its datasets and checkpoints out with .skyignore; before,
that file was not read and they were copied with every launch. Real rsync, local transport.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from konduktor_slurm.staging import Reporter, stage
from konduktor_slurm.transport import LocalTransport

FILES = ["train.py", "data/big.bin", "ckpt/step1.pt", "sub/cache.tmp", "notes.md", "local.env"]


def copied(tmp_path: Path, ignore_files: dict[str, str]) -> set[str]:
    work = tmp_path / "work"
    for name in FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(name)
    for name, text in ignore_files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    staged, _ = stage(
        LocalTransport(), str(tmp_path / "jobs" / "t-0"), work, {},
        reporter=Reporter(io.StringIO()),
    )  # fmt: skip
    root = Path(staged)
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.name in {Path(f).name for f in FILES}
    }


@pytest.mark.parametrize(
    ("ignore_files", "left_out"),
    [
        ({}, set()),
        ({".skyignore": "data/\n*.pt\n"}, {"data/big.bin", "ckpt/step1.pt"}),
        # Konduktor's own file wins over SkyPilot's, which wins over git's.
        ({".konduktorignore": "notes.md\n", ".skyignore": "data/\n", ".gitignore": "*.pt\n"},
         {"notes.md"}),
        ({".skyignore": "data/\n", ".gitignore": "*.pt\n"}, {"data/big.bin"}),
        ({".gitignore": "*.pt\n", "sub/.gitignore": "*.tmp\n"}, {"ckpt/step1.pt", "sub/cache.tmp"}),
        # No top-level .gitignore: a nested one still applies, as in git.
        ({"sub/.gitignore": "*.tmp\n"}, {"sub/cache.tmp"}),
        ({".git/info/exclude": "local.env\n", ".gitignore": "data/\n"},
         {"local.env", "data/big.bin"}),
        ({".git/info/exclude": "local.env\n"}, {"local.env"}),
    ],
)  # fmt: skip
def test_the_ignore_files_leave_out_what_they_name(
    ignore_files: dict[str, str], left_out: set[str], tmp_path: Path
) -> None:
    assert copied(tmp_path, ignore_files) == set(FILES) - left_out
