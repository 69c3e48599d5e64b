"""Store faults against real servers: always the documented answer, and fast.

Each test breaks servers of its own - frozen with SIGSTOP (a hung server: the kernel
accepts connections, nothing answers), killed, restarted on the same port, turned
read-only as a replica after a failover - never the servers the rest of the suite
shares.  The stores are built from settings, in the URL form and in the original
JSON form, with the default options: 1 s timeouts, ``down_for`` 0.5 s.

Timings are asserted with generous margins (2.5 s where one 1 s timeout is due) so
that a loaded machine does not make them flaky; the number of requests that reached
a socket is asserted exactly.  The breaker's own timing is tested on an injected
clock in ``test_breaker.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from pyramid_kvs.components import build_store
from pyramid_kvs.settings import parse_store
from pyramid_kvs.stores import Store, StoreError, StoreUnavailable
from pyramid_kvs.stores.memcached import MemcachedStore, memcached_key
from pyramid_kvs.stores.redis import RedisStore
from roundtrips import count_round_trips
from servers import Server, redis_read_only, start_memcached, start_redis

#: the default read timeout, and the most a request may wait for a frozen server
TIMEOUT = 1.0
ONE_TIMEOUT_AT_MOST = 2.5
#: a server that is back is in service again within this time (down_for is 0.5 s)
BACK_WITHIN = 1.0
#: what failing at once may take, on a loaded machine
FAST = 0.5


@pytest.fixture
def own_redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def own_memcached() -> Iterator[Server]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture
def own_memcached2() -> Iterator[Server]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(params=["redis", "memcached"])
def own_server(request: pytest.FixtureRequest) -> tuple[str, Server]:
    """Each backend's own server in turn: (backend, server)."""
    backend = request.param
    return backend, request.getfixturevalue(f"own_{backend}")


def settings_store(backend: str, servers: list[Server], form: str) -> Store:
    """A store built as an application builds it, from the *form* of settings."""
    if form == "url":
        addresses = ",".join(server.address for server in servers)
        url = f"redis://{addresses}/0" if backend == "redis" else f"memcached://{addresses}"
        raw: dict[str, Any] = {"url": url}
    elif backend == "redis":
        (server,) = servers
        raw = {"kvs": "redis", "kvs_kwargs": {"host": server.host, "port": server.port}}
    else:
        raw = {"kvs": "memcached", "kvs_kwargs": {"servers": [s.address for s in servers]}}
    return build_store(parse_store(raw, "kvs.session")).with_prefix("faults::")


def operations(store: Store) -> list[Callable[[], Any]]:
    """Ten operations of the kinds a request makes."""
    return [
        lambda: store.get("k"),
        lambda: store.set("k", b"v", ttl=60),
        lambda: store.add("other", b"v", ttl=60),
        lambda: store.incr("counter", ttl=60),
        lambda: store.touch("k", 60),
        lambda: store.get_and_touch("k", 60),
        lambda: store.get_many(["k", "other"]),
        lambda: store.load_record("session", 60),
        lambda: store.update_record("session", {"user": b"alice"}, [], 60),
        lambda: store.delete("k"),
    ]


def all_unavailable(calls: list[Callable[[], Any]]) -> None:
    for call in calls:
        with pytest.raises(StoreUnavailable):
            call()


def elapsed(function: Callable[[], Any]) -> float:
    start = time.monotonic()
    function()
    return time.monotonic() - start


def back_after(store: Store, key: str = "k") -> float:
    """Seconds until *store* answers for *key* again, trying every 20 ms (at most 10 s)."""
    start = time.monotonic()
    while time.monotonic() - start < 10:
        try:
            store.get(key)
        except StoreUnavailable:
            time.sleep(0.02)
        else:
            return time.monotonic() - start
    raise AssertionError("the store did not come back within 10 s")


# -- a frozen server ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["url", "json"])
def test_a_frozen_server_costs_one_timeout_then_fails_fast(
    own_server: tuple[str, Server], form: str
) -> None:
    backend, server = own_server
    store = settings_store(backend, [server], form)
    store.set("k", b"v")  # connected before the freeze
    server.freeze()
    with count_round_trips() as trips:
        first = elapsed(lambda: all_unavailable([lambda: store.get("k")]))
        total = first + elapsed(lambda: all_unavailable(operations(store)))
    assert TIMEOUT * 0.9 <= first < ONE_TIMEOUT_AT_MOST
    assert total < ONE_TIMEOUT_AT_MOST  # eleven operations, one timeout
    assert trips.total == 1  # no retry: the others never reached a socket


