"""The Storable rows of ``make bench``, taken from ``benchmarks/bench_storable.py``.

The Storable work owns that module and is giving it a function that returns its
figures instead of printing them.  This adapter is the one place that knows the
function's shape: it takes ``bench_storable.measure()`` when it exists (expected: a
mapping of seconds per call, below), and until then measures with what the module
has today - its Perl-made session (``perl_blob``) and its timer (``best_of``) - plus
a timing of Perl's own ``nfreeze`` on the same session.  Fix ``_from_measure`` at
merge time if the function came out differently.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Perl's own nfreeze on the session it is given (hex on stdin), best of five
PERL_NFREEZE = r"""
use Storable qw(thaw nfreeze);
use Time::HiRes qw(time);
my $hex = <STDIN>; chomp $hex;
my $session = thaw(pack('H*', $hex));
my ($number, $best) = ($ARGV[0], undef);
for (1 .. 5) {
    my $start = time;
    nfreeze($session) for 1 .. $number;
    my $each = (time - $start) / $number;
    $best = $each if !defined $best || $each < $best;
}
print $best;
"""


@dataclass(frozen=True)
class StorableFigures:
    """Seconds per call, each the best of several repeats."""

    session_bytes: int
    thaw_ours: float
    thaw_pypi: float
    nfreeze_ours: float
    nfreeze_perl: float

    @property
    def thaw_speedup(self) -> float:
        """How many times faster our thaw is than PyPI ``storable``'s."""
        return self.thaw_pypi / self.thaw_ours

    @property
    def nfreeze_slowdown(self) -> float:
        """How many times slower our nfreeze is than Perl's."""
        return self.nfreeze_ours / self.nfreeze_perl

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def storable_figures() -> StorableFigures:
    from benchmarks import bench_storable

    measure = getattr(bench_storable, "measure", None)
    if callable(measure):
        return _from_measure(measure())
    return _measure_today(bench_storable)


def _from_measure(figures: Mapping[str, Any]) -> StorableFigures:
    """The expected shape of ``bench_storable.measure()``: seconds per call."""
    return StorableFigures(
        session_bytes=int(figures["session_bytes"]),
        thaw_ours=float(figures["thaw_ours"]),
        thaw_pypi=float(figures["thaw_pypi"]),
        nfreeze_ours=float(figures["nfreeze_ours"]),
        nfreeze_perl=float(figures["nfreeze_perl"]),
    )


def _measure_today(bench_storable: Any) -> StorableFigures:
    import storable as pypi  # PyPI storable 1.2.4, in the dev extra

    from pyramid_kvs import storable as ours

    blob: bytes = bench_storable.perl_blob("net")
    data = ours.thaw(blob)
    number = 1000
    perl = subprocess.run(
        ["perl", "-e", PERL_NFREEZE, str(number)],
        input=blob.hex() + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return StorableFigures(
        session_bytes=len(blob),
        thaw_ours=bench_storable.best_of(lambda: ours.thaw(blob), number),
        thaw_pypi=bench_storable.best_of(lambda: pypi.thaw(blob), number),
        nfreeze_ours=bench_storable.best_of(lambda: ours.nfreeze(data), number),
        nfreeze_perl=float(perl.stdout),
    )
