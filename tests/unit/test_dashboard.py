"""`konduktor dashboard` without a cluster: the real app and uvicorn on a loopback port, the
service layer on the fake transport that replays recorded Slurm output (fake_slurm.py).

What a user (or an attacker on the same machine) sees over HTTP: the token and Origin checks,
the filters of `status`, the log stream, the actions' messages, and one refresh loop shared
by every open page. tests/live/test_dashboard_live.py drives the same page in Chromium against
the real cluster.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from konduktor_slurm.dashboard import payloads
from konduktor_slurm.dashboard.app import create_app, is_loopback_host
from konduktor_slurm.dashboard.hub import Hub, Snapshot
from konduktor_slurm.dashboard.server import bind, make_server
from konduktor_slurm.service.usage import JobUsage, measure
from konduktor_slurm.stop_modes import STOP_MODES
from konduktor_slurm.store import JobRecord
from tests.conftest import KONDUKTOR
from tests.unit.fake_slurm import FakeSlurm
from tests.unit.test_config import imported_modules
from tests.unit.test_workflows import make_session, submit

TOKEN = "test-token-0123456789"
STATIC = Path(__file__).resolve().parents[2] / "konduktor_slurm" / "dashboard" / "static"


# ---- a dashboard on a loopback port ---------------------------------------------------------


@dataclass
class Served:
    host: str
    port: int
    hub: Hub
    fake: FakeSlurm
    names: list[str]
    tmp_path: Path

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if token is not None:
            sent["X-Konduktor-Token"] = token
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, path: str, **options: object) -> tuple[int, dict]:
        status, _, body = self.request("GET", path, **options)  # type: ignore[arg-type]
        return status, json.loads(body)

    def post(self, path: str, body: str = "", **options: object) -> tuple[int, dict]:
        status, _, answer = self.request("POST", path, body=body, **options)  # type: ignore[arg-type]
        return status, json.loads(answer)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def events(self, path: str) -> Iterator[tuple[str, dict]]:
        """Server-sent events of ``path`` (with the token), as (event, data) pairs."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        separator = "&" if "?" in path else "?"
        connection.request("GET", f"{path}{separator}token={TOKEN}")
        response = connection.getresponse()
        assert response.status == 200, response.read()
        try:
            event = ""
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    yield event, json.loads(line.removeprefix("data: "))
        finally:
            connection.close()


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


def serve(tmp_path: Path, fake: FakeSlurm, names: list[str], interval: float) -> Iterator[Served]:
    hub = Hub(lambda: make_session(tmp_path, fake), interval=interval, usage_every=3600)
    app = create_app(hub, TOKEN, stop_modes=STOP_MODES)
    sock = bind("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield Served("127.0.0.1", sock.getsockname()[1], hub, fake, names, tmp_path)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(tmp_path: Path, fake: FakeSlurm) -> Iterator[Served]:
    """Two submitted jobs: the first running, the second pending."""
    with make_session(tmp_path, fake) as setup:
        names = [submit(setup), submit(setup)]
        fake.jobs[setup.store.get(names[0]).slurm_job_id].queue = "RUNNING"  # type: ignore[union-attr]
    yield from serve(tmp_path, fake, names, interval=0.3)


# ---- what the other commands pay -------------------------------------------------------------

WEB = {"starlette", "uvicorn", "h11", "anyio", "konduktor_slurm.dashboard.app"}


def test_other_commands_never_import_the_web_framework(tmp_path: Path) -> None:
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path / "home")}
    env.pop("KONDUKTOR_CONFIG", None)
    for argv in ([KONDUKTOR, "--help"], [KONDUKTOR, "status"], [KONDUKTOR, "dashboard", "-h"]):
        result, modules = imported_modules(argv, env)
        assert result.returncode == 0, result.stderr[-2000:]
        # The command is there when listed or asked for (status loads its own command only)...
        listed = argv[1] != "status"
        assert ("konduktor_slurm.cli.dashboard" in modules) == listed, argv
        assert not WEB & modules, (argv, WEB & modules)  # ...its framework is not


def test_without_the_extra_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # as if `pip install konduktor-slurm` without the extra\n"
        "sys.argv = ['konduktor', 'dashboard']\n"
        "from konduktor_slurm.cli import run\n"
        "run()\n"
    )
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: the dashboard needs Starlette and uvicorn (uvicorn is not installed): "
        "pip install 'konduktor-slurm[dashboard]'"
    ]


