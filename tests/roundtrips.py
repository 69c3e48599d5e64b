"""Counting the round trips a piece of code makes to Redis and memcached.

The counters wrap the one place where each client library sends a request (redis-py's
``send_packed_command``, pymemcache's three command senders), so a pipeline counts
once and a multi-get counts once: what is counted is what crosses the network.  On a
Redis Cluster, a pipeline to one node counts once.  ``sent_to_redis`` records what
was sent, for the tests of what a script costs on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pymemcache.client import base as memcache_base
from redis import connection as redis_connection


@dataclass
class RoundTrips:
    redis: int = 0
    memcached: int = 0

    @property
    def total(self) -> int:
        return self.redis + self.memcached


@contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    counts = RoundTrips()
    patch = pytest.MonkeyPatch()

    def counting(original: Any, server: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            setattr(counts, server, getattr(counts, server) + 1)
            return original(*args, **kwargs)

        return wrapper

    connection = redis_connection.AbstractConnection
    patch.setattr(
        connection, "send_packed_command", counting(connection.send_packed_command, "redis")
    )
    client = memcache_base.Client
    for name in ("_fetch_cmd", "_store_cmd", "_misc_cmd"):
        patch.setattr(client, name, counting(getattr(client, name), "memcached"))
    try:
        yield counts
    finally:
        patch.undo()


@contextmanager
def sent_to_redis() -> Iterator[list[bytes]]:
    """The requests sent to Redis meanwhile, one bytes string each."""
    sent: list[bytes] = []
    connection = redis_connection.AbstractConnection
    original = connection.send_packed_command

    def recording(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        parts = command if isinstance(command, list) else [command]
        sent.append(b"".join(bytes(part) for part in parts))
        return original(self, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection, "send_packed_command", recording)
        yield sent
