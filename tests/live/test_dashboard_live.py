"""`konduktor dashboard` in headless Chromium against the real cluster.

The real command serves the page (its Slurm commands counted through a slurm_bin_dir of
wrappers); real jobs are launched with the real `konduktor` CLI; Debian's chromium, driven
by playwright (no browser download), looks at the page as a person would: a running job
listed, its log line arriving within seconds, its state changing without a reload, the stop
button suspending a job (checked in squeue) and start resuming it, a finished job refused as
`konduktor stop` refuses it, actions without the token refused, three tabs costing one
squeue per interval, and a screenshot of the timeline (tests/artifacts/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import KONDUKTOR, ROOT, Run, make_runner, write_task
from tests.live.test_launch import submitted_name, unique
from tests.live.test_ssh import REMOTE_HOME, REMOTE_JOBS, SSH_DIR, DedicatedSSHD, Workstation

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

ARTIFACTS = ROOT / "tests" / "artifacts"
INTERVAL = 2.0  # the dashboard's refresh interval in these tests (--interval)
WRAPPED = ("squeue", "sacct", "sinfo", "sbatch", "scontrol", "scancel", "sacctmgr")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TALKER = """\
name: {name}
resources:
  accelerators: H100:1
run: |
  echo 'escaped: <b id="pwned">bold</b><img src=x onerror="window.pwned=1">'
  for i in $(seq 1 14); do echo "tick $(date +%s.%N)"; sleep 1; done
"""
WORKER = """\
name: {name}
resources:
  accelerators: H100:2
run: |
  for i in $(seq 1 300); do echo "work $i"; sleep 1; done
"""


@dataclass
class Scene:
    kd: Callable[..., Run]
    base: str  # http://127.0.0.1:PORT
    token: str
    calls: Path  # one line per Slurm command the dashboard (and kd) ran
    talker: str  # prints a tick with its time every second for 14 s, then COMPLETED
    worker: str  # runs for 5 minutes: stopped, started and taken down from the page
    context: Any  # playwright's BrowserContext (a fresh profile)
    page: Any  # the first tab
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def new_tab(self) -> Any:
        page = self.context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the buttons' confirm()
        page.goto(self.url)
        return page


def counting_bin_dir(directory: Path) -> tuple[Path, Path]:
    """A slurm_bin_dir of wrappers that log each call, then run the real command."""
    bin_dir = directory / "slurm-bin"
    bin_dir.mkdir()
    calls = directory / "calls.log"
    calls.write_text("")
    for command in WRAPPED:
        real = shutil.which(command)
        assert real, f"{command} is not installed"
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\necho {command} >> "{calls}"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    return bin_dir, calls


def squeue_state(job_id: str) -> str:
    """What the real squeue says of the job ("" once it left the queue)."""
    result = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30
    )
    return result.stdout.strip()


def read_url(process: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The URL the command prints (stdout's second line), without hanging on a dead one;
    and what it printed before the URL."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for _ in range(2):
            lines.append(process.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    match = re.search(r"http://\S+", "".join(lines))
    assert match, f"no URL printed: {lines}"
    return match.group(0), lines[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("dashboard")
    home = root / "kdhome"
    home.mkdir()
    bin_dir, calls = counting_bin_dir(root)
    (home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\n")
    kd = make_runner(home, 120)
    names = {}
    for role, template in (("talker", TALKER), ("worker", WORKER)):
        task = write_task(root, template.format(name=unique(f"dash-{role}-")), f"{role}.yaml")
        result = kd("launch", "-y", "-d", str(task))
        assert result.returncode == 0, result.output
        names[role] = submitted_name(result.stdout)
    dashboard = subprocess.Popen(
        [KONDUKTOR, "dashboard", "--port", "0", "--interval", str(INTERVAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KONDUKTOR_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )
    try:
        url, _ = read_url(dashboard)
        base, _, token = url.partition("/?token=")
        assert base.startswith("http://127.0.0.1:"), url  # loopback by default
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(root / "chromium-profile"),
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1000},
            )
            scene = Scene(kd, base, token, calls, names["talker"], names["worker"], context, None)
            scene.page = scene.new_tab()
            for name in names.values():
                job = json.loads(kd("status", "--json", name).stdout)["jobs"][0]
                scene.ids[name] = job["slurm_job_id"]
            try:
                yield scene
            finally:
                context.close()
    finally:
        kd("down", "-y", *names.values())
        dashboard.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = dashboard.communicate(timeout=30)
        assert dashboard.returncode == 0, err
        assert out.endswith("Dashboard stopped.\n"), (out, err)
        assert err == "", err  # nothing went wrong behind the page


def row_status(page: Any, name: str) -> str | None:
    return page.evaluate(
        "name => document.querySelector(`#jobs tr[data-job='${name}']`)?.dataset.status ?? null",
        name,
    )


def wait_for_row(page: Any, name: str, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = row_status(page, name)
        if status in states:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{name} never showed {states} on the page; last {status}")


def wait_js(page: Any, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression until it is true (playwright's wait_for_function would
    evaluate a string inside the page, which the page's CSP rightly forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, (
            f"never true on the page: {expression}; log {page.inner_text('#log-state')!r} "
            f"{log_lines(page)[-5:]}"
        )
        time.sleep(0.1)


def log_lines(page: Any) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#log div')].map(d => d.textContent)")


def click_action(page: Any, verb: str) -> tuple[bool, str]:
    """Click a button of the detail panel (the confirm() is accepted); the page's answer."""
    page.evaluate("document.getElementById('action-result').removeAttribute('data-ok')")
    page.click(f"#action-{verb}")
    page.wait_for_selector("#action-result[data-ok]", timeout=60_000)
    return page.get_attribute("#action-result", "data-ok") == "true", page.inner_text(
        "#action-result"
    )


