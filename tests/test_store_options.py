"""Client options, normalised the same whatever form they came in: URL or kvs_kwargs.

Each case is built through the settings, as an application would, from the URL form
and from the original JSON form, and the client redis-py or pymemcache ends up with
is inspected: bounded timeouts, no retries unless asked for, ``down_for`` given to
the breaker and never to the client library.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from apps import committed
from pyramid_kvs.components import build_store
from pyramid_kvs.settings import parse_store
from pyramid_kvs.stores import Store, create_store
from pyramid_kvs.stores.breaker import DEFAULT_DOWN_FOR
from pyramid_kvs.stores.memcached import (
    DEFAULT_CONNECT_TIMEOUT as MEMCACHED_CONNECT_TIMEOUT,
)
from pyramid_kvs.stores.memcached import (
    DEFAULT_READ_TIMEOUT as MEMCACHED_READ_TIMEOUT,
)
from pyramid_kvs.stores.memcached import MemcachedStore, normalise_options
from pyramid_kvs.stores.redis import (
    DEFAULT_CONNECT_TIMEOUT as REDIS_CONNECT_TIMEOUT,
)
from pyramid_kvs.stores.redis import (
    DEFAULT_READ_TIMEOUT as REDIS_READ_TIMEOUT,
)
from pyramid_kvs.stores.redis import RedisStore


def from_url(url: str, **kvs_kwargs: Any) -> Store:
    raw: dict[str, Any] = {"url": url}
    if kvs_kwargs:
        raw["kvs_kwargs"] = kvs_kwargs
    return build_store(parse_store(raw, "kvs.cache"))


def from_json(kvs: str, kvs_kwargs: dict[str, Any]) -> Store:
    raw = json.loads(json.dumps({"kvs": kvs, "kvs_kwargs": kvs_kwargs}))  # as from an .ini
    return build_store(parse_store(raw, "kvs.cache"))


def make_app(settings: dict[str, Any]) -> Configurator:
    return committed(settings)


# -- Redis -----------------------------------------------------------------------------


def redis_kwargs(store: Store) -> dict[str, Any]:
    """The keyword arguments every connection of the store's pool is made with."""
    assert isinstance(store, RedisStore)
    return store.client.connection_pool.connection_kwargs  # type: ignore[no-any-return]


def redis_forms(**options: Any) -> list[Store]:
    """The same options as a URL query and as kvs_kwargs."""
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return [
        from_url("redis://127.0.0.1:1/0" + (f"?{query}" if query else "")),
        from_json("redis", {"host": "127.0.0.1", "port": 1, **options}),
    ]


def test_redis_timeouts_are_bounded_in_both_forms() -> None:
    for store in redis_forms():
        kwargs = redis_kwargs(store)
        assert kwargs["socket_connect_timeout"] == REDIS_CONNECT_TIMEOUT == 1.0
        assert kwargs["socket_timeout"] == REDIS_READ_TIMEOUT == 1.0


def test_redis_timeouts_can_be_set_in_both_forms() -> None:
    for store in redis_forms(socket_timeout=0.3, socket_connect_timeout=0.2):
        kwargs = redis_kwargs(store)
        assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.2, 0.3)
    kwargs = redis_kwargs(from_url("redis://127.0.0.1/0", socket_timeout=0.4))
    assert kwargs["socket_timeout"] == 0.4


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_redis_timeouts_must_be_positive_numbers_in_both_forms(value: str) -> None:
    for name in ("socket_timeout", "socket_connect_timeout"):
        # (redis-py's URL parser refuses "soon" before pyramid_kvs sees it)
        with pytest.raises(ConfigurationError, match=rf"kvs\.cache\.url: .*{name}"):
            from_url(f"redis://127.0.0.1/0?{name}={value}")
        with pytest.raises(ConfigurationError, match=rf"kvs\.cache\.kvs_kwargs: .*{name}"):
            from_json("redis", {name: value})
    with pytest.raises(ConfigurationError, match="socket_timeout: expected a positive"):
        from_json("redis", {"socket_timeout": None})  # never wait forever


