"""SkyPilot's own Slurm settings in a task file: ``resources.infra: slurm/<cluster>/<partition>``
(or ``cloud: slurm`` with region and zone, or ``--infra``) picks the partition, and
``config.slurm.sbatch_options`` adds sbatch options, read as SkyPilot reads them (true is a
flag, false and null write nothing, underscores are hyphens, the options SkyPilot sets itself
are dropped with a warning). Before, both were ignored: the job went to the default partition,
without its account or time limit."""

from __future__ import annotations

import re
import textwrap

import pytest

from konduktor_slurm.render import JobPlan, sbatch_directives
from konduktor_slurm.task import Task, TaskError, TaskIssue, TaskOverrides, parse_task

SOURCE = "task.yaml"


def parse(text: str, overrides: TaskOverrides | None = None) -> Task:
    return parse_task(textwrap.dedent(text), SOURCE, overrides=overrides)


def issues_of(text: str, overrides: TaskOverrides | None = None) -> list[TaskIssue]:
    with pytest.raises(TaskError) as info:
        parse(text, overrides)
    return info.value.issues


def warned(task: Task) -> dict[str, str]:
    """Each warning as {"<line>: <field>": the rest}."""
    found = {}
    for warning in task.warnings:
        match = re.match(r"(\S+?):(\d+): (\S+) (.*)$", warning)
        assert match, warning
        found[f"{match.group(2)}: {match.group(3)}"] = match.group(4)
    return found


# SkyPilot's "migrating from Slurm" worked example, as its users write it.
MIGRATED = """\
    name: train
    num_nodes: 2
    resources:
      infra: slurm/mycluster/gpu
      accelerators: H100:8
      cpus: 32+
      memory: 256+
    config:
      slurm:
        sbatch_options:
          time: "24:00:00"
          account: ai-research
          exclusive: true
    run: |
      python train.py --epochs 100
"""


def test_the_migrated_example_keeps_its_partition_account_time_and_flag() -> None:
    task = parse(MIGRATED)
    assert task.slurm.partition == "gpu"
    assert task.slurm.account == "ai-research"
    assert task.slurm.time_limit == "24:00:00"
    assert task.slurm.sbatch_options == (("exclusive", None),)
    # Only the cluster's name is not used, and the warning says so.
    assert warned(task) == {
        "4: resources.infra": "names Slurm cluster 'mycluster', which is not chosen here: "
        "konduktor submits to the cluster it is set up for (this machine's Slurm, or "
        "config.yaml's ssh.host), whatever its name"
    }


def test_the_rendered_script_asks_slurm_for_them() -> None:
    plan = JobPlan(job_name="train-0001", job_dir="/j", log_path="/j/job.log")
    directives = sbatch_directives(parse(MIGRATED), plan)
    for directive in ("--partition=gpu", "--account=ai-research", "--time=24:00:00", "--exclusive"):
        assert directive in directives, directive


@pytest.mark.parametrize(
    ("infra", "partition", "warns_cluster"),
    [
        ("slurm", None, False),
        ("Slurm", None, False),
        ("slurm/mycluster", None, True),
        ("slurm/*/gpu", "gpu", False),
        ("slurm/mycluster/*", None, True),
        (" slurm/mycluster/gpu/ ", "gpu", True),
    ],
)
def test_infra_forms(infra: str, partition: str | None, warns_cluster: bool) -> None:
    task = parse(f"resources:\n  infra: {infra!r}\nrun: x\n")
    assert task.slurm.partition == partition
    assert bool(task.warnings) == warns_cluster, task.warnings


def test_infra_of_another_cloud_is_still_ignored_with_its_reason() -> None:
    task = parse("resources:\n  infra: k8s/my-context\nrun: x\n")
    assert task.slurm.partition is None
    assert warned(task) == {
        "2: resources.infra": "is ignored on Slurm: a Slurm job runs on this cluster; "
        "there is no cloud, region or zone to choose"
    }


