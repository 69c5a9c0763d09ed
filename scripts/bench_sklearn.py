"""jaxnn.sklearn beside scikit-learn: single fits and a grid search, times and scores.

Usage: python scripts/bench_sklearn.py [--rounds N] [--json F] [--markdown F] [--force]
(the same as `jaxnn bench --sklearn`; see jaxnn/bench/sklearn_fits.py for what is
measured and how).
"""

import sys

from jaxnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--sklearn", *sys.argv[1:]]))
