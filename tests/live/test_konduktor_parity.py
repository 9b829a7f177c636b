"""Konduktor and SkyPilot users move over unchanged: their task files, flags and `result`.

Real-world style task files (tests/fixtures/tasks/world: Konduktor's docs, SkyPilot's
examples) are launched as they are, on the real cluster, by the ordinary user kdtest whose
~/.bashrc is Debian's default (it returns early for non-interactive shells) plus, after that
guard, what conda and module systems add: a PATH entry. `torchrun` there is a stand-in that
prints what it was given, so what reaches the nodes can be checked.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import (
    TEST_USER,
    Run,
    squeue_fields,
    status_json,
    wait_for_status,
    write_task,
    write_user_file,
)
from tests.live.test_launch import submitted_name, unique

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

WORLD = Path(__file__).resolve().parent.parent / "fixtures" / "tasks" / "world"
USER_HOME = Path(f"/home/{TEST_USER}")
SHIMS = USER_HOME / "kd-parity-shims"
BASHRC_BLOCK = """
# >>> konduktor parity test >>> (added after Debian's "not interactive: return" guard, like
# conda init: only an interactive shell sees it)
export PATH="$HOME/kd-parity-shims:$PATH"
export FROM_USER_BASHRC=bashrc-was-read
# <<< konduktor parity test <<<
"""
TORCHRUN = """#!/bin/sh
# Stand-in for torchrun: prints the arguments it was given, one line.
rdzv=""
prev=""
for arg in "$@"; do
  case "$prev" in --rdzv_id) rdzv="$arg" ;; esac
  case "$arg" in --rdzv_id=*) rdzv="${arg#--rdzv_id=}" ;; esac
  prev="$arg"
done
echo "torchrun rank=$RANK rdzv_id=[$rdzv] task_id=[$SKYPILOT_TASK_ID] args=$*"
echo "env local=$LOCAL_ADDR node=$KONDUKTOR_NODENAME accel=$KONDUKTOR_ACCELERATOR_TYPE" \\
  "out=$KONDUKTOR_OUTPUT_DIR bashrc=$FROM_USER_BASHRC"
"""


@pytest.fixture
def user_shell_setup() -> Iterator[None]:
    """kdtest's ~/.bashrc puts a torchrun stand-in on PATH, after the interactive guard."""
    bashrc = USER_HOME / ".bashrc"
    original = bashrc.read_bytes()
    SHIMS.mkdir(exist_ok=True)
    shutil.chown(SHIMS, TEST_USER, TEST_USER)
    shim = SHIMS / "torchrun"
    shim.write_text(TORCHRUN)
    shim.chmod(0o755)
    bashrc.write_bytes(original + BASHRC_BLOCK.encode())
    try:
        yield
    finally:
        bashrc.write_bytes(original)
        shutil.rmtree(SHIMS, ignore_errors=True)


@pytest.fixture
def user_config(user_dir: Path) -> dict[str, str]:
    """A site's config.yaml: its GPUs are h100s, and SkyPilot files ask for L4s and A100s."""
    path = write_user_file(user_dir, "config.yaml", "gres_map: {L4: h100, A100: h100}\n")
    return {"KONDUKTOR_CONFIG": str(path)}


def copy_world(user_dir: Path, name: str) -> Path:
    return write_user_file(user_dir, name, (WORLD / name).read_text())


