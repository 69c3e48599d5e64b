"""Time pyramid_kvs.storable on an 8 KB session against PyPI ``storable`` and Perl itself.

Run: ``.venv/bin/python benchmarks/bench_storable.py`` (or ``make bench``).  The
session is built and frozen by the real Perl (``nfreeze`` and native ``freeze``):
a CGI::Session-like hash with a user record, nested preferences and addresses (one
of them shared), a cart of 32 lines, history, UTF-8 text, and numbers as Perl keeps
them (small and large integers, doubles, numeric strings).  Three comparisons:

* ``thaw`` against PyPI ``storable`` 1.2.4 on the same bytes, in both byte orders;
* ``nfreeze`` of the session's data (as ``thaw`` of the native blob returns it, so
  numbers are numbers, as in Perl's memory) against Perl's own ``nfreeze`` of the
  session, timed inside Perl with Time::HiRes;
* for context, Perl's own ``thaw`` (C) of the network-order blob.

Timings are taken in interleaved rounds (each round times every contender once, for a
few milliseconds) and each contender's best round is kept: on a shared machine, busy
spells slow a Python loop by up to 2.5x and Perl's C far less, so averages or medians
would measure the neighbours.  The process and its Perl child are pinned to one CPU:
the two CPUs of a virtual machine can run at different speeds, which moved the Perl
ratio from 13x to 23x between runs when Perl landed on the faster one.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyramid_kvs import storable as ours

#: thaw must be at least this many times faster than PyPI storable
THAW_TARGET = 4.0
#: nfreeze may be at most this many times slower than Perl's own nfreeze
NFREEZE_TARGET = 10.0

PERL_SESSION = r"""
use strict;
use warnings;
use Storable qw(nfreeze freeze thaw);
use Time::HiRes qw(time);
my @addresses = (
    { label => 'Maison', street => "12 rue de l'\x{c9}glise", city => "Orl\x{e9}ans",
      zip => '45000', country => 'FR', default => 1 },
    { label => 'Bureau', street => '3 avenue des Champs', city => 'Paris',
      zip => '75008', country => 'FR', default => 0 },
);
my $session = {
    _SESSION_ID => 'd41d8cd98f00b204e9800998ecf8427e', _SESSION_CTIME => 1700000000,
    _SESSION_ATIME => 1700000123, _SESSION_ETIME => 3600, _SESSION_REMOTE_ADDR => '10.0.0.1',
    _SESSION_EXPIRE_LIST => { csrf_token => 900 }, csrf_token => 'a' x 40, locale => 'fr_FR',
    user => {
        id => 4242, login => 'jdupont', name => "J\x{e9}r\x{f4}me Dupont",
        email => 'jerome@example.org', roles => [qw(admin editor viewer)],
        account => 9_000_000_001, balance => 1234.56, points => 125_000, score => -1500,
        created => '2019-03-14T09:26:53Z', addresses => \@addresses,
        prefs => { theme => 'dark', tz => 'Europe/Paris', page_size => 50, currency => 'EUR',
                   notify => { email => 1, sms => 0, push => 1 } },
    },
    checkout => { shipping => $addresses[0], billing => $addresses[0], step => 'payment' },
    cart => [ map { { sku => "SKU-$_", qty => $_ % 3 + 1, price => 9.99 * $_,
                      title => "Article num\x{e9}ro $_", added => 1700000000 + 60 * $_,
                      options => { size => 'M', colour => 'bleu' } } } 1 .. 32 ],
    history => [ map { "/catalog/item/$_?ref=home" } 1 .. 60 ],
    viewed => [ map { 1000 + 7 * $_ } 1 .. 40 ],
    search => { q => "chaussures de randonn\x{e9}e", page => '2', sort => 'price',
                filters => { brand => [qw(Salomon Merrell Lowa)], min => '20', max => '150.5' } },
    messages => [ "Votre panier a \x{e9}t\x{e9} mis \x{e0} jour", "Bienvenue \x{2014} \x{263a}" ],
    flags => { beta => 1, newsletter => 0, gdpr => 1 },
};
# a quantity typed in a form and then used as a number: a string with a cached IV
for my $line (@{ $session->{cart} }) {
    $line->{qty_text} = "" . $line->{qty};
    my $sum = $line->{qty_text} + 0;
}
my $net = nfreeze($session);
binmode STDOUT;
$| = 1;
print unpack('H*', $net), "\n", unpack('H*', freeze($session)), "\n";
# then one timing per request line "nfreeze N" or "thaw N": microseconds per call
while (my $line = <STDIN>) {
    my ($what, $n) = split ' ', $line;
    my $start = time;
    if ($what eq 'nfreeze') { nfreeze($session) for 1 .. $n }
    else { thaw($net) for 1 .. $n }
    printf "%.3f\n", (time - $start) * 1e6 / $n;
}
"""


class PerlSession:
    """A Perl process holding the session: it gives the frozen blobs and times Perl."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["perl", "-e", PERL_SESSION],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.net = bytes.fromhex(self.stdout.readline())
        self.native = bytes.fromhex(self.stdout.readline())

    def seconds_per_call(self, what: str, number: int) -> float:
        self.stdin.write(f"{what} {number}\n")
        self.stdin.flush()
        return float(self.stdout.readline()) / 1e6

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait()


