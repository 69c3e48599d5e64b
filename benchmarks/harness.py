"""``make bench``: pyramid_kvs side by side with its anchors, in paired rounds.

The orchestrator (this module, in the development virtualenv) creates or reuses
the anchors' environments, starts a Redis and a memcached of its own, starts one
worker per environment, and for each scenario: builds each side's application,
sizes the batches on a warm-up, counts round trips and server commands on a few
requests, then times rounds of one batch per side, alternating which goes first.
An HTTP run then serves the main pairs with waitress and loads them with wrk.
Everything it prints is also written to ``.bench/last-run.txt``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from benchmarks import envs, load
from benchmarks.report import (
    SIDE_HEADER,
    SideFigures,
    Target,
    best_delta,
    comparison_line,
    microseconds,
    paired,
    per_request,
    side_line,
)
from benchmarks.scenarios import HTTP_PAIRS, SCENARIOS, STORABLE_TARGETS, Scenario, Side
from benchmarks.servers import Servers

ROOT = envs.ROOT
LOG_DIR = envs.BENCH_DIR / "logs"
#: requests of the first, sizing batch; then each batch lasts about ``--batch-ms``
SIZING_REQUESTS = 10
MIN_BATCH, MAX_BATCH = 3, 2000
COUNTED_REQUESTS = 10
DELTA_ROUNDS_FACTOR = 3
#: fresh workers a microsecond target is judged in (see Run.fresh_deltas)
FRESH_WORKERS = 3
STAMPEDE_ROUNDS = 5
#: the id in the cookie of the Perl session the Perl scenarios read
PERL_SESSION_ID = "d41d8cd98f00b204e9800998ecf8427e"
#: versions printed for the record
PACKAGES = (
    "pyramid", "webob", "redis", "hiredis", "pymemcache", "waitress", "pyramid-kvs",
    "pyramid_session_redis", "limits", "dogpile.cache", "python3-memcached", "storable",
)  # fmt: skip


#: Perl renews the session of bench_storable.py (its last access is in 2023, and
#: CGI::Session's expiry would make it read as empty) and freezes it again
PERL_RENEW = r"""
use Storable qw(thaw nfreeze);
my $hex = <STDIN>; chomp $hex;
my $session = thaw(pack('H*', $hex));
$session->{_SESSION_ATIME} = time;
binmode STDOUT;
print unpack('H*', nfreeze($session));
"""


@functools.cache
def perl_session() -> bytes:
    """The Perl session of the Perl scenarios: ``nfreeze`` bytes made by Perl itself."""
    from benchmarks.bench_storable import PerlSession

    perl = PerlSession()
    try:
        frozen = perl.net
    finally:
        perl.close()
    renewed = subprocess.run(
        ["perl", "-e", PERL_RENEW],
        input=frozen.hex() + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return bytes.fromhex(renewed.stdout)


def perl_version() -> str:
    script = 'printf "Perl %vd, Storable %s", $^V, $Storable::VERSION'
    done = subprocess.run(["perl", "-MStorable", "-e", script], capture_output=True, text=True)
    return done.stdout or "no Perl"


def cpu_sets() -> tuple[set[int], set[int]]:
    """The CPUs of the workers, and those of the servers.

    The two vCPUs of this kind of virtual machine can run at different speeds: a
    worker that the scheduler moves to the faster one for a round, and not the
    other side's, moves a ratio by 20 % (the Storable benchmark pins itself for the
    same reason).  So every worker runs on one CPU - they take turns, never run at
    once - and the servers on the others, where there are others.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[0]}, set(available[1:])


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process *pid* on *cpus*."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        with suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


class WorkerError(RuntimeError):
    pass


