"""The ``jaxnn`` command line: the only part of jaxnn that prints.

One module per subcommand: ``jaxnn train`` (``train``, its settings in
``settings``) trains a network on a dataset and writes a run directory;
``jaxnn verify`` (``verify``) checks the hand gradients against ``jax.grad``;
``jaxnn bench`` (``bench``) times them; ``jaxnn predict``, ``jaxnn evaluate`` and
``jaxnn export`` (``predict``) use a trained run. Each module has ``add(subparsers)``,
which adds its parser and sets ``handler`` to its ``run(args)``, returning the
exit status; ``SUBCOMMANDS`` lists them. What they share is in ``common``. To add
a subcommand: a module with ``add`` and ``run``, and one entry in ``SUBCOMMANDS``.

Exit statuses:

* 0: done;
* 1: the run failed after it started: ``jaxnn verify`` found a failing row,
  ran no configuration, or another number of them than ``--expect``; or
  training diverged (a cost became NaN or Inf; the last good checkpoint is
  kept); one line on stderr;
* 2: an error a user can fix (bad options, bad or missing data, a run
  directory in the way, a damaged checkpoint): one line on stderr, before
  anything is written;
* 130 (SIGINT, Ctrl-C) or 143 (SIGTERM), i.e. 128 + the signal's number:
  ``jaxnn train`` was interrupted; it finished the epoch under way, saved its
  checkpoint and says how to resume. A second signal stops it at once.

Every error, whichever subcommand or check raised it (argparse's included), is
one line on stderr with one prefix, ``jaxnn: error: ``.
"""

import argparse
import importlib.metadata
import sys

import jaxnn
from jaxnn.cli import bench, cluster, predict, train, verify
from jaxnn.cli.common import ERROR, RunFailed, UsageError

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "main",
    "version",
]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and jaxnn's one prefix."""

    def error(self, message):
        self.exit(2, f"{ERROR}{message} (see '{self.prog} --help')\n")


def version() -> str:
    """``jaxnn 0.1.0 (jax 0.10.2, jaxlib 0.10.2)``: what ``jaxnn --version`` prints."""
    found = []
    for name in ("jax", "jaxlib"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"jaxnn {jaxnn.__version__} ({', '.join(found)})"


SUBCOMMANDS = [
    train.add,
    predict.add_predict,
    predict.add_evaluate,
    predict.add_export,
    verify.add,
    bench.add,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxnn`` parser, with one subparser per entry of ``SUBCOMMANDS``."""
    parser = _Parser(
        prog="jaxnn",
        description="Dense neural networks in JAX with hand-derived backpropagation.",
    )
    parser.add_argument("--version", action="version", version=version())
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
        status, message = 1, " ".join(str(e).split())  # one line
    except (UsageError, ValueError, ImportError) as e:
        status, message = 2, " ".join(str(e).split())
    except KeyboardInterrupt:
        status, message = 130, "interrupted"
    line = "jaxnn: interrupted" if status == 130 else ERROR + message
    cluster.abandon(status, message, line)  # several processes: print, tell the others, end
    print(line, file=sys.stderr)
    return status
