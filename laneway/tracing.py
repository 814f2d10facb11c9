"""OpenTelemetry trace propagation from producer to worker (needs ``opentelemetry-api``).

``instrument_tracing(app)``: the producer's span becomes the parent of the job's span.
"""

from __future__ import annotations

from ._otel import instrument_tracing

__all__ = ["instrument_tracing"]
