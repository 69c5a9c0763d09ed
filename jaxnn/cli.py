"""The ``jaxnn`` command line; it and ``jaxnn.cli_train`` are all of jaxnn that prints.

Subcommands: ``jaxnn train`` trains a network on a dataset and writes a run
directory; ``jaxnn verify`` checks the hand gradients against ``jax.grad``.
A subcommand is a function ``add(subparsers)`` in ``SUBCOMMANDS`` that adds its
parser and sets ``handler``, a function of the parsed arguments that returns
the exit status. ``jaxnn train`` lives in ``jaxnn.cli_train`` (its settings in
``jaxnn.cli_settings``); what they share, in ``jaxnn.cli_common``.

Exit statuses:

* 0: done;
* 1: the run failed after it started: ``jaxnn verify`` found a failing row,
  or training diverged (a cost became NaN or Inf; the last good checkpoint is
  kept); one line on stderr;
* 2: an error a user can fix (bad options, bad or missing data, a run
  directory in the way, a damaged checkpoint): one line, ``jaxnn: error:
  ...``, on stderr, before anything is written;
* 130 (SIGINT, Ctrl-C) or 143 (SIGTERM), i.e. 128 + the signal's number:
  ``jaxnn train`` was interrupted; it finished the epoch under way, saved its
  checkpoint and says how to resume. A second signal stops it at once.
"""

import argparse
import json
import os
import sys

from jaxnn.cli_common import RunFailed as RunFailed
from jaxnn.cli_common import UsageError as UsageError
from jaxnn.cli_common import _jsonable, _write_atomic
from jaxnn.cli_settings import CHECKPOINTS as CHECKPOINTS
from jaxnn.cli_settings import CONFIG as CONFIG
from jaxnn.cli_settings import CURVES as CURVES
from jaxnn.cli_settings import DEFAULTS as DEFAULTS
from jaxnn.cli_settings import METRICS as METRICS
from jaxnn.cli_settings import RUN_SETTINGS as RUN_SETTINGS
from jaxnn.cli_train import _add_train


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- jaxnn verify -------------------------------------------------------------------------


def _add_verify(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check the hand-derived gradients against jax.grad",
        description="Run the verification matrix and print its table; exit 1 if a row fails.",
    )
    p.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    p.set_defaults(handler=_verify)


def _verify(args) -> int:
    from jaxnn import verify  # run_matrix enables float64 for its own run

    if args.json and os.path.exists(args.json):
        raise UsageError(f"{args.json} already exists; choose another --json path")
    rows = verify.run_matrix()
    print(verify.format_table(rows))
    if args.json:
        text = json.dumps(_jsonable(rows), indent=2, default=_json_default) + "\n"
        _write_atomic(args.json, lambda f: f.write(text))
    return 0 if all(row["ok"] for row in rows) else 1


def _json_default(x):
    """numpy and JAX scalars and arrays as JSON numbers and lists; anything else as text."""
    try:
        import numpy as np

        value = np.asarray(x).tolist()
        return _jsonable(value)
    except (TypeError, ValueError):
        return str(x)


# --- the parser ----------------------------------------------------------------------------


def _add_bench(subparsers) -> None:
    from jaxnn import bench

    p = subparsers.add_parser(
        "bench",
        help="time the hand-derived step beside jax.grad, PyTorch, NumPy and the matmul limit",
        description=bench.__doc__.splitlines()[0],
    )
    bench.parser(p)
    p.set_defaults(handler=_bench)


def _bench(args) -> int:
    from jaxnn import bench

    print(bench.run_from_args(args), end="")
    return 0


SUBCOMMANDS = [_add_train, _add_verify, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxnn",
        description="Dense neural networks in JAX with hand-derived backpropagation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RunFailed as e:
        print(f"jaxnn: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, ImportError) as e:
        message = " ".join(str(e).split())  # one line
        print(f"jaxnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxnn: interrupted", file=sys.stderr)
        return 130