def test_cloud_slurm_with_region_and_zone_is_the_same_as_infra() -> None:
    task = parse("resources:\n  cloud: slurm\n  region: mycluster\n  zone: high\nrun: x\n")
    assert task.slurm.partition == "high"
    assert list(warned(task)) == ["3: resources.region"]
    assert "names Slurm cluster 'mycluster'" in task.warnings[0]


@pytest.mark.parametrize(
    ("infra", "fragment"),
    [
        ("slurm//gpu", "expected 'slurm', 'slurm/<cluster>' or 'slurm/<cluster>/<partition>'"),
        ("slurm/a/b/c", "expected 'slurm', 'slurm/<cluster>' or 'slurm/<cluster>/<partition>'"),
        ("slurm/a/gpu;rm -rf ~", "names partition 'gpu;rm -rf ~': expected a Slurm partition"),
    ],
)
def test_a_malformed_slurm_infra_is_refused_on_its_line(infra: str, fragment: str) -> None:
    (issue,) = issues_of(f"name: t\nresources:\n  infra: {infra!r}\nrun: x\n")
    assert (issue.line, issue.field) == (3, "resources.infra"), issue
    assert fragment in issue.message, issue


def test_a_partition_given_two_ways_must_agree() -> None:
    same = "resources:\n  infra: slurm/c/gpu\nslurm:\n  partition: gpu\nrun: x\n"
    assert parse(same).slurm.partition == "gpu"
    (issue,) = issues_of(same.replace("partition: gpu", "partition: cpu"))
    assert (issue.line, issue.field) == (2, "resources.infra"), issue
    assert issue.message == (
        "names partition 'gpu' but slurm.partition (line 4) is 'cpu'; set it in one place"
    )


def test_infra_on_the_command_line_picks_the_partition_and_wins_over_the_file() -> None:
    text = "resources:\n  infra: slurm/c/gpu\nrun: x\n"
    task = parse(text, TaskOverrides(infra="slurm/other/low"))
    assert task.slurm.partition == "low"
    assert task.warnings == (
        "command line: --infra names Slurm cluster 'other', which is not chosen here: "
        "konduktor submits to the cluster it is set up for (this machine's Slurm, or "
        "config.yaml's ssh.host), whatever its name",
    )
    (issue,) = issues_of("run: x\n", TaskOverrides(infra="slurm/c/a b"))
    assert issue.field == "--infra" and "names partition 'a b'" in issue.message, issue


# ---- config.slurm.sbatch_options, as SkyPilot reads them --------------------------------


def options(body: str) -> Task:
    indented = textwrap.indent(textwrap.dedent(body), " " * 6)
    return parse(f"config:\n  slurm:\n    sbatch_options:\n{indented}run: x\n")


def test_true_is_a_flag_false_and_null_write_nothing_and_underscores_are_hyphens() -> None:
    task = options(
        """\
        exclusive: true
        requeue: false
        hold: null
        mail_type: END
        nice: 10
        """
    )
    assert task.slurm.sbatch_options == (("exclusive", None), ("mail-type", "END"), ("nice", "10"))
    assert task.warnings == ()


def test_the_options_with_a_field_of_their_own_go_to_it() -> None:
    task = options("time: 90\naccount: ai\nqos: high\nconstraint: a100&ib\n")
    assert (task.slurm.time_limit, task.slurm.account) == ("90", "ai")
    assert (task.slurm.qos, task.slurm.constraint) == ("high", "a100&ib")
    assert task.slurm.sbatch_options == ()


