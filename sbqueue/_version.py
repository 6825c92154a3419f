"""The single source of sbqueue's version."""

__version__ = "0.1.0"
