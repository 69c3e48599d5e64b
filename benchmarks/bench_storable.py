"""Compare pyramid_kvs.storable.thaw with PyPI ``storable`` 1.2.4 on a realistic session.

Run: ``PYTHONPATH=src python benchmarks/bench_storable.py``.  The session is
frozen by the real Perl (``nfreeze`` and ``freeze``) when ``perl`` is available,
as a CGI::Session-like hash: a user record, a cart, flags and some history.
Both readers thaw the same bytes; the script prints both timings and the ratio
measured in this run.
"""

from __future__ import annotations

import subprocess
import sys
import timeit
from collections.abc import Callable
from typing import Any

from pyramid_kvs import storable as ours

PERL_SESSION = r"""
use Storable qw(nfreeze freeze);
my $session = {
    _SESSION_ID => 'd41d8cd98f00b204e9800998ecf8427e', _SESSION_CTIME => 1700000000,
    _SESSION_ATIME => 1700000123, _SESSION_ETIME => 3600, _SESSION_REMOTE_ADDR => '10.0.0.1',
    _SESSION_EXPIRE_LIST => {}, csrf_token => 'a' x 40, locale => 'fr_FR',
    user => { id => 4242, login => 'jdupont', name => "J\x{e9}r\x{f4}me Dupont",
              email => 'jerome@example.org', roles => [qw(admin editor viewer)],
              prefs => { theme => 'dark', tz => 'Europe/Paris', page_size => 50 } },
    cart => [ map { { sku => "SKU-$_", qty => $_ % 3 + 1, price => 9.99 * $_,
                      title => "Article num\x{e9}ro $_" } } 1 .. 20 ],
    history => [ map { "/catalog/item/$_" } 1 .. 30 ],
    flags => { beta => 1, newsletter => 0, gdpr => 1 },
};
binmode STDOUT;
print unpack('H*', $ARGV[0] eq 'net' ? nfreeze($session) : freeze($session));
"""


def perl_blob(kind: str) -> bytes:
    out = subprocess.run(
        ["perl", "-e", PERL_SESSION, kind], capture_output=True, check=True
    ).stdout
    return bytes.fromhex(out.decode())


def best_of(func: Callable[[], Any], number: int) -> float:
    """Seconds per call, best of five repeats."""
    return min(timeit.repeat(func, number=number, repeat=5)) / number


def main() -> None:
    try:
        import storable as pypi  # PyPI storable 1.2.4
    except ImportError:
        sys.exit("PyPI 'storable' is not installed (pip install storable==1.2.4)")
    for kind in ("net", "native"):
        blob = perl_blob(kind)
        ours.thaw(blob)
        pypi.thaw(blob)
        number = 2000
        t_ours = best_of(lambda blob=blob: ours.thaw(blob), number)
        t_pypi = best_of(lambda blob=blob: pypi.thaw(blob), number)
        print(
            f"{kind:>6} ({len(blob)} bytes): pyramid_kvs {t_ours * 1e6:8.1f} us/thaw, "
            f"PyPI storable {t_pypi * 1e6:8.1f} us/thaw, ratio {t_pypi / t_ours:.2f}x"
        )


if __name__ == "__main__":
    main()
