"""Render benchmarks/results/<mode>/*.json as Markdown and PNG plots.

    python benchmarks/report.py            # every mode that has results; README from full (else quick)
    python benchmarks/report.py quick      # only results/quick

Writes results/<mode>/report.md, results/<mode>/scale-claim.png, scale-memory.png and
drain.png, and replaces the part of benchmarks/README.md between the results markers.
Every number is the median of the runs of its phase.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

PEER_ORDER = ["celery", "rq", "rq-simpleworker", "dramatiq", "huey", "arq", "saq", "taskiq",
              "procrastinate", "pgqueuer"]  # fmt: skip
BACKENDS = ["sqlite", "redis", "postgres"]
BUSY_LOAD = 1.0  # a 1-minute load average above this at a run's start marks it "smoke numbers only"
CONTROLS = ("control1", "control2")  # labels of the ordered step's unordered drains (run.py)
WORKLOADS = [
    ("unique", "(a) every job on its own lane"),
    ("hot100", "(b) 100 hot lanes, jobs round-robin"),
    ("hot10", "(c) 10 lanes, batching off (default -c 16)"),
    ("hot10-batch8", "(c) 10 lanes, `--batch 8` (default -c 16)"),
    ("hot10-c80", "(c) 10 lanes, batching off, -c 80"),
    ("hot10-batch20-c80", "(c) 10 lanes, `--batch 20`, -c 80"),
    ("mixed", "(d) lanes of 20, 1% retrying or delayed"),
]


def med(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, nd: int = 0) -> str:
    return "—" if v is None else f"{v:,.{nd}f}"


class Results:
    def __init__(self, d: str) -> None:
        self.dir = d
        self.systems: dict[str, dict] = {}
        self.scale: dict[str, dict] = {}
        self.selfbench: dict[str, dict] = {}
        self.raw: dict | None = None
        self.machine: dict = {}
        for p in sorted(glob.glob(os.path.join(d, "*.json"))):
            with open(p) as f:
                x = json.load(f)
            base = os.path.basename(p)
            if base == "machine.json":
                self.machine = x
            elif base.startswith("scale-"):
                self.scale[x["backend"]] = x
            elif base.startswith("selfbench-"):
                self.selfbench[x["backend"]] = x
            elif "system" in x:
                self.systems[x["system"]] = x
            elif "redis_py" in x:
                self.raw = x

    def value(self, system: str, phase: str, key: str = "rate") -> float | None:
        s = self.systems.get(system)
        if not s:
            return None
        return med(s["phases"].get(phase, []), key)

    def ceiling(self, section: str, key: str) -> float | None:
        """One figure of raw_ceiling.json (e.g. "redis_py", "incr_ops"), or None."""
        return ((self.raw or {}).get(section) or {}).get(key)

    def control(self, backend: str, phase: str) -> float | None:
        """The unordered drain the ordered workloads of ``backend`` are compared with: the
        median of the ordered step's control runs (before and after its workloads), or,
        in results from before there were controls, the laneway step's unordered row."""
        runs = [x for label in CONTROLS
                for x in self.systems.get(f"laneway-{backend}-{label}", {}).get("phases", {}).get(phase, [])]  # fmt: skip
        if self.has_controls(backend):
            return med(runs, "rate") if runs else None
        return self.value(f"laneway-{backend}", phase)

    def peer_beside_control(self, backend: str, phase: str, best: float | None) -> float | None:
        """The best peer's rate ``best`` as it would have been beside ``backend``'s controls:
        scaled by how much faster laneway's unordered drain ran there than in the laneway
        step, which ran beside the peers. Results from before the controls compare with the
        laneway step's row itself, so ``best`` stays as it is."""
        step, control = self.value(f"laneway-{backend}", phase), self.control(backend, phase)
        if not best or not step or not control:
            return None
        return best * control / step

    def controls_apart(self, backend: str) -> str:
        """The before and after controls of ``backend``, drain 1 and drain 2, as table text."""
        return ", ".join(
            " → ".join(fmt(self.value(f"laneway-{backend}-{label}", phase)) for label in CONTROLS)
            + f" ({phase[-1]} proc)"
            for phase in ("drain1", "drain2")
        )

    def ordered_runs(self) -> int | str:
        """How many runs each ordered workload and control had (they take the median)."""
        counts = {len(s["phases"].get("drain1", [])) for name, s in self.systems.items()
                  if any(name.endswith(f"-{label}") for label in CONTROLS)}  # fmt: skip
        return counts.pop() if len(counts) == 1 else "/".join(map(str, sorted(counts))) or "?"

    def has_controls(self, backend: str) -> bool:
        return any(f"laneway-{backend}-{label}" in self.systems for label in CONTROLS)

    def cell(self, system: str, phase: str, key: str = "rate", nd: int = 0) -> str:
        s = self.systems.get(system)
        if not s:
            return "—"
        runs = s["phases"].get(phase)
        if not runs:
            return "error" if phase in s.get("errors", {}) else "—"
        v = fmt(med(runs, key), nd)
        if any(r.get("partial") for r in runs):
            v += "*"
        return v

    def peers(self) -> list[str]:
        return [p for p in PEER_ORDER if p in self.systems]

    def best_peer(self, phase: str, key: str = "rate", low: bool = False) -> tuple[str | None, float | None]:
        vals = [(p, self.value(p, phase, key)) for p in self.peers()]
        found = [(p, v) for p, v in vals if v is not None]
        if not found:
            return None, None
        return (min if low else max)(found, key=lambda pv: pv[1])


