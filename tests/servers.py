"""Real Redis and memcached servers for the test suite, on free loopback ports.

mirakuru starts each server process and waits until its port accepts connections;
port-for picks the ports.  A missing executable is an error, never a skip: the suite
exists to prove pyramid_kvs against the real servers (``make test`` installs them).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

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
        self.executor.stop()


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


def start_redis() -> Server:
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


def unused_port() -> int:
    """A loopback port nothing listens on: a store there is unreachable."""
    return port_for.select_random()
