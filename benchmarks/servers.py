"""The Redis and memcached of a run, and what they say they did.

The servers are started as the test suite starts its own (``tests/servers.py``,
reused as it is: mirakuru waits for the port, port-for picks a free loopback
one), and stopped at the end.  Round trips are counted at the client libraries
by the workers; what the servers themselves executed is read here, from Redis'
``INFO commandstats`` and memcached's ``stats`` before and after a batch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
from pymemcache.client.base import Client as MemcacheClient

TESTS = Path(__file__).resolve().parent.parent / "tests"


def test_servers() -> ModuleType:
    """``tests/servers.py``, loaded under a name of its own."""
    name = "bench_test_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "servers.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


#: memcached ``stats`` counters that count commands executed (gets count per key)
MEMCACHED_COMMANDS = (
    "cmd_get", "cmd_set", "cmd_touch", "incr_hits", "incr_misses", "decr_hits",
    "decr_misses", "delete_hits", "delete_misses",
)  # fmt: skip


@dataclass
class ServerStats:
    """A snapshot of a server's counters; subtracting two gives a batch's work."""

    commands: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0

    def __sub__(self, earlier: ServerStats) -> ServerStats:
        commands = Counter(self.commands)
        commands.subtract(earlier.commands)
        return ServerStats(+commands, self.cpu - earlier.cpu)


class Servers:
    """One Redis and one memcached on free loopback ports."""

    def __init__(self) -> None:
        servers = test_servers()
        self._redis_server = servers.start_redis()
        try:
            self._memcached_server = servers.start_memcached()
        except BaseException:
            self._redis_server.stop()
            raise
        self.redis_address: str = self._redis_server.address
        self.memcached_address: str = self._memcached_server.address
        self.redis = redis.Redis(host=self._redis_server.host, port=self._redis_server.port)
        self.memcached = MemcacheClient((self._memcached_server.host, self._memcached_server.port))

    def pids(self) -> list[int]:
        """The server processes (their CPUs are chosen by the harness)."""
        return [
            self._redis_server.executor.process.pid,
            self._memcached_server.executor.process.pid,
        ]

    def versions(self) -> str:
        redis_version = self.redis.info("server")["redis_version"]
        memcached_version = self.memcached.stats()[b"version"].decode()
        return f"Redis {redis_version}, memcached {memcached_version}"

    def flush(self) -> None:
        """Empty both stores (between scenarios: each starts from nothing)."""
        self.redis.flushall()
        self.memcached.flush_all(noreply=False)

    def redis_stats(self) -> ServerStats:
        """Calls per command (the ``INFO`` of these snapshots left out) and CPU seconds."""
        info: dict[str, Any] = self.redis.info("commandstats")
        commands: Counter[str] = Counter()
        for name, stats in info.items():
            command = name.removeprefix("cmdstat_")
            if command != "info":
                commands[command] = int(stats["calls"])
        cpu = self.redis.info("cpu")
        return ServerStats(commands, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))

    def memcached_stats(self) -> ServerStats:
        stats = {key.decode(): value for key, value in self.memcached.stats().items()}
        commands = Counter({name: int(stats.get(name, 0)) for name in MEMCACHED_COMMANDS})
        cpu = float(stats.get("rusage_user", 0)) + float(stats.get("rusage_system", 0))
        return ServerStats(commands, cpu)

    def stats(self, store: str) -> ServerStats:
        """The counters of *store*'s server (none for the in-process memory store)."""
        if store == "memcached":
            return self.memcached_stats()
        if store == "redis":
            return self.redis_stats()
        return ServerStats()

    def cpu(self, store: str) -> float:
        """CPU seconds *store*'s server has used: one cheap question between batches."""
        if store == "memcached":
            return self.memcached_stats().cpu
        if store == "redis":
            cpu = self.redis.info("cpu")
            return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return 0.0

    def close(self) -> None:
        self.redis.close()
        self.memcached.close()
        self._memcached_server.stop()
        self._redis_server.stop()
