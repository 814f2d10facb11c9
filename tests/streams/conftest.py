"""Fixtures for the streams tests: one librdkafka mock cluster per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.streams.streams_support import MockCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[MockCluster]:
    """The in-process mock Kafka cluster; tests use unique topic and group names on it."""
    mock = MockCluster()
    yield mock
    mock.producer.flush(5)
