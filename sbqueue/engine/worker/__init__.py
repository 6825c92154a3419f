"""The Worker: fetches jobs of one queue, runs a processor on them, settles the results — BullMQ 6's
protocol, batched (one ``finish_and_fetch`` script call settles every job finished since the last call and
fetches as many new ones as there are free slots).

One part per job:

- :mod:`.lifecycle` — :class:`Worker`: its options; run, start, close; the clients and parts of one run.
- :mod:`.fetch_loop` — the main loop: trips in flight, fetch sizing, the rate-limit window, the close
  deadline, the idle wait on the queue's marker.
- :mod:`.round_trip` — one ``finish_and_fetch`` call: send the finish batch, act on its codes, start the jobs.
- :mod:`.job_runs` — one fetched job, from its task's start to its outcome.
- :mod:`.runners` — how a processor runs (on the event loop, on threads): the seam for other runners.
- :mod:`.job_threads` — the thread pool of sync processors.
- :mod:`.process_runner` — ``processes=n``: jobs in child processes; :mod:`.process_pool` (the children),
  :mod:`.process_members` (one child's bookkeeping), :mod:`.process_child` (a child's main loop),
  :mod:`.process_wire` (their messages), :mod:`.process_target` (the processor as an import path).
- :mod:`.outcomes` — how a run ended, as the :class:`~sbqueue._core.finish.Finish` that records it
  (the finish records and their ARGV encoding are pure, in :mod:`sbqueue._core.finish`).
- :mod:`.job_queue` — the queue handle a processor's job talks through.
- :mod:`.locks` — lock renewal and the stalled check.
- :mod:`.control` — pause/resume and cancelling jobs in flight, from any thread (:mod:`.pausing`: the switch).
- :mod:`.manual` — processing by hand: ``Worker(queue, None)``, ``get_next_job``, the jobs' manual moves.
- :mod:`.dead_letters` — the letters of jobs that failed for good, written before their finishes.
- :mod:`.outage` — reporting a Redis that is down or full.
- :mod:`.state` — what the parts share; :mod:`.tasks` — asyncio helpers.
- :mod:`.tracing` — the traced job runs, settler and thread runner used instead when tracing is on.

May import (the engine layer): :mod:`sbqueue._core`, :mod:`sbqueue.errors`, :mod:`sbqueue.connection`,
:mod:`sbqueue.inspection` and the rest of :mod:`sbqueue.engine`. Nothing in the engine imports this package
but through :class:`Worker`.
"""

from sbqueue.engine.worker.lifecycle import Worker

__all__ = ["Worker"]