def test_a_port_in_use_is_one_line_and_a_wide_host_is_warned_about(tmp_path: Path) -> None:
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [KONDUKTOR, "dashboard", "--port", str(port)], capture_output=True, text=True, env=env
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: port {port} on 127.0.0.1 is in use; pick another with --port "
        "(0 picks a free one)\n"
    )
    wide = subprocess.Popen(
        [KONDUKTOR, "dashboard", "--port", "0", "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert wide.stdout is not None and wide.stderr is not None
        wide.stdout.readline()
        address = wide.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{32}", address), address
        assert wide.stderr.readline().startswith("Warning: listening on 0.0.0.0, not only on")
    finally:
        wide.terminate()
        wide.wait(10)


# ---- who may read and act -------------------------------------------------------------------


def test_data_needs_the_token_and_the_page_forbids_inline_scripts(served: Served) -> None:
    name = served.names[0]
    for path in ("/api/meta", "/api/jobs", "/api/events", f"/api/jobs/{name}"):
        for token in (None, "wrong"):
            status, _, body = served.request("GET", path, token=token)
            assert status == 403, path
            assert b"needs the token" in body
    status, headers, body = served.request("GET", "/", token=None)
    assert status == 200 and b"konduktor dashboard" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert served.json("/api/jobs")[0] == 200
    assert served.json(f"/api/jobs?token={TOKEN}", token=None)[0] == 200


@pytest.mark.parametrize("body", ["[" * 5000, "not json", "[1, 2]", '"text"'])
def test_an_action_body_that_is_no_json_object_is_refused_not_a_crash(
    served: Served, body: str
) -> None:
    # Read before the token is checked (the token may be a field of it), so anyone on the
    # machine can send it: brackets nested past Python's recursion limit included.
    status, answer = served.post(
        f"/api/jobs/{served.names[0]}/stop",
        body=body,
        token=None,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and not answer["ok"]
    assert answer["messages"] == ["Error: the request body is not a form or JSON object"]
    assert not served.fake.slurm_calls("scontrol")


def test_actions_without_the_token_or_from_another_page_change_nothing(served: Served) -> None:
    name = served.names[0]
    refusals = [
        ({"token": None}, "actions need the dashboard's token"),
        ({"token": "wrong"}, "actions need the dashboard's token"),
        ({"headers": {"Origin": "http://evil.example"}}, "comes from another web page"),
        ({"headers": {"Origin": "null"}}, "comes from another web page"),
        ({"headers": {"Sec-Fetch-Site": "cross-site"}}, "comes from another web page"),
        ({"headers": {"Sec-Fetch-Site": "same-site"}}, "comes from another web page"),
    ]
    for options, why in refusals:
        for verb in ("stop", "start", "down"):
            status, answer = served.post(f"/api/jobs/{name}/{verb}", **options)  # type: ignore[arg-type]
            assert status == 403 and not answer["ok"], (options, verb)
            assert why in answer["messages"][0] and "nothing was changed" in answer["messages"][0]
    # A token in the URL is not enough for an action (a link could carry it): header or form.
    status, _ = served.post(f"/api/jobs/{name}/stop?token={TOKEN}", token=None)
    assert status == 403
    # A page on a rebinding DNS name reaches 127.0.0.1 with a foreign Host: refused as well.
    status, _, _ = served.request(
        "POST", f"/api/jobs/{name}/stop", headers={"Host": "evil.example"}
    )
    assert status == 403
    assert not served.fake.slurm_calls("scontrol") and not served.fake.slurm_calls("scancel")
    # The token as a form field, from our own page's origin: accepted.
    status, answer = served.post(
        f"/api/jobs/{name}/stop",
        body=f"token={TOKEN}",
        token=None,
        headers={"Origin": served.origin},
    )
    assert status == 200 and answer["ok"], answer


def test_loopback_names_are_the_only_hosts_accepted() -> None:
    for host in ("localhost:8765", "127.0.0.1:8765", "[::1]:8765", "127.0.0.2", "LOCALHOST"):
        assert is_loopback_host(host), host
    for host in ("evil.example:8765", "10.0.0.1:8765", "[2001:db8::1]:80", "", "localhost.evil"):
        assert not is_loopback_host(host), host


def test_the_page_builds_its_dom_from_text_only() -> None:
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # every script is a file (CSP)
    assert not re.search(r"\son[a-z]+\s*=", page)  # no inline handlers (onclick=...)


# ---- the actions are the commands' ---------------------------------------------------------


def test_stop_and_start_run_the_commands_workflow_and_say_what_they_say(served: Served) -> None:
    running, pending = served.names
    status, answer = served.post(f"/api/jobs/{running}/stop")  # mode: auto (config default)
    assert status == 200 and answer["ok"]
    assert answer["messages"] == [
        "Slurm lets only operators suspend jobs, so stopping by requeue instead "
        "(--mode signal keeps the GPUs instead).",
        f"Stopped {running}: requeued and held; its processes were killed and its GPUs "
        "released. On `konduktor start` the run restarts from the beginning "
        "(KONDUKTOR_RESTART_ATTEMPT goes up by one).",
        f"  {running}: now SUSPENDED (by user) (stopped by kdtest just now)",
    ]
    status, answer = served.post(f"/api/jobs/{running}/stop", body="mode=signal")
    assert answer == {"ok": True, "messages": [f"{running} is already stopped; nothing to do."]}
    status, answer = served.post(f"/api/jobs/{pending}/stop", body="mode=fast")
    assert status == 400 and "mode 'fast': expected one of auto" in answer["messages"][0]
    status, answer = served.post(f"/api/jobs/{running}/start")
    assert status == 200 and answer["messages"][0].startswith(f"Started {running}: released")
    served.fake.jobs["100"].queue, served.fake.jobs["100"].acct = None, "COMPLETED"  # it ended
    status, answer = served.post(f"/api/jobs/{running}/stop")
    assert status == 409 and not answer["ok"]
    assert answer["messages"] == [  # what `konduktor stop -y JOB` prints on stderr
        f"Error: {running} has already finished (COMPLETED); there is nothing to stop",
        "Nothing was changed.",
    ]
    status, answer = served.post("/api/jobs/nosuch/down")
    # As the CLI: every named job is checked first (exit 1: a PlanError), nothing changes.
    assert status == 409 and answer["messages"][0].startswith("Error: no job named 'nosuch'.")
    status, answer = served.post(f"/api/jobs/{pending}/down")
    assert answer == {
        "ok": True,
        "messages": [f"Took down {pending} (cancelled); history: konduktor status -a"],
    }
    # The table shows the outcome at once (from the store: no squeue for it).
    _, table = served.json("/api/jobs?all=1")
    assert {job["name"]: job["status"] for job in table["jobs"]} == {
        running: "COMPLETED",
        pending: "FAILED",
    }
    _, table = served.json("/api/jobs")
    assert [job["name"] for job in table["jobs"]] == [running]  # taken down: hidden


# ---- the table --------------------------------------------------------------------------------


def test_the_table_filters_as_status_does(served: Served) -> None:
    running, pending = served.names
    _, table = served.json("/api/jobs")
    assert table["columns"] == [
        "NAME",
        "STATUS",
        "RESOURCES",
        "SUBMITTED",
        "START TIME",
        "END TIME",
        "DURATION",
        "GPU-H",
    ]
    assert [(job["name"], job["status"]) for job in table["jobs"]] == [
        (pending, "PENDING"),
        (running, "ACTIVE"),
    ]
    assert [job["name"] for job in served.json("/api/jobs?state=active")[1]["jobs"]] == [running]
    assert [job["name"] for job in served.json("/api/jobs?limit=1")[1]["jobs"]] == [pending]
    assert served.json("/api/jobs?before=1h")[1]["jobs"] == []
    assert len(served.json("/api/jobs?after=1h")[1]["jobs"]) == 2
    for query, message in (
        ("state=sleeping", "state 'sleeping': expected one of created, pending"),
        ("limit=0", "limit '0': expected a whole number >= 1"),
        ("after=yesterday-ish", "after: "),
    ):
        status, answer = served.json(f"/api/jobs?{query}")
        assert status == 400 and answer["error"].startswith(f"Error: {message}"), answer
    _, table = served.json("/api/jobs?all_users=1")
    assert table["columns"][1] == "USER" and table["jobs"][0]["cells"][1] == "kdtest"


def test_every_page_shares_one_refresh_loop_and_nobody_watching_costs_nothing(
    served: Served,
) -> None:
    def watch(received: list[int]) -> None:
        with contextlib.closing(served.events("/api/events")) as events:
            for event, data in events:
                if event == "jobs":
                    received.append(data["version"])
                if len(received) >= 6:
                    return

    served.json("/api/jobs")  # the first refresh happened
    served.fake.calls.clear()
    started = time.monotonic()
    tabs = [[], [], []]
    threads = [threading.Thread(target=watch, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    squeues = len(served.fake.slurm_calls("squeue"))
    # Each tab saw the same snapshots (one refresh each), not refreshes of its own.
    assert all(len(tab) == 6 for tab in tabs)
    shared = set(tabs[0]) & set(tabs[1]) & set(tabs[2])
    assert len(shared) >= 4, tabs
    assert squeues <= elapsed / served.hub.interval + 2, (squeues, elapsed)
    deadline = time.monotonic() + 5
    while served.hub.watchers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.hub.watchers == 0  # every tab closed
    served.fake.calls.clear()
    time.sleep(1.5)  # five intervals with no page open
    assert served.fake.slurm_calls("squeue") == []


def test_a_follower_in_another_process_uses_the_dashboards_looks(served: Served) -> None:
    """The dashboard's refresh is the store's shared poll: a follower or wait of the same
    store (another process: its own session) asks Slurm nothing while the page is open, and
    learns the job's end from the dashboard's look."""
    from konduktor_slurm.tracker import refresh_shared

    stop = threading.Event()

    def watch() -> None:
        with contextlib.closing(served.events("/api/events")) as events:
            for _ in events:
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while served.hub.refreshes < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The follower's own Slurm (the same cluster: the same jobs), to count its calls.
        theirs = FakeSlurm()
        theirs.jobs = served.fake.jobs
        with make_session(served.tmp_path, theirs) as mine:
            job = mine.store.get(served.names[0])
            assert job is not None and job.state == "ACTIVE"
            rounds = served.hub.refreshes
            running = served.fake.jobs[job.slurm_job_id or ""]
            running.queue, running.acct = None, "COMPLETED"  # it ends
            for _ in range(15):
                # A follower's look, reusing any poll of the store in the last 5 s.
                result = refresh_shared(mine.store, mine.slurm, [job], max_age=5.0)
                assert not result.stale
                time.sleep(0.1)
            assert served.hub.refreshes - rounds >= 2
            assert theirs.calls == []
            assert job.state == "COMPLETED"  # found by the dashboard, read from the store
    finally:
        stop.set()
        watcher.join(20)


def test_an_unreachable_controller_is_stale_and_polled_with_a_backoff(served: Served) -> None:
    served.json("/api/jobs")
    served.fake.unreachable = True
    stale_seen = None
    with contextlib.closing(served.events("/api/events")) as events:
        for event, data in events:
            if event == "jobs" and data["stale"]:
                stale_seen = data
                break
        assert stale_seen is not None
        assert "Unable to contact slurm controller" in stale_seen["stale_reason"]
        cells = [job["cells"][1] for job in stale_seen["jobs"]]
        assert cells == ["PENDING (stale)", "ACTIVE (stale)"]
        # Asked again after 0.3, 0.45, 0.68, 1.0, 1.5 s... (poll_intervals), not every 0.3 s.
        served.fake.calls.clear()
        time.sleep(2.4)
        assert len(served.fake.slurm_calls("squeue")) <= 5, served.fake.calls


# ---- one job, its log ---------------------------------------------------------------------------


def test_a_job_s_detail_and_history(served: Served) -> None:
    running = served.names[0]
    _, job = served.json(f"/api/jobs/{running}")
    fields = dict(job["fields"])
    assert fields["Status"].startswith("ACTIVE") and fields["Slurm job id"] == "100"
    assert [change["state"] for change in job["history"]] == ["CREATED", "PENDING", "ACTIVE"]
    assert [row["job"] for row in job["timeline"]["rows"]] == [running]
    assert [seg["state"] for seg in job["timeline"]["rows"][0]["segments"]] == [
        "CREATED",
        "PENDING",
        "ACTIVE",
    ]
    status, answer = served.json(f"/api/jobs/{running[:-1]}")
    assert status == 404
    assert answer["error"].startswith(f"Error: no job named '{running[:-1]}'. Did you mean")


def test_the_log_streams_one_rank_and_ends_with_the_job(served: Served) -> None:
    running = served.names[0]
    with make_session(served.tmp_path, served.fake) as session:
        job = session.store.get(running)
    assert job is not None
    log = Path(job.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"0: zero\n1: one <b>\n")

    def append(data: bytes) -> None:
        with log.open("ab") as handle:
            handle.write(data)

    status, answer = served.json(f"/api/jobs/{running}/log?rank=1")
    assert status == 400 and answer["error"] == f"Error: rank 1: {running} has ranks 0..0 only"
    with (
        contextlib.closing(served.events(f"/api/jobs/{running}/log?rank=0")) as rank0,
        contextlib.closing(served.events(f"/api/jobs/{running}/log")) as every,
    ):
        assert next(rank0) == ("start", {"lines": ["0: zero"]})
        assert next(every) == ("start", {"lines": ["0: zero", "1: one <b>"]})
        append(b"0: two\n1: caf\xc3")  # an "e acute" cut in two by the writer
        assert next(rank0) == ("lines", {"lines": ["0: two"]})
        assert next(every) == ("lines", {"lines": ["0: two"]})
        time.sleep(1.5)  # the first half is read on its own
        append(b"\xa9 au lait\n0: done")  # the second half; a last line without a newline
        assert next(every) == ("lines", {"lines": ["1: caf\u00e9 au lait"]})
        served.fake.jobs["100"].queue, served.fake.jobs["100"].acct = None, "COMPLETED"
        assert next(every) == ("lines", {"lines": ["0: done"]})
        assert next(every) == ("end", {"status": "COMPLETED", "detail": ""})
        assert next(rank0) == ("lines", {"lines": ["0: done"]})
        assert next(rank0) == ("end", {"status": "COMPLETED", "detail": ""})


# ---- GPU-hours ---------------------------------------------------------------------------------


def test_gpu_hours_come_from_accounting_once_and_count_a_run_going_on(
    tmp_path: Path, fake: FakeSlurm
) -> None:
    with make_session(tmp_path, fake) as session:
        name = submit(session)
        job = session.store.get(name)
        assert job is not None
        fake.jobs["100"].runs = ("COMPLETED",)  # the recorded run: 3 s ACTIVE on 2 GPUs
        fake.calls.clear()
        usage = measure(session, [job])[name]
    assert len(fake.slurm_calls("sacct")) == 1
    assert usage.billed_gpu_hours == pytest.approx(3 * 2 / 3600)
    assert usage.running_gpus == 0 and not usage.final  # still PENDING in the store
    going = JobUsage(0.5, 0.0, running_gpus=8, running_seconds=900, measured_at=1000, final=False)
    assert going.gpu_hours(now=1450, active_now=True) == pytest.approx(0.5 + 8 * 1350 / 3600)
    assert going.gpu_hours(now=1450, active_now=False) == pytest.approx(0.5 + 8 * 900 / 3600)


def test_gpu_hours_are_estimated_until_accounting_has_seen_the_run() -> None:
    job = JobRecord(
        name="j",
        task_name="j",
        user="u",
        resources="2x(H100:4)",
        num_nodes=2,
        gpus_per_node=4,
        job_dir="/d",
        log_path="/d/job.log",
        state="ACTIVE",
        created_at=0.0,
        slurm_job_id="1",
        start_time=100.0,
    )
    snapshot = Snapshot(1, 0.0, "u", (job,), frozenset({"j"}), False)
    assert payloads.gpu_hours(snapshot, job, now=100.0 + 1800) == (pytest.approx(4.0), True)
    measured = JobUsage(
        0.0, 0.0, running_gpus=8, running_seconds=1800, measured_at=1900, final=False
    )
    snapshot = Snapshot(1, 0.0, "u", (job,), frozenset({"j"}), False, usage={"j": measured})
    assert payloads.gpu_hours(snapshot, job, now=1900.0 + 900) == (pytest.approx(6.0), False)
    assert payloads.gpu_text(6.0, False) == "6.000" and payloads.gpu_text(4.0, True) == "~4.000"
