"""Chaos tests: producers, worker processes killed with SIGKILL, Redis restarts and client kills."""