@pytest.mark.parametrize("form", ["url", "json"])
def test_a_frozen_server_costs_one_timeout_per_batch(
    own_server: tuple[str, Server], form: str
) -> None:
    backend, server = own_server
    store = settings_store(backend, [server], form)
    sessions = store.with_prefix("session::")
    store.set("k", b"v")
    server.freeze()

    def request() -> None:  # a batch, then more operations, as one request makes
        with pytest.raises(StoreUnavailable), store.batch() as batch:
            batch.get("k")
            batch.incr("hits", ttl=60)
            batch.set("k", b"w", ttl=60)
            batch.load_record("id", 60, store=sessions)
            batch.delete("gone")
        all_unavailable(operations(store))
        with pytest.raises(StoreUnavailable), store.batch() as batch:
            batch.get("k")

    with count_round_trips() as trips:
        took = elapsed(request)
    assert TIMEOUT * 0.9 <= took < ONE_TIMEOUT_AT_MOST
    assert trips.total == 1


def test_several_threads_each_wait_one_timeout_at_most(own_server: tuple[str, Server]) -> None:
    import threading

    backend, server = own_server
    store = settings_store(backend, [server], "url")
    store.set("k", b"v")
    server.freeze()
    took: list[float] = []

    def request() -> None:
        took.append(elapsed(lambda: all_unavailable(operations(store))))

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(took) == 4 and max(took) < ONE_TIMEOUT_AT_MOST


def test_service_is_back_within_a_second_of_a_thaw(own_server: tuple[str, Server]) -> None:
    backend, server = own_server
    store = settings_store(backend, [server], "url")
    store.set("k", b"v")
    server.freeze()
    all_unavailable([lambda: store.get("k")])
    time.sleep(0.7)  # the breaker lets a probe through again, and it hangs too
    all_unavailable([lambda: store.get("k")])
    server.thaw()
    assert back_after(store) < BACK_WITHIN
    assert store.get("k") == b"v"
    assert store.incr("after") == 1


# -- a stopped server --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["url", "json"])
def test_a_stopped_server_fails_fast_and_is_back_within_a_second_of_a_restart(
    own_server: tuple[str, Server], form: str
) -> None:
    backend, server = own_server
    store = settings_store(backend, [server], form)
    store.set("k", b"v")
    server.kill()
    # redis-py's default retries made this take 4 to 18 s with the JSON form
    assert elapsed(lambda: all_unavailable([lambda: store.get("k")])) < FAST
    assert elapsed(lambda: all_unavailable(operations(store))) < FAST
    time.sleep(0.6)  # past down_for: the probe finds it still down, and fails fast
    assert elapsed(lambda: all_unavailable(operations(store))) < FAST
    server.restart()
    assert back_after(store) < BACK_WITHIN
    store.set("k", b"again")
    assert store.get("k") == b"again"


def test_an_unreachable_server_at_start_up_is_an_outage_not_an_error(
    own_server: tuple[str, Server],
) -> None:
    backend, server = own_server
    server.kill()
    store = settings_store(backend, [server], "json")  # the application starts
    all_unavailable(operations(store))
    server.restart()
    assert back_after(store) < BACK_WITHIN


# -- error replies: the server is up, and says no ------------------------------------------


def test_a_read_only_redis_answers_store_errors_never_outages(own_redis: Server) -> None:
    store = settings_store("redis", [own_redis], "url")
    assert isinstance(store, RedisStore)
    store.set("k", b"v")
    store.replace_record("session", {"user": b"alice"}, 60)
    redis_read_only(own_redis, True)
    writes: list[Callable[[], Any]] = [
        lambda: store.set("k", b"w"),
        lambda: store.set_many({"a": b"1", "b": b"2"}),
        lambda: store.add("new", b"v"),
        lambda: store.incr("counter", ttl=60),
        lambda: store.delete("k"),
        lambda: store.update_record("session", {"user": b"bob"}, [], 60),
        lambda: store.replace_record("session", {"user": b"bob"}, 60),
    ]
    for write in writes:
        with pytest.raises(StoreError, match="ReadOnlyError") as raised:
            write()
        assert not isinstance(raised.value, StoreUnavailable)
    assert store.get("k") == b"v"  # reads still work: no key looks absent
    with store.batch() as batch:
        read = batch.get("k")
        written = batch.set("k", b"w", ttl=60)
        counted = batch.incr("hits", ttl=60)
    assert read.value == b"v"
    for pending in (written, counted):
        with pytest.raises(StoreError, match="ReadOnlyError") as raised:
            pending.value  # noqa: B018
        assert not isinstance(raised.value, StoreUnavailable)
    assert not store.breaker.is_open  # an error reply is no outage
    redis_read_only(own_redis, False)
    store.set("k", b"w")
    assert store.get("k") == b"w"


