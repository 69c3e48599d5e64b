"""The HTTP run: each pair served by waitress on loopback and loaded by wrk.

In-process figures leave out what a server adds (parsing HTTP, threads,
sockets); this run shows how much of the difference survives it.  Both sides of
a pair get the same waitress (4 threads) and the same wrk load (1 thread, 8
connections), one after the other, each after a one-second warm-up; wrk comes
from Debian (``scripts/install-bench-deps.sh``).  Every request goes to loopback
only, and each wrk run is bounded in time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks import envs

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


def serve_and_load(worker: str, kind: str, params: dict[str, Any], seconds: float) -> Load:
    """Start the side's server, warm it up, load it, stop it."""
    log = (envs.BENCH_DIR / "logs" / f"serve-{worker}-{kind}.log").open("w")
    server = subprocess.Popen(
        [python_of(worker), "-m", "benchmarks.serve", worker, kind, json.dumps(params)],
        cwd=envs.ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the {worker} server did not start: see {log.name}")
        ready = json.loads(line)
        wrk(ready["port"], ready["path"], ready["headers"], WARM_UP_SECONDS)
        return wrk(ready["port"], ready["path"], ready["headers"], seconds)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def http_run(run: Any, scenarios: list[Any]) -> None:
    out = run.out
    if shutil.which("wrk") is None:
        out("HTTP run skipped: wrk is not installed (scripts/install-bench-deps.sh)")
        return
    seconds = run.options.http_seconds
    out(
        f"== HTTP: waitress ({4} threads) on loopback, wrk {WRK_THREADS} thread"
        f" {WRK_CONNECTIONS} connections, {seconds:g} s per side after a"
        f" {WARM_UP_SECONDS} s warm-up"
    )
    out(f"  {'':<30}{'req/s':>9}{'p99 ms':>9}{'failed':>8}")
    for number, scenario in enumerate(scenarios):
        run.prepare_stores(scenario)
        sides = [scenario.ours, scenario.anchor]
        if number % 2:
            sides.reverse()
        loads = {}
        for side in sides:
            loads[side.label] = serve_and_load(
                side.worker, side.kind, run.params(scenario, side), seconds
            )
        out(scenario.name)
        for label in (scenario.ours.label, scenario.anchor.label):
            load = loads[label]
            out(
                f"  {label:<30}{load.requests_per_second:>9.0f}{load.p99 * 1e3:>9.2f}"
                f"{load.failures:>8}"
            )
        ours, anchor = loads[scenario.ours.label], loads[scenario.anchor.label]
        out(
            f"  ours ÷ anchor: req/s {ours.requests_per_second / anchor.requests_per_second:.2f}"
            f" (higher is better), p99 {ours.p99 / anchor.p99:.2f} (lower is better)"
        )
