"""Async flavour: the hand-written source. ``sbqueue/_sync`` is generated from it (tools/unasync.py)."""
