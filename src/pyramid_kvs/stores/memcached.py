"""The memcached store, on pymemcache.

What this module adds to pymemcache, and why:

* **Confirmed writes.** pymemcache defaults to ``noreply``: a write the server
  refused (value too large, out of memory) is silently lost.  Every client here is
  built with ``default_noreply=False``.
* **Any key works.** memcached keys are at most 250 bytes of non-space, non-control
  characters.  Longer or odd keys are replaced by a SHA-256 digest under a marker
  (``#h:``); a plain key that itself starts with the marker is hashed too, so two
  distinct keys can never collide.
* **TTL means the same as on Redis.** memcached reads an expiry over 30 days as an
  absolute Unix time; longer TTLs are converted to one.
* **get-and-touch.** memcached has ``gat`` (read and reset the expiry in one command)
  but pymemcache 4 does not wrap it; ``_GatClient`` adds it through the same
  response parser pymemcache uses for ``get``.
* **Flags survive.** Values come back as ``FlaggedBytes``, a ``bytes`` carrying
  the item's client flags, which the Perl session reader needs (Cache::Memcached
  marks Storable and compressed values with them).

* **Outages are outages.** Bounded connect and read timeouts by default, no
  client retries, a circuit breaker per server, and several servers
  (``memcached://h1:p1,h2:p2``) that never hand a dead server's keys to another:
  see ``stores.memcached_servers``.

memcached has no key listing: ``Store.scan`` raises
``UnsupportedOperation``.  ``pop`` is a read then a delete, not atomic.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from .base import (
    THIRTY_DAYS,
    CompareAndSwapStore,
    StoredRecord,
    StoreError,
    ValueTooLarge,
    WrongKind,
    check_ttl,
    check_value,
)
from .breaker import pop_down_for, to_timeout
from .memcached_servers import MemcachedServers

HASHED_KEY_MARKER = "#h:"
MAX_KEY_BYTES = 250

#: seconds to open a connection, unless configured otherwise
DEFAULT_CONNECT_TIMEOUT = 1.0
#: seconds to wait for a reply, unless configured otherwise
DEFAULT_READ_TIMEOUT = 1.0
#: pymemcache ``HashClient`` options, ignored (with a warning): pyramid_kvs keeps a
#: failed server's keys on it, raising StoreUnavailable, instead of moving them
FAILOVER_OPTIONS = ("retry_attempts", "retry_timeout", "dead_timeout", "hasher", "use_pooling")
#: python-memcached's options (the client of pyramid_kvs 1.x) that pymemcache has no
#: use for: values stay bytes (no pickling, no compression), long or odd keys are
#: hashed, and a dead server's keys are an outage (``down_for``, not ``dead_retry``)
PYTHON_MEMCACHED_OPTIONS = (
    "debug", "pickleProtocol", "pickler", "unpickler", "compressor", "decompressor",
    "pload", "pid", "server_max_key_length", "server_max_value_length", "dead_retry",
    "cache_cas", "flush_on_reconnect", "check_keys",
)  # fmt: skip

log = logging.getLogger(__name__)


RECORD_MAGIC = b"\x00kvs-record-1\x00"
_LENGTH = struct.Struct(">I")
#: compare-and-swap attempts before a record update gives up, each failed one meaning
#: another client changed the record in between.  Only the overlapping requests of
#: one session update its record, so few ever collide (the rate limiter, whose every
#: request of a holder races on one key, allows more: ``ratelimit.cas``).
RECORD_CAS_ATTEMPTS = 16


def encode_record(fields: Mapping[str, bytes]) -> bytes:
    """A record as one memcached value: the magic, then length-prefixed names and values."""
    parts = [RECORD_MAGIC]
    for name, value in fields.items():
        raw_name = name.encode("utf-8", "surrogateescape")
        parts += [_LENGTH.pack(len(raw_name)), raw_name, _LENGTH.pack(len(value)), value]
    return b"".join(parts)


def decode_record(data: bytes) -> dict[str, bytes]:
    """The fields of a value written by ``encode_record``; StoreError otherwise."""
    if not data.startswith(RECORD_MAGIC):
        raise WrongKind("memcached: the value is not a record")
    fields: dict[str, bytes] = {}
    offset, end = len(RECORD_MAGIC), len(data)
    try:
        while offset < end:
            (size,) = _LENGTH.unpack_from(data, offset)
            name = data[offset + 4 : offset + 4 + size]
            offset += 4 + size
            (size,) = _LENGTH.unpack_from(data, offset)
            value = data[offset + 4 : offset + 4 + size]
            offset += 4 + size
            if offset > end:
                raise WrongKind("memcached: truncated record")
            fields[name.decode("utf-8", "surrogateescape")] = bytes(value)
    except struct.error:
        raise WrongKind("memcached: truncated record") from None
    return fields


class FlaggedBytes(bytes):
    """A stored value with the memcached client flags it was stored with."""

    flags: int = 0


class _FlagKeepingSerde:
    """pymemcache serde that stores bytes as they are and keeps flags on read."""

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        return check_value(value), getattr(value, "flags", 0)

    def deserialize(self, key: Any, value: bytes, flags: int) -> FlaggedBytes:
        result = FlaggedBytes(value)
        result.flags = flags
        return result


def memcached_key(full_key: str) -> bytes:
    """*full_key* as a valid memcached key, hashed when it could not be one."""
    raw = full_key.encode("utf-8", "surrogateescape")
    if (
        len(raw) > MAX_KEY_BYTES
        or any(byte <= 32 or byte == 127 for byte in raw)
        or HASHED_KEY_MARKER.encode() in raw
    ):
        return (HASHED_KEY_MARKER + hashlib.sha256(raw).hexdigest()).encode()
    return raw


def memcached_expiry(ttl: int | None, now: float | None = None) -> int:
    """The ``exptime`` argument for *ttl* seconds (0: never expires)."""
    ttl = check_ttl(ttl)
    if ttl is None:
        return 0
    if ttl > THIRTY_DAYS:
        return int(time.time() if now is None else now) + ttl
    return ttl


def parse_server(server: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` (or a tuple) as a ``(host, port)`` pair; port 11211 by default."""
    if isinstance(server, (tuple, list)):
        return str(server[0]), int(server[1])
    host, sep, port_text = str(server).rpartition(":")
    if not sep:
        return str(server), 11211
    return host.strip("[]"), int(port_text)


