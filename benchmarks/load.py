"""The HTTP run: each pair served by waitress on loopback and loaded by wrk.

In-process figures leave out what a server adds (parsing HTTP, threads,
sockets); this run shows how much of the difference survives it.  Both sides of
a pair get the same waitress (4 threads) and the same wrk load (1 thread, 8
connections); both are served at once and loaded in turn - ours, anchor, anchor,
ours, half the time each - after a one-second warm-up; wrk comes from Debian
(``scripts/install-bench-deps.sh``).  Every request goes to loopback
only, and each wrk run is bounded in time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from benchmarks import envs
from benchmarks.serve import THREADS

WRK_THREADS, WRK_CONNECTIONS = 1, 8
WARM_UP_SECONDS = 1
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Load:
    """What wrk measured: requests per second, the 99th percentile, failures."""

    requests_per_second: float
    p99: float
    failures: int


def parse_wrk(output: str) -> Load:
    """Read wrk's ``--latency`` report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if rate is None or p99 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    failures = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?(\d+)"):
        found = re.search(pattern, output)
        if found is not None:
            failures += int(found.group(1))
    return Load(float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], failures)


def wrk(port: int, path: str, headers: dict[str, str], seconds: float) -> Load:
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s", "--latency",
        "--timeout", "5s",
    ]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    return parse_wrk(done.stdout)


def python_of(worker: str) -> str:
    if worker == "ours":
        return sys.executable
    return str(next(env for env in envs.anchor_environments() if env.name == worker).python)


class Served:
    """One side's application under waitress, in a process of its own."""

    def __init__(self, worker: str, kind: str, params: dict[str, Any]) -> None:
        self.log = (envs.BENCH_DIR / "logs" / f"serve-{worker}-{kind}.log").open("w")
        self.process = subprocess.Popen(
            [python_of(worker), "-m", "benchmarks.serve", worker, kind, json.dumps(params)],
            cwd=envs.ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the {worker} server did not start: see {self.log.name}")
        ready = json.loads(line)
        self.port: int = ready["port"]
        self.path: str = ready["path"]
        self.headers: dict[str, str] = ready["headers"]

    def load(self, seconds: float) -> Load:
        return wrk(self.port, self.path, self.headers, seconds)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def mean(loads: list[Load]) -> Load:
    return Load(
        sum(load.requests_per_second for load in loads) / len(loads),
        sum(load.p99 for load in loads) / len(loads),
        sum(load.failures for load in loads),
    )


def load_pair(run: Any, scenario: Any, seconds: float) -> dict[str, Load]:
    """Serve both sides at once, warm both up, then load them ours, anchor, anchor,
    ours (half the time each), so that a drift in the machine's load hits both alike."""
    sides = [scenario.ours, scenario.anchor]
    with ExitStack() as stack:
        served = {}
        for side in sides:
            served[side.label] = Served(side.worker, side.kind, run.params(scenario, side))
            stack.callback(served[side.label].stop)
        for server in served.values():
            server.load(WARM_UP_SECONDS)
        halves: dict[str, list[Load]] = {label: [] for label in served}
        for side in (*sides, *reversed(sides)):
            halves[side.label].append(served[side.label].load(seconds / 2))
    return {label: mean(loads) for label, loads in halves.items()}


def http_run(run: Any, scenarios: list[Any]) -> None:
    out = run.out
    if shutil.which("wrk") is None:
        out("HTTP run skipped: wrk is not installed (scripts/install-bench-deps.sh)")
        return
    seconds = run.options.http_seconds
    out(
        f"== HTTP: waitress ({THREADS} threads) on loopback, wrk {WRK_THREADS} thread"
        f" {WRK_CONNECTIONS} connections, {seconds:g} s per side (in two halves: ours,"
        f" anchor, anchor, ours) after a {WARM_UP_SECONDS} s warm-up"
    )
    out(f"  {'':<30}{'req/s':>9}{'p99 ms':>9}{'failed':>8}")
    for scenario in scenarios:
        run.prepare_stores(scenario)
        loads = load_pair(run, scenario, seconds)
        out(scenario.name)
        for label, load in loads.items():
            out(
                f"  {label:<30}{load.requests_per_second:>9.0f}{load.p99 * 1e3:>9.2f}"
                f"{load.failures:>8}"
            )
        ours, anchor = loads[scenario.ours.label], loads[scenario.anchor.label]
        out(
            f"  ours ÷ anchor: req/s {ours.requests_per_second / anchor.requests_per_second:.2f}"
            f" (higher is better), p99 {ours.p99 / anchor.p99:.2f} (lower is better)"
        )