def test_konduktor_docs_task_runs_unchanged_with_bashrc_path_and_node_env(
    kd_user, user_dir: Path, user_shell_setup: None
) -> None:
    copy_world(user_dir, "konduktor-docs-distributed.yaml")
    launched = kd_user("launch", "-y", "konduktor-docs-distributed.yaml", timeout=240)
    assert launched.returncode == 0, launched.output
    for field in ("resources.cloud", "resources.image_id", "resources.labels"):
        warning = rf"Warning: \S+:\d+: {re.escape(field)} is ignored on Slurm: "
        assert re.search(warning, launched.stderr), launched.stderr
    name = submitted_name(launched.stdout)
    lines = re.findall(r"^(\d): torchrun rank=(\d) .*args=(.*)$", launched.stdout, re.M)
    assert sorted((label, rank) for label, rank, _ in lines) == [("0", "0"), ("1", "1")], (
        launched.output
    )
    for _, rank, args in lines:
        assert f"--node_rank {rank} --master_addr 127.0.0.1 --master_port 1234 main.py" in args
        assert args.startswith("--nproc_per_node 8 --nnodes 2")
    envs = dict(re.findall(r"^(\d): env (.*)$", launched.stdout, re.M))
    assert envs["0"] == (
        f"local=127.0.0.1 node=node1 accel=H100 out={user_dir}/kdhome/jobs/{name}/output/"
        "rank-0 bashrc=bashrc-was-read"
    )
    assert envs["1"].startswith("local=127.0.0.2 node=node2 accel=H100 ")
    # labels.maxRunDurationSeconds: "3200" became the job's time limit (53:20, which Slurm
    # rounds up to whole minutes).
    limit = squeue_fields(name, "%l")
    assert limit == ["54:00"], limit
    assert status_json(kd_user, name)["jobs"][0]["status"] == "COMPLETED"


def test_skypilot_rdzv_task_gets_one_task_id_on_both_ranks(
    kd_user, user_dir: Path, user_shell_setup: None, user_config: dict[str, str]
) -> None:
    copy_world(user_dir, "sky-distributed-rdzv.yaml")
    launched = kd_user("launch", "-y", "sky-distributed-rdzv.yaml", env=user_config, timeout=240)
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    ids = re.findall(
        r"^\d: torchrun rank=\d rdzv_id=\[(.*?)\] task_id=\[(.*?)\]", launched.stdout, re.M
    )
    assert len(ids) == 2, launched.output
    (rdzv, task_id), (rdzv_1, task_id_1) = ids
    assert rdzv and rdzv == task_id == rdzv_1 == task_id_1
    assert rdzv.startswith(f"konduktor-{name}-")
    assert "0: Starting distributed training, head node: localhost" in launched.stdout
    assert "1: Starting distributed training, head node: 127.0.0.1" in launched.stdout
    # The L4 request went through the site's gres_map to the cluster's h100s.
    script = (user_dir / "kdhome" / "jobs" / name / "sbatch.sh").read_text()
    assert "#SBATCH --gres=gpu:h100:2" in script


def test_skypilot_setup_names_and_cluster_info_reach_every_node(
    kd_user, user_dir: Path, user_config: dict[str, str]
) -> None:
    copy_world(user_dir, "sky-setup-head-only.yaml")
    launched = kd_user("launch", "-y", "sky-setup-head-only.yaml", env=user_config, timeout=180)
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    assert f"{name}: COMPLETED" in launched.stderr, launched.output
    # Setup's head-only work ran once, on rank 0, with the first node's address.
    assert re.findall(r"^(\d): head setup on (\S+) with 1 GPU\(s\)$", launched.stdout, re.M) == [
        ("0", "127.0.0.1")
    ], launched.output
    clusters = re.findall(r"^(\d): cluster (\S+) on (\S+)$", launched.stdout, re.M)
    assert sorted(clusters) == [("0", name, "Slurm"), ("1", name, "Slurm")], launched.output


def test_a_skypilot_on_slurm_task_runs_in_its_partition_with_its_sbatch_options(
    kd_user, user_dir: Path
) -> None:
    """SkyPilot's worked example of a migrated sbatch script: before, its partition (in
    infra) and its sbatch options (in config) were ignored, and it ran in the default
    partition with no time limit and no account."""
    copy_world(user_dir, "sky-slurm-migrated.yaml")
    launched = kd_user("launch", "-y", "sky-slurm-migrated.yaml", timeout=180)
    assert launched.returncode == 0, launched.output
    assert "resources.infra names Slurm cluster 'mycluster'" in launched.stderr
    name = submitted_name(launched.stdout)
    assert f"{name}: COMPLETED" in launched.stderr, launched.output
    shown = squeue_fields(name, "%P %l %a %h")
    # Partition, time limit, account, and --exclusive (not oversubscribed).
    assert shown == ["high", "1-00:00:00", "konduktor", "NO"], shown
    assert sorted(re.findall(r"^(\d): rank \d in (\S+)$", launched.stdout, re.M)) == [
        ("0", "high"),
        ("1", "high"),
    ], launched.output
    # Rank 0's own `srun --overlap` step ran on both nodes.
    steps = re.findall(r"^0: \d: step on (\S+)$", launched.stdout, re.M)
    assert sorted(steps) == ["node1", "node2"], launched.output