def select(page: Any, name: str) -> None:
    page.click(f"#jobs tr[data-job='{name}']")
    page.wait_for_selector(f"#detail[data-job='{name}'][data-status]", timeout=30_000)


# ---- the page ---------------------------------------------------------------------------


def test_the_page_lists_a_running_job_and_its_log_line_arrives_within_seconds(
    scene: Scene,
) -> None:
    page = scene.page
    wait_for_row(page, scene.talker, {"ACTIVE"})
    cells = page.eval_on_selector_all(
        f"#jobs tr[data-job='{scene.talker}'] td", "cells => cells.map(c => c.textContent)"
    )
    assert cells[:3] == [scene.talker, "ACTIVE", "1x(H100:1)"], cells
    select(page, scene.talker)
    wait_js(
        page,
        "[...document.querySelectorAll('#log div')].some(d => d.textContent.includes(' tick '))",
        timeout=120,
    )
    # A tick printed from now on: how long until the page shows it?
    seen = set(log_lines(page))
    lags = []
    deadline = time.monotonic() + 30
    while len(lags) < 3 and time.monotonic() < deadline:
        for line in log_lines(page):
            match = re.fullmatch(r"0: tick (\d+\.\d+)", line)
            if match and line not in seen:
                seen.add(line)
                lags.append(time.time() - float(match.group(1)))
        time.sleep(0.05)
    assert len(lags) == 3, f"no new tick reached the page: {log_lines(page)[-5:]}"
    assert max(lags) < 3.0, lags  # polled every second, pushed at once
    # Printed by the job as text, shown as text: no element made of it, no script run.
    assert '0: escaped: <b id="pwned">bold</b><img src=x onerror="window.pwned=1">' in log_lines(
        page
    )
    assert page.evaluate("[document.getElementById('pwned'), window.pwned]") == [None, None]


