"""The mock store: the memory store, plus what tests need to look at."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..stores.base import StoredRecord
from ..stores.memory import MemoryStore
from . import legacy


class MockStore(MemoryStore):
    """A memory store that remembers what was asked of it."""

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

    def _record(self, operation: str, key: str) -> None:
        self.calls.append((operation, self.full_key(key)))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._record("set", key)
        legacy.note_write(ttl)
        super().set(key, value, ttl)
        self._ttls[self.full_key(key)] = ttl

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        self._record("add", key)
        legacy.note_write(ttl)
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

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        legacy.note_write(ttl)
        super().set_many(mapping, ttl)

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        legacy.note_write(ttl)
        super().replace_record(key, fields, ttl)

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        legacy.note_write(ttl)
        super().update_record(key, changed, removed, ttl, base)

    def last_ttl(self, key: str) -> int | None:
        """The TTL given when *key* (without prefix) was last written."""
        return self._ttls[self.full_key(key)]

    @property
    def data(self) -> dict[str, bytes]:
        """The live entries under this prefix (keys without the prefix)."""
        values = {key: MemoryStore.get(self, key) for key in self.scan()}
        return {key: value for key, value in values.items() if value is not None}

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
        with self._lock:
            for area in self._areas.values():
                area.clear()
