"""Real Redis and memcached servers for the test suite, on free loopback ports.

mirakuru starts each server process and waits until its port accepts connections;
port-for picks the ports.  A missing executable is an error, never a skip: the suite
exists to prove pyramid_kvs against the real servers (``make test`` installs them).

Beyond single servers: a Redis Cluster of three masters with a replica each
(``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster create``), and
a Redis master with a replica watched by three sentinels (``redis-server --sentinel``),
each returned once it is ready to fail over.

The fault tests also break servers on purpose: freeze one (SIGSTOP: connections are
accepted by the kernel, never answered - a hung server), kill it, restart it on its
port, or turn a Redis read-only as after a failover.  They do it to servers of their
own, never to the ones the rest of the suite shares.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import port_for
from mirakuru import TCPExecutor

LOOPBACK = "127.0.0.1"


@dataclass
class Server:
    """A started server process and its address."""

    executor: TCPExecutor
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.thaw()  # a frozen process could not act on the stop signal
        self.executor.stop()

    def _signal(self, signum: int) -> None:
        process = self.executor.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signum)

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): it accepts connections and never answers.

        Returns once every thread of the server is stopped: the signal alone is
        asynchronous, and a thread still running could answer one more request.
        """
        self._signal(signal.SIGSTOP)
        process = self.executor.process
        assert process is not None
        deadline = time.monotonic() + 5
        while not _all_threads_stopped(process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.address} did not stop")
            time.sleep(0.001)

    def thaw(self) -> None:
        """Let a frozen process run again (SIGCONT); it answers what was waiting."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the process (SIGKILL): connections are refused until :meth:`restart`."""
        self.thaw()
        self.executor.kill(sig=signal.SIGKILL)

    def terminate(self) -> None:
        """Stop the process with SIGTERM, as an operator or an orchestrator does."""
        self.thaw()
        self.executor.stop()

    def restart(self) -> None:
        """Start the server again on the same port; returns once it accepts connections."""
        self.executor.start()


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process *pid* is stopped (state T in /proc)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        states.append(stat.rpartition(")")[2].split()[0])  # the field after "(name)"
    return all(state == "T" for state in states)


