"""Unit tests for konduktor_slurm.task: parsing, validation messages, overrides.

Every bad-field test checks the four things a user needs to fix the file: which file, which
line, which field, and what was expected.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from konduktor_slurm.task import (
    Accelerator,
    Resources,
    SlurmOptions,
    Task,
    TaskError,
    TaskIssue,
    TaskOverrides,
    load_task,
    parse_task,
)
from konduktor_slurm.task.model import Checkpoint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
SOURCE = "task.yaml"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def parse(text: str, base_dir: Path | None = None, overrides: TaskOverrides | None = None) -> Task:
    return parse_task(textwrap.dedent(text), SOURCE, base_dir=base_dir, overrides=overrides)


def issues_of(
    text: str, base_dir: Path | None = None, overrides: TaskOverrides | None = None
) -> list[TaskIssue]:
    with pytest.raises(TaskError) as info:
        parse(text, base_dir=base_dir, overrides=overrides)
    return info.value.issues


def only_issue(
    text: str, base_dir: Path | None = None, overrides: TaskOverrides | None = None
) -> TaskIssue:
    issues = issues_of(text, base_dir=base_dir, overrides=overrides)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def check(
    issue: TaskIssue, line: int | None, field: str, *fragments: str, file: str = SOURCE
) -> None:
    assert issue.file == file, issue
    assert issue.line == line, issue
    assert issue.field == field, issue
    for fragment in fragments:
        assert fragment in issue.message, f"{fragment!r} not in {issue.message!r}"


# --------------------------------------------------------------------------------------
# fixtures / happy paths
# --------------------------------------------------------------------------------------


def test_full_konduktor_example_loads_unchanged() -> None:
    task = load_task(FIXTURES / "konduktor_full.yaml")
    assert task.name == "llama-finetune"
    assert task.num_nodes == 2
    assert task.resources == Resources(
        cpus=8, memory_gib=32.0, accelerator=Accelerator("H100", 8), max_restarts=3
    )
    assert task.envs == {"WANDB_PROJECT": "llama-finetune", "LEARNING_RATE": "3e-4"}
    assert task.run.startswith("torchrun \\\n")
    # Konduktor's labels.maxRunDurationSeconds: "3200" becomes the Slurm time limit.
    assert task.slurm == SlurmOptions(time_limit="0-00:53:20")
    assert task.source == (FIXTURES / "konduktor_full.yaml").resolve()
    assert task.resources_summary() == "2x(8CPU, 32GiMEM, H100:8)"
    name = str(FIXTURES / "konduktor_full.yaml")
    assert task.warnings == (
        f"{name}:9: resources.image_id is ignored on Slurm: jobs run on the nodes' own system, "
        "no container image is pulled; install what the job needs in setup",
        f"{name}:10: resources.labels is ignored on Slurm: Slurm jobs have no labels "
        "(labels.maxRunDurationSeconds becomes the time limit)",
    )


def test_slurm_native_example_loads() -> None:
    # Relative paths resolve against the directory konduktor runs in (as in Konduktor).
    task = load_task(FIXTURES / "slurm_native.yaml", base_dir=FIXTURES)
    assert task.name == "nightly-eval"
    assert task.workdir == FIXTURES
    assert task.file_mounts == {
        "~/configs/eval.yaml": FIXTURES / "konduktor_full.yaml",
        "/scratch/eval-data": FIXTURES,
    }
    assert task.resources == Resources(cpus=16, memory_gib=64.0, accelerator=Accelerator("A100", 2))
    assert task.slurm == SlurmOptions(
        partition="gpu",
        account="ml-research",
        qos="normal",
        time_limit="2-00:00:00",
        constraint="a100&ib",
        sbatch_options=(("exclusive", None), ("mail-type", "END,FAIL")),
    )
    assert task.setup == "pip install -r requirements.txt\n"
    assert task.warnings == ()


def test_broken_example_reports_every_issue_in_line_order() -> None:
    with pytest.raises(TaskError) as info:
        load_task(FIXTURES / "broken.yaml", base_dir=FIXTURES)
    issues = info.value.issues
    name = str(FIXTURES / "broken.yaml")
    assert all(issue.file == name for issue in issues)
    assert [(issue.line, issue.field) for issue in issues] == [
        (3, "name"),
        (4, "resourses"),
        (6, "num_nodes"),
        (8, "resources.accelerators"),
        (9, "resources.memory"),
        (11, "resources.job_config.max_restarts"),
        (13, "envs.TOKEN"),
        (15, "slurm.time_limit"),
        (17, "slurm.sbatch_options.job-name"),
        (19, "file_mounts['/etc/passwd']"),
    ]
    # str(TaskError) is one line per issue, each starting with file:line.
    lines = str(info.value).splitlines()
    assert len(lines) == len(issues)
    assert lines[1] == f"{name}:4: resourses: unknown field; did you mean 'resources'?"


def test_minimal_task_defaults() -> None:
    task = parse("run: echo hi\n")
    assert task == Task(name="task", run="echo hi")
    assert task.resources == Resources(None, None, None, 0)
    assert task.resources_summary() == "1x(-)"


# --------------------------------------------------------------------------------------
# TaskError / TaskIssue formatting
# --------------------------------------------------------------------------------------


def test_issue_str_formats() -> None:
    issue = TaskIssue("task.yaml", 7, "resources.accelerators", "bad")
    assert str(issue) == "task.yaml:7: resources.accelerators: bad"
    assert str(TaskIssue("command line", None, "--gpus", "bad")) == "command line: --gpus: bad"
    assert str(TaskIssue("task.yaml", None, "", "file not found")) == "task.yaml: file not found"
    error = TaskError([issue, TaskIssue("x.yaml", 1, "run", "m")])
    assert str(error) == "task.yaml:7: resources.accelerators: bad\nx.yaml:1: run: m"


def test_accelerator_error_matches_documented_text() -> None:
    issue = only_issue("""\
        run: x
        resources:
          accelerators: H100x8
        """)
    assert str(issue) == (
        "task.yaml:3: resources.accelerators: expected '<NAME>:<COUNT>' like 'H100:8' "
        "or {H100: 8}, got 'H100x8'"
    )


# --------------------------------------------------------------------------------------
# file-level problems
# --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task(tmp_path / "nope.yaml")
    (issue,) = info.value.issues
    check(issue, None, "", "not found", file=str(tmp_path / "nope.yaml"))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task(tmp_path)
    check(info.value.issues[0], None, "", "directory", file=str(tmp_path))


def test_yaml_syntax_error_has_line() -> None:
    issue = only_issue("""\
        name: ok
        run: echo hi
        resources:
          cpus: 4
           memory: 8
        """)
    check(issue, 5, "", "invalid YAML")


def test_yaml_unclosed_quote_points_at_where_it_started() -> None:
    issue = only_issue("""\
        name: ok
        run: 'echo hi
        """)
    assert issue.line == 3
    assert "invalid YAML" in issue.message and "started on line 2" in issue.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    issue = only_issue(text)
    check(issue, None, "", "empty", "run")


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'")])
def test_top_level_not_a_mapping(text: str, got: str) -> None:
    check(only_issue(text), 1, "", "expected a mapping of task fields", got)


def test_duplicate_key_is_an_error() -> None:
    issue = only_issue("""\
        run: echo one
        name: a
        run: echo two
        """)
    check(issue, 3, "run", "duplicate key", "line 1")


def test_unprintable_character_has_line() -> None:
    check(only_issue("name: a\nrun: \x07x\n"), 2, "", "invalid YAML", "#x0007")


def test_two_documents_are_named_a_pipeline_and_refused() -> None:
    issue = only_issue("name: pipe\n---\nrun: x\n---\nrun: y\n")
    check(issue, 2, "", "3 YAML documents", "pipeline", "a file of its own")


def test_anchors_and_merge_keys_work() -> None:
    task = parse("""\
        run: x
        resources: &res
          cpus: 4
        slurm:
          <<: {partition: gpu}
          qos: high
        """)
    assert task.resources.cpus == 4
    assert task.slurm.partition == "gpu" and task.slurm.qos == "high"


def test_unsafe_yaml_tag_is_rejected() -> None:
    issue = only_issue("run: !!python/object/apply:os.system ['id']\n")
    check(issue, 1, "", "invalid YAML")


# --------------------------------------------------------------------------------------
# name / run / setup
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("'my task'", "got 'my task'"),
        ("-leading", "got '-leading'"),
        ("a...b", "got 'a...b'"),
        ("[a, b]", "got a list"),
        ("a" * 64, "the limit is 63"),
    ],
)
def test_bad_name(value: str, fragment: str) -> None:
    issue = only_issue(f"run: x\nname: {value}\n")
    check(issue, 2, "name", fragment)


@pytest.mark.parametrize(
    "value", ["a", "train-llama", "v1.2_final", "a--b", "A.B", "123", "a" * 63]
)
def test_good_names(value: str) -> None:
    assert parse(f"run: x\nname: {value}\n").name == value


def test_default_name_is_file_stem_sanitized(tmp_path: Path) -> None:
    path = tmp_path / "My Task!! (v2).yaml"
    path.write_text("run: x\n")
    assert load_task(path).name == "My-Task-v2"
    path = tmp_path / "___.yaml"
    path.write_text("run: x\n")
    assert load_task(path).name == "task"
    assert parse_task("run: x\n", source="jobs/train.yml").name == "train"


def test_run_is_optional_as_in_konduktor() -> None:
    task = parse("name: x\nsetup: echo only-setup\n")
    assert task.run is None and task.setup == "echo only-setup"
    assert parse("name: x\n").run is None


@pytest.mark.parametrize("value", ["", "''", "'   '"])
def test_blank_run_is_no_run(value: str) -> None:
    assert parse(f"name: x\nrun: {value}\n").run is None


def test_run_list_hints_block_string() -> None:
    issue = only_issue("run:\n  - echo a\n  - echo b\n")
    check(issue, 1, "run", "expected a string of shell commands", "got a list", "run: |")


def test_setup_wrong_type() -> None:
    issue = only_issue("run: x\nsetup: {a: 1}\n")
    check(issue, 2, "setup", "expected a string of shell commands, got a mapping")


# --------------------------------------------------------------------------------------
# envs
# --------------------------------------------------------------------------------------


def test_env_values_are_converted_to_strings_as_written() -> None:
    task = parse("""\
        run: x
        envs:
          S: text
          I: 8
          OCTAL_LOOKING: 010
          F: 1.50
          B: true
          N: false
          EMPTY: ''
          DATE: 2024-01-01
          TIME: 1:30
          under_score_1: ok
        """)
    assert task.envs == {
        "S": "text",
        "I": "8",
        "OCTAL_LOOKING": "010",
        "F": "1.50",
        "B": "true",
        "N": "false",
        "EMPTY": "",
        "DATE": "2024-01-01",  # YAML would make these a date and the int 90
        "TIME": "1:30",
        "under_score_1": "ok",
    }


@pytest.mark.parametrize(
    "value",
    [
        '"; touch /tmp/x; $(id)',
        "`rm -rf /`",
        "a\nb",
        "$HOME and ${PATH}",
        "'single' \"double\"",
    ],
)
def test_injection_looking_env_values_are_kept_verbatim(value: str) -> None:
    import json

    # JSON is valid YAML and quotes anything, so the value reaches us exactly.
    task = parse(f"run: x\nenvs:\n  V: {json.dumps(value)}\n")
    assert task.envs["V"] == value


def test_env_null_value_says_how_to_give_one() -> None:
    issue = only_issue("""\
        run: x
        envs:
          OK: 1
          HF_TOKEN:
        """)
    check(issue, 4, "envs.HF_TOKEN", "has no value", "--env HF_TOKEN")


@pytest.mark.parametrize(
    ("name", "field"),
    [("1BAD", "envs['1BAD']"), ("with-dash", "envs.with-dash"), ("sp ace", "envs['sp ace']")],
)
def test_env_bad_name(name: str, field: str) -> None:
    issue = only_issue(f"run: x\nenvs:\n  '{name}': v\n")
    check(issue, 3, field, f"{name!r} is not a valid environment variable name")


def test_env_value_wrong_type() -> None:
    issue = only_issue("run: x\nenvs:\n  LIST: [1, 2]\n")
    check(issue, 3, "envs.LIST", "expected a string, number or true/false, got a list")


def test_envs_not_a_mapping() -> None:
    issue = only_issue("run: x\nenvs:\n  - A=1\n")
    check(issue, 2, "envs", "expected a mapping", "got a list")


# --------------------------------------------------------------------------------------
# workdir / file_mounts
# --------------------------------------------------------------------------------------


def test_workdir_resolves_relative_to_the_current_directory_as_in_konduktor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `konduktor launch configs/train.yaml` with `workdir: .` syncs the directory the user
    # is in (the repository), not configs/: Konduktor and SkyPilot resolve it that way.
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "task.yaml"
    path.write_text("run: x\nworkdir: .\n")
    monkeypatch.chdir(tmp_path)
    assert load_task(path).workdir == tmp_path.resolve()


def test_workdir_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "code").mkdir()
    assert parse("run: x\nworkdir: ~/code\n").workdir == (tmp_path / "code").resolve()


def test_workdir_missing(tmp_path: Path) -> None:
    issue = only_issue("run: x\nworkdir: nope\n", base_dir=tmp_path)
    check(issue, 2, "workdir", "'nope' does not exist", str(tmp_path / "nope"))


def test_workdir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    issue = only_issue("run: x\nworkdir: f\n", base_dir=tmp_path)
    check(issue, 2, "workdir", "is not a directory")


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("/", "is the root of the filesystem"),
        ("/..", "is the root of the filesystem"),
        ("/proc", "is in /proc, a view the kernel gives"),
        ("/proc/self", "is in /proc"),
        ("/sys/kernel", "is in /sys"),
        ("/dev", "is in /dev"),
    ],
)
def test_workdir_of_the_whole_system_is_refused(written: str, message: str) -> None:
    # Each job copies its workdir whole: `workdir: /` copied the machine, /proc included.
    check(only_issue(f"run: x\nworkdir: {written}\n"), 2, "workdir", message)
    issue = only_issue(f"run: x\nfile_mounts:\n  /data: {written}\n")
    check(issue, 3, "file_mounts['/data']", message)


def test_a_scratch_directory_under_dev_is_a_workdir_like_any() -> None:
    assert parse("run: x\nworkdir: /dev/shm\n").workdir == Path("/dev/shm")


def test_workdir_wrong_type() -> None:
    check(only_issue("run: x\nworkdir: 5\n"), 2, "workdir", "expected a path", "got 5")


def test_file_mounts_ok(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "cfg.json").write_text("{}")
    task = parse(
        """\
        run: x
        file_mounts:
          /data/train: data
          ~/cfg.json: ./cfg.json
          /tmp/x: data
        """,
        base_dir=tmp_path,
    )
    assert task.file_mounts == {
        "/data/train": (tmp_path / "data").resolve(),
        "~/cfg.json": (tmp_path / "cfg.json").resolve(),
        "/tmp/x": (tmp_path / "data").resolve(),
    }


@pytest.mark.parametrize(
    ("dest", "fragment"),
    [
        ("relative/path", "must be an absolute path like '/data/x'"),
        ("~user/x", "must be an absolute path like '/data/x'"),
        ("/data/../etc/x", "must not contain '..'"),
        ("~/../other", "must not contain '..'"),
        ("/", "is the root directory"),
        ("/etc/cron.d/job", "is the system directory /etc"),
        ("/usr/local/bin", "is the system directory /usr"),
        ("/bin", "is the system directory /bin"),
        ("//etc/x", "is the system directory /etc"),
        ("/./var/lib/x", "is the system directory /var"),
        ("/proc/self", "is the system directory /proc"),
        ("~/", "below your home"),
    ],
)
def test_file_mount_destination_escapes_rejected(tmp_path: Path, dest: str, fragment: str) -> None:
    (tmp_path / "src").mkdir()
    issue = only_issue(f"run: x\nfile_mounts:\n  '{dest}': src\n", base_dir=tmp_path)
    check(issue, 3, f"file_mounts[{dest!r}]", fragment)
    # every rejection names the forms that are allowed
    if "must not contain" in fragment or "system" in fragment or "root" in fragment:
        assert "'/data/x'" in issue.message and "'~/data'" in issue.message


def test_file_mount_source_missing(tmp_path: Path) -> None:
    issue = only_issue("run: x\nfile_mounts:\n  /data/x: nope\n", base_dir=tmp_path)
    check(issue, 3, "file_mounts['/data/x']", "local source 'nope' does not exist")


@pytest.mark.parametrize(
    "source", ["s3://bucket/key", "gs://b", "r2://b/x", "https://example.org/x", "weird://x"]
)
def test_cloud_storage_mount_url_is_refused(source: str) -> None:
    issue = only_issue(f"run: x\nfile_mounts:\n  /data/x: {source}\n")
    check(issue, 3, "file_mounts['/data/x']", "cloud storage mounts are not supported on Slurm")
    assert source in issue.message and "download it in setup" in issue.message


@pytest.mark.parametrize(
    "mapping",
    [
        "{source: s3://bucket, mode: MOUNT}",
        "{name: my-bucket, store: gcs}",
        "{name: vol, store: volume, persistent: true}",
        "{source: ./local, store: s3}",
    ],
)
def test_storage_mount_mappings_are_refused(mapping: str) -> None:
    issue = only_issue(f"run: x\nfile_mounts:\n  /data/x: {mapping}\n")
    check(issue, 3, "file_mounts['/data/x']", "cloud storage mounts are not supported on Slurm")


def test_file_mounts_not_a_mapping() -> None:
    issue = only_issue("run: x\nfile_mounts: [a]\n")
    check(issue, 2, "file_mounts", "expected a mapping", "got a list")


# --------------------------------------------------------------------------------------
# num_nodes / resources
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "got"), [("two", "'two'"), ("0", "0"), ("-1", "-1"), ("1.5", "1.5"), ("true", "true")]
)
def test_bad_num_nodes(value: str, got: str) -> None:
    issue = only_issue(f"run: x\nnum_nodes: {value}\n")
    check(issue, 2, "num_nodes", f"expected an integer >= 1, got {got}")


def test_num_nodes_numeric_string() -> None:
    assert parse("run: x\nnum_nodes: '4'\n").num_nodes == 4


@pytest.mark.parametrize(
    ("cpus", "memory", "want_cpus", "want_mem"),
    [
        ("8", "32", 8, 32.0),
        ("'8'", "'32'", 8, 32.0),
        ("8+", "32+", 8, 32.0),
        ("'16+'", "'0.5+'", 16, 0.5),
        ("1", "2.5", 1, 2.5),
    ],
)
def test_cpus_and_memory_forms(cpus: str, memory: str, want_cpus: int, want_mem: float) -> None:
    task = parse(f"run: x\nresources:\n  cpus: {cpus}\n  memory: {memory}\n")
    assert task.resources.cpus == want_cpus
    assert task.resources.memory_gib == want_mem
    assert task.warnings == ()  # '8+' is accepted silently


@pytest.mark.parametrize(
    ("value", "got"),
    [("0", "0"), ("eight", "'eight'"), ("-1.5", "-1.5"), ("'8-'", "'8-'"), (".inf", "inf")],
)
def test_bad_cpus(value: str, got: str) -> None:
    issue = only_issue(f"run: x\nresources:\n  cpus: {value}\n")
    check(issue, 3, "resources.cpus", f"expected a number of CPUs like 8 or '8+', got {got}")


@pytest.mark.parametrize(
    ("value", "whole", "shown"),
    [("0.5", 1, "0.5"), ("2.5", 3, "2.5"), ("'1.2+'", 2, "1.2+"), ("'3.0'", 3, None)],
)
def test_fractional_cpus_are_rounded_up_with_a_warning(
    value: str, whole: int, shown: str | None
) -> None:
    task = parse(f"run: x\nresources:\n  cpus: {value}\n")
    assert task.resources.cpus == whole
    if shown is None:
        assert task.warnings == ()
    else:
        assert task.warnings == (
            f"task.yaml:3: resources.cpus {shown} rounded up to {whole} "
            "(Slurm allocates whole CPUs)",
        )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0", "expected a positive amount of memory in GiB like 32, '32+' or '64GB', got 0"),
        ("-4", "got -4"),
        ("lots", "got 'lots'"),
        (".nan", "got nan"),
        ("32 apples", "got '32 apples'"),
        ("3x", "got '3x'"),
        ("0.0001", "must be at least 1 MiB"),
        ("1e308", "must be at most 1.04858e+06 GiB (1 PiB) per node"),
        ("'2PB'", "must be at most"),
    ],
)
def test_bad_memory(value: str, fragment: str) -> None:
    issue = only_issue(f"run: x\nresources:\n  memory: {value}\n")
    check(issue, 3, "resources.memory", fragment)


@pytest.mark.parametrize(
    ("value", "gib"),
    [("64GB", 64.0), ("'1024MB'", 1.0), ("32Gi", 32.0), ("'0.5TB'", 512.0), ("'16gb+'", 16.0)],
)
def test_memory_with_skypilot_units(value: str, gib: float) -> None:
    # SkyPilot's units are binary (GB = 2**30 bytes), as it documents them.
    assert parse(f"run: x\nresources:\n  memory: {value}\n").resources.memory_gib == gib


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("H100:8", Accelerator("H100", 8)),
        ("'H100: 8'", Accelerator("H100", 8)),
        ("{H100: 8}", Accelerator("H100", 8)),
        ("\n    A100-80GB: 4", Accelerator("A100-80GB", 4)),
        ("H100", Accelerator("H100", 1)),
        ("{L4}", Accelerator("L4", 1)),
        ("{T4: '2'}", Accelerator("T4", 2)),
        ("RTX4090:2", Accelerator("RTX4090", 2)),
        ("MI300X", Accelerator("MI300X", 1)),
        # SkyPilot's one-element list and set forms.
        ("['H100:8']", Accelerator("H100", 8)),
        ("{H100:8}", Accelerator("H100", 8)),
        ("[A10G]", Accelerator("A10G", 1)),
    ],
)
def test_accelerator_forms(value: str, expected: Accelerator) -> None:
    task = parse(f"run: x\nresources:\n  accelerators: {value}\n")
    assert task.resources.accelerator == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("H100x8", "expected '<NAME>:<COUNT>' like 'H100:8' or {H100: 8}, got 'H100x8'"),
        ("8xH100", "got '8xH100'"),
        ("'H100:eight'", "got 'H100:eight'"),
        ("'H100:8:2'", "got 'H100:8:2'"),
        ("'H100:0'", "count must be an integer >= 1"),
        ("{H100: 0}", "count must be an integer >= 1, got 0"),
        ("{H100: 1.5}", "count must be an integer >= 1, got 1.5"),
        ("{H100: 8, A100: 2}", "accelerator alternatives (H100:8, A100:2)"),
        ("[H100, A100]", "accelerator alternatives (H100, A100)"),
        ("['L4:1', 'H100:1', 'A100:1']", "accelerator alternatives (L4:1, H100:1, A100:1)"),
        ("{A100:1, V100:1}", "a Slurm job asks for one GPU type: keep one"),
        ("[1, 2]", "pick one accelerator type"),
        ("tpu-v2-8", "TPU accelerators exist only on Google Cloud"),
        ("{tpu-v3-8: 1}", "TPU accelerators"),
        ("TPU-V5P:4", "TPU accelerators"),
        ("8", "got 8"),
    ],
)
def test_bad_accelerators(value: str, fragment: str) -> None:
    issue = only_issue(f"run: x\nresources:\n  accelerators: {value}\n")
    check(issue, 3, "resources.accelerators", fragment)


def test_resources_not_a_mapping() -> None:
    issue = only_issue("run: x\nresources: H100:8\n")
    check(issue, 2, "resources", "expected a mapping of resource fields", "got 'H100:8'")


@pytest.mark.parametrize(("value", "got"), [("-1", "-1"), ("lots", "'lots'"), ("[1]", "a list")])
def test_bad_max_restarts(value: str, got: str) -> None:
    issue = only_issue(f"run: x\nresources:\n  job_config:\n    max_restarts: {value}\n")
    check(issue, 4, "resources.job_config.max_restarts", f"expected an integer >= 0, got {got}")


def test_job_config_not_a_mapping() -> None:
    issue = only_issue("run: x\nresources:\n  job_config: 3\n")
    check(issue, 3, "resources.job_config", "expected a mapping", "got 3")


def test_konduktor_only_fields_warn_once_each_with_the_reason() -> None:
    task = parse("""\
        run: x
        resources:
          image_id: nvcr.io/nvidia/pytorch:23.10-py3
          labels:
            kueue.x-k8s.io/queue-name: user-queue
          job_config:
            max_restarts: 2
            completions: 1
        """)
    assert task.warnings == (
        "task.yaml:3: resources.image_id is ignored on Slurm: jobs run on the nodes' own "
        "system, no container image is pulled; install what the job needs in setup",
        "task.yaml:4: resources.labels is ignored on Slurm: Slurm jobs have no labels "
        "(labels.maxRunDurationSeconds becomes the time limit)",
    )
    assert task.resources.max_restarts == 2
    assert task.slurm.time_limit is None


def test_job_config_completions_above_one_is_refused_with_why() -> None:
    issue = only_issue("run: x\nresources:\n  job_config:\n    completions: 4\n")
    check(issue, 4, "resources.job_config.completions", "runs it once (1)", "launch it 4 times")


KNOWN_JOB_CONFIG = "max_restarts, completions, checkpoint_signal, checkpoint_grace, checkpoint_dir"


def test_unknown_job_config_keys_are_accepted_with_a_warning_as_konduktor_does() -> None:
    task = parse("run: x\nresources:\n  job_config:\n    max_restart: 1\n    owner: me\n")
    assert task.resources.max_restarts == 0
    assert task.warnings == (
        "task.yaml:4: resources.job_config.max_restart is not a job_config setting "
        f"konduktor-slurm knows ({KNOWN_JOB_CONFIG}); ignored; did you mean "
        "'max_restarts'?",
        "task.yaml:5: resources.job_config.owner is not a job_config setting konduktor-slurm "
        f"knows ({KNOWN_JOB_CONFIG}); ignored",
    )


# --------------------------------------------------------------------------------------
# slurm
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", "30"),
        ("'30'", "30"),
        ("45:00", "45:00"),  # unquoted: YAML 1.1 reads this as the base-60 int 2700
        ("4:00:00", "4:00:00"),
        ("'04:00:00'", "04:00:00"),
        ("1-12", "1-12"),
        ("1-12:30", "1-12:30"),
        ("2-00:00:00", "2-00:00:00"),
        ("100:00:00", "100:00:00"),
        ("UNLIMITED", "UNLIMITED"),
        ("infinite", "UNLIMITED"),
    ],
)
def test_time_limit_forms(value: str, expected: str) -> None:
    assert parse(f"run: x\nslurm:\n  time_limit: {value}\n").slurm.time_limit == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2h", "got '2h'"),
        ("'25 hours'", "got '25 hours'"),
        ("1.5", "got 1.5"),
        ("0", "longer than zero"),
        ("'1:99'", "out of range"),
        ("1-24", "out of range"),
        ("'-5'", "got '-5'"),
        ("[30]", "got a list"),
        ("35791394", "longer than Slurm can keep"),
        ("'999999999999999999999'", "got '999999999999999999999'"),
    ],
)
def test_bad_time_limit(value: str, fragment: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  time_limit: {value}\n")
    check(issue, 3, "slurm.time_limit", "time limit", fragment)


@pytest.mark.parametrize("key", ["partition", "account", "qos"])
def test_bad_slurm_names(key: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  {key}: 'gpu; rm -rf /'\n")
    check(issue, 3, f"slurm.{key}", f"expected a Slurm {key} name", "got 'gpu; rm -rf /'")


def test_numeric_account_kept_as_written() -> None:
    assert parse("run: x\nslurm:\n  account: 00123\n").slurm.account == "00123"


def test_bad_constraint() -> None:
    issue = only_issue("run: x\nslurm:\n  constraint: [a100]\n")
    check(issue, 3, "slurm.constraint", "expected a Slurm constraint", "got a list")


def test_slurm_not_a_mapping() -> None:
    check(only_issue("run: x\nslurm: gpu\n"), 2, "slurm", "expected a mapping", "got 'gpu'")


def test_sbatch_options_mapping_and_list_forms() -> None:
    mapping = parse("""\
        run: x
        slurm:
          sbatch_options:
            exclusive: null
            --mail-type: END
            mem-per-gpu: 40G
            nice: 10
        """)
    listed = parse("""\
        run: x
        slurm:
          sbatch_options: [--exclusive, --mail-type=END, mem-per-gpu=40G, --nice=10]
        """)
    expected = (("exclusive", None), ("mail-type", "END"), ("mem-per-gpu", "40G"), ("nice", "10"))
    assert mapping.slurm.sbatch_options == expected
    assert listed.slurm.sbatch_options == expected


MANAGED = [
    ("job-name", "name"),
    ("J", "name"),
    ("nodes", "num_nodes"),
    ("N", "num_nodes"),
    ("ntasks", "num_nodes"),
    ("n", "num_nodes"),
    ("ntasks-per-node", "num_nodes"),
    ("output", "its log files"),
    ("o", "its log files"),
    ("error", "its log files"),
    ("e", "its log files"),
    ("open-mode", "its log files"),
    ("gres", "resources.accelerators"),
    ("gpus", "resources.accelerators"),
    ("G", "resources.accelerators"),
    ("wrap", "run"),
    ("parsable", "its own job submission"),
    ("chdir", "workdir"),
    ("D", "workdir"),
]


@pytest.mark.parametrize(
    ("written", "reads_as", "fragment"),
    [
        ("outp", "output", "is set by konduktor from its log files"),
        ("chdi", "chdir", "is set by konduktor from workdir"),
        ("partitio", "partition", "has its own field: use slurm.partition"),
        ("comm", "comment", "is set by konduktor from its job marker"),
        ("arr", "array", "one job per launch"),
        ("wait-a", "wait-all-nodes", None),
        ("test-o", "test-only", "use launch --dryrun"),
        ("gpus-per-n", "gpus-per-node", "resources.accelerators"),
    ],
)
def test_sbatch_prefixes_are_read_as_sbatch_reads_them(
    written: str, reads_as: str, fragment: str | None
) -> None:
    # sbatch accepts any unambiguous prefix of a long option (getopt_long); checked against
    # sbatch 22.05.8 itself (`sbatch --outp=1 --version`).
    text = f"run: x\nslurm:\n  sbatch_options:\n    - --{written}=v\n"
    if fragment is None:  # allowed: kept under sbatch's full name
        assert parse(text).slurm.sbatch_options == ((reads_as, "v"),)
        return
    issue = only_issue(text)
    check(issue, 4, "slurm.sbatch_options[0]", f"(sbatch reads it as --{reads_as})", fragment)


@pytest.mark.parametrize(
    ("written", "could_be"),
    [("wai", "--wait, --wait-all-nodes"), ("excl", "--exclude, --exclusive")],
)
def test_ambiguous_sbatch_prefixes_are_refused_as_sbatch_refuses_them(
    written: str, could_be: str
) -> None:
    issue = only_issue(f"run: x\nslurm:\n  sbatch_options: [--{written}]\n")
    check(issue, 3, "slurm.sbatch_options[0]", f"ambiguous for sbatch: it could be {could_be}")


def test_sbatch_prefix_of_an_allowed_option_is_kept_by_its_full_name(tmp_path: Path) -> None:
    task = parse("run: x\nslurm:\n  sbatch_options: [--no-requ, --mail-ty=END, --exclusi]\n")
    assert task.slurm.sbatch_options == (
        ("no-requeue", None),
        ("mail-type", "END"),
        ("exclusive", None),
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("BASH_ENV", "changes how bash runs konduktor's scripts"),
        ("SHELLOPTS", "changes how bash runs konduktor's scripts"),
        ("HOME", "file_mounts to '~/...'"),
        ("KONDUKTOR_JOB_DIR", "konduktor's own variables"),
        ("SLURM_JOB_ID", "Slurm's own variables"),
        ("SKYPILOT_TASK_ID", "SkyPilot's variables"),
        ("RANK", "konduktor sets it on every node"),
        ("BASH_FUNC_x%%", "not a valid environment variable name"),
    ],
)
def test_reserved_env_names_are_refused_with_why(name: str, why: str) -> None:
    for section in ("envs", "secrets"):
        issue = only_issue(f"run: x\n{section}:\n  '{name}': v\n")
        assert issue.line == 3 and why in issue.message, issue


def test_reserved_env_name_from_the_command_line() -> None:
    issue = only_issue("run: x\n", overrides=TaskOverrides(envs=["BASH_ENV=/tmp/x"]))
    check(issue, None, "--env", "BASH_ENV is reserved", file="command line")


def test_env_value_that_is_not_utf8_is_refused() -> None:
    issue = only_issue("run: x\n", overrides=TaskOverrides(envs=["A=\udcff"]))
    check(issue, None, "--env", "is not valid UTF-8 text", file="command line")


def test_constraint_with_spaces_is_refused_at_validation() -> None:
    issue = only_issue("run: x\nslurm:\n  constraint: 'a100 & ib'\n")
    check(issue, 3, "slurm.constraint", "cannot contain spaces")


def test_mem_per_cpu_conflicts_with_memory() -> None:
    issue = only_issue(
        "run: x\nresources:\n  memory: 4\nslurm:\n  sbatch_options: {mem-per-c: 1G}\n"
    )
    check(issue, 5, "slurm.sbatch_options.mem-per-c", "conflicts with resources.memory")


@pytest.mark.parametrize(("option", "source"), MANAGED)
def test_managed_sbatch_options_rejected_in_mapping(option: str, source: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  sbatch_options:\n    {option}: v\n")
    check(issue, 4, f"slurm.sbatch_options.{option}", f"is set by konduktor from {source}")


@pytest.mark.parametrize(("option", "source"), MANAGED)
def test_managed_sbatch_options_rejected_in_list(option: str, source: str) -> None:
    dashes = "-" if len(option) == 1 else "--"
    issue = only_issue(f"run: x\nslurm:\n  sbatch_options:\n    - {dashes}{option}=v\n")
    check(issue, 4, "slurm.sbatch_options[0]", f"is set by konduktor from {source}")
    assert issue.message.startswith(f"--{option} " if dashes == "--" else f"'-{option}' (sbatch")


@pytest.mark.parametrize(
    ("option", "field"),
    [("partition", "slurm.partition"), ("t", "slurm.time_limit"), ("C", "slurm.constraint")],
)
def test_sbatch_options_with_a_dedicated_field_rejected(option: str, field: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  sbatch_options:\n    {option}: v\n")
    check(issue, 4, f"slurm.sbatch_options.{option}", f"use {field}")


def test_sbatch_mem_only_conflicts_when_memory_is_set() -> None:
    task = parse("run: x\nslurm:\n  sbatch_options: {mem: 0}\n")
    assert task.slurm.sbatch_options == (("mem", "0"),)
    issue = only_issue("""\
        run: x
        resources:
          memory: 32
        slurm:
          sbatch_options: {mem: 0}
        """)
    check(issue, 5, "slurm.sbatch_options.mem", "conflicts with resources.memory")


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        (
            "{exclusive: true}",
            "slurm.sbatch_options.exclusive",
            "for a flag write 'exclusive: null'",
        ),
        ("['--mail-type END']", "slurm.sbatch_options[0]", "got '--mail-type END'"),
        (
            "['--Exclusive']",
            "slurm.sbatch_options[0]",
            "--Exclusive is not an sbatch option; did you mean 'exclusive'?",
        ),
        ("['--mail-user=']", "slurm.sbatch_options[0]", "is empty"),
        ('{mail-user: "a\\nb"}', "slurm.sbatch_options.mail-user", "control characters"),
        ("{mail-user: 'a b'}", "slurm.sbatch_options.mail-user", "cannot contain spaces"),
        ("[--no-such-option]", "slurm.sbatch_options[0]", "is not an sbatch option"),
        ("[--excl]", "slurm.sbatch_options[0]", "ambiguous for sbatch: it could be"),
        ("[--exclusive, 5]", "slurm.sbatch_options[1]", "got 5"),
        ("[--nice=1, --nice=2]", "slurm.sbatch_options[1]", "given twice"),
        ("--exclusive", "slurm.sbatch_options", "expected a mapping of option: value"),
    ],
)
def test_bad_sbatch_options(options: str, field: str, fragment: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  sbatch_options: {options}\n")
    check(issue, 3, field, fragment)


def test_slurm_fields_allowed_in_resources() -> None:
    task = parse("""\
        run: x
        resources:
          partition: gpu
          time_limit: 60
          sbatch_options: [--exclusive]
        slurm:
          partition: gpu
        """)
    assert task.slurm == SlurmOptions(
        partition="gpu", time_limit="60", sbatch_options=(("exclusive", None),)
    )


def test_slurm_field_in_both_places_with_different_values() -> None:
    issues = issues_of("""\
        run: x
        resources:
          partition: gpu
          account: a
        slurm:
          partition: debug
          account: a
          sbatch_options: [--exclusive]
        """)
    (issue,) = issues
    check(issue, 6, "slurm.partition", "'debug' here", "'gpu' in resources.partition (line 3)")


def test_sbatch_options_in_both_places_differ() -> None:
    issue = only_issue("""\
        run: x
        resources:
          sbatch_options: [--exclusive]
        slurm:
          sbatch_options: {nice: 5}
        """)
    check(issue, 5, "slurm.sbatch_options", "resources.sbatch_options (line 3)")


# --------------------------------------------------------------------------------------
# unknown keys, with did-you-mean at every level
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "field", "hint"),
    [
        ("run: x\nresourses: {}\n", 2, "resourses", "did you mean 'resources'?"),
        ("run: x\nnum_node: 2\n", 2, "num_node", "did you mean 'num_nodes'?"),
        (
            "run: x\nresources:\n  acelerators: H100\n",
            3,
            "resources.acelerators",
            "did you mean 'accelerators'?",
        ),
        ("run: x\nslurm:\n  partiton: gpu\n", 3, "slurm.partiton", "did you mean 'partition'?"),
        ("run: x\nslurm:\n  timelimit: 30\n", 3, "slurm.timelimit", "did you mean 'time_limit'?"),
    ],
)
def test_unknown_key_did_you_mean(text: str, line: int, field: str, hint: str) -> None:
    check(only_issue(text), line, field, "unknown field", hint)


def test_unknown_key_str_matches_documented_text() -> None:
    issue = only_issue("name: a\nrun: x\nresourses:\n  cpus: 1\n")
    assert str(issue) == "task.yaml:3: resourses: unknown field; did you mean 'resources'?"


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("run: x\naccelerators: H100:8\n", "accelerators", "'resources.accelerators'"),
        ("run: x\npartition: gpu\n", "partition", "'slurm.partition'"),
        ("run: x\nresources:\n  num_nodes: 2\n", "resources.num_nodes", "top-level 'num_nodes'"),
        (
            "run: x\nresources:\n  max_restarts: 2\n",
            "resources.max_restarts",
            "'job_config.max_restarts'",
        ),
        ("run: x\nslurm:\n  cpus: 2\n", "slurm.cpus", "'resources.cpus'"),
    ],
)
def test_key_at_wrong_level_points_to_right_place(text: str, field: str, hint: str) -> None:
    issue = only_issue(text)
    assert issue.field == field
    assert f"did you mean {hint}?" in issue.message


def test_unknown_key_without_close_match_lists_allowed() -> None:
    issue = only_issue("run: x\nslurm:\n  zzz: 1\n")
    check(issue, 3, "slurm.zzz", "unknown field; expected one of: partition, account, qos")


# --------------------------------------------------------------------------------------
# multiple errors
# --------------------------------------------------------------------------------------


def test_all_issues_reported_together(tmp_path: Path) -> None:
    issues = issues_of(
        """\
        name: bad name
        num_nodes: 0
        resources:
          cpus: none
          accelerators: H100x8
        envs:
          A:
        workdir: missing-dir
        slurm:
          qos: 'x y'
        """,
        base_dir=tmp_path,
    )
    assert [(i.line, i.field) for i in issues] == [
        (1, "name"),
        (2, "num_nodes"),
        (4, "resources.cpus"),
        (5, "resources.accelerators"),
        (7, "envs.A"),
        (8, "workdir"),
        (10, "slurm.qos"),
    ]


# --------------------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------------------

BASE = """\
name: from-yaml
num_nodes: 1
resources:
  cpus: 2
  memory: 4
  accelerators: A100:1
