"""Small HTML building blocks. Every value from a backend or a request goes through
``esc`` unless it is already ``Html`` built here, so user data never becomes markup."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import quote, urlencode

from .._records import Status
from ._data import Sample, Throughput

CHART_W = 720
CHART_H = 160
_PAD_TOP = 14


class Html(str):
    """Markup that is already safe: inserted into pages as is."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(esc(p) for p in parts))


def tag(name: str, content: object = "", /, **attrs: object) -> Html:
    """``<name attrs>content</name>``; attribute names use ``_`` for ``-``, ``cls`` for class."""
    rendered = "".join(
        f' {_attr(key)}="{esc(value)}"'
        for key, value in attrs.items()
        if value is not None and value is not False
    )
    return Html(f"<{name}{rendered}>{esc(content)}</{name}>")


def void(name: str, /, **attrs: object) -> Html:
    """An element without content or end tag (``input``)."""
    return Html(tag(name, **attrs)[: -len(f"</{name}>")])


def _attr(key: str) -> str:
    return "class" if key == "cls" else key.rstrip("_").replace("_", "-")


def link(href: str, text: object, **attrs: object) -> Html:
    return tag("a", text, href=href, **attrs)


def queue_path(queue: str) -> str:
    """The page of ``queue``: its name quoted, slashes included (``emails/high``)."""
    return f"/queues/{quote(queue, safe='')}"


def url(path: str, **query: object) -> str:
    """``path`` with the non-empty ``query`` values, urlencoded."""
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(params)}" if params else path


@cache
def template(name: str) -> Template:
    """A ``string.Template`` from the package's ``templates`` folder."""
    text = resources.files("laneway.dashboard").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text)


@cache
def static_text(name: str) -> str:
    return resources.files("laneway.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def fill(name: str, **values: Html) -> Html:
    """Fill template ``name``; values must be ``Html`` (escaped or built here)."""
    return Html(template(name).substitute({k: esc(v) for k, v in values.items()}))


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str, cls: str = "") -> Html:
    """A table; cells are escaped unless they are ``Html``."""
    body = [tag("tr", join(tag("td", cell) for cell in row)) for row in rows]
    if not body:
        return tag("p", empty, cls="empty")
    head = tag("thead", tag("tr", join(tag("th", c) for c in columns)))
    return tag("table", Html(head + tag("tbody", join(body))), cls=f"grid {cls}".strip())


def when(ts: float | None) -> Html:
    """Epoch seconds as a UTC time (full timestamp in the title)."""
    if ts is None:
        return Html("")
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return tag(
        "time", moment.strftime("%m-%d %H:%M:%S"), datetime=moment.isoformat(), title=moment.isoformat()
    )