def test_a_file_from_sky_utils_convert_slurm_keeps_the_scripts_time_limit(
    kd_user, user_dir: Path
) -> None:
    """SkyPilot's sbatch converter writes the script's --time as an autostop that waits for
    nothing; before, it was ignored and the job had no time limit."""
    copy_world(user_dir, "sky-convert-slurm.yaml")
    launched = kd_user("launch", "-y", "sky-convert-slurm.yaml", timeout=180)
    assert launched.returncode == 0, launched.output
    assert "is read as the job's time limit, 90 min" in launched.stderr, launched.stderr
    name = submitted_name(launched.stdout)
    assert squeue_fields(name, "%P %l %a") == ["high", "1:30:00", "konduktor"]
    ranks = re.findall(r"^(\d): rank (\d) of 2 on \S+ in high$", launched.stdout, re.M)
    assert sorted(ranks) == [("0", "0"), ("1", "1")], launched.output


def test_a_plain_srun_in_run_shares_the_job_instead_of_waiting_forever(
    kd_user, user_dir: Path
) -> None:
    """Before, rank 0's `srun` waited for the resources konduktor's own step holds: the job
    stayed ACTIVE, idle, until its time limit."""
    copy_world(user_dir, "sky-srun-in-run.yaml")
    launched = kd_user("launch", "-y", "sky-srun-in-run.yaml", timeout=120)
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    assert f"{name}: COMPLETED" in launched.stderr, launched.output
    programs = re.findall(r"^0: \d: program on (\S+) with (\d+) GPUs$", launched.stdout, re.M)
    assert sorted(programs) == [("node1", "8"), ("node2", "8")], launched.output


@pytest.mark.parametrize(
    "file",
    [
        "konduktor-setup-only.yaml",
        "sky-minimal.yaml",
        "sky-fractional-cpus.yaml",
        "sky-config.yaml",
        "konduktor-event-callback.yaml",
    ],
)
def test_more_world_files_complete_unchanged(
    kd_user, user_dir: Path, user_config: dict[str, str], file: str
) -> None:
    copy_world(user_dir, file)
    launched = kd_user("launch", "-y", file, env=user_config, timeout=180)
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    assert f"{name}: COMPLETED" in launched.stderr


def test_every_refused_world_file_submits_nothing(kd_user, user_dir: Path) -> None:
    refused = [p.name for p in sorted(WORLD.glob("*.yaml")) if "# expect: refused" in p.read_text()]
    assert len(refused) >= 10
    before = squeue_count()
    for file in refused:
        copy_world(user_dir, file)
        result = kd_user("launch", "-y", file)
        assert result.returncode == 2, (file, result.output)
        assert "is not a valid task; nothing was submitted." in result.stderr, result.stderr
        assert "Traceback" not in result.output
    assert squeue_count() == before


