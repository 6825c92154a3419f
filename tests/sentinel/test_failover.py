"""Producers and workers under two failovers of a Sentinel service (see :mod:`tests.sentinel.failover`):
every acknowledged job is accounted for; producers and workers resume within a measured bound; without
``min_replicas`` the adds acknowledged while the replica lagged are lost, with ``min_replicas=1`` none is."""

from __future__ import annotations

import pytest

from .failover import Config, run
from .servers import SentinelGroup

#: bounds (seconds) the CI run asserts; the measured figures are printed (README "Reliability")
PRODUCER_RESUME_BOUND = 8.0  # kill -9: ~1 s until the sentinels call the master down + promotion + reconnect
WORKER_RESUME_BOUND = 10.0


@pytest.fixture(scope="module")
def group(sentinel_group: SentinelGroup) -> SentinelGroup:
    return sentinel_group


def test_failover_without_min_replicas_loses_only_the_replication_window(group: SentinelGroup) -> None:
    result = run(group, Config())
    print(result.summary())
    assert not result.problems, result.problems
    assert result.acknowledged > 500
    # the unplanned failover loses what the master acknowledged while the replica had no link — and, at most, the
    # few adds acknowledged within the replication lag before (not yet sent when the link dropped): measured here
    assert result.lost_in["unplanned"] == result.lost_in_stall + result.lost_before_stall
    assert result.lost_in_stall > 0
    assert result.lost == sum(result.lost_in.values())  # every lost job was acknowledged during a failover
    assert result.duplicates == result.duplicates_explained
    # adds wait until the new master has a replica again (here: the killed server restarted and synced; after
    # SENTINEL FAILOVER: the sentinels demoting the old master, ~10 s)
    assert 0 <= result.producer_resume_s["unplanned"] < 30
    assert 0 <= result.producer_resume_s["planned"] < PRODUCER_RESUME_BOUND
    assert 0 <= result.worker_resume_s["unplanned"] < WORKER_RESUME_BOUND
    assert result.events_after > 0  # QueueEvents follows too


def test_failover_with_min_replicas_loses_nothing(group: SentinelGroup) -> None:
    result = run(group, Config(min_replicas=1))
    print(result.summary())
    assert not result.problems, result.problems
    assert result.lost == 0 and result.acknowledged > 100
    assert result.replication_timeouts > 0  # the adds that would have been lost were refused, then retried
    assert result.duplicates == result.duplicates_explained
    # adds wait until the new master has a replica again (here: the killed server restarted and synced; after
    # SENTINEL FAILOVER: the sentinels demoting the old master, ~10 s)
    assert 0 <= result.producer_resume_s["unplanned"] < 30
