"""Testing helpers for applications that use pyramid_kvs.

Add ``pyramid_kvs.testing`` to an application's includes in its tests (or call
``config.include("pyramid_kvs.testing")``) and every store it configures - Redis,
memcached, anything - becomes a :class:`MockStore`: the memory store's semantics,
no server needed, plus introspection for assertions::

    config = testing.setUp(settings={"kvs.cache": '{"kvs": "redis"}'})
    config.include("pyramid_kvs.testing")
    ...
    store = mock_store(request.registry, "cache")
    assert store.last_ttl("answer") == 300

The backend name ``mock`` can also be chosen explicitly in the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyramid.config import Configurator
from pyramid.registry import Registry

from .runtime import FORCE_MOCK_KEY, get_kvs
from .stores.memory import MemoryStore


class MockStore(MemoryStore):
    """A memory store that remembers what was asked of it."""

    name = "mock"

    def __init__(self, key_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(key_prefix, **kwargs)
        self._ttls: dict[str, int | None] = {}
        self.calls: list[tuple[str, str]] = []

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MockStore:
        """Options are accepted and ignored: a mock stands in for any backend."""
        return cls()

    def with_prefix(self, key_prefix: str) -> MockStore:
        return super().with_prefix(key_prefix)  # type: ignore[return-value]

    def _record(self, operation: str, key: str) -> None:
        self.calls.append((operation, self.full_key(key)))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._record("set", key)
        super().set(key, value, ttl)
        self._ttls[self.full_key(key)] = ttl

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        self._record("add", key)
        added = super().add(key, value, ttl)
        if added:
            self._ttls[self.full_key(key)] = ttl
        return added

    def touch(self, key: str, ttl: int | None) -> bool:
        self._record("touch", key)
        touched = super().touch(key, ttl)
        if touched:
            self._ttls[self.full_key(key)] = ttl
        return touched

    def get(self, key: str) -> bytes | None:
        self._record("get", key)
        return super().get(key)

    def delete(self, key: str) -> bool:
        self._record("delete", key)
        return super().delete(key)

    def last_ttl(self, key: str) -> int | None:
        """The TTL given when *key* (without prefix) was last written."""
        return self._ttls[self.full_key(key)]

    @property
    def data(self) -> dict[str, bytes]:
        """The live entries under this prefix (keys without the prefix)."""
        values = {key: MemoryStore.get(self, key) for key in self.scan()}
        return {key: value for key, value in values.items() if value is not None}


def mock_store(registry: Registry, component: str = "cache") -> MockStore:
    """The mock store behind *component* ("cache", "session"...) of an application."""
    kvs = get_kvs(registry)
    owner = kvs.session_factory if component == "session" else getattr(kvs, component)
    if owner is None:
        raise LookupError(f"the {component} component is not configured")
    store = owner.store
    if not isinstance(store, MockStore):
        raise TypeError(f"the {component} store is {store.name}, not a mock store")
    return store


def includeme(config: Configurator) -> None:
    """Include pyramid_kvs with every configured store replaced by a mock."""
    config.registry[FORCE_MOCK_KEY] = True
    config.include("pyramid_kvs")
