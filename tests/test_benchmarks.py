"""The helpers of ``make bench`` whose mistakes would go unnoticed in its output.

A wrong ratio, a target judged the wrong way round, a misread wrk report or a
round trip not counted would print plausible figures; these tests pin them down.
The benchmark itself is not run here (``make bench`` is not part of ``make test``).
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from benchmarks.envs import Environment, shared_pins
from benchmarks.load import parse_wrk
from benchmarks.report import SideFigures, Target, best_delta, comparison_line, paired
from benchmarks.scenarios import HTTP_PAIRS, SCENARIOS
from benchmarks.servers import ServerStats
from benchmarks.worker import RoundTripCounter


def test_paired_ratios_are_ours_over_the_anchor_round_by_round() -> None:
    spread = paired([2.0, 3.0, 1.0], [4.0, 3.0, 4.0])
    assert spread.median == 0.5
    assert spread.low == 0.25


def test_paired_deltas_are_in_microseconds() -> None:
    spread = paired([50e-6, 40e-6, 45e-6], [30e-6, 35e-6, 41e-6], "delta")
    assert spread.median == pytest.approx(5.0)
    assert spread.low == pytest.approx(4.0)


def test_microsecond_targets_are_judged_on_the_best_rounds() -> None:
    ours, anchor = [50e-6, 41e-6, 60e-6], [30e-6, 40e-6, 70e-6]
    assert best_delta(ours, anchor) == pytest.approx(11.0)  # 41 - 30, not the median 1
    target = Target("cache configured, unused", "Pyramid alone", "+19 µs", "delta", 2.0)
    line = comparison_line(
        SideFigures("ours", ours, ours), SideFigures("Pyramid", anchor, anchor), target
    )
    assert "+11.0 µs between the best rounds" in line and line.endswith("NOT MET")


def test_paired_rounds_need_as_many_rounds_on_each_side() -> None:
    with pytest.raises(ValueError):
        paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired([], [])


@pytest.mark.parametrize(
    ("metric", "bound", "value", "met"),
    [
        ("ratio", 0.5, 0.5, True),
        ("ratio", 0.5, 0.51, False),
        ("delta", 2.0, 1.9, True),
        ("delta", 2.0, 19.0, False),
        ("speedup", 4.0, 4.2, True),
        ("speedup", 4.0, 2.3, False),
        ("slowdown", 10.0, 9.0, True),
        ("slowdown", 10.0, 31.0, False),
    ],
)
def test_targets_are_judged_in_their_direction(
    metric: str, bound: float, value: float, met: bool
) -> None:
    target = Target("path", "anchor", "then", metric, bound)
    assert target.met(value) is met
    assert target.verdict(value) == ("met" if met else "NOT MET")


def test_the_command_mix_lists_the_most_frequent_first() -> None:
    side = SideFigures("ours", commands={"hgetall": 1.0, "evalsha": 2.0, "expire": 1.0})
    assert side.command_mix() == "evalsha 2, expire 1, hgetall 1"
    assert side.command_total == 4.0


def test_server_stats_subtract_to_what_a_batch_did() -> None:
    before = ServerStats(Counter({"get": 10, "set": 3}), cpu=1.0)
    after = ServerStats(Counter({"get": 30, "set": 3, "evalsha": 5}), cpu=1.25)
    work = after - before
    assert work.commands == Counter({"get": 20, "evalsha": 5})
    assert work.cpu == pytest.approx(0.25)


WRK_REPORT = """\
Running 4s test @ http://127.0.0.1:40000/read
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.08ms    1.01ms  20.16ms   90.12%
    Req/Sec     1.97k   102.31     2.13k    82.50%
  Latency Distribution
     50%    3.87ms
     75%    4.21ms
     90%    4.87ms
     99%  812.00us
  7851 requests in 4.00s, 1.21MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   1962.21
Transfer/sec:    309.61KB
"""


def test_wrk_reports_are_read_with_their_units_and_failures() -> None:
    load = parse_wrk(WRK_REPORT)
    assert load.requests_per_second == pytest.approx(1962.21)
    assert load.p99 == pytest.approx(812e-6)
    assert load.failures == 12
    assert parse_wrk(WRK_REPORT.replace("812.00us", "1.50s")).p99 == pytest.approx(1.5)
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:40000 Connection refused")


def test_an_environment_is_rebuilt_when_its_requirements_change() -> None:
    env = Environment("anchors", ("limits==5.8.0", "redis==8.1.0"))
    assert env.key == Environment("anchors", ("limits==5.8.0", "redis==8.1.0")).key
    assert env.key != Environment("anchors", ("limits==5.8.0", "redis==8.0.0")).key
    assert env.path.name == f"anchors-{env.key}"
    assert all(pin.count("==") == 1 for pin in shared_pins())


def test_every_scenario_of_ours_has_a_builder_and_every_http_pair_an_anchor() -> None:
    from benchmarks.sides import ours

    for scenario in SCENARIOS:
        assert scenario.ours.kind in ours.BUILDERS or scenario.ours.kind in ours.CALLS
    http = [scenario for scenario in SCENARIOS if scenario.name in HTTP_PAIRS]
    assert len(http) == len(HTTP_PAIRS)
    assert all(scenario.anchor is not None for scenario in http)


def test_round_trips_are_counted_once_per_pipeline_and_only_while_counting(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    counter = RoundTripCounter()
    try:
        client.ping()  # connects outside the count
        with counter.counting() as counts:
            client.set("a", "1")
            with client.pipeline() as pipe:
                pipe.get("a").get("b").execute()
        client.get("a")
        assert counts == {"redis": 2, "memcached": 0}
    finally:
        client.close()
