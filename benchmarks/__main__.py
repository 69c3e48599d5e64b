"""Run every benchmark module in this package."""

from __future__ import annotations

import importlib
import pkgutil

import benchmarks


def main() -> None:
    for module in pkgutil.iter_modules(benchmarks.__path__):
        if module.name.startswith("bench_"):
            print(f"== {module.name}")
            importlib.import_module(f"benchmarks.{module.name}").main()


if __name__ == "__main__":
    main()
