"""The Redis Sentinel store against a live master, its replica and three sentinels.

The shipped contract suite, then options.  Failovers are in ``test_failover.py``, on
a set of servers of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyramid.exceptions import ConfigurationError

from pyramid_kvs.components import build_store
from pyramid_kvs.settings import parse_store, parse_store_url
from pyramid_kvs.stores import Store, create_store
from pyramid_kvs.stores.breaker import DEFAULT_DOWN_FOR
from pyramid_kvs.stores.redis_sentinel import RedisSentinelStore
from pyramid_kvs.testing.contract import StoreContract
from servers import RedisSentinelServers, admin


class TestRedisSentinelStore(StoreContract):
    @pytest.fixture
    def store(self, redis_sentinel_url: str) -> Iterator[Store]:
        name, options = parse_store_url(redis_sentinel_url)
        store = create_store(name, options)
        yield store.with_prefix("test::")
        store.close()


def built(settings: dict[str, Any]) -> RedisSentinelStore:
    store = build_store(parse_store(settings, "kvs.session"))
    assert isinstance(store, RedisSentinelStore)
    return store


def described(store: RedisSentinelStore) -> dict[str, Any]:
    """What the store's clients were given: sentinels, service, master's options."""
    pool = store.client.connection_pool
    master = pool.connection_kwargs
    sentinels = [client.connection_pool.connection_kwargs for client in store.sentinel.sentinels]
    own = store.sentinel.sentinel_kwargs
    return {
        "sentinels": [(sentinel["host"], sentinel["port"]) for sentinel in sentinels],
        "service": pool.service_name,
        "master": {
            name: master.get(name)
            for name in ("db", "password", "socket_timeout", "socket_connect_timeout")
        },
        "master retries": master["retry"].get_retries(),
        "sentinels' options": {name: value for name, value in own.items() if name != "retry"},
        "sentinels' retries": own["retry"].get_retries(),
        "down_for": store.breaker.down_for,
    }


def test_both_forms_of_settings_and_the_defaults() -> None:
    url = built({"url": "redis+sentinel://:secret@s1:26380,s2/mymaster/2"})
    json_form = built(
        {
            "kvs": "redis+sentinel",
            "kvs_kwargs": {
                "sentinels": ["s1:26380", ["s2", 26379]],
                "service_name": "mymaster",
                "db": 2,
                "password": "secret",
            },
        }
    )
    assert (
        described(url)
        == described(json_form)
        == {
            "sentinels": [("s1", 26380), ("s2", 26379)],
            "service": "mymaster",
            "master": {
                "db": 2,
                "password": "secret",
                "socket_timeout": 1.0,
                "socket_connect_timeout": 1.0,
            },
            "master retries": 0,  # redis-py's clients would retry ten times
            "sentinels' options": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
            "sentinels' retries": 0,
            "down_for": DEFAULT_DOWN_FOR,
        }
    )
    assert url.breaker.name == "redis sentinel s1:26380,s2:26379 service mymaster"
    listed = built(
        {"kvs": "redis+sentinel", "kvs_kwargs": {"sentinels": "s1:26380, s2", "service_name": "m"}}
    )
    assert described(listed)["sentinels"] == [("s1", 26380), ("s2", 26379)]


def test_options_from_the_query_kvs_kwargs_and_sentinel_kwargs() -> None:
    store = built(
        {
            "url": "redis+sentinel://s1/mymaster?socket_timeout=0.25&down_for=2",
            "kvs_kwargs": {
                "socket_timeout": 0.5,
                "sentinel_kwargs": {"password": "theirs", "socket_timeout": 0.1},
            },
        }
    )
    description = described(store)
    assert description["master"]["socket_timeout"] == 0.5  # kvs_kwargs win
    assert description["down_for"] == 2
    assert description["sentinels' options"] == {
        "password": "theirs",
        "socket_timeout": 0.1,
        "socket_connect_timeout": 1.0,
    }


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"url": "redis+sentinel://s1"}, ["service name"]),
        ({"url": "redis+sentinel://s1/a/b/c"}, ["db"]),
        ({"url": "redis+sentinel://s1:x/a"}, ["host:port"]),
        ({"kvs": "redis+sentinel", "kvs_kwargs": {"service_name": "a"}}, ["sentinels"]),
        ({"url": "redis+sentinel://s1/a?socket_timeout=none"}, ["socket_timeout"]),
        ({"url": "redis+sentinel://s1/a?down_for=61"}, ["down_for"]),
        ({"url": "redis+sentinel://s1/a", "kvs_kwargs": {"sentinel_kwargs": 1}}, ["sentinel_"]),
        ({"url": "redis+sentinel://s1/a", "kvs_kwargs": {"socket_timout": 1}}, ["socket_timout"]),
        ({"kvs": "redis+sentinel", "kvs_kwargs": {"url": "redis://h/a"}}, ["redis+sentinel://"]),
        ({"kvs": "redis+sentinel", "kvs_kwargs": {"sentinels": 7}}, ["sentinels"]),
        ({"kvs": "redis+sentinel", "kvs_kwargs": {"sentinels": [7]}}, ["sentinels"]),
    ],
)
def test_bad_options_fail_at_start_up(settings: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ConfigurationError) as failure:
        build_store(parse_store(settings, "kvs.session"))
    for name in ("kvs.session", *names):
        assert name in str(failure.value)


def test_the_store_talks_to_the_master_the_sentinels_name(
    redis_sentinel: RedisSentinelServers, redis_sentinel_url: str
) -> None:
    store = built({"url": redis_sentinel_url})
    store.set("k", b"v")
    master = admin(redis_sentinel.current_master())
    assert master.get("k") == b"v"
    master.close()
    store.close()


def test_server_info_names_the_current_master(
    redis_sentinel: RedisSentinelServers, redis_sentinel_url: str
) -> None:
    store = built({"url": redis_sentinel_url})
    info = store.server_info()
    master = redis_sentinel.current_master()
    assert info["server"] == f"{master.address} (master of {redis_sentinel.service})"
    client = admin(master)
    assert info["version"] == client.info("server")["redis_version"]
    client.close()
    store.close()