def squeue_count() -> int:
    out = subprocess.run(
        ["squeue", "-h", "-u", TEST_USER, "-t", "all", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def test_dryrun_of_every_accepted_world_file(kd, tmp_path: Path) -> None:
    accepted = [p for p in sorted(WORLD.glob("*.yaml")) if "# expect: ok" in p.read_text()]
    for path in accepted:
        result = kd("launch", "--dryrun", path.name, cwd=WORLD)
        assert result.returncode == 0, (path.name, result.output)
        assert result.stdout.startswith("#!/bin/bash"), path.name
        assert "#SBATCH --comment=konduktor" in result.stdout
    distributed = kd("launch", "--dryrun", "konduktor-docs-distributed.yaml", cwd=WORLD)
    assert "#SBATCH --time=0-00:53:20" in distributed.stdout


def test_secrets_reach_the_nodes_and_nowhere_else(kd, kd_home: Path, tmp_path: Path) -> None:
    secret = f"hf_{unique('')}-very-secret"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    write_task(
        tmp_path,
        f"name: {unique('secret')}\nnum_nodes: 2\nsecrets:\n  HF_TOKEN: null\n"
        "run: printf '%s' \"$HF_TOKEN\" | sha256sum\n",
    )
    dry = kd("launch", "--dryrun", "--secret", f"HF_TOKEN={secret}", "task.yaml", cwd=tmp_path)
    assert dry.returncode == 0 and secret not in dry.output
    missing = kd("launch", "-y", "task.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "--secret HF_TOKEN=VALUE" in missing.stderr
    launched = kd(
        "launch", "-y", "--secret", "HF_TOKEN", "task.yaml", cwd=tmp_path, env={"HF_TOKEN": secret}
    )
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    assert f"0: {digest}  -" in launched.stdout and f"1: {digest}  -" in launched.stdout
    job_dir = kd_home / "jobs" / name
    assert secret not in (job_dir / "job.log").read_text()
    assert secret not in (job_dir / "sbatch.sh").read_text()
    assert stat.S_IMODE((job_dir / "secrets.env").stat().st_mode) == 0o600
    shown = subprocess.run(
        ["scontrol", "show", "job", "-d", launched_id(launched)], capture_output=True, text=True
    )
    assert secret not in shown.stdout
    assert secret not in kd("status", "--json", name).stdout


def launched_id(run: Run) -> str:
    match = re.search(r"\(Slurm job (\d+)\)", run.stdout)
    assert match, run.output
    return match.group(1)


def test_env_vars_fill_workdir_and_file_mount_paths(kd, tmp_path: Path) -> None:
    (tmp_path / "data-v2").mkdir()
    (tmp_path / "data-v2" / "rows.csv").write_text("a,b\n")
    dest_root = tmp_path / "landed"
    write_task(
        tmp_path,
        f"name: {unique('envpath')}\nenvs:\n  VERSION: v2\n  DEST: {dest_root}\n"
        "workdir: data-${VERSION}\n"
        "file_mounts:\n  $DEST/${VERSION}/data: ./data-$VERSION\n"
        "run: |\n  cat rows.csv\n  cat $DEST/$VERSION/data/rows.csv\n",
    )
    result = kd("launch", "-y", "task.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert result.stdout.count("0: a,b") == 2
    assert (dest_root / "v2" / "data" / "rows.csv").read_text() == "a,b\n"


RESULT_TASK = """\
name: {name}
num_nodes: 2
run: |
  case "$MODE" in
    value) cd "$KONDUKTOR_OUTPUT_DIR"
           [ "$RANK" = 0 ] && echo '{{"loss": 0.125, "tag": "ok"}}' > result.json
           [ "$RANK" = 1 ] && echo '"rank 1 does not count"' > result.json
           true ;;
    failed) [ "$RANK" = 0 ] && echo 1 > "$KONDUKTOR_OUTPUT_DIR/result.json"; exit $RANK ;;
    none) true ;;
    malformed) echo '{{broken' > "$KONDUKTOR_OUTPUT_DIR/result.json" ;;
    large) head -c 11000000 /dev/zero | tr '\\0' 1 > "$KONDUKTOR_OUTPUT_DIR/result.json" ;;
    slow) sleep 60 ;;
  esac
"""


def test_result_round_trip_and_every_failure_mode(kd, tmp_path: Path) -> None:
    write_task(tmp_path, RESULT_TASK.format(name=unique("result")))
    names = {}
    for mode in ("value", "failed", "none", "malformed", "large", "slow"):
        launched = kd("launch", "-y", "-d", "--env", f"MODE={mode}", "task.yaml", cwd=tmp_path)
        assert launched.returncode == 0, launched.output
        names[mode] = submitted_name(launched.stdout)
    try:
        value = kd("result", names["value"], timeout=120)
        assert value.returncode == 0, value.output
        assert json.loads(value.stdout) == {"loss": 0.125, "tag": "ok"}
        expectations = {
            "failed": (1, "FAILED (rank 1 exited 1); it has no result"),
            "none": (4, "reported no result"),
            "malformed": (4, "is not valid JSON"),
            "large": (4, "larger than 10 MiB"),
        }
        for mode, (code, message) in expectations.items():
            got = kd("result", names[mode], timeout=120)
            assert got.returncode == code, (mode, got.output)
            assert got.stdout == "", (mode, got.stdout)
            lines = got.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (mode, got.stderr)
        slow = kd("result", "--timeout", "3", names["slow"])
        assert slow.returncode == 5, slow.output
        assert "did not finish within 3s" in slow.stderr and "keeps running" in slow.stderr
        assert status_json(kd, names["slow"])["jobs"][0]["status"] in {"ACTIVE", "PENDING"}
    finally:
        kd("down", "-y", *names.values())


def test_konduktor_flag_spellings(kd, tmp_path: Path) -> None:
    write_task(
        tmp_path,
        "name: flags\nnum_nodes: 2\n"
        'run: |\n  echo "line one $RANK"\n  echo "line two $RANK"\n'
        "  exit $((1 - KONDUKTOR_RESTART_ATTEMPT))\n",
    )
    name = unique("alias")
    launched = kd(
        "launch",
        "-y",
        "-n",
        name,
        "--max-restarts",
        "1",
        "--detach-run",
        "--cloud",
        "aws",
        "--image-id",
        "docker:pytorch",
        "--disk-size",
        "100",
        "-s",
        "task.yaml",
        cwd=tmp_path,
    )
    assert launched.returncode == 0, launched.output
    for flag in ("--cloud", "--image-id", "--disk-size"):
        assert f"Warning: command line: {flag} is ignored on Slurm: " in launched.stderr
    job_name = submitted_name(launched.stdout)
    assert job_name.startswith(f"{name}-")
    # --max-restarts 1: the first attempt exits 1, the second 0.
    followed = kd("logs", "--follow", job_name)
    assert followed.returncode == 0, followed.output
    assert "attempt 2 of 2" in followed.stdout
    last = kd("logs", "-N", "1", "--num-lines", "1", job_name)
    assert last.stdout == "1: line two 1\n", last.output
    same = kd("logs", "--node_rank", "1", "--num_lines", "1", job_name)
    assert same.stdout == last.stdout

    refused = kd("launch", "-y", "--completions", "3", "task.yaml", cwd=tmp_path)
    assert refused.returncode == 2 and "runs it once (1)" in refused.stderr
    assert kd("launch", "--dryrun", "--completions", "1", "task.yaml", cwd=tmp_path).returncode == 0


def test_wait_blocks_without_streaming_and_exits_by_outcome(kd, tmp_path: Path) -> None:
    write_task(tmp_path, f"name: {unique('wait')}\nrun: echo streamed-line; exit $CODE\n")
    ok = kd("launch", "-y", "--wait", "--env", "CODE=0", "task.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.output
    assert "streamed-line" not in ok.output and ": COMPLETED" in ok.stderr
    failed = kd("launch", "-y", "--wait", "--env", "CODE=3", "task.yaml", cwd=tmp_path)
    assert failed.returncode == 1 and "FAILED (rank 0 exited 3)" in failed.stderr
    write_task(tmp_path, f"name: {unique('waitslow')}\nrun: sleep 60\n", "slow.yaml")
    slow = kd("launch", "-y", "--wait-timeout", "3", "slow.yaml", cwd=tmp_path)
    assert slow.returncode == 5, slow.output
    assert "did not finish within 3s" in slow.stderr
    kd("down", "-y", submitted_name(slow.stdout))
    both = kd("launch", "-y", "-d", "--wait", "task.yaml", cwd=tmp_path)
    assert both.returncode == 2 and "contradict" in both.stderr


def test_wait_returns_within_seconds_of_the_jobs_end(kd, tmp_path: Path) -> None:
    """Waiting reads the end of the job's log: the run's end line brings the next look a
    quarter second on. By the backoff alone, a job ending at about 12 s was seen at 18 s."""
    write_task(tmp_path, f"name: {unique('waitend')}\nrun: sleep 11\n")
    done = kd("launch", "-y", "--wait", "task.yaml", cwd=tmp_path)
    returned = time.time()
    assert done.returncode == 0, done.output
    job_id = re.search(r"Slurm job (\d+)", done.stdout)[1]
    sacct = ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "End"]
    ended = subprocess.run(sacct, capture_output=True, text=True, check=True).stdout.strip()
    end = datetime.fromisoformat(ended).timestamp()  # whole seconds
    assert returned - end < 3, (returned - end, ended)


def test_gpus_none_runs_a_gpu_task_file_without_gpus(kd, tmp_path: Path) -> None:
    write_task(
        tmp_path,
        f"name: {unique('nogpu')}\nresources:\n  accelerators: H100:8\n"
        "run: echo gpus=$NUM_GPUS_PER_NODE cuda=${CUDA_VISIBLE_DEVICES:-unset}\n",
    )
    launched = kd("launch", "-y", "--gpus", "none", "task.yaml", cwd=tmp_path)
    assert launched.returncode == 0, launched.output
    assert "0: gpus=0 cuda=unset" in launched.stdout, launched.output
    assert squeue_fields(submitted_name(launched.stdout), "%b") == ["N/A"]  # no GRES asked


def test_a_command_instead_of_a_task_file_runs_on_every_node(kd, tmp_path: Path) -> None:
    """SkyPilot's `sky launch --gpus H100:8 --num-nodes 2 'CMD'`: the command is the run of
    a task named cmd (it said "task file not found" before)."""
    name = unique("onecmd")
    launched = kd(
        "launch", "-y", "-n", name, "--num-nodes", "2", "--gpus", "H100:8",
        "echo rank=$SKYPILOT_NODE_RANK gpus=$NUM_GPUS_PER_NODE on $(hostname)",
        cwd=tmp_path,
    )  # fmt: skip
    assert launched.returncode == 0, launched.output
    assert "Command (no task file): echo rank=$SKYPILOT_NODE_RANK" in launched.stdout
    for rank in (0, 1):
        assert f"{rank}: rank={rank} gpus=8 on " in launched.stdout, launched.output
    job = submitted_name(launched.stdout)
    assert job.startswith(f"{name}-")
    assert squeue_fields(job, "%D %b") == ["2", "gres:gpu:h100:8"]
    # Unnamed, several words, with the workdir the refusal of `launch train.py` suggests.
    (tmp_path / "train.py").write_text(
        "import os\nprint('trained in', os.path.basename(os.getcwd()))\n"
    )
    refused = kd("launch", "-y", "train.py", cwd=tmp_path)
    assert refused.returncode == 2 and "'python train.py'" in refused.stderr, refused.output
    ran = kd("launch", "-y", "--workdir", ".", "python3", "train.py", cwd=tmp_path)
    assert ran.returncode == 0, ran.output
    job = submitted_name(ran.stdout)
    assert job.startswith("cmd-") and f"0: trained in {job}" in ran.stdout, ran.output
    # `sky logs CLUSTER JOB_ID` from habit names konduktor's form, which shows the output.
    habit = kd("logs", "mycluster", job)
    assert habit.returncode == 2 and "is `konduktor logs JOB_NAME` here" in habit.stderr
    shown = kd("logs", job)
    assert shown.returncode == 0 and f"0: trained in {job}" in shown.stdout, shown.output


def test_skypilots_launch_flags_run_the_job_with_a_warning_each(kd, tmp_path: Path) -> None:
    """`sky launch -c NAME -r -i 2 --down --wait-for none --use-spot --no-setup ...`: every
    flag was "No such option"; now the job runs, setup skipped, -i as its time limit."""
    name = unique("skyflags")
    write_task(tmp_path, f"name: {name}\nsetup: echo SETUP-RAN\nrun: echo RUN-RAN\n")
    launched = kd(
        "launch", "-y", "-c", "mycluster", "-r", "--fast", "--use-spot", "--region", "us",
        "-i", "2", "--down", "--wait-for", "none", "--no-setup", "--gpus", "H100:1",
        "task.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert launched.returncode == 0, launched.output
    assert "0: RUN-RAN" in launched.stdout and "SETUP-RAN" not in launched.stdout
    for flag in ("-c/--cluster", "-r/--retry-until-up", "--fast", "--use-spot", "--region"):
        assert f"Warning: command line: {flag} is ignored on Slurm" in launched.stderr, flag
    limit = "--idle-minutes-to-autostop with wait_for: none is read as the job's time limit"
    assert limit in launched.stderr, launched.output
    assert squeue_fields(submitted_name(launched.stdout), "%l %b") == ["2:00", "gres:gpu:h100:1"]


def test_a_skypilot_repositorys_skyignore_keeps_its_data_on_the_laptop(kd, tmp_path: Path) -> None:
    """SkyPilot reads .skyignore (else .gitignore); it was not read here, so the data it
    names was copied with every launch."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shard0.bin").write_bytes(b"x" * 1000)
    (tmp_path / "train.py").write_text("print('ok')\n")
    (tmp_path / ".skyignore").write_text("data/\n")
    (tmp_path / ".gitignore").write_text("train.py\n")  # not read: .skyignore is there
    write_task(tmp_path, f"name: {unique('skyign')}\nworkdir: .\nrun: ls -A; python3 train.py\n")
    launched = kd("launch", "-y", "task.yaml", cwd=tmp_path)
    assert launched.returncode == 0, launched.output
    assert "0: train.py" in launched.stdout and "0: ok" in launched.stdout, launched.output
    assert "0: data" not in launched.stdout, launched.output


def test_skypilots_status_refresh_shows_what_status_shows(kd, tmp_path: Path) -> None:
    write_task(tmp_path, f"name: {unique('refresh')}\nrun: echo hi\n")
    launched = kd("launch", "-y", "task.yaml", cwd=tmp_path)
    assert launched.returncode == 0, launched.output
    refreshed = kd("status", "-r", "--json")
    assert refreshed.returncode == 0, refreshed.output
    plain = status_json(kd)
    assert json.loads(refreshed.stdout)["jobs"] == plain["jobs"]
    assert [job["status"] for job in plain["jobs"]] == ["COMPLETED"]


def test_stop_start_down_take_dash_a(kd, tmp_path: Path) -> None:
    write_task(tmp_path, f"name: {unique('dasha')}\nrun: sleep 120\n")
    launched = kd("launch", "-y", "-d", "task.yaml", cwd=tmp_path)
    name = submitted_name(launched.stdout)
    try:
        assert kd("stop", "-a", "-y").returncode == 0
        assert status_json(kd, name)["jobs"][0]["status"] == "SUSPENDED (by user)"
        assert kd("start", "-a", "-y").returncode == 0
        assert status_json(kd, name)["jobs"][0]["status"] in {"ACTIVE", "PENDING"}
    finally:
        downed = kd("down", "-a", "-y")
    assert downed.returncode == 0, downed.output
    assert [job["name"] for job in status_json(kd)["jobs"]] == []
    assert status_json(kd, name)["jobs"][0]["status"] == "FAILED"  # cancelled, kept in history


def test_all_users_acts_on_others_jobs_only_where_slurm_allows_it(
    kd, kd_user, user_dir: Path
) -> None:
    name = unique("others")
    write_user_file(user_dir, "task.yaml", f"name: {name}\nrun: sleep 120\n")
    launched = kd_user("launch", "-y", "-d", "task.yaml")
    assert launched.returncode == 0, launched.output
    job = submitted_name(launched.stdout)
    try:
        wait_for_status(kd_user, job, {"ACTIVE"}, timeout=60)
        # kdtest is an ordinary user: one line, and nothing changes.
        refused = kd_user("stop", "--all-users", "-y")
        assert refused.returncode == 1, refused.output
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "act on other users' jobs" in lines[0], refused.stderr
        assert "nothing was changed" in lines[0]
        assert squeue_state(job) in {"PENDING", "RUNNING"}

        # root may: its own store does not know kdtest's job, Slurm's comment finds it.
        stopped = kd("stop", "--all-users", "-y", job)
        assert stopped.returncode == 0, stopped.output
        assert f"Stopped {job}: suspended in place" in stopped.stdout, stopped.output
        assert f"  {job} [{TEST_USER}]: now SUSPENDED (by user)" in stopped.stdout
        assert squeue_state(job) == "SUSPENDED"
        started = kd("start", "--all_users", "-y", job)
        assert started.returncode == 0, started.output
        assert squeue_state(job) == "RUNNING"
        # kdtest's own view: its job was resumed in place, not restarted.
        assert status_json(kd_user, job)["jobs"][0]["status"] == "ACTIVE"
        downed = kd("down", "--all-users", "-y", job)
        assert downed.returncode == 0, downed.output
        assert f"Took down {job} [{TEST_USER}] (cancelled)" in downed.stdout
        final = wait_for_status(kd_user, job, {"FAILED"}, timeout=30)
        assert final["status"] == "FAILED" and final["detail"] == "cancelled by root", final
    finally:
        subprocess.run(["scancel", "-n", job], check=False)


def squeue_state(name: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", name, "-o", "%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
