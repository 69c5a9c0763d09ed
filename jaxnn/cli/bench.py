"""``jaxnn bench``: the benchmarks (``jaxnn.bench``) on the command line.

Three modes: the step benchmark (default), ``--time-to-accuracy`` and ``--sklearn``
(``jaxnn.bench.sklearn_fits``: jaxnn.sklearn beside scikit-learn). Each prints
a markdown table and, with ``--json`` / ``--markdown``, writes the report and
the table to files (never over existing ones without ``--force``).
"""

import os

__all__ = [
    "add",
    "run",
]


def add(subparsers) -> None:
    """Add ``jaxnn bench``'s parser to ``subparsers``; its handler is ``run``."""
    p = subparsers.add_parser(
        "bench",
        help="time the hand-derived step beside jax.grad, PyTorch, NumPy and the matmul "
        "limit, or the whole training job beside scikit-learn and PyTorch",
        description=(
            "Benchmarks. By default, the training step: the hand-derived step, jax.grad's, "
            "a compiled epoch, PyTorch eager and NumPy, interleaved in one process, medians "
            "per batch size beside the machine's matmul limit. With --time-to-accuracy, the "
            "whole job as a user runs it: jaxnn train with an empty and with a filled "
            "compilation cache, scikit-learn's MLPClassifier and PyTorch eager, each in its "
            "own process, on the same split, network, batch size, epochs and optimizer."
        ),
    )
    _add_arguments(p)
    p.set_defaults(handler=run)


def _add_arguments(p) -> None:
    """``jaxnn bench``'s flags, each help saying what it means and its default."""
    from jaxnn.bench import BATCH_SIZES, CONTENDERS, time_to_accuracy
    from jaxnn.bench.time_to_accuracy import DEFAULTS as D

    out = p.add_argument_group("output (both modes)")
    out.add_argument(
        "--json", dest="json_path", metavar="PATH", help="write the report as JSON; default: none"
    )
    out.add_argument(
        "--markdown", dest="markdown_path", metavar="PATH", help="write the table; default: none"
    )
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="rounds, each running every contender once; figures are medians over them; "
        "default: 9 for the step benchmark, 3 for --time-to-accuracy and --sklearn",
    )
    out.add_argument(
        "--contenders",
        nargs="+",
        metavar="NAME",
        help=f"which to run: of {', '.join(CONTENDERS)} (step benchmark), or of "
        f"{', '.join(time_to_accuracy.CONTENDERS)} (--time-to-accuracy); default: all of "
        "the mode's",
    )
    step = p.add_argument_group("the step benchmark (the default mode)")
    step.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        metavar="B",
        default=list(BATCH_SIZES),
        help="batch sizes to time the 784-512-512-10 step at; default: "
        + " ".join(map(str, BATCH_SIZES)),
    )
    step.add_argument(
        "--xla-products",
        action="store_true",
        help="also report how XLA compiles the hand and autodiff gradients' matrix products: "
        "how many run in the fast matmul library and which are left to XLA's slower generic "
        "dot (the evidence for BP2's transpose, BENCHMARKS.md)",
    )
    tta = p.add_argument_group("time to accuracy")
    tta.add_argument(
        "--time-to-accuracy",
        action="store_true",
        help="time whole training runs, each in a fresh process, instead of the step",
    )
    tta.add_argument(
        "--dataset", default=D["dataset"], help=f"a classification dataset; default: {D['dataset']}"
    )
    tta.add_argument(
        "--data", metavar="DIR", help="for --dataset mnist: the directory of its files"
    )
    tta.add_argument(
        "--hidden", type=int, nargs="+", metavar="N", default=list(D["hidden"]),
        help="hidden layer sizes (relu); default: " + " ".join(map(str, D["hidden"])),
    )  # fmt: skip
    tta.add_argument(
        "--epochs", type=int, metavar="N", default=D["epochs"], help=f"default: {D['epochs']}"
    )
    tta.add_argument(
        "--batch-size", type=int, metavar="B", default=D["batch_size"],
        help=f"default: {D['batch_size']}",
    )  # fmt: skip
    tta.add_argument(
        "--learning-rate", type=float, metavar="A", default=D["learning_rate"],
        help=f"Adam's learning rate; default: {D['learning_rate']}",
    )  # fmt: skip
    p.add_argument_group("jaxnn.sklearn beside scikit-learn").add_argument(
        "--sklearn",
        action="store_true",
        help="time jaxnn.sklearn's MLPClassifier and MLPRegressor beside scikit-learn's, as "
        "a user swapping the import would: single fits on four datasets and a GridSearchCV "
        "on digits (n_jobs 1 and 2), each in a fresh process, times and held-out scores",
    )


def run(args) -> int:
    """Run the mode asked for; print its markdown table."""
    from jaxnn import bench

    paths = (args.json_path, args.markdown_path)
    if args.sklearn:
        report, table = _sklearn(args, paths)
    elif args.time_to_accuracy:
        report, table = _time_to_accuracy(args, paths)
    else:
        report, table = _step_benchmark(args, paths)
    bench.write_outputs(report, table, *paths)
    print(table, end="")
    return 0


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name.replace('_', ' ')} must be >= 1, got {value}")


def _step_benchmark(args, paths) -> tuple[dict, str]:
    from jaxnn import bench

    contenders = tuple(args.contenders or bench.CONTENDERS)
    bad = [c for c in contenders if c not in bench.CONTENDERS]
    if bad:
        raise ValueError(f"unknown contenders {bad}; valid: {', '.join(bench.CONTENDERS)}")
    rounds = 9 if args.rounds is None else args.rounds
    _check_positive(rounds=rounds, **{"batch size": min(args.batch_sizes)})
    bench.check_outputs(paths, args.force)
    # PyTorch's OpenMP threads sleep, not spin, between its steps, so that they leave
    # the other contenders the cores (see run_benchmark); before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    kwargs = {"xla_products": True} if args.xla_products else {}
    report = bench.run_benchmark(tuple(args.batch_sizes), contenders, rounds, **kwargs)
    return report, bench.markdown(report)


def _time_to_accuracy(args, paths) -> tuple[dict, str]:
    from jaxnn import bench
    from jaxnn.bench import time_to_accuracy

    rounds = 3 if args.rounds is None else args.rounds
    _check_positive(rounds=rounds, epochs=args.epochs, batch_size=args.batch_size)
    bench.check_outputs(paths, args.force)
    report = bench.run_time_to_accuracy(
        tuple(args.contenders or time_to_accuracy.CONTENDERS),
        rounds,
        dataset=args.dataset,
        data=args.data,
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
    )
    return report, time_to_accuracy.markdown(report)


def _sklearn(args, paths) -> tuple[dict, str]:
    from jaxnn import bench
    from jaxnn.bench import sklearn_fits

    if args.time_to_accuracy or args.contenders:
        raise ValueError("--sklearn takes neither --time-to-accuracy nor --contenders")
    rounds = 3 if args.rounds is None else args.rounds
    _check_positive(rounds=rounds)
    bench.check_outputs(paths, args.force)
    report = sklearn_fits.run_sklearn(rounds)
    return report, sklearn_fits.markdown(report)
