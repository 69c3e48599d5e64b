"""Real Redis and memcached servers for the test suite, on free loopback ports.

mirakuru starts each server process and waits until its port accepts connections;
port-for picks the ports.  A missing executable is an error, never a skip: the suite
exists to prove pyramid_kvs against the real servers (``make test`` installs them).

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
import time
from dataclasses import dataclass
from pathlib import Path

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
        command, host=LOOPBACK, port=port, timeout=30, stdout=subprocess.DEVNULL
    )
    executor.start()
    return Server(executor, LOOPBACK, port)


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
