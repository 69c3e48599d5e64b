"""Limits ("15/second") and what checking them yields (``Outcome``).

This module has no store and no Pyramid dependency: the settings parse limits with
it, the view deriver parses its ``ratelimit=`` option with it, and the per-store
algorithms return ``LimitState`` objects that the tween turns into headers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: seconds per unit name, singular; plurals and abbreviations map onto these
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_UNIT_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute",
                 "h": "hour", "hr": "hour", "d": "day"}  # fmt: skip
_ITEM = re.compile(r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+)?\s*([a-z]+)\s*$", re.IGNORECASE)
LIMITS_FORM = '"<count>/<unit>" items separated by ";", e.g. "15/second;1000/hour"'
ALGORITHMS = ("fixed", "sliding", "gcra")


@dataclass(frozen=True, order=True)
class Limit:
    """At most ``amount`` requests per ``window`` seconds."""

    amount: int
    window: int

    def __post_init__(self) -> None:
        if self.amount < 1 or self.window < 1:
            raise ValueError(f"a limit needs a positive amount and window, got {self!r}")

    def __str__(self) -> str:
        return f"{self.amount}/{self.window}s"


def _unit_seconds(unit: str) -> int:
    unit = unit.lower()
    unit = _UNIT_ALIASES.get(unit, unit)
    if unit not in UNITS and unit.endswith("s"):
        unit = unit[:-1]
    if unit not in UNITS:
        raise ValueError(f"unknown time unit {unit!r}")
    return UNITS[unit]


def parse_limit(text: str) -> Limit:
    """One limit: ``"15/second"``, ``"100/5 minutes"``, ``"10 per hour"``, ``"3/2s"``."""
    match = _ITEM.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not of the form <count>/<unit>")
    amount, multiplier, unit = match.groups()
    limit = Limit(int(amount), int(multiplier or 1) * _unit_seconds(unit))
    return limit


def parse_limits(value: str | Iterable[str | Limit]) -> tuple[Limit, ...]:
    """Several limits, ``";"`` or ``","`` separated; an empty value or ``none``: no limit.

    Raises ``ValueError`` naming the expected form.  Duplicates are dropped and the
    limits sorted by window, so equal policies compare equal.
    """
    if isinstance(value, str):
        if value.strip().lower() in {"", "none"}:
            return ()
        items: list[str | Limit] = [part for part in re.split(r"[;,]", value) if part.strip()]
    else:
        items = list(value)
    limits = set()
    try:
        for item in items:
            limits.add(item if isinstance(item, Limit) else parse_limit(str(item)))
    except ValueError as exc:
        raise ValueError(f"expected {LIMITS_FORM} ({exc})") from None
    return tuple(sorted(limits, key=lambda limit: (limit.window, limit.amount)))


@dataclass(frozen=True)
class LimitState:
    """One limit's verdict for one request, as the store computed it.

    Times are seconds from now, fractional; headers round them up to whole seconds.
    """

    limit: Limit
    #: this limit had room for the request
    allowed: bool
    #: requests still allowed after this one (after none, when the request was denied)
    remaining: int
    #: seconds until the quota is back to full (GCRA) or the window ends
    reset: float
    #: seconds until a request would pass this limit; 0 when it passes now
    retry_after: float


@dataclass(frozen=True)
class Outcome:
    """The verdict on a request: all of its limits, checked all-or-nothing."""

    states: tuple[LimitState, ...]
    #: the IETF policy name of each state, in the same order
    names: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return all(state.allowed for state in self.states)

    @property
    def retry_after(self) -> int:
        """Whole seconds until a request passes every limit (at least 1); 0 when allowed."""
        if self.allowed:
            return 0
        wait = max(state.retry_after for state in self.states if not state.allowed)
        return max(1, whole_seconds(wait))

    @property
    def tightest(self) -> LimitState:
        """The state the single-valued legacy headers describe.

        A denied request: the limit that keeps it waiting longest; otherwise the one
        with the fewest requests left (the later reset on a tie).
        """
        denied = [state for state in self.states if not state.allowed]
        if denied:
            return max(denied, key=lambda state: state.retry_after)
        return min(self.states, key=lambda state: (state.remaining, -state.reset))


def limit_key(base_key: str, limit: Limit) -> str:
    """The store key of one limit's state for the holder and scope in *base_key*."""
    return f"{base_key}:{limit.amount}/{limit.window}"


def whole_seconds(seconds: float) -> int:
    """*seconds* rounded up: a client told to wait this long never comes back too early.

    A hair of tolerance absorbs float noise (``0.1 * 3`` is not ``0.3``) so exact
    values do not gain a spurious second.
    """
    return max(0, math.ceil(seconds - 1e-6))


def policy_names(prefix: str, limits: tuple[Limit, ...]) -> tuple[str, ...]:
    """IETF policy names: *prefix* alone for one limit, else *prefix* and the window."""
    if len(limits) == 1:
        return (prefix,)
    names = []
    for index, limit in enumerate(limits):
        name = f"{prefix}-{limit.window}s"
        if name in names:
            name = f"{name}-{index}"
        names.append(name)
    return tuple(names)
