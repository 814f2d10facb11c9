"""The dashboard's pages: each function turns backend records into an escaped body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._records import JobRecord, LaneInfo, QueueStats, Status
from ._data import CallView, LaneView, RawMeta, Sample, Subscription, Throughput
from ._html import (
    Html,
    age,
    badge,
    button_form,
    esc,
    fill,
    join,
    legend,
    link,
    queue_path,
    samples_chart,
    table,
    tag,
    throughput_chart,
    url,
    when,
)

NAV = (("/", "Overview"), ("/jobs", "Jobs"), ("/dead", "Dead letters"), ("/bus", "Bus"))
RETRYABLE = frozenset({Status.DEAD, Status.CANCELLED})
CANCELLABLE = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.DEAD})


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every page needs besides its data."""

    csrf: str
    read_only: bool
    here: str
    """Path and query of this page: where actions come back to."""
    namespace: str
    now: float
    """The backend's clock."""
    flash: str | None = None
    signed_in: bool = False
    refresh_s: float = 5.0


def short_id(job_id: str) -> str:
    """The random tail of a job id (its first 12 digits are a timestamp shared by neighbours)."""
    return f"…{job_id[-12:]}" if len(job_id) > 16 else job_id


def layout(ctx: Ctx, title: str, body: Html) -> Html:
    """The full page around ``body``."""
    active = ctx.here.split("?")[0]
    nav = join(link(href, label, aria_current="page" if active == href else None) for href, label in NAV)
    mode = tag("span", "read-only", cls="badge mode") if ctx.read_only else Html("")
    logout = button_form("/logout", "Sign out", ctx.csrf, cls="ghost") if ctx.signed_in else Html("")
    flash = tag("p", ctx.flash, cls="flash", role="status") if ctx.flash else Html("")
    return fill(
        "base.html",
        title=esc(title),
        namespace=esc(ctx.namespace),
        nav=nav,
        mode=mode,
        logout=logout,
        flash=flash,
        body=body,
        refresh=esc(f"{ctx.refresh_s:g}"),
        now=when(ctx.now),
        csrf=esc(ctx.csrf),
    )


def _card(label: str, value: object, cls: str = "") -> Html:
    return tag(
        "div",
        join([tag("span", value, cls="value"), tag("span", label, cls="label")]),
        cls=f"card {cls}".strip(),
    )


def cards(stats: Sequence[QueueStats], blocked: int) -> Html:
    """Totals over ``stats``: depth, running, delayed, dead, blocked lanes."""
    return join(
        [
            _card("depth", sum(s.queued + s.retrying for s in stats)),
            _card("running", sum(s.running for s in stats)),
            _card("delayed", sum(s.scheduled for s in stats)),
            _card("dead", sum(s.dead for s in stats), "bad" if any(s.dead for s in stats) else ""),
            _card("blocked lanes", blocked, "bad" if blocked else ""),
        ]
    )


def queues_table(stats: Sequence[QueueStats]) -> Html:
    rows = [
        [
            link(queue_path(s.queue), s.queue),
            _depth(s),
            s.running,
            s.scheduled,
            link(url("/dead", queue=s.queue), s.dead) if s.dead else 0,
            s.succeeded,
            s.lanes,
            age(s.oldest_queued_age_s),
        ]
        for s in stats
    ]
    cols = ["queue", "depth", "running", "delayed", "dead", "succeeded (stored)", "lanes", "oldest waiting"]
    return table(cols, rows, empty="No jobs in this namespace yet.")


def _depth(s: QueueStats) -> Html:
    depth = esc(s.queued + s.retrying)
    if not s.retrying:
        return depth
    return Html(depth + " " + tag("small", f"({s.retrying} retrying)"))


def lanes_table(lanes: Sequence[LaneInfo], *, show_queue: bool) -> Html:
    """Lanes with their depth, head, head attempts and state."""
    rows = []
    for lane in lanes:
        state = (
            tag("span", "blocked", cls="badge s-dead")
            if lane.blocked
            else tag("span", "held", cls="badge s-running")
            if lane.held
            else Html("waiting")
        )
        row: list[object] = [
            link(url("/jobs", queue=lane.queue, lane=lane.lane), lane.lane),
            lane.depth,
            link(f"/jobs/{lane.head_id}", short_id(lane.head_id), title=lane.head_id, cls="id"),
            badge(lane.head_status),
            lane.head_attempts,
            age(lane.head_age_s),
            state,
        ]
        rows.append([link(queue_path(lane.queue), lane.queue), *row] if show_queue else row)
    cols = ["lane", "depth", "head", "head status", "head attempts", "head age", "state"]
    return table(
        ["queue", *cols] if show_queue else cols, rows, empty="No lane has pending work.", cls="lanes"
    )


