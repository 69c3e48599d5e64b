"""The store contract, run against every backend: memory, Redis and memcached."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient
from redis import connection as redis_connection

from pyramid_kvs.stores import (
    Store,
    StoreError,
    StoreUnavailable,
    UnsupportedOperation,
    ValueTooLarge,
    create_store,
    register,
)
from pyramid_kvs.stores.memcached import THIRTY_DAYS, memcached_expiry, memcached_key
from pyramid_kvs.stores.memory import MemoryStore
from pyramid_kvs.stores.redis import INCR_WITH_TTL
from roundtrips import count_round_trips
from servers import start_redis, unused_port

ODD_KEYS = [
    "plain",
    "with space",
    "new\nline",
    "tab\tand\x00nul",
    "ünïcødé ключ",
    "k" * 300,
    "#h:looks-hashed",
    "",
]


def test_get_set_delete(store: Store) -> None:
    assert store.get("a") is None
    store.set("a", b"1")
    assert store.get("a") == b"1"
    store.set("a", b"\x00\xffbinary")
    assert store.get("a") == b"\x00\xffbinary"
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.get("a") is None


def test_add_only_when_absent(store: Store) -> None:
    assert store.add("a", b"first", ttl=60) is True
    assert store.add("a", b"second", ttl=60) is False
    assert store.get("a") == b"first"


def test_incr_counts_atomically_from_zero(store: Store) -> None:
    assert store.incr("n") == 1
    assert store.incr("n", 5) == 6
    assert store.get("n") == b"6"
    assert store.incr("m", 3, ttl=60) == 3


def test_incr_from_threads_loses_no_increment(store: Store) -> None:
    def work() -> None:
        for _ in range(50):
            store.incr("hits", ttl=60)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("hits") == b"200"


def test_incr_on_a_non_integer_is_a_store_error(store: Store) -> None:
    store.set("text", b"abc")
    with pytest.raises(StoreError):
        store.incr("text")


def test_pop_reads_and_removes(store: Store) -> None:
    store.set("a", b"v")
    assert store.pop("a") == b"v"
    assert store.pop("a") is None
    assert store.get("a") is None


def test_get_bounded_refuses_a_value_over_the_bound(store: Store) -> None:
    store.set("session-id", b"x" * 100)
    store.set("empty", b"")
    for _ in range(3):  # a refusal leaves the client usable (memcached reconnects)
        with pytest.raises(ValueTooLarge) as refused:
            store.get_bounded("session-id", 99)
        assert (refused.value.size, refused.value.max_size) == (100, 99)
        assert store.get_bounded("session-id", 100) == b"x" * 100  # the bound is inclusive
    assert "session-id" not in str(refused.value)  # keys may be credentials
    assert store.get_bounded("absent", 10) is None
    assert store.get_bounded("empty", 0) == b""
    assert store.get("session-id") == b"x" * 100  # refused, not removed


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_get_bounded_on_a_record_is_a_store_error(store: Store) -> None:
    store.replace_record("record", {"field": b"1"}, None)
    with pytest.raises(StoreError) as failure:
        store.get_bounded("record", 1000)
    assert not isinstance(failure.value, ValueTooLarge)


def test_get_many_keeps_order_and_misses(store: Store) -> None:
    store.set_many({"a": b"1", "c": b"3"}, ttl=60)
    assert store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    assert store.get_many([]) == []


def test_odd_keys_work_and_stay_distinct(store: Store) -> None:
    for index, key in enumerate(ODD_KEYS):
        store.set(key, str(index).encode())
    for index, key in enumerate(ODD_KEYS):
        assert store.get(key) == str(index).encode(), key
    assert store.get_many(ODD_KEYS) == [str(i).encode() for i in range(len(ODD_KEYS))]


def test_prefixes_isolate_views_of_one_client(store: Store) -> None:
    other = store.with_prefix("other::")
    store.set("k", b"mine")
    assert other.get("k") is None
    other.set("k", b"theirs")
    assert store.get("k") == b"mine"


def test_expiry_touch_and_get_and_touch(store: Store) -> None:
    store.set("short", b"1", ttl=1)
    store.set("long", b"2", ttl=100)
    store.set("touched", b"3", ttl=100)
    store.set("read", b"4", ttl=100)
    store.set("forever", b"5")
    store.set("thirty-days", b"6", ttl=THIRTY_DAYS + 5)
    assert store.touch("touched", 1) is True
    assert store.touch("absent", 1) is False
    assert store.get_and_touch("read", 1) == b"4"
    assert store.get_and_touch("absent", 1) is None
    assert store.incr("counter", ttl=1) == 1
    assert store.add("added", b"7", ttl=1) is True
    time.sleep(2.2)
    assert store.get("short") is None
    assert store.get("touched") is None
    assert store.get("read") is None
    assert store.get("counter") is None
    assert store.get("added") is None
    assert store.get("long") == b"2"
    assert store.get("forever") == b"5"
    # more than 30 days is no absolute time in 1970 on memcached
    assert store.get("thirty-days") == b"6"


def test_incr_keeps_the_expiry_set_at_creation(store: Store) -> None:
    store.incr("window", ttl=1)
    time.sleep(0.6)
    store.incr("window", ttl=1)
    time.sleep(1.6)
    assert store.get("window") is None


def test_touch_without_ttl_removes_the_expiry(store: Store) -> None:
    store.set("k", b"v", ttl=1)
    assert store.touch("k", None) is True
    time.sleep(2.1)
    assert store.get("k") == b"v"


@pytest.mark.parametrize("ttl", [0, -1, 1.5, "10"])
def test_invalid_ttl_is_rejected(store: Store, ttl: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.set("k", b"v", ttl=ttl)  # type: ignore[arg-type]


def test_values_must_be_bytes(store: Store) -> None:
    with pytest.raises(TypeError):
        store.set("k", "text")  # type: ignore[arg-type]


def test_scan_lists_own_prefix_only(store: Store) -> None:
    if not store.can_scan:
        with pytest.raises(UnsupportedOperation):
            list(store.scan())
        return
    store.set("user:1", b"a")
    store.set("user:2", b"b")
    store.set("group:1", b"c")
    store.with_prefix("other::").set("user:4", b"e")
    assert sorted(store.scan()) == ["group:1", "user:1", "user:2"]
    assert sorted(store.scan("user:*")) == ["user:1", "user:2"]
    assert list(store.scan("nothing*")) == []


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_scan_treats_glob_characters_in_the_prefix_literally(store: Store) -> None:
    starred = store.with_prefix("te*st::")
    store.with_prefix("teXst::").set("a", b"1")
    starred.set("b", b"2")
    assert list(starred.scan()) == ["b"]


def test_batch_runs_every_operation(store: Store) -> None:
    store.set("existing", b"old")
    with store.batch() as batch:
        got = batch.get("existing")
        wrote = batch.set("new", b"value", ttl=60)
        counted = batch.incr("counter", 2, ttl=60)
        added = batch.add("existing", b"no", ttl=60)
        touched = batch.get_and_touch("existing", 60)
        deleted = batch.delete("missing")
        expiring = batch.touch("new", 60)
        kept = batch.touch("existing", None)
        absent = batch.touch("missing", None)
        assert len(batch) == 9
    assert got.value == b"old"
    assert wrote.value is None
    assert counted.value == 2
    assert added.value is False
    assert touched.value == b"old"
    assert deleted.value is False
    assert (expiring.value, kept.value, absent.value) == (True, True, False)
    assert store.get("new") == b"value"


def test_batch_reports_a_failed_operation_on_its_result(store: Store) -> None:
    store.set("text", b"abc")
    with store.batch() as batch:
        bad = batch.incr("text")
        good = batch.get("text")
    assert good.value == b"abc"
    with pytest.raises(StoreError):
        bad.value  # noqa: B018


def test_pending_value_before_execution_is_an_error(store: Store) -> None:
    pending = store.batch().get("k")
    with pytest.raises(RuntimeError):
        pending.value  # noqa: B018


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


@contextmanager
def sent_to_redis() -> Iterator[list[bytes]]:
    """The requests sent to Redis meanwhile, one bytes string each."""
    sent: list[bytes] = []
    connection = redis_connection.AbstractConnection
    original = connection.send_packed_command

    def recording(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        parts = command if isinstance(command, list) else [command]
        sent.append(b"".join(bytes(part) for part in parts))
        return original(self, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection, "send_packed_command", recording)
        yield sent


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


def test_records_load_update_replace(store: Store) -> None:
    assert store.load_record("r", 60) is None
    store.replace_record("r", {"a": b"1", "b": b"2"}, 60)
    loaded = store.load_record("r", 60)
    assert loaded is not None and dict(loaded.fields) == {"a": b"1", "b": b"2"}
    store.update_record("r", {"c": b"3", "a": b"10"}, ["b"], 60, base=loaded)
    loaded = store.load_record("r", 60)
    assert loaded is not None and dict(loaded.fields) == {"a": b"10", "c": b"3"}
    store.replace_record("r", {"z": b"26"}, 60)
    loaded = store.load_record("r", 60)
    assert loaded is not None and dict(loaded.fields) == {"z": b"26"}
    store.update_record("r", {}, ["z"], 60)
    assert store.load_record("r", 60) is None  # an emptied record is gone
    store.update_record("new", {"x": b""}, [], 60)
    loaded = store.load_record("new", 60)
    assert loaded is not None and dict(loaded.fields) == {"x": b""}


def test_record_updates_keep_fields_changed_by_others(store: Store) -> None:
    store.replace_record("r", {"a": b"1", "b": b"1"}, 60)
    first = store.load_record("r", 60)
    second = store.load_record("r", 60)
    store.update_record("r", {"a": b"first"}, [], 60, base=first)
    store.update_record("r", {"b": b"second"}, [], 60, base=second)  # stale base
    loaded = store.load_record("r", 60)
    assert loaded is not None
    assert dict(loaded.fields) == {"a": b"first", "b": b"second"}


def test_concurrent_record_updates_lose_nothing(store: Store) -> None:
    store.replace_record("r", {"start": b"1"}, 60)

    def writer(number: int) -> None:
        for step in range(10):
            base = store.load_record("r", 60)
            store.update_record("r", {f"w{number}-{step}": b"x"}, [], 60, base=base)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = store.load_record("r", 60)
    assert loaded is not None and len(loaded.fields) == 41


def test_record_expiry_is_reset_by_loading(store: Store) -> None:
    # memcached's clock ticks in whole seconds, so an item with a TTL of n seconds
    # lives between n - 1 and n seconds: the margins below allow for that.
    store.replace_record("idle", {"a": b"1"}, 1)
    store.replace_record("used", {"a": b"1"}, 3)
    time.sleep(1.5)
    assert store.load_record("used", 4) is not None  # reset: 4 more seconds
    time.sleep(2.0)  # past the first expiry, before the second
    assert store.load_record("idle", 4) is None
    assert store.load_record("used", 4) is not None


def test_a_plain_value_is_no_record(store: Store) -> None:
    store.set("plain", b"abc")
    with pytest.raises(StoreError):
        store.load_record("plain", 60)


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


def test_a_record_loads_in_a_batch(store: Store) -> None:
    store.replace_record("r", {"a": b"1"}, 60)
    with store.batch() as batch:
        record = batch.load_record("r", 60)
        missing = batch.load_record("nothing", 60)
    assert record.value is not None and dict(record.value.fields) == {"a": b"1"}
    assert missing.value is None


def test_redis_refuses_decoded_responses() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        create_store("redis", {"decode_responses": True})


def test_a_batch_carries_records_of_another_prefix_of_its_client(store: Store) -> None:
    sessions = store.with_prefix("sessions::")
    sessions.replace_record("r", {"a": b"1"}, 60)
    with store.batch() as batch:
        counted = batch.incr("hits", ttl=60)
        record = batch.load_record("r", 60, store=sessions)
        batch.replace_record("moved", {"b": b"2"}, 60, store=sessions)
    assert counted.value == 1
    assert record.value is not None and dict(record.value.fields) == {"a": b"1"}
    moved = sessions.load_record("moved", 60)
    assert moved is not None and dict(moved.fields) == {"b": b"2"}
    assert store.load_record("moved", 60) is None  # written under the other prefix only
    assert store.shares_client_with(sessions)


def test_a_batch_refuses_a_store_on_another_client(store: Store) -> None:
    other = MemoryStore()
    assert not store.shares_client_with(other)
    with pytest.raises(ValueError, match="does not share"):
        store.batch().load_record("r", 60, store=other)


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
