"""The Redis Sentinel store: the current master of a service, through redis-py's ``Sentinel``.

``Sentinel.master_for`` gives a client whose connections ask the sentinels for the
service's master each time one is opened, and close themselves when the server they
reach has become a replica (it answers ``READONLY``).  So a failover is followed
without restart: once the sentinels have promoted a replica, the next connection
goes to it.  Everything else is the one-server store's - its commands, one circuit
breaker for the master, a script cache that the new master's ``NOSCRIPT`` resets.

During a failover, the old master refuses connections (or times out), then no
sentinel names a master until one is promoted: both are ``StoreUnavailable``.  The
breaker fails calls fast for ``down_for`` seconds, then lets one try again: service
is back at most ``down_for`` after the sentinels name the new master.

The sentinels are asked with bounded timeouts and no retries, as the master is:
redis-py's clients for them would otherwise retry every query ten times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from .breaker import CircuitBreaker
from .redis import (
    RedisStore,
    bound_timeouts,
    check_connection_options,
    normalise_options,
    parse_servers_url,
    translated,
)

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


def normalise_sentinel_options(
    options: Mapping[str, Any],
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any], float]:
    """The sentinels, the service, the master's and the sentinels' options, ``down_for``.

    From ``kvs_kwargs`` (``sentinels``: ``"host:port"`` strings or pairs,
    ``service_name``, ``db``, ``sentinel_kwargs``, and the master's connection
    options) or a ``redis+sentinel://h1:p1,h2:p2/service[/db]`` URL, ``kvs_kwargs``
    winning.  The master's options are normalised as one Redis's; the sentinels'
    get the same bounded timeouts unless ``sentinel_kwargs`` gives their own, and
    never retry.  Raises ``ValueError`` naming the option.
    """
    kwargs = dict(options)
    sentinels: list[tuple[str, int]] = []
    url = kwargs.pop("url", None)
    if url is not None:
        if not isinstance(url, str) or not url.lower().startswith(SCHEME + "://"):
            raise ValueError(f"url: expected a {SCHEME}:// URL, got {url!r}")
        parsed = parse_servers_url(url, DEFAULT_PORT)
        service, _, db = parsed.path.partition("/")
        sentinels += parsed.addresses
        if service:
            kwargs.setdefault("service_name", service)
        if db.strip("/"):
            kwargs.setdefault("db", db.strip("/"))
        for name, value in parsed.options.items():
            kwargs.setdefault(name, value)  # kvs_kwargs win over the query
    listed = kwargs.pop("sentinels", [])
    if isinstance(listed, str):
        listed = [part for part in listed.split(",") if part.strip()]
    if not isinstance(listed, (list, tuple)):
        raise ValueError(f"sentinels: expected a list of host:port, got {listed!r}")
    for sentinel in listed:
        if isinstance(sentinel, (list, tuple)) and len(sentinel) == 2:
            sentinel = f"{sentinel[0]}:{sentinel[1]}"
        if not isinstance(sentinel, str):
            raise ValueError(f"sentinels: expected host:port, got {sentinel!r}")
        sentinels += parse_servers_url(f"{SCHEME}://{sentinel.strip()}", DEFAULT_PORT).addresses
    if not sentinels:
        raise ValueError("expected sentinels: a redis+sentinel:// URL or sentinels")
    service = kwargs.pop("service_name", None)
    if not isinstance(service, str) or not service.strip() or "/" in service:
        raise ValueError(
            "expected the service name: redis+sentinel://host:port/SERVICE[/db] or "
            f"service_name, got {service!r}"
        )
    if "db" in kwargs:
        try:
            kwargs["db"] = int(kwargs["db"])
        except (TypeError, ValueError):
            raise ValueError(f"db: expected a database number, got {kwargs['db']!r}") from None
    own = kwargs.pop("sentinel_kwargs", None)
    normalised = normalise_options(kwargs)
    if own is None:
        for_sentinels = {
            name: normalised.kwargs[name] for name in ("socket_timeout", "socket_connect_timeout")
        }
    elif isinstance(own, Mapping):
        for_sentinels = dict(own)
        bound_timeouts(for_sentinels)
    else:
        raise ValueError(f"sentinel_kwargs: expected a JSON object, got {own!r}")
    for_sentinels["retry"] = Retry(NoBackoff(), 0)
    return (
        list(dict.fromkeys(sentinels)),
        service.strip(),
        normalised.kwargs,
        for_sentinels,
        normalised.down_for,
    )


class RedisSentinelStore(RedisStore):
    """The master of a Sentinel-monitored service: see the module's docstring."""

    name = SCHEME

    def __init__(
        self,
        client: redis.Redis,
        sentinel: Sentinel,
        key_prefix: str = "",
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        super().__init__(client, key_prefix, breaker=breaker)
        self.sentinel = sentinel

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedisSentinelStore:
        sentinels, service, kwargs, sentinel_kwargs, down_for = normalise_sentinel_options(options)
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(service, **kwargs)  # type: ignore[no-untyped-call]
        # connections are opened lazily: build (and drop) one, so that a bad option
        # fails at start-up rather than in a request
        check_connection_options(client.connection_pool)
        addresses = ",".join(f"{host}:{port}" for host, port in sentinels)
        breaker = CircuitBreaker(f"redis sentinel {addresses} service {service}", down_for)
        return cls(client, sentinel, breaker=breaker)

    def server_info(self) -> dict[str, str]:
        """The master the sentinels name now, and its ``redis_version``.

        Two round trips: one to a sentinel for the address (the client's own
        connection settings do not hold it), one to the master for ``INFO``.
        """
        info = super().server_info()
        pool = self.client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)  # master_for gives one
        host, port = self.breaker.call(translated, pool.get_master_address)
        info["server"] = f"{host}:{port} (master of {pool.service_name})"
        return info

    def close(self) -> None:
        super().close()
        self.sentinel.close()
