"""A process that enqueues one ``unique`` key many times on a signal (fault 11).

``python -m tests.chaos._unique_child URL NAMESPACE KEY COUNT GO OUT`` connects to the
backend, writes ``OUT + ".ready"``, waits (at most a minute) for the file ``GO`` to
exist, enqueues ``step`` with ``unique=KEY`` ``COUNT`` times as fast as it can, and
writes the ids it got back to ``OUT`` as a JSON list.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tests.chaos._apps import build

GO_LIMIT_S = 60.0


def main(url: str, namespace: str, key: str, count: int, go: str, out: str) -> None:
    app = build(url, namespace)
    task = app.tasks["step"].options(unique=key)
    app.backend.now()  # connected before the start line
    with open(out + ".ready", "w", encoding="utf-8"):
        pass
    deadline = time.monotonic() + GO_LIMIT_S
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)
    ids = [task.enqueue(None, i).id for i in range(count)]
    app.close()
    with open(out, "w", encoding="utf-8") as f:
        json.dump(ids, f)


if __name__ == "__main__":
    url, namespace, key, count, go, out = sys.argv[1:7]
    main(url, namespace, key, int(count), go, out)
