"""The rate limiter: settings, a store, and a check that joins a store batch.

A check is expressed as operations queued on a ``Batch``
and a result read after the batch ran, so it can share the batch - one round trip
on Redis - with the rest of the request's store work::

    batch = limiter.store.batch()
    check = limiter.queue(batch, holder, limits)
    ...                               # other components queue their own operations
    batch.execute()
    outcome = check.outcome()         # an Outcome: allowed, states, headers

Redis joins the pipeline with one script; memcached and memory have no pipeline to
join and run their atomic sequence when the outcome is read.

``RateLimiter.enforce`` is the whole check of one request, shared by the tween
and the view deriver: the batch, the session load riding in it, the verdict kept for
the response headers, and the refusal raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyramid.request import Request
from zope.interface import Interface, implementer

from ..stores import Batch, Store, StoreError
from ..stores.hash_tags import tagged
from .engines import engine_for
from .holders import HolderFunction, SessionReader, build_holder, holder_headers
from .limits import Limit, LimitState, Outcome, policy_names
from .refusal import RateLimitError, RateLimitUnavailable
from .settings import RateLimitSettings

log = logging.getLogger(__name__)

#: the IETF policy name of the application-wide limits
DEFAULT_SCOPE = "default"
#: where the latest verdict of a request is kept (``request.ratelimit`` reads it)
OUTCOME_KEY = "pyramid_kvs.ratelimit.outcome"


@dataclass(frozen=True)
class Check:
    """A queued check; ``outcome`` is available once its batch has run."""

    names: tuple[str, ...]
    resolve: Callable[[], tuple[LimitState, ...]]

    def outcome(self) -> Outcome:
        """The verdict; raises ``StoreError`` on failure."""
        return Outcome(self.resolve(), self.names)


class IRateLimiter(Interface):
    """The application's rate limiter, a utility of its registry (``RateLimiter``)."""


@implementer(IRateLimiter)
class RateLimiter:
    """Checks requests against limits in one store; one per application."""

    def __init__(
        self,
        store: Store,
        settings: RateLimitSettings,
        holder: HolderFunction | None = None,
        *,
        sessions: SessionReader | None = None,
        observe: Callable[[Request, Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.limits = settings.limits
        self.algorithm = settings.algorithm
        #: the application's session factory: the session holder and the prefetch
        self.sessions = sessions
        self.holder_of: HolderFunction = holder or build_holder(settings, sessions)
        #: holders are session ids: their keys share the session's hash tag
        self._by_session = holder is None and settings.holder == "session"
        #: the request headers the holder comes from: the responses' Vary
        self.vary = () if holder is not None else holder_headers(settings, sessions)
        self.engine = engine_for(store, settings.algorithm)
        #: told every verdict of ``enforce``: a development tool's hook (the debug
        #: toolbar's panel), ``None`` unless one asked for it
        self.observe = observe

    def base_key(self, holder: str, scope: str = DEFAULT_SCOPE) -> str:
        """Where the state of *holder*'s limits in *scope* is kept: the engines'
        keys start with it."""
        # every key of a holder shares its hash tag: one script, one node of a cluster
        return f"{tagged(holder)}:{scope}:{self.algorithm[0]}"

    def queue(
        self,
        batch: Batch,
        holder: str,
        limits: tuple[Limit, ...] | None = None,
        scope: str = DEFAULT_SCOPE,
    ) -> Check:
        """Queue the check of one request of *holder* against *limits* (default: the
        application-wide ones) on *batch*.

        *scope* separates the counters of views with their own limits from the
        application-wide ones, and names the IETF policies.
        """
        limits, names = self._policies(limits, scope)
        return Check(names, self.engine.queue(batch, self.base_key(holder, scope), limits))

    def peek(
        self, holder: str, limits: tuple[Limit, ...] | None = None, scope: str = DEFAULT_SCOPE
    ) -> Outcome:
        """The verdict a request of *holder* would get now, without counting one.

        For operators (``pkvs ratelimit``): nothing is written, so looking does not
        use up the quota it shows.  Raises ``StoreError`` on failure.
        """
        limits, names = self._policies(limits, scope)
        return Outcome(self.engine.peek(self.base_key(holder, scope), limits), names)

    def _policies(
        self, limits: tuple[Limit, ...] | None, scope: str
    ) -> tuple[tuple[Limit, ...], tuple[str, ...]]:
        """The limits to check (default: the application-wide ones) and their IETF
        policy names in *scope*."""
        limits = self.limits if limits is None else limits
        if not limits:
            raise ValueError("no limit to check")
        return limits, policy_names("default" if scope == DEFAULT_SCOPE else "view", limits)

    def check(
        self, request: Request, limits: tuple[Limit, ...] | None = None, scope: str = DEFAULT_SCOPE
    ) -> Outcome:
        """Check one request on its own batch (one round trip on Redis)."""
        batch = self.store.batch()
        pending = self.queue(batch, self.holder_of(request), limits, scope)
        batch.execute()
        return pending.outcome()

    def _prefetches(self, batch: Batch) -> bool:
        """Whether the session's load rides in the check's *batch* at no cost.

        Without a pipeline it would cost a round trip of its own, even for views
        that never touch the session, so it is left to load lazily.  On a cluster
        it rides only beside the session's own limits, which share its hash tag.
        """
        if not batch.pipelined:
            return False
        return not batch.sharded or self._by_session

    def enforce(
        self, request: Request, limits: tuple[Limit, ...], scope: str = DEFAULT_SCOPE
    ) -> None:
        """Check *request* against *limits*; raise the refusal when it does not pass.

        Raises ``RateLimitError`` (429) over the limit, and
        ``RateLimitUnavailable`` (503) when the store fails with
        ``on_error = deny``; with ``on_error = allow`` a failure lets the request
        through unchecked, with a logged warning.  The verdict is kept for the
        response's headers (``request.ratelimit``).
        """
        batch = self.store.batch()
        check = self.queue(batch, self.holder_of(request), limits, scope)
        if self.sessions is not None and self._prefetches(batch):
            # The session's load travels with the check: one round trip for both.
            self.sessions.prefetch(request, batch)
        try:
            batch.execute()
            outcome = check.outcome()
        except StoreError as exc:
            if self.settings.on_error == "deny":
                log.error("rate limit store failed, request denied: %s", exc)
                raise RateLimitUnavailable() from exc
            log.warning("rate limit store failed, request allowed unchecked: %s", exc)
            return
        request.environ[OUTCOME_KEY] = outcome
        request.ratelimit = outcome
        if self.observe is not None:
            self.observe(request, outcome)
        if not outcome.allowed:
            raise RateLimitError(outcome, self.settings.headers)