def overview(
    ctx: Ctx, stats: Sequence[QueueStats], lanes: LaneView, tp: Throughput, points: Sequence[Sample]
) -> Html:
    """The main page: totals, queues, throughput, backlog over time, blocked and oldest lanes."""
    note = f"Counted from the finished_at of {tp.scanned} stored succeeded and dead jobs."
    if tp.truncated:
        note += " The scan limit was reached: older minutes may be undercounted."
    return fill(
        "overview.html",
        cards=cards(stats, lanes.blocked),
        queues=queues_table(stats),
        throughput=throughput_chart(tp),
        throughput_legend=legend(["succeeded", "dead"]),
        throughput_note=esc(note),
        samples=samples_chart(points, ctx.now),
        samples_legend=legend(["depth", "running", "delayed", "dead"]),
        lanes=lanes_table(lanes.lanes, show_queue=True),
    )


def queue_page(
    ctx: Ctx, queue: str, stat: QueueStats | None, lanes: LaneView, recent: Sequence[JobRecord]
) -> Html:
    return fill(
        "queue.html",
        queue=esc(queue),
        cards=cards([stat] if stat else [], lanes.blocked),
        lanes=lanes_table(lanes.lanes, show_queue=False),
        jobs=jobs_table(ctx, recent),
        all_jobs=esc(url("/jobs", queue=queue)),
    )


def job_actions(ctx: Ctx, rec: JobRecord, back: str) -> Html:
    """Retry and cancel buttons for the states that allow them (none when read-only)."""
    if ctx.read_only:
        return Html("")
    parts = []
    if rec.status in RETRYABLE:
        parts.append(
            button_form(f"/jobs/{rec.id}/retry", "Retry", ctx.csrf, fields={"next": back}, cls="primary")
        )
    if rec.status in CANCELLABLE:
        parts.append(
            button_form(
                f"/jobs/{rec.id}/cancel",
                "Cancel",
                ctx.csrf,
                fields={"next": back},
                confirm=f"Cancel job {rec.id}?",
                cls="danger",
            )
        )
    return join(parts)


def jobs_table(ctx: Ctx, recs: Sequence[JobRecord]) -> Html:
    rows = [
        [
            link(f"/jobs/{r.id}", short_id(r.id), title=r.id, cls="id"),
            r.task,
            r.queue,
            r.lane or "",
            badge(r.status),
            f"{r.attempts}/{r.max_attempts}",
            when(r.enqueued_at),
            when(r.finished_at),
            tag("span", (r.error or "")[:80], title=r.error or None, cls="err"),
            job_actions(ctx, r, ctx.here),
        ]
        for r in recs
    ]
    cols = ["id", "task", "queue", "lane", "status", "attempts", "enqueued", "finished", "error", ""]
    return table(cols, rows, empty="No jobs match.", cls="jobs")


@dataclass(frozen=True, slots=True)
class JobFilter:
    queue: str | None = None
    status: Status | None = None
    lane: str | None = None
    offset: int = 0
    limit: int = 50


def jobs_page(ctx: Ctx, recs: Sequence[JobRecord], f: JobFilter, has_more: bool, *, dead: bool) -> Html:
    """The job list (or the dead-letter list) with filters, actions and paging."""
    base = "/dead" if dead else "/jobs"
    statuses = [] if dead else [None, *Status]
    filters = join(
        link(
            url(base, queue=f.queue, lane=f.lane, status=s.value if s else None),
            s.value if s else "all",
            aria_current="page" if s == f.status else None,
        )
        for s in statuses
    )
    heading = "Dead letters" if dead else "Jobs"
    if f.queue:
        heading += f" of {f.queue}"
    if f.lane:
        heading += f", lane {f.lane}"
    pager = []
    query = {"queue": f.queue, "lane": f.lane, "status": None if dead or f.status is None else f.status.value}
    if f.offset > 0:
        pager.append(link(url(base, **query, offset=max(0, f.offset - f.limit)), "newer"))
    if has_more:
        pager.append(link(url(base, **query, offset=f.offset + f.limit), "older"))
    # the bulk actions act on a queue's dead jobs: not offered on a lane's page, whose
    # heading would say they act on that lane alone
    actions = dead_actions(ctx, f.queue) if dead and recs and not f.lane else Html("")
    return fill(
        "jobs.html",
        heading=esc(heading),
        filters=filters,
        actions=actions,
        jobs=jobs_table(ctx, recs),
        pager=join(pager),
    )


