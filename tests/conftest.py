"""Fixtures shared by the whole suite: real servers, clean stores, Pyramid configs."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from pyramid_kvs.stores import Store, create_store
from servers import (
    RedisClusterServers,
    RedisSentinelServers,
    Server,
    start_memcached,
    start_redis,
    start_redis_cluster,
    start_redis_sentinel,
)

BACKENDS = ("memory", "redis", "memcached")
#: the deployments of several servers, as ``backend`` values (see ``store_url``)
SEVERAL_SERVERS = ("redis+cluster", "redis+sentinel", "memcached-pool")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[Server]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_server2() -> Iterator[Server]:
    """A second memcached, for the several-servers client."""
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_server3() -> Iterator[Server]:
    """A third memcached: with the two others, a pool of three."""
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three masters and their replicas, shared: no test may fail one over."""
    cluster = start_redis_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    """A master, its replica and three sentinels, shared: no test may fail it over."""
    servers = start_redis_sentinel()
    yield servers
    servers.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The ``redis+cluster://`` URL of the shared cluster, emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinelServers) -> str:
    """The ``redis+sentinel://`` URL of the shared service, emptied for this test."""
    redis_sentinel.flush()
    return redis_sentinel.url


@pytest.fixture
def memcached_pool_url(
    memcached_server: Server, memcached_server2: Server, memcached_server3: Server
) -> str:
    """``memcached://`` three servers, emptied for this test."""
    servers = (memcached_server, memcached_server2, memcached_server3)
    for server in servers:
        client = MemcacheClient((server.host, server.port))
        client.flush_all(noreply=False)
        client.close()
    return "memcached://" + ",".join(server.address for server in servers)


@pytest.fixture
def redis_url(redis_server: Server) -> str:
    """The URL of the test Redis, emptied for this test."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushall()
    client.close()
    return f"redis://{redis_server.address}/0"


@pytest.fixture
def memcached_address(memcached_server: Server) -> str:
    """``host:port`` of the test memcached, emptied for this test."""
    client = MemcacheClient((memcached_server.host, memcached_server.port))
    client.flush_all(noreply=False)
    client.close()
    return memcached_server.address


def store_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A ``kvs.*.url`` for *backend*, its server started and emptied."""
    if backend == "memory":
        return "memory://"
    if backend == "redis":
        return request.getfixturevalue("redis_url")
    if backend == "memcached":
        return "memcached://" + request.getfixturevalue("memcached_address")
    if backend == "redis+cluster":
        return request.getfixturevalue("redis_cluster_url")
    if backend == "redis+sentinel":
        return request.getfixturevalue("redis_sentinel_url")
    if backend == "memcached-pool":
        return request.getfixturevalue("memcached_pool_url")
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    return store_url(backend, request)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A store of each backend under the prefix ``test::``, empty."""
    from pyramid_kvs.settings import parse_store_url

    name, options = parse_store_url(store_url(backend, request))
    built = create_store(name, options).with_prefix("test::")
    yield built
    built.close()


#: each test's reports by phase ("setup", "call", "teardown"), for fixtures that act
#: on a failure (the browser test's screenshots)
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report
