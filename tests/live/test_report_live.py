"""`konduktor report` on the real cluster: jobs driven through COMPLETED (with a user stop and
start), FAILED (rank 1 exits 3) and a preemption, reported by consecutive cron-style runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KONDUKTOR, ROOT, Run, make_runner, write_task

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

ARTIFACTS = ROOT / "tests" / "artifacts"


def launch(kd, directory: Path, text: str) -> str:
    task = write_task(directory, text, f"{time.monotonic_ns()}.yaml")
    result = kd("launch", "-y", "-d", str(task))
    assert result.returncode == 0, result.output
    match = re.search(r"Submitted (\S+) \(Slurm job", result.stdout)
    assert match, result.output
    return match.group(1)


def wait(kd, name: str, wanted: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = json.loads(kd("status", "--json", name).stdout)["jobs"][0]
        if job["status"] in wanted:
            return job
        time.sleep(0.5)
    raise AssertionError(f"{name} never reached {wanted}: {job}")


def report_json(kd, *flags: str) -> tuple[Run, dict]:
    result = kd("report", "--format", "json", *flags)
    assert result.returncode in (0, 1), result.output
    return result, json.loads(result.stdout)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two cron runs around real jobs: run 1 after a stopped-and-started job and a failed job,
    run 2 after a preempted job; then a third run with nothing new."""
    directory = tmp_path_factory.mktemp("report")
    kd = make_runner(directory / "kdhome", 180)
    names: list[str] = []
    try:
        billed = launch(
            kd,
            directory,
            "name: billed\nresources:\n  accelerators: H100:8\nrun: |\n"
            "  for i in $(seq 1 8); do echo tick $i; sleep 1; done\n",
        )
        failing = launch(
            kd,
            directory,
            "name: failing\nnum_nodes: 2\nrun: |\n"
            '  echo "working on rank $RANK"\n'
            '  if [ "$RANK" = 1 ]; then echo "boom from rank 1"; exit 3; fi\n',
        )
        names += [billed, failing]
        wait(kd, billed, {"ACTIVE"})
        time.sleep(2)
        assert kd("stop", "-y", billed).returncode == 0  # root: suspended in place
        time.sleep(6)
        assert kd("start", "-y", billed).returncode == 0
        wait(kd, billed, {"COMPLETED"})
        wait(kd, failing, {"FAILED"})
        first_run, first = report_json(kd, "--fail-on-failure")

        low = launch(
            kd,
            directory,
            "name: preemptible\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
            "slurm:\n  partition: low\nrun: sleep 6\n",
        )
        names.append(low)
        wait(kd, low, {"ACTIVE"})
        time.sleep(2)
        high = launch(
            kd,
            directory,
            "name: urgent\nresources:\n  accelerators: H100:8\nslurm:\n  partition: high\n"
            "run: sleep 2\n",
        )
        names.append(high)
        wait(kd, low, {"SUSPENDED (by system)"}, timeout=60)
        wait(kd, high, {"COMPLETED"}, timeout=60)
        # Slurm holds the requeued job back for cred_expire + 1 s (16 s here); how it comes
        # back by itself is test_lifecycle_live's. The report needs only that it does.
        subprocess.run(["scontrol", "update", f"jobname={low}", "starttime=now"], check=False)
        wait(kd, low, {"COMPLETED"}, timeout=120)
        second_run, second = report_json(kd, "--fail-on-failure")
        _, third = report_json(kd)
        return {
            "kd": kd,
            "directory": directory,
            "billed": billed,
            "failing": failing,
            "low": low,
            "high": high,
            "first_run": first_run,
            "first": first,
            "second_run": second_run,
            "second": second,
            "third": third,
        }
    finally:
        # scancel, not `down`: the jobs stay visible, as they are to a cron report.
        for name in names:
            subprocess.run(["scancel", "--name", name], check=False)


def transitions(report: dict) -> list[tuple[str, str, str]]:
    return [(t["job"], t["status"], t["at"]) for t in report["transitions"]]


def test_each_transition_is_reported_once_and_only_once(scenario: dict) -> None:
    first, second, third = (transitions(scenario[key]) for key in ("first", "second", "third"))
    everything = first + second + third
    assert len(everything) == len(set(everything)), everything
    assert third == []
    billed, low = scenario["billed"], scenario["low"]
    assert [s for j, s, _ in first if j == billed] == [
        "CREATED",
        "PENDING",
        "ACTIVE",
        "SUSPENDED (by user)",
        "ACTIVE",
        "COMPLETED",
    ]
    assert {j for j, _, _ in first} == {billed, scenario["failing"]}
    assert {j for j, _, _ in second} == {low, scenario["high"]}
    low_states = [s for j, s, _ in second if j == low]
    assert "SUSPENDED (by system)" in low_states and low_states[-1] == "COMPLETED"
    # Cron's exit code: 1 when something failed since the last run, 0 otherwise.
    assert scenario["first_run"].returncode == 1
    assert scenario["second_run"].returncode == 0


