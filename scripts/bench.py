"""Benchmark the hand-derived training step beside jax.grad, PyTorch, NumPy and the matmul limit.

Usage: python scripts/bench.py [--batch-sizes 32 256 2048] [--json out.json] [--markdown out.md]
(the same as `jaxnn bench`). See jaxnn/bench.py for what is measured and how.
"""

import sys

from jaxnn import bench


def main(argv=None) -> int:
    args = bench.parser().parse_args(argv)
    try:
        print(bench.run_from_args(args), end="")
    except ValueError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
