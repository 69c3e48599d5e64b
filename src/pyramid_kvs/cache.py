"""``request.cache``: the application cache shared by every request.

One ``Cache`` is built at start-up and every request gets the same object, so
a request pays nothing until it reads or writes.  Values go through the configured
codec (JSON by default); the store only sees bytes.

A cache is an optimisation, so by default it never breaks a request: when the store
is unreachable, reads are misses and writes are skipped, both logged.  With
``raise_errors = true`` the ``StoreError`` reaches the
caller instead.  A stored value that does not decode (another application's data, a
codec change) is a logged miss.

``get_or_set`` protects against the stampede that follows the expiry of a costly
entry: the first caller takes a short lock in the store (``add``, atomic on every
backend) and regenerates; the others poll briefly for the new value and compute it
themselves only if it does not arrive within ``lock_wait`` seconds.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .codecs import Codec
from .settings import (
    StoreSpec,
    parse_component,
    setting,
    to_bool,
    to_codec,
    to_key_prefix,
    to_positive_float,
    to_positive_int,
    to_secret,
    to_ttl,
)
from .stores import Store, StoreError, UnsupportedOperation

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_MISSING: Any = object()
#: how long a caller waiting for another's regeneration sleeps between reads: short
#: at first (most values are quick to compute), doubling up to the longest, so a slow
#: regeneration costs the store a few reads per waiting caller, not hundreds
_FIRST_POLL, _LONGEST_POLL = 0.002, 0.05


@dataclass(frozen=True)
class CacheSettings:
    """``kvs.cache``: the application cache behind ``request.cache``."""

    store: StoreSpec
    key_prefix: str = setting("cache::", to_key_prefix)
    #: seconds a value lives unless ``set`` says otherwise; None: no expiry
    ttl: int | None = setting(300, to_ttl)
    codec: str = setting("json", to_codec)
    #: HMAC key signing pickled values (the pickle codec refuses unsigned ones)
    secret: str | None = setting(None, to_secret, sensitive=True)
    #: raise store errors to the caller instead of treating them as misses
    raise_errors: bool = setting(False, to_bool)
    #: seconds one ``get_or_set`` caller may hold the regeneration lock
    lock_timeout: int = setting(30, to_positive_int)
    #: seconds other callers wait for that regeneration before computing themselves
    lock_wait: float = setting(2.0, to_positive_float)


def parse_cache(settings: Mapping[str, Any]) -> CacheSettings | None:
    """``kvs.cache`` as ``CacheSettings``, or ``None`` when not configured."""
    return parse_component(settings, "cache", CacheSettings)


class Cache:
    """A key-value cache over one store and one codec."""

    def __init__(
        self,
        store: Store,
        codec: Codec,
        *,
        ttl: int | None = 300,
        raise_errors: bool = False,
        lock_timeout: int = 30,
        lock_wait: float = 2.0,
    ) -> None:
        self.store = store
        self.codec = codec
        self.default_ttl = ttl
        self.raise_errors = raise_errors
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        # Regeneration locks live beside, not under, the cache prefix, so that
        # list_keys() shows only cached values.
        self._locks = store.with_prefix("lock::" + store.key_prefix)

    @classmethod
    def from_settings(cls, settings: CacheSettings, store: Store, codec: Codec) -> Cache:
        """The cache ``kvs.cache`` describes, over *store* (already under its prefix)."""
        return cls(
            store,
            codec,
            ttl=settings.ttl,
            raise_errors=settings.raise_errors,
            lock_timeout=settings.lock_timeout,
            lock_wait=settings.lock_wait,
        )

    # -- plumbing --------------------------------------------------------------------

    def _ttl(self, ttl: int | None) -> int | None:
        return self.default_ttl if ttl is None else ttl

    def _guard(self, fallback: Any, operation: str, call: Callable[..., Any], *args: Any) -> Any:
        """Run a store call; on a store error, log and return *fallback* (or raise)."""
        try:
            return call(*args)
        except StoreError as exc:
            if self.raise_errors or isinstance(exc, UnsupportedOperation):
                raise
            log.warning("cache %s skipped: %s", operation, exc)
            return fallback

    def _decode(self, key: str, data: bytes | None) -> Any:
        """The value of *data*, or ``_MISSING`` if absent or undecodable."""
        if data is None:
            return _MISSING
        try:
            return self.codec.loads(data)
        except ValueError as exc:
            log.warning("cache value under %r does not decode as %s: %s",
                        key, self.codec.name, exc)  # fmt: skip
            return _MISSING

    def _load(self, key: str) -> Any:
        return self._decode(key, self._guard(None, "read", self.store.get, _check_key(key)))

    # -- the mapping API -------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or *default* on a miss."""
        value = self._load(key)
        return default if value is _MISSING else value

    def __getitem__(self, key: str) -> Any:
        """The cached value, or ``None`` on a miss (as in pyramid_kvs 1.x, whose views
        rely on it; use ``in`` to tell a cached ``None`` from a miss)."""
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        """Forget *key*; no error on a miss (the key may have just expired)."""
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._load(key) is not _MISSING

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        """Cache *value* for *ttl* seconds (default: the configured ``ttl``)."""
        data = self.codec.dumps(value)
        self._guard(None, "write", self.store.set, _check_key(key), data, self._ttl(ttl))

    def add(self, key: str, value: Any, ttl: int | None = None) -> bool:
        """Cache *value* only if *key* is absent; ``True`` when it was stored."""
        data = self.codec.dumps(value)
        return bool(
            self._guard(False, "write", self.store.add, _check_key(key), data, self._ttl(ttl))
        )

    def delete(self, key: str) -> bool:
        """Forget *key*; ``True`` when it was cached."""
        return bool(self._guard(False, "delete", self.store.delete, _check_key(key)))

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove and return the value (atomically where the store allows); *default*
        (``None``, as in 1.x) on a miss."""
        value = self._decode(key, self._guard(None, "pop", self.store.pop, _check_key(key)))
        return default if value is _MISSING else value

    def touch(self, key: str, ttl: int | None = None) -> bool:
        """Give *key* a new expiry; ``True`` when it was cached."""
        return bool(self._guard(False, "touch", self.store.touch, _check_key(key), self._ttl(ttl)))

    def incr(self, key: str, delta: int = 1, ttl: int | None = None) -> int | None:
        """Atomically add *delta* to a counter and return its new value.

        A new counter starts from zero and expires after *ttl* (default: the
        configured ``ttl``).  ``None`` when the store is unreachable.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, not {delta!r}")
        return self._guard(  # type: ignore[no-any-return]
            None, "incr", self.store.incr, _check_key(key), delta, self._ttl(ttl)
        )

    # -- several keys in one round trip ------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of *keys* as a dict; misses are left out."""
        keys = [_check_key(key) for key in _as_key_list(keys)]
        found = self._guard([None] * len(keys), "read", self.store.get_many, keys)
        result = {}
        for key, data in zip(keys, found, strict=True):
            value = self._decode(key, data)
            if value is not _MISSING:
                result[key] = value
        return result

    def set_many(self, mapping: Mapping[str, Any], ttl: int | None = None) -> None:
        """Cache every item of *mapping* with the same *ttl*."""
        encoded = {_check_key(key): self.codec.dumps(value) for key, value in mapping.items()}
        self._guard(None, "write", self.store.set_many, encoded, self._ttl(ttl))

    def list_keys(self, pattern: str = "*") -> list[str]:
        """The cached keys matching the glob *pattern*, without the prefix.

        Lists only this cache's prefix (with ``SCAN`` on Redis, never ``KEYS``).
        Raises ``UnsupportedOperation`` on memcached, which
        cannot list keys.
        """
        return list(self._guard([], "list", self.store.scan, pattern))

    # -- computing values ----------------------------------------------------------------

    def get_or_set(self, key: str, creator: Callable[[], Any], ttl: int | None = None) -> Any:
        """The cached value of *key*; on a miss, ``creator()``, cached and returned.

        Only one caller at a time regenerates a missing key; the others wait up to
        ``lock_wait`` seconds for its result.
        """
        value = self._load(key)
        if value is not _MISSING:
            return value
        locked = self._guard(None, "lock", self._locks.add, key, b"1", self.lock_timeout)
        if locked is False:  # someone else regenerates: wait for their value
            deadline = time.monotonic() + self.lock_wait
            pause = _FIRST_POLL
            while time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_POLL)
                value = self._load(key)
                if value is not _MISSING:
                    return value
        try:
            value = creator()
            self.set(key, value, ttl)
            return value
        finally:
            if locked:
                self._guard(None, "unlock", self._locks.delete, key)

    def cached(
        self, ttl: int | None = None, key: Callable[..., str] | None = None
    ) -> Callable[[F], F]:
        """Decorate a function so that its results are cached.

        The key is the function's qualified name and its arguments as JSON (they
        must be JSON-serializable), or what *key* returns for the same arguments.
        The decorated function gains ``invalidate(*args, **kwargs)``.
        """

        def decorate(func: F) -> F:
            def key_for(*args: Any, **kwargs: Any) -> str:
                if key is not None:
                    return key(*args, **kwargs)
                try:
                    arguments = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
                except TypeError as exc:
                    raise TypeError(
                        f"cannot build a cache key for {func.__qualname__}: {exc}; "
                        "pass key=... to cached()"
                    ) from None
                return f"{func.__module__}.{func.__qualname__}:{arguments}"

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.get_or_set(
                    key_for(*args, **kwargs), lambda: func(*args, **kwargs), ttl
                )

            wrapper.invalidate = lambda *a, **kw: self.delete(key_for(*a, **kw))  # type: ignore[attr-defined]
            return wrapper  # type: ignore[return-value]

        return decorate


#: the name pyramid_kvs 1.x gave the class of ``request.cache``
ApplicationCache = Cache


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cache keys are strings, not {type(key).__name__}")
    return key


def _as_key_list(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, (str, bytes)):
        raise TypeError("get_many takes a sequence of keys, not a single string")
    return list(keys)
