"""Fixtures shared by the whole suite: real servers, clean stores, Pyramid configs."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from pyramid_kvs.stores import Store, create_store
from servers import Server, start_memcached, start_redis

BACKENDS = ("memory", "redis", "memcached")


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