def test_its_state_changes_without_a_reload_when_it_completes(scene: Scene) -> None:
    page = scene.page
    page.evaluate("window.keptAcrossUpdates = 'no reload'")
    wait_for_row(page, scene.talker, {"COMPLETED"}, timeout=60)
    status_cell = page.inner_text(f"#jobs tr[data-job='{scene.talker}'] td.status")
    assert status_cell == "COMPLETED"
    assert page.evaluate("window.keptAcrossUpdates") == "no reload"
    # The followed log ends with the job, and says how it ended.
    wait_js(
        page,
        "[...document.querySelectorAll('#log div.end')]"
        ".some(d => d.textContent.includes('COMPLETED'))",
    )
    assert page.inner_text("#log-state") == "(the job is COMPLETED)"
    history = page.eval_on_selector_all(
        "#history tbody tr td:nth-child(2)", "cells => cells.map(c => c.textContent)"
    )
    assert history == ["CREATED", "PENDING", "ACTIVE", "COMPLETED"] or history == [
        "CREATED",
        "ACTIVE",
        "COMPLETED",
    ], history


def test_three_tabs_cost_one_squeue_per_interval(scene: Scene) -> None:
    tabs = [scene.page, scene.new_tab(), scene.new_tab()]
    for tab in tabs:
        tab.wait_for_selector("body[data-version]", timeout=30_000)
    before = [int(tab.get_attribute("body", "data-version")) for tab in tabs]
    scene.calls.write_text("")
    window = 5 * INTERVAL
    time.sleep(window)
    squeues = scene.calls.read_text().split().count("squeue")
    after = [int(tab.get_attribute("body", "data-version")) for tab in tabs]
    print(f"\n3 tabs, {window:g} s, interval {INTERVAL:g} s: {squeues} squeue calls")
    assert 2 <= squeues <= window / INTERVAL + 1, squeues  # one tab's worth, not three
    # Every tab was shown every refresh (each one squeue), the same ones: shared, not its own.
    for old, new in zip(before, after, strict=True):
        assert abs((new - old) - squeues) <= 1, (before, after, squeues)
    # Tabs in the background let go of their streams: nobody looking, no squeue at all.
    for tab in tabs:
        set_hidden(tab, True)
    time.sleep(INTERVAL)  # a refresh under way may finish
    scene.calls.write_text("")
    time.sleep(2 * INTERVAL)
    assert "squeue" not in scene.calls.read_text()
    assert tabs[0].inner_text("#connection").startswith("paused")
    for tab in tabs[1:]:
        tab.close()
    paused = int(scene.page.get_attribute("body", "data-version"))
    set_hidden(scene.page, False)  # back in front: live again at once
    wait_js(scene.page, f"Number(document.body.dataset.version) > {paused}", timeout=10)
    assert scene.page.inner_text("#connection") == "live"


def set_hidden(page: Any, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (or comes back)."""
    page.evaluate(
        """hidden => {
             Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
             document.dispatchEvent(new Event("visibilitychange"));
           }""",
        hidden,
    )


def test_a_follower_beside_the_page_uses_its_looks(scene: Scene, tmp_path: Path) -> None:
    """`logs --follow` in another terminal, same store: the dashboard's refresh is the
    store's shared poll, so the follower asks Slurm only for its own first look."""
    bin_dir, follower_calls = counting_bin_dir(tmp_path)
    config = tmp_path / "follower.yaml"  # the same cluster, its calls counted apart
    config.write_text(f"slurm_bin_dir: {bin_dir}\n")
    shown = int(scene.page.get_attribute("body", "data-version"))
    wait_js(scene.page, f"Number(document.body.dataset.version) > {shown}", timeout=10)
    follower = subprocess.Popen(
        [KONDUKTOR, "logs", "--follow", scene.worker],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "KONDUKTOR_HOME": str(scene.calls.parent / "kdhome"),
            "KONDUKTOR_CONFIG": str(config),
        },
        stdin=subprocess.DEVNULL,
    )
    try:
        window = 5 * INTERVAL  # the follower looks at about 0, 2, 5 and 9.5 s
        time.sleep(window)
        assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
    finally:
        follower.send_signal(signal.SIGINT)  # Ctrl-C: detaches
        follower.communicate(timeout=30)
    squeues = follower_calls.read_text().split().count("squeue")
    print(f"\nfollower beside the page, {window:g} s: {squeues} squeue calls of its own")
    assert 1 <= squeues <= 2, squeues