def test_redis_does_not_retry_unless_asked_in_both_forms() -> None:
    # redis-py 8's default for redis.Redis(): ten retries with back-off
    assert redis.Redis().get_retry().get_retries() == 10  # type: ignore[union-attr]
    for store in redis_forms():
        assert redis_kwargs(store)["retry"].get_retries() == 0


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_redis_retry_on_timeout_asks_for_one_immediate_retry_in_both_forms() -> None:
    for store in redis_forms(retry_on_timeout="true"):
        retry = redis_kwargs(store)["retry"]
        assert retry.get_retries() == 1
        assert redis.TimeoutError in retry._supported_errors
    for store in redis_forms(retry_on_timeout="false"):
        assert redis_kwargs(store)["retry"].get_retries() == 0
    store = from_url("redis://127.0.0.1/0?retry_on_timeout=false", retry=Retry(NoBackoff(), 2))
    assert redis_kwargs(store)["retry_on_timeout"] is False


def test_redis_retry_on_error_takes_exception_names_in_both_forms() -> None:
    for store in redis_forms(retry_on_error="TimeoutError"):
        kwargs = redis_kwargs(store)
        assert kwargs["retry_on_error"] == [redis.TimeoutError]
        assert kwargs["retry"].get_retries() == 1
    store = from_json("redis", {"retry_on_error": ["TimeoutError", "ConnectionError"]})
    assert redis_kwargs(store)["retry_on_error"] == [redis.TimeoutError, redis.ConnectionError]
    with pytest.raises(ConfigurationError, match=r"retry_on_error: expected redis-py"):
        from_json("redis", {"retry_on_error": ["NoSuchError"]})


def test_a_redis_retry_object_from_python_is_kept() -> None:
    retry = Retry(ExponentialBackoff(), 3)
    store = create_store("redis", {"retry": retry})
    assert redis_kwargs(store)["retry"].get_retries() == 3


def test_redis_down_for_goes_to_the_breaker_in_both_forms() -> None:
    for store in redis_forms(down_for="2.5"):
        assert isinstance(store, RedisStore)
        assert store.breaker.down_for == 2.5
        assert "down_for" not in redis_kwargs(store)
    for store in redis_forms():
        assert store.breaker.down_for == DEFAULT_DOWN_FOR  # type: ignore[attr-defined]


def test_the_redis_url_keeps_the_rest_of_its_query() -> None:
    store = from_url("redis://:p%40ss@127.0.0.1:1/3?down_for=1&socket_timeout=0.7&db=2")
    kwargs = redis_kwargs(store)
    assert (kwargs["password"], kwargs["db"], kwargs["socket_timeout"]) == ("p@ss", 2, 0.7)
    assert store.breaker.down_for == 1  # type: ignore[attr-defined]


def test_kvs_kwargs_win_over_the_redis_url_query() -> None:
    store = from_url("redis://127.0.0.1/0?down_for=1&socket_timeout=0.7", down_for=3)
    assert store.breaker.down_for == 3  # type: ignore[attr-defined]
    assert redis_kwargs(store)["socket_timeout"] == 0.7
    store = from_url("redis://127.0.0.1/0?socket_timeout=0.7&db=1", socket_timeout=0.2)
    assert redis_kwargs(store)["socket_timeout"] == 0.2
    assert redis_kwargs(store)["db"] == 1


