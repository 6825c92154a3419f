"""The queue API suite (``tests/test_queue_api.py``, both flavours) run unchanged on the test Redis Cluster.

The imported ``redis_url``/``r``/``prefix`` fixtures shadow the standalone ones for this module only: queues use
the prefix ``{sbqt<random>}`` on a 3-master cluster, and ``r`` is a cluster client. One test is left out:
``test_hash_tagged_queue_keys_share_one_slot`` asserts the slot of a tag in the queue *name*, which a tagged
prefix overrides (the tag-in-name layout is covered in ``test_cluster.py``).
"""

from __future__ import annotations

import tests.test_queue_api as _suite
from tests.test_queue_api import *  # noqa: F403  (test functions and the q/k fixtures)
from tests.test_queue_api import queue_factory_fixture  # noqa: F401  (fixture `queue_factory`)

from .helpers import prefix, r, redis_url  # noqa: F401  (shadow the standalone fixtures)

_LEFT_OUT = ("test_hash_tagged_queue_keys_share_one_slot",)
for _name in _LEFT_OUT:
    assert hasattr(_suite, _name), f"{_name} is gone from tests/test_queue_api.py: update _LEFT_OUT"
    del globals()[_name]
