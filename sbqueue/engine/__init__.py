"""Layer 3 — the queue engine: BullMQ 6's Redis layout, read and written.

Queues (``_async`` is the hand-written source, ``_sync`` is generated from it), jobs, flows, the worker,
events, backups, and the Lua scripts (``lua/``, loaded by :mod:`.scripting`) that make every write atomic.

May import: :mod:`sbqueue._core`, :mod:`sbqueue.errors`, :mod:`sbqueue.connection`, and
:mod:`sbqueue.inspection` (a queue's ``.inspector`` view). Never the workbench, ops or the command line.
"""
