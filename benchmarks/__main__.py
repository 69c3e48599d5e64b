"""``make bench``: see ``benchmarks.harness``."""

from benchmarks.harness import main

if __name__ == "__main__":
    main()
