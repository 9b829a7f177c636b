"""Real-world style task files (Konduktor's docs, SkyPilot's examples) run through validation.

Each file in tests/fixtures/tasks/world says in its header what must happen to it:

    # expect: ok | refused
    # warns: field, field          (ok: exactly these fields are named in warnings)
    # error: field | fragment      (refused: one line per issue, in order)
    # restarts: N / memory: GiB / mounts: destination

so adding a file adds a case. The live module tests/live/test_konduktor_parity.py launches
the accepted ones on the real cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from konduktor_slurm.task import TaskError, load_task

WORLD = Path(__file__).resolve().parent.parent / "fixtures" / "tasks" / "world"
FILES = sorted(WORLD.glob("*.yaml"))


def header(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"# (expect|warns|error|restarts|memory|mounts): ?(.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 25
    kinds = [header(path)["expect"][0] for path in FILES]
    assert kinds.count("ok") >= 12 and kinds.count("refused") >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_world_task_file(path: Path) -> None:
    expected = header(path)
    kind = expected["expect"][0]
    if kind == "refused":
        with pytest.raises(TaskError) as info:
            load_task(path, base_dir=WORLD)
        issues = info.value.issues
        wanted = [entry.split(" | ", 1) for entry in expected["error"]]
        assert len(issues) == len(wanted), [str(issue) for issue in issues]
        for issue, (field, fragment) in zip(issues, wanted, strict=True):
            assert issue.field == field.strip(), str(issue)
            assert fragment in issue.message, str(issue)
            assert issue.file == str(path) and issue.line is not None, str(issue)
        return
    assert kind == "ok"
    task = load_task(path, base_dir=WORLD)
    warned = [re.match(r"\S+:\d+: (\S+) ", warning).group(1) for warning in task.warnings]
    wanted = [f.strip() for f in ",".join(expected.get("warns", [])).split(",") if f.strip()]
    assert warned == wanted, task.warnings
    if "restarts" in expected:
        assert task.resources.max_restarts == int(expected["restarts"][0])
    if "memory" in expected:
        assert task.resources.memory_gib == float(expected["memory"][0])
    if "mounts" in expected:
        assert sorted(task.file_mounts) == expected["mounts"]


def test_ignored_fields_say_why_in_one_line_each() -> None:
    task = load_task(WORLD / "sky-infra-spot.yaml", base_dir=WORLD)
    assert len(task.warnings) == 8
    for warning in task.warnings:
        assert "\n" not in warning and "is ignored on Slurm: " in warning
    assert any(
        "resources.ports is ignored on Slurm: no ports are opened" in w for w in task.warnings
    )


def test_secrets_file_is_accepted_once_the_secrets_are_given(monkeypatch) -> None:
    from konduktor_slurm.task import TaskOverrides

    monkeypatch.setenv("WANDB_API_KEY", "from-env")
    overrides = TaskOverrides(secrets=["HF_TOKEN=hf_x y'z", "WANDB_API_KEY"])
    task = load_task(WORLD / "sky-secrets.yaml", overrides, base_dir=WORLD)
    assert task.secrets == {"HF_TOKEN": "hf_x y'z", "WANDB_API_KEY": "from-env"}
    assert task.envs == {"MODEL": "llama"}
    assert "hf_x" not in repr(task)
