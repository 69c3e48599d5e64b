"""What a refused request gets: ``RateLimitError`` (429), or a 503 on an outage.

pyramid_kvs 1.x raised ``pyramid_kvs.ratelimit.RateLimitError`` when a client went
over its limit, so applications registered exception views for it.  The name is
kept, and the error now *is* the 429: an ``HTTPTooManyRequests`` carrying
``Retry-After`` and the rate-limit headers, so an application without such a view
answers a proper 429 (1.x answered 500).

The tween checks requests above Pyramid's exception-view tween, so that a refused
request costs no view lookup; it therefore renders the refusal itself, through
``request.invoke_exception_view``: the application's view for ``RateLimitError``
(or ``HTTPTooManyRequests``...) answers when there is one, Pyramid's default
exception view (the error itself) otherwise.  Refusals raised by the view deriver
go through the exception-view tween the usual way.
"""

from __future__ import annotations

from pyramid.httpexceptions import HTTPException, HTTPServiceUnavailable, HTTPTooManyRequests
from pyramid.request import Request
from pyramid.response import Response

from .headers import rate_limit_headers
from .limits import Outcome

__all__ = ["RateLimitError", "RateLimitUnavailable", "render_refusal"]


class RateLimitError(HTTPTooManyRequests):
    """A request over its limit: 429 with ``Retry-After`` and the rate-limit headers.

    ``outcome`` is the verdict (``Outcome``).  Register an
    exception view for this class to render your own page.
    """

    def __init__(self, outcome: Outcome, style: str = "both") -> None:
        super().__init__(f"Too many requests: retry after {outcome.retry_after} second(s).")
        self.outcome = outcome
        self.headers["Retry-After"] = str(outcome.retry_after)
        for name, value in rate_limit_headers(outcome, style):
            self.headers[name] = value


class RateLimitUnavailable(HTTPServiceUnavailable):
    """The limiter's store failed and ``on_error = deny``: 503."""

    def __init__(self) -> None:
        super().__init__("The service is temporarily unavailable.")


def render_refusal(request: Request, refusal: HTTPException) -> Response:
    """The response to *refusal*: the application's exception view's, or the refusal."""
    exc_info = (type(refusal), refusal, refusal.__traceback__)
    try:
        response: Response = request.invoke_exception_view(exc_info, reraise=True)
    except HTTPException as exc:
        if exc is not refusal:
            raise
        return refusal  # no exception view at all (the application removed Pyramid's)
    return response
