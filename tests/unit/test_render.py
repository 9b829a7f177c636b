"""Rendering: the sbatch script asks Slurm for the right things and quotes every user value.

Quoting is proven by running the rendered node script with bash, not by string matching.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from konduktor_slurm.render import (
    JobPlan,
    RenderError,
    StagedMount,
    render_node_script,
    render_sbatch,
    sbatch_directives,
)
from konduktor_slurm.task import parse_task

INJECTION = '"; touch /tmp/x; $(id)'


def make_task(text: str, tmp_path: Path):
    return parse_task(text, source="task.yaml", base_dir=tmp_path)


def plan_for(tmp_path: Path, **kwargs) -> JobPlan:
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    return JobPlan(
        job_name="t-1a2b", job_dir=str(job_dir), log_path=str(job_dir / "job.log"), **kwargs
    )


def run_node_script(script: str, job_dir: str, rank: int = 0) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": job_dir, "SLURM_NODEID": str(rank)}
    env["KONDUKTOR_JOB_DIR"] = job_dir
    env["KONDUKTOR_JOB_NAME"] = "t-1a2b"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )


def node_workdir(plan: JobPlan) -> Path:
    """Where the node script copies the workdir snapshot and runs (HOME is the job dir)."""
    return Path(plan.job_dir) / "konduktor_workdir" / plan.job_name


def test_injection_in_env_value_arrives_verbatim_and_executes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = INJECTION.replace("/tmp/x", str(marker)) + " `touch " + str(marker) + "` '\\n"
    text = yaml.safe_dump({"run": "printf '%s' \"$EVIL\" > out.txt", "envs": {"EVIL": value}})
    task = make_task(text, tmp_path)
    assert task.envs["EVIL"] == value
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 0, result.stderr
    assert (node_workdir(plan) / "out.txt").read_text() == value
    assert not marker.exists()


def test_setup_and_run_text_reach_bash_verbatim(tmp_path: Path) -> None:
    task = make_task(
        'setup: |\n  echo "setup $RANK" > setup.txt\n'
        "run: |\n  echo 'it''s' \"$KONDUKTOR_NODE_RANK\" > run.txt\n  exit 3\n",
        tmp_path,
    )
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    result = run_node_script(render_node_script(task, plan), plan.job_dir, rank=1)
    assert result.returncode == 3
    assert (node_workdir(plan) / "setup.txt").read_text() == "setup 1\n"
    assert (node_workdir(plan) / "run.txt").read_text() == "its 1\n"
    # The rank's exit code is recorded for the lifecycle (sacct keeps only the worst).
    assert (Path(plan.job_dir) / "rank-1.exit").read_text().strip() == "3"


def test_failing_setup_skips_run_and_records_the_code(tmp_path: Path) -> None:
    task = make_task("setup: exit 5\nrun: touch ran\n", tmp_path)
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 5
    assert "setup failed on rank 0 with exit code 5" in result.stderr
    assert not (node_workdir(plan) / "ran").exists()
    assert (Path(plan.job_dir) / "rank-0.exit").read_text().strip() == "5"


def test_file_mounts_are_placed_including_home_relative(tmp_path: Path) -> None:
    source_dir = tmp_path / "staged-dir"
    source_dir.mkdir()
    (source_dir / "a.txt").write_text("A")
    source_file = tmp_path / "staged-file"
    source_file.write_text("F")
    task = make_task('run: cat ~/data/a.txt "$HOME/one file.txt"\n', tmp_path)
    plan = plan_for(
        tmp_path,
        mounts=(
            StagedMount("~/data", str(source_dir), True),
            StagedMount("~/one file.txt", str(source_file), False),
        ),
    )
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "AF"


def test_gres_nodes_and_resources_directives(tmp_path: Path) -> None:
    task = make_task(
        "num_nodes: 2\nrun: 'true'\nresources:\n  cpus: 8\n  memory: 32\n  accelerators: H100:8\n"
        "slurm:\n  partition: gpu\n  time_limit: '1:00:00'\n  qos: normal\n",
        tmp_path,
    )
    directives = sbatch_directives(task, plan_for(tmp_path))
    assert "--gres=gpu:h100:8" in directives
    assert "--nodes=2" in directives
    assert "--ntasks-per-node=1" in directives
    assert "--cpus-per-task=8" in directives
    assert "--mem=32768M" in directives
    assert "--partition=gpu" in directives
    assert "--time=1:00:00" in directives
    assert "--qos=normal" in directives
    assert "--open-mode=append" in directives


def test_gres_type_follows_the_configured_map(tmp_path: Path) -> None:
    task = make_task("run: 'true'\nresources:\n  accelerators: {A100-80GB: 4}\n", tmp_path)
    default = sbatch_directives(task, plan_for(tmp_path))
    mapped = sbatch_directives(task, plan_for(tmp_path, gres_map={"A100-80GB": "a100_80g"}))
    assert "--gres=gpu:a100-80gb:4" in default
    assert "--gres=gpu:a100_80g:4" in mapped


def test_multi_node_runs_one_srun_task_per_node(tmp_path: Path) -> None:
    task = make_task("num_nodes: 3\nrun: hostname\n", tmp_path)
    script = render_sbatch(task, plan_for(tmp_path))
    assert script.startswith("#!/bin/bash\n")
    srun = re.search(r"^\s*srun .*(?:\\\n.*)*", script, re.MULTILINE)
    assert srun, script
    assert "--nodes=3 --ntasks=3 --ntasks-per-node=1" in srun.group(0)
    assert "#SBATCH --nodes=3" in script
    # The whole script is valid bash.
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_sbatch_options_escape_hatch(tmp_path: Path) -> None:
    task = make_task(
        "run: 'true'\nslurm:\n  sbatch_options:\n    exclusive: null\n    mail-type: END\n",
        tmp_path,
    )
    directives = sbatch_directives(task, plan_for(tmp_path))
    assert "--exclusive" in directives
    assert "--mail-type=END" in directives


def test_a_directive_value_with_spaces_is_refused(tmp_path: Path) -> None:
    task = make_task("run: 'true'\nslurm:\n  constraint: 'a b'\n", tmp_path)
    with pytest.raises(RenderError, match="--constraint"):
        sbatch_directives(task, plan_for(tmp_path))


def test_konduktor_and_skypilot_env_names_are_exported(tmp_path: Path) -> None:
    script = render_sbatch(make_task("run: 'true'\n", tmp_path), plan_for(tmp_path))
    for name in (
        "KONDUKTOR_JOB_NAME",
        "KONDUKTOR_NODE_RANK",
        "RANK",
        "NUM_NODES",
        "NUM_GPUS_PER_NODE",
        "MASTER_ADDR",
        "NODE_HOST_IPS",
        "KONDUKTOR_RESTART_ATTEMPT",
        "RESTART_ATTEMPT",
        "SKYPILOT_NODE_RANK",
        "SKYPILOT_NUM_NODES",
        "SKYPILOT_NODE_IPS",
        "SKYPILOT_NUM_GPUS_PER_NODE",
    ):
        assert re.search(rf"export {name}=", script), name


def test_comment_marks_the_job_and_carries_resources(tmp_path: Path) -> None:
    task = make_task(
        "num_nodes: 2\nrun: 'true'\nresources:\n  cpus: 8\n  memory: 32\n  accelerators: H100:8\n"
        "  job_config:\n    max_restarts: 2\n",
        tmp_path,
    )
    script = render_sbatch(task, plan_for(tmp_path))
    assert "#SBATCH --comment=konduktor;resources=2x(8CPU,32GiMEM,H100:8)" in script
    assert "max_attempts=3" in script
    # The comment reaches the retry loop shell-quoted.
    assert "comment='konduktor;resources=2x(8CPU,32GiMEM,H100:8)'\";attempt=" in script