def test_the_options_skypilot_sets_itself_are_dropped_with_a_warning_each() -> None:
    task = options(
        """\
        job_name: mine
        partition: cpu
        nodes: 4
        mem: 10G
        signal: USR1@60
        exclusive: true
        """
    )
    assert task.slurm.partition is None
    assert task.slurm.sbatch_options == (("exclusive", None),)
    assert warned(task) == {
        "4: config.slurm.sbatch_options.job_name": "is ignored, as SkyPilot ignores it "
        "(--job-name): the job is named from `name`",
        "5: config.slurm.sbatch_options.partition": "is ignored, as SkyPilot ignores it "
        "(--partition): name the partition in resources.infra: slurm/<cluster>/<partition>",
        "6: config.slurm.sbatch_options.nodes": "is ignored, as SkyPilot ignores it "
        "(--nodes): set num_nodes",
        "7: config.slurm.sbatch_options.mem": "is ignored, as SkyPilot ignores it (--mem): "
        "set resources.memory",
        "8: config.slurm.sbatch_options.signal": "is ignored, as SkyPilot ignores it "
        "(--signal): a signal before the time limit is resources.job_config.checkpoint_signal",
    }


def test_bad_entries_are_each_refused_on_their_own_line() -> None:
    issues = issues_of(
        """\
        config:
          slurm:
            sbatch_options:
              time: banana
              array: 0-3
              wrap: [1, 2]
              nosuch: 3
              qos: true
              comment: "two words"
              mem_per_cpu: 4G
        resources:
          memory: 32
        run: x
        """
    )
    got = [(issue.line, issue.field.rsplit(".", 1)[-1], issue.message) for issue in issues]
    assert [(line, field) for line, field, _ in got] == [
        (4, "time"),
        (5, "array"),
        (6, "wrap"),
        (7, "nosuch"),
        (8, "qos"),
        (9, "comment"),
        (10, "mem_per_cpu"),
    ], got
    messages = [message for _, _, message in got]
    assert messages[0].startswith("--time: expected a Slurm time limit"), messages[0]
    assert messages[1].startswith("--array is set by konduktor from one job per launch")
    assert messages[2] == "expected a string, a number or true (a flag), got a list"
    assert messages[3] == "--nosuch is not an sbatch option"
    assert messages[4] == "--qos needs a value, not true"
    assert messages[5].startswith("--comment is set by konduktor from its job marker")
    assert messages[6] == "--mem-per-cpu conflicts with resources.memory; set it in one place"


def test_a_setting_given_both_ways_must_agree() -> None:
    text = """\
        slurm:
          account: other
          time_limit: 1-00:00:00
          sbatch_options:
            exclusive: null
        config:
          slurm:
            sbatch_options:
              account: ai
              time: "24:00:00"
              exclusive: true
        run: x
        """
    issues = issues_of(text)
    assert [(i.line, i.field, i.message) for i in issues] == [
        (
            9,
            "config.slurm.sbatch_options.account",
            "sets --account to 'ai' but slurm.account (line 2) is 'other'; set it in one place",
        ),
        (
            11,
            "config.slurm.sbatch_options.exclusive",
            "--exclusive is also in slurm.sbatch_options (line 4); keep one",
        ),
    ]
    # 24:00:00 and 1-00:00:00 are one time limit; the same account twice is no conflict.
    agreeing = text.replace("account: ai", "account: other").replace("exclusive: true", "")
    assert parse(agreeing).slurm.time_limit == "1-00:00:00"


def test_config_other_than_slurm_sbatch_options_is_named_in_a_warning_each() -> None:
    task = parse(
        """\
        config:
          kubernetes:
            provision_timeout: 600
          slurm:
            allowed_clusters: [a]
            sbatch_options: {exclusive: true}
          docker:
            run_options: [--shm-size=2g]
        run: x
        """
    )
    assert warned(task) == {
        "2: config.kubernetes": "is ignored on Slurm: SkyPilot's per-task settings for other "
        "infrastructure",
        "5: config.slurm.allowed_clusters": "is ignored: it configures SkyPilot's own Slurm "
        "provisioning; konduktor-slurm reads config.slurm.sbatch_options",
        "7: config.docker": "is ignored on Slurm: SkyPilot's per-task settings for other "
        "infrastructure",
    }


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("config: 5", "expected a mapping of SkyPilot's per-task settings"),
        ("config:\n  slurm: [a]", "expected a mapping of SkyPilot's Slurm settings"),
        ("config:\n  slurm:\n    sbatch_options: [--exclusive]", "true for a flag"),
    ],
)
def test_config_of_the_wrong_shape_says_what_was_expected(config: str, fragment: str) -> None:
    (issue,) = issues_of(f"{config}\nrun: x\n")
    assert fragment in issue.message, issue


