"""Benchmark runner for `make bench`.

No benchmarks exist yet; this says so and succeeds rather than printing invented numbers.
"""

import sys


def main() -> int:
    print("bench: no benchmarks exist yet; nothing was measured.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
