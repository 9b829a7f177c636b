"""The rendered job scripts with a checkpoint, run here without Slurm.

The node script is started as slurmstepd starts a task (its own process group) and then
signalled the way Slurm signals a step: with proctrack/cgroup only that one process (it must
pass the signal on), with proctrack/linuxproc or pgid every process of the step (it must not
pass it on again). Observed on the 22.05 cluster: a signal to the step reaches only the
`bash -c` that srun started; without a trap that bash dies and the step's other processes
are killed with it, mid-save.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from konduktor_slurm.render import JobPlan, render_node_script, render_sbatch
from konduktor_slurm.task import parse_task

# A training loop stand-in: counts steps; on the signal it saves its step and ends (0).
STANDIN = textwrap.dedent(
    """
    import os, signal, sys, time
    ckpt = os.path.join(os.environ["KONDUKTOR_CHECKPOINT_DIR"], "step")
    step = int(open(ckpt).read()) if os.path.exists(ckpt) else 0
    got = []
    signal.signal(signal.SIGHUP, lambda sig, frame: got.append("HUP"))
    signal.signal(signal.SIGTERM, lambda sig, frame: got.append("TERM"))
    while not got:
        step += 1
        open("progress", "w").write(str(step))
        time.sleep(0.02)
    time.sleep(0.3)  # more of the same signal would arrive meanwhile
    open(ckpt + ".tmp", "w").write(str(step))
    os.replace(ckpt + ".tmp", ckpt)
    open("signals", "w").write(",".join(got))
    """
)
# A launcher that dies of the signal (SIGHUP's default action) while its worker saves.
LAUNCHER = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "worker.py"])
    time.sleep(60)
    """
)
WORKER = textwrap.dedent(
    """
    import os, signal, time
    signal.signal(signal.SIGHUP, lambda sig, frame: None)
    open("progress", "w").write("1")
    signal.pause()
    time.sleep(2)  # a slow save
    open(os.path.join(os.environ["KONDUKTOR_CHECKPOINT_DIR"], "step"), "w").write("saved")
    """
)


def node_script(run: str, grace: int = 20) -> str:
    task = parse_task(
        f"name: ck\nresources:\n  job_config:\n    checkpoint_grace: {grace}\nrun: |\n"
        + textwrap.indent(run, "  "),
        "task.yaml",
    )
    return render_node_script(task, JobPlan("ck-1a2b", "/unused", "/unused/job.log"))