def dead_actions(ctx: Ctx, queue: str | None) -> Html:
    if ctx.read_only:
        return Html("")
    scope = f"every dead job of {queue}" if queue else "every dead job"
    fields = {"queue": queue or "", "next": ctx.here}
    return tag(
        "div",
        join(
            [
                button_form(
                    "/dead/retry",
                    "Retry all",
                    ctx.csrf,
                    fields=fields,
                    confirm=f"Retry {scope}?",
                    cls="primary",
                ),
                button_form(
                    "/dead/purge",
                    "Purge all",
                    ctx.csrf,
                    fields=fields,
                    confirm=f"Delete {scope}? Lanes blocked behind them move on.",
                    cls="danger",
                ),
            ]
        ),
        cls="actions",
    )


def job_page(ctx: Ctx, rec: JobRecord, call: CallView) -> Html:
    """One job: its facts, arguments, result, error and traceback."""
    lane = link(url("/jobs", queue=rec.queue, lane=rec.lane), rec.lane) if rec.lane else "(none)"
    facts = [
        ("task", rec.task),
        ("queue", link(queue_path(rec.queue), rec.queue)),
        ("lane", lane),
        ("position in lane", rec.seq),
        ("priority", rec.priority),
        ("attempts", f"{rec.attempts} of {rec.max_attempts}"),
        ("enqueued", when(rec.enqueued_at)),
        ("due", when(rec.run_at)),
        ("started", when(rec.started_at)),
        ("finished", when(rec.finished_at)),
        ("worker", rec.worker),
        ("lease token", rec.token),
        ("timeout", f"{rec.timeout_s:g} s" if rec.timeout_s is not None else None),
        ("unique key", rec.unique),
        ("on dead", rec.on_dead.value),
        ("result kept", f"{rec.result_ttl_s:g} s"),
    ]
    dl = join(Html(tag("dt", k) + tag("dd", v)) for k, v in facts if v is not None and v != "")
    result = Html("")
    if rec.result is not None:
        result = Html(tag("h3", "result") + tag("pre", rec.result.decode("utf-8", errors="replace")))
    error = Html("")
    if rec.error or rec.traceback:
        error = tag(
            "section",
            join(
                [
                    tag("h2", "Last error"),
                    tag("p", rec.error, cls="err"),
                    tag("pre", rec.traceback or "", cls="traceback"),
                ]
            ),
        )
    decode_error = tag("p", f"payload cannot be decoded: {call.error}", cls="err") if call.error else Html("")
    return fill(
        "job.html",
        job_id=esc(rec.id),
        status=badge(rec.status),
        actions=job_actions(ctx, rec, ctx.here),
        facts=dl,
        decode_error=decode_error,
        args=esc(call.args),
        kwargs=esc(call.kwargs),
        headers=esc(call.headers),
        result=result,
        error=error,
    )


def bus_page(subs: Sequence[Subscription], raw: Sequence[RawMeta]) -> Html:
    rows = [
        [
            s.app,
            s.key,
            link(queue_path(s.queue), s.queue),
            s.task,
            tag("code", s.matcher),
            when(s.written_at),
        ]
        for s in subs
    ]
    table_html = table(
        ["app", "subscription", "queue", "task", "matcher", "written"],
        rows,
        empty="No subscriptions are stored (no subscribing app's worker has started).",
    )
    raw_html = Html("")
    if raw:
        raw_html = Html(
            tag("h2", "Other stored bus values")
            + join(Html(tag("h3", tag("code", r.key)) + tag("pre", r.text)) for r in raw)
        )
    return fill("bus.html", subscriptions=table_html, raw=raw_html)
