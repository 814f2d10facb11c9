"""Turn the figures the fault tests report into the tables of ``docs/guarantees.md``.

``LANEWAY_CHAOS_FIGURES=figures.jsonl pytest tests/chaos`` appends one JSON line per
fault test run; ``python -m tests.chaos._figures figures.jsonl`` prints, per fault, a
Markdown table with one row per backend (the latest run of each test wins).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

_SKIP = {"test", "soak", "at", "backend"}


def _fault(test_id: str) -> str:
    """``fault04_network`` (and the test's name when its file holds several tests)."""
    name = test_id.split("::", maxsplit=1)[0].rsplit("/", 1)[-1].removesuffix(".py").removeprefix("test_")
    test = test_id.split("::")[1].split("[", maxsplit=1)[0].removeprefix("test_")
    return f"{name}: {test}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def tables(rows: list[dict[str, Any]]) -> str:
    """One Markdown table per fault test, newest row per test id."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["test"]] = row
    by_fault: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for test_id, row in latest.items():
        by_fault[_fault(test_id)].append(row)
    out = []
    for fault in sorted(by_fault):
        group = by_fault[fault]
        columns = [k for k in group[0] if k not in _SKIP]
        size = "soak" if group[0].get("soak") else "CI"
        out.append(f"**{fault}** ({size} size)\n")
        out.append("| backend | " + " | ".join(c.replace("_", " ") for c in columns) + " |")
        out.append("|---" * (len(columns) + 1) + "|")
        for row in group:
            cells = [_cell(row.get(c, "")) for c in columns]
            out.append(f"| {row.get('backend', '')} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(tables([json.loads(line) for line in f if line.strip()]))
