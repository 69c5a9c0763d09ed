"""``jaxnn train``'s settings: its flags, their defaults, and the checks on a run directory.

A run's settings come from the flags, then the defaults, then, with
``--resume``, the run's ``config.json``; all are checked here before anything
is written. This module never prints.
"""

import inspect
import json
import math
import os

from jaxnn.cli.common import UsageError, check_choice, flag

DEFAULTS = {
    "dataset": "digits",
    "data": None,
    "hidden": [256, 128],
    "activation": "relu",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "epochs": 40,
    "batch_size": 16,
    "seed": 0,
    "gradients": "hand",
}
# Settings a resumed run must keep; --epochs (the total target) and --data (a
# location) may change.
RUN_SETTINGS = (
    "dataset",
    "hidden",
    "activation",
    "optimizer",
    "learning_rate",
    "batch_size",
    "seed",
    "gradients",
)
CONFIG, METRICS, CURVES, CHECKPOINTS = "config.json", "metrics.json", "curves.png", "checkpoints"


def add_arguments(p) -> None:
    """Add ``jaxnn train``'s flags to the parser ``p``; unset ones are None (see ``from_args``)."""
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.train import GRADIENTS

    d = DEFAULTS
    p.add_argument(
        "--dataset", metavar="{" + ",".join(DATASETS) + "}", help=f"default: {d['dataset']}"
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="mnist only: a directory with the four MNIST IDX files (.gz or not) or mnist.npz",
    )
    p.add_argument(
        "--hidden",
        nargs="*",
        type=int,
        metavar="N",
        help="hidden layer sizes, none for no hidden layer; default: "
        + " ".join(map(str, d["hidden"])),
    )
    p.add_argument(
        "--activation",
        metavar="{" + ",".join(ACTIVATIONS) + "}",
        help=f"hidden activation; default: {d['activation']}",
    )
    p.add_argument(
        "--optimizer", metavar="{" + ",".join(OPTIMIZERS) + "}", help=f"default: {d['optimizer']}"
    )
    p.add_argument(
        "--learning-rate", type=float, metavar="A", help=f"default: {d['learning_rate']}"
    )
    p.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"total epochs, counting those of a resumed run; default: {d['epochs']}",
    )
    p.add_argument("--batch-size", type=int, metavar="B", help=f"default: {d['batch_size']}")
    p.add_argument("--seed", type=int, help=f"default: {d['seed']}")
    p.add_argument(
        "--gradients",
        metavar="{" + ",".join(GRADIENTS) + "}",
        help="hand: backprop (BP1-BP4); autodiff: jax.value_and_grad; default: hand",
    )
    p.add_argument("--out", metavar="DIR", help="run directory; default: runs/<dataset>-<time>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its newest checkpoint up to --epochs in all",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="split each batch over N devices (data-parallel; the batch size must divide by "
        "N); a resumed run may use another N; default: 1. With several processes: N devices "
        "of each process",
    )
    # Several processes (jaxnn.distributed, jaxnn.cli.cluster, docs/scaling.md).
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="several processes: process 0's address and a free port there; every process "
        "runs the same command with --num-processes N and its own --process-id I",
    )
    p.add_argument("--num-processes", type=int, metavar="N", help="several processes: N in all")
    p.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="several processes: this one's id, 0..N-1; process 0 prints and writes the files",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="several processes on a cluster that JAX detects (SLURM, a TPU pod, Open MPI), "
        "without --coordinator, --num-processes, --process-id",
    )
    p.add_argument(
        "--peer-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="several processes: wait S seconds for all to join, and stop with an error when "
        "one has not been heard from for S seconds; default: 60",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="save a checkpoint (in the background) at most every SECONDS, and always after the "
        "last epoch and on SIGINT/SIGTERM; 0: after every epoch. A run killed outright loses "
        "at most the epochs since its last save, which --resume recomputes exactly; default: 10",
    )
    p.add_argument(
        "--cpu-threads",
        type=int,
        metavar="N",
        help="threads of XLA's CPU runtime (the arithmetic, hence the results, are the same); "
        "default: 1 for a small network on one device (a step of at most 10 MFLOP of "
        "matrix products, where handing kernels between cores costs more than it gives), "
        "else one per core",
    )
    p.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (by default in "
        "$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/jaxnn/jax or ~/.cache/jaxnn/jax) "
        "nor the programs kept whole beside it, so every program is compiled afresh",
    )


def from_args(args) -> tuple[dict, dict | None]:
    """The run's settings, from the flags, the defaults and, with --resume, the run."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    if "data" in given:
        given["data"] = os.path.abspath(given["data"])  # resumable from anywhere
    if not args.resume:
        return {**DEFAULTS, **given}, None
    if args.out is None:
        raise UsageError("--resume needs --out DIR, the run to continue")
    config_path = os.path.join(args.out, CONFIG)
    if not os.path.isfile(config_path):
        raise UsageError(f"--resume: {args.out} holds no run to resume (no {CONFIG})")
    try:
        with open(config_path) as f:
            config = json.load(f)
        saved = config["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: cannot read {config_path}: {e}") from None
    mismatches = [
        f"{flag(k)} {given[k]!r} but the run has {saved.get(k)!r}"
        for k in RUN_SETTINGS
        if k in given and given[k] != saved.get(k)
    ]
    if mismatches:
        raise UsageError(f"--resume: {args.out} does not match: {'; '.join(mismatches)}")
    settings = {**DEFAULTS, **saved}
    settings.update({k: given[k] for k in ("epochs", "data") if k in given})
    return settings, config


def check_settings(s: dict) -> None:
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.train import GRADIENTS

    check_choice("dataset", s["dataset"], DATASETS)
    check_choice("optimizer", s["optimizer"], OPTIMIZERS)
    check_choice("activation", s["activation"], ACTIVATIONS)
    check_choice("gradients", s["gradients"], GRADIENTS)
    if not 0 < s["learning_rate"] < math.inf:
        raise UsageError(f"learning rate must be a finite number > 0, got {s['learning_rate']}")
    for name in ("epochs", "batch_size"):
        if s[name] < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be >= 1, got {s[name]}")
    if any(n < 1 for n in s["hidden"]):
        raise UsageError(f"hidden layer sizes must be >= 1, got {' '.join(map(str, s['hidden']))}")
    if s["dataset"] == "mnist" and s["data"] is None:
        raise UsageError(
            "--dataset mnist needs --data DIR, a directory holding the MNIST IDX files or mnist.npz"
        )
    if s["dataset"] != "mnist" and s["data"] is not None:
        raise UsageError(
            f"--data is only for --dataset mnist; {s['dataset']} is bundled with scikit-learn"
        )


def check_out(out: str, resume: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a directory")
    if not resume and os.path.isdir(out) and os.listdir(out):
        raise UsageError(
            f"{out} already exists and is not empty; continue the run there with --resume "
            "or choose another --out"
        )


def optimizer_config(name: str, learning_rate: float) -> dict:
    from jaxnn.optim import OPTIMIZERS

    config = {"name": name, "learning_rate": learning_rate}
    for p in inspect.signature(OPTIMIZERS[name]).parameters.values():
        if p.default is not inspect.Parameter.empty:
            config[p.name] = p.default
    return config


def network_config(net) -> dict:
    return {"sizes": list(net.sizes), "activations": list(net.activations), "loss": net.loss}
