"""Benchmarks: `make bench` runs every ``bench_*.py`` module's ``main()``.

They print timings and ratios measured within one run on this machine; they are not
tests and assert nothing about speed.
"""
