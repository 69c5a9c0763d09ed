"""Per-example gradients, norms and clipped means by hand beside jax.vmap(jax.grad(...)).

Usage: python scripts/bench_per_example.py [--batch 256] [--rounds 30]
See jaxnn/bench/per_example.py for what is measured and how.
"""

import argparse
import sys

from jaxnn.bench import per_example as bench_per_example


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    results = bench_per_example.bench_per_example(batch=args.batch, rounds=args.rounds)
    print(bench_per_example.markdown(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
