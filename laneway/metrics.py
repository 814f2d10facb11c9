"""Prometheus metrics for laneway (needs ``pip install 'laneway[metrics]'``).

``instrument(app)`` counts enqueues, runs, outcomes and lost leases and records pickup
latency and run time; ``start_metrics_server(port)`` serves them. See docs/observability.md.
"""

from __future__ import annotations

from ._metrics import instrument, start_metrics_server

__all__ = ["instrument", "start_metrics_server"]
