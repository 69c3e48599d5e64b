"""Settings: both forms, defaults, and a clear start-up error for every bad value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError

import apps
from apps import committed
from pyramid_kvs.cache import parse_cache
from pyramid_kvs.components import get_components
from pyramid_kvs.settings import parse_store_url
from pyramid_kvs.stores.memcached import MemcachedStore
from pyramid_kvs.stores.memory import MemoryStore
from pyramid_kvs.stores.redis import RedisStore


def make_app(settings: dict[str, Any]) -> Configurator:
    return committed(settings)


def test_the_original_json_form_still_works() -> None:
    parsed = parse_cache(
        {
            "kvs.cache": '{"kvs": "redis", "codec": "pickle", "kvs_kwargs": {"port": 6380},'
            ' "ttl": 60, "key_prefix": "c::"}'
        }
    )
    assert parsed is not None
    assert parsed.store.backend == "redis"
    assert dict(parsed.store.options) == {"port": 6380}
    assert (parsed.ttl, parsed.key_prefix, parsed.codec) == (60, "c::", "pickle")


def test_type_is_the_other_spelling_of_kvs_and_memcache_of_memcached() -> None:
    parsed = parse_cache({"kvs.cache": {"type": "memcache"}})
    assert parsed is not None and parsed.store.backend == "memcached"


def test_defaults() -> None:
    parsed = parse_cache({"kvs.cache": "{}"})
    assert parsed is not None
    assert parsed.store.backend == "memory"
    assert (parsed.ttl, parsed.key_prefix, parsed.codec) == (300, "cache::", "json")
    assert parsed.raise_errors is False
    assert parse_cache({}) is None


def test_flat_keys_win_over_the_json_form() -> None:
    parsed = parse_cache(
        {
            "kvs.cache": '{"kvs": "redis", "ttl": 60}',
            "kvs.cache.ttl": "120",
            "kvs.cache.raise_errors": "true",
        }
    )
    assert parsed is not None
    assert (parsed.store.backend, parsed.ttl, parsed.raise_errors) == ("redis", 120, True)


def test_ttl_none_means_no_expiry() -> None:
    parsed = parse_cache({"kvs.cache.ttl": "none"})
    assert parsed is not None and parsed.ttl is None


@pytest.mark.parametrize(
    ("url", "backend", "options"),
    [
        ("memory://", "memory", {}),
        ("memory://?max_entries=10", "memory", {"max_entries": 10}),
        ("redis://localhost:6379/2", "redis", {"url": "redis://localhost:6379/2"}),
        ("rediss://:pw@host:6380/0", "redis", {"url": "rediss://:pw@host:6380/0"}),
        ("unix:///run/redis.sock?db=1", "redis", {"url": "unix:///run/redis.sock?db=1"}),
        ("memcached://a:1,b:2", "memcached", {"servers": ["a:1", "b:2"]}),
        ("memcached://a:1?timeout=0.5", "memcached", {"servers": ["a:1"], "timeout": 0.5}),
    ],
)
def test_store_urls(url: str, backend: str, options: dict[str, Any]) -> None:
    assert parse_store_url(url) == (backend, options)


def test_kvs_kwargs_extend_a_url() -> None:
    parsed = parse_cache(
        {"kvs.cache.url": "redis://h:1/0", "kvs.cache.kvs_kwargs": '{"socket_timeout": 2}'}
    )
    assert parsed is not None
    assert dict(parsed.store.options) == {"url": "redis://h:1/0", "socket_timeout": 2}


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"kvs.cache": "{not json"}, ["kvs.cache", "JSON object"]),
        ({"kvs.cache": "[1, 2]"}, ["kvs.cache", "JSON object"]),
        ({"kvs.cache": '{"kvs": "mongo"}'}, ["kvs.cache.kvs", "redis"]),
        ({"kvs.cache": '{"type": "nope"}'}, ["kvs.cache.type", "memcached"]),
        ({"kvs.cache": '{"kvs": "redis", "type": "memory"}'}, ["kvs.cache.kvs", "different"]),
        ({"kvs.cache": '{"ttl": -5}'}, ["kvs.cache.ttl", "positive number of seconds"]),
        ({"kvs.cache.ttl": "soon"}, ["kvs.cache.ttl", "positive number of seconds"]),
        ({"kvs.cache.ttl": True}, ["kvs.cache.ttl"]),
        ({"kvs.cache.codec": "yaml"}, ["kvs.cache.codec", "json, msgpack, pickle"]),
        ({"kvs.cache.raise_errors": "perhaps"}, ["kvs.cache.raise_errors", "true or false"]),
        ({"kvs.cache.key_prefix": "has space"}, ["kvs.cache.key_prefix", "spaces"]),
        ({"kvs.cache.kvs_kwargs": "[]"}, ["kvs.cache.kvs_kwargs", "JSON object"]),
        ({"kvs.cache.ttll": "5"}, ["kvs.cache", "ttll", "expected some of"]),
        ({"kvs.cache.url": "ftp://x"}, ["kvs.cache.url", "redis://"]),
        ({"kvs.cache.url": "localhost:6379"}, ["kvs.cache.url", "URL"]),
        ({"kvs.cache.url": "redis+cluster://h:x"}, ["kvs.cache.url", "host:port"]),
        ({"kvs.cache.url": "redis+cluster://h:1/3"}, ["kvs.cache.url", "database 0"]),
        ({"kvs.cache.url": "redis+cluster://h:1?read_from_replicas=1"}, ["masters only"]),
        ({"kvs.cache.url": "redis+cluster://h:1?socket_timout=1"}, ["socket_timout"]),
        ({"kvs.cache.url": "redis+sentinel://h:1"}, ["kvs.cache.url", "service name"]),
        ({"kvs.cache.url": "redis+sentinel://h:1/s?socket_timeout=none"}, ["socket_timeout"]),
        ({"kvs.cache.url": "memcached://"}, ["kvs.cache.url", "host:port"]),
        (
            {"kvs.cache": '{"kvs": "memcached"}', "kvs.cache.url": "redis://h"},
            ["kvs.cache.url", "names redis"],
        ),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_setting(
    settings: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as failure:
        make_app(settings)
    for name in names:
        assert name in str(failure.value)


def test_bad_client_options_fail_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.kvs_kwargs.*redis"):
        make_app({"kvs.cache": json.dumps({"kvs": "redis", "kvs_kwargs": {"hots": "x"}})})
    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.kvs_kwargs.*memory"):
        make_app({"kvs.cache": json.dumps({"kvs": "memory", "kvs_kwargs": {"size": 1}})})


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    monkeypatch.delitem(sys.modules, "pyramid_kvs.stores.redis", raising=False)
    with pytest.raises(ConfigurationError, match=r"install pyramid-kvs\[redis\]"):
        make_app({"kvs.cache": '{"kvs": "redis"}'})


def test_stores_are_built_once_and_shared_by_identical_settings() -> None:
    config = make_app({"kvs.cache.url": "redis://localhost:1/0", "kvs.cache.key_prefix": "c::"})
    kvs = get_components(config.registry)
    assert kvs.cache is not None
    assert isinstance(kvs.cache.store, RedisStore)
    assert kvs.cache.store.key_prefix == "c::"
    assert len(kvs.stores) == 1


def test_building_a_store_does_not_need_the_server() -> None:
    # clients connect lazily: an application starts while its Redis is down
    config = make_app({"kvs.cache": '{"kvs": "memcached", "kvs_kwargs": {"servers": ["x:1"]}}'})
    assert isinstance(get_components(config.registry).cache.store, MemcachedStore)  # type: ignore[union-attr]


def test_two_applications_keep_separate_state() -> None:
    first = make_app({"kvs.cache.ttl": "10"})
    second = make_app({"kvs.cache.ttl": "20"})
    first_cache = get_components(first.registry).cache
    second_cache = get_components(second.registry).cache
    assert first_cache is not None and second_cache is not None
    assert (first_cache.default_ttl, second_cache.default_ttl) == (10, 20)
    assert isinstance(first_cache.store, MemoryStore)
    assert first_cache.store is not second_cache.store
    first_cache.set("k", 1)
    assert second_cache.get("k") is None


def test_settings_changed_after_the_include_are_honoured() -> None:
    config = apps.configure({"kvs.cache.ttl": "10"})
    config.registry.settings["kvs.cache.ttl"] = "99"
    config.commit()
    cache = get_components(config.registry).cache
    assert cache is not None and cache.default_ttl == 99


def test_nothing_configured_adds_nothing() -> None:
    config = make_app({})
    assert get_components(config.registry).cache is None
    request = config.make_wsgi_app()  # noqa: F841 - the app builds without kvs settings