def test_the_breaker_names_the_redis_server() -> None:
    store = from_url("redis://127.0.0.1:7777/0")
    assert store.breaker.name == "redis 127.0.0.1:7777"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"kvs.cache.url": "redis://localhost/0?down_for=soon"},
            r"kvs\.cache\.url: .*down_for: expected a number of seconds.*'soon'",
        ),
        (
            {"kvs.cache": json.dumps({"kvs": "redis", "kvs_kwargs": {"down_for": 0}})},
            r"kvs\.cache\.kvs_kwargs: .*down_for: expected a number of seconds.*0",
        ),
        (
            {"kvs.cache.url": "memcached://localhost:11211?down_for=-1"},
            r"kvs\.cache\.url: .*down_for: expected a number of seconds",
        ),
        (
            # redis-py would only find this mistake when first connecting
            {"kvs.cache.url": "redis://localhost/0?socket_timout=1"},
            r"kvs\.cache\.url: invalid options for the redis store: .*socket_timout",
        ),
        (
            {"kvs.cache.url": "memcached://localhost:11211?timeout=soon"},
            r"kvs\.cache\.url: invalid options for the memcached store: timeout: expected",
        ),
    ],
)
def test_bad_store_options_fail_at_start_up_naming_the_key(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_app(settings)


# -- memcached -------------------------------------------------------------------------


def memcached_forms(**options: Any) -> list[Store]:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return [
        from_url("memcached://127.0.0.1:1,127.0.0.1:2" + (f"?{query}" if query else "")),
        from_json("memcached", {"servers": ["127.0.0.1:1", "127.0.0.1:2"], **options}),
    ]


def test_memcached_timeouts_are_bounded_in_both_forms() -> None:
    for store in memcached_forms():
        assert isinstance(store, MemcachedStore)
        for server in store.client.servers:
            assert server.client.connect_timeout == MEMCACHED_CONNECT_TIMEOUT == 1.0
            assert server.client.timeout == MEMCACHED_READ_TIMEOUT == 1.0
            assert server.breaker.down_for == DEFAULT_DOWN_FOR


def test_memcached_options_can_be_set_in_both_forms() -> None:
    for store in memcached_forms(timeout=0.3, connect_timeout=0.2, down_for=2):
        assert isinstance(store, MemcachedStore)
        for server in store.client.servers:
            assert (server.client.connect_timeout, server.client.timeout) == (0.2, 0.3)
            assert server.breaker.down_for == 2


@pytest.mark.parametrize("value", ["soon", 0, -1, None])
def test_memcached_timeouts_must_be_positive_numbers(value: object) -> None:
    for name in ("timeout", "connect_timeout"):
        with pytest.raises(ConfigurationError, match=rf"{name}: expected a positive number"):
            from_json("memcached", {"servers": ["127.0.0.1:1"], name: value})
    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.url: .*timeout: expected"):
        from_url("memcached://127.0.0.1:1?timeout=soon")


def test_the_memcached_normalisation_is_one_function_for_both_forms() -> None:
    from pyramid_kvs.settings import parse_store_url

    _, url_options = parse_store_url("memcached://h1:1,h2:2?timeout=0.5&down_for=0.2")
    json_options = {"servers": "h1:1,h2:2", "timeout": 0.5, "down_for": "0.2"}
    for options in (url_options, json_options):
        normalised = normalise_options(options)
        assert normalised.servers == [("h1", 1), ("h2", 2)]
        assert normalised.down_for == 0.2
        assert normalised.client_kwargs["timeout"] == 0.5
        assert normalised.client_kwargs["connect_timeout"] == 1.0
        assert normalised.client_kwargs["default_noreply"] is False
        assert "down_for" not in normalised.client_kwargs


@pytest.mark.parametrize(
    "option",
    [{"retry_attempts": 2}, {"retry_timeout": 1}, {"dead_timeout": 60}, {"use_pooling": False}],
)
def test_memcached_fail_over_options_are_ignored_with_a_warning(
    option: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    (name,) = option
    with pytest.warns(UserWarning, match=rf"{name} ignored: a server that fails keeps its keys"):
        store = from_json("memcached", {"servers": ["127.0.0.1:1", "127.0.0.1:2"], **option})
    assert isinstance(store, MemcachedStore)
    assert f"{name} ignored" in caplog.text
    assert len(store.client.servers) == 2


def test_memcached_refuses_ignore_exc() -> None:
    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.kvs_kwargs: .*ignore_exc"):
        from_json("memcached", {"servers": ["127.0.0.1:1"], "ignore_exc": True})
    from_json("memcached", {"servers": ["127.0.0.1:1"], "ignore_exc": False})


def test_memcached_refuses_a_server_listed_twice() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        from_json("memcached", {"servers": ["127.0.0.1:1", "127.0.0.1:1"]})


def test_memcached_rejects_unknown_client_options_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.url: .*timout"):
        from_url("memcached://127.0.0.1:1?timout=1")
