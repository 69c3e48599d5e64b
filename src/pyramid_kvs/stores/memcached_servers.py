"""The memcached servers of one store: a pool of connections and a breaker for each.

A memcached store talks to one server, or to several sharing the keys by rendezvous
hashing (the hash pymemcache's ``HashClient`` uses, so keys land on the same server
as they would with it).  This module replaces ``HashClient`` because of what it does
when a server fails: it takes the server out of the ring, and the server's keys
silently move to the others.  For a cache that is a cold miss; for sessions it is a
silent logout, and for a rate limiter a fresh counter.  Here every server keeps its
place in the ring: while one is down, *its* keys raise ``StoreUnavailable`` -
which the cache takes as a miss and sessions as an outage - and the other servers'
keys keep working.

Each server has its own ``CircuitBreaker`` (``stores.breaker``), so a dead server costs
one timeout, then fails fast until it answers again, without closing the others.

``translate_errors`` is memcached's one translation of pymemcache's errors: the
store, its batches and its compare-and-swap (which the rate limiter uses) all call
through ``MemcachedServers.call``, which applies it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pymemcache.client.base import Client, PooledClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

from .base import StoreError, StoreUnavailable, ValueTooLarge
from .breaker import DEFAULT_DOWN_FOR, CircuitBreaker


def translate_errors(exc: Exception) -> StoreError:
    """The pyramid_kvs error for a pymemcache (or socket) exception.

    Not reaching the server - refused, timed out, connection dropped - is
    ``StoreUnavailable``.  Anything the server answered (``SERVER_ERROR out of
    memory``, a value over the item size, a bad key) is a plain ``StoreError``:
    the server is up, and the breaker stays closed.
    """
    message = f"memcached: {str(exc) or type(exc).__name__}"
    if isinstance(exc, (OSError, MemcacheUnexpectedCloseError)):
        return StoreUnavailable(message)
    return StoreError(message)


def translated(function: Callable[..., Any], *args: Any) -> Any:
    """Call pymemcache's *function*, raising its errors as pyramid_kvs ones."""
    try:
        return function(*args)
    except (MemcacheError, OSError) as exc:
        raise translate_errors(exc) from exc


class _GatClient(Client):  # pymemcache is untyped: Client is Any to mypy
    """pymemcache's client plus ``gat`` (get and touch) and a size-bounded ``get``."""

    #: while ``get_bounded`` runs: the most bytes a value may have
    _value_limit: int | None = None

    def gat(self, key: bytes, expire: int) -> bytes | None:
        # "gat <exptime> <key>" answers exactly like "get <key>", so pymemcache's
        # own reader parses it.
        found = self._fetch_cmd(b"gat " + str(int(expire)).encode(), [key], False)
        return cast("bytes | None", found.get(key))

    def gats(self, key: bytes, expire: int) -> tuple[bytes | None, Any]:
        """``gat`` that also returns the CAS token, like ``gets``."""
        found = self._fetch_cmd(b"gats " + str(int(expire)).encode(), [key], True)
        return cast("tuple[bytes | None, Any]", found.get(key, (None, None)))

    def get_bounded(self, key: bytes, max_size: int) -> bytes | None:
        """``get`` refusing a value of more than *max_size* bytes before reading it.

        memcached cannot be asked to send a value only below a size, but every value
        arrives behind a ``VALUE <key> <flags> <bytes>`` line.  pymemcache reads that
        line, then the body, in ``_extract_value`` (the hook it provides for
        subclasses); ours raises ``ValueTooLarge`` on the announced size before
        the body is read, and ``_fetch_cmd`` closes the connection on any error,
        unread bytes included.  The server answered: for the breaker, that is no
        outage.
        """
        self._value_limit = max_size
        try:
            found = self._fetch_cmd(b"get", [key], False)
        finally:
            self._value_limit = None
        return cast("bytes | None", found.get(key))

    def _extract_value(
        self,
        expect_cas: bool,
        line: bytes,
        buf: bytes,
        remapped_keys: dict[bytes, Any],
        prefixed_keys: list[bytes],
    ) -> tuple[Any, Any, bytes]:
        limit = self._value_limit
        if limit is not None:
            # VALUE <key> <flags> <bytes> [<cas unique>]
            fields = line.split()
            if len(fields) > 3 and fields[3].isdigit() and int(fields[3]) > limit:
                raise ValueTooLarge(int(fields[3]), limit)
        extracted = super()._extract_value(expect_cas, line, buf, remapped_keys, prefixed_keys)
        return cast("tuple[Any, Any, bytes]", extracted)


