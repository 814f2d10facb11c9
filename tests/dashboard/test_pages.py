"""Every page of the dashboard, and every action, over a memory app with known data."""

from __future__ import annotations

import json
import re

import pytest

import laneway
from laneway.dashboard import create_app

from .conftest import status_of


@pytest.fixture
def client(shop, client_for):
    return client_for(create_app(shop.app))


def test_overview_shows_queue_counts_blocked_lanes_and_both_charts(shop, client):
    page = client.get("/")

    assert page.status_code == 200
    html = page.text
    assert 'href="/queues/billing"' in html and 'href="/queues/mail"' in html
    assert re.search(r'<span class="value">1</span><span class="label">blocked lanes', html)
    assert "Throughput" in html and 'class="chart"' in html
    assert "from the finished_at of 3 stored succeeded and dead jobs" in html
    assert "blocked" in html and "user:&lt;42&gt;" in html


def test_overview_lists_blocked_lanes_before_older_ones(client_for):
    from laneway.testing import Clock, memory_app

    clock = Clock(1_000.0)
    app = memory_app(clock=clock)

    @app.task(name="fails", queue="b", max_attempts=1, on_dead="block")
    def fails() -> None:
        raise RuntimeError("x")

    @app.task(name="waits", queue="a")
    def waits() -> None: ...

    waits.options(lane="old-lane").enqueue()
    clock.advance(100)
    fails.options(lane="stuck-lane").enqueue()
    app.run_until_idle(["b"])
    clock.advance(5)

    html = client_for(create_app(app)).get("/").text
    assert html.index("stuck-lane") < html.index("old-lane")


def test_queue_page_shows_lanes_with_depth_head_attempts_and_state(shop, client):
    page = client.get("/queues/billing")

    assert page.status_code == 200
    row = re.search(
        r"<tr><td><a href=\"/jobs\?queue=billing&amp;lane=user%3A%3C42%3E\">user:&lt;42&gt;</a></td>"
        r"<td>2</td>.*?</tr>",
        page.text,
    )
    assert row, page.text
    assert shop.stuck.id in row.group(0)
    assert "s-dead" in row.group(0) and ">blocked<" in row.group(0)
    assert "<td>1</td>" in row.group(0)


def test_unknown_queue_and_job_are_404(client):
    assert client.get("/queues/nope").status_code == 404
    assert client.get("/jobs/0123456789abcdef").status_code == 404


def test_job_list_filters_by_status_queue_and_lane(shop, client):
    dead = client.get("/jobs", params={"status": "dead"}).text
    lane = client.get("/jobs", params={"queue": "billing", "lane": "user:<42>"}).text

    assert shop.stuck.id in dead and shop.bounced.id in dead
    assert shop.sent.id not in dead
    assert shop.stuck.id in lane and shop.behind.id in lane
    assert shop.bounced.id not in lane


def test_job_list_rejects_an_unknown_status(client):
    assert client.get("/jobs", params={"status": "exploded"}).status_code == 400
    assert client.get("/jobs", params={"offset": "x"}).status_code == 400


def test_job_list_pages_through_older_jobs(client_for):
    from laneway.testing import memory_app

    app = memory_app()

    @app.task(name="t")
    def t(i: int) -> None: ...

    jobs = [t.enqueue(i) for i in range(60)]
    client = client_for(create_app(app))
    first = client.get("/jobs").text
    second = client.get("/jobs", params={"offset": "50"}).text

    assert jobs[-1].id in first and jobs[0].id not in first
    assert 'href="/jobs?offset=50"' in first
    assert jobs[0].id in second and 'href="/jobs?offset=0"' in second


def test_job_page_shows_arguments_attempts_error_and_traceback(shop, client):
    page = client.get(f"/jobs/{shop.stuck.id}")

    assert page.status_code == 200
    html = page.text
    assert "billing.charge" in html
    assert "1 of 1" in html
    assert "RuntimeError: card declined for &lt;user 42&gt;" in html
    assert "Traceback (most recent call last)" in html
    assert "<pre>[\n  42,\n  999\n]</pre>" in html
    assert f'action="/jobs/{shop.stuck.id}/retry"' in html
    assert f'action="/jobs/{shop.stuck.id}/cancel"' in html


def test_job_page_shows_a_result_and_offers_no_action_on_a_succeeded_job(shop, client):
    html = client.get(f"/jobs/{shop.sent.id}").text

    assert "&quot;sent to ann@example.com&quot;" in html
    assert "/retry" not in html and "/cancel" not in html


