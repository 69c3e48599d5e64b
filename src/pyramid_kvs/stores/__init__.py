"""Stores: the contract, and the registry that builds a store from its settings.

Backends are registered explicitly by name (``register``), each with a factory that
takes the ``kvs_kwargs`` mapping and returns a ``Store``.  Built-in backends live
in their own modules and are imported only when used, so the client libraries stay
optional extras: asking for Redis without redis-py names the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from .base import (
    Batch,
    Pending,
    Store,
    StoreError,
    StoreUnavailable,
    UnsupportedOperation,
    ValueTooLarge,
    WrongKind,
)

__all__ = [
    "Batch",
    "MissingExtra",
    "Pending",
    "Store",
    "StoreError",
    "StoreFactory",
    "StoreUnavailable",
    "UnsupportedOperation",
    "ValueTooLarge",
    "WrongKind",
    "create_store",
    "register",
    "registered_names",
]

#: Builds a store (without prefix) from its options (``kvs_kwargs``).
StoreFactory = Callable[[Mapping[str, Any]], Store]


class MissingExtra(ImportError):
    """A backend's client library is not installed."""


def _lazy(module: str, attribute: str, extra: str | None) -> StoreFactory:
    def factory(options: Mapping[str, Any]) -> Store:
        try:
            store_class = getattr(importlib.import_module(module, __name__), attribute)
        except ImportError as exc:
            if extra is None:
                raise
            raise MissingExtra(
                f"{exc.name or exc} is not installed: install pyramid-kvs[{extra}]"
            ) from exc
        store: Store = store_class.from_options(options)
        return store

    return factory


_FACTORIES: dict[str, StoreFactory] = {
    "memory": _lazy(".memory", "MemoryStore", None),
    "redis": _lazy(".redis", "RedisStore", "redis"),
    "memcached": _lazy(".memcached", "MemcachedStore", "memcached"),
    "redis+cluster": _lazy(".redis_cluster", "RedisClusterStore", "redis"),
    "redis+sentinel": _lazy(".redis_sentinel", "RedisSentinelStore", "redis"),
}
# The original add-on spelled memcached "memcache".
_ALIASES = {"memcache": "memcached"}


def register(name: str, factory: StoreFactory) -> None:
    """Make a custom backend available as ``"kvs": name`` in the settings.

    *factory* receives the ``kvs_kwargs`` mapping and returns a ``Store``
    (without key prefix: pyramid_kvs applies each component's own).
    """
    if not name or not isinstance(name, str):
        raise ValueError("a store name must be a non-empty string")
    if not callable(factory):
        raise TypeError("a store factory must be callable")
    _FACTORIES[name] = factory


def canonical_name(name: str) -> str:
    return _ALIASES.get(name, name)


def registered_names() -> list[str]:
    return sorted({*_FACTORIES, *_ALIASES})


def create_store(name: str, options: Mapping[str, Any]) -> Store:
    """Build the store registered as *name* from its options.

    Raises ``KeyError`` for an unknown name, ``MissingExtra`` when the client
    library is missing, and ``TypeError`` / ``ValueError`` for bad options.
    """
    factory = _FACTORIES[canonical_name(name)]
    store = factory(options)
    if not isinstance(store, Store):
        raise TypeError(f"the factory of store {name!r} returned {store!r}, not a Store")
    return store
