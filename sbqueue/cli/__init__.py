"""Layer 5 — the ``sbqueue`` command line: argument parsing and exit codes over the layers below.

May import: anything in sbqueue. Nothing in sbqueue imports it.
"""

from sbqueue.cli.app import main

__all__ = ["main"]