envs:
  A: yaml
  B: yaml
  C: yaml
run: echo hi
"""


def test_each_override_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wd").mkdir()
    monkeypatch.chdir(tmp_path)
    task = parse(
        BASE,
        overrides=TaskOverrides(
            name="from-cli",
            num_nodes="3",
            cpus=16,
            memory="64+",
            gpus="H100:8",
            envs=["A=cli"],
            workdir="wd",
        ),
    )
    assert task.name == "from-cli"
    assert task.num_nodes == 3
    assert task.resources == Resources(16, 64.0, Accelerator("H100", 8), 0)
    assert task.envs["A"] == "cli"
    assert task.workdir == (tmp_path / "wd").resolve()
    assert task.resources_summary() == "3x(16CPU, 64GiMEM, H100:8)"


def test_overrides_without_resources_section() -> None:
    task = parse("run: x\n", overrides=TaskOverrides(gpus="L4", cpus="4", num_nodes=2))
    assert task.resources == Resources(4, None, Accelerator("L4", 1))
    assert task.num_nodes == 2


@pytest.mark.parametrize("none", ["none", "None", "NONE"])
def test_none_on_the_command_line_removes_the_field_as_konduktor_does(none: str) -> None:
    """`--gpus none`: a GPU task file run without GPUs (Konduktor and SkyPilot reset the
    field); before, it asked Slurm for --gres=gpu:none:1."""
    text = """\
        resources:
          accelerators: H100:8
          cpus: 8
          memory: 64
          image_id: docker:pytorch
          cloud: kubernetes
        run: x
        """
    flags = {key: none for key in ("gpus", "cpus", "memory", "image_id", "cloud")}
    task = parse(text, overrides=TaskOverrides(**flags))
    assert task.resources == Resources()
    assert task.warnings == ()  # nothing left to ignore
    assert parse("run: x\n", overrides=TaskOverrides(gpus=none)).resources.accelerator is None


def test_override_replaces_bad_yaml_value() -> None:
    # Overrides are applied before validation, so a fixed value on the command line wins.
    task = parse("run: x\nresources:\n  cpus: eight\n", overrides=TaskOverrides(cpus="8"))
    assert task.resources.cpus == 8


def test_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("A=file\nB=file\nD=file\n")
    monkeypatch.setenv("FROM_SHELL", "shell-value")
    task = parse(
        BASE,
        overrides=TaskOverrides(envs=["A=cli", "FROM_SHELL"], env_file=env_file),
    )
    assert task.envs == {
        "A": "cli",  # --env beats --env-file beats YAML
        "B": "file",
        "C": "yaml",
        "D": "file",
        "FROM_SHELL": "shell-value",
    }


def test_env_override_fills_null_yaml_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "secret")
    task = parse("run: x\nenvs:\n  HF_TOKEN:\n", overrides=TaskOverrides(envs=["HF_TOKEN"]))
    assert task.envs == {"HF_TOKEN": "secret"}


def test_env_override_value_with_equals_and_injection() -> None:
    task = parse("run: x\n", overrides=TaskOverrides(envs=['Q=a=b; $(id) "x"']))
    assert task.envs == {"Q": 'a=b; $(id) "x"'}


def test_env_override_missing_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    issue = only_issue("run: x\n", overrides=TaskOverrides(envs=["NOT_SET_ANYWHERE"]))
    check(issue, None, "--env", "NOT_SET_ANYWHERE is not set", file="command line")


def test_env_override_bad_name() -> None:
    issue = only_issue("run: x\n", overrides=TaskOverrides(envs=["1BAD=x"]))
    check(
        issue, None, "--env", "'1BAD' is not a valid environment variable name", file="command line"
    )


def test_env_file_format(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text(
        "# comment\n"
        "\n"
        "PLAIN=value with spaces\n"
        "export EXPORTED=1\n"
        'DOUBLE="quoted # not a comment"\n'
        "SINGLE='$(not run)'\n"
        "EMPTY=\n"
        "EQ=a=b\n"
    )
    task = parse("run: x\n", overrides=TaskOverrides(env_file=env_file))
    assert task.envs == {
        "PLAIN": "value with spaces",
        "EXPORTED": "1",
        "DOUBLE": "quoted # not a comment",
        "SINGLE": "$(not run)",
        "EMPTY": "",
        "EQ": "a=b",
    }


def test_env_file_bad_lines_report_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("OK=1\nno equals sign\n9LIVES=x\n")
    issues = issues_of("run: x\n", overrides=TaskOverrides(env_file=env_file))
    assert len(issues) == 2
    check(issues[0], 2, "--env-file", "expected KEY=VALUE", file=str(env_file))
    check(issues[1], 3, "--env-file", "'9LIVES' is not a valid", file=str(env_file))


def test_env_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    issue = only_issue("run: x\n", overrides=TaskOverrides(env_file=missing))
    check(issue, None, "--env-file", "not found", file=str(missing))


@pytest.mark.parametrize(
    ("overrides", "flag", "fragment"),
    [
        (TaskOverrides(gpus="H100x8"), "--gpus", "expected '<NAME>:<COUNT>' like 'H100:8'"),
        (TaskOverrides(num_nodes="two"), "--num-nodes", "expected an integer >= 1, got 'two'"),
        (TaskOverrides(num_nodes=0), "--num-nodes", "expected an integer >= 1, got 0"),
        (TaskOverrides(cpus="many"), "--cpus", "got 'many'"),
        (TaskOverrides(memory="32 apples"), "--memory", "got '32 apples'"),
        (TaskOverrides(name="no spaces allowed"), "--name", "got 'no spaces allowed'"),
    ],
)
def test_bad_override_reported_on_command_line(
    overrides: TaskOverrides, flag: str, fragment: str
) -> None:
    issue = only_issue(BASE, overrides=overrides)
    check(issue, None, flag, fragment, file="command line")


def test_bad_gpus_override_str() -> None:
    issue = only_issue(BASE, overrides=TaskOverrides(gpus="H100x8"))
    assert str(issue) == (
        "command line: --gpus: expected '<NAME>:<COUNT>' like 'H100:8' or {H100: 8}, got 'H100x8'"
    )


def test_workdir_in_yaml_and_on_the_command_line_are_both_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml_dir = tmp_path / "yamls"
    yaml_dir.mkdir()
    (yaml_dir / "code").mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = yaml_dir / "task.yaml"
    path.write_text("run: x\nworkdir: code\n")
    monkeypatch.chdir(cwd)
    with pytest.raises(TaskError) as info:
        load_task(path)
    check(info.value.issues[0], 2, "workdir", f"looked for {cwd / 'code'}", file=str(path))
    with pytest.raises(TaskError) as info:
        load_task(path, TaskOverrides(workdir="code"))
    check(info.value.issues[0], None, "--workdir", "does not exist", file="command line")
    (cwd / "code").mkdir()
    assert load_task(path).workdir == (cwd / "code").resolve()
    assert load_task(path, TaskOverrides(workdir="code")).workdir == (cwd / "code").resolve()


def test_override_issues_come_after_file_issues() -> None:
    issues = issues_of("run: x\nnum_nodes: zero\n", overrides=TaskOverrides(gpus="bad:gpu"))
    assert [(i.file, i.field) for i in issues] == [
        ("task.yaml", "num_nodes"),
        ("command line", "--gpus"),
    ]


# --------------------------------------------------------------------------------------
# resources_summary / gres_type
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_nodes", "resources", "expected"),
    [
        (2, Resources(8, 32.0, Accelerator("H100", 8)), "2x(8CPU, 32GiMEM, H100:8)"),
        (1, Resources(accelerator=Accelerator("H100", 8)), "1x(H100:8)"),
        (1, Resources(cpus=4), "1x(4CPU)"),
        (1, Resources(memory_gib=0.5), "1x(0.5GiMEM)"),
        (3, Resources(cpus=2, memory_gib=7.5), "3x(2CPU, 7.5GiMEM)"),
        (1, Resources(), "1x(-)"),
    ],
)
def test_resources_summary(num_nodes: int, resources: Resources, expected: str) -> None:
    task = Task(name="t", run="x", num_nodes=num_nodes, resources=resources)
    assert task.resources_summary() == expected


def test_gres_type() -> None:
    acc = Accelerator("H100", 8)
    assert acc.gres_type(None) == "h100"
    assert acc.gres_type({}) == "h100"
    assert acc.gres_type({"H100": "nvidia_h100_80gb_hbm3"}) == "nvidia_h100_80gb_hbm3"
    assert acc.gres_type({"h100": "hopper"}) == "hopper"
    assert acc.gres_type({"A100": "a100"}) == "h100"


def test_task_is_frozen() -> None:
    task = parse("run: x\n")
    with pytest.raises(AttributeError):
        task.name = "other"  # type: ignore[misc]


def test_disk_size_is_ignored_with_a_warning() -> None:
    task = parse("run: x\nresources:\n  disk_size: 100\n")
    assert task.warnings == (
        "task.yaml:3: resources.disk_size is ignored on Slurm: nodes have the disks the "
        "cluster gives them",
    )


# --------------------------------------------------------------------------------------
# the schema's plumbing: lazy pydantic, field lists, error paths and order
# --------------------------------------------------------------------------------------


def test_importing_the_module_imports_neither_pydantic_nor_yaml() -> None:
    import subprocess
    import sys

    code = (
        "import sys, konduktor_slurm.task; "
        "print(sorted(m for m in ('pydantic', 'pydantic_core', 'yaml') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_schema_field_is_supported_ignored_with_a_reason_or_refused() -> None:
    from konduktor_slurm.task import compat, schema, validate

    supported = {
        (): {*validate.MAIN_TOP_LEVEL, "config"},  # config: SkyPilot's, its slurm part read
        ("resources",): {*validate.MAIN_RESOURCES, "job_recovery"},
    }
    for loc, model in (((), schema.TaskSchema), (("resources",), schema.ResourcesSection)):
        for name in schema.field_names(model):
            path = (*loc, name)
            assert (
                name in supported[loc] or path in compat.IGNORED_BY_PATH or path in compat.REFUSED
            ), path
    # And every ignored or refused path is a real field of the schema.
    for path in [*compat.IGNORED_BY_PATH, *compat.REFUSED]:
        model = schema.TaskSchema if len(path) == 1 else schema.ResourcesSection
        assert path[-1] in schema.field_names(model), path
    assert schema.field_names(schema.SlurmSection) == validate.SLURM_FIELDS
    assert tuple(schema.JobConfig.model_fields) == validate.JOB_CONFIG_FIELDS


def test_yaml_typed_values_become_plain_python_types() -> None:
    task = parse("""\
        run: x
        num_nodes: 2
        envs: {A: 1, B: 1.10}
        resources: {cpus: 4, memory: 8, accelerators: {H100: 2}, job_config: {max_restarts: 3}}
        slurm: {account: 00123, time_limit: 1:30:00, sbatch_options: {nice: 5}}
        """)
    assert type(task.num_nodes) is int and type(task.resources.cpus) is int
    assert type(task.resources.memory_gib) is float
    assert type(task.resources.accelerator.count) is int  # type: ignore[union-attr]
    assert type(task.resources.max_restarts) is int
    assert task.envs == {"A": "1", "B": "1.10"} and all(type(v) is str for v in task.envs.values())
    assert task.slurm.account == "00123" and task.slurm.time_limit == "1:30:00"
    assert task.slurm.sbatch_options == (("nice", "5"),)


@pytest.mark.parametrize(("value", "got"), [("1.0e+5", "'1.0e+5'"), ("true", "true")])
def test_slurm_name_shows_yaml_numbers_as_written(value: str, got: str) -> None:
    issue = only_issue(f"run: x\nslurm:\n  partition: {value}\n")
    check(issue, 3, "slurm.partition", f"got {got}")


def test_sbatch_option_given_twice_names_the_first_line() -> None:
    issue = only_issue("""\
        run: x
        slurm:
          sbatch_options:
            - --nice=1
            - --exclusive
            - --nice=2
        """)
    check(issue, 6, "slurm.sbatch_options[2]", "--nice is given twice (also on line 4); keep one")


def test_sbatch_resource_conflict_needs_a_valid_resource() -> None:
    issue = only_issue("run: x\nresources:\n  cpus: many\nslurm:\n  sbatch_options: {c: 4}\n")
    check(issue, 3, "resources.cpus", "got 'many'")


def test_slurm_conflict_is_reported_with_the_other_issues() -> None:
    issues = issues_of("""\
        run: x
        num_nodes: 0
        resources:
          partition: gpu
        slurm:
          partition: debug
        """)
    assert [(i.line, i.field) for i in issues] == [(2, "num_nodes"), (6, "slurm.partition")]


def test_bad_env_name_is_reported_once_even_with_a_bad_value() -> None:
    issue = only_issue("run: x\nenvs:\n  1BAD: [1]\n")
    check(issue, 3, "envs['1BAD']", "'1BAD' is not a valid environment variable name")


def test_file_mount_reports_bad_destination_and_bad_source() -> None:
    issues = issues_of("run: x\nfile_mounts:\n  rel: s3://bucket/key\n")
    assert len(issues) == 2
    check(issues[0], 3, "file_mounts.rel", "destination must be an absolute path", "got 'rel'")
    check(issues[1], 3, "file_mounts.rel", "cloud storage mounts are not supported")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("run: x\nenvs:\n  null: v\n", "envs['None']"),
        ("run: x\nenvs:\n  true: v\n", "envs['True']"),
        ("run: x\nnull: v\n", "['None']"),
        ("run: x\n5: v\n", "[5]"),
    ],
)
def test_odd_keys_keep_their_yaml_identity(text: str, field: str) -> None:
    check(only_issue(text), text.count("\n"), field)


def test_unknown_keys_come_first_on_a_shared_line() -> None:
    issues = issues_of("{run: x, num_nodes: 0, zz: 1, resources: {cpus: 0, yy: 1}}\n")
    assert [i.field for i in issues] == ["zz", "num_nodes", "resources.yy", "resources.cpus"]


# ---- how a task checkpoints (resources.job_config.checkpoint_*) -------------------------


def test_a_task_without_checkpoint_keys_declares_no_checkpoint() -> None:
    assert (
        parse("run: x\nresources:\n  job_config:\n    max_restarts: 1\n").resources.checkpoint
        is None
    )


def test_any_checkpoint_key_declares_a_checkpoint_with_safe_defaults() -> None:
    task = parse("run: x\nresources:\n  job_config:\n    checkpoint_grace: 30\n")
    assert task.resources.checkpoint == Checkpoint(signal="HUP", grace=30, directory=None)
    task = parse("run: x\nresources:\n  job_config:\n    checkpoint_dir: ~/ckpt/run1\n")
    assert task.resources.checkpoint == Checkpoint(signal="HUP", grace=90, directory="~/ckpt/run1")
    assert task.warnings == ()


@pytest.mark.parametrize("written", ["SIGUSR2", "USR2", "sigusr2", "usr2"])
def test_the_checkpoint_signal_is_taken_however_it_is_spelled(written: str) -> None:
    task = parse(f"run: x\nresources:\n  job_config:\n    checkpoint_signal: {written}\n")
    assert task.resources.checkpoint is not None
    assert task.resources.checkpoint.signal == "USR2"


def test_sigusr1_is_accepted_with_a_warning_naming_nccl() -> None:
    task = parse("run: x\nresources:\n  job_config:\n    checkpoint_signal: SIGUSR1\n")
    assert task.resources.checkpoint is not None and task.resources.checkpoint.signal == "USR1"
    (warning,) = task.warnings
    assert "task.yaml:4: resources.job_config.checkpoint_signal" in warning
    assert "NCCL" in warning and "SIGHUP" in warning


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("checkpoint_signal", "KILL", "expected a signal name: one of SIGHUP,"),
        ("checkpoint_signal", "SIGCONT", "got 'SIGCONT'"),
        ("checkpoint_signal", "12", "expected a signal name"),
        ("checkpoint_grace", "0", "from 1 to 65535, got 0"),
        ("checkpoint_grace", "70000", "from 1 to 65535"),
        ("checkpoint_grace", "1.5", "a number of seconds"),
        ("checkpoint_dir", "ckpt", "absolute or under your home"),
        ("checkpoint_dir", "~/a/../../etc", "must not contain '..'"),
    ],
)
def test_bad_checkpoint_settings_are_refused_naming_the_key(
    key: str, value: str, fragment: str
) -> None:
    issue = only_issue(f"run: x\nresources:\n  job_config:\n    {key}: {value}\n")
    check(issue, 4, f"resources.job_config.{key}", fragment)


def test_a_checkpoint_key_in_the_wrong_place_points_to_job_config() -> None:
    issue = only_issue("run: x\ncheckpoint_signal: HUP\n")
    check(issue, 2, "checkpoint_signal", "resources.job_config.checkpoint_signal")


def test_event_callback_is_taken_without_a_warning() -> None:
    task = parse("run: x\nevent_callback: echo $KONDUKTOR_NEW_STATE >> ~/events\n")
    assert task.event_callback == "echo $KONDUKTOR_NEW_STATE >> ~/events"
    assert task.warnings == ()


# ---- SkyPilot's fixed workdir path ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "field", "spelled"),
    [
        ("workdir: .\nrun: |\n  echo a\n  cd ~/sky_workdir && make\n", 4, "run", "~/sky_workdir"),
        ("workdir: .\nrun: cd $HOME/sky_workdir/src; make\n", 2, "run", "$HOME/sky_workdir"),
        ('workdir: .\nsetup: |\n  ls "${HOME}/sky_workdir"\nrun: x\n', 3, "setup", "${HOME}"),
    ],
)
def test_skypilots_fixed_workdir_path_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, field: str, spelled: str
) -> None:
    issue = only_issue(text, base_dir=tmp_path)
    check(issue, line, field, f"uses {spelled}", "start in this job's copy", "$KONDUKTOR_WORKDIR")


def test_without_a_workdir_sky_workdir_is_refused_as_nothing_to_copy() -> None:
    issue = only_issue("name: t\nrun: cd ~/sky_workdir\n")
    check(issue, 2, "run", "this task has no workdir to copy, so drop it")


@pytest.mark.parametrize(
    "script",
    [
        "# cd ~/sky_workdir (a comment)",
        "ls ~/sky_workdir_old ~/sky_workdir2 ~/sky_workdir.bak /data/sky_workdir",
        'cd "$KONDUKTOR_WORKDIR"',
    ],
)
def test_other_paths_and_comments_naming_sky_workdir_are_accepted(script: str) -> None:
    assert parse(f"name: t\nrun: |\n  {script}\n").run.strip() == script
