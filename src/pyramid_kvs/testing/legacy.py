"""``MockCache``: what test suites written for pyramid_kvs 1.x read, kept working.

1.x tests inspected the mock through two class attributes: ``MockCache.cached_data``,
a dict of full keys (``b"cache::answer"``) to the stored text, which they also
seeded, cleared or replaced outright; and ``MockCache.last_ttl``, the TTL of the
latest write.  Both are kept as views of the mock stores of the application most
recently configured with ``pyramid_kvs.testing`` (tests configure one at a time):

* ``cached_data`` reads and writes those stores' entries by full key - ``str``
  when the stored bytes are UTF-8 text, as 1.x's JSON strings were, ``bytes``
  otherwise; sessions, which 2.0 keeps as records, read as dicts of field values.
  A dict a test assigns to ``MockCache.cached_data`` replaces the stores' entries
  at their next operation.
* ``last_ttl`` is set by every write to a mock store.

This is state on a class - what 2.0 otherwise never does - because the 1.x tests it
serves read it there.  New tests use ``mock_store``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol


class _Entries(Protocol):
    """What this view needs of a mock store: its entries of every area, by full key."""

    def raw_entries(self) -> dict[str, Any]: ...

    def raw_put(self, full_key: str, value: bytes) -> None: ...

    def raw_delete(self, full_key: str) -> bool: ...

    def raw_clear(self) -> None: ...


#: the root mock stores built since the last ``config.include("pyramid_kvs.testing")``
_stores: list[weakref.ref[_Entries]] = []


def forget_mock_stores() -> None:
    """A new application is being configured: the view starts afresh."""
    _stores.clear()


def track(store: _Entries) -> None:
    _stores.append(weakref.ref(store))


def _live_stores() -> list[_Entries]:
    return [store for store in (ref() for ref in _stores) if store is not None]


def _text(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _text(field) for name, field in value.items()}
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(value)


def _full_key(key: bytes | str) -> str:
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key


class CachedData(MutableMapping[bytes, Any]):
    """``MockCache.cached_data``: the mock stores' entries, by full key."""

    def __getitem__(self, key: bytes | str) -> Any:
        full_key = _full_key(key)
        for store in _live_stores():
            value = store.raw_entries().get(full_key)
            if value is not None:
                return _text(value)
        raise KeyError(key)

    def __setitem__(self, key: bytes | str, value: Any) -> None:
        stores = _live_stores()
        if not stores:
            raise LookupError("no mock store yet: configure the application first")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        stores[0].raw_put(_full_key(key), data)

    def __delitem__(self, key: bytes | str) -> None:
        full_key = _full_key(key)
        if not any(store.raw_delete(full_key) for store in _live_stores()):
            raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        keys = {key for store in _live_stores() for key in store.raw_entries()}
        return iter(sorted(key.encode("utf-8", "surrogateescape") for key in keys))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class MockCache:
    """pyramid_kvs 1.x's mock store (deprecated): see the module's docstring.

    Not a store any more: ``"kvs": "mock"`` builds a ``MockStore``, which this class
    only gives 1.x's view of.
    """

    cached_data: MutableMapping[Any, Any] = CachedData()
    last_ttl: int | None = None


def note_write(ttl: int | None) -> None:
    """A mock store was written with *ttl*."""
    MockCache.last_ttl = ttl


def adopt_reassigned_data() -> None:
    """Take a plain dict a 1.x test assigned to ``MockCache.cached_data``."""
    assigned = MockCache.__dict__["cached_data"]
    if isinstance(assigned, CachedData):
        return
    view = CachedData()
    MockCache.cached_data = view
    for store in _live_stores():
        store.raw_clear()
    for key, value in dict(assigned).items():
        view[key] = value