def laneway_rows(r: Results) -> list[str]:
    """laneway's unordered rows: per backend the sync task, then the ``async def`` one."""
    names = [f"laneway-{b}{h}" for b in BACKENDS for h in ("", "-async")]
    return [n for n in names if n in r.systems]


# --- Markdown --------------------------------------------------------------------------


def measured_commits(r: Results, m: dict) -> str:
    """The commits laneway's result rows name, when they differ from the run's start
    (the tree changed while the run was under way: each row's version says which ran)."""
    seen = sorted({
        v.rsplit("(", maxsplit=1)[-1].rstrip(")") for name, d in r.systems.items()
        if name.startswith("laneway-") and "(" in (v := str(d.get("version", "")))
    })  # fmt: skip
    if not seen or seen == [m.get("laneway_commit")]:
        return ""
    return " at the start; the laneway rows were measured at " + ", ".join(f"`{c}`" for c in seen)


def machine_md(r: Results) -> list[str]:
    m = r.machine
    if not m:
        return ["(no machine.json: run benchmarks/run.py)"]
    s = m.get("settings", {})
    loads = [i.get("load_avg_at_start") or 0 for i in m.get("invocations", [m])]
    out = []
    if max(loads, default=0) > BUSY_LOAD:
        out.append(f"> **Smoke numbers only**: the machine was busy when this run started (load average "
                   f"{max(loads):.1f} on {m.get('cores')} cores). Rerun on a quiet machine.\n")  # fmt: skip
    out += [
        f"- **Run**: `{m.get('command', '?')}` ({m.get('mode')} mode), {m.get('started')} → {m.get('finished', '?')}"
        + (f", {m['duration_s'] / 60:.0f} min" if m.get("duration_s") else ""),
        f"- **Machine**: {m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gib')} GiB RAM; {m.get('os')}; "
        f"load average at start {fmt(m.get('load_avg_at_start'), 2)}",
        f"- **Servers** (private, loopback, started by the run): {m.get('redis_server', '?').split(' sha=')[0]} "
        f"(no persistence); {m.get('postgres', '?')} (stock settings, fsync on); SQLite: a file in benchmarks/.run",
        f"- **Python** {m.get('python')}; laneway at commit `{m.get('laneway_commit')}`"
        + measured_commits(r, m),
        f"- **Sizes**: {s.get('n', '?'):,} jobs per phase, {s.get('runs')} run(s) per phase (median shown"
        + (f"; {r.ordered_runs()} per ordered workload and control" if r.ordered_runs() != "?" else "")
        + "), "
        f"{s.get('samples')} latency samples; drains cut {s.get('drain_timeout')} s after the first completion (`*`)",
    ]
    parts = m.get("invocations", [])
    if len(parts) > 1:
        out.append(
            "- **Run in parts**: "
            + "; ".join(
                f"`{i['command']}` {i['started']} ({(i.get('duration_s') or 0) / 60:.0f} min)" for i in parts
            )
        )
    return out


