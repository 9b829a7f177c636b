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
    # Task values are checked at validation; this is the last line of defence for values
    # that come from elsewhere (the job directory from config.yaml's jobs_dir).
    task = make_task("run: 'true'\n", tmp_path)
    plan = JobPlan(job_name="t-1a2b", job_dir="/tmp/a b/t-1a2b", log_path="/tmp/a b/t.log")
    with pytest.raises(RenderError, match="--chdir"):
        sbatch_directives(task, plan)


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


def test_node_sees_konduktor_environment_and_its_own_output_dir(tmp_path: Path) -> None:
    task = make_task(
        'run: |\n  echo "$LOCAL_ADDR|$KONDUKTOR_NODENAME|$KONDUKTOR_OUTPUT_DIR" > env.txt\n',
        tmp_path,
    )
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    script = render_node_script(task, plan)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": plan.job_dir,
        "SLURM_NODEID": "1",
        "SLURMD_NODENAME": "node2",
        "NODE_HOST_IPS": "10.0.0.1,10.0.0.2",
        "KONDUKTOR_JOB_DIR": plan.job_dir,
        "KONDUKTOR_JOB_NAME": "t-1a2b",
    }
    stale = Path(plan.job_dir) / "output" / "rank-1" / "result.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"from": "an earlier attempt"}')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    out = (node_workdir(plan) / "env.txt").read_text().strip()
    assert out == f"10.0.0.2|node2|{plan.job_dir}/output/rank-1"
    assert not stale.exists()  # a new attempt never reports an old attempt's result


def test_setup_and_run_read_the_users_bashrc_without_job_control_noise(tmp_path: Path) -> None:
    task = make_task('setup: shim-tool setup\nrun: shim-tool run; echo "$FROM_BASHRC"\n', tmp_path)
    plan = plan_for(tmp_path)
    home = Path(plan.job_dir)
    (home / "bin").mkdir()
    tool = home / "bin" / "shim-tool"
    tool.write_text('#!/bin/sh\necho "shim $1"\n')
    tool.chmod(0o755)
    # Like Debian's default ~/.bashrc and conda's init: nothing for non-interactive shells.
    (home / ".bashrc").write_text(
        'case $- in *i*) ;; *) return;; esac\nexport PATH="$HOME/bin:$PATH"\n'
        "export FROM_BASHRC=yes\necho 'bashrc says hi on stderr' >&2\n"
    )
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["shim setup", "shim run", "yes"]
    assert "job control" not in result.stderr and "process group" not in result.stderr
    assert "bashrc says hi on stderr" in result.stderr  # its own output is not hidden


def test_task_without_run_ends_zero(tmp_path: Path) -> None:
    task = make_task("setup: echo set up > s.txt\n", tmp_path)
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 0, result.stderr
    assert (Path(plan.job_dir) / "rank-0.exit").read_text().strip() == "0"
    assert (node_workdir(plan) / "s.txt").read_text() == "set up\n"


def test_secrets_reach_the_node_from_their_own_file_never_the_script(tmp_path: Path) -> None:
    from konduktor_slurm.render import render_secrets
    from konduktor_slurm.task import TaskOverrides

    value = "s3cr3t 'quoted' $(touch pwned) \"x\""
    task = parse_task(
        "secrets:\n  TOKEN: null\nrun: printf '%s' \"$TOKEN\" > token.txt\n",
        source="task.yaml",
        base_dir=tmp_path,
        overrides=TaskOverrides(secrets=[f"TOKEN={value}"]),
    )
    plan = plan_for(tmp_path, workdir=str(tmp_path))
    script = render_sbatch(task, plan)
    assert "s3cr3t" not in script
    (Path(plan.job_dir) / "secrets.env").write_text(render_secrets(task))
    result = run_node_script(render_node_script(task, plan), plan.job_dir)
    assert result.returncode == 0, result.stderr
    assert (node_workdir(plan) / "token.txt").read_text() == value
    assert not (node_workdir(plan) / "pwned").exists()


def test_sbatch_exports_accelerator_type_and_a_task_id(tmp_path: Path) -> None:
    task = make_task("run: 'true'\nresources:\n  accelerators: H100:8\n", tmp_path)
    script = render_sbatch(task, plan_for(tmp_path))
    assert "export KONDUKTOR_ACCELERATOR_TYPE=H100\n" in script
    assert 'export SKYPILOT_TASK_ID="konduktor-$KONDUKTOR_JOB_NAME-$SLURM_JOB_ID"' in script
