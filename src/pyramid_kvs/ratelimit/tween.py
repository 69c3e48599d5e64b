"""The tween that checks every request before its view runs.

Order of work for one request (one round trip when the store is Redis)::

    build a batch on the limiter's store
    queue the limiter's check                      (an EVAL on Redis)
    queue the session load on the same batch       (when it shares the client)
    execute the batch
    read the verdict: the refusal, or call the application

The headers come from that same verdict and are set on whatever response leaves
the application (error pages included).  A store that cannot be reached lets the
request through with a logged warning (``on_error = allow``) or answers 503
(``on_error = deny``): the limiter never turns an outage into a 500.

The tween sits over Pyramid's exception view tween, so a denied request costs no
view lookup, no transaction and no session load beyond the batch; the refusal is
rendered by the application's exception views all the same (see ``refusal``).
"""

from __future__ import annotations

from collections.abc import Callable

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from ..vary import add_vary
from .deriver import APPLIED_KEY, view_policies
from .headers import rate_limit_headers
from .limiter import OUTCOME_KEY, IRateLimiter, RateLimiter
from .refusal import RateLimitError, RateLimitUnavailable, render_refusal

Handler = Callable[[Request], Response]


def decorate(request: Request, response: Response, style: str, vary: tuple[str, ...]) -> None:
    """Set the headers of the request's latest verdict on *response*.

    *vary* names the request headers the holder was read from: the verdict is that
    holder's, so shared caches must tell holders apart.
    """
    outcome = request.environ.get(OUTCOME_KEY)
    if outcome is None:
        return
    add_vary(response, vary)
    if isinstance(response, RateLimitError) and response.outcome is outcome:
        return  # the refusal itself: it carries its headers
    if not outcome.allowed and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(outcome.retry_after)
    if style == "none":
        return
    # Appended to the header list in one step: setting them one by one makes WebOb
    # scan the list for an earlier value of each.
    response.headerlist.extend(rate_limit_headers(outcome, style))


def ratelimit_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """The rate limiting tween, or *handler* itself when no limiter is configured."""
    limiter: RateLimiter | None = registry.queryUtility(IRateLimiter)
    if limiter is None:
        return handler
    policies = view_policies(registry)
    style = limiter.settings.headers

    def ratelimit_tween(request: Request) -> Response:
        option = policies.option_for(request)
        request.environ[APPLIED_KEY] = option
        limits, scope = policies.limits_of(option, limiter.limits)
        if limits:
            try:
                limiter.enforce(request, limits, scope)
            except (RateLimitError, RateLimitUnavailable) as refusal:
                response = render_refusal(request, refusal)
                decorate(request, response, style, limiter.vary)
                return response
        response = handler(request)
        decorate(request, response, style, limiter.vary)
        return response

    return ratelimit_tween
