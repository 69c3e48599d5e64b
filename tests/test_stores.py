"""The stores: the shipped contract suite on every backend, then each one's own behaviour.

``pyramid_kvs.testing.contract.StoreContract`` holds the contract every store keeps;
each class below runs it on one backend (the memory store on a clock the tests move).
The rest of the module tests what is particular to a backend: round trips, Redis
scripts, memcached's keys and servers, the memory store's areas.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from pyramid_kvs.settings import parse_store_url
from pyramid_kvs.stores import (
    Store,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
    create_store,
    register,
)
from pyramid_kvs.stores.memcached import (
    THIRTY_DAYS,
    MemcachedStore,
    memcached_expiry,
    memcached_key,
)
from pyramid_kvs.stores.memory import MemoryStore
from pyramid_kvs.stores.redis import INCR_WITH_TTL
from pyramid_kvs.testing.contract import StoreContract
from pyramid_kvs.testing.mock import MockStore
from roundtrips import count_round_trips, sent_to_redis
from servers import start_redis, unused_port


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_get_bounded_on_a_record_is_a_store_error(store: Store) -> None:
    store.replace_record("record", {"field": b"1"}, None)
    with pytest.raises(StoreError) as failure:
        store.get_bounded("record", 1000)
    assert not isinstance(failure.value, ValueTooLarge)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_scan_treats_glob_characters_in_the_prefix_literally(store: Store) -> None:
    starred = store.with_prefix("te*st::")
    store.with_prefix("teXst::").set("a", b"1")
    starred.set("b", b"2")
    assert list(starred.scan()) == ["b"]


class TestMemoryStore(StoreContract):
    """The memory store, on a clock the tests move: expiry without waiting."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        self.now = 1_000_000.0
        yield MemoryStore(clock=lambda: self.now).with_prefix("test::")

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestMockStore(TestMemoryStore):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        self.now = 1_000_000.0
        yield MockStore(clock=lambda: self.now).with_prefix("test::")


class TestRedisStore(StoreContract):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[Store]:
        yield from built(redis_url)


class TestMemcachedStore(StoreContract):
    @pytest.fixture
    def store(self, memcached_address: str) -> Iterator[Store]:
        yield from built("memcached://" + memcached_address)


class TestMemcachedPool(StoreContract):
    """Three memcached servers sharing the keys."""

    @pytest.fixture
    def store(self, memcached_pool_url: str) -> Iterator[Store]:
        yield from built(memcached_pool_url)


class TestAStoreRegisteredByAnApplication(StoreContract):
    """What README shows: a store registered under a name of its own, checked."""

    @pytest.fixture
    def store(self, memcached_address: str) -> Iterator[Store]:
        register("contract-test-memcached", MemcachedStore.from_options)
        store = create_store("contract-test-memcached", {"servers": [memcached_address]})
        yield store.with_prefix("test::")
        store.close()


def built(url: str) -> Iterator[Store]:
    """The store of *url* under the prefix ``test::``, closed afterwards."""
    name, options = parse_store_url(url)
    store = create_store(name, options)
    yield store.with_prefix("test::")
    store.close()


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_each_operation_is_one_round_trip(store: Store) -> None:
    store.set("k", b"1")
    for operation in (
        lambda: store.get("k"),
        lambda: store.set("k", b"2", ttl=60),
        lambda: store.add("k", b"2", ttl=60),
        lambda: store.touch("k", 60),
        lambda: store.get_and_touch("k", 60),
        lambda: store.incr("k", 1, ttl=60),
        lambda: store.get_many(["a", "b", "k"]),
        lambda: store.get_bounded("k", 100),
        lambda: store.set_many({"a": b"1", "b": b"2"}, ttl=60),
        lambda: store.delete("k"),
    ):
        with count_round_trips() as trips:
            operation()
        assert trips.total == 1


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_a_refused_get_bounded_is_one_round_trip(store: Store) -> None:
    store.set("big", b"x" * 10_000)
    store.ping()  # connected outside the count
    with count_round_trips() as trips, pytest.raises(ValueTooLarge):
        store.get_bounded("big", 1000)
    assert trips.total == 1


