"""The Storable rows of ``make bench``, taken from ``benchmarks/bench_storable.py``.

That module times an 8 KB session Perl froze (``measure()``); the rows compare our
``thaw`` of its network-order blob with PyPI ``storable``'s, and our ``nfreeze`` with
Perl's own, each contender at its best round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StorableFigures:
    """Seconds per call, each the best of several repeats."""

    session_bytes: int
    thaw_ours: float
    thaw_pypi: float
    nfreeze_ours: float
    nfreeze_perl: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def storable_figures() -> StorableFigures:
    from benchmarks import bench_storable

    results = bench_storable.measure()
    return StorableFigures(
        session_bytes=results.net_bytes,
        thaw_ours=results.best("thaw_net"),
        thaw_pypi=results.best("pypi_thaw_net"),
        nfreeze_ours=results.best("nfreeze"),
        nfreeze_perl=results.best("perl_nfreeze"),
    )
