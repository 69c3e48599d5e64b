"""The in-process memory store: the embedded default.

It needs no server, so a new project, the demo and a single-process deployment work
out of the box.  It is a real store with the same semantics as Redis and memcached -
expiry, atomic ``add`` / ``incr`` / ``pop``, glob ``scan`` - and it is bounded: past
``max_entries`` the least recently used entry is evicted, as memcached does, so a
flood of new sessions cannot exhaust the process' memory.

Each key prefix - each component, since each has its own - is a separate *area*
with its own LRU order and its own ``max_entries`` bound.  In one shared LRU, the
rate-limit counters and cache entries that any client can make up by the thousand
would evict the real sessions; in separate areas they only evict their own kind.
The prefixed views of one store still share its lock and its areas, so batches
and ``shares_client_with`` work across them as on the other stores.

Its data is per process: behind several workers, use Redis or memcached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from .base import (
    LockingStore,
    StoredRecord,
    WrongKind,
    check_ttl,
    check_value,
    glob_matcher,
)

DEFAULT_MAX_ENTRIES = 100_000

M = TypeVar("M", bound="MemoryStore")
#: what an entry holds: bytes, or a record's fields
Entry = bytes | dict[str, bytes]


class MemoryStore(LockingStore):
    """A thread-safe, TTL-aware dictionary of bytes, LRU-bounded per key prefix.

    Its lock and clock are the ``LockingStore`` capability: the rate limiter's
    checks run inside the lock instead of a script.
    """

    name = "memory"

    def __init__(
        self,
        key_prefix: str = "",
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(key_prefix)
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        #: the bound of each area (each key prefix), not of the whole store
        self.max_entries = max_entries
        self._clock = clock
        # key prefix -> its area, shared by every view of this store
        self._areas: dict[str, _Area] = {}
        # this view's area: full key -> (value, absolute expiry on self._clock or None)
        self._data = self._areas[key_prefix] = _Area()
        self._lock = threading.RLock()

    def with_prefix(self: M, key_prefix: str) -> M:
        """A view under *key_prefix*, in that prefix's own area of this store."""
        clone = super().with_prefix(key_prefix)
        with self._lock:
            clone._data = self._areas.setdefault(key_prefix, _Area())
        return clone

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MemoryStore:
        """Options: ``max_entries`` per key prefix (default 100000)."""
        options = dict(options)
        max_entries = int(options.pop("max_entries", DEFAULT_MAX_ENTRIES))
        if options:
            raise TypeError(f"unknown option(s) for the memory store: {', '.join(options)}")
        return cls(max_entries=max_entries)

    # The lock and the data are shared by every prefixed view (see with_prefix).

    def atomically(self) -> AbstractContextManager[object]:
        """Hold the store's lock: a read-modify-write inside is atomic for every caller.

        The lock is reentrant, so the store's own methods work inside the block; it
        is what the rate limiter's checks use on this store instead of a script.
        """
        return self._lock

    def now(self) -> float:
        """The store's clock (monotonic by default, injectable for tests), in seconds."""
        return self._clock()

    def _expiry(self, ttl: int | None) -> float | None:
        ttl = check_ttl(ttl)
        return None if ttl is None else self._clock() + ttl

    def _live(self, full_key: str) -> Entry | None:
        """The live value under *full_key*, dropping it if expired; caller holds the lock."""
        item = self._data.get(full_key)
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and expires_at <= self._clock():
            del self._data[full_key]
            return None
        self._data.move_to_end(full_key)
        return value

    def _live_bytes(self, full_key: str) -> bytes | None:
        value = self._live(full_key)
        if isinstance(value, dict):
            raise WrongKind(f"{full_key!r} holds a record, not a value")
        return value

    def _put(self, full_key: str, value: Entry, expires_at: float | None) -> None:
        """Store bytes (or a record's dict), evicting the least recently used entries."""
        if not isinstance(value, dict):
            check_value(value)
        self._data[full_key] = (value, expires_at)
        self._data.move_to_end(full_key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live_bytes(self.full_key(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            return [self._live_bytes(self.full_key(key)) for key in keys]

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        expires_at = self._expiry(ttl)
        with self._lock:
            self._put(self.full_key(key), value, expires_at)

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        expires_at = self._expiry(ttl)
        with self._lock:
            for key, value in mapping.items():
                self._put(self.full_key(key), value, expires_at)

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            if self._live(full_key) is not None:
                return False
            self._put(full_key, value, expires_at)
            return True

    def delete(self, key: str) -> bool:
        full_key = self.full_key(key)
        with self._lock:
            present = self._live(full_key) is not None
            self._data.pop(full_key, None)
            return present

    def touch(self, key: str, ttl: int | None) -> bool:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            value = self._live(full_key)
            if value is None:
                return False
            self._data[full_key] = (value, expires_at)
            return True

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            value = self._live_bytes(full_key)
            if value is not None:
                self._data[full_key] = (value, expires_at)
            return value

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            current = self._live(full_key)
            if current is None:
                result = amount
            else:
                result = _as_int(current, key) + amount
                expires_at = self._data[full_key][1]
            self._put(full_key, str(result).encode(), expires_at)
            return result

    def pop(self, key: str) -> bytes | None:
        full_key = self.full_key(key)
        with self._lock:
            value = self._live_bytes(full_key)
            self._data.pop(full_key, None)
            return value

    # Records are kept as dicts in the same table; their entries are never
    # shared with callers, which get copies.

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            record = self._live_record(full_key)
            if record is None:
                return None
            self._data[full_key] = (record, expires_at)
            return StoredRecord(dict(record))

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        expires_at = self._expiry(ttl)
        full_key = self.full_key(key)
        with self._lock:
            record = dict(self._live_record(full_key) or {})
            for name in removed:
                record.pop(name, None)
            record.update({name: check_value(value) for name, value in changed.items()})
            self._put_record(full_key, record, expires_at)

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        expires_at = self._expiry(ttl)
        record = {name: check_value(value) for name, value in fields.items()}
        with self._lock:
            self._put_record(self.full_key(key), record, expires_at)

    def _live_record(self, full_key: str) -> dict[str, bytes] | None:
        value = self._live(full_key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise WrongKind(f"{full_key!r} does not hold a record")
        return value

    def _put_record(
        self, full_key: str, record: dict[str, bytes], expires_at: float | None
    ) -> None:
        if not record:
            self._data.pop(full_key, None)  # like Redis: an empty hash does not exist
            return
        self._put(full_key, record, expires_at)

    def scan(self, pattern: str = "*") -> Iterator[str]:
        matches = glob_matcher(pattern)
        cut = len(self.key_prefix)
        with self._lock:
            now = self._clock()
            keys = [
                full_key[cut:]
                for full_key, (_, expires_at) in self._data.items()
                if expires_at is None or expires_at > now
            ]
        return iter([key for key in keys if matches(key)])

    def ping(self) -> None:
        return None

    def server_info(self) -> dict[str, str]:
        return {"store": self.name, "server": "in-process"}

    def shared_state(self) -> object:
        return self._areas

    def clear(self) -> None:
        """Forget every entry, under every prefix (for tests and the demo)."""
        with self._lock:
            for area in self._areas.values():
                area.clear()


def _as_int(value: Entry, key: str) -> int:
    """The integer *value* holds; ``WrongKind`` for anything else, a record included."""
    if isinstance(value, bytes):
        try:
            return int(value)
        except ValueError:
            pass
    raise WrongKind(f"the value under {key!r} is not an integer")


class _Area(OrderedDict[str, tuple[Entry, float | None]]):
    """The entries of one key prefix, least recently used first.

    Full key -> (value, absolute expiry on the store's clock or None); the value is
    bytes, or a record's dict.
    """