def test_gpu_hours_of_a_running_job_are_shown(scene: Scene) -> None:
    page = scene.page
    wait_for_row(page, scene.worker, {"ACTIVE"})
    time.sleep(INTERVAL + 0.5)
    cell = page.inner_text(f"#jobs tr[data-job='{scene.worker}'] td.col-gpu-h")
    used = float(cell.lstrip("~"))
    started = json.loads(scene.kd("status", "--json", scene.worker).stdout)["jobs"][0]
    # 2 GPUs for the seconds it has been ACTIVE (give or take one refresh).
    expected = 2 * started["duration_seconds"] / 3600
    slack = 2 * (2 * INTERVAL + 2) / 3600 + 0.0015  # a refresh old, 3 decimals, sacct's second
    assert used > 0 and abs(used - expected) <= slack, (cell, expected)


@pytest.fixture(scope="module")
def stopped_and_started(scene: Scene) -> dict[str, Any]:
    """The worker stopped (suspend: root may) and started again with the page's buttons;
    what the page said and what squeue said after each."""
    page = scene.page
    wait_for_row(page, scene.worker, {"ACTIVE"})
    select(page, scene.worker)
    page.select_option("#stop-mode", "suspend")
    stop = click_action(page, "stop")
    stopped = squeue_state(scene.ids[scene.worker])
    stopped_row = wait_for_row(page, scene.worker, {"SUSPENDED (by user)"}, timeout=10)
    time.sleep(3)  # long enough to be seen in the timeline
    start = click_action(page, "start")
    started = squeue_state(scene.ids[scene.worker])
    started_row = wait_for_row(page, scene.worker, {"ACTIVE"}, timeout=10)
    time.sleep(2)
    return {
        "stop": stop,
        "stopped": stopped,
        "stopped_row": stopped_row,
        "start": start,
        "started": started,
        "started_row": started_row,
    }


def test_stop_suspends_the_job_and_start_resumes_it(
    scene: Scene, stopped_and_started: dict[str, Any]
) -> None:
    worker = scene.worker
    ok, said = stopped_and_started["stop"]
    assert ok and said.splitlines() == [
        f"Stopped {worker}: suspended in place; its nodes and GPUs stay allocated to it. "
        "`konduktor start` resumes it where it stopped.",
        f"  {worker}: now SUSPENDED (by user) (stopped by root just now)",
    ], said
    assert stopped_and_started["stopped"] == "SUSPENDED"
    assert stopped_and_started["stopped_row"] == "SUSPENDED (by user)"
    ok, said = stopped_and_started["start"]
    assert ok and said.splitlines()[0] == f"Started {worker}: resumed where it was suspended.", said
    assert stopped_and_started["started"] == "RUNNING"
    assert stopped_and_started["started_row"] == "ACTIVE"
    # The store says the same as the page (the same workflow ran).
    job = json.loads(scene.kd("status", "--json", worker).stdout)["jobs"][0]
    assert job["status"] == "ACTIVE" and job["slurm_state"] == "RUNNING"


def test_a_finished_job_is_refused_as_konduktor_stop_refuses_it(scene: Scene) -> None:
    page = scene.page
    wait_for_row(page, scene.talker, {"COMPLETED"})
    select(page, scene.talker)
    ok, said = click_action(page, "stop")
    cli = scene.kd("stop", "-y", scene.talker)
    assert not ok and cli.returncode == 1
    assert said == cli.stderr.rstrip("\n")
    assert said.startswith(f"Error: {scene.talker} has already finished (COMPLETED)")


