"""The Redis store's kept connections (``stores.redis.KeptConnections``), live.

Each thread keeps the connection it took from redis-py's pool; these tests check
what the pool's checkout did for every command still holds: a connection the
server closed is replaced without an error, one left mid-reply is never reused,
a thread's connection goes back to the pool when the thread ends, and a forked
child never shares its parent's socket.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from pyramid_kvs.stores import StoreUnavailable, create_store
from pyramid_kvs.stores.redis import RedisStore
from servers import Server, start_redis


@pytest.fixture
def own_redis() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


def store_on(server: Server, **options: object) -> RedisStore:
    store = create_store("redis", {"url": f"redis://{server.address}/0", **options})
    assert isinstance(store, RedisStore)
    return store


def admin_of(server: Server) -> redis.Redis:
    host, port = server.address.split(":")
    return redis.Redis(host=host, port=int(port))


def test_one_connection_per_thread_kept_between_calls(own_redis: Server) -> None:
    store = store_on(own_redis)
    admin = admin_of(own_redis)
    for number in range(20):
        store.set(f"k{number}", b"v")
        assert store.get(f"k{number}") == b"v"
    clients = admin.client_list()
    assert len(clients) == 2  # the store's one connection, and this admin's
    store.close()
    admin.close()


def test_a_connection_the_server_closed_is_replaced_without_an_error(own_redis: Server) -> None:
    store = store_on(own_redis)
    store.set("k", b"v")
    admin = admin_of(own_redis)
    assert admin.client_kill_filter(_type="normal", skipme=True) == 1
    time.sleep(0.05)
    assert store.get("k") == b"v"  # no StoreUnavailable, no breaker opened
    assert store.get("k") == b"v"
    admin.config_set("timeout", 1)  # the server closes idle connections itself
    time.sleep(2.2)
    assert store.get("k") == b"v"
    store.close()
    admin.close()


def test_a_connection_left_mid_reply_is_never_read_again(own_redis: Server) -> None:
    """A timeout while the server is frozen leaves a reply on the way: the next call,
    once the server thaws, must read its own reply, not that one."""
    store = store_on(own_redis, socket_timeout=0.2, down_for=0.1)
    store.set("a", b"first")
    store.set("b", b"second")
    own_redis.freeze()
    try:
        with pytest.raises(StoreUnavailable):
            store.get("a")
    finally:
        own_redis.thaw()
    time.sleep(0.3)  # the reply to the first GET has arrived, the breaker closed
    assert store.get("b") == b"second"
    store.close()


def test_a_threads_connection_goes_back_to_the_pool_when_it_ends(own_redis: Server) -> None:
    store = store_on(own_redis)
    pool = store.client.connection_pool
    threads = [threading.Thread(target=store.set, args=(f"k{n}", b"v")) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
    assert 1 <= len(pool._available_connections) <= 5  # type: ignore[attr-defined]
    store.close()


def test_a_forked_child_takes_its_own_connection(own_redis: Server) -> None:
    store = store_on(own_redis)
    store.set("parent", b"p")
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()

    def in_child() -> None:
        store.set("child", b"c")  # the parent's store, inherited
        queue.put(store.get("child"))

    process = context.Process(target=in_child)
    process.start()
    assert queue.get(timeout=10) == b"c"
    process.join(10)
    assert process.exitcode == 0
    for _ in range(50):  # the parent's connection still reads its own replies
        assert store.get("parent") == b"p"
    store.close()
