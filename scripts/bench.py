"""Benchmark the hand-derived training step, or the whole job's time to accuracy.

Usage: python scripts/bench.py [jaxnn bench's flags] (the same as `jaxnn bench`; see
`jaxnn bench --help` and jaxnn/bench/ for what is measured and how).
"""

import sys

from jaxnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