def start(tmp_path: Path, run: str, pass_on: bool = True) -> subprocess.Popen[bytes]:
    for name, text in (("standin.py", STANDIN), ("launcher.py", LAUNCHER), ("worker.py", WORKER)):
        (tmp_path / name).write_text(text)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.bashrc
        "SLURM_NODEID": "0",
        "NODE_HOST_IPS": "127.0.0.1",
        "KONDUKTOR_JOB_DIR": str(tmp_path),
        "KONDUKTOR_CHECKPOINT_SIGNAL": "HUP",
        "KONDUKTOR_CHECKPOINT_GRACE": "20",
        "KONDUKTOR_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "KONDUKTOR_PASS_SIGNALS_ON": "1" if pass_on else "0",
    }
    return subprocess.Popen(
        ["bash", "-c", node_script(run)],
        cwd=tmp_path,
        env=env,
        start_new_session=True,  # like a Slurm task: the leader of its own process group
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def finish(process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return out.decode()


def test_a_signal_to_the_node_script_alone_reaches_the_run_which_saves(tmp_path: Path) -> None:
    process = start(tmp_path, f"{sys.executable} standin.py\necho the-next-command-ran\n")
    wait_for(tmp_path / "progress")
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGHUP)  # proctrack/cgroup: only the task itself
    out = finish(process)
    assert process.returncode == 0, out
    saved = int((tmp_path / "ckpt" / "step").read_text())
    assert saved > 1
    assert (tmp_path / "signals").read_text() == "HUP"  # once, not twice
    assert "the-next-command-ran" not in out  # the run stops after the command that saved
    assert (tmp_path / "rank-0.exit").read_text().strip() == "0"
    assert (tmp_path / "checkpoint-signal").exists()  # what the batch script looks for
    assert "rank 0 got SIGHUP; the run has 20s to save its work" in out


def test_a_signal_to_every_process_is_not_passed_on_twice(tmp_path: Path) -> None:
    # proctrack/linuxproc and pgid signal the whole step; the batch script then sets
    # KONDUKTOR_PASS_SIGNALS_ON=0.
    process = start(tmp_path, f"{sys.executable} standin.py\n", pass_on=False)
    wait_for(tmp_path / "progress")
    os.killpg(process.pid, signal.SIGHUP)
    out = finish(process)
    assert process.returncode == 0, out
    assert (tmp_path / "signals").read_text() == "HUP"
    assert (tmp_path / "rank-0.exit").read_text().strip() == "0"


def test_sigterm_is_passed_on_and_the_shells_wait_for_the_run(tmp_path: Path) -> None:
    process = start(tmp_path, f"{sys.executable} standin.py\necho the-next-command-ran\n")
    wait_for(tmp_path / "progress")
    os.kill(process.pid, signal.SIGTERM)
    out = finish(process)
    assert (tmp_path / "signals").read_text() == "TERM"
    assert (tmp_path / "ckpt" / "step").exists()
    assert "the-next-command-ran" not in out
    assert not (tmp_path / "checkpoint-signal").exists()  # TERM is not the checkpoint signal


def test_workers_outliving_their_launcher_are_waited_for(tmp_path: Path) -> None:
    # torchrun-like: the launcher dies of the signal; its worker is still saving. The node
    # script must not end (Slurm would then kill the worker with the step).
    process = start(tmp_path, f"{sys.executable} launcher.py\n")
    wait_for(tmp_path / "progress")
    time.sleep(0.2)
    os.kill(process.pid, signal.SIGHUP)
    finish(process)
    assert (tmp_path / "ckpt" / "step").read_text() == "saved"
    # The launcher died of SIGHUP: its status is what the rank reports.
    assert (tmp_path / "rank-0.exit").read_text().strip() == str(128 + signal.SIGHUP)


def test_without_a_checkpoint_the_node_script_passes_nothing_on_and_dies_of_the_signal(
    tmp_path: Path,
) -> None:
    task = parse_task(f"name: ck\nrun: {sys.executable} standin.py\n", "task.yaml")
    script = render_node_script(task, JobPlan("ck-1a2b", "/unused", "/unused/job.log"))
    assert "konduktor_pass_on" not in script and "KONDUKTOR_CHECKPOINT" not in script
    (tmp_path / "standin.py").write_text(STANDIN)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SLURM_NODEID": "0",
        "KONDUKTOR_JOB_DIR": str(tmp_path),
        "KONDUKTOR_CHECKPOINT_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, env=env, start_new_session=True
    )
    wait_for(tmp_path / "progress")
    os.kill(process.pid, signal.SIGHUP)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGHUP
    os.killpg(process.pid, signal.SIGKILL)  # what Slurm then does to the step's rest


@pytest.mark.parametrize("directory", [None, "~/ckpt dir/$(id)"])
def test_the_batch_script_signals_the_steps_before_the_time_limit(directory: str | None) -> None:
    extra = f"\n    checkpoint_dir: '{directory}'" if directory else ""
    task = parse_task(
        "name: ck\nresources:\n  job_config:\n    checkpoint_signal: USR2\n"
        f"    checkpoint_grace: 45{extra}\nslurm:\n  time_limit: '1:00:00'\nrun: x\n",
        "task.yaml",
    )
    script = render_sbatch(task, JobPlan("ck-1a2b", "/jobs/ck-1a2b", "/jobs/ck-1a2b/job.log"))
    assert "#SBATCH --signal=USR2@45\n" in script  # no "B:": to the steps, not the shell
    assert "export KONDUKTOR_CHECKPOINT_SIGNAL=USR2\n" in script
    assert "export KONDUKTOR_CHECKPOINT_GRACE=45\n" in script
    if directory:
        assert "export KONDUKTOR_CHECKPOINT_DIR=\"$HOME\"/'ckpt dir/$(id)'\n" in script
    else:
        assert 'export KONDUKTOR_CHECKPOINT_DIR="$KONDUKTOR_JOB_DIR/checkpoint"\n' in script
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_a_signal_option_of_the_task_wins_over_the_checkpoint_one() -> None:
    task = parse_task(
        "name: ck\nresources:\n  job_config:\n    checkpoint_grace: 45\n"
        "slurm:\n  sbatch_options:\n    signal: 'B:USR1@300'\nrun: x\n",
        "task.yaml",
    )
    script = render_sbatch(task, JobPlan("ck-1a2b", "/jobs/ck-1a2b", "/jobs/ck-1a2b/job.log"))
    assert "#SBATCH --signal=B:USR1@300\n" in script
    assert "--signal=HUP@45" not in script
