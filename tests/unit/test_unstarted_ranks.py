"""A rank srun could not launch is named: "rank 1 never started on node2", not srun's code.

When a node's slurmd dies (or does not answer) as a run starts, srun fails to launch the
rank there, ends the whole step and exits with a Slurm error number modulo 256 (233, 105,
...). The rendered batch script runs here for real, under bash, with a fake srun and
scontrol; the live fault test does the same to a real slurmd.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from konduktor_slurm.lifecycle import LocalFacts, SlurmFacts, State, classify
from konduktor_slurm.render import JobPlan, render_sbatch
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.task import parse_task
from konduktor_slurm.tracker import read_rank_reports
from konduktor_slurm.transport import LocalTransport

# srun runs the node script of each rank in SRUN_RANKS (the rest it "cannot launch"), one
# after the other, and exits 233 when it left a rank out, else with the worst rank's code.
# A rank written "1k" is killed (SIGKILL) once its node script has started.
FAKE_SRUN = """#!/bin/bash
script="${@: -1}"
worst=0
for rank in $SRUN_RANKS; do
  kill_it="${rank//[0-9]/}"
  rank="${rank%k}"
  # In a session of its own, as slurmstepd starts it, so that the kill takes the run too.
  SLURM_NODEID="$rank" SLURMD_NODENAME="node$((rank + 1))" setsid bash -c "$script" &
  if [ -n "$kill_it" ]; then
    for _ in $(seq 200); do
      [ -e "$KONDUKTOR_JOB_DIR/rank-$rank.exit" ] && break
      sleep 0.05
    done
    kill -9 -- -$!
  fi
  wait $!
  code=$?
  [ "$code" -gt "$worst" ] && worst="$code"
done
if [ "$(wc -w <<< "$SRUN_RANKS")" -lt "$NUM_NODES" ]; then
  echo "srun: error: Task launch for StepId=$SLURM_JOB_ID.0 failed on node nodeX" >&2
  exit 233
fi
exit "$worst"
"""
FAKE_SCONTROL = """#!/bin/bash
case "$1 $2" in
  "show hostnames") for n in $(seq "$NUM_NODES"); do echo "node$n"; done ;;
esac
exit 0
"""


def run_batch_script(
    tmp_path: Path, task_text: str, *attempts: str, env: dict[str, str] | None = None
) -> tuple[Path, str, int]:
    """Run the rendered batch script; attempt N of srun launches the ranks in attempts[N].
    ``env``: more of the job's environment (what Slurm sets, SLURM_*)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Each srun call takes the next attempt's ranks: a wrapper shifts them off a file.
    (tmp_path / "attempts").write_text("\n".join(attempts) + "\n")
    srun = (
        f'#!/bin/bash\nexport SRUN_RANKS="$(sed -n 1p {tmp_path}/attempts)"\n'
        f'sed -i 1d {tmp_path}/attempts\nexec {bin_dir}/fake-srun "$@"\n'
    )
    for name, text in (("fake-srun", FAKE_SRUN), ("srun", srun), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    task = parse_task(task_text, "task.yaml")
    script = render_sbatch(task, JobPlan("w-1a2b", str(job_dir), str(job_dir / "job.log")))
    job_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NODELIST": "node[1-2]",
        **(env or {}),
    }
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=job_env, timeout=60
    )
    return job_dir, done.stdout + done.stderr, done.returncode


def lifecycle_of(job_dir: Path, exit_code: int):
    report = read_rank_reports(Slurm(LocalTransport()), [str(job_dir)]).get(str(job_dir))
    codes, not_started = (report.exit_codes, report.not_started) if report else ({}, {})
    return classify(
        SlurmFacts(
            sacct_state="FAILED" if exit_code else "COMPLETED",
            exit_code=f"{exit_code}:0",
            rank_exit_codes=codes,
            ranks_not_started=not_started,
        ),
        LocalFacts(),
    )


TWO_NODES = "name: w\nnum_nodes: 2\nrun: 'true'\n"


def test_a_rank_srun_could_not_launch_is_named_with_its_node(tmp_path: Path) -> None:
    job_dir, output, code = run_batch_script(tmp_path, TWO_NODES, "0")
    assert code == 233, output
    assert "konduktor: rank 1 never started on node2 (srun could not launch it there)" in output
    assert (job_dir / "ranks-not-started").read_text() == "1 node2\n"
    got = lifecycle_of(job_dir, code)
    assert (got.state, got.detail) == (State.FAILED, "rank 1 never started on node2")


def test_a_rank_that_started_and_failed_is_not_called_unstarted(tmp_path: Path) -> None:
    job_dir, output, code = run_batch_script(
        tmp_path, "name: w\nnum_nodes: 2\nrun: '[ \"$RANK\" = 0 ] || exit 3'\n", "0 1"
    )
    assert code == 3, output
    assert "never started" not in output
    assert not (job_dir / "ranks-not-started").exists()
    got = lifecycle_of(job_dir, code)
    assert (got.state, got.detail) == (State.FAILED, "rank 1 exited 3")


def test_a_rank_killed_before_its_end_is_not_called_unstarted(tmp_path: Path) -> None:
    """A rank that started leaves an empty rank file even when killed before its end."""
    job_dir, output, code = run_batch_script(
        tmp_path, "name: w\nnum_nodes: 2\nrun: '[ \"$RANK\" = 0 ] || sleep 30'\n", "0 1k"
    )
    assert code != 0 and "never started" not in output, output
    assert (job_dir / "rank-1.exit").read_text() == ""
    assert not (job_dir / "ranks-not-started").exists()


@pytest.mark.parametrize(("second", "expected"), [("0 1", State.COMPLETED), ("1", State.FAILED)])
def test_a_restart_forgets_the_last_attempts_unstarted_ranks(
    tmp_path: Path, second: str, expected: State
) -> None:
    task = TWO_NODES + "resources:\n  job_config:\n    max_restarts: 1\n"
    job_dir, output, code = run_batch_script(tmp_path, task, "0", second)
    assert "restarting from the beginning (attempt 2 of 2)" in output, output
    got = lifecycle_of(job_dir, code)
    assert got.state is expected, (got, output)
    if expected is State.FAILED:
        assert got.detail == "rank 0 never started on node1"
