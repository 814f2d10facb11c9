#!/usr/bin/env python3
"""Rebuild every benchmark result of laneway and its peers in one run, on one machine.

    python3 benchmarks/run.py --quick      # smoke size, under 10 minutes
    python3 benchmarks/run.py              # the full study (about an hour or more)
    python3 benchmarks/run.py --steps laneway,ordered --backends redis   # a part of it
    python3 benchmarks/run.py --steps report                             # re-render only

Steps (in this order; --steps picks some):

  setup    venvs under benchmarks/.venvs/ (git-ignored): peers (requirements-peers.txt),
           arq (requirements-arq.txt: arq needs redis-py < 6) and laneway
           (pip install -e <project>[redis,postgres]); re-installed when their inputs change
  servers  a private Redis (127.0.0.1:6391) and Postgres (127.0.0.1:54331) from
           harness/servers.sh, stopped again at the end (--keep-servers to leave them)
  raw      the servers' own ceilings (redis-benchmark, redis-py and psycopg loops)
  peers    Celery, RQ (+ SimpleWorker), Dramatiq, Huey, arq, SAQ, taskiq, procrastinate,
           pgqueuer through harness/bench.py: enqueue, bulk, async enqueue, drain with 1
           and 2 worker processes, pickup latency
  laneway  the same phases for laneway on SQLite, Redis and Postgres (unordered), then the
           worker phases again with an ``async def`` task (the asyncio libraries' probe)
  ordered  laneway's ordered workloads: every job on its own lane; 100 hot lanes; 10 lanes
           with lane batching off and on; 1% of lanes retrying or delayed; each backend's
           unordered drain again before and after them (the control their % is taken of)
  ordered-async  on Redis, the lanes-on drains issue 5 names (a lane per job, 100 hot
           lanes) with an ``async def`` task, between two unordered ``async def`` controls
  scale    claim latency and storage per lane from 10^3 to 10^6 lanes (quick: 10^5)
  bench    `laneway bench` on each backend: laneway's own rates without the harness's
           Redis probe in the task (what the backend sustains by itself)
  report   results/<mode>/report.md, the PNG plots, and the table in benchmarks/README.md

Results go to benchmarks/results/full/ or benchmarks/results/quick/ (JSON, one file per
system and workload). The README shows the full run's tables when there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

from report import BUSY_LOAD, CONTROLS  # the report reads what this script measures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HARNESS = os.path.join(HERE, "harness")
VENVS = os.path.join(HERE, ".venvs")

PEERS = ["celery", "rq", "rq_simple", "dramatiq", "huey", "arq", "saq", "taskiq", "procrastinate", "pgqueuer"]
BACKENDS = ["sqlite", "redis", "postgres"]
STEPS = ["setup", "servers", "raw", "peers", "laneway", "ordered", "ordered-async", "scale", "bench", "report"]  # fmt: skip
MEASURING = ("raw", "peers", "laneway", "ordered", "ordered-async", "scale", "bench")

# (lanes, batch, concurrency; 0: the worker's default): the ordered workloads of laneway
ORDERED = [
    ("unique", 1, 0),  # (a) 20,000 jobs, each on its own lane
    ("hot100", 1, 0),  # (b) 100 hot lanes x 200 jobs
    ("hot10", 1, 0),  # (c) 10 lanes x 2,000 jobs, lane batching off ...
    ("hot10", 8, 0),  # ... on, with the default slots
    ("hot10", 1, 80),  # ... off, 80 slots (the control for the next one)
    ("hot10", 20, 80),  # ... on, 80 slots: 20 jobs of a lane per claim
    ("mixed", 1, 0),  # (d) lanes of 20 jobs, 1% of them retrying or delayed
]
ORDERED_ASYNC = ["unique", "hot100"]  # issue 5's lanes-on drains again, with an async def task ...
ORDERED_ASYNC_BACKENDS = ["redis"]  # ... on Redis

MODES = {
    "quick": {
        "n": 2000, "runs": 1, "samples": 30, "drain_timeout": 10, "latency_timeout": 15,
        "hold_s": 3, "timeout": 300, "ordered_phases": "drain1",
        "raw": ["--runs", "1", "--n", "2000", "--pg-n", "500", "--bench-n", "20000"],
        "scale_points": "1000,10000,100000", "scale_claims": 100, "scale_budget_s": 20,
    },
    "full": {
        "n": 20000, "runs": 3, "samples": 500, "drain_timeout": 40, "latency_timeout": 60,
        "hold_s": 10, "timeout": 1500, "ordered_phases": "drain1,drain2", "ordered_runs": 2,
        "raw": ["--runs", "3"],
        "scale_points": "1000,3000,10000,30000,100000,300000,1000000", "scale_claims": 500,
        "scale_budget_s": 120,
    },
}  # fmt: skip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- venvs ---------------------------------------------------------------------------


def venv_python(name: str) -> str:
    return os.path.join(VENVS, name, "bin", "python")


def ensure_venv(name: str, pip_args: list[str], stamp_inputs: list[str]) -> str:
    """Create benchmarks/.venvs/<name> and pip install into it, unless its stamp is current."""
    h = hashlib.sha256(" ".join(pip_args).encode())
    for path in stamp_inputs:
        with open(path, "rb") as f:
            h.update(f.read())
    stamp = h.hexdigest()
    root = os.path.join(VENVS, name)
    stamp_file = os.path.join(root, ".bench-stamp")
    if os.path.exists(stamp_file):
        with open(stamp_file) as f:
            if f.read() == stamp:
                return venv_python(name)
    log(f"setup: venv {name}: pip install {' '.join(pip_args)}")
    if not os.path.exists(venv_python(name)):
        subprocess.run([sys.executable, "-m", "venv", root], check=True)
    subprocess.run([venv_python(name), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=False)
    subprocess.run([venv_python(name), "-m", "pip", "install", "-q", *pip_args], check=True)
    with open(stamp_file, "w") as f:
        f.write(stamp)
    return venv_python(name)


def setup() -> None:
    req_peers = os.path.join(HERE, "requirements-peers.txt")
    req_arq = os.path.join(HERE, "requirements-arq.txt")
    ensure_venv("peers", ["-r", req_peers], [req_peers])
    ensure_venv("arq", ["-r", req_arq], [req_arq])
    # matplotlib draws the report's plots
    ensure_venv(
        "laneway", ["-e", f"{ROOT}[redis,postgres]", "matplotlib"], [os.path.join(ROOT, "pyproject.toml")]
    )


def python_for(system: str) -> str:
    if system == "arq":
        return venv_python("arq")
    if system.startswith("laneway"):
        return venv_python("laneway")
    return venv_python("peers")


# --- servers -------------------------------------------------------------------------


def servers(action: str) -> None:
    subprocess.run(["bash", os.path.join(HARNESS, "servers.sh"), action], check=action != "stop")


# --- machine -------------------------------------------------------------------------


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else ""
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+)", f.read(), re.M)
            mem_kb = int(m.group(1)) if m else 0
    except OSError:
        pass
    pg_bins = sorted(
        (d for d in (os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql") else [])),
        key=lambda v: [int(x) for x in re.findall(r"\d+", v)],
    )
    pg = _cmd([f"/usr/lib/postgresql/{pg_bins[-1]}/bin/postgres", "--version"]) if pg_bins else ""
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "os": _cmd(["uname", "-srm"]),
        "python": platform.python_version(),
        "redis_server": _cmd(["redis-server", "--version"]),
        "postgres": pg,
        "laneway_commit": _cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "load_avg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def wait_for_quiet(busy: float = BUSY_LOAD, most_s: float = 300) -> None:
    """Wait, for at most ``most_s``, until the 1-minute load average is at or below ``busy``
    (the report's threshold for "smoke numbers only"): the load of whatever ran just
    before (a test suite, an earlier benchmark) would otherwise both slow the first
    measurements and mark the whole run busy."""
    if not hasattr(os, "getloadavg"):
        return
    deadline = time.monotonic() + most_s
    load = os.getloadavg()[0]
    if load <= busy:
        return
    log(f"load average {load:.2f}: waiting up to {most_s:.0f} s for it to fall to {busy}")
    while load > busy and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    log(f"load average {load:.2f}: measuring")


# --- bench runs ----------------------------------------------------------------------


def bench(system: str, mode: dict, out_dir: str, phases: str | None = None, env: dict | None = None) -> None:
    py = python_for(system)
    if not os.path.exists(py):
        log(f"skip {system}: {py} missing (run the setup step)")
        return
    args = [py, "bench.py", system, "--n", str(mode["n"]), "--runs", str(mode["runs"]),
            "--samples", str(mode["samples"]), "--drain-timeout", str(mode["drain_timeout"]),
            "--latency-timeout", str(mode["latency_timeout"])]  # fmt: skip
    if phases:
        args += ["--phases", phases]
    full_env = {**os.environ, "BENCH_RESULTS_DIR": out_dir, **(env or {})}
    label = system + "".join(
        f" {k.removeprefix('BENCH_LANEWAY_').lower()}={v}" for k, v in (env or {}).items()
    )
    log(f"=== {label}")
    try:
        p = subprocess.run(args, cwd=HARNESS, env=full_env, timeout=mode["timeout"], check=False)
        if p.returncode:
            log(f"bench {label} exited {p.returncode}")
    except subprocess.TimeoutExpired:
        log(f"bench {label} cut after {mode['timeout']} s")


def self_bench(backend: str, mode: dict, out_dir: str) -> None:
    """`laneway bench --json` against the private server of ``backend`` (no probe in the task)."""
    urls = {"redis": "redis://127.0.0.1:6391/2", "postgres": "postgresql://bench@127.0.0.1:54331/bench",
            "sqlite": "sqlite:///" + os.path.join(HERE, ".run", "laneway-selfbench.db")}  # fmt: skip
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(urls["sqlite"][len("sqlite:///") :] + suffix)
    exe = os.path.join(VENVS, "laneway", "bin", "laneway")
    cmd = [exe, "bench", "--url", urls[backend], "--namespace", "selfbench", "--jobs", str(mode["n"]),
           "--latency-samples", str(mode["samples"]), "--json"]  # fmt: skip
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=mode["timeout"], check=False)
    except subprocess.TimeoutExpired:
        log(f"laneway bench {backend} cut after {mode['timeout']} s")
        return
    if p.returncode:
        log(f"laneway bench {backend} exited {p.returncode}: {p.stderr[-800:]}")
        return
    data = json.loads(p.stdout)
    data["backend"] = backend
    with open(os.path.join(out_dir, f"selfbench-{backend}.json"), "w") as f:
        json.dump(data, f, indent=1)


def laneway_env(
    backend: str, lanes: str = "off", batch: int = 1, conc: int = 0, hold: float = 10, label: str = ""
) -> dict:
    """The adapter's settings; ``conc`` 0 leaves the worker's default slots."""
    return {"BENCH_LANEWAY_BACKEND": backend, "BENCH_LANEWAY_LANES": lanes, "BENCH_LANEWAY_BATCH": str(batch),
            "BENCH_LANEWAY_CONCURRENCY": str(conc or ""), "BENCH_LANEWAY_HOLD_S": str(hold),
            "BENCH_LANEWAY_LABEL": label}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke size (under 10 minutes)")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of: " + ",".join(STEPS))
    ap.add_argument("--systems", default=",".join(PEERS), help="peers to run")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="laneway backends to run")
    ap.add_argument("--keep-servers", action="store_true", help="leave the private servers running")
    ap.add_argument("--fresh", action="store_true", help="delete results/<mode>/ first (a new study)")
    a = ap.parse_args()
    mode_name = "quick" if a.quick else "full"
    mode = MODES[mode_name]
    steps = [s for s in a.steps.split(",") if s]
    for s in steps:
        if s not in STEPS:
            raise SystemExit(f"unknown step {s!r}; steps: {', '.join(STEPS)}")
    backends = [b for b in a.backends.split(",") if b]
    out_dir = os.path.join(HERE, "results", mode_name)
    if a.fresh and os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    measuring = any(s in steps for s in MEASURING)

    if "setup" in steps:
        setup()
    if measuring:
        wait_for_quiet()
        info = machine_info()
        this = {"command": " ".join(["python3", "benchmarks/run.py", *sys.argv[1:]]), "steps": steps,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg_at_start": info["load_avg_at_start"]}  # fmt: skip
        path = os.path.join(out_dir, "machine.json")
        earlier: list[dict] = []
        if os.path.exists(path) and not all(s in steps for s in MEASURING):
            with open(path) as f:  # a part of the study: keep the record of the other parts
                earlier = json.load(f).get("invocations", [])
        info.update(mode=mode_name, settings=mode, invocations=[*earlier, this], **this)
        with open(path, "w") as f:
            json.dump(info, f, indent=1)
    started_servers = False
    if "servers" in steps and measuring:
        servers("start")
        started_servers = True
    try:
        if "raw" in steps:
            log("=== raw ceilings")
            subprocess.run([venv_python("peers"), "raw_ceiling.py", *mode["raw"],
                            "--out", os.path.join(out_dir, "raw_ceiling.json")], cwd=HARNESS, timeout=900, check=False)  # fmt: skip
        if "peers" in steps:
            for system in [s for s in a.systems.split(",") if s]:
                bench(system, mode, out_dir)
        if "laneway" in steps:
            for backend in backends:
                bench("laneway", mode, out_dir, env=laneway_env(backend, hold=mode["hold_s"]))
            for backend in backends:  # the same with an async def task: only the worker side differs
                bench("laneway", mode, out_dir, phases="drain1,drain2,latency",
                      env={**laneway_env(backend, hold=mode["hold_s"]), "BENCH_LANEWAY_HANDLER": "async"})  # fmt: skip
        ordered_mode = {**mode, "runs": mode.get("ordered_runs", mode["runs"])}
        if "ordered" in steps:
            for backend in backends:
                # The unordered drain again, before and after the ordered workloads: their
                # "% of unordered" compares drains of the same minutes (the laneway step ran
                # 10 to 30 minutes earlier, and this VM's speed drifts by more than the target).
                before, after = CONTROLS
                bench("laneway", ordered_mode, out_dir, phases=mode["ordered_phases"],
                      env=laneway_env(backend, hold=mode["hold_s"], label=before))  # fmt: skip
                for lanes, batch, conc in ORDERED:
                    phases = mode["ordered_phases"]
                    if lanes == "unique":  # what tagging every job with a lane costs the producer
                        phases = "enqueue," + phases
                    bench("laneway", ordered_mode, out_dir,
                          phases=phases, env=laneway_env(backend, lanes, batch, conc, mode["hold_s"]))  # fmt: skip
                bench("laneway", ordered_mode, out_dir, phases=mode["ordered_phases"],
                      env=laneway_env(backend, hold=mode["hold_s"], label=after))  # fmt: skip
        if "ordered-async" in steps:
            for backend in [b for b in backends if b in ORDERED_ASYNC_BACKENDS]:
                before, after = CONTROLS
                for lanes, label in [("off", before), *((w, "") for w in ORDERED_ASYNC), ("off", after)]:
                    env = {
                        **laneway_env(backend, lanes, hold=mode["hold_s"], label=label),
                        "BENCH_LANEWAY_HANDLER": "async",
                    }
                    bench("laneway", ordered_mode, out_dir, phases=mode["ordered_phases"], env=env)
        if "scale" in steps:
            for backend in backends:
                log(f"=== scale {backend}")
                try:
                    subprocess.run([venv_python("laneway"), os.path.join(HERE, "scale.py"), "--backend", backend,
                                    "--points", mode["scale_points"], "--claims", str(mode["scale_claims"]),
                                    "--budget-s", str(mode["scale_budget_s"]),
                                    "--out", os.path.join(out_dir, f"scale-{backend}.json")],
                                   timeout=2400, check=False)  # fmt: skip
                except subprocess.TimeoutExpired:
                    log(f"scale {backend} cut after 2400 s")
        if "bench" in steps:
            for backend in backends:
                log(f"=== laneway bench {backend}")
                self_bench(backend, mode, out_dir)
    finally:
        if started_servers and not a.keep_servers:
            servers("stop")
    if measuring:
        path = os.path.join(out_dir, "machine.json")
        with open(path) as f:
            info = json.load(f)
        info.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), duration_s=round(time.time() - started))
        info["invocations"][-1].update(finished=info["finished"], duration_s=info["duration_s"])
        with open(path, "w") as f:
            json.dump(info, f, indent=1)
        log(f"measured in {time.time() - started:.0f} s")
    if "report" in steps:
        py = venv_python("laneway") if os.path.exists(venv_python("laneway")) else sys.executable
        subprocess.run([py, os.path.join(HERE, "report.py")], check=True)


if __name__ == "__main__":
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (apt-get install -y redis-server postgresql)", file=sys.stderr)
    main()
