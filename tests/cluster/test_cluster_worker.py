"""Worker tests of the main suite (``tests/test_worker.py``) run unchanged on the test Redis Cluster.

The imported ``redis_url``/``r``/``prefix`` fixtures shadow the standalone ones for this module only (prefix
``{sbqt<random>}``, ``r`` a cluster client). The selection covers processing, results, events, retries and
backoff, failures, delays, limits, removal, metrics, locks, stalled recovery, shutdown and the worker's named
connection; the rest of the worker suite exercises the same script calls and would only add time.
"""

from __future__ import annotations

from tests.test_worker import (  # noqa: F401  (fixtures q/make_worker/release and the selected tests)
    make_worker,
    q,
    release,
    test_close_waits_for_inflight_job,
    test_concurrency_limit,
    test_delayed_error_moves_without_attempt,
    test_fetch_order_matches_spec5,
    test_global_concurrency,
    test_idle_worker_promotes_delayed_on_time,
    test_lock_held_and_renewed,
    test_lost_lock_reports_error_and_keeps_result_out,
    test_many_jobs_all_processed_once,
    test_metrics_counters,
    test_named_worker_connection,
    test_paused_queue_is_not_processed,
    test_progress_and_logs,
    test_rate_limit_error_requeues_without_attempt,
    test_remove_on_complete_count,
    test_retries_with_backoff,
    test_retry_without_backoff_goes_back_to_wait,
    test_return_value_and_job_fields,
    test_run_async_in_existing_loop,
    test_stalled_in_process_recovery,
    test_timeout_async_cancelled_and_retried,
    test_unrecoverable_error_fails_at_once,
    test_worker_events,
    test_worker_rate_limiter,
)

from .helpers import prefix, r, redis_url  # noqa: F401  (shadow the standalone fixtures)