@pytest.mark.parametrize("backend", ["redis"])
def test_a_redis_batch_is_one_round_trip(store: Store) -> None:
    store.ping()  # a new connection's handshake is not the batch's
    with count_round_trips() as trips, store.batch() as batch:
        batch.get("a")
        batch.incr("b", ttl=10)
        batch.set("c", b"1", ttl=10)
        batch.get_and_touch("c", 10)
    assert trips.redis == 1


# -- Redis scripts: in full once, then by their digest ----------------------------------------


@pytest.mark.parametrize("backend", ["redis"])
def test_a_redis_script_is_sent_in_full_once_then_by_its_digest(store: Store) -> None:
    source, digest = INCR_WITH_TTL.source.encode(), INCR_WITH_TTL.sha.encode()
    store.ping()  # a new connection's handshake is not the scripts'
    with sent_to_redis() as sent:
        store.incr("n", 1, ttl=60)
        store.incr("n", 1, ttl=60)
        with store.batch() as batch:
            batch.incr("n", 1, ttl=60)
            batch.incr("other", 1, ttl=60)
    first, second, pipelined = sent
    assert source in first and b"EVALSHA" not in first
    assert source not in second and b"EVALSHA" in second and digest in second
    assert source not in pipelined and pipelined.count(digest) == 2
    assert store.get("n") == b"3"


@pytest.fixture
def own_redis_store() -> Iterator[tuple[Store, redis.Redis]]:
    """A Redis store on a server of its own (its script cache is flushed), and an admin."""
    server = start_redis()
    store = create_store("redis", {"host": server.host, "port": server.port})
    admin = redis.Redis(host=server.host, port=server.port)
    yield store, admin
    admin.close()
    store.close()
    server.stop()


def test_a_redis_server_that_lost_its_scripts_gets_them_in_full(
    own_redis_store: tuple[Store, redis.Redis],
) -> None:
    store, admin = own_redis_store
    store.set("plain", b"x")
    store.replace_record("r", {"f": b"1"}, 60)
    assert store.incr("n", 1, ttl=60) == 1
    admin.script_flush()  # as a restart or a failover does
    with count_round_trips() as trips:
        assert store.incr("n", 1, ttl=60) == 2
    assert trips.redis == 2  # refused by its digest, then sent in full
    with count_round_trips() as trips:
        assert store.incr("n", 1, ttl=60) == 3
    assert trips.redis == 1

    assert store.load_record("r", 60) is not None
    admin.script_flush()
    with count_round_trips() as trips, store.batch() as batch:
        counted = batch.incr("n", 1, ttl=60)
        record = batch.load_record("r", 60)
        plain = batch.get("plain")
    assert trips.redis == 2  # the refused scripts, again in full, in one more pipeline
    assert counted.value == 4  # run once, not twice
    assert record.value is not None and record.value.fields == {"f": b"1"}
    assert plain.value == b"x"
    with count_round_trips() as trips, store.batch() as batch:
        counted = batch.incr("n", 1, ttl=60)
        batch.load_record("r", 60)
    assert trips.redis == 1 and counted.value == 5


# -- outage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("redis", {"host": "127.0.0.1", "port": unused_port(), "socket_timeout": 1}),
        ("memcached", {"servers": [f"127.0.0.1:{unused_port()}"]}),
    ],
)
def test_an_unreachable_server_raises_store_unavailable(name: str, options: dict) -> None:
    store = create_store(name, options)
    for operation in (
        lambda: store.get("k"),
        lambda: store.set("k", b"v"),
        lambda: store.incr("k"),
        lambda: store.ping(),
    ):
        with pytest.raises(StoreUnavailable):
            operation()
    with pytest.raises(StoreUnavailable), store.batch() as batch:
        batch.get("k")


# -- memcached specifics -----------------------------------------------------------------


