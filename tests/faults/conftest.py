"""Fixtures of the fault-test harness (see harness.py)."""

from tests.faults.harness import redis_server, replay, stack  # noqa: F401