@dataclass(frozen=True)
class MemcachedOptions:
    """A memcached store's options once normalised."""

    servers: list[tuple[str, int]]
    #: keyword arguments of each server's pymemcache ``PooledClient``
    client_kwargs: dict[str, Any]
    #: seconds a server is left alone after a failure (see ``stores.breaker``)
    down_for: float


def normalise_options(options: Mapping[str, Any]) -> MemcachedOptions:
    """``kvs_kwargs`` (or the options of a ``memcached://`` URL), normalised.

    ``servers`` is a list of ``host:port`` (or one string of them, comma
    separated); ``down_for`` goes to the breakers; the other options are
    pymemcache's (``connect_timeout``, ``timeout``, ``max_pool_size``, ``no_delay``...),
    the timeouts ``DEFAULT_CONNECT_TIMEOUT`` and ``DEFAULT_READ_TIMEOUT``
    unless given.  pymemcache's client does not retry.  ``HashClient``'s fail-over
    options are ignored with a warning and ``ignore_exc`` is refused, since each
    would turn an outage into moved or missing keys.  Raises ``ValueError`` naming
    the option.
    """
    kwargs = dict(options)
    down_for = pop_down_for(kwargs)
    servers = kwargs.pop("servers", ["127.0.0.1:11211"])
    if isinstance(servers, str):
        servers = [part for part in servers.split(",") if part.strip()]
    try:
        addresses = [parse_server(server) for server in servers]
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"servers: expected a list of host:port, got {servers!r}") from None
    if not addresses:
        raise ValueError("servers: at least one memcached server is needed")
    if "socket_timeout" in kwargs:
        # python-memcached's one timeout, for connecting and for each reply
        timeout = kwargs.pop("socket_timeout")
        kwargs.setdefault("connect_timeout", timeout)
        kwargs.setdefault("timeout", timeout)
    ignored = [name for name in FAILOVER_OPTIONS if kwargs.pop(name, None) is not None]
    if ignored:
        # Valid pymemcache options, kept by configurations written for HashClient:
        # they must not stop the application, and cannot be honoured.
        _warn_ignored(
            ignored,
            "a server that fails keeps its keys, which raise StoreUnavailable until it "
            "answers again; down_for sets how long it is left alone",
        )
    obsolete = [name for name in PYTHON_MEMCACHED_OPTIONS if name in kwargs]
    for name in obsolete:
        del kwargs[name]
    if obsolete:
        # Settings written for pyramid_kvs 1.x, whose client was python-memcached.
        _warn_ignored(
            obsolete,
            "python-memcached options, with no use with pymemcache: values are stored "
            "as bytes, odd keys are hashed, and down_for replaces dead_retry",
        )
    if kwargs.get("ignore_exc"):
        raise ValueError("ignore_exc: must stay false: it turns an outage into misses")
    for name, default in (
        ("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        ("timeout", DEFAULT_READ_TIMEOUT),
    ):
        kwargs[name] = to_timeout(name, kwargs.get(name, default))
    kwargs["default_noreply"] = False
    kwargs["serde"] = _FlagKeepingSerde()
    return MemcachedOptions(addresses, kwargs, down_for)


def _warn_ignored(names: list[str], why: str) -> None:
    message = f"memcached option(s) {', '.join(names)} ignored: {why}"
    warnings.warn(message, UserWarning, stacklevel=3)
    log.warning(message)


class MemcachedStore(CompareAndSwapStore):
    """One or several memcached servers through pymemcache.

    memcached's own ``gets`` / ``cas`` are the ``CompareAndSwapStore`` capability:
    the records' updates and the rate limiter's checks are built on them.
    """

    name = "memcached"
    can_scan = False
    atomic_pop = False

    def __init__(self, client: MemcachedServers, key_prefix: str = "") -> None:
        super().__init__(key_prefix)
        self.client = client

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MemcachedStore:
        """Build the client from ``{"servers": ["host:port", ...], ...}`` (or a URL's).

        See ``normalise_options``.
        """
        normalised = normalise_options(options)
        return cls(
            MemcachedServers(normalised.servers, normalised.client_kwargs, normalised.down_for)
        )

    def _key(self, key: str) -> bytes:
        return memcached_key(self.full_key(key))

    def call(self, method: str, wire_key: bytes, *args: Any) -> Any:
        """pymemcache's *method* on the server of *wire_key*, as the store calls it.

        Through that server's breaker, pymemcache's errors translated: every command
        of the store goes through here.  Components needing more than the contract
        use the store's capabilities (``gets`` / ``cas``), which take contract keys.
        """
        return self.client.call(method, wire_key, *args)

    def get(self, key: str) -> bytes | None:
        return cast("bytes | None", self.call("get", self._key(key)))

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        """One ``get`` whose body is not read when its header announces too many bytes.

        The connection is then closed, dropping the unread bytes with it, and the
        pool opens a new one for the next request.
        """
        value = cast("bytes | None", self.call("get_bounded", self._key(key), max_size))
        if value is not None and len(value) > max_size:  # a client that read it anyway
            raise ValueTooLarge(len(value), max_size)
        return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        wire_keys = [self._key(key) for key in keys]
        found = self.client.get_many(wire_keys)
        return [found.get(wire_key) for wire_key in wire_keys]

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        if not self.call("set", self._key(key), value, memcached_expiry(ttl)):
            raise StoreError(f"memcached refused to store {key!r}")

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        if not mapping:
            return
        wire = {self._key(key): value for key, value in mapping.items()}
        failed = self.client.set_many(wire, memcached_expiry(ttl))
        if failed:
            raise StoreError(f"memcached refused to store {len(failed)} key(s)")

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return bool(self.call("add", self._key(key), value, memcached_expiry(ttl)))

    def delete(self, key: str) -> bool:
        return bool(self.call("delete", self._key(key)))

    def touch(self, key: str, ttl: int | None) -> bool:
        return bool(self.call("touch", self._key(key), memcached_expiry(ttl)))

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        return cast("bytes | None", self.call("gat", self._key(key), memcached_expiry(ttl)))

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        wire_key = self._key(key)
        expiry = memcached_expiry(ttl)
        # incr on an existing counter; on a miss, create it with add (which carries
        # the expiry); if another client created it meanwhile, add fails and incr
        # applies to theirs.  memcached counters are unsigned: a negative amount
        # decrements and stops at zero.
        for _ in range(5):
            result = self._step(wire_key, amount)
            if result is not None:
                return result
            if self.call("add", wire_key, str(max(amount, 0)).encode(), expiry):
                return max(amount, 0)
        raise StoreError(f"memcached: could not increment {key!r}")

    def _step(self, wire_key: bytes, amount: int) -> int | None:
        if amount >= 0:
            result = self.call("incr", wire_key, amount)
        else:
            result = self.call("decr", wire_key, -amount)
        return None if result is None else int(result)

    # -- compare-and-swap ----------------------------------------------------------------

    def gets(self, key: str) -> tuple[bytes | None, object]:
        value, token = self.call("gets", self._key(key))
        return value, token

    def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
        # pymemcache answers None when the key is gone, False when it changed
        return bool(self.call("cas", self._key(key), value, token, memcached_expiry(ttl)))

    # -- records: one value per record, updated by compare-and-swap ------------------

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        value, cas = self.call("gats", self._key(key), memcached_expiry(ttl))
        if value is None:
            return None
        return StoredRecord(decode_record(value), cas)

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        if not changed and not removed:
            return
        check_ttl(ttl)
        for value in changed.values():
            check_value(value)
        for _ in range(RECORD_CAS_ATTEMPTS):
            if base is None or base.version is None:
                stored, token = self.gets(key)
                base = None if stored is None else StoredRecord(decode_record(stored), token)
            fields = {} if base is None else dict(base.fields)
            for name in removed:
                fields.pop(name, None)
            fields.update(changed)
            if base is None:
                if not fields or self.add(key, encode_record(fields), ttl):
                    return
            elif not fields:
                # memcached has no compare-and-delete: deleting an emptied record
                # may drop a field another client added in this instant.
                self.delete(key)
                return
            elif self.cas(key, encode_record(fields), base.version, ttl):
                return
            base = None  # someone else wrote in between: merge into their version
        raise StoreError(f"memcached: {key!r} kept changing; update abandoned")

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        if not fields:
            self.delete(key)
            return
        self.set(key, encode_record(fields), ttl)

    def ping(self) -> None:
        self.client.version()

    def server_info(self) -> dict[str, str]:
        """Every server's address and ``version``, one request each."""
        versions = self.client.versions()
        return {
            "store": self.name,
            "server": ", ".join(versions),
            "version": ", ".join(dict.fromkeys(versions.values())),
        }

    def shared_state(self) -> object:
        return self.client

    def close(self) -> None:
        self.client.close()
