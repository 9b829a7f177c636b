"""report --notify: Slack-compatible JSON to a local HTTP server; a server that is down,
slow or failing costs a bounded time and one warning, never the report."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from konduktor_slurm.report import Failure, Report
from konduktor_slurm.service import webhook
from konduktor_slurm.store import Transition


class Receiver(ThreadingHTTPServer):
    """A webhook: answers each POST with the next of ``answers`` (then 200), after ``delay``."""

    daemon_threads = True  # a slow answer still being written does not hold up the test

    def __init__(self, answers: list[int] | None = None, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = list(answers or [])
        self.delay = delay
        self.received: list[dict] = []
        self.headers_seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/T000/B000/secret"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.received.append(json.loads(self.rfile.read(length)))
        self.server.headers_seen.append(self.headers["Content-Type"])
        time.sleep(self.server.delay)
        code = self.server.answers.pop(0) if self.server.answers else 200
        # A slow answer's client (konduktor, timing out on purpose) may be gone by now.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    answers, delay = getattr(request, "param", ([], 0.0))
    server = Receiver(answers, delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def report(transitions: int = 2, failed: bool = True) -> Report:
    now = time.time()
    changes = [
        Transition(f"train-{i:04x}", "ACTIVE", "running on node1", now - 10)
        for i in range(transitions)
    ]
    failures = (
        (Failure("train-0000", "alice", now, "rank 1 exited 3", 1, 3, ("step 9", "boom")),)
        if failed
        else ()
    )
    return Report(
        generated_at=now,
        window_start=now - 3600,
        users=("alice",),
        transitions=tuple(changes),
        failures=failures,
        stuck=(),
        counts={},
        jobs_usage=(),
        users_usage=(),
    )


def test_the_news_is_posted_as_slack_compatible_json_with_structured_fields(
    receiver: Receiver,
) -> None:
    warned: list[str] = []
    webhook.notify([receiver.url], report(), warned.append)
    assert warned == []
    (message,) = receiver.received
    assert receiver.headers_seen == ["application/json"]
    text = message["text"]
    assert text.startswith("konduktor: 2 state changes, 1 new failure (alice, ")
    assert "FAILED train-0000 on rank 1: rank 1 exited 3\n    step 9\n    boom" in text
    assert "train-0001 -> ACTIVE (running on node1)" in text
    fields = message["konduktor"]
    assert [t["job"] for t in fields["transitions"]] == ["train-0000", "train-0001"]
    assert fields["failures"][0]["exit_code"] == 3
    assert fields["failures"][0]["log_tail"] == ["step 9", "boom"]


def test_nothing_new_posts_nothing(receiver: Receiver) -> None:
    webhook.notify([receiver.url], report(transitions=0, failed=False), lambda line: None)
    assert receiver.received == []


def test_a_long_list_of_changes_is_cut_in_the_text_not_in_the_fields(receiver: Receiver) -> None:
    webhook.notify([receiver.url], report(transitions=50, failed=False), lambda line: None)
    (message,) = receiver.received
    assert "... and 30 more" in message["text"]
    assert len(message["konduktor"]["transitions"]) == 50


@pytest.mark.parametrize("receiver", [([503, 500], 0.0)], indirect=True)
def test_a_receiver_that_fails_twice_gets_it_the_third_time(receiver: Receiver) -> None:
    assert webhook.post(receiver.url, {"text": "x"}) is None
    assert len(receiver.received) == 3


@pytest.mark.parametrize("receiver", [([404], 0.0)], indirect=True)
def test_a_wrong_url_is_not_retried_and_its_secret_is_not_shown(receiver: Receiver) -> None:
    warned: list[str] = []
    webhook.notify([receiver.url], report(), warned.append)
    assert len(receiver.received) == 1
    host = receiver.url.split("/services")[0]
    assert warned == [f"Warning: could not notify {host}: HTTP 404 Not Found"]
    assert "secret" not in warned[0]


def test_a_receiver_that_is_down_costs_seconds() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    problem = webhook.post(f"http://127.0.0.1:{port}/hook", {"text": "x"})
    assert time.monotonic() - started < 3  # 3 attempts, 0.5 s + 1 s apart
    assert problem is not None and "refused" in problem and "(after 3 attempts)" in problem


@pytest.mark.parametrize("receiver", [([], 30.0)], indirect=True)
def test_a_slow_receiver_is_given_up_on_within_the_budget(receiver: Receiver) -> None:
    started = time.monotonic()
    problem = webhook.post(receiver.url, {"text": "x"}, attempt_timeout=0.5, budget=1.6)
    assert time.monotonic() - started < 2.5
    assert problem is not None and problem.startswith("timed out")


@pytest.mark.parametrize(
    "url", ["hooks.slack.com/services/x", "ftp://example.org/x", "file:///etc/passwd", "http://"]
)
def test_only_http_urls_are_taken(url: str) -> None:
    with pytest.raises(webhook.NotifyError, match="expected an http:// or https:// webhook URL"):
        webhook.check_url(url)


def test_what_is_shown_of_a_url_is_its_scheme_and_host() -> None:
    assert webhook.where("https://user:pw@hooks.example.org:8443/services/T/B/s3cr3t?x=1") == (
        "https://hooks.example.org:8443"
    )
