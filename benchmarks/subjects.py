"""What a side hands the worker: a WSGI application and the request to send it.

Shared by every environment (it needs only WebOb and Pyramid), so that ours and
the anchors' applications are driven, seeded and checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from webob import Request

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Check = Callable[[str, dict[str, str], bytes], None]
#: every request comes from one client address (rate limits by address count it)
CLIENT_ADDR = "127.0.0.1"


@dataclass
class Subject:
    """One application ready to be measured: the request to repeat and its answer."""

    app: WSGIApp
    path: str
    #: request headers (the session cookie or token), also given to wrk
    headers: dict[str, str] = field(default_factory=dict)
    status: str = "200 OK"
    #: the body every answer must have, when it is fixed
    body: bytes | None = None
    #: further checks of an answer (rate-limit headers, a cookie...)
    check: Check | None = None
    close: Callable[[], None] | None = None

    def environ(self) -> dict[str, Any]:
        """A fresh WSGI environ for one request (Pyramid writes into environs)."""
        request = Request.blank(
            self.path, environ={"REMOTE_ADDR": CLIENT_ADDR}, headers=self.headers
        )
        return request.environ  # type: ignore[no-any-return]

    def verify(self, status: str, headers: dict[str, str], body: bytes) -> None:
        if status != self.status:
            raise AssertionError(f"{self.path}: answered {status}: {body[:300]!r}")
        if self.body is not None and body != self.body:
            raise AssertionError(f"{self.path}: answered {body[:300]!r}, not {self.body!r}")
        if self.check is not None:
            self.check(status, headers, body)


def call_app(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """One request: the status, the headers (names in lower case) and the body."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [status, headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, header_list = answer
    headers: dict[str, str] = {}
    for name, value in header_list:
        headers.setdefault(name.lower(), value)
    return status, headers, body


def get(app: WSGIApp, path: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Send one request (to seed data) and return its answer's headers; it must be 200."""
    environ = Request.blank(path, environ={"REMOTE_ADDR": CLIENT_ADDR}, headers=headers).environ
    status, answer_headers, body = call_app(app, environ)
    if status != "200 OK":
        raise AssertionError(f"{path}: answered {status}: {body[:300]!r}")
    return answer_headers


def session_cookie(app: WSGIApp, name: str, path: str = "/seed") -> dict[str, str]:
    """Seed a session through *app* and return the ``Cookie`` header that names it."""
    set_cookie = get(app, path).get("set-cookie", "")
    pair = set_cookie.split(";", 1)[0]
    if not pair.startswith(f"{name}="):
        raise AssertionError(f"{path} set no {name} cookie: {set_cookie!r}")
    return {"Cookie": pair}


def has_headers(*names: str) -> Check:
    """A check: the answer carries each of *names* (rate-limit headers...)."""

    def check(status: str, headers: dict[str, str], body: bytes) -> None:
        missing = [name for name in names if name.lower() not in headers]
        if missing:
            raise AssertionError(f"missing headers {missing}: {sorted(headers)}")

    return check


def stampede(
    get_or_set: Callable[[str, Callable[[], Any]], Any],
    key: str,
    threads: int = 8,
    creator_seconds: float = 0.05,
) -> dict[str, Any]:
    """*threads* threads ask for the cold *key* at once; how often the creator ran.

    The creator sleeps *creator_seconds* (a costly query) and counts its calls: a
    cache that protects against the stampede calls it once.  Returns the calls,
    the wall time until every thread had its value, and the process time spent.
    """
    import threading
    import time

    calls = []
    start = threading.Barrier(threads)
    values: list[Any] = []

    def creator() -> dict[str, Any]:
        calls.append(1)
        time.sleep(creator_seconds)
        return {"built": key}

    def ask() -> None:
        start.wait()
        values.append(get_or_set(key, creator))

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    if len(values) != threads or any(value != {"built": key} for value in values):
        raise AssertionError(f"stampede on {key}: values {values!r}")
    return {"creator_calls": len(calls), "wall": wall, "cpu": cpu}
