"""Which engine checks the limits on a store: chosen by what the store can do.

An engine implements the three algorithms atomically with one of the optional
capabilities of ``stores.base``; a store offers a capability by inheriting it.
Choosing by capability rather than by backend lets a custom store registered with
``pyramid_kvs.register()`` rate limit as soon as it offers one, and keeps the
engines off the stores' internals (clients, wire keys): they use the contract and
the capability, on contract keys.

When a store offers several, the first of these wins:

``ScriptingStore`` -> ``scripted``   one script in the request's batch, on the
                                     server's clock (Redis)
``LockingStore``   -> ``locked``     a critical section in the process, no I/O
                                     (memory)
``CompareAndSwapStore`` -> ``cas``   counters by ``incr``, GCRA by ``gets`` /
                                     ``cas``, on the web server's clock (memcached)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pyramid.exceptions import ConfigurationError

from ..stores import Batch, Store
from ..stores.base import CompareAndSwapStore, LockingStore, ScriptingStore
from .cas import CompareAndSwapEngine
from .limits import Limit, LimitState
from .locked import LockedEngine
from .scripted import ScriptedEngine


class Engine(Protocol):
    """One way of checking the algorithms atomically on a store."""

    def queue(
        self, batch: Batch, base_key: str, limits: tuple[Limit, ...]
    ) -> Callable[[], tuple[LimitState, ...]]:
        """Queue the check of *limits* on *batch*; the callable reads its verdict."""

    def peek(self, base_key: str, limits: tuple[Limit, ...]) -> tuple[LimitState, ...]:
        """The states a check would find now, computed without counting a request."""


def engine_for(store: Store, algorithm: str) -> Engine:
    """The engine of *algorithm* on *store*; ``ConfigurationError`` if it has none."""
    if isinstance(store, ScriptingStore):
        return ScriptedEngine(store, algorithm)
    if isinstance(store, LockingStore):
        return LockedEngine(store, algorithm)
    if isinstance(store, CompareAndSwapStore):
        return CompareAndSwapEngine(store, algorithm)
    raise ConfigurationError(
        f"kvs.ratelimit: the {store.name} store cannot rate limit; "
        "use a memory, redis or memcached store, or one that offers scripts, "
        "compare-and-swap or a local lock (see pyramid_kvs.stores.base)"
    )
