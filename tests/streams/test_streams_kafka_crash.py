"""A consumer process killed with SIGKILL mid-stream loses nothing and never over-commits.

The mock cluster lives in this test process; the consumers are real child processes
running ``python -m laneway.streams._cli`` against its bootstrap address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.streams.streams_crash_handler import read_log
from tests.streams.streams_support import (
    MockCluster,
    commit_violations,
    missing,
    order_violations,
    unique,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


def spawn(
    cluster: MockCluster, topic: str, group: str, log: Path, delay: float, *extra: str
) -> subprocess.Popen[bytes]:
    """Start ``laneway kafka-consume`` with the crash handler in a child process."""
    env = {**os.environ, "STREAMS_TEST_LOG": str(log), "STREAMS_TEST_DELAY": str(delay)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "laneway.streams._cli",
        "tests.streams.streams_crash_handler:handle",
        *("--topic", topic, "--group", group, "--bootstrap", cluster.bootstrap),
        *("--workers", "4", "--max-in-flight", "40", "--commit-interval", "0.2"),
        *("-X", "session.timeout.ms=3000", "-X", "heartbeat.interval.ms=300", "-X", "log_level=3"),
        *extra,
    ]
    with open(log.with_suffix(f".{len(extra)}.out"), "ab") as output:  # the child keeps its own fd
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)


@pytest.mark.timeout(90)
def test_killed_consumer_restarts_without_losing_work_or_committing_unfinished_offsets(
    cluster: MockCluster, tmp_path: Path
) -> None:
    topic, group = unique("crash"), unique("g")
    produced = cluster.produce(topic, keys=30, per_key=20)
    log = tmp_path / "done.log"

    victim = spawn(cluster, topic, group, log, 0.02)
    try:
        wait_until(lambda: len(read_log(str(log))) >= 200, 40, "the victim to make progress")
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)

    before = read_log(str(log))
    done_before = frozenset((partition, offset) for _, _, partition, offset in before)
    assert len(done_before) < len(produced), "the victim finished everything before the kill"
    committed = cluster.committed(topic, group)
    assert committed, "the victim never committed"
    assert commit_violations((p, o, done_before) for p, o in committed.items()) == []

    survivor = spawn(cluster, topic, group, log, 0.001, "--idle-exit", "2")
    try:
        survivor.wait(60)
    finally:
        if survivor.poll() is None:
            survivor.kill()
            survivor.wait(10)
    assert survivor.returncode == 0, log.with_suffix(".2.out").read_text(errors="replace")

    completed = [(key, partition, offset) for _, key, partition, offset in read_log(str(log))]
    assert missing(produced, completed) == []
    assert order_violations(produced, completed) == []
    redone = {(p, o) for _, p, o in completed[len(before) :]} & done_before
    assert all(o >= committed.get(p, 0) for p, o in redone), "work below a commit was redone"
    assert sum(cluster.committed(topic, group).values()) == len(produced)
