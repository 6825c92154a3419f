"""Async flavour: the hand-written source. ``sbqueue/engine/_sync`` is generated from it (tools/unasync.py)."""