def _executable(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make test`, which installs it")
    return path


def start(command: list[str], port: int) -> Server:
    executor = TCPExecutor(
        command, host=LOOPBACK, port=port, timeout=30, sleep=0.01, stdout=subprocess.DEVNULL
    )
    executor.start()
    return Server(executor, LOOPBACK, port)


def start_all(commands: list[list[str]]) -> list[Server]:
    """Start servers side by side; each command's port follows ``--port``."""
    with ThreadPoolExecutor(len(commands)) as pool:
        started = [
            pool.submit(start, command, int(command[command.index("--port") + 1]))
            for command in commands
        ]
    servers = []
    for future in started:
        try:
            servers.append(future.result())
        except BaseException:
            for server in servers:
                server.stop()
            raise
    return servers


def start_redis(durable_dir: Path | None = None) -> Server:
    """A Redis; with *durable_dir*, one that writes every command to an append-only
    file there before answering, so that it loses nothing it confirmed across a restart."""
    port = port_for.select_random()
    command = [
        _executable("redis-server"),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    if durable_dir is not None:
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(durable_dir)]
    return start(command, port)


def start_memcached(max_item_size: str | None = None) -> Server:
    """A memcached; *max_item_size* (``-I``, e.g. ``"32m"``) raises its 1 MB item limit."""
    port = port_for.select_random()
    command = [
        _executable("memcached"),
        "-l", LOOPBACK,
        "-p", str(port),
        "-U", "0",
        "-m", "64" if max_item_size is None else "128",
        "-u", "root",
    ]  # fmt: skip
    if max_item_size is not None:
        command += ["-I", max_item_size]
    return start(command, port)


def redis_read_only(server: Server, read_only: bool) -> None:
    """Make a Redis a replica of a master that does not exist - writes answer READONLY,
    reads still work, as on a replica after a failover - or a master again."""
    import redis

    client = redis.Redis(host=server.host, port=server.port)
    try:
        if read_only:
            client.execute_command("REPLICAOF", LOOPBACK, str(unused_port()))
        else:
            client.execute_command("REPLICAOF", "NO", "ONE")
    finally:
        client.close()


def unused_port() -> int:
    """A loopback port nothing listens on: a store there is unreachable."""
    return port_for.select_random()


# -- Redis Cluster --------------------------------------------------------------------------

#: the cluster bus of a node listens on its port + 10000
CLUSTER_BUS_OFFSET = 10000


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free as well."""
    while True:
        port = port_for.select_random()
        bus = port + CLUSTER_BUS_OFFSET
        if bus <= 65535 and port_for.is_available(bus):
            return port


def admin(server: Server) -> Any:
    """A plain redis-py client of *server*, for setting up and checking."""
    import redis

    return redis.Redis(host=server.host, port=server.port, socket_timeout=5)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:  # redis-py's connection errors are OSErrors
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class RedisClusterServers:
    """Six cluster nodes: three masters, a replica of each, in a directory of their own."""

    nodes: list[Server]
    directory: Path

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def by_address(self, address: str) -> Server:
        return next(node for node in self.nodes if node.address == address)

    def masters(self) -> list[Server]:
        """The nodes that are masters now, as the cluster sees it."""
        return [node for node in self._alive() if _role(node) == "master"]

    def master_of(self, key: str) -> Server:
        """The master now serving *key*'s hash slot."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self._alive():
            client = admin(node)
            try:
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return self.by_address(f"{master[0].decode()}:{master[1]}")
            finally:
                client.close()
        raise RuntimeError(f"no master serves {key!r}")

    def _alive(self) -> list[Server]:
        return [node for node in self.nodes if node.executor.running()]

    def healthy(self) -> bool:
        """Every node up, the cluster ok on each, three masters with a synced replica."""
        masters = replicas = 0
        for node in self.nodes:
            if not node.executor.running():
                return False
            client = admin(node)
            try:
                if client.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                    return False
                info = client.info("replication")
            finally:
                client.close()
            if info["role"] == "master":
                masters += 1
            elif info.get("master_link_status") == "up":
                replicas += 1
        return masters == replicas == 3

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_until(self.healthy, "a healthy cluster", timeout)

    def flush(self) -> None:
        """Empty every master (their replicas follow)."""
        for node in self.masters():
            client = admin(node)
            client.flushall()
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()  # nothing to keep: no need to wait for a clean shutdown
        shutil.rmtree(self.directory, ignore_errors=True)


def _role(server: Server) -> str:
    client = admin(server)
    try:
        return str(client.info("replication")["role"])
    finally:
        client.close()


def start_redis_cluster(node_timeout_ms: int = 5000) -> RedisClusterServers:
    """A Redis Cluster of three masters and three replicas, healthy.

    *node_timeout_ms* is how long a master may be unreachable before its replica
    takes over: small for the failover tests, larger where no failover is wanted.
    """
    directory = Path(tempfile.mkdtemp(prefix="pyramid-kvs-cluster-"))
    nodes: list[Server] = []
    try:
        commands = []
        for _ in range(6):
            port = cluster_port()
            commands.append([
                _executable("redis-server"),
                "--bind", LOOPBACK,
                "--port", str(port),
                "--dir", str(directory),
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                # a replica may take over whatever the age of its data
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync-delay", "0",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
            ])  # fmt: skip
        nodes += start_all(commands)
        create = [_executable("redis-cli"), "--cluster", "create"]
        create += [node.address for node in nodes]
        create += ["--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(create, check=True, stdout=subprocess.DEVNULL, timeout=60)
        cluster = RedisClusterServers(nodes, directory)
        cluster.wait_healthy()
    except BaseException:
        for node in nodes:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return cluster


# -- Redis Sentinel -------------------------------------------------------------------------


@dataclass
class RedisSentinelServers:
    """A master, its replica and three sentinels watching them as one service."""

    master: Server
    replica: Server
    sentinels: list[Server]
    directory: Path
    service: str = "pyramid-kvs"
    redis_servers: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        addresses = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{addresses}/{self.service}"

    def current_master(self, sentinel: Server | None = None) -> Server:
        """The server *sentinel* (by default the first) names as master now."""
        client = admin(sentinel or self.sentinels[0])
        try:
            host, port = client.sentinel_get_master_addr_by_name(self.service)
        finally:
            client.close()
        address = f"{host.decode() if isinstance(host, bytes) else host}:{int(port)}"
        return next(server for server in self.redis_servers if server.address == address)

    def ready(self) -> bool:
        """The replica synced, and every sentinel knows it and the two other sentinels."""
        client = admin(self.replica)
        try:
            if client.info("replication").get("master_link_status") != "up":
                return False
        finally:
            client.close()
        for sentinel in self.sentinels:
            client = admin(sentinel)
            try:
                state = client.sentinel_master(self.service)
            finally:
                client.close()
            if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                return False
        return True

    def flush(self) -> None:
        client = admin(self.current_master())
        client.flushall()
        client.close()

    def stop(self) -> None:
        for server in [*self.sentinels, *self.redis_servers]:
            server.kill()  # nothing to keep: no need to wait for a clean shutdown
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis_sentinel(down_after_ms: int = 5000) -> RedisSentinelServers:
    """A master, a replica and three sentinels, ready to fail over.

    The sentinels agree that the master is down after *down_after_ms* without an
    answer (a quorum of two), then promote the replica.
    """
    directory = Path(tempfile.mkdtemp(prefix="pyramid-kvs-sentinel-"))
    servers: list[Server] = []
    try:
        master = _start_replicating_redis(directory, None)
        servers.append(master)
        replica = _start_replicating_redis(directory, master)
        servers.append(replica)
        # Each sentinel is told the others and the replica: otherwise they find them
        # by gossip, which takes seconds, before they can agree on a failover.
        ports = [port_for.select_random() for _ in range(3)]
        ids = [f"{index + 1:040x}" for index in range(3)]
        commands = []
        for port, own_id in zip(ports, ids, strict=True):
            config = directory / f"sentinel-{port}.conf"
            lines = [
                f"port {port}",
                f"bind {LOOPBACK}",
                f"dir {directory}",
                "loglevel warning",
                f"sentinel myid {own_id}",
                f"sentinel monitor pyramid-kvs {master.host} {master.port} 2",
                f"sentinel down-after-milliseconds pyramid-kvs {down_after_ms}",
                "sentinel failover-timeout pyramid-kvs 5000",
                f"sentinel known-replica pyramid-kvs {replica.host} {replica.port}",
            ]
            lines += [
                f"sentinel known-sentinel pyramid-kvs {LOOPBACK} {other} {other_id}"
                for other, other_id in zip(ports, ids, strict=True)
                if other != port
            ]
            config.write_text("\n".join(lines) + "\n")
            commands.append(
                [_executable("redis-server"), str(config), "--sentinel", "--port", str(port)]
            )
        sentinels = start_all(commands)
        servers += sentinels
        set_ = RedisSentinelServers(master, replica, sentinels, directory)
        set_.redis_servers = [master, replica]
        wait_until(set_.ready, "sentinels ready to fail over")
    except BaseException:
        for server in servers:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return set_


def _start_replicating_redis(directory: Path, master: Server | None) -> Server:
    port = port_for.select_random()
    command = [
        _executable("redis-server"),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(directory),
        "--repl-diskless-sync-delay", "0",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    if master is not None:
        command += ["--replicaof", master.host, str(master.port)]
    return start(command, port)
