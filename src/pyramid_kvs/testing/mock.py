"""The mock store: the memory store, plus what tests need to look at.

Every operation is recorded in ``calls`` as ``(operation, full key)`` - records
(sessions) and batches included, since a batch runs the store's own methods - and
the expiry each write or touch gave a key is kept for ``last_ttl``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from ..stores.base import StoredRecord
from ..stores.memory import MemoryStore
from . import legacy


class MockStore(MemoryStore):
    """A memory store that remembers what was asked of it.

    The views of one mock under other prefixes (``with_prefix``) share its ``calls``
    and TTLs, as they share its data.
    """

    name = "mock"

    def __init__(self, key_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(key_prefix, **kwargs)
        self._ttls: dict[str, int | None] = {}
        self.calls: list[tuple[str, str]] = []
        legacy.track(self)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MockStore:
        """Options are accepted and ignored: a mock stands in for any backend."""
        return cls()

    def _record(self, operation: str, key: str) -> str:
        full_key = self.full_key(key)
        self.calls.append((operation, full_key))
        return full_key

    def _expires(self, full_key: str, ttl: int | None) -> None:
        self._ttls[full_key] = ttl

    def _exists(self, key: str) -> bool:
        with self._lock:
            return self._live(self.full_key(key)) is not None

    # -- plain values ------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        self._record("get", key)
        return super().get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        for key in keys:
            self._record("get_many", key)
        return super().get_many(keys)

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        self._record("get_bounded", key)
        return super().get_bounded(key, max_size)

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        full_key = self._record("set", key)
        legacy.note_write(ttl)
        super().set(key, value, ttl)
        self._expires(full_key, ttl)

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        full_keys = [self._record("set_many", key) for key in mapping]
        legacy.note_write(ttl)
        super().set_many(mapping, ttl)
        for full_key in full_keys:
            self._expires(full_key, ttl)

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        full_key = self._record("add", key)
        legacy.note_write(ttl)
        added = super().add(key, value, ttl)
        if added:
            self._expires(full_key, ttl)
        return added

    def delete(self, key: str) -> bool:
        self._record("delete", key)
        return super().delete(key)

    def touch(self, key: str, ttl: int | None) -> bool:
        full_key = self._record("touch", key)
        touched = super().touch(key, ttl)
        if touched:
            self._expires(full_key, ttl)
        return touched

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        full_key = self._record("get_and_touch", key)
        value = super().get_and_touch(key, ttl)
        if value is not None:
            self._expires(full_key, ttl)
        return value

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        full_key = self._record("incr", key)
        created = not self._exists(key)
        result = super().incr(key, amount, ttl)
        if created:  # the expiry is set when the counter is created
            legacy.note_write(ttl)
            self._expires(full_key, ttl)
        return result

    def pop(self, key: str) -> bytes | None:
        self._record("pop", key)
        return super().pop(key)

    def scan(self, pattern: str = "*") -> Iterator[str]:
        self._record("scan", pattern)
        return super().scan(pattern)

    # -- records (sessions) --------------------------------------------------------------

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        full_key = self._record("load_record", key)
        record = super().load_record(key, ttl)
        if record is not None:  # a load renews the record's expiry
            self._expires(full_key, ttl)
        return record

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        full_key = self._record("update_record", key)
        legacy.note_write(ttl)
        super().update_record(key, changed, removed, ttl, base)
        self._expires(full_key, ttl)

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        full_key = self._record("replace_record", key)
        legacy.note_write(ttl)
        super().replace_record(key, fields, ttl)
        self._expires(full_key, ttl)

    # -- introspection -----------------------------------------------------------------

    def last_ttl(self, key: str) -> int | None:
        """The expiry (seconds, or ``None`` for none) last given to *key*, without prefix.

        Set by every write and every touch: ``set``, ``add``, ``touch``, a counter's
        creation, and for records ``replace_record``, ``update_record`` and the
        renewal of ``load_record``.  ``KeyError`` if *key* was never given one.
        """
        return self._ttls[self.full_key(key)]

    @property
    def data(self) -> dict[str, bytes]:
        """The live plain values under this prefix (keys without the prefix).

        Records - sessions - are in ``records``.
        """
        return {key: value for key, value in self._entries().items() if isinstance(value, bytes)}

    @property
    def records(self) -> dict[str, dict[str, bytes]]:
        """The live records under this prefix (keys without the prefix), as field maps.

        Session records are keyed by a hash of the session id, and their fields are
        encoded: ``pyramid_kvs.testing.sessions(registry)`` reads them by session.
        """
        entries = self._entries().items()
        return {key: dict(value) for key, value in entries if isinstance(value, dict)}

    def _entries(self) -> dict[str, Any]:
        """This prefix's live entries, read without being recorded as calls."""
        legacy.adopt_reassigned_data()
        cut = len(self.key_prefix)
        now = self._clock()
        with self._lock:
            return {
                full_key[cut:]: value
                for full_key, (value, expires_at) in self._data.items()
                if expires_at is None or expires_at > now
            }

    # -- what MockCache (1.x's view) needs: every area, by full key ----------------------

    def _live(self, full_key: str) -> Any:
        legacy.adopt_reassigned_data()
        return super()._live(full_key)

    def _put(self, full_key: str, value: Any, expires_at: float | None) -> None:
        legacy.adopt_reassigned_data()
        super()._put(full_key, value, expires_at)

    def raw_entries(self) -> dict[str, Any]:
        """Every live entry of every area, by full key (records as dicts)."""
        now = self._clock()
        with self._lock:
            return {
                full_key: value
                for area in self._areas.values()
                for full_key, (value, expires_at) in area.items()
                if expires_at is None or expires_at > now
            }

    def raw_put(self, full_key: str, value: bytes) -> None:
        """Store *value* under *full_key*, without expiry, in its prefix's area."""
        with self._lock:
            prefix = max((p for p in self._areas if full_key.startswith(p)), key=len, default="")
            area = self._areas.setdefault(prefix, type(self._data)())
            area[full_key] = (value, None)

    def raw_delete(self, full_key: str) -> bool:
        with self._lock:
            return any(area.pop(full_key, None) is not None for area in self._areas.values())

    def raw_clear(self) -> None:
        self.clear()