def test_a_redis_out_of_memory_answers_store_errors(own_redis: Server) -> None:
    store = settings_store("redis", [own_redis], "json")
    assert isinstance(store, RedisStore)
    admin = redis.Redis(host=own_redis.host, port=own_redis.port)
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(StoreError, match="OutOfMemoryError") as raised:
            store.set("k", b"v")
        assert not isinstance(raised.value, StoreUnavailable)
        assert store.get("k") is None
        assert not store.breaker.is_open
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()


def test_a_memcached_refusal_is_no_outage(memcached_address: str) -> None:
    raw = {"kvs": "memcached", "kvs_kwargs": {"servers": [memcached_address]}}
    store = build_store(parse_store(raw, "kvs.cache"))
    assert isinstance(store, MemcachedStore)
    with pytest.raises(StoreError) as raised:
        store.set("huge", b"x" * (2 * 1024 * 1024))  # over memcached's item size
    assert not isinstance(raised.value, StoreUnavailable)
    assert not store.client.servers[0].breaker.is_open
    store.set("small", b"x")
    assert store.get("small") == b"x"


# -- several memcached servers -------------------------------------------------------------


def split_keys(store: MemcachedStore, live: Server, dead: Server) -> tuple[list[str], list[str]]:
    """Forty keys, split by the server that holds them."""
    keys = [f"key{index}" for index in range(40)]
    on: dict[str, list[str]] = {server.address: [] for server in (live, dead)}
    for key in keys:
        host, port = store.client.server_for(store._key(key)).address
        on[f"{host}:{port}"].append(key)
    assert on[live.address] and on[dead.address]
    return on[live.address], on[dead.address]


@pytest.mark.parametrize("form", ["url", "json"])
def test_a_dead_pool_member_keys_raise_while_the_others_work(
    own_memcached: Server, own_memcached2: Server, form: str
) -> None:
    live, dead = own_memcached, own_memcached2
    store = settings_store("memcached", [live, dead], form)
    assert isinstance(store, MemcachedStore)
    live_keys, dead_keys = split_keys(store, live, dead)
    for key in live_keys + dead_keys:
        store.set(key, key.encode())
    dead.kill()
    for key in dead_keys:
        with pytest.raises(StoreUnavailable):  # not None: a session is not logged out
            store.get(key)
        with pytest.raises(StoreUnavailable):  # not written to another server
            store.set(key, b"moved")
    for key in live_keys:
        assert store.get(key) == key.encode()
        store.set(key, b"still")
        assert store.get(key) == b"still"
    assert store.get_many(live_keys) == [b"still"] * len(live_keys)
    with pytest.raises(StoreUnavailable):
        store.get_many(live_keys + dead_keys)  # a partial answer would say "absent"
    wire_keys = [memcached_key(store.full_key(key)) for key in dead_keys]
    live_client = MemcacheClient((live.host, live.port))
    assert live_client.get_many(wire_keys) == {}  # no key moved to the live server
    live_client.close()
    dead.restart()
    assert back_after(store, dead_keys[0]) < BACK_WITHIN
    assert store.get(dead_keys[0]) is None  # a restarted memcached is empty
    store.set(dead_keys[0], b"back")
    assert store.get(dead_keys[0]) == b"back"


def test_a_frozen_pool_member_costs_one_timeout_and_spares_the_others(
    own_memcached: Server, own_memcached2: Server
) -> None:
    live, frozen = own_memcached, own_memcached2
    store = settings_store("memcached", [live, frozen], "url")
    assert isinstance(store, MemcachedStore)
    live_keys, frozen_keys = split_keys(store, live, frozen)
    for key in live_keys + frozen_keys:
        store.set(key, key.encode())
    frozen.freeze()

    def request() -> None:
        for key in frozen_keys[:10]:
            with pytest.raises(StoreUnavailable):
                store.get(key)
        for key in live_keys[:10]:
            assert store.get(key) == key.encode()

    assert elapsed(request) < ONE_TIMEOUT_AT_MOST
    frozen.thaw()
    assert back_after(store, frozen_keys[0]) < BACK_WITHIN
    assert store.get(frozen_keys[0]) == frozen_keys[0].encode()


def test_the_rate_limiter_commands_share_the_breaker(own_memcached: Server) -> None:
    store = settings_store("memcached", [own_memcached], "url")
    assert isinstance(store, MemcachedStore)
    wire_key = memcached_key(store.full_key("limit"))
    assert store.call("gets", wire_key) == (None, None)
    own_memcached.freeze()
    with count_round_trips() as trips:
        took = elapsed(
            lambda: all_unavailable(
                [lambda: store.get("k")] + [lambda: store.call("gets", wire_key)] * 10
            )
        )
    assert took < ONE_TIMEOUT_AT_MOST and trips.total == 1
