"""Who a limit applies to: the *holder* of a request, as a short store key.

Every kind falls back to the client address when the request does not carry what
it looks for (no session id, anonymous user, missing header), so a client can never
escape the limit by leaving something out.

A session's holder is its id as the session component itself reads it
(``SessionFactory.ref_of``: the cookie id, checked and correctly signed, or the
token of whichever configured header carries it), *without* loading the session:
the limit is checked before the application pays for anything else, and the key is
the session's own keyed hash, computed once per request - hash tag included, so
that on a Redis Cluster the limits live beside the session's record.  Note that an id the
client made up counts as a holder of its own, so ``session`` limits well-behaved
clients; against abuse, key on ``ip`` or ``userid``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from pyramid.exceptions import ConfigurationError
from pyramid.path import DottedNameResolver
from pyramid.request import Request

from ..stores import Batch
from .settings import RateLimitSettings

HolderFunction = Callable[[Request], str]


class SessionId(Protocol):
    """A request's session id, as the session component reads it."""

    @property
    def key(self) -> str:
        """A keyed hash of the id: what the store keeps instead of the id.

        It carries a hash tag (``stores.hash_tags``), which the holder keeps: the
        session's limits then live on the node of its record on a Redis Cluster.
        """


class SessionReader(Protocol):
    """What the rate limiter needs of the session component (its ``SessionFactory``).

    A protocol, so that rate limiting does not depend on the session module: the
    application wires the two together.
    """

    @property
    def vary_headers(self) -> tuple[str, ...]:
        """The request headers the session id is read from."""

    def ref_of(self, request: Request) -> SessionId | None:
        """The request's session id, checked; ``None`` when it carries none."""

    def prefetch(self, request: Request, batch: Batch) -> bool:
        """Queue the load of the request's session on *batch*."""


def client_address(request: Request, trusted_proxies: int = 0) -> str:
    """The client's address; ``X-Forwarded-For`` counts only behind trusted proxies.

    Each of *trusted_proxies* reverse proxies appends the address it received the
    request from, so the client is the entry that many places from the right, the
    direct peer (``REMOTE_ADDR``) included.  Anything further left was written by
    the client and is ignored.
    """
    peer: str = request.remote_addr or "unknown"
    if trusted_proxies <= 0:
        return peer
    # WSGI servers join repeated headers with commas.
    header: str = request.environ.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    chain = [*forwarded, peer]
    return chain[max(0, len(chain) - 1 - trusted_proxies)]


def _digest(value: str) -> str:
    """Session ids and header values are secrets or free text: keep a digest instead."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def build_holder(
    settings: RateLimitSettings, sessions: SessionReader | None = None
) -> HolderFunction:
    """The function mapping a request to its holder key, from ``kvs.ratelimit.holder``.

    *sessions* is the application's session factory, whose reader of the session
    id the ``session`` holder uses; without one, ``session`` means the client
    address.  A dotted name is resolved now, so a typo stops the application at
    start-up.
    """
    kind, proxies = settings.holder, settings.trusted_proxies

    def by_address(request: Request) -> str:
        return "ip:" + client_address(request, proxies)

    if kind == "ip":
        return by_address
    if kind == "session":
        if sessions is None:
            return by_address
        factory = sessions

        def by_session(request: Request) -> str:
            ref = factory.ref_of(request)
            return "session:" + ref.key if ref is not None else by_address(request)

        return by_session
    if kind == "userid":

        def by_userid(request: Request) -> str:
            userid = request.authenticated_userid
            return f"user:{userid}" if userid is not None else by_address(request)

        return by_userid
    if kind.startswith("header:"):
        name = kind[len("header:") :]

        def by_header(request: Request) -> str:
            value = request.headers.get(name)
            return "header:" + _digest(value) if value else by_address(request)

        return by_header
    try:
        function: Any = DottedNameResolver().resolve(kind)
    except (ImportError, ValueError, AttributeError) as exc:
        raise ConfigurationError(
            f"kvs.ratelimit.holder: cannot import {kind!r} ({exc}); expected session, ip, "
            "userid, header:NAME or the dotted name of a function of the request"
        ) from None
    if not callable(function):
        raise ConfigurationError(f"kvs.ratelimit.holder: {kind!r} is not callable")

    def by_function(request: Request) -> str:
        holder = function(request)
        return "custom:" + str(holder) if holder is not None else by_address(request)

    return by_function


def holder_headers(settings: RateLimitSettings, sessions: SessionReader | None) -> tuple[str, ...]:
    """The request headers the holder is read from, for the responses' ``Vary``.

    Rate-limit headers count one holder's requests: a shared cache must not serve them
    to another client.  Addresses, users and custom holders are not read from a
    header pyramid_kvs can name.
    """
    if settings.holder == "session" and sessions is not None:
        return sessions.vary_headers
    if settings.holder.startswith("header:"):
        return (settings.holder[len("header:") :],)
    return ()