def age(seconds: float | None) -> str:
    """A short human age: ``4.2s``, ``12m``, ``3.1h``, ``2.0d``."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def badge(status: Status | str) -> Html:
    value = status.value if isinstance(status, Status) else status
    return tag("span", value, cls=f"badge s-{value}")


def button_form(
    action: str,
    label: str,
    csrf: str,
    *,
    fields: Mapping[str, str] | None = None,
    confirm: str | None = None,
    cls: str = "",
) -> Html:
    """A one-button POST form carrying the CSRF token (``confirm`` asks first, in JS)."""
    hidden = [void("input", type="hidden", name="csrf", value=csrf)]
    hidden += [void("input", type="hidden", name=k, value=v) for k, v in (fields or {}).items()]
    button = tag("button", label, type="submit", cls=f"btn {cls}".strip())
    return tag(
        "form", join([*hidden, button]), method="post", action=action, cls="inline", data_confirm=confirm
    )


def throughput_chart(tp: Throughput) -> Html:
    """Stacked bars (succeeded, dead) per bucket, as inline SVG with a tooltip per bar."""
    n = len(tp.succeeded)
    top = max([s + d for s, d in zip(tp.succeeded, tp.dead, strict=True)] + [1])
    plot_h = CHART_H - _PAD_TOP - 18
    bars = [
        _bar(
            i,
            CHART_W / n,
            plot_h,
            ok / top,
            dead / top,
            f"{_clock(tp.start + i * tp.bucket_s)}: {ok} succeeded, {dead} dead",
        )
        for i, (ok, dead) in enumerate(zip(tp.succeeded, tp.dead, strict=True))
    ]
    per = "minute" if tp.bucket_s == 60 else _span(tp.bucket_s)
    axis = _axis(f"{top} per {per}", f"-{_span(n * tp.bucket_s)}", "now", plot_h)
    return _svg(join([*bars, axis]), "Jobs finished per minute")


def _bar(i: int, bar_w: float, plot_h: float, ok: float, dead: float, label: str) -> Html:
    """One bucket: a succeeded rect, a dead rect on top, and a full-height hover target."""
    x, base = i * bar_w, _PAD_TOP + plot_h
    h_ok, h_dead = plot_h * ok, plot_h * dead
    w = f"{max(bar_w - 2, 1):.1f}"
    return tag(
        "g",
        join(
            [
                tag("title", label),
                tag(
                    "rect", x=f"{x + 1:.1f}", y=f"{base - h_ok:.1f}", width=w, height=f"{h_ok:.1f}", cls="ok"
                ),
                tag(
                    "rect",
                    x=f"{x + 1:.1f}",
                    y=f"{base - h_ok - h_dead:.1f}",
                    width=w,
                    height=f"{h_dead:.1f}",
                    cls="dead",
                ),
                tag(
                    "rect",
                    x=f"{x:.1f}",
                    y=str(_PAD_TOP),
                    width=f"{bar_w:.1f}",
                    height=f"{plot_h:.1f}",
                    cls="hit",
                ),
            ]
        ),
    )


def samples_chart(points: Sequence[Sample], now: float) -> Html:
    """Lines of depth, running, delayed and dead over the sampled period, as inline SVG."""
    if len(points) < 2:
        return tag("p", "collecting samples (one every few seconds while the dashboard runs)", cls="empty")
    first = points[0].at
    span = max(now - first, 1.0)
    plot_h = CHART_H - _PAD_TOP - 18
    series = {
        "depth": [p.depth for p in points],
        "running": [p.running for p in points],
        "delayed": [p.delayed for p in points],
        "dead": [p.dead for p in points],
    }
    top = max([*(v for values in series.values() for v in values), 1])
    lines = []
    for name, values in series.items():
        coords = " ".join(
            f"{CHART_W * (p.at - first) / span:.1f},{_PAD_TOP + plot_h - plot_h * v / top:.1f}"
            for p, v in zip(points, values, strict=True)
        )
        lines.append(
            tag("polyline", tag("title", f"{name}: {values[-1]} now"), points=coords, cls=f"line {name}")
        )
    axis = _axis(str(top), f"-{_span(span)}", "now", plot_h)
    return _svg(join([*lines, axis]), "Depth, running, delayed and dead over time")


def legend(names: Sequence[str]) -> Html:
    return tag("p", join(tag("span", n, cls=f"key {n}") for n in names), cls="legend")


def _axis(top: str, left: str, right: str, plot_h: float) -> Html:
    y = _PAD_TOP + plot_h
    return join(
        [
            tag("line", x1="0", y1=f"{y:.1f}", x2=str(CHART_W), y2=f"{y:.1f}", cls="axis"),
            tag("text", top, x="2", y="10", cls="label"),
            tag("text", left, x="2", y=str(CHART_H - 3), cls="label"),
            tag("text", right, x=str(CHART_W - 2), y=str(CHART_H - 3), cls="label end"),
        ]
    )


def _svg(content: Html, title: str) -> Html:
    return tag("svg", content, viewBox=f"0 0 {CHART_W} {CHART_H}", role="img", aria_label=title, cls="chart")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M UTC")


def _span(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.0f}h"
    if seconds >= 120:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