def test_job_page_survives_a_payload_that_cannot_be_decoded(client_for):
    from laneway._records import NewJob, OnDead
    from laneway.testing import memory_app

    app = memory_app()
    app.backend.enqueue(
        [
            NewJob(
                id="garbage",
                task="t",
                queue="q",
                lane=None,
                priority=2,
                payload=b"\xff\x00<b>",
                max_attempts=1,
                timeout_s=None,
                unique=None,
                result_ttl_s=60.0,
                on_dead=OnDead.SKIP,
            )
        ]
    )
    html = client_for(create_app(app)).get("/jobs/garbage").text

    assert "payload cannot be decoded" in html
    assert "<b>" not in html.split("<main")[1]


def test_user_data_is_escaped_on_every_page(shop, client):
    for path in ["/", "/queues/mail", "/jobs", f"/jobs/{shop.waiting.id}", "/dead"]:
        html = client.get(path).text
        assert "<script>alert" not in html, path
        assert "<user 42>" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/jobs/{shop.waiting.id}").text


def test_dead_letter_list_has_retry_cancel_and_bulk_buttons(shop, client):
    html = client.get("/dead").text

    assert shop.stuck.id in html and shop.bounced.id in html
    assert shop.waiting.id not in html
    assert f'action="/jobs/{shop.stuck.id}/retry"' in html
    assert 'action="/dead/purge"' in html and 'action="/dead/retry"' in html
    assert 'data-confirm="Delete every dead job?' in html


def test_retry_button_puts_the_dead_job_back_at_the_head_of_its_lane(shop, client):
    token = client.csrf("/dead")
    answer = client.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": token, "next": "/dead"})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/dead"
    assert status_of(shop.app, shop.stuck) is laneway.Status.QUEUED
    assert "back at the head of its lane" in client.get("/dead").text
    assert "back at the head of its lane" not in client.get("/dead").text


def test_an_in_place_refresh_leaves_the_message_to_the_page_being_opened(shop, client):
    token = client.csrf("/dead")
    client.post(f"/jobs/{shop.stuck.id}/retry", {"csrf": token, "next": "/dead"})

    refreshed = client.get("/dead", headers={"x-laneway-refresh": "1"}).text
    opened = client.get("/dead").text

    assert "back at the head of its lane" not in refreshed
    assert "back at the head of its lane" in opened


def test_a_message_in_the_url_is_never_shown(client):
    assert "go to evil" not in client.get("/?flash=go+to+evil").text


def test_cancel_button_cancels_a_waiting_job(shop, client):
    token = client.csrf()
    answer = client.post(f"/jobs/{shop.waiting.id}/cancel", {"csrf": token})

    assert answer.status_code == 303
    assert status_of(shop.app, shop.waiting) is laneway.Status.CANCELLED


def test_an_impossible_action_says_so_and_changes_nothing(shop, client):
    token = client.csrf()
    answer = client.post(f"/jobs/{shop.sent.id}/retry", {"csrf": token, "next": f"/jobs/{shop.sent.id}"})

    assert answer.headers["location"] == f"/jobs/{shop.sent.id}"
    assert "cannot be retried now" in client.get(answer.headers["location"]).text
    assert status_of(shop.app, shop.sent) is laneway.Status.SUCCEEDED


def test_purge_deletes_the_dead_jobs_of_one_queue_and_unblocks_its_lane(shop, client):
    token = client.csrf("/dead")
    answer = client.post("/dead/purge", {"csrf": token, "queue": "billing", "next": "/dead"})

    assert answer.status_code == 303
    assert "Purged 1 dead jobs of billing." in client.get("/dead").text
    assert shop.app.get_job(shop.stuck.id) is None
    assert status_of(shop.app, shop.bounced) is laneway.Status.DEAD
    assert shop.app.run_until_idle(["billing"]) == 1


def test_retry_all_retries_every_dead_job(shop, client):
    token = client.csrf("/dead")
    client.post("/dead/retry", {"csrf": token, "queue": ""})

    assert status_of(shop.app, shop.stuck) is laneway.Status.QUEUED
    assert status_of(shop.app, shop.bounced) is laneway.Status.QUEUED


def test_actions_never_redirect_off_site(shop, client):
    token = client.csrf()
    for target in ["//evil.example/x", "https://evil.example/", "/\\evil.example"]:
        answer = client.post(f"/jobs/{shop.sent.id}/retry", {"csrf": token, "next": target})
        assert answer.headers["location"].startswith("/"), target
        assert not answer.headers["location"].startswith("//"), target


