"""``laneway chaos`` end to end: the command a user runs against their own backend.

A small run on a fresh SQLite file, as a separate process: worker processes are killed
with SIGKILL and restarted while jobs run, and the command must report the history
checker's verdict (nothing lost, nothing out of order) and exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._procs import REPO

KILLS = 3


@pytest.mark.timeout(180)
def test_laneway_chaos_on_sqlite_kills_workers_and_reports_nothing_lost_nothing_out_of_order(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'chaos.db'}"
    cmd = [sys.executable, "-m", "laneway", "chaos", "--url", url, "--jobs", "800", "--lanes", "80",
           "--workers", "3", "--concurrency", "4", "--work-ms", "20", "--kills", str(KILLS),
           "--kill-every", "0.3", "--lease", "3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "OK" in out and "FAILED" not in out, out
    assert "800 jobs, 0 lost" in out, out
    assert "0 out of order" in out and "0 stale acks" in out, out
    assert f"{KILLS} workers killed with SIGKILL and restarted" in out, out