def main_table(r: Results) -> list[str]:
    out = [
        "| system | version | backend | enqueue/s | bulk enqueue/s | async enqueue/s | drain/s 1 proc "
        "| drain/s 2 procs | pickup p50 ms | pickup p99 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = laneway_rows(r) + r.peers()
    for name in rows:
        s = r.systems[name]
        bold = "**" if name.startswith("laneway") else ""
        out.append(
            f"| {bold}{name}{bold} | {s['version']} | {s['backend']} | {r.cell(name, 'enqueue')} "
            f"| {r.cell(name, 'bulk')} | {r.cell(name, 'concurrent')} | {r.cell(name, 'drain1')} "
            f"| {r.cell(name, 'drain2')} | {r.cell(name, 'latency', 'p50_ms', 1)} "
            f"| {r.cell(name, 'latency', 'p99_ms', 1)} |"
        )
    return out


def met(ok: bool) -> str:
    """A target's verdict as the report prints it."""
    return "met" if ok else "**not met**"


def targets_md(r: Results) -> list[str]:
    out = []
    for phase, procs in (("drain1", "1 process"), ("drain2", "2 processes")):
        peer, best = r.best_peer(phase)
        lw = r.value("laneway-redis", phase)
        if not best:
            continue
        if lw:
            out.append(f"- Drain with {procs} ≥ 2x the best peer: laneway-redis {fmt(lw)}/s vs {peer} "
                       f"{fmt(best)}/s = {lw / best:.2f}x ({met(lw >= 2 * best)}).")  # fmt: skip
        for name in laneway_rows(r):
            v = r.value(name, phase)
            if v and name != "laneway-redis":
                out.append(f"- {name} drain with {procs}: {fmt(v)}/s = {v / best:.2f}x the best peer.")
    out += lanes_on_target_md(r)
    p50 = r.value("laneway-redis", "latency", "p50_ms")
    if p50 is not None:
        out.append(f"- Pickup p50 ≤ 1 ms on Redis: {p50:.2f} ms ({met(p50 <= 1.0)}).")
    out += enqueue_target_md(r)
    return out


def enqueue_target_md(r: Results) -> list[str]:
    """Enqueue (one call at a time) against 2x Huey, beside this run's ceiling for any call
    that waits for one reply: redis-py's own INCR loop."""
    huey, lw = r.value("huey", "enqueue"), r.value("laneway-redis", "enqueue")
    if not huey or not lw:
        return []
    line = (f"- Enqueue, one call, ≥ 2x Huey: laneway-redis {fmt(lw)}/s vs huey {fmt(huey)}/s = {lw / huey:.2f}x "
            f"({met(lw >= 2 * huey)}).")  # fmt: skip
    incr = r.ceiling("redis_py", "incr_ops")
    if incr:
        line += (f" redis-py's own `INCR` loop ran at {fmt(incr)}/s in this run, {incr / huey:.2f}x Huey: "
                 "the most any call that waits for the server's reply can do with this client")  # fmt: skip
        line += " (2x is out of reach here)." if incr < 2 * huey else "."
    return [line]


def ordered_md(r: Results) -> list[str]:
    _, best1 = r.best_peer("drain1")
    _, best2 = r.best_peer("drain2")
    controls = any(r.has_controls(b) for b in BACKENDS)
    out = [
        "Drain rates (jobs/s) of laneway's ordered workloads next to its own unordered drain on the "
        "same backend (target: ≥ 80 %) and the best peer's unordered drain in this run "
        f"({fmt(best1)}/s with 1 process, {fmt(best2)}/s with 2)."
        + (
            " The unordered drain they are compared with is the *control* row: the same drain measured "
            "again in the ordered step, once before its workloads and once after them (median of those "
            f"runs, {r.ordered_runs()} per control), so that both sides of each percentage come from the "
            "same quarter hour; the note gives the two controls apart, a measure of the drift. The "
            "peers ran earlier in the run, so *x best peer* does not divide these rates by the peer's: "
            "it is the row's share of the control times the ratio of laneway's unordered drain (the "
            "laneway step's row) to the best peer's, each pair measured in the same quarter hour."
            if controls
            else ""
        ),
        "",
        "| backend | workload | drain 1 proc | % of unordered | x best peer | drain 2 procs | % of unordered "
        "| x best peer | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b in BACKENDS + [f"{x}-async" for x in BACKENDS]:  # sync task, then the async def rows
        if not r.has_controls(b) and b not in BACKENDS:
            continue
        base1, base2 = r.control(b, "drain1"), r.control(b, "drain2")
        peer1, peer2 = r.peer_beside_control(b, "drain1", best1), r.peer_beside_control(b, "drain2", best2)
        if r.has_controls(b):
            out.append(f"| {shown(b)} | control: unordered, before and after | {fmt(base1)} | {pct(base1, base1)} "
                       f"| {ratio(base1, peer1)} | {fmt(base2)} | {pct(base2, base2)} | {ratio(base2, peer2)} "
                       f"| before / after: {r.controls_apart(b)}; the laneway step's row: "
                       f"{r.cell(f'laneway-{b}', 'drain1')} / {r.cell(f'laneway-{b}', 'drain2')} |")  # fmt: skip
        for key, desc in WORKLOADS:
            name = f"laneway-{b}-{key}"
            if name not in r.systems:
                continue
            v1, v2 = r.value(name, "drain1"), r.value(name, "drain2")
            note = ""
            if key == "mixed":
                runs = r.systems[name]["phases"].get("drain1", [])
                alls = [x.get("all_done_s") for x in runs]
                hold = r.systems[name].get("hold_s")
                target = runs[0].get("target") if runs else None
                note = (f"rate over the {fmt(target)} jobs not held; held lanes wait {fmt(hold, 0)} s; all done after "
                        + " / ".join("never" if x is None else f"{x:.1f} s" for x in alls))  # fmt: skip
            if key == "unique":
                e, e0 = r.value(name, "enqueue"), r.value(f"laneway-{b}", "enqueue")
                if e:
                    note = f"enqueue {fmt(e)}/s with a lane each" + (f" vs {fmt(e0)}/s without" if e0 else "")
            out.append(
                f"| {shown(b)} | {desc} | {r.cell(name, 'drain1')} | {pct(v1, base1)} | {ratio(v1, peer1)} "
                f"| {r.cell(name, 'drain2')} | {pct(v2, base2)} | {ratio(v2, peer2)} | {note} |"
            )
    return out


def shown(backend: str) -> str:
    """An ordered table's backend cell: ``redis`` or ``redis, async def``."""
    return backend.replace("-async", ", `async def`")


def lanes_on_target_md(r: Results) -> list[str]:
    """Issue 5's drain target with lanes on (a lane per job, 100 hot lanes), on Redis, as the
    ordered table's fair *x best peer*, for the sync task and the ``async def`` one."""
    out = []
    for b in ("redis", "redis-async"):
        cells = []
        for key, what in (("unique", "a lane per job"), ("hot100", "100 hot lanes")):
            fair = []
            for phase in ("drain1", "drain2"):
                v, peer = (
                    r.value(f"laneway-{b}-{key}", phase),
                    r.peer_beside_control(b, phase, r.best_peer(phase)[1]),
                )
                fair.append(v / peer if v and peer else None)
            if all(x is not None for x in fair):
                cells.append((what, fair))
        if cells:
            ok = all(x >= 2 for _, fair in cells for x in fair if x is not None)
            text = "; ".join(f"{what} {fair[0]:.2f}x / {fair[1]:.2f}x" for what, fair in cells)
            out.append(f"- Redis drain with lanes on, {shown(b).replace('redis, ', '') if b != 'redis' else 'sync task'}, "
                       f"≥ 2x the best peer with 1 / 2 processes (the ordered table's *x best peer*): {text} ({met(ok)}).")  # fmt: skip
    return out


def pct(v: float | None, base: float | None) -> str:
    return "—" if not v or not base else f"{100 * v / base:.0f} %"


def ratio(v: float | None, base: float | None) -> str:
    return "—" if not v or not base else f"{v / base:.2f}x"


def scale_md(r: Results, rel: str) -> list[str]:
    if not r.scale:
        return ["(no scale results)"]
    lanes = sorted({p["lanes"] for s in r.scale.values() for p in s["points"]})
    bks = [b for b in BACKENDS if b in r.scale]
    out = [
        f"![claim latency]({rel}/scale-claim.png) ![storage per lane]({rel}/scale-memory.png)",
        "",
        "| lanes | " + " | ".join(f"{b} claim p50 / p99 ms | {b} bytes/lane" for b in bks) + " |",
        "|---:|" + "---:|---:|" * len(bks),
    ]
    for n in lanes:
        cells = []
        for b in bks:
            p = next((p for p in r.scale[b]["points"] if p["lanes"] == n), None)
            if p is None:
                cells += ["—", "—"]
            else:
                cells += [f"{p['claim_p50_ms']:.2f} / {p['claim_p99_ms']:.2f}", fmt(p["bytes_per_lane"])]
        out.append(f"| {n:,} | " + " | ".join(cells) + " |")
    claims = next(iter(r.scale.values()))["claims"]
    cut = [f"{b} at {p['lanes']:,} lanes ({p['claims']} claims)" for b, s in r.scale.items() for p in s["points"]
           if p.get("claims", claims) < claims]  # fmt: skip
    out += [
        "",
        f"Each point: that many ready lanes with one queued job each; {claims} claims of one job "
        "(`backend.claim(limit=1)`, each followed by its `finish`); bytes per lane = growth of the "
        "backend's storage since the empty namespace (Redis `used_memory`, Postgres table+index+TOAST "
        "size of the namespace's schema, SQLite used pages) over the lanes.",
    ]
    if cut:
        out.append("Claims cut by the per-point time budget: " + ", ".join(cut) + ".")
    return out


def selfbench_md(r: Results) -> list[str]:
    if not r.selfbench:
        return ["(not run: `--steps bench`)"]
    phases = ["enqueue", "async", "bulk", "drain", "ordered"]
    slots = sorted({str(x.get("concurrency", "?")) for x in r.selfbench.values()})
    out = [
        "`laneway bench --jobs N` on each private server: the same phases with a task that does nothing "
        f"(no Redis probe), 1 worker process x {'/'.join(slots)} slots; `drain` runs everything the three "
        "enqueue phases queued; `ordered` spreads N jobs over 100 lanes.",
        "",
        "| backend | " + " | ".join(f"{p}/s" for p in phases) + " | pickup p50 / p99 ms |",
        "|---|" + "---:|" * (len(phases) + 1),
    ]
    for b in BACKENDS:
        x = r.selfbench.get(b)
        if not x:
            continue
        ph = {p["phase"]: p for p in x["phases"]}
        lat = ph.get("latency", {})
        cells = [fmt(ph.get(p, {}).get("rate")) for p in phases]
        out.append(
            f"| {b} | "
            + " | ".join(cells)
            + f" | {fmt(lat.get('p50_ms'), 2)} / {fmt(lat.get('p99_ms'), 2)} |"
        )
    return out


def settings_md(r: Results) -> list[str]:
    out = ["| system | worker, 1 process | worker, 2 processes | bulk API | drain start-up s (1 / 2 procs) |",
           "|---|---|---|---|---:|"]  # fmt: skip
    for name in laneway_rows(r) + r.peers():
        s = r.systems[name]
        ph = s["phases"]
        out.append(f"| {name} | {s['worker_1']} | {s['worker_2']} | {s['bulk_api'] or 'none'} "
                   f"| {fmt(med(ph.get('drain1', []), 'startup_s'), 1)} / {fmt(med(ph.get('drain2', []), 'startup_s'), 1)} |")  # fmt: skip
    return out


def runs_md(r: Results) -> list[str]:
    out = ["| system | enqueue | bulk | async enqueue | drain 1 proc | drain 2 procs | pickup p50 | pickup p99 |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in sorted(r.systems):
        ph = r.systems[name]["phases"]

        def runs(phase: str, key: str = "rate", nd: int = 0, ph: dict = ph) -> str:
            return (
                " / ".join(fmt(x.get(key), nd) + ("*" if x.get("partial") else "") for x in ph.get(phase, []))
                or "—"
            )

        out.append(f"| {name} | {runs('enqueue')} | {runs('bulk')} | {runs('concurrent')} | {runs('drain1')} "
                   f"| {runs('drain2')} | {runs('latency', 'p50_ms', 1)} | {runs('latency', 'p99_ms', 1)} |")  # fmt: skip
    errs = [
        f"- {n} {ph}: {msgs[0]}"
        for n, s in sorted(r.systems.items())
        for ph, msgs in s.get("errors", {}).items()
    ]
    if errs:
        out += ["", "Errors recorded:", "", *errs]
    return out


def raw_md(r: Results) -> list[str]:
    x = r.raw
    if not x:
        return []
    out = [f"Servers' own ceilings (Redis {x.get('redis_version')}, redis-py {x.get('redis_py')}):", "",
           "| measurement | ops/s |", "|---|---:|"]  # fmt: skip
    for k in ("redis_benchmark_P1", "redis_benchmark_P16"):
        b = x.get(k) or {}
        for c in ("SET", "LPUSH", "RPOP"):
            if c in b:
                out.append(f"| redis-benchmark -P {k.split('P')[-1]} {c} | {fmt(b[c]['rps'])} |")
    labels = [("redis_py", "lpush_ops", "redis-py LPUSH, one at a time"), ("redis_py", "incr_ops", "redis-py INCR"),
              ("redis_py", "lpush_brpop_pairs", "redis-py LPUSH+BRPOP pairs"),
              ("redis_py", "lpush_pipelined_1000_ops", "redis-py LPUSH pipelined 1000"),
              ("redis_py_async", "async_lpush_ops", "redis.asyncio LPUSH"),
              ("postgres_psycopg", "select1_ops", "psycopg SELECT 1"),
              ("postgres_psycopg", "insert_autocommit_ops", "psycopg INSERT autocommit"),
              ("postgres_psycopg", "insert_batch_1000_rows", "psycopg INSERT 1000 rows/transaction (rows/s)")]  # fmt: skip
    for sect, key, label in labels:
        v = r.ceiling(sect, key)
        if v is not None:
            out.append(f"| {label} | {fmt(v)} |")
    return out


def render(r: Results, rel: str) -> str:
    parts = [
        *machine_md(r),
        "",
        "### Every system, unordered (the shared harness's workload)",
        "",
        *main_table(r),
        "",
        "`*` = cut by the time bound; the rate is over the jobs done by then. Pickup = task start - enqueue call.",
        "",
        *targets_md(r),
        "",
        f"![drain throughput]({rel}/drain.png)",
        "",
        "### Ordered workloads (laneway only: nobody else has lanes)",
        "",
        *ordered_md(r),
        "",
        "### laneway by itself (no probe in the task)",
        "",
        *selfbench_md(r),
        "",
        "### Scale: claim latency and storage per lane",
        "",
        *scale_md(r, rel),
        "",
        "<details><summary>Worker command lines, every run, server ceilings</summary>",
        "",
        *settings_md(r),
        "",
        *runs_md(r),
        "",
        *raw_md(r),
        "",
        "</details>",
    ]
    return "\n".join(parts) + "\n"


# --- plots -------------------------------------------------------------------------------


def plots(r: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"redis": "tab:red", "postgres": "tab:blue", "sqlite": "tab:green"}
    if r.scale:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for b, s in r.scale.items():
            xs = [p["lanes"] for p in s["points"]]
            ax.plot(xs, [p["claim_p50_ms"] for p in s["points"]], "o-", color=colors.get(b), label=f"{b} p50")
            ax.plot(
                xs, [p["claim_p99_ms"] for p in s["points"]], "x--", color=colors.get(b), label=f"{b} p99"
            )
        ax.set(xscale="log", yscale="log", xlabel="ready lanes", ylabel="claim round trip, ms",
               title="laneway: claim latency vs number of lanes")  # fmt: skip
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(r.dir, "scale-claim.png"), dpi=100)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for b, s in r.scale.items():
            ax.plot([p["lanes"] for p in s["points"]], [p["bytes_per_lane"] for p in s["points"]], "o-",
                    color=colors.get(b), label=b)  # fmt: skip
        ax.set(xscale="log", xlabel="ready lanes (one queued job each)", ylabel="bytes per lane",
               title="laneway: storage per lane vs number of lanes")  # fmt: skip
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(r.dir, "scale-memory.png"), dpi=100)
        plt.close(fig)
    names = laneway_rows(r) + r.peers()
    if names:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        v1 = [r.value(n, "drain1") or 0 for n in names]
        v2 = [r.value(n, "drain2") or 0 for n in names]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], v1, 0.4, label="1 process")
        ax.bar([x + 0.2 for x in xs], v2, 0.4, label="2 processes")
        ax.set_xticks(list(xs), names, rotation=35, ha="right", fontsize=8)
        ax.set(ylabel="jobs/s", title="drain rate, no-op task (median)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(r.dir, "drain.png"), dpi=100)
        plt.close(fig)


def update_readme(body: str) -> None:
    if not os.path.exists(README):
        return
    with open(README) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(README, "w") as f:
        f.write(head + BEGIN + "\n" + body + END + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("modes", nargs="*", metavar="MODE",
                    help="full and/or quick (default: both; the README shows full if it has results)")  # fmt: skip
    modes = ap.parse_args().modes or ["full", "quick"]
    for mode in modes:
        if mode not in ("full", "quick"):
            ap.error(f"unknown mode {mode!r}: full or quick")
    rendered = {}
    for mode in modes:
        d = os.path.join(HERE, "results", mode)
        if not os.path.isdir(d):
            continue
        r = Results(d)
        if not r.systems and not r.scale and not r.selfbench:
            continue
        try:
            plots(r)
        except ImportError:
            print("matplotlib missing: no plots", file=sys.stderr)
        with open(os.path.join(d, "report.md"), "w") as f:
            f.write(f"# laneway benchmarks: {mode} run\n\n" + render(r, "."))
        rendered[mode] = render(r, f"results/{mode}")
        print(f"wrote {os.path.relpath(d, HERE)}/report.md")
    for mode in ("full", "quick"):
        if mode in rendered:
            update_readme(rendered[mode])
            break


if __name__ == "__main__":
    main()