@dataclass
class Results:
    """Seconds per call of one run, round by round: ``samples[name][i]`` is round ``i``."""

    net_bytes: int
    native_bytes: int
    samples: dict[str, list[float]]

    def best(self, name: str) -> float:
        return min(self.samples[name])

    def ratio(self, slower: str, faster: str) -> float:
        """How many times slower ``slower`` ran than ``faster``, each at its best round."""
        return self.best(slower) / self.best(faster)

    @property
    def thaw_net_speedup(self) -> float:
        return self.ratio("pypi_thaw_net", "thaw_net")

    @property
    def thaw_native_speedup(self) -> float:
        return self.ratio("pypi_thaw_native", "thaw_native")

    @property
    def nfreeze_slowdown(self) -> float:
        return self.ratio("nfreeze", "perl_nfreeze")


def _per_call(func: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def measure(rounds: int = 60) -> Results:
    """Time every contender once per round, ``rounds`` times."""
    import storable as pypi  # PyPI storable 1.2.4, in the dev extra

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus:
        os.sched_setaffinity(0, {min(cpus)})  # inherited by the Perl process
    perl = PerlSession()
    try:
        net, native = perl.net, perl.native
        data = ours.thaw(native)
        timers: dict[str, Callable[[], float]] = {
            "thaw_net": lambda: _per_call(lambda: ours.thaw(net), 10),
            "pypi_thaw_net": lambda: _per_call(lambda: pypi.thaw(net), 4),
            "thaw_native": lambda: _per_call(lambda: ours.thaw(native), 10),
            "pypi_thaw_native": lambda: _per_call(lambda: pypi.thaw(native), 4),
            "nfreeze": lambda: _per_call(lambda: ours.nfreeze(data), 10),
            "perl_nfreeze": lambda: perl.seconds_per_call("nfreeze", 50),
            "perl_thaw": lambda: perl.seconds_per_call("thaw", 50),
        }
        if ours._speedups is not None:  # then also the pure-Python fallback
            depth = ours.DEFAULT_MAX_DEPTH
            timers["python_thaw_net"] = lambda: _per_call(
                lambda: ours._read(net, "auto", False, depth), 10
            )
            timers["python_thaw_native"] = lambda: _per_call(
                lambda: ours._read(native, "auto", False, depth), 10
            )
            timers["python_nfreeze"] = lambda: _per_call(
                lambda: ours._python_freeze(data, True, depth), 10
            )
        samples: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(rounds):
            for name, timer in timers.items():
                samples[name].append(timer())
    finally:
        perl.close()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return Results(len(net), len(native), samples)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def main() -> None:
    try:
        import storable  # noqa: F401
    except ImportError:
        raise SystemExit("PyPI 'storable' is missing: pip install storable==1.2.4") from None
    r = measure()
    us = 1e6
    for order, size, mine, theirs, speedup in (
        ("nfreeze", r.net_bytes, "thaw_net", "pypi_thaw_net", r.thaw_net_speedup),
        ("freeze", r.native_bytes, "thaw_native", "pypi_thaw_native", r.thaw_native_speedup),
    ):
        print(
            f"thaw of {order:>7} ({size} bytes): pyramid_kvs {r.best(mine) * us:7.1f} us, "
            f"PyPI storable {r.best(theirs) * us:7.1f} us: {speedup:5.2f}x faster "
            f"(target >= {THAW_TARGET:g}x: {_verdict(speedup >= THAW_TARGET)})"
        )
    slowdown = r.nfreeze_slowdown
    print(
        f"nfreeze of the session: pyramid_kvs {r.best('nfreeze') * us:7.1f} us, "
        f"Perl {r.best('perl_nfreeze') * us:6.1f} us: {slowdown:5.2f}x slower "
        f"(target <= {NFREEZE_TARGET:g}x: {_verdict(slowdown <= NFREEZE_TARGET)})"
    )
    if "python_nfreeze" in r.samples:
        print(
            "without the C accelerator (pure Python): thaw "
            f"{r.best('python_thaw_net') * us:.1f} / {r.best('python_thaw_native') * us:.1f} us, "
            f"{r.ratio('pypi_thaw_net', 'python_thaw_net'):.2f}x / "
            f"{r.ratio('pypi_thaw_native', 'python_thaw_native'):.2f}x faster than PyPI storable; "
            f"nfreeze {r.best('python_nfreeze') * us:.1f} us, "
            f"{r.ratio('python_nfreeze', 'perl_nfreeze'):.2f}x slower than Perl"
        )
    else:
        print("(the C accelerator is not built: these are the pure-Python times)")
    print(f"for context, Perl's thaw (C) of the nfreeze blob: {r.best('perl_thaw') * us:.1f} us")


if __name__ == "__main__":
    main()
