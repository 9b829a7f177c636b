"""Grid launches on the real cluster: one staging, one Slurm job array, a row per variant.

`konduktor launch --grid LR=a,b --grid SEED=0,1,2` is how a sweep of hundreds of variants
reaches Slurm without hundreds of stagings and sbatch calls. Each variant must still be a job
of its own to the user: its own status, logs, result, stop and start.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import status_json, wait_for_status, write_task
from tests.live.test_launch import unique

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]


def _sweep_name(output: str) -> tuple[str, str]:
    match = re.search(r"Submitted sweep (\S+): .* \(Slurm job array (\d+)\)", output)
    assert match, output
    return match.group(1), match.group(2)


def test_a_grid_runs_every_variant_with_its_values_and_its_own_result(kd, tmp_path: Path) -> None:
    name = unique("grid")
    workdir = tmp_path / "code"
    workdir.mkdir()
    (workdir / "train.sh").write_text(
        'echo "variant lr=$LR seed=$SEED base=$BASE"\n'
        'echo "{\\"lr\\": \\"$LR\\", \\"seed\\": $SEED}" > "$KONDUKTOR_OUTPUT_DIR/result.json"\n'
        '[ "$SEED" != 2 ] || [ "$LR" != "3e-4" ] || exit 7\n'
    )
    task = write_task(
        tmp_path,
        f"name: {name}\nworkdir: {workdir}\nenvs:\n  LR: '0.1'\n  BASE: kept\nrun: bash train.sh\n",
    )
    launched = kd("launch", "-y", "--grid", "LR=1e-3,3e-4", "--grid", "SEED=0,1,2", str(task))
    assert launched.returncode == 0, launched.output
    sweep, array = _sweep_name(launched.stdout)
    assert "6 variants" in launched.stdout
    # One staging: a single snapshot pointer for the sweep, one sbatch: one array id.
    squeue = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", array, "-o", "%i %j"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(squeue.stdout.splitlines()) in range(1, 7), squeue.stdout  # finished ones leave

    names = [f"{sweep}-{index}" for index in range(6)]
    for variant in names:
        wait_for_status(kd, variant, {"COMPLETED", "FAILED"}, timeout=180)
    rows = {job["name"]: job for job in status_json(kd)["jobs"]}
    assert set(names) <= rows.keys()
    # Variants are numbered in grid order: LR varies slowest, SEED fastest.
    assert rows[names[5]]["status"] == "FAILED", rows[names[5]]
    assert all(rows[variant]["status"] == "COMPLETED" for variant in names[:5]), rows
    assert rows[names[4]]["slurm_job_id"] == f"{array}_4"

    logs = kd("logs", "--no-follow", names[4])
    assert logs.returncode == 0, logs.output
    assert "variant lr=3e-4 seed=1 base=kept" in logs.stdout, logs.stdout
    assert "seed=0" not in logs.stdout  # one variant's log, not the array's

    result = kd("result", names[1])
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout) == {"lr": "1e-3", "seed": 1}


def test_a_whole_sweep_is_stopped_started_and_torn_down_by_pattern(kd, tmp_path: Path) -> None:
    name = unique("gridctl")
    # A job of someone else's holds every GPU of both nodes, so the whole sweep waits: its
    # elements stay in the array's own record, which Slurm 22.05 prints as a plain "<id>"
    # once they are cancelled one by one (see slurm.with_array_records). down must still
    # find every one of them.
    hog = subprocess.run(
        ["sbatch", "--parsable", "-N2", "--gres=gpu:h100:8", "--job-name=gridhog",
         "--output=/dev/null", "--wrap", "sleep 600"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    try:
        task = write_task(
            tmp_path,
            f"name: {name}\nnum_nodes: 2\nresources:\n  accelerators: H100:8\nrun: sleep 600\n",
        )
        launched = kd("launch", "-y", "--grid", "SEED=0,1,2", str(task))
        assert launched.returncode == 0, launched.output
        sweep, _array = _sweep_name(launched.stdout)
        names = [f"{sweep}-{index}" for index in range(3)]
        for variant in names:
            wait_for_status(kd, variant, {"PENDING"})

        stopped = kd("stop", "-y", names[1])
        assert stopped.returncode == 0, stopped.output
        wait_for_status(kd, names[1], {"SUSPENDED (by user)"})
        others = [status_json(kd, variant)["jobs"][0]["status"] for variant in names[::2]]
        # Stopping one variant leaves the rest alone.
        assert others == ["PENDING", "PENDING"], others

        started = kd("start", "-y", names[1])
        assert started.returncode == 0, started.output
        wait_for_status(kd, names[1], {"PENDING"})

        down = kd("down", "-y", f"{sweep}-*")
        assert down.returncode == 0, down.output
        for variant in names:
            job = wait_for_status(kd, variant, {"FAILED"})
            assert "cancel" in (job.get("detail") or "").lower(), job
    finally:
        subprocess.run(["scancel", hog], check=False)


def test_stop_start_and_down_of_a_large_sweep_cost_a_few_slurm_calls(
    kd, kd_home: Path, tmp_path: Path, counted_slurm: tuple[Path, Path]
) -> None:
    """A stop of a 300-variant sweep was 300 `scontrol hold` and 300 squeues (600 requests
    to slurmctld, 4 s here); now each of stop, start and down is one scontrol or scancel
    and a few looks, whatever the sweep's size."""
    variants = 60
    task = write_task(
        tmp_path,
        f"name: {unique('bigctl')}\nrun: 'true'\n"
        "slurm:\n  sbatch_options: ['--begin=now+1hour']\n",  # pending, and runs nothing
    )
    launched = kd("launch", "-y", "-d", "--grid", f"SEED={','.join(map(str, range(variants)))}",
                  str(task))  # fmt: skip
    assert launched.returncode == 0, launched.output
    sweep, array = _sweep_name(launched.stdout)
    bin_dir, calls = counted_slurm
    (kd_home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\n")
    try:
        for verb, state in (("stop", "SUSPENDED (by user)"), ("start", "PENDING")):
            calls.write_text("")
            done = kd(verb, "-y", f"{sweep}-*")
            assert done.returncode == 0, done.output
            logged = calls.read_text().split()
            assert logged.count("scontrol") == 1 and logged.count("squeue") <= 3, logged
            jobs = status_json(kd)["jobs"]
            assert len(jobs) == variants and {job["status"] for job in jobs} == {state}, jobs
        reasons = subprocess.run(
            ["squeue", "-h", "-r", "-j", array, "-o", "%r"], capture_output=True, text=True
        ).stdout.split()
        assert len(reasons) == variants and not any("JobHeld" in r for r in reasons), reasons
        calls.write_text("")
        down = kd("down", "-y", f"{sweep}-*")
        assert down.returncode == 0, down.output
        assert calls.read_text().split().count("scancel") == 1
        left = subprocess.run(["squeue", "-h", "-r", "-j", array], capture_output=True, text=True)
        assert left.stdout.strip() == "", left.stdout
    finally:
        subprocess.run(["scancel", array], check=False)


def test_num_jobs_gives_each_copy_its_skypilot_rank(kd, tmp_path: Path) -> None:
    """SkyPilot's `--num-jobs N`: a data-parallel task reads its slice from
    SKYPILOT_JOB_RANK and SKYPILOT_NUM_JOBS (unset before: every copy took slice '')."""
    task = write_task(
        tmp_path,
        f"name: {unique('shards')}\nrun: |\n"
        '  : "${SKYPILOT_JOB_RANK:?}"\n'
        '  echo "shard $SKYPILOT_JOB_RANK of $SKYPILOT_NUM_JOBS"\n',
    )
    launched = kd("launch", "-y", "--wait", "--num-jobs", "3", str(task))
    assert launched.returncode == 0, launched.output
    sweep, _ = _sweep_name(launched.stdout)
    assert "3 COMPLETED, 0 FAILED" in launched.stderr, launched.output
    for rank in range(3):
        shown = kd("logs", f"{sweep}-{rank}").stdout
        assert f"0: shard {rank} of 3" in shown, shown
    both = kd("launch", "-y", "--num-jobs", "2", "--grid", "A=1,2", str(task))
    assert both.returncode == 2 and "give one" in both.stderr, both.output
    # A trailing comma or a repeated value is a typo: refused, and nothing reaches Slurm.
    for typo, said in (("A=1,2,", "value last of 3 is empty"), ("A=1,2,1", "given twice")):
        refused = kd("launch", "-y", "--grid", typo, str(task))
        assert refused.returncode == 2 and said in refused.stderr, refused.output
    names = sorted(job["name"] for job in status_json(kd)["jobs"])
    assert names == [f"{sweep}-{rank}" for rank in range(3)], names
