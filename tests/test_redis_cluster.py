"""The Redis Cluster store against a live cluster of three masters and three replicas.

The shipped contract suite first, then what is the cluster's own: one round trip per
node rather than per key, scripts cached per node, keys listed on every master,
redirections followed, scripts kept to one slot, options.  Failovers are in
``test_failover.py``, on a cluster of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyramid.exceptions import ConfigurationError
from redis.crc import key_slot

from pyramid_kvs.components import build_store
from pyramid_kvs.settings import parse_store, parse_store_url
from pyramid_kvs.stores import Store, StoreUnavailable, create_store
from pyramid_kvs.stores.breaker import DEFAULT_DOWN_FOR
from pyramid_kvs.stores.redis import INCR_WITH_TTL
from pyramid_kvs.stores.redis_cluster import RedisClusterStore
from pyramid_kvs.testing.contract import StoreContract
from roundtrips import count_round_trips, sent_to_redis
from servers import RedisClusterServers, admin, unused_port


class TestRedisClusterStore(StoreContract):
    @pytest.fixture
    def store(self, redis_cluster_url: str) -> Iterator[Store]:
        name, options = parse_store_url(redis_cluster_url)
        store = create_store(name, options)
        yield store.with_prefix("test::")
        store.close()


def built(url: str, **options: Any) -> RedisClusterStore:
    name, parsed = parse_store_url(url)
    store = create_store(name, {**parsed, **options})
    assert isinstance(store, RedisClusterStore)
    return store.with_prefix("test::")


def keys_by_master(cluster: RedisClusterServers, count: int = 60) -> dict[str, list[str]]:
    """Keys ``k0``, ``k1``... (under ``test::``) grouped by the address of their master."""
    by_master: dict[str, list[str]] = {}
    for index in range(count):
        key = f"k{index}"
        master = cluster.master_of("test::" + key)
        by_master.setdefault(master.address, []).append(key)
    return by_master


@pytest.fixture
def store(redis_cluster_url: str) -> Iterator[RedisClusterStore]:
    store = built(redis_cluster_url)
    store.ping()  # a connection to every master: counts leave out the handshakes
    yield store
    store.close()


# -- one round trip per node --------------------------------------------------------------------


def test_keys_spread_over_every_master(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    assert len(keys_by_master(redis_cluster)) == 3


def test_many_keys_cost_one_round_trip_per_node(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    values = {f"k{index}": str(index).encode() for index in range(60)}
    with count_round_trips() as trips:
        store.set_many(values, ttl=60)
    assert trips.redis == 3
    with count_round_trips() as trips:
        assert store.get_many([*values, "absent"]) == [*values.values(), None]
    assert trips.redis == 3
    tagged = [f"{{user:1}}:field{index}" for index in range(10)]  # one tag: one node
    with count_round_trips() as trips:
        store.set_many(dict.fromkeys(tagged, b"x"))
    assert trips.redis == 1
    one_node = next(iter(keys_by_master(redis_cluster).values()))
    with count_round_trips() as trips:
        store.get_many(one_node)
    assert trips.redis == 1


def test_a_batch_on_one_tag_is_one_round_trip(store: RedisClusterStore) -> None:
    sessions = store.with_prefix("session::")
    with count_round_trips() as trips, store.batch() as batch:
        counted = batch.incr("{holder}:a", ttl=60)
        batch.incr("{holder}:b", ttl=60)
        record = batch.load_record("{holder}", 60, store=sessions)
    assert trips.redis == 1
    assert counted.value == 1 and record.value is None


# -- scripts, per node ---------------------------------------------------------------------------


def test_scripts_are_cached_per_node(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    by_master = keys_by_master(redis_cluster)
    one_per_master = [keys[0] for keys in by_master.values()]

    def incr_everywhere() -> list[int]:
        with store.batch() as batch:
            counted = [batch.incr(key, ttl=60) for key in one_per_master]
        return [pending.value for pending in counted]

    with sent_to_redis() as sent:
        assert incr_everywhere() == [1, 1, 1]  # in full, once per node
        assert incr_everywhere() == [2, 2, 2]
    assert [INCR_WITH_TTL.source.encode() in request for request in sent] == [True] * 3 + [
        False
    ] * 3
    flushed = admin(redis_cluster.by_address(next(iter(by_master))))
    flushed.script_flush()  # that node lost its scripts: a restart, a failover
    flushed.close()
    with count_round_trips() as trips:
        assert incr_everywhere() == [3, 3, 3]
    assert trips.redis == 4  # the flushed node's refusal, then the script in full there
    with count_round_trips() as trips:
        assert incr_everywhere() == [4, 4, 4]
    assert trips.redis == 3


def test_a_script_on_keys_of_several_slots_is_refused(store: RedisClusterStore) -> None:
    batch = store.batch()
    with pytest.raises(ValueError, match="share a hash tag"):
        batch.run_script(INCR_WITH_TTL, ["a", "b"], [1, 60], int)
    batch.run_script(INCR_WITH_TTL, ["{t}a", "{t}b"], [1, 60], int)  # one tag: accepted


# -- keys of every master ------------------------------------------------------------------------


def test_keys_are_listed_from_every_master(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    keys = [key for keys in keys_by_master(redis_cluster, 30).values() for key in keys]
    store.set_many(dict.fromkeys(keys, b"x"))
    store.with_prefix("other::").set("k1", b"y")
    assert sorted(store.scan()) == sorted(keys)
    assert sorted(store.scan("k1*")) == sorted(key for key in keys if key.startswith("k1"))


# -- redirections ------------------------------------------------------------------------------


def test_a_slot_that_moved_is_followed(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    store.set("k", b"v")
    store.set("{k}other", b"w")
    slot = key_slot(b"test::k")
    slot_map = store.cluster.client().nodes_manager
    owner = slot_map.get_node_from_slot(slot)
    stranger = next(node for node in store.cluster.primaries() if node.name != owner.name)
    slot_map.slots_cache[slot] = [stranger]  # as if the slot had moved since
    with count_round_trips() as trips:
        assert store.get("k") == b"v"
    assert trips.redis == 2  # MOVED, then the right node
    with count_round_trips() as trips, store.batch() as batch:
        first = batch.get("k")
        second = batch.get("{k}other")
    assert trips.redis == 1 and (first.value, second.value) == (b"v", b"w")


def test_a_key_being_migrated_is_asked_for(
    store: RedisClusterStore, redis_cluster: RedisClusterServers
) -> None:
    store.set("moving", b"v", ttl=60)
    store.set("{moving}stays", b"w", ttl=60)
    slot = key_slot(b"test::moving")
    source = redis_cluster.master_of("test::moving")
    target = next(node for node in redis_cluster.masters() if node is not source)
    source_admin, target_admin = admin(source), admin(target)
    source_id = source_admin.execute_command("CLUSTER MYID")
    target_id = target_admin.execute_command("CLUSTER MYID")
    try:
        target_admin.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source_admin.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        source_admin.execute_command(
            "MIGRATE", target.host, target.port, "test::moving", 0, 5000
        )  # fmt: skip
        with count_round_trips() as trips:
            assert store.get("moving") == b"v"  # ASK: asked on the importing node
        assert trips.redis == 2
        with store.batch() as batch:
            moved = batch.incr("moving:n", ttl=60)  # not there yet: created on the target
            stays = batch.get("{moving}stays")
        assert (stays.value, moved.value) == (b"w", 1)
        assert store.get_and_touch("moving", 60) == b"v"
    finally:
        for client in (source_admin, target_admin):
            client.execute_command("CLUSTER SETSLOT", slot, "STABLE")
            client.close()
        redis_cluster.flush()


def test_a_slot_without_a_master_in_the_map_is_an_outage_until_the_map_is_read(
    store: RedisClusterStore,
) -> None:
    store.set("k", b"v")
    slot_map = store.cluster.client().nodes_manager
    del slot_map.slots_cache[key_slot(b"test::k")]  # as if read while the slot had none
    with pytest.raises(StoreUnavailable, match="not covered"):
        store.get("k")
    assert store.get("k") == b"v"  # the map was read again


def test_a_redirection_the_map_cannot_take_reads_the_map_again(
    store: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("k", b"v")
    slot = key_slot(b"test::k")
    slot_map = store.cluster.client().nodes_manager
    owner = slot_map.get_node_from_slot(slot)
    slot_map.slots_cache[slot] = [n for n in store.cluster.primaries() if n.name != owner.name][:1]

    def cannot(moved: Any) -> None:
        raise KeyError(moved.slot_id)

    monkeypatch.setattr(slot_map, "move_slot", cannot)
    assert store.get("k") == b"v"  # MOVED, the map read again, then the right node


# -- connections -------------------------------------------------------------------------------


def test_the_cluster_is_reached_on_first_use() -> None:
    url = f"redis+cluster://127.0.0.1:{unused_port()},127.0.0.1:{unused_port()}"
    store = built(url)  # built while nothing answers: an application starts
    with pytest.raises(StoreUnavailable):
        store.get("k")
    with pytest.raises(StoreUnavailable, match="not tried"):
        store.get("k")  # the breaker: no second attempt for down_for


def test_startup_nodes_that_do_not_answer_are_passed_over(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> None:
    dead = f"127.0.0.1:{unused_port()}"
    store = built(f"redis+cluster://{dead},{redis_cluster.nodes[0].address}")
    store.set("k", b"v")
    assert store.get("k") == b"v"
    known = {node.name for node in store.cluster.client().get_primaries()}
    assert known == {node.address for node in redis_cluster.masters()}  # all found
    store.close()


# -- options ------------------------------------------------------------------------------------


def options_of(settings: dict[str, Any]) -> Any:
    spec = parse_store(settings, "kvs.cache")
    store = build_store(spec)
    assert isinstance(store, RedisClusterStore)
    return store.cluster.options


def test_both_forms_of_settings_and_the_defaults() -> None:
    url = options_of({"url": "redis+cluster://:secret@h1:7000,h2,[::1]:7002/0"})
    json_form = options_of(
        {
            "kvs": "redis+cluster",
            "kvs_kwargs": {
                "startup_nodes": ["h1:7000", ["h2", 6379], "[::1]:7002"],
                "password": "secret",
            },
        }
    )
    assert url == json_form
    assert url.startup_nodes == (("h1", 7000), ("h2", 6379), ("::1", 7002))
    assert url.connection_kwargs == {
        "password": "secret",
        "socket_connect_timeout": 1.0,
        "socket_timeout": 1.0,
    }
    assert url.cluster_kwargs == {"require_full_coverage": False}
    assert url.down_for == DEFAULT_DOWN_FOR


def test_options_from_the_query_and_kvs_kwargs() -> None:
    options = options_of(
        {
            "url": "redis+cluster://h1:7000?socket_timeout=0.25&down_for=2"
            "&require_full_coverage=true&client_name=web",
            "kvs_kwargs": {"socket_timeout": 0.5, "host": "h2", "port": 7001},
        }
    )
    assert options.startup_nodes == (("h1", 7000), ("h2", 7001))
    assert options.connection_kwargs["socket_timeout"] == 0.5  # kvs_kwargs win
    assert options.connection_kwargs["client_name"] == "web"
    assert options.cluster_kwargs == {"require_full_coverage": True}
    assert options.down_for == 2
    remap = options_of(
        {
            "kvs": "redis+cluster",
            "kvs_kwargs": {
                "startup_nodes": "h1:7000, h2:7001",
                "dynamic_startup_nodes": "no",
                "require_full_coverage": False,
                "address_remap": print,
            },
        }
    )
    assert remap.startup_nodes == (("h1", 7000), ("h2", 7001))
    assert remap.cluster_kwargs == {
        "require_full_coverage": False,
        "dynamic_startup_nodes": False,
        "address_remap": print,
    }


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"url": "redis+cluster://h:1/2"}, ["database 0"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"db": 1, "host": "h"}}, ["db", "database 0"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {}}, ["startup nodes"]),
        ({"url": "redis+cluster://h:1?read_from_replicas=true"}, ["masters only"]),
        ({"url": "redis+cluster://h:1?retry_on_timeout=true"}, ["does not retry"]),
        ({"url": "redis+cluster://h:1?socket_timeout=none"}, ["socket_timeout"]),
        ({"url": "redis+cluster://h:1?socket_timout=1"}, ["unknown", "socket_timout"]),
        ({"url": "redis+cluster://h:1?down_for=0"}, ["down_for"]),
        ({"url": "redis+cluster://h:1?require_full_coverage=perhaps"}, ["require_full_coverage"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"startup_nodes": "h:x"}}, ["host:port"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"startup_nodes": 7}}, ["startup_nodes"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"startup_nodes": [7]}}, ["host:port"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"url": "redis://h"}}, ["redis+cluster://"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"host": "h", "address_remap": "x"}}, ["remap"]),
        ({"url": "redis+cluster://h:1?max_connections=many"}, ["max_connections"]),
        ({"kvs": "redis+cluster", "kvs_kwargs": {"host": "h", "max_connections": "x"}}, ["max"]),
    ],
)
def test_bad_options_fail_at_start_up(settings: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ConfigurationError) as failure:
        build_store(parse_store(settings, "kvs.cache"))
    for name in ("kvs.cache", *names):
        assert name in str(failure.value)


def test_server_info_names_every_master(
    redis_cluster: RedisClusterServers, store: RedisClusterStore
) -> None:
    info = store.server_info()
    masters = redis_cluster.masters()
    assert sorted(info["server"].split(", ")) == sorted(node.address for node in masters)
    client = admin(masters[0])
    assert info["version"] == client.info("server")["redis_version"]  # one version
    client.close()
