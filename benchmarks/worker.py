"""A benchmark worker: one long-lived process per environment, driven over pipes.

``make bench`` compares pyramid_kvs with other libraries, one of which (pyramid-kvs
1.0.0) has our import name, so each side runs in its own virtualenv.  Starting an
interpreter per measurement would cost more than the requests measured, so each
environment keeps one worker: the orchestrator writes a JSON command per line on
its stdin and reads one JSON answer per line on its stdout, and can interleave
ours and the anchor's batches round by round.

This module runs in every environment: it imports the standard library at top
level, and the side module (``benchmarks.sides.<name>``) brings the rest.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from benchmarks.subjects import Subject, call_app


class RoundTripCounter:
    """Counts requests sent to Redis and memcached at the client libraries.

    As ``tests/roundtrips.py`` does, it wraps the one method of each client that
    puts a request on the wire (a pipeline or a multi-get counts once); written
    again here because the anchors' environments have no pytest.  It patches only
    while counting, so timed batches run the libraries untouched.
    """

    def __init__(self) -> None:
        self.counts = {"redis": 0, "memcached": 0}
        self._points: list[tuple[str, type, str]] = []
        try:
            from redis import connection as redis_connection
        except ImportError:
            pass
        else:
            connection = getattr(redis_connection, "AbstractConnection", None)
            self._points.append(
                ("redis", connection or redis_connection.Connection, "send_packed_command")
            )
        try:
            from pymemcache.client import base as pymemcache_base
        except ImportError:
            pass
        else:
            for name in ("_fetch_cmd", "_store_cmd", "_misc_cmd"):
                self._points.append(("memcached", pymemcache_base.Client, name))
        try:
            import memcache  # python(3)-memcached, pyramid-kvs 1.0.0's client
        except ImportError:
            pass
        else:
            for name in ("send_cmd", "send_cmds"):
                if hasattr(memcache._Host, name):
                    self._points.append(("memcached", memcache._Host, name))

    @contextmanager
    def counting(self) -> Iterator[dict[str, int]]:
        counts = {"redis": 0, "memcached": 0}
        originals = []
        for server, owner, name in self._points:
            original = owner.__dict__[name]
            originals.append((owner, name, original))
            setattr(owner, name, _counted(original, counts, server))
        try:
            yield counts
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def _counted(original: Callable[..., Any], counts: dict[str, int], server: str) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[server] += 1
        return original(*args, **kwargs)

    return wrapper


class Worker:
    """The commands one worker answers; each returns a JSON-able dict."""

    def __init__(self, side: str) -> None:
        self.side = importlib.import_module(f"benchmarks.sides.{side}")
        self.subjects: dict[str, Subject] = {}
        self.counter = RoundTripCounter()

    def build(self, name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Build the application of *kind*, seed its data and check two requests."""
        self.drop(name)
        subject: Subject = self.side.BUILDERS[kind](params)
        self.subjects[name] = subject
        for _ in range(2):
            status, headers, body = call_app(subject.app, subject.environ())
            subject.verify(status, headers, body)
        return {"path": subject.path, "headers": subject.headers}

    def time(self, name: str, n: int) -> dict[str, Any]:
        """Run *n* requests; the CPU (process time) and wall time they took.

        The WSGI environs are built before the clock starts, and the collector runs
        before it too, so that a batch does not pay for the previous one's garbage.
        """
        subject = self.subjects[name]
        app = subject.app
        environs = [subject.environ() for _ in range(n)]
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return _ignore_write

        gc.collect()
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        for environ in environs:
            result = app(environ, start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        wall1 = time.perf_counter()
        cpu1 = time.process_time()
        wrong = [status for status in statuses if status != subject.status]
        if wrong:
            raise RuntimeError(f"{name}: {len(wrong)} of {n} requests answered {wrong[0]}")
        return {"cpu": cpu1 - cpu0, "wall": wall1 - wall0, "n": n}

    def count(self, name: str, n: int) -> dict[str, Any]:
        """Run *n* requests counting their round trips to the stores."""
        subject = self.subjects[name]
        with self.counter.counting() as counts:
            for _ in range(n):
                status, headers, body = call_app(subject.app, subject.environ())
        subject.verify(status, headers, body)
        return {"n": n, **counts}

    def drop(self, name: str) -> dict[str, Any]:
        subject = self.subjects.pop(name, None)
        if subject is not None and subject.close is not None:
            subject.close()
        return {}

    def call(self, fn: str, params: dict[str, Any]) -> dict[str, Any]:
        """A measurement that is not a stream of requests (a stampede, Storable)."""
        result: dict[str, Any] = self.side.CALLS[fn](params)
        return result

    def versions(self, names: list[str]) -> dict[str, Any]:
        from importlib import metadata

        found = {}
        for name in names:
            with suppress(metadata.PackageNotFoundError):
                found[name] = metadata.version(name)
        return {"python": sys.version.split()[0], "packages": found}


def _ignore_write(data: bytes) -> None:
    return None


def serve(protocol: Any, worker: Worker) -> None:
    """Answer commands until ``quit`` or the end of stdin."""
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "quit":
            break
        try:
            answer = getattr(worker, op)(**command)
        except Exception:
            answer = {"error": traceback.format_exc()}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


def main() -> None:
    # The answers travel on the original stdout; anything a library prints goes to
    # stderr (a log file the orchestrator chose), never into the protocol.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    worker = Worker(sys.argv[1])
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    serve(protocol, worker)


if __name__ == "__main__":
    main()
