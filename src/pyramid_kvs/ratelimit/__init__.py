"""Rate limiting: at most N requests per window per holder, atomic, one round trip.

One module per concern:

``limits``       limits ("15/second"), per-limit states, a request's ``Outcome``
``algorithms``   the arithmetic of fixed window, sliding window counter and GCRA
``engines``      the engine a store's capabilities give it: ``scripted`` (Redis),
                 ``locked`` (memory) or ``cas`` (memcached), each atomic
``holders``      who a limit applies to (session, ip, userid, header, callable)
``limiter``      ``RateLimiter``: a check queued on a store batch
``headers``      legacy ``X-RateLimit-*`` and IETF ``RateLimit`` / ``RateLimit-Policy``
``refusal``      ``RateLimitError`` (the 429) and how refusals are rendered
``tween``        the tween that checks each request before its view
``deriver``      the ``ratelimit=`` view option

User documentation: the "Rate limiting" section of README.md.
"""

from __future__ import annotations

from .limits import Limit, LimitState, Outcome, parse_limits
from .refusal import RateLimitError, RateLimitUnavailable

__all__ = [
    "Limit",
    "LimitState",
    "Outcome",
    "RateLimitError",
    "RateLimitUnavailable",
    "parse_limits",
]