class _PooledGatClient(PooledClient):  # PooledClient is Any to mypy too
    """A thread-safe pool of ``_GatClient`` connections to one server."""

    client_class = _GatClient

    def gat(self, key: bytes, expire: int) -> bytes | None:
        with self.client_pool.get_and_release(destroy_on_fail=True) as client:
            return cast("bytes | None", client.gat(key, expire))

    def gats(self, key: bytes, expire: int) -> tuple[bytes | None, Any]:
        with self.client_pool.get_and_release(destroy_on_fail=True) as client:
            return cast("tuple[bytes | None, Any]", client.gats(key, expire))

    def get_bounded(self, key: bytes, max_size: int) -> bytes | None:
        with self.client_pool.get_and_release(destroy_on_fail=True) as client:
            return cast("bytes | None", client.get_bounded(key, max_size))


class Server:
    """One memcached server: its address, its pooled client, its breaker."""

    def __init__(
        self,
        address: tuple[str, int],
        client_kwargs: Mapping[str, Any],
        down_for: float,
        clock: Callable[[], float],
    ) -> None:
        self.address = address
        #: the name rendezvous hashing knows it by (pymemcache's HashClient's)
        self.name = f"{address[0]}:{address[1]}"
        self.client = _PooledGatClient(address, **client_kwargs)
        self.breaker = CircuitBreaker(f"memcached {self.name}", down_for, clock)

    def call(self, method: str, *args: Any) -> Any:
        """pymemcache's *method* on this server, through its breaker."""
        return self.breaker.call(translated, getattr(self.client, method), *args)


class MemcachedServers:
    """The servers of one memcached store, each key on one of them, none ever dropped.

    This is the client a ``memcached.MemcachedStore`` and its prefixed views
    share.  Keys are wire keys (bytes, already valid for memcached).
    """

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        client_kwargs: Mapping[str, Any],
        down_for: float = DEFAULT_DOWN_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not addresses:
            raise ValueError("at least one memcached server is needed")
        self.servers = tuple(
            Server(address, client_kwargs, down_for, clock) for address in addresses
        )
        self._by_name = {server.name: server for server in self.servers}
        if len(self._by_name) < len(self.servers):
            raise ValueError("servers: the same memcached server is listed twice")
        self._ring = RendezvousHash(nodes=list(self._by_name))

    def server_for(self, key: bytes) -> Server:
        """The server holding *key*: always the same one, up or down."""
        if len(self.servers) == 1:
            return self.servers[0]
        return self._by_name[self._ring.get_node(key)]

    def call(self, method: str, key: bytes, *args: Any) -> Any:
        """pymemcache's *method* (``get``, ``cas``, ``gat``...) on *key*'s server.

        Raises ``StoreUnavailable`` when that server cannot be reached (or has
        just failed), ``StoreError`` when it answers with an error.
        """
        return self.server_for(key).call(method, key, *args)

    def _by_server(self, keys: Sequence[bytes]) -> dict[Server, list[bytes]]:
        grouped: dict[Server, list[bytes]] = {}
        for key in keys:
            grouped.setdefault(self.server_for(key), []).append(key)
        return grouped

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Any]:
        """The values found for *keys*: one ``get`` per server holding some of them.

        If any of those servers is down the whole call raises: its keys are not
        absent, and a partial answer would say they are.
        """
        found: dict[bytes, Any] = {}
        for server, server_keys in self._by_server(keys).items():
            found.update(server.call("get_many", server_keys))
        return found

    def set_many(self, values: Mapping[bytes, bytes], expire: int) -> list[bytes]:
        """Store *values*, one ``set`` batch per server; the keys that were refused."""
        failed: list[bytes] = []
        for server, server_keys in self._by_server(list(values)).items():
            batch = {key: values[key] for key in server_keys}
            failed += server.call("set_many", batch, expire)
        return failed

    def version(self) -> None:
        """Ask every server for its version: StoreUnavailable unless all answer."""
        self.versions()

    def versions(self) -> dict[str, str]:
        """Each server's version, by ``host:port``: StoreUnavailable unless all answer."""
        return {
            server.name: bytes(server.call("version")).decode("ascii", "replace")
            for server in self.servers
        }

    def close(self) -> None:
        for server in self.servers:
            server.client.close()
