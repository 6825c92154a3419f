"""Layer 0 — pure logic: key names, option handling, records, codecs, script specs.

No Redis, no network and no clock read behind the caller's back: the only I/O is reading the package's own Lua
sources (:mod:`.scripts`). So the engine, the inspection layer and the tools above share one encoding of
BullMQ's layout and can test it without a server.

May import: :mod:`sbqueue.errors`, :mod:`sbqueue._version`, the standard library and croniter (repeat
patterns). Never a connection, a Redis client or anything above.
"""
