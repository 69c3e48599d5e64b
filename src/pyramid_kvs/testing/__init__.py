"""Testing helpers for applications that use pyramid_kvs.

Add ``pyramid_kvs.testing`` to an application's includes in its tests (or call
``config.include("pyramid_kvs.testing")``) and every store it configures - Redis,
memcached, anything - becomes a ``MockStore``: the memory store's semantics,
no server needed, plus introspection for assertions::

    config = testing.setUp(settings={"kvs.cache": '{"kvs": "redis"}'})
    config.include("pyramid_kvs.testing")
    ...
    store = mock_store(request.registry, "cache")
    assert store.last_ttl("answer") == 300

Sessions are records under hashed keys: ``sessions(registry)`` seeds and reads them
by cookie value or token instead (see ``MockSessions``).  The backend name ``mock``
can also be chosen explicitly in the settings.
"""

from __future__ import annotations

import warnings
from typing import Any

from pyramid.config import Configurator
from pyramid.registry import Registry

from ..components import COMPONENT_NAMES, FORCE_MOCK_KEY, get_components
from ..stores import register
from .mock import MockStore
from .sessions import MockSessions

__all__ = ["MockCache", "MockSessions", "MockStore", "includeme", "mock_store", "sessions"]


# The mock store is a backend like any other, registered through the public API.
register("mock", MockStore.from_options)


def mock_store(registry: Registry, component: str = "cache") -> MockStore:
    """The mock store behind *component* ("cache", "session"...) of an application."""
    if component not in COMPONENT_NAMES:
        raise LookupError(
            f"no component {component!r}; expected one of {', '.join(COMPONENT_NAMES)}"
        )
    store = get_components(registry).store_of(component)
    if store is None:
        raise LookupError(f"the {component} component is not configured")
    if not isinstance(store, MockStore):
        raise TypeError(f"the {component} store is {store.name}, not a mock store")
    return store


def sessions(registry: Registry) -> MockSessions:
    """The sessions of an application, to seed and read by cookie value or token.

    Needs ``kvs.session`` configured and its store mocked (``pyramid_kvs.testing``
    included, or ``"kvs": "mock"``).
    """
    factory = get_components(registry).session_factory
    if factory is None:
        raise LookupError("the session component is not configured")
    return MockSessions(factory, mock_store(registry, "session"))


def includeme(config: Configurator) -> None:
    """Include pyramid_kvs with every configured store replaced by a mock."""
    from .legacy import forget_mock_stores

    forget_mock_stores()  # MockCache.cached_data shows this application's stores
    config.registry[FORCE_MOCK_KEY] = True
    config.include("pyramid_kvs")


def __getattr__(name: str) -> Any:
    if name == "MockCache":
        warnings.warn(
            "pyramid_kvs.testing.MockCache is deprecated: use "
            "pyramid_kvs.testing.mock_store(registry, component) and its data, "
            "last_ttl() and calls",
            DeprecationWarning,
            stacklevel=2,
        )
        from .legacy import MockCache

        return MockCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
