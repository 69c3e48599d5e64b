"""Figures of paired rounds, the issue's targets, and how both are printed.

A round runs one batch of each side back to back (alternating which goes first),
so that a burst of load on this shared machine hits both alike; the ratio of a
round compares two batches measured moments apart.  The median over rounds is
what a target is judged on; the minimum shows how far noise can move it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """One row of the issue's table: what is compared, and the bound to reach.

    ``metric`` is ``ratio`` (ours / anchor CPU, at most ``bound``), ``delta``
    (ours - anchor CPU in microseconds, at most ``bound``), ``speedup`` (anchor /
    ours time, at least ``bound``) or ``slowdown`` (ours / anchor time, at most
    ``bound``).
    """

    path: str
    anchor: str
    then: str
    metric: str
    bound: float

    def met(self, value: float) -> bool:
        if self.metric == "speedup":
            return value >= self.bound
        return value <= self.bound

    def describe(self) -> str:
        if self.metric == "delta":
            return f"≤ +{self.bound:g} µs"
        if self.metric == "speedup":
            return f"≥ {self.bound:g}x faster"
        if self.metric == "slowdown":
            return f"≤ {self.bound:g}x slower"
        return f"≤ {self.bound:g}"

    def format(self, value: float) -> str:
        if self.metric == "delta":
            return f"{value:+.1f} µs"
        if self.metric == "speedup":
            return f"{value:.2f}x faster"
        if self.metric == "slowdown":
            return f"{value:.1f}x slower"
        return f"{value:.2f}"

    def verdict(self, value: float) -> str:
        return "met" if self.met(value) else "NOT MET"

    def judgement(self, value: float) -> str:
        """What a scenario's line ends with: the target, its old figure, the verdict."""
        return f"  | target {self.describe()} (was {self.then}): {self.verdict(value)}"


@dataclass
class SideFigures:
    """What one side of a scenario measured, per request."""

    label: str
    #: seconds of CPU (process time) and of wall time per request, one per round
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    round_trips: float = 0.0
    #: server commands per request, by command name
    commands: dict[str, float] = field(default_factory=dict)
    #: the server's own CPU seconds per request (Redis or memcached), over the rounds
    server_cpu: float | None = None

    @property
    def command_total(self) -> float:
        return sum(self.commands.values())

    def command_mix(self) -> str:
        """``evalsha 1, hgetall 1``: the commands of one request, the most frequent first."""
        ordered = sorted(self.commands.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{name} {count:g}" for name, count in ordered if count >= 0.005)


def per_request(commands: Counter[str], requests: int) -> dict[str, float]:
    return {name: round(count / requests, 2) for name, count in commands.items()}


@dataclass(frozen=True)
class Spread:
    median: float
    low: float


def paired(ours: list[float], anchor: list[float], metric: str = "ratio") -> Spread:
    """The rounds' ratios (ours / anchor) or differences in microseconds (``delta``)."""
    if len(ours) != len(anchor) or not ours:
        raise ValueError("paired rounds need as many rounds on each side, and one at least")
    if metric == "delta":
        values = [(mine - theirs) * 1e6 for mine, theirs in zip(ours, anchor, strict=True)]
    else:
        values = [mine / theirs for mine, theirs in zip(ours, anchor, strict=True)]
    return Spread(statistics.median(values), min(values))


def best_delta(ours: list[float], anchor: list[float]) -> float:
    """Each side's best round, ours minus the anchor's, in microseconds.

    What a "+2 µs" target is judged on.  A round's paired difference of two ~40 µs
    requests moves by ±15 µs on a shared 2-CPU machine (the min of the differences
    shows it), more than the bound: the median of such differences cannot resolve
    it.  Each side's fastest round is the one least disturbed (the reason ``timeit``
    reports a minimum), so their difference is the cost of the code itself.
    """
    return (min(ours) - min(anchor)) * 1e6


def microseconds(seconds: float) -> str:
    """A time per request, to three significant figures or so."""
    value = seconds * 1e6
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


SIDE_HEADER = f"  {'':<30}{'cpu µs':>9}{'wall µs':>9}{'trips':>7}{'cmds':>7}{'srv µs':>8}"


def side_line(side: SideFigures) -> str:
    """One side's medians: CPU, wall, round trips, server commands, server CPU."""
    # a server that was not asked anything only shows its idle housekeeping
    asked = side.server_cpu is not None and side.round_trips > 0
    server = microseconds(side.server_cpu) if asked else ""  # type: ignore[arg-type]
    return (
        f"  {side.label:<30}{microseconds(statistics.median(side.cpu)):>9}"
        f"{microseconds(statistics.median(side.wall)):>9}{side.round_trips:>7.2f}"
        f"{side.command_total:>7.2f}{server:>8}  {side.command_mix()}"
    ).rstrip()


def comparison_line(
    ours: SideFigures, anchor: SideFigures, target: Target | None, judged: bool = True
) -> str:
    """The paired figures of a scenario, and its target's verdict when it has one
    (unless not *judged* here: a µs target is judged over fresh workers)."""
    metric = target.metric if target is not None and target.metric == "delta" else "ratio"
    cpu = paired(ours.cpu, anchor.cpu, metric)
    value = cpu.median
    if metric == "delta":
        value = best_delta(ours.cpu, anchor.cpu)
        line = (
            f"  ours - anchor: cpu {value:+.1f} µs between the best rounds;"
            f" paired rounds {cpu.median:+.1f} µs median, {cpu.low:+.1f} µs min"
        )
    else:
        wall = paired(ours.wall, anchor.wall)
        line = (
            f"  ours ÷ anchor: cpu {cpu.median:.2f} median, {cpu.low:.2f} min;"
            f" wall {wall.median:.2f} median, {wall.low:.2f} min"
        )
        if ours.server_cpu and anchor.server_cpu:
            line += f"; server cpu {ours.server_cpu / anchor.server_cpu:.2f}"
    if target is not None and judged:
        line += target.judgement(value)
    return line
