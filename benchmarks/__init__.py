"""Benchmarks: ``make bench`` compares pyramid_kvs with its anchors side by side.

``python -m benchmarks`` (``benchmarks.harness``) runs every scenario of
``benchmarks.scenarios`` in paired rounds against the libraries the issue
"Performance" measures pyramid_kvs by, each in a virtualenv of its own, then an
HTTP run under wrk; BENCHMARKS.md says what each scenario measures.  They print
figures measured in one run on this machine; they are not tests and assert
nothing about speed.  ``bench_storable.py`` also runs alone.
"""