def test_memcached_keys_are_hashed_only_when_needed() -> None:
    assert memcached_key("cache::user:1") == b"cache::user:1"
    hashed = memcached_key("cache::" + "x" * 300)
    assert hashed.startswith(b"#h:") and len(hashed) <= 250
    assert memcached_key("with space") != memcached_key("with_space")
    assert memcached_key("#h:abc") != b"#h:abc"


def test_memcached_expiry_follows_the_thirty_day_rule() -> None:
    assert memcached_expiry(None) == 0
    assert memcached_expiry(60) == 60
    assert memcached_expiry(THIRTY_DAYS) == THIRTY_DAYS
    assert memcached_expiry(THIRTY_DAYS + 1, now=1_000_000) == 1_000_000 + THIRTY_DAYS + 1


def test_memcached_writes_are_confirmed(memcached_address: str) -> None:
    store = create_store("memcached", {"servers": [memcached_address]})
    # memcached refuses items over its 1 MiB item size: with noreply this is lost
    # silently; confirmed writes report it.
    with pytest.raises(StoreError):
        store.set("huge", b"x" * (2 * 1024 * 1024))


def test_memcached_values_keep_their_flags(memcached_address: str) -> None:
    host, port = memcached_address.split(":")
    raw = MemcacheClient((host, int(port)), default_noreply=False)
    raw.set("perl", b"\x04\x0b", flags=1)
    store = create_store("memcached", {"servers": [memcached_address]})
    for value in (store.get("perl"), store.get_bounded("perl", 2)):
        assert value == b"\x04\x0b"
        assert value.flags == 1  # type: ignore[union-attr]


def test_several_memcached_servers_share_the_keys(
    memcached_address: str, memcached_server2: object
) -> None:
    second = memcached_server2.address  # type: ignore[attr-defined]
    raw_second = MemcacheClient(tuple_address(second))
    raw_second.flush_all(noreply=False)
    store = create_store("memcached", {"servers": [memcached_address, second]})
    for index in range(60):
        store.set(f"key{index}", str(index).encode())
    assert store.get_many([f"key{i}" for i in range(60)]) == [str(i).encode() for i in range(60)]
    assert store.get_and_touch("key7", 60) == b"7"
    assert store.get_bounded("key42", 2) == b"42"
    with pytest.raises(ValueTooLarge):
        store.get_bounded("key42", 1)
    keys = [f"key{i}".encode() for i in range(60)]
    counts = [
        len(MemcacheClient(tuple_address(address)).get_many(keys))
        for address in (memcached_address, second)
    ]
    assert sum(counts) == 60 and min(counts) > 0


def test_several_memcached_servers_place_keys_as_pymemcache_does() -> None:
    # the same rendezvous hash as pymemcache's HashClient: moving to pyramid_kvs's
    # own ring leaves every key on the server where it already is
    from pymemcache.client.hash import HashClient

    addresses = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11212"]
    store = create_store("memcached", {"servers": addresses})
    theirs = HashClient([tuple_address(address) for address in addresses])
    for index in range(200):
        key = memcached_key(f"session::{index}")
        host, port = store.client.server_for(key).address  # type: ignore[attr-defined]
        assert theirs._get_client(key).server == (host, port)


def tuple_address(address: str) -> tuple[str, int]:
    host, port = address.split(":")
    return host, int(port)


# -- memory specifics --------------------------------------------------------------------


def test_memory_store_evicts_the_least_recently_used() -> None:
    store = MemoryStore(max_entries=3)
    store.set("a", b"1")
    store.set("b", b"2")
    store.set("c", b"3")
    store.get("a")  # a is now the most recently used
    store.set("d", b"4")
    assert store.get("b") is None
    assert [store.get(k) for k in "acd"] == [b"1", b"3", b"4"]