class Worker:
    """A ``benchmarks.worker`` process in one environment, asked over its pipes."""

    def __init__(self, name: str, python: Path | str, log_name: str | None = None) -> None:
        self.name = name
        self.log_path = LOG_DIR / f"worker-{log_name or name}.log"
        self._log = self.log_path.open("w")
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        self.process = subprocess.Popen(
            [str(python), "-m", "benchmarks.worker", name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        pin(self.process.pid, cpu_sets()[0])  # see cpu_sets
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self._log.flush()
            tail = self.log_path.read_text()[-3000:]
            raise WorkerError(f"the {self.name} worker stopped:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.name} worker: {answer['error']}")
        return answer

    def ask(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            with suppress(WorkerError, BrokenPipeError, OSError):
                self.ask("quit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Output:
    """Prints, and keeps every line for ``.bench/last-run.txt``."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, file=self.stream, flush=True)
        self.lines.append(line)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


class Run:
    """One ``make bench``: the servers, the workers, and the figures so far."""

    def __init__(self, servers: Servers, workers: dict[str, Worker], options: Any, out: Output):
        self.servers = servers
        self.workers = workers
        self.options = options
        self.out = out
        #: (target, median, min) of every target measured, for the summary
        self.verdicts: list[tuple[Target, float, float]] = []

    def params(self, scenario: Scenario, side: Side) -> dict[str, Any]:
        return {
            "redis": self.servers.redis_address,
            "memcached": self.servers.memcached_address,
            "perl_session_id": PERL_SESSION_ID,
            **scenario.params,
            **side.params,
        }

    def sides(self, scenario: Scenario) -> list[Side]:
        return [scenario.ours] if scenario.anchor is None else [scenario.ours, scenario.anchor]

    def prepare_stores(self, scenario: Scenario) -> None:
        self.servers.flush()
        if "perlsess" in (scenario.ours.kind, scenario.ours.params.get("component")):
            key = f"perlsess::{PERL_SESSION_ID}"
            # as Cache::Memcached stores it (nfreeze, flag 1), and Redis.pm (nfreeze)
            self.servers.memcached.set(key, perl_session(), flags=1, noreply=False)
            self.servers.redis.set(key, perl_session())

    def measure(self, scenario: Scenario) -> list[SideFigures]:
        """Build both sides, size the batches, count, then time paired rounds."""
        sides = self.sides(scenario)
        self.prepare_stores(scenario)
        names = [f"{scenario.name}/{index}" for index in range(len(sides))]
        try:
            for name, side in zip(names, sides, strict=True):
                self.workers[side.worker].ask(
                    "build", name=name, kind=side.kind, params=self.params(scenario, side)
                )
            return self._measure(scenario, sides, names)
        finally:
            for name, side in zip(names, sides, strict=True):
                self.workers[side.worker].ask("drop", name=name)

    def _measure(
        self, scenario: Scenario, sides: list[Side], names: list[str]
    ) -> list[SideFigures]:
        pairs = list(zip(names, sides, strict=True))
        slowest = (
            max(
                self.workers[side.worker].ask("time", name=name, n=SIZING_REQUESTS)["wall"]
                for name, side in pairs
            )
            / SIZING_REQUESTS
        )
        n = int(min(MAX_BATCH, max(MIN_BATCH, self.options.batch_ms / 1000 / slowest)))
        figures = []
        for name, side in pairs:
            worker = self.workers[side.worker]
            worker.ask("time", name=name, n=n)  # warm-up
            before = self.servers.stats(scenario.store)
            counted = worker.ask("count", name=name, n=COUNTED_REQUESTS)
            work = self.servers.stats(scenario.store) - before
            figures.append(
                SideFigures(
                    side.label,
                    round_trips=(counted["redis"] + counted["memcached"]) / COUNTED_REQUESTS,
                    commands=per_request(work.commands, COUNTED_REQUESTS),
                )
            )
        server_cpu = [0.0] * len(pairs)
        rounds = self.rounds(scenario)
        for round_number in range(rounds):
            order = list(range(len(pairs)))
            if round_number % 2:
                order.reverse()
            for index in order:
                name, side = pairs[index]
                cpu_before = self.servers.cpu(scenario.store)
                timed = self.workers[side.worker].ask("time", name=name, n=n)
                server_cpu[index] += self.servers.cpu(scenario.store) - cpu_before
                figures[index].cpu.append(timed["cpu"] / n)
                figures[index].wall.append(timed["wall"] / n)
        if scenario.store != "memory":
            for index, side_figures in enumerate(figures):
                side_figures.server_cpu = server_cpu[index] / (n * rounds)
        return figures

    def rounds(self, scenario: Scenario) -> int:
        """Paired rounds of *scenario*: three times as many for a target of a few
        microseconds, which one round's noise on a busy machine can exceed."""
        if scenario.target is not None and scenario.target.metric == "delta":
            return DELTA_ROUNDS_FACTOR * int(self.options.rounds)
        return int(self.options.rounds)

    def scenario(self, scenario: Scenario) -> None:
        if scenario.ours.kind == "storable":
            self.storable()
            return
        if scenario.ours.kind == "stampede":
            self.stampede(scenario)
            return
        figures = self.measure(scenario)
        self.out(f"{scenario.name}")
        for side_figures in figures:
            self.out(side_line(side_figures))
        if len(figures) == 2:
            target = scenario.target
            if target is not None and target.metric == "delta":
                self.out(comparison_line(figures[0], figures[1], target, judged=False))
                deltas = self.fresh_deltas(scenario)
                judged = statistics.median(deltas)
                shown = ", ".join(f"{delta:+.1f}" for delta in deltas)
                self.out(
                    f"  in {len(deltas)} fresh workers, best rounds: {shown} µs;"
                    f" median {judged:+.1f} µs{target.judgement(judged)}"
                )
                self.verdicts.append((target, judged, best_delta(figures[0].cpu, figures[1].cpu)))
                return
            self.out(comparison_line(figures[0], figures[1], target))
            if target is not None:
                spread = paired(figures[0].cpu, figures[1].cpu)
                self.verdicts.append((target, spread.median, spread.low))

    def fresh_deltas(self, scenario: Scenario) -> list[float]:
        """*scenario*'s best-round difference in each of a few fresh workers.

        A microsecond target compares two ~40 µs requests of one worker, and a
        process carries a bias of its own of a few µs (the same code measured +1.3
        to +4.4 µs in fresh processes: its memory layout, most likely), which no
        number of rounds in one process removes.  So each of ``FRESH_WORKERS`` new
        workers measures the scenario, and the median of their differences is
        judged.
        """
        regular = self.workers["ours"]
        deltas = []
        for index in range(FRESH_WORKERS):
            fresh = Worker("ours", sys.executable, log_name=f"ours-fresh-{index}")
            self.workers["ours"] = fresh
            try:
                figures = self.measure(scenario)
            finally:
                self.workers["ours"] = regular
                fresh.close()
            deltas.append(best_delta(figures[0].cpu, figures[1].cpu))
        return deltas

    def stampede(self, scenario: Scenario) -> None:
        """8 threads on a cold key, rounds alternating; the creator's calls count."""
        self.servers.flush()
        results: dict[str, list[dict[str, Any]]] = {
            side.label: [] for side in self.sides(scenario)
        }
        for side in self.sides(scenario):  # builds the cache, connects: not measured
            params = {**self.params(scenario, side), "key": f"warm-up-{side.worker}"}
            self.workers[side.worker].ask("call", fn="stampede", params=params)
        for round_number in range(STAMPEDE_ROUNDS):
            sides = self.sides(scenario)
            if round_number % 2:
                sides.reverse()
            for side in sides:
                params = self.params(scenario, side)
                params["key"] = f"cold-{round_number}-{side.worker}"
                answer = self.workers[side.worker].ask("call", fn="stampede", params=params)
                results[side.label].append(answer)
        self.out(f"{scenario.name} (a creator of 50 ms; {STAMPEDE_ROUNDS} rounds)")
        for label, rounds in results.items():
            calls = [result["creator_calls"] for result in rounds]
            wall = statistics.median(result["wall"] for result in rounds)
            cpu = statistics.median(result["cpu"] for result in rounds)
            self.out(
                f"  {label:<30} creator calls per round {calls} (max {max(calls)}),"
                f" wall {wall * 1e3:.0f} ms, cpu {cpu * 1e3:.1f} ms median"
            )

    def storable(self) -> None:
        figures = self.workers["ours"].ask("call", fn="storable", params={})
        thaw = figures["thaw_pypi"] / figures["thaw_ours"]
        nfreeze = figures["nfreeze_ours"] / figures["nfreeze_perl"]
        self.out(f"Storable, a Perl session of {figures['session_bytes']} bytes (best of 5)")
        self.out(
            f"  thaw: pyramid_kvs {microseconds(figures['thaw_ours'])} µs, PyPI storable"
            f" {microseconds(figures['thaw_pypi'])} µs: {thaw:.2f}x faster"
            + STORABLE_TARGETS["thaw"].judgement(thaw)
        )
        self.out(
            f"  nfreeze: pyramid_kvs {microseconds(figures['nfreeze_ours'])} µs, Perl"
            f" {microseconds(figures['nfreeze_perl'])} µs: {nfreeze:.1f}x slower"
            + STORABLE_TARGETS["nfreeze"].judgement(nfreeze)
        )
        self.verdicts.append((STORABLE_TARGETS["thaw"], thaw, thaw))
        self.verdicts.append((STORABLE_TARGETS["nfreeze"], nfreeze, nfreeze))

    def summary(self) -> None:
        self.out(
            "Targets of the issue (ratios: median over rounds, min in brackets;"
            " µs: the median over fresh workers of their best rounds' difference,"
            " the run's own worker in brackets)"
        )
        for target, median, low in self.verdicts:
            value = target.format(median)
            if low != median:
                value += f" ({target.format(low)})"
            self.out(
                f"  {target.path:<32} vs {target.anchor:<28} was {target.then:<12}"
                f" now {value:<26} target {target.describe():<16} {target.verdict(median)}"
            )


def machine(out: Output, workers: dict[str, Worker]) -> None:
    """What the figures were measured on: CPU, Python, each side's versions."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out(f"machine: {model}, {os.cpu_count()} CPUs, {platform.platform()}")
    out(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    for name, worker in workers.items():
        answer = worker.ask("versions", names=list(PACKAGES))
        packages = ", ".join(f"{key} {value}" for key, value in answer["packages"].items())
        out(f"{name}: Python {answer['python']}; {packages}")


def selected(options: Any) -> list[Scenario]:
    if not options.only:
        return SCENARIOS
    return [s for s in SCENARIOS if any(word in s.name for word in options.only)]


@contextmanager
def running(options: Any, out: Output) -> Iterator[Run]:
    """The environments, the servers and the workers of one run; all stopped after."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    environments = envs.anchor_environments()
    created = envs.ensure(environments, LOG_DIR)
    if created:
        out(f"anchor environments created in {created:.0f} s (reused by later runs)")
    else:
        out("anchor environments reused from .bench/envs")
    with ExitStack() as stack:
        servers = Servers()
        stack.callback(servers.close)
        workers = {"ours": Worker("ours", sys.executable)}
        stack.callback(workers["ours"].close)
        for env in environments:
            workers[env.name] = Worker(env.name, env.python)
            stack.callback(workers[env.name].close)
        client_cpus, server_cpus = cpu_sets()
        for pid in servers.pids():
            pin(pid, server_cpus)
        out(f"workers on CPU {sorted(client_cpus)}, servers on CPU {sorted(server_cpus)}")
        out(
            f"{servers.versions()} on {servers.redis_address} and"
            f" {servers.memcached_address}; {perl_version()}"
        )
        machine(out, workers)
        yield Run(servers, workers, options, out)


def parse_options(argv: list[str] | None) -> Any:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="paired rounds per scenario")
    parser.add_argument(
        "--batch-ms", type=float, default=40, help="about how long one side's batch lasts"
    )
    parser.add_argument(
        "--only", action="append", metavar="WORDS", help="scenarios whose name has WORDS"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP run")
    parser.add_argument(
        "--http-seconds", type=float, default=4, help="wrk's measured run, per side"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    if options.list:
        for scenario in SCENARIOS:
            vs = "" if scenario.anchor is None else f" vs {scenario.anchor.label}"
            print(f"{scenario.group}: {scenario.name}{vs}")
        return
    started = time.perf_counter()
    out = Output()
    failures: list[str] = []
    try:
        with running(options, out) as run:
            group = None
            for scenario in selected(options):
                if scenario.group != group:
                    group = scenario.group
                    out()
                    out(f"== {group}")
                    out(SIDE_HEADER)
                try:
                    run.scenario(scenario)
                except WorkerError as error:
                    # one broken scenario must not hide the others' figures
                    failures.append(scenario.name)
                    out(f"{scenario.name}: FAILED (see {LOG_DIR}):")
                    out("\n".join(f"    {line}" for line in str(error).splitlines()[-6:]))
            if not options.no_http:
                out()
                load.http_run(run, [s for s in selected(options) if s.name in HTTP_PAIRS])
            out()
            run.summary()
    finally:
        out()
        out(f"total {time.perf_counter() - started:.0f} s")
        out.save(envs.BENCH_DIR / "last-run.txt")
    if failures:
        raise SystemExit(f"{len(failures)} scenarios failed: {', '.join(failures)}")