def test_failed_job_shows_its_rank_exit_code_and_last_log_lines(scenario: dict) -> None:
    [failure] = scenario["first"]["failures"]
    assert failure["job"] == scenario["failing"]
    assert (failure["rank"], failure["exit_code"]) == (1, 3)
    assert failure["detail"] == "rank 1 exited 3"
    assert "1: boom from rank 1" in failure["log_tail"]
    assert all(line.startswith("1: ") for line in failure["log_tail"])  # that rank's only
    assert scenario["second"]["failures"] == []


def test_gpu_hours_exclude_the_time_a_job_was_suspended(scenario: dict) -> None:
    kd, name = scenario["kd"], scenario["billed"]
    usage = {u["name"]: u for u in scenario["first"]["usage"]["jobs"]}[name]
    job = json.loads(kd("status", "--json", name).stdout)["jobs"][0]
    wall = job["duration_seconds"]
    # Stopped for ~6 s: Slurm counted it as suspended, and it is not billed.
    assert usage["suspended_seconds"] >= 4, usage
    assert usage["active_seconds"] + usage["suspended_seconds"] == pytest.approx(wall, abs=2)
    assert usage["active_seconds"] <= wall - 4
    assert usage["gpu_hours"] == pytest.approx(usage["active_seconds"] * 8 / 3600)
    users = {u["user"]: u for u in scenario["first"]["usage"]["users"]}
    assert users["root"]["gpu_hours"] >= usage["gpu_hours"]


def test_a_preempted_run_is_lost_not_billed(scenario: dict) -> None:
    usage = {u["name"]: u for u in scenario["second"]["usage"]["jobs"]}[scenario["low"]]
    assert usage["lost_seconds"] >= 1 and usage["lost_gpu_hours"] > 0, usage
    assert usage["runs_billed"] == 1
    assert usage["gpu_hours"] == pytest.approx(usage["active_seconds"] * 16 / 3600)


def test_overlapping_runs_do_not_report_the_same_transitions(
    tmp_path: Path, kd, kd_home: Path
) -> None:
    name = launch(kd, tmp_path, "name: overlap\nrun: echo hi\n")
    try:
        wait(kd, name, {"COMPLETED"})
        # Three cron runs at the same moment: they take turns on the lock.
        procs = [
            subprocess.Popen(
                [KONDUKTOR, "report", "--format", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "KONDUKTOR_HOME": str(kd_home)},
            )
            for _ in range(3)
        ]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), outputs
        seen = sorted(
            (t["job"], t["status"]) for out, _ in outputs for t in json.loads(out)["transitions"]
        )
        history = json.loads(kd("status", "--json", name).stdout)["jobs"][0]["history"]
        assert len(history) >= 3  # CREATED, PENDING, ..., COMPLETED
        assert seen == sorted((name, entry["status"]) for entry in history), outputs
    finally:
        kd("down", "-y", name)


def test_html_report_opens_in_chromium_and_shows_the_timeline(scenario: dict) -> None:
    kd = scenario["kd"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report.html"
    result = kd("report", "--since", "1h", "--format", "html", "-o", str(page))
    assert result.returncode == 0, result.output
    assert result.stdout == ""  # written to the file only
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing (make test installs it)"
    shot = ARTIFACTS / "report-timeline.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,700",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    colours = {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}
    # The timeline's bars, in the state colours of the legend (report_formats.STATE_COLOURS).
    for state, hex_colour in {
        "ACTIVE": "#27ae60",
        "SUSPENDED (by user)": "#8e44ad",
        "SUSPENDED (by system)": "#c39bd3",
    }.items():
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colours, f"no {state} bar in {shot}"
    html = page.read_text()
    for name in (scenario["billed"], scenario["low"], scenario["failing"]):
        assert name in html


def test_prometheus_textfile_parses(scenario: dict) -> None:
    kd = scenario["kd"]
    target = scenario["directory"] / "textfile" / "konduktor.prom"
    result = kd("report", "--since", "1h", "--format", "prometheus", "-o", str(target))
    assert result.returncode == 0, result.output
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    jobs = {s.labels["state"]: s.value for s in families["konduktor_jobs"].samples}
    assert jobs["COMPLETED"] >= 3 and jobs["FAILED"] >= 1
    gpu = {s.labels["user"]: s.value for s in families["konduktor_gpu_hours"].samples}
    assert gpu["root"] > 0
    assert families["konduktor_report_timestamp_seconds"].samples[0].value > 0
    assert not list(target.parent.glob(".konduktor.prom.*"))  # no temp file left behind


def test_unreachable_controller_exits_3_within_the_timeout(scenario: dict, tmp_path: Path) -> None:
    kd = scenario["kd"]
    conf = tmp_path / "slurm.conf"
    text = Path("/etc/slurm/slurm.conf").read_text()
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=\d+", "SlurmctldPort=6999", text))
    started = time.monotonic()
    result = kd("report", "--since", "1h", env={"SLURM_CONF": str(conf)}, timeout=120)
    assert result.returncode == 3, result.output
    assert time.monotonic() - started < 60
    assert "STALE" in result.stdout and "Slurm could not be reached" in result.stderr
    assert scenario["billed"] in result.stdout  # what is known is still reported
