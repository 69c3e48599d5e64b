"""The response headers that describe a limit, legacy and IETF.

Legacy (de facto, as the original add-on sent them)::

    X-RateLimit-Limit: 15
    X-RateLimit-Remaining: 3
    X-RateLimit-Reset: 1            (seconds until the window or bucket resets)

IETF, following draft-ietf-httpapi-ratelimit-headers-10 (September 2025), whose
fields are Structured Field lists of one item per policy::

    RateLimit-Policy: "default";q=15;w=1
    RateLimit: "default";r=3;t=1

Several limits give one item per limit in the IETF fields; the legacy fields, which
hold one value, describe the tightest limit (see ``Outcome.tightest``).  All
times are whole seconds rounded *up*, so a client that waits what it is told never
comes back too early.
"""

from __future__ import annotations

from collections.abc import Iterator

from .limits import LimitState, Outcome, whole_seconds

#: the IETF draft whose field syntax this module follows
IETF_DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"
STYLES = ("both", "legacy", "ietf", "none")


def seconds_to_reset(state: LimitState) -> int:
    """Whole seconds until the limit has room again; never before a retry would pass."""
    return whole_seconds(max(state.reset, state.retry_after))


def rate_limit_headers(outcome: Outcome, style: str = "both") -> Iterator[tuple[str, str]]:
    """The headers for *outcome* in *style* (both, legacy, ietf or none)."""
    if style in {"both", "legacy"}:
        tightest = outcome.tightest
        yield "X-RateLimit-Limit", str(tightest.limit.amount)
        yield "X-RateLimit-Remaining", str(max(0, tightest.remaining))
        yield "X-RateLimit-Reset", str(seconds_to_reset(tightest))
    if style in {"both", "ietf"}:
        pairs = list(zip(outcome.names, outcome.states, strict=True))
        yield (
            "RateLimit-Policy",
            ", ".join(
                f'"{name}";q={state.limit.amount};w={state.limit.window}' for name, state in pairs
            ),
        )
        yield (
            "RateLimit",
            ", ".join(
                f'"{name}";r={max(0, state.remaining)};t={seconds_to_reset(state)}'
                for name, state in pairs
            ),
        )