def test_bus_page_lists_stored_subscriptions_and_raw_values(shop, client):
    doc = {
        "v": 1,
        "app": "billing",
        "written_at": 1_700_000_000.0,
        "subscriptions": [
            {
                "key": "on_user",
                "queue": "billing",
                "task": "billing.on_user",
                "matcher": {"bus_event_type": {"eq": "user_created"}},
                "priority": 2,
                "max_attempts": 20,
                "timeout_s": None,
                "result_ttl_s": 60.0,
                "on_dead": "skip",
            }
        ],
    }
    shop.app.backend.put_meta("bus:app:billing", json.dumps(doc).encode())
    shop.app.backend.put_meta("bus:other", b"<not json>")

    html = client.get("/bus").text

    assert "billing.on_user" in html and "<code>user_created</code>" in html
    assert "bus:other" in html and "&lt;not json&gt;" in html


def test_bus_page_shows_what_a_subscribing_worker_stored(client_for):
    from laneway.testing import memory_app

    billing = memory_app(name="billing")

    @billing.subscribe({"bus_event_type": "user_paid", "plan": "pro"}, queue="critical", name="paid")
    def on_paid(event: dict) -> None: ...

    billing.worker(idle_wait_s=0.01).run(burst=True)
    html = client_for(create_app(billing)).get("/bus").text

    assert "<td>billing</td>" in html
    assert 'href="/queues/critical"' in html
    assert "bus_event_type=user_paid,plan=pro" in html


def test_bus_page_says_when_nothing_is_subscribed(client):
    assert "No subscriptions are stored" in client.get("/bus").text


def test_metrics_endpoint_exposes_queue_gauges(shop, client):
    page = client.get("/metrics")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert 'laneway_queue_blocked_lanes{queue="billing"} 1.0' in page.text
    assert 'laneway_queue_jobs{queue="mail",status="dead"} 1.0' in page.text


def test_static_assets_are_served(client):
    assert "--accent" in client.get("/static/dashboard.css").text
    assert "data-confirm" in client.get("/static/dashboard.js").text


def test_backend_can_be_given_instead_of_an_app(shop, client_for):
    client = client_for(create_app(shop.app.backend, namespace="shop"))

    assert 'title="namespace">shop<' in client.get("/").text


def test_the_sampler_runs_while_the_server_runs(shop):
    import time

    web = create_app(shop.app, sample_s=0.05)
    sampler = web.state.dashboard.sampler

    async def run_lifespan() -> None:
        async with web.router.lifespan_context(web):
            deadline = time.monotonic() + 5
            while len(sampler.points()) < 1 and time.monotonic() < deadline:
                await __import__("asyncio").sleep(0.02)

    import asyncio

    asyncio.run(run_lifespan())
    assert sampler.points()[0].dead == 2
    assert sampler.stop.is_set()


def test_a_queue_whose_name_holds_a_slash_has_its_page(client_for):
    from laneway.testing import memory_app

    app = memory_app()
    app.task(name="t", queue="emails/high")(lambda: None).enqueue()
    client = client_for(create_app(app))
    assert 'href="/queues/emails%2Fhigh"' in client.get("/").text
    assert client.get("/queues/emails%2Fhigh").status_code == 200


def test_a_lanes_dead_letters_offer_no_bulk_action_that_would_reach_other_lanes(shop, client):
    html = client.get("/dead", params={"lane": "user:<42>"}).text
    assert shop.stuck.id in html
    assert 'action="/dead/purge"' not in html and 'action="/dead/retry"' not in html


def test_an_offset_past_any_page_is_an_empty_page(client_for, tmp_path):
    app = laneway.App(f"sqlite:///{tmp_path / 'd.db'}")  # SQLite overflowed at 2^63
    assert client_for(create_app(app)).get("/jobs", params={"offset": "9" * 30}).status_code == 200
    app.close()


def test_throughput_says_truncated_only_when_jobs_lie_beyond_the_scan(client_for):
    from laneway.dashboard._data import throughput
    from laneway.testing import memory_app

    app = memory_app()
    app.task(name="t")(lambda: None).enqueue_many([((), {})] * 30)
    app.run_until_idle()
    now = app.backend.now()
    assert throughput(app.backend, now, scan_limit=30).truncated is False
    assert throughput(app.backend, now, scan_limit=25).truncated is True
    assert throughput(app.backend, now, scan_limit=40).truncated is False
