"""Fixtures for the interop suite: the Node BullMQ driver, required (an error, never a skip, when missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import nodebridge

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/interop`` with ``interop``."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def node(redis_url: str) -> nodebridge.NodeDriver:
    """The Node BullMQ driver bound to the test Redis.

    Checked once per session: when Node.js or ``tests/interop/node_modules`` is missing, every test using it
    errors with "run make node" — the interop suite must fail in CI, not be skipped.
    """
    nodebridge.node_available()
    return nodebridge.NodeDriver(redis_url)