def test_memory_store_prefixes_have_their_own_areas() -> None:
    store = MemoryStore(max_entries=3)
    sessions = store.with_prefix("session::")
    limits = store.with_prefix("ratelimit::")
    cache = store.with_prefix("cache::")
    sessions.set("alice", b"1")
    sessions.replace_record("bob", {"user": b"bob"}, 60)
    for index in range(100):  # made-up holders and cache keys, by the hundred
        limits.incr(f"client{index}", ttl=60)
        cache.set(f"page{index}", b"x")
    assert sessions.get("alice") == b"1"
    assert sessions.load_record("bob", 60) is not None
    # each area is bounded by max_entries on its own, least recently used out first
    assert sorted(limits.scan()) == ["client97", "client98", "client99"]
    assert sorted(cache.scan()) == ["page97", "page98", "page99"]
    sessions.set("carol", b"3")
    sessions.set("dave", b"4")
    assert sessions.get("alice") is None  # sessions evict only sessions
    assert sorted(sessions.scan()) == ["bob", "carol", "dave"]


def test_memory_store_views_of_one_prefix_share_its_area() -> None:
    store = MemoryStore()
    store.with_prefix("a::").set("k", b"1")
    assert store.with_prefix("a::").get("k") == b"1"
    assert store.with_prefix("b::").get("k") is None
    other = store.with_prefix("b::")
    assert other.shares_client_with(store.with_prefix("a::"))
    assert not other.shares_client_with(MemoryStore().with_prefix("b::"))
    store.clear()
    assert store.with_prefix("a::").get("k") is None


def test_memory_store_follows_its_clock() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.set("k", b"v", ttl=10)
    now[0] += 9.9
    assert store.get("k") == b"v"
    now[0] += 0.2
    assert store.get("k") is None


# -- what a store says about its server (pkvs ping) ------------------------------------------


def test_server_info_of_each_backend(
    redis_url: str, memcached_address: str, memcached_server2: object
) -> None:
    redis_store = next(built(redis_url))
    info = redis_store.server_info()
    assert info["server"] == redis_url.removeprefix("redis://").removesuffix("/0")
    assert info["version"] == redis.Redis.from_url(redis_url).info("server")["redis_version"]
    second = memcached_server2.address  # type: ignore[attr-defined]
    store = create_store("memcached", {"servers": [memcached_address, second]})
    info = store.server_info()
    assert info["server"] == f"{memcached_address}, {second}"
    assert info["version"].count(".") == 2  # one version: both servers run the same
    assert MemoryStore().server_info() == {"store": "memory", "server": "in-process"}


def test_server_info_of_a_store_that_cannot_tell() -> None:
    class Plain(MemoryStore):
        name = "plain"
        server_info = Store.server_info

    assert Plain().server_info() == {"store": "plain"}


# -- the registry ------------------------------------------------------------------------


def test_custom_stores_can_be_registered() -> None:
    class Custom(MemoryStore):
        name = "custom"

    register("custom-test", lambda options: Custom(**options))
    built = create_store("custom-test", {"max_entries": 5})
    assert isinstance(built, Custom) and built.max_entries == 5


def test_memcache_is_the_original_spelling_of_memcached(memcached_address: str) -> None:
    store = create_store("memcache", {"servers": [memcached_address]})
    assert store.name == "memcached"


# -- records -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_record_operations_are_one_round_trip(store: Store) -> None:
    store.replace_record("r", {"a": b"1"}, 60)
    with count_round_trips() as trips:
        loaded = store.load_record("r", 60)
    assert trips.total == 1
    with count_round_trips() as trips:
        store.update_record("r", {"b": b"2"}, ["a"], 60, base=loaded)
    assert trips.total == 1
    with count_round_trips() as trips:
        store.replace_record("r", {"c": b"3"}, 60)
    assert trips.total == 1


def test_redis_refuses_decoded_responses() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        create_store("redis", {"decode_responses": True})


@pytest.mark.parametrize("backend", ["redis"])
def test_a_redis_batch_of_two_prefixes_is_one_round_trip(store: Store) -> None:
    sessions = store.with_prefix("sessions::")
    sessions.replace_record("r", {"a": b"1"}, 60)
    with count_round_trips() as trips, store.batch() as batch:
        batch.incr("hits", ttl=60)
        record = batch.load_record("r", 60, store=sessions)
        batch.delete("old")
        batch.replace_record("new", {"b": b"2"}, 60, store=sessions)
    assert trips.redis == 1
    assert record.value is not None