def test_an_action_without_the_token_is_refused(scene: Scene) -> None:
    worker, job_id = scene.worker, scene.ids[scene.worker]
    assert squeue_state(job_id) == "RUNNING"

    def post(path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
        request = urllib.request.Request(
            scene.base + path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for verb in ("stop", "down"):
        status, answer = post(f"/api/jobs/{worker}/{verb}", form)
        assert status == 403 and "need the dashboard's token" in answer["messages"][0]
        status, answer = post(f"/api/jobs/{worker}/{verb}?token={scene.token}", form)
        assert status == 403  # a link cannot carry it: header or form field only
        status, answer = post(
            f"/api/jobs/{worker}/{verb}",
            {**form, "X-Konduktor-Token": scene.token, "Origin": "http://evil.example"},
        )
        assert status == 403 and "comes from another web page" in answer["messages"][0]
    # Reading needs it too.
    try:
        urllib.request.urlopen(f"{scene.base}/api/jobs", timeout=30)
        raise AssertionError("the job list was served without the token")
    except urllib.error.HTTPError as error:
        assert error.code == 403
    # Another web page in the same browser, even one that knew the token, cannot act.
    other = scene.context.new_page()
    other.goto("about:blank")
    other.evaluate(
        """([url, token]) => fetch(url, {method: "POST", mode: "no-cors",
             headers: {"Content-Type": "application/x-www-form-urlencoded"},
             body: "token=" + token}).catch(() => null)""",
        [f"{scene.base}/api/jobs/{worker}/down", scene.token],
    )
    other.close()
    time.sleep(1)
    assert squeue_state(job_id) == "RUNNING"
    assert row_status(scene.page, worker) == "ACTIVE"


def test_a_screenshot_shows_the_timeline(scene: Scene, stopped_and_started: dict[str, Any]) -> None:
    page = scene.page
    page.wait_for_selector("#timeline rect.segment[data-state='SUSPENDED (by user)']")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-timeline.png"
    shot.unlink(missing_ok=True)
    page.locator("#timeline").screenshot(path=str(shot))
    page.screenshot(path=str(ARTIFACTS / "dashboard-page.png"), full_page=True)
    image = Image.open(shot).convert("RGB")
    colours = {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}
    # The bars in the report's state colours (report_formats.STATE_COLOURS).
    for state, hex_colour in {
        "ACTIVE": "#27ae60",
        "SUSPENDED (by user)": "#8e44ad",
        "COMPLETED": "#1e8449",
    }.items():
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colours, f"no {state} bar ({hex_colour}) in {shot}"
    labels = page.eval_on_selector_all("#timeline text", "texts => texts.map(t => t.textContent)")
    assert scene.worker in labels and scene.talker in labels


def test_down_cancels_the_job_and_the_page_drops_it(scene: Scene) -> None:
    page = scene.page
    worker, job_id = scene.worker, scene.ids[scene.worker]
    select(page, worker)
    ok, said = click_action(page, "down")
    assert ok and said == f"Took down {worker} (cancelled); history: konduktor status -a"
    assert squeue_state(job_id) in ("", "CANCELLED", "COMPLETING")
    page.wait_for_selector(f"#jobs tr[data-job='{worker}']", state="detached", timeout=10_000)
    page.check("#filters input[name='all']")  # `status -a`: taken down too
    page.click("#filters button[type='submit']")
    assert wait_for_row(page, worker, {"FAILED"}, timeout=10) == "FAILED"


# ---- from a laptop, over SSH -------------------------------------------------------------------

REMOTE = """\
name: {name}
num_nodes: 2
run: |
  for i in $(seq 1 60); do echo "remote tick $i"; sleep 1; done
"""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def over_ssh(tmp_path: Path) -> Iterator[tuple[Workstation, DedicatedSSHD, str]]:
    """A laptop's konduktor pointed at a dedicated sshd (the cluster's config, its own log,
    so logins can be counted) as the ordinary user; a task name, cleaned up on the cluster."""
    server = DedicatedSSHD(tmp_path)
    server.start()
    station = Workstation(tmp_path / "laptop", server.port)
    station.directory.mkdir()
    shutil.copy(SSH_DIR / "kdtest_ed25519", station.key)
    station.key.chmod(0o600)
    station.trust(server.port)
    station.configure()
    task_name = unique("dash-ssh-")
    try:
        yield station, server, task_name
    finally:
        server.stop()
        for root in (REMOTE_JOBS, REMOTE_HOME / "konduktor_workdir"):
            for path in root.glob(f"{task_name}-*"):
                shutil.rmtree(path, ignore_errors=True)
        (REMOTE_JOBS / ".latest" / task_name).unlink(missing_ok=True)


def test_over_ssh_the_dashboard_keeps_to_one_connection(
    over_ssh: tuple[Workstation, DedicatedSSHD, str],
) -> None:
    """The dashboard on a laptop (`ssh:` in config.yaml): table, log and actions over the
    session's one SSH connection, however many refreshes and reads."""
    laptop, sshd, task_name = over_ssh
    (laptop.directory / "remote.yaml").write_text(REMOTE.format(name=task_name))
    launched = laptop.run("launch", "-y", "-d", "remote.yaml")
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    before = sshd.accepted()
    dashboard = subprocess.Popen(
        [KONDUKTOR, "dashboard", "--port", "0", "--interval", str(INTERVAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=laptop.env(),
        stdin=subprocess.DEVNULL,
        cwd=laptop.directory,
    )
    try:
        url, heading = read_url(dashboard)
        assert f"over SSH to kdtest@127.0.0.1:{sshd.port}" in heading
        base, _, token = url.partition("/?token=")
        deadline = time.monotonic() + 60
        job: dict = {}
        while job.get("status") != "ACTIVE":
            assert time.monotonic() < deadline, job
            table = get_json(f"{base}/api/jobs?token={token}")
            assert table["user"] == "kdtest"  # the remote account, as `status` says
            job = next(row for row in table["jobs"] if row["name"] == name)
            time.sleep(0.5)
        # Its log, both ranks, read over SFTP while the job writes it.
        request = urllib.request.Request(f"{base}/api/jobs/{name}/log?token={token}")
        ranks_seen: set[str] = set()
        with urllib.request.urlopen(request, timeout=30) as stream:
            for raw in stream:
                for rank, tick in re.findall(r'"(\d): remote tick (\d+)"', raw.decode()):
                    if int(tick) >= 3:  # printed after the page opened the log
                        ranks_seen.add(rank)
                if ranks_seen == {"0", "1"}:
                    break
        headers = {"X-Konduktor-Token": token, "Content-Type": "application/x-www-form-urlencoded"}
        for verb, body, said in (
            ("stop", b"mode=signal", f"Stopped {name}: "),
            ("start", b"", f"Started {name}: "),
        ):
            request = urllib.request.Request(
                f"{base}/api/jobs/{name}/{verb}", data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            assert answer["ok"] and answer["messages"][0].startswith(said), answer
        # The start's own refresh records ACTIVE; should that one look at Slurm fail (a
        # loaded machine), the loop's next refresh does, within an interval or two.
        deadline = time.monotonic() + 30
        while True:
            detail = get_json(f"{base}/api/jobs/{name}?token={token}")
            states = [change["state"] for change in detail["history"]]
            if states[-2:] == ["SUSPENDED (by user)", "ACTIVE"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert states[-2:] == ["SUSPENDED (by user)", "ACTIVE"], (states, answer)
        assert sshd.accepted() - before == 1  # refreshes, SFTP reads and actions: one login
        # The connection drops (a laptop's Wi-Fi, a restarted login node): the page says so,
        # and once the server is back the next refresh logs in again.
        sshd.kill()
        table = get_json(f"{base}/api/jobs?token={token}")
        deadline = time.monotonic() + 60
        while not table["stale"]:
            assert time.monotonic() < deadline, table
            table = get_json(f"{base}/api/jobs?token={token}")
        assert f"127.0.0.1:{sshd.port}" in table["stale_reason"], table["stale_reason"]
        assert [row["cells"][1] for row in table["jobs"]] == ["ACTIVE (stale)"]
        sshd.start()
        while table["stale"]:
            assert time.monotonic() < deadline, table
            table = get_json(f"{base}/api/jobs?token={token}")
        assert [row["cells"][1] for row in table["jobs"]] == ["ACTIVE"]
        assert sshd.accepted() - before == 2
    finally:
        laptop.run("down", "-y", name)
        dashboard.send_signal(signal.SIGINT)
        out, err = dashboard.communicate(timeout=30)
    assert out.endswith("Dashboard stopped.\n") and err == "", (out, err)
