"""The Sentinel tests' own deployment (:mod:`tests.sentinel.servers`): started once per session, killed after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import SentinelGroup

#: the data nodes' password (characters a URL must percent-encode)
PASSWORD = "s3nt:p@ss/1"


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """1 master, 1 replica, 3 sentinels on free loopback ports (tests may fail the master over)."""
    group = SentinelGroup(password=PASSWORD)
    try:
        group.start()
        yield group
    finally:
        group.close()  # also after a failed start: no orphan servers