def test_the_python_sdk_takes_infra_as_skypilots_resources_do() -> None:
    from konduktor_slurm import sdk

    task = sdk.Task("t", run="x").set_resources(sdk.Resources(infra="slurm/c/high", cpus=2))
    valid = task.validate()
    assert (valid.slurm.partition, valid.resources.cpus) == ("high", 2)
    assert valid.warnings == (
        "<python>: resources.infra names Slurm cluster 'c', which is not chosen here: konduktor "
        "submits to the cluster it is set up for (this machine's Slurm, or config.yaml's "
        "ssh.host), whatever its name",
    )


@pytest.mark.parametrize(
    "key",
    ["exclusive\n#SBATCH --wrap=id", "$(touch /tmp/pwned)", "exclusive --wrap=id", "-", ""],
)
def test_a_hostile_option_name_is_refused_not_written(key: str) -> None:
    import json

    (issue,) = issues_of(f"config:\n  slurm:\n    sbatch_options: {{{json.dumps(key)}: true}}\n")
    assert issue.field.startswith("config.slurm.sbatch_options"), issue
    assert "sbatch option" in issue.message, issue


# ---- autostop with wait_for: none: SkyPilot's hard stop, `sky utils convert-slurm`'s --time


@pytest.mark.parametrize("where", ["", "resources:\n  "])
def test_autostop_that_waits_for_nothing_is_the_time_limit(where: str) -> None:
    body = "autostop:\n    idle_minutes: 90\n    down: true\n    wait_for: none\n"
    indented = body if where else body.replace("\n    ", "\n  ")
    task = parse(f"{where}{indented}run: x\n")
    assert task.slurm.time_limit == "0-01:30:00"
    (warning,) = task.warnings
    assert "autostop with wait_for: none is read as the job's time limit, 90 min" in warning


@pytest.mark.parametrize(
    "autostop",
    [
        "autostop: 10m",
        "autostop:\n  idle_minutes: 10",
        "autostop:\n  idle_minutes: 10\n  wait_for: jobs",
        "autostop:\n  idle_minutes: 0\n  wait_for: none",
        "autostop:\n  idle_minutes: [1]\n  wait_for: none",
    ],
)
def test_other_autostops_are_ignored_as_before(autostop: str) -> None:
    task = parse(f"{autostop}\nrun: x\n")
    assert task.slurm.time_limit is None
    (warning,) = task.warnings
    assert "autostop is ignored on Slurm: a Slurm job ends with its run" in warning


@pytest.mark.parametrize(
    ("other", "where"),
    [
        ("slurm:\n  time_limit: '2:00:00'\n", "slurm.time_limit"),
        (
            "config:\n  slurm:\n    sbatch_options:\n      time: '2:00:00'\n",
            "config.slurm.sbatch_options.time",
        ),
    ],
)
def test_a_time_limit_given_otherwise_wins_over_the_autostop(other: str, where: str) -> None:
    task = parse(f"autostop:\n  idle_minutes: 90\n  wait_for: none\n{other}run: x\n")
    assert task.slurm.time_limit == "2:00:00"
    assert any(
        w.endswith(f"autostop is ignored on Slurm: the job's time limit is set in {where}, "
                   "and a Slurm job ends with its run")
        for w in task.warnings
    ), task.warnings  # fmt: skip
