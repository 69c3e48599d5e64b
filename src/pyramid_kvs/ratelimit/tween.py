"""The tween that checks every request before its view runs.

Order of work for one request (one round trip when the store is Redis)::

    build a batch on the limiter's store
    queue the limiter's check                      (an EVAL on Redis)
    [hook] queue the session load on the same batch, once sessions can prefetch
    execute the batch
    read the verdict: 429 with Retry-After, or call the application

The headers come from that same verdict and are set on whatever response leaves
the application (error pages included).  A store that cannot be reached lets the
request through with a logged warning (``on_error = allow``) or answers 503
(``on_error = deny``): the limiter never turns an outage into a 500.

The tween sits over Pyramid's exception view tween, so a denied request costs no
view lookup, no transaction and no session load beyond the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyramid.httpexceptions import HTTPServiceUnavailable, HTTPTooManyRequests
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from ..runtime import get_kvs
from ..session import prefetch_session
from ..stores import StoreError
from .deriver import APPLIED_KEY, view_policies
from .headers import rate_limit_headers
from .limiter import DEFAULT_SCOPE, RateLimiter
from .limits import Limit, Outcome

log = logging.getLogger(__name__)

#: where the latest verdict of a request is kept (``request.ratelimit`` reads it)
OUTCOME_KEY = "pyramid_kvs.ratelimit.outcome"

Handler = Callable[[Request], Response]


def enforce(
    request: Request,
    limiter: RateLimiter,
    limits: tuple[Limit, ...],
    scope: str = DEFAULT_SCOPE,
) -> Response | None:
    """Check *request*; the response that refuses it, or ``None`` to let it through."""
    holder = limiter.holder_of(request)
    batch = limiter.store.batch()
    check = limiter.queue(batch, holder, limits, scope)
    if batch.pipelined:
        # The session's load travels with the check: one round trip for both.
        # Without a pipeline it would cost its own, even for views that never
        # touch the session, so it is left to load lazily.
        prefetch_session(request, batch)
    try:
        batch.execute()
        outcome = check.outcome()
    except StoreError as exc:
        return _store_failed(request, limiter, exc)
    request.environ[OUTCOME_KEY] = outcome
    if outcome.allowed:
        return None
    return too_many_requests(outcome, limiter.settings.headers)


def too_many_requests(outcome: Outcome, style: str) -> Response:
    """429 with ``Retry-After``: whole seconds, at least 1, never too early."""
    response = HTTPTooManyRequests(
        f"Too many requests: retry after {outcome.retry_after} second(s)."
    )
    response.headers["Retry-After"] = str(outcome.retry_after)
    for name, value in rate_limit_headers(outcome, style):
        response.headers[name] = value
    return response


def _store_failed(request: Request, limiter: RateLimiter, exc: StoreError) -> Response | None:
    if limiter.settings.on_error == "deny":
        log.error("rate limit store failed, request denied: %s", exc)
        return HTTPServiceUnavailable("The service is temporarily unavailable.")
    log.warning("rate limit store failed, request allowed unchecked: %s", exc)
    return None


def decorate(request: Request, response: Response, style: str) -> None:
    """Set the headers of the request's latest verdict on *response*."""
    outcome = request.environ.get(OUTCOME_KEY)
    if outcome is None or style == "none":
        return
    for name, value in rate_limit_headers(outcome, style):
        response.headers[name] = value


def ratelimit_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """The rate limiting tween, or *handler* itself when no limiter is configured."""
    limiter = get_kvs(registry).ratelimiter
    if limiter is None:
        return handler
    policies = view_policies(registry)
    style = limiter.settings.headers

    def ratelimit_tween(request: Request) -> Response:
        option = policies.option_for(request)
        request.environ[APPLIED_KEY] = option
        limits, scope = policies.limits_of(option, limiter.limits)
        if limits:
            refusal = enforce(request, limiter, limits, scope)
            if refusal is not None:
                return refusal
        response = handler(request)
        decorate(request, response, style)
        return response

    return ratelimit_tween


def request_ratelimit(request: Request) -> Any:
    """``request.ratelimit``: this request's verdict (an ``Outcome``), or ``None``."""
    return request.environ.get(OUTCOME_KEY)
