from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from medfed.web.app import create_app
from medfed.web.server import LOOPBACK_HOSTS, Binding, DashboardServer
from tests.web.fake import FakeAdmin
from tests.web.sample import sample_status

TOKEN = "a-long-enough-token-0123"


@contextmanager
def serving(
    admin: FakeAdmin, token: str = "", hosts: tuple[str, ...] = LOOPBACK_HOSTS, poll_s: float = 0.25
) -> Iterator[httpx.Client]:
    """The dashboard over real HTTP on loopback (uvicorn on a thread)."""
    app = create_app(admin, token=token, allowed_hosts=hosts, poll_s=poll_s)
    server = DashboardServer(app, Binding("127.0.0.1", 0, token))
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield client
    finally:
        server.stop()


@contextmanager
def _client(token: str = "", hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Iterator[httpx.Client]:
    with serving(FakeAdmin(), token, hosts) as client:
        yield client


def test_study_page_embeds_the_view_and_escapes_what_nodes_wrote() -> None:
    with _client() as client:
        reply = client.get("/studies/s-0123456789ab")
    assert reply.status_code == 200
    page = reply.text
    assert 'id="round-counter">3<' in page
    assert "<script>alert(1)</script>" not in page  # a node's reason is data, never markup
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    assert 'id="ledger-head"' in page


def test_api_gives_every_hospital_curve_and_refusal() -> None:
    with _client() as client:
        view = client.get("/api/studies/s-0123456789ab").json()
        overview = client.get("/api/overview").json()
    assert set(view["per_hospital"]["accuracy"]) == {"cleveland", "hungary", "va_long_beach"}
    assert view["refusals"][0]["code"] == "plan_not_approved"
    assert view["completed_rounds"] == 3
    assert {n["status"] for n in overview["nodes"]} == {"online", "revoked"}


def test_unknown_study_is_404_with_the_coordinator_words() -> None:
    with _client() as client:
        reply = client.get("/api/studies/s-nope")
    assert reply.status_code == 404
    assert "not known to this coordinator" in reply.json()["detail"]


def test_events_stream_sends_a_finished_study_once_and_ends() -> None:
    with _client() as client, client.stream("GET", "/api/studies/s-0123456789ab/events") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        body = "".join(reply.iter_text())
    events = [block for block in body.split("\n\n") if block.startswith("event: study")]
    assert len(events) == 1
    view = json.loads(events[0].split("data: ", 1)[1])
    assert view["finished"] is True and view["state"] == "completed"


def test_events_follow_a_running_study() -> None:
    admin = FakeAdmin(sample_status(rounds=1, state="running"))
    seen: list[int] = []
    with (
        serving(admin, poll_s=0.01) as client,
        client.stream("GET", "/api/studies/s-0123456789ab/events") as reply,
    ):
        for line in reply.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])["completed_rounds"])
                if len(seen) == 1:
                    admin.current = sample_status(rounds=2, state="completed")
    assert seen == [1, 2]


def test_a_foreign_host_header_is_refused() -> None:
    with _client() as client:
        assert client.get("/", headers={"host": "attacker.example"}).status_code == 400
        assert client.get("/", headers={"host": "localhost:8050"}).status_code == 200


def test_with_a_token_every_request_needs_it() -> None:
    with _client(token=TOKEN, hosts=("*",)) as client:
        refused = client.get("/api/overview")
        wrong = client.get("/api/overview", headers={"authorization": "Bearer wrong"})
        static = client.get("/static/dashboard.js")
        ok = client.get("/api/overview", headers={"authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 401 and "token" in refused.text
    assert wrong.status_code == 401 and static.status_code == 401
    assert ok.status_code == 200


def test_a_token_link_sets_a_cookie_and_drops_the_token_from_the_address() -> None:
    with _client(token=TOKEN, hosts=("*",)) as client:
        reply = client.get(f"/studies/s-0123456789ab?token={TOKEN}", follow_redirects=False)
        later = client.get("/api/overview")  # the cookie now carries it
    assert reply.status_code == 303
    assert reply.headers["location"] == "/studies/s-0123456789ab"
    assert later.status_code == 200


def test_vendored_chart_library_is_served_locally_with_its_licence() -> None:
    with _client() as client:
        library = client.get("/static/vendor/chart.umd.min.js")
        licence = client.get("/static/vendor/chart.js.LICENSE.md")
    assert library.status_code == 200 and "Chart" in library.text
    assert "sourceMappingURL" not in library.text
    assert "MIT" in licence.text


def test_ledger_head_fills_the_provenance_slot_when_given() -> None:
    heads = {"s-0123456789ab": "42:" + "ef" * 32}
    app_admin = FakeAdmin()
    with _client() as client:
        empty = client.get("/api/studies/s-0123456789ab").json()["provenance"]["ledger_head"]
    app = create_app(app_admin, ledger_head=heads.get)
    server = DashboardServer(app, Binding("127.0.0.1", 0, ""))
    server.start()
    try:
        page = httpx.get(f"http://127.0.0.1:{server.port}/studies/s-0123456789ab").text
    finally:
        server.stop()
    assert empty is None
    assert "42:" + "ef" * 32 in page
